"""Ids in request paths: checked against the id pattern before anything reads them."""

from __future__ import annotations

import re
from typing import Final

from rota.model.dag import TASK_ID_MAX, TASK_ID_PATTERN
from rota.model.safetext import safe_text

RUN_ID_PATTERN: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class BadId(ValueError):
    """Raised when a path holds something that is not a valid id (answered with 400)."""


def check_id(value: str, what: str) -> str:
    """*value* if it is a valid run id, task id or flow name.

    Raises:
        BadId: it is empty, too long, holds a character outside ``[A-Za-z0-9_.-]`` (a slash, a
            NUL, a percent sign, ...), starts with ``.`` or ``-``, or holds ``..``.
    """
    pattern = RUN_ID_PATTERN if what == "run id" else TASK_ID_PATTERN
    if len(value) > TASK_ID_MAX or not pattern.fullmatch(value) or ".." in value:
        raise BadId(f"not a valid {what}: {safe_text(value[:80])}")
    return value
