"""What a task needs of the worker that runs it: ``resources={"GPU": 1, "memory": "4GB"}``.

Each name is a worker resource (on a Dask cluster: ``dask worker --resources "GPU=1,memory=16e9"``),
each amount a positive number; a text amount is a size in bytes with a unit (``"4GB"``,
``"512MiB"``, ``"1.5 TB"``), so ``memory`` can be said the way people say it. Executors on one
machine ignore resources; the Dask executor asks its workers for them and fails an attempt at
submission when no worker has them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Final

from rota.errors import DefinitionError

_UNITS: Final = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "pb": 10**15,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
    "pib": 2**50,
}
_SIZE: Final = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?(?:e[0-9]+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


def parse_amount(task_id: str, name: str, value: object) -> float:
    """The amount *value* of resource *name* as a positive number.

    Raises:
        DefinitionError: not a positive finite number, nor a size such as ``"4GB"``.
    """
    if isinstance(value, bool):
        raise DefinitionError(f"task {task_id!r}: resource {name!r} must be a number, got {value}")
    if isinstance(value, int | float):
        amount = float(value)
    elif isinstance(value, str) and (found := _SIZE.match(value)):
        unit = _UNITS.get(found.group(2).lower())
        if unit is None:
            raise DefinitionError(
                f"task {task_id!r}: resource {name!r}: unknown unit {found.group(2)!r} "
                f"in {value!r} (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
            )
        amount = float(found.group(1)) * unit
    else:
        raise DefinitionError(
            f"task {task_id!r}: resource {name!r} must be a number or a size like '4GB', "
            f"got {value!r}"
        )
    if not math.isfinite(amount) or amount <= 0:
        raise DefinitionError(
            f"task {task_id!r}: resource {name!r} must be positive, got {value!r}"
        )
    return amount


def coerce_resources(task_id: str, value: Mapping[str, object] | None) -> dict[str, float]:
    """*value* (``{"GPU": 1, "memory": "4GB"}``) as names and positive amounts.

    Raises:
        DefinitionError: not a mapping, a bad resource name or a bad amount.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise DefinitionError(
            f"task {task_id!r}: resources must be a dict like {{'GPU': 1}}, got {value!r}"
        )
    out: dict[str, float] = {}
    for name, amount in value.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise DefinitionError(
                f"task {task_id!r}: resource name {name!r} must be a word of letters, digits, "
                "'_', '.' or '-' (at most 64)"
            )
        out[name] = parse_amount(task_id, name, amount)
    return out
