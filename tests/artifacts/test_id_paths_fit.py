"""Every file name Rota derives from the longest task id and map index fits in 255 bytes: written
for real (outputs with every serializer, checkpoints, logs) on this machine's file system."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

from rota.artifacts import serializers
from rota.artifacts.local import FileCheckpoint, checkpoint_path
from rota.artifacts.store import ArtifactStore
from rota.executors.logs import ThreadCapture
from rota.model.dag import TASK_ID_MAX, check_task_id
from rota.model.secrets import Masker

LONGEST_ID = check_task_id("t" * TASK_ID_MAX)
LARGEST_INDEX = sys.maxsize  # no list can be longer, so no map index is larger
NAME_MAX = 255

VALUES: dict[str, Any] = {
    "json": {"a": [1, 2]},
    "npy": np.arange(3),
    "parquet": pd.DataFrame({"a": [1, 2]}),
    "joblib": LinearRegression(),
    "pickle": lambda: 1,
}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    if os.pathconf(tmp_path, "PC_NAME_MAX") > NAME_MAX:
        pytest.skip("this file system allows longer names: nothing to prove here")
    return tmp_path


def test_every_serializer_is_exercised() -> None:
    assert set(VALUES) == set(serializers.names())


@pytest.mark.parametrize("name", sorted(VALUES))
def test_the_longest_output_and_its_temporary_file_fit(name: str, folder: Path) -> None:
    store = ArtifactStore(str(folder / "artifacts"))
    out = store.put("run1", LONGEST_ID, LARGEST_INDEX, VALUES[name], serializer=name)
    assert Path(out.uri).exists()  # its temporary file was made, written and renamed
    # On an object store the temporary key is ".<name>.<32 hex digits>.tmp" (store.py).
    assert len(f".{Path(out.uri).name}.{'0' * 32}.tmp") <= NAME_MAX


def test_the_longest_checkpoint_fits(folder: Path) -> None:
    path = checkpoint_path(folder / "checkpoints", "run1", LONGEST_ID, LARGEST_INDEX)
    checkpoint = FileCheckpoint(path, producer=LONGEST_ID)
    checkpoint.save({"epoch": 3})
    assert checkpoint.load() == {"epoch": 3}


def test_the_longest_log_fits(folder: Path) -> None:
    capture = ThreadCapture()
    log = folder / "logs" / "run1" / f"{LONGEST_ID}@{LARGEST_INDEX}" / "999.log"
    capture.begin(str(log), Masker())
    try:
        print("printed")
    finally:
        assert capture.end() == str(log)
        capture.uninstall()
    assert log.read_text() == "printed\n"
