"""Rota: a workflow orchestrator for machine-learning pipelines.

The names below are loaded when first used (module ``__getattr__``), so that ``import rota`` and
the ``rota`` command do not pay for the notifiers, sensors and operators a program never touches.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:  # the same names, imported eagerly for type checkers and documentation tools
    from rota import cache
    from rota.api import Flow, flow, resume
    from rota.engine.result import RunResult
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
    from rota.operators.k8smanifest import PodVolume, Toleration
    from rota.operators.kubernetes import KubernetesPodTask
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

_HOME: Final[dict[str, str]] = {
    "BranchTask": "rota.operators.branch",
    "CallbackContext": "rota.model.callbacks",
    "CommandNotifier": "rota.notifiers",
    "ContainerTask": "rota.operators.containertask",
    "Dataset": "rota.model.datasets",
    "DatasetSensor": "rota.operators.sensors",
    "EmailNotifier": "rota.notifiers",
    "FileSensor": "rota.operators.sensors",
    "Flow": "rota.api",
    "FlowNotCalled": "rota.errors",
    "FlowRunSensor": "rota.operators.sensors",
    "KeySensor": "rota.operators.sensors",
    "KubernetesPodTask": "rota.operators.kubernetes",  # the `kubernetes` client: when a pod runs
    "NoOutput": "rota.errors",
    "PodVolume": "rota.operators.k8smanifest",
    "PythonSensor": "rota.operators.sensors",
    "PythonTask": "rota.operators.python",
    "RetryPolicy": "rota.model.policies",
    "RotaError": "rota.errors",
    "RunFailed": "rota.errors",
    "RunResult": "rota.engine.result",
    "Secret": "rota.model.secrets",
    "Sensor": "rota.operators.sensors",
    "ShellTask": "rota.operators.shell",
    "ShortCircuitTask": "rota.operators.branch",
    "Skip": "rota.errors",
    "SlackNotifier": "rota.notifiers",
    "Toleration": "rota.operators.k8smanifest",
    "TriggerRule": "rota.model.policies",
    "UserError": "rota.errors",
    "WebhookNotifier": "rota.notifiers",
    "WeightRule": "rota.model.priority",
    "flow": "rota.api",
    "resume": "rota.api",
    "sensor": "rota.operators.sensors",
    "task": "rota.operators.python",
    "unmapped": "rota.model.builder",
}
"""Each public name and the module it is defined in (``cache`` is the module ``rota.cache``)."""

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


def __getattr__(name: str) -> object:
    """Import the module that defines *name* on first use, and keep the value on ``rota``."""
    if name == "cache":
        value: object = import_module("rota.cache")
    elif name in _HOME:
        value = getattr(import_module(_HOME[name]), name)
    else:
        raise AttributeError(f"module 'rota' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
