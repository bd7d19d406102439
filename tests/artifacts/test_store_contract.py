"""One contract for every ArtifactStore backend: add a new backend to STORES and it must pass all.

"local" is a folder, "memory" is fsspec's in-memory filesystem (the temporary-key-then-move path),
"s3" is a real S3 API: a moto server on 127.0.0.1 (tests/fixtures_s3.py).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from fixtures_s3 import s3_bucket, s3_server  # noqa: F401
from rota.artifacts import serializers
from rota.artifacts.store import ArtifactStore, StoredOutput, open_artifact_store
from rota.errors import ArtifactError, DefinitionError

STORES = ["local", "memory", "s3"]


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    """An empty store of each kind."""
    if request.param == "local":
        yield ArtifactStore(str(tmp_path / "artifacts"))
    elif request.param == "memory":
        mem = ArtifactStore(f"memory://rota-test-{uuid.uuid4().hex}")
        yield mem
        if mem.fs.exists(mem.root):
            mem.fs.rm(mem.root, recursive=True)
    else:
        bucket = request.getfixturevalue("s3_bucket")
        endpoint = request.getfixturevalue("s3_server")
        yield ArtifactStore(f"{bucket}/artifacts", {"endpoint_url": endpoint})


def stored_bytes(store: ArtifactStore, uri: str) -> bytes:
    return bytes(store.fs.cat_file(uri))


def files_under(store: ArtifactStore) -> list[str]:
    """Every object under the store's root, hidden temporary ones included."""
    if not store.fs.exists(store.root):
        return []
    return sorted(str(p) for p in store.fs.find(store.root, withdirs=False))


VALUES: list[tuple[str, Any]] = [
    ("json", {"metrics": [0.5, 1.0], "ok": True, "name": "ünïcode"}),
    ("npy", np.arange(24, dtype=np.int32).reshape(2, 3, 4)),
    ("parquet", pd.DataFrame({"a": [1, 2]}, index=pd.Index(["x", "y"], name="k"))),
    ("parquet", pa.table({"a": [1.5, None]})),
    ("pickle", {"tuple": (1, 2), "set": {3}}),
]


def assert_same(back: Any, value: Any) -> None:
    if isinstance(value, np.ndarray):
        np.testing.assert_array_equal(back, value)
        assert back.dtype == value.dtype
    elif isinstance(value, pd.DataFrame):
        pd.testing.assert_frame_equal(back, value)
    elif isinstance(value, pa.Table):
        assert isinstance(back, pa.Table)
        assert back.equals(value, check_metadata=True)
    else:
        assert back == value
        assert type(back) is type(value)


@pytest.mark.parametrize(
    ("name", "value"), VALUES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(VALUES)]
)
def test_put_get_round_trip(store: ArtifactStore, name: str, value: Any) -> None:
    out = store.put("run1", "task", -1, value)
    assert isinstance(out, StoredOutput)
    assert out.serializer == name
    assert out.uri == store.uri_for("run1", "task", -1, serializers.get(name).extension)
    back = store.get(out.uri, out.serializer, producer="task", content_hash=out.content_hash)
    assert_same(back, value)
    assert_same(store.get(out.uri, out.serializer, producer="task"), value)


def test_size_and_content_hash_describe_the_stored_bytes(store: ArtifactStore) -> None:
    out = store.put("run1", "task", 3, np.linspace(0.0, 1.0, 1000))
    data = stored_bytes(store, out.uri)
    assert out.size == len(data)
    assert out.content_hash == hashlib.blake2b(data).hexdigest()


def test_uri_is_a_pure_function_of_run_task_and_index(store: ArtifactStore) -> None:
    assert store.uri_for("r", "t", -1, ".json") == f"{store.root}/r/t.json"
    assert store.uri_for("r", "t", 7, ".npy") == f"{store.root}/r/t@7.npy"
    assert store.uri_for("r", "t", 7, ".npy") == store.uri_for("r", "t", 7, ".npy")
    first = store.put("r", "t", 2, [1, 2, 3])
    second = store.put("r", "t", 2, [4, 5])
    assert first.uri == second.uri == f"{store.root}/r/t@2.json"
    assert store.get(second.uri, "json", producer="t", content_hash=second.content_hash) == [4, 5]
    assert files_under(store) == [store.fs._strip_protocol(second.uri)]


def test_ids_that_are_not_path_segments_are_refused(store: ArtifactStore) -> None:
    for run_id, task_id in [("r", "../t"), ("r/x", "t"), ("", "t"), (".hidden", "t")]:
        with pytest.raises(ArtifactError, match="cannot name an artifact"):
            store.uri_for(run_id, task_id, -1, ".json")


class _FailsHalfway:
    """A serializer that writes 3 MB, then fails: the write must leave nothing visible."""

    name = "fails-halfway"
    extension = ".bin"

    def accepts(self, value: Any) -> bool:
        return True

    def dump(self, value: Any, fh: BinaryIO) -> None:
        for _ in range(3):
            fh.write(b"\0" * (1 << 20))
        raise RuntimeError("disk of the mind is full")

    def load(self, fh: BinaryIO) -> Any:
        raise AssertionError("never stored")


def _staging_files() -> set[str]:
    return {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("rota-artifact-")}


def test_a_serializer_failing_mid_write_leaves_nothing(
    store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serializers, "SERIALIZERS", (*serializers.SERIALIZERS, _FailsHalfway()))
    staging_before = _staging_files()
    with pytest.raises(ArtifactError, match=r"cannot serialize the output of task 't'.*full"):
        store.put("r", "t", -1, "anything", serializer="fails-halfway")
    assert not store.exists(store.uri_for("r", "t", -1, ".bin"))
    assert files_under(store) == []  # no temporary file or key either
    assert _staging_files() <= staging_before


def test_a_failed_rewrite_keeps_the_previous_output(store: ArtifactStore) -> None:
    good = store.put("r", "t", -1, {"v": 1}, serializer="pickle")
    unpicklable = [b"x" * (1 << 20), threading.Lock()]  # fails after 1 MB is written
    with pytest.raises(ArtifactError, match=r"cannot serialize.*with pickle.*lock"):
        store.put("r", "t", -1, unpicklable)
    assert store.get(good.uri, "pickle", producer="t", content_hash=good.content_hash) == {"v": 1}
    assert files_under(store) == [store.fs._strip_protocol(good.uri)]


def test_a_chosen_serializer_that_fails_falls_back_to_pickle(store: ArtifactStore) -> None:
    df = pd.DataFrame({"mixed": [1, "two", 3.0]})  # Parquet cannot type this column
    out = store.put("r", "t", -1, df)
    assert out.serializer == "pickle"
    back = store.get(out.uri, out.serializer, producer="t", content_hash=out.content_hash)
    pd.testing.assert_frame_equal(back, df)
    with pytest.raises(ArtifactError, match="with parquet"):
        store.put("r", "t", -1, df, serializer="parquet")


def test_missing_object_names_the_uri_and_the_producer(store: ArtifactStore) -> None:
    out = store.put("r", "train", -1, [1])
    store.fs.rm(out.uri)
    with pytest.raises(ArtifactError) as info:
        store.get(out.uri, out.serializer, producer="train", content_hash=out.content_hash)
    message = str(info.value)
    assert message == f"output of task 'train' is missing: {out.uri}"
    never = store.uri_for("r", "never", -1, ".pkl")
    with pytest.raises(ArtifactError, match=re.escape(f"'never' is missing: {never}")):
        store.get(never, "pickle", producer="never")


@pytest.mark.parametrize("value", [np.arange(1000.0), pd.DataFrame({"a": range(100)}), [1] * 50])
def test_truncated_object_is_corrupt(store: ArtifactStore, value: Any) -> None:
    out = store.put("r", "prep", -1, value)
    data = stored_bytes(store, out.uri)
    store.fs.pipe_file(out.uri, data[: len(data) // 2])
    with pytest.raises(ArtifactError) as info:
        store.get(out.uri, out.serializer, producer="prep", content_hash=out.content_hash)
    message = str(info.value)
    assert message.startswith(f"output of task 'prep' at {out.uri} is corrupt: content hash")
    assert "\n" not in message
    unreadable = re.escape(f"output of task 'prep' at {out.uri} is unreadable")
    with pytest.raises(ArtifactError, match=unreadable):
        store.get(out.uri, out.serializer, producer="prep")  # no hash: the loader notices


def test_flipped_byte_is_caught_by_the_hash(store: ArtifactStore) -> None:
    out = store.put("r", "prep", -1, np.zeros(1000))
    data = bytearray(stored_bytes(store, out.uri))
    data[-1] ^= 0xFF
    store.fs.pipe_file(out.uri, bytes(data))
    with pytest.raises(ArtifactError, match="is corrupt"):
        store.get(out.uri, out.serializer, producer="prep", content_hash=out.content_hash)


def test_large_outputs_round_trip(store: ArtifactStore) -> None:
    rng = np.random.default_rng(7)
    df = pd.DataFrame(
        {"id": np.arange(1_000_000, dtype=np.int64), "x": rng.random(1_000_000)},
        index=pd.RangeIndex(5, 2_000_005, 2),
    )
    array = rng.random(1_048_576)  # 8 MiB of float64
    out_df = store.put("big", "frame", -1, df)
    out_np = store.put("big", "array", 0, array)
    assert (out_df.serializer, out_np.serializer) == ("parquet", "npy")
    assert out_np.size > 8 * 1024 * 1024
    back_df = store.get(out_df.uri, "parquet", producer="frame", content_hash=out_df.content_hash)
    pd.testing.assert_frame_equal(back_df, df)
    back_np = store.get(out_np.uri, "npy", producer="array", content_hash=out_np.content_hash)
    np.testing.assert_array_equal(back_np, array)


class _ReadSpy:
    """Wraps an open file and records the size asked of every read()."""

    def __init__(self, fh: Any, reads: list[int]) -> None:
        self._fh, self._reads = fh, reads

    def read(self, size: int = -1) -> bytes:
        self._reads.append(size)
        return bytes(self._fh.read(size))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)

    def __enter__(self) -> _ReadSpy:
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()


def test_reads_are_streamed_never_whole(
    store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = store.put("r", "t", -1, np.arange(600_000, dtype=np.float64))  # 4.8 MB
    for whole in ("cat", "cat_file", "read_bytes", "get", "get_file", "read_text"):
        monkeypatch.setattr(store.fs, whole, _forbidden, raising=False)
    reads: list[int] = []
    real_open = store.fs.open
    monkeypatch.setattr(store.fs, "open", lambda *a, **k: _ReadSpy(real_open(*a, **k), reads))
    back = store.get(out.uri, "npy", producer="t", content_hash=out.content_hash)
    assert back.shape == (600_000,)
    if store.root.startswith("/"):  # a local folder is opened with open(): nothing to spy on
        assert reads == []
    else:
        assert reads and all(0 < size <= 1024 * 1024 for size in reads)


def _forbidden(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("a whole-object read")


def test_exists_and_delete_run(store: ArtifactStore) -> None:
    kept = store.put("keep", "t", -1, 1)
    gone = [store.put("drop", "t", i, i) for i in range(3)]
    assert all(store.exists(o.uri) for o in [kept, *gone])
    store.delete_run("drop")
    assert not any(store.exists(o.uri) for o in gone)
    assert store.exists(kept.uri)
    store.delete_run("drop")  # nothing left: no error
    store.delete_run("never-was")


def test_unknown_serializer_on_read(store: ArtifactStore) -> None:
    out = store.put("r", "t", -1, 1)
    with pytest.raises(DefinitionError, match="unknown serializer"):
        store.get(out.uri, "yaml", producer="t")


def test_wrong_serializer_on_read_is_unreadable(store: ArtifactStore) -> None:
    out = store.put("r", "t", -1, np.zeros(3))
    unreadable = re.escape(f"output of task 't' at {out.uri} is unreadable")
    with pytest.raises(ArtifactError, match=unreadable):
        store.get(out.uri, "parquet", producer="t")


def test_stores_on_the_same_root_share_one_filesystem(store: ArtifactStore) -> None:
    again = ArtifactStore(store.root, store.storage_options)
    assert again.fs is store.fs
    out = store.put("r", "t", -1, [1])
    assert again.get(out.uri, "json", producer="t") == [1]


# --- backend specifics ----------------------------------------------------------------------


def test_local_root_is_an_absolute_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = ArtifactStore("relative/dir/")
    assert store.root == str(tmp_path / "relative" / "dir")
    out = store.put("r", "t", -1, {"a": 1})
    assert Path(out.uri).read_bytes() == b'{"a":1}'
    assert sorted(os.listdir(tmp_path / "relative" / "dir" / "r")) == ["t.json"]


def test_a_folder_named_as_a_path_or_a_url_is_one_store(tmp_path: Path) -> None:
    from fsspec.implementations.local import LocalFileSystem

    plain = ArtifactStore(f"{tmp_path}/a/")  # read and written with os, fsspec not loaded
    url = ArtifactStore(f"file://{tmp_path}/a")  # through fsspec
    assert plain.root == url.root == str(tmp_path / "a")
    assert plain.fs_is_local and url.fs_is_local
    assert isinstance(plain.fs, LocalFileSystem)  # made when asked for
    out = plain.put("r", "t", -1, [1, 2])
    assert url.uri_for("r", "t", -1, ".json") == out.uri
    assert url.get(out.uri, out.serializer, producer="t", content_hash=out.content_hash) == [1, 2]
    assert url.exists(out.uri) and plain.exists(out.uri)
    plain.delete_run("r")
    assert not url.exists(out.uri) and not (tmp_path / "a" / "r").exists()
    plain.delete_run("r")  # nothing left: nothing happens


def test_a_store_reads_a_uri_of_another_root(tmp_path: Path) -> None:
    one, two = ArtifactStore(str(tmp_path / "one")), ArtifactStore(str(tmp_path / "two"))
    out = two.put("r", "t", -1, "hello")
    assert one.get(out.uri, out.serializer, producer="t") == "hello"


def test_open_artifact_store_on_s3_uses_the_endpoint_variable(
    s3_bucket: str,  # noqa: F811
    s3_server: str,  # noqa: F811
) -> None:
    store = open_artifact_store(f"{s3_bucket}/pre", {"ROTA_S3_ENDPOINT_URL": s3_server})
    assert store.root == f"{s3_bucket}/pre"
    assert store.storage_options == {"endpoint_url": s3_server}
    out = store.put("r", "t", 1, {"k": "v"})
    assert out.uri == f"{s3_bucket}/pre/r/t@1.json"
    assert store.get(out.uri, "json", producer="t", content_hash=out.content_hash) == {"k": "v"}


def test_open_artifact_store_on_a_folder_ignores_the_endpoint(tmp_path: Path) -> None:
    store = open_artifact_store(str(tmp_path), {"ROTA_S3_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert store.storage_options == {}
    assert store.root == str(tmp_path)
