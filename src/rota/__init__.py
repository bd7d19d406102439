"""Rota: a workflow orchestrator for machine-learning pipelines."""

from rota import cache
from rota.errors import RotaError, Skip, UserError
from rota.model.builder import unmapped
from rota.model.callbacks import CallbackContext
from rota.model.datasets import Dataset
from rota.model.flows import Flow, flow
from rota.model.policies import RetryPolicy, TriggerRule
from rota.model.secrets import Secret
from rota.notifiers import CommandNotifier, WebhookNotifier
from rota.operators.branch import BranchTask, ShortCircuitTask
from rota.operators.python import PythonTask, task
from rota.operators.sensors import (
    DatasetSensor,
    FileSensor,
    FlowRunSensor,
    KeySensor,
    PythonSensor,
    Sensor,
    sensor,
)
from rota.operators.shell import ShellTask

__all__ = [
    "BranchTask",
    "CallbackContext",
    "CommandNotifier",
    "Dataset",
    "DatasetSensor",
    "FileSensor",
    "Flow",
    "FlowRunSensor",
    "KeySensor",
    "PythonSensor",
    "PythonTask",
    "RetryPolicy",
    "RotaError",
    "Secret",
    "Sensor",
    "ShellTask",
    "ShortCircuitTask",
    "Skip",
    "TriggerRule",
    "UserError",
    "WebhookNotifier",
    "cache",
    "flow",
    "sensor",
    "task",
    "unmapped",
]

__version__ = "0.1.0"
