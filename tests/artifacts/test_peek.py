"""ArtifactStore.peek: stored outputs previewed by safe readers only, whatever the serializer name
the store claims, with the content hash checked first; nothing on that path can unpickle."""

from __future__ import annotations

import ast
import hashlib
import io
import pathlib
import pickle
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import rota.artifacts
from rota.artifacts.peek import MAX_ARRAY_BYTES
from rota.artifacts.store import ArtifactStore
from rota.errors import ArtifactError


class Touch:
    """Unpickling this creates *marker*."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(str(tmp_path / "artifacts"))


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "marker"


def plant(store: ArtifactStore, name: str, data: bytes) -> tuple[str, str]:
    """Write *data* as if it were a stored output: (uri, its true content hash)."""
    uri = store.uri_for("run", name, -1, "")
    Path(uri).parent.mkdir(parents=True, exist_ok=True)
    Path(uri).write_bytes(data)
    return uri, hashlib.blake2b(data).hexdigest()


def peek_value(store: ArtifactStore, value: Any, serializer: str | None = None) -> Any:
    out = store.put("run", "t", -1, value, serializer)
    return store.peek(out.uri, out.serializer, producer="t", content_hash=out.content_hash)


# --- safe formats -------------------------------------------------------------------------------


def test_json_outputs_are_previewed(store: ArtifactStore) -> None:
    shown = peek_value(store, {"a": [1, 2.5], "b": None})
    assert not shown.pickled and shown.text == "{'a': [1, 2.5], 'b': None}"


def test_text_is_shown_as_lines_with_control_characters_escaped(store: ArtifactStore) -> None:
    shown = peek_value(store, "line one\nred \x1b[31malert\x1b[0m \u202eevil\x07")
    assert shown.text.splitlines() == [
        "str of 34 characters:",
        "line one",
        "red \\x1b[31malert\\x1b[0m \\u202eevil\\x07",
    ]


def test_npy_outputs_are_previewed(store: ArtifactStore) -> None:
    shown = peek_value(store, np.arange(12.0).reshape(3, 4))
    assert shown.text == "ndarray shape=(3, 4) dtype=float64 [0., 1., 2., 3., 4., 5., …]"
    fortran = peek_value(store, np.asfortranarray(np.arange(6).reshape(2, 3)))
    assert fortran.text.endswith("[0, 1, 2, 3, 4, 5]")  # C order, as the array reads


def test_a_big_npy_array_shows_its_first_values_without_reading_it_all(
    store: ArtifactStore,
) -> None:
    rows = MAX_ARRAY_BYTES // 8 // 4 + 1  # four float64 columns: just past the limit
    big = np.zeros((rows, 4))
    big[0] = [1.0, 2.0, 3.0, 4.0]
    shown = peek_value(store, big)
    assert shown.text == f"ndarray shape=({rows}, 4) dtype=float64 [1., 2., 3., 4., 0., 0., …]"
    column_first = peek_value(store, np.asfortranarray(big))
    assert column_first.text == f"ndarray shape=({rows}, 4) dtype=float64"


def test_an_npy_object_array_is_not_read(store: ArtifactStore, marker: Path) -> None:
    buf = io.BytesIO()
    np.save(buf, np.array([Touch(marker), 1], dtype=object), allow_pickle=True)
    uri, digest = plant(store, "objects.npy", buf.getvalue())
    shown = store.peek(uri, "npy", producer="t", content_hash=digest)
    assert not shown.pickled
    assert shown.text == "ndarray shape=(2,) dtype=object: object array: not previewed"
    assert not marker.exists()


def test_an_npy_header_that_lies_about_the_data_is_an_error(store: ArtifactStore) -> None:
    buf = io.BytesIO()
    np.save(buf, np.arange(1000.0))
    uri, digest = plant(store, "short.npy", buf.getvalue()[:-8])
    with pytest.raises(ArtifactError, match=r"announces 8000 bytes of data, not 7992"):
        store.peek(uri, "npy", producer="t", content_hash=digest)


def test_parquet_outputs_are_previewed(store: ArtifactStore) -> None:
    frame = peek_value(store, pd.DataFrame({"a": range(100), "b": 1.5}))
    lines = frame.text.splitlines()
    assert lines[0] == "DataFrame 100 rows x 2 columns" and len(lines) == 7
    table = peek_value(store, pa.table({"a": [1, 2, 3], "b": ["x", "y", "z"]}))
    assert table.text.splitlines() == ["pyarrow.Table num_rows=3", "a: int64", "b: string"]


def test_parquet_extension_metadata_holding_a_pickle_is_not_unpickled(
    store: ArtifactStore, marker: Path
) -> None:
    """The old pyarrow hole (arrow.py_extension_type metadata was unpickled on read)."""
    metadata = {
        b"ARROW:extension:name": b"arrow.py_extension_type",
        b"ARROW:extension:metadata": pickle.dumps(Touch(marker)),
    }
    schema = pa.schema([pa.field("x", pa.int64(), metadata=metadata)])
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_arrays([pa.array([1, 2, 3])], schema=schema), buf)
    uri, digest = plant(store, "ext.parquet", buf.getvalue())
    shown = store.peek(uri, "parquet", producer="t", content_hash=digest)
    assert shown.text.splitlines() == ["pyarrow.Table num_rows=3", "x: int64"]
    assert not marker.exists()


# --- pickles are described, never loaded ----------------------------------------------------------


def test_a_pickle_output_is_described_not_loaded(store: ArtifactStore, marker: Path) -> None:
    shown = peek_value(store, {"evil": Touch(marker)}, "pickle")
    assert shown.pickled
    assert shown.text.splitlines() == [
        "type dict of 1 item (pickle protocol 5)",
        "imports: pathlib.Path.touch, pathlib.PosixPath",
    ]
    assert not marker.exists()


def test_a_joblib_output_is_described_not_loaded(store: ArtifactStore, marker: Path) -> None:
    buf = io.BytesIO()
    joblib.dump(Touch(marker), buf, compress=3)
    uri, digest = plant(store, "evil.joblib", buf.getvalue())
    shown = store.peek(uri, "joblib", producer="t", content_hash=digest)
    assert shown.text.splitlines()[0] == (
        "made by calling pathlib.Path.touch (joblib, pickle protocol 4, zlib-compressed)"
    )
    assert not marker.exists()


def test_names_in_a_pickle_are_printed_escaped(store: ArtifactStore) -> None:
    name = "evil\x1b]0;owned\x07"
    data = b"\x80\x04\x8c" + bytes([len(name)]) + name.encode() + b"\x8c\x01X\x93)\x81."
    uri, digest = plant(store, "named.pkl", data)
    shown = store.peek(uri, "pickle", producer="t", content_hash=digest)
    assert shown.text.splitlines()[0] == "type evil\\x1b]0;owned\\x07.X (pickle protocol 4)"


@pytest.mark.parametrize("claimed", ["json", "npy", "parquet"])
def test_a_pickle_claimed_to_be_a_safe_format_is_an_error_not_a_fallback(
    store: ArtifactStore, marker: Path, claimed: str
) -> None:
    uri, digest = plant(store, "evil.pkl", pickle.dumps(Touch(marker), protocol=5))
    with pytest.raises(ArtifactError, match="cannot be previewed") as caught:
        store.peek(uri, claimed, producer="t", content_hash=digest)
    assert "its first bytes are a pickle's; it was not loaded" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert not marker.exists()


def test_an_unknown_serializer_name_is_an_error(store: ArtifactStore, marker: Path) -> None:
    uri, digest = plant(store, "evil.pkl", pickle.dumps(Touch(marker)))
    with pytest.raises(ArtifactError, match="serializer 'cloudpickle' is unknown"):
        store.peek(uri, "cloudpickle", producer="t", content_hash=digest)
    assert not marker.exists()


def test_the_content_hash_is_checked_before_any_reader(store: ArtifactStore) -> None:
    out = store.put("run", "t", -1, {"a": 1})
    Path(out.uri).write_bytes(b'{"a": 2}')
    with pytest.raises(ArtifactError, match="is corrupt: content hash"):
        store.peek(out.uri, out.serializer, producer="t", content_hash=out.content_hash)


# --- by construction ----------------------------------------------------------------------------

UNPICKLERS = {"pickle", "_pickle", "cPickle", "cloudpickle", "joblib", "dill", "marshal", "shelve"}
PREVIEW_PATH = [
    "peek.py", "pickleinfo.py", "picklevm.py", "picklebytes.py", "joblibinfo.py", "preview.py",
]  # fmt: skip


@pytest.mark.parametrize("module", PREVIEW_PATH)
def test_the_preview_path_imports_no_unpickler_and_calls_no_load(module: str) -> None:
    source = Path(rota.artifacts.__file__).parent / module
    tree = ast.parse(source.read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
            imported.update(f"{node.module}.{alias.name}" for alias in node.names)
    assert not {name.partition(".")[0] for name in imported} & UNPICKLERS
    assert "rota.artifacts.serializers" not in imported
    assert not any(name.startswith("rota.artifacts.store") for name in imported)
    loads = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr in {"load", "loads", "read_array", "Unpickler"}
        and not (isinstance(node.value, ast.Name) and node.value.id == "json")
    ]
    assert loads == []
