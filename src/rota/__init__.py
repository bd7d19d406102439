"""Rota: a workflow orchestrator for machine-learning pipelines."""

from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from rota.engine.result import RunResult
    from rota.operators.k8smanifest import PodVolume, Toleration
    from rota.operators.kubernetes import KubernetesPodTask

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
    "KubernetesPodTask",
    "NoOutput",
    "PodVolume",
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
    "Toleration",
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


_LAZY = {
    # the engine, which `import rota` (every flow file) does not load
    "RunResult": "rota.engine.result",
    # the pod task: loaded when a flow uses it (the `kubernetes` client only when a pod runs)
    "KubernetesPodTask": "rota.operators.kubernetes",
    "PodVolume": "rota.operators.k8smanifest",
    "Toleration": "rota.operators.k8smanifest",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rota' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
