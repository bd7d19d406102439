"""Rota: a workflow orchestrator for machine-learning pipelines."""

from rota import cache
from rota.api import Flow, flow, resume
from rota.errors import FlowNotCalled, NoOutput, RotaError, RunFailed, Skip, UserError
from rota.model.builder import unmapped
from rota.model.callbacks import CallbackContext
from rota.model.datasets import Dataset
from rota.model.policies import RetryPolicy, TriggerRule
from rota.model.priority import WeightRule
from rota.model.secrets import Secret
from rota.notifiers import CommandNotifier, EmailNotifier, SlackNotifier, WebhookNotifier
from rota.operators.branch import BranchTask, ShortCircuitTask
from rota.operators.containertask import ContainerTask
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
    "ContainerTask",
    "Dataset",
    "DatasetSensor",
    "EmailNotifier",
    "FileSensor",
    "Flow",
    "FlowNotCalled",
    "FlowRunSensor",
    "KeySensor",
    "NoOutput",
    "PythonSensor",
    "PythonTask",
    "RetryPolicy",
    "RotaError",
    "RunFailed",
    "RunResult",
    "Secret",
    "Sensor",
    "ShellTask",
    "ShortCircuitTask",
    "Skip",
    "SlackNotifier",
    "TriggerRule",
    "UserError",
    "WebhookNotifier",
    "WeightRule",
    "cache",
    "flow",
    "resume",
    "sensor",
    "task",
    "unmapped",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # RunResult lives in the engine, which `import rota` (every flow file) does not load
    if name == "RunResult":
        from rota.engine.result import RunResult

        return RunResult
    raise AttributeError(f"module 'rota' has no attribute {name!r}")
