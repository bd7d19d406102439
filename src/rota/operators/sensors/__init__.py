"""Sensors: tasks that wait for something (a file, a key, another flow's run, a dataset).

The package's modules:

- :mod:`~rota.operators.sensors.base`: how a sensor waits (:class:`SensorPolicy`) and the operator
  that pokes (:class:`SensorOp`); its docstring states the contract with the engine.
- :mod:`~rota.operators.sensors.node`: the :class:`Sensor` task node that user sensors subclass.
- :mod:`~rota.operators.sensors.files`: :class:`FileSensor` and :class:`KeySensor`.
- :mod:`~rota.operators.sensors.python`: :class:`PythonSensor` and ``@sensor``.
- :mod:`~rota.operators.sensors.store`: :class:`FlowRunSensor` and :class:`DatasetSensor`, which
  read the metadata store.
"""

from rota.operators.sensors.base import SensorOp, SensorPolicy
from rota.operators.sensors.files import FileSensor, KeySensor
from rota.operators.sensors.node import Sensor
from rota.operators.sensors.python import PythonSensor, sensor
from rota.operators.sensors.store import (
    DatasetSensor,
    FlowRunSensor,
    UpstreamRunFailed,
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
    "sensor",
]
