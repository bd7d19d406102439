"""Claims: an attempt's marker in the artifact store is created once; a second claim is refused.

This is what keeps a cluster's re-execution of a lost task from running it again unbeknownst to
the store: on a folder (O_EXCL) and on S3 (a conditional PUT on the moto server).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fixtures_s3 import s3_bucket, s3_server  # noqa: F401
from rota.artifacts.shared import claim, claim_name, open_checkpoint
from rota.artifacts.store import open_artifact_store


def _racing(root: str, holders: int) -> list[bool]:
    store = open_artifact_store(root)
    name = claim_name("run1", 42)
    with ThreadPoolExecutor(holders) as pool:
        return list(pool.map(lambda i: claim(store, name, f"holder-{i}"), range(holders)))


def test_a_folder_claim_is_made_once_and_private(tmp_path: Path) -> None:
    won = _racing(str(tmp_path), 8)
    assert won.count(True) == 1
    marker = tmp_path / ".claims" / "run1" / "42"
    assert marker.read_text() == f"holder-{won.index(True)}"
    assert marker.stat().st_mode & 0o777 == 0o600
    assert claim(open_artifact_store(str(tmp_path)), claim_name("run1", 43), "x")  # another one


def test_an_s3_claim_is_made_once(s3_bucket: str) -> None:  # noqa: F811
    root = f"{s3_bucket}/artifacts"
    won = _racing(root, 4)
    assert won.count(True) == 1
    store = open_artifact_store(root)
    assert store.fs.cat_file(f"{root}/.claims/run1/42") == f"holder-{won.index(True)}".encode()


def test_a_checkpoint_at_a_url_survives_and_is_checked(s3_bucket: str) -> None:  # noqa: F811
    url = f"{s3_bucket}/artifacts/.checkpoints/run1/train"
    cp = open_checkpoint(url, "train")
    assert cp.load() is None
    cp.save({"epoch": 3})
    assert open_checkpoint(url, "train").load() == {"epoch": 3}
    store = open_artifact_store(url)
    data = store.fs.cat_file(url)
    store.fs.pipe_file(url, data[:-3])  # cut short: refused before anything is unpickled
    from rota.errors import ArtifactError

    with pytest.raises(ArtifactError, match="corrupt"):
        open_checkpoint(url, "train").load()
