"""Sensors: tasks that wait for something (a file, a key, another flow's run, a dataset)."""

from rota.operators.sensors.base import (
    DatasetSensor,
    FileSensor,
    FlowRunSensor,
    KeySensor,
    PythonSensor,
    Sensor,
    SensorOp,
    SensorPolicy,
    UpstreamRunFailed,
    close_sensor_stores,
    sensor,
)

__all__ = [
    "DatasetSensor",
    "FileSensor",
    "FlowRunSensor",
    "KeySensor",
    "PythonSensor",
    "Sensor",
    "SensorOp",
    "SensorPolicy",
    "UpstreamRunFailed",
    "close_sensor_stores",
    "sensor",
]
