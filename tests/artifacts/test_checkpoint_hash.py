"""Checkpoints carry a content hash, checked before anything is unpickled: a truncated or altered
checkpoint fails the attempt with an error naming it, and a bare pickle left by an older Rota is
not loaded (the task starts over)."""

from __future__ import annotations

import hashlib
import pathlib
import pickle
from pathlib import Path
from typing import Any

import pytest

from rota.artifacts.local import MAGIC, FileCheckpoint
from rota.errors import ArtifactError


class Touch:
    """Unpickling this creates *marker*."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.fixture
def cp(tmp_path: Path) -> FileCheckpoint:
    return FileCheckpoint(tmp_path / "checkpoints" / "run" / "train", producer="train")


def test_a_checkpoint_is_its_hash_then_its_pickle(cp: FileCheckpoint) -> None:
    assert cp.load("nothing yet") == "nothing yet"
    cp.save({"epoch": 3, "weights": [0.5] * 10})
    data = cp.path.read_bytes()
    header, _, payload = data.partition(b"\n")
    assert header == MAGIC + hashlib.blake2b(payload).hexdigest().encode()
    assert cp.load() == {"epoch": 3, "weights": [0.5] * 10}


def test_an_altered_checkpoint_is_refused_before_unpickling(
    cp: FileCheckpoint, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    cp.save({"epoch": 1})
    header = cp.path.read_bytes().partition(b"\n")[0]
    cp.path.write_bytes(header + b"\n" + pickle.dumps(Touch(marker)))  # the old hash, new bytes
    with pytest.raises(ArtifactError) as caught:
        cp.load()
    message = str(caught.value)
    assert str(cp.path) in message and "'train'" in message
    assert "is corrupt (content hash" in message and "\n" not in message
    assert not marker.exists()


def test_a_flipped_byte_anywhere_is_refused(cp: FileCheckpoint) -> None:
    cp.save(list(range(50)))
    good = cp.path.read_bytes()
    for at in range(0, len(good), 7):
        bad = bytearray(good)
        bad[at] ^= 0x01
        cp.path.write_bytes(bytes(bad))
        with pytest.raises(ArtifactError, match="is corrupt"):
            cp.load()


def test_every_truncation_is_refused(cp: FileCheckpoint, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    cp.save([Touch(marker), "x" * 300])
    marker.unlink(missing_ok=True)
    whole = cp.path.read_bytes()
    for cut in range(len(whole)):
        cp.path.write_bytes(whole[:cut])
        with pytest.raises(ArtifactError, match="is corrupt"):
            cp.load()
    assert not marker.exists()


def test_a_checkpoint_without_a_hash_is_not_loaded_and_the_task_starts_over(
    cp: FileCheckpoint, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "marker"
    cp.path.parent.mkdir(parents=True)
    cp.path.write_bytes(pickle.dumps(Touch(marker), protocol=5))  # as Rota wrote them before
    assert cp.load(default=0) == 0
    assert "has no content hash" in capsys.readouterr().err
    assert not marker.exists()
    cp.save(5)  # the next save writes the new format
    assert cp.load(default=0) == 5
