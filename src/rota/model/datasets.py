"""Datasets: named data (any URI) that tasks produce (``outlets``) and read (``inlets``).

A successful producing task records a new version of each of its outlets. A flow scheduled on
datasets is due when every one of them has a new version since the flow's last run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from rota.errors import DefinitionError


@dataclass(frozen=True, slots=True)
class Dataset:
    """Data named by *uri* (``s3://bucket/features.parquet``, ``/data/x.csv``, ``db://table``)."""

    uri: str

    def __post_init__(self) -> None:
        if (
            not isinstance(self.uri, str)
            or not self.uri.strip()
            or any(c.isspace() for c in self.uri)
        ):
            raise DefinitionError(f"a dataset needs a URI without spaces, got {self.uri!r}")


def coerce_datasets(
    name: str, values: Iterable[Dataset | str] | Dataset | str | None
) -> tuple[Dataset, ...]:
    """``outlets=`` / ``inlets=`` values as datasets (a URI string is accepted as a dataset).

    Raises:
        DefinitionError: a value is neither a Dataset nor a URI string.
    """
    if values is None:
        return ()
    items = [values] if isinstance(values, Dataset | str) else list(values)
    out: list[Dataset] = []
    for item in items:
        dataset = Dataset(item) if isinstance(item, str) else item
        if not isinstance(dataset, Dataset):
            raise DefinitionError(f"{name} must hold Dataset objects or URIs, got {item!r}")
        out.append(dataset)
    return tuple(dict.fromkeys(out))


def is_due(required: Iterable[Dataset], new_versions: Mapping[str, int]) -> bool:
    """Whether a flow scheduled on *required* is due: each has >= 1 version since its last run."""
    uris = [d.uri for d in required]
    return bool(uris) and all(new_versions.get(uri, 0) > 0 for uri in uris)


def waiting_for(required: Iterable[Dataset], new_versions: Mapping[str, int]) -> list[str]:
    """The URIs of *required* that have no new version yet."""
    return [d.uri for d in required if new_versions.get(d.uri, 0) <= 0]
