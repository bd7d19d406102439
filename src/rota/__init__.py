"""Rota: a workflow orchestrator for machine-learning pipelines."""

from rota.errors import RotaError, Skip, UserError
from rota.model.builder import Flow, flow
from rota.model.policies import RetryPolicy, TriggerRule
from rota.operators.python import PythonTask, task
from rota.operators.shell import ShellTask

__all__ = [
    "Flow",
    "PythonTask",
    "RetryPolicy",
    "RotaError",
    "ShellTask",
    "Skip",
    "TriggerRule",
    "UserError",
    "flow",
    "task",
]

__version__ = "0.1.0"
