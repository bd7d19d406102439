"""Serializers: which one each kind of value gets, exact round trips, overrides and their errors."""

from __future__ import annotations

import enum
import io
import math
import subprocess
import sys
import textwrap
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from rota.artifacts import serializers
from rota.artifacts.preview import preview
from rota.errors import ArtifactError, DefinitionError


class Color(enum.IntEnum):
    RED = 1


class Point:
    """A class of the test module: only (cloud)pickle stores it."""

    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    __hash__ = None  # type: ignore[assignment]


def _shared() -> list[Any]:
    inner = [1, 2]
    return [inner, inner]


def roundtrip(ser: serializers.Serializer, value: Any) -> Any:
    buf = io.BytesIO()
    ser.dump(value, buf)
    buf.seek(0)
    return ser.load(buf)


PLAIN = [
    None,
    True,
    0,
    -(2**80),
    1.5,
    -0.0,
    1e308,
    5e-324,
    "",
    "naïve ✓",
    [],
    {},
    [1, "a", None, 2.5, [True, {"k": []}]],
    {"a": {"b": [1, 2, {"c": None}]}, "": 0},
]

NOT_PLAIN = [
    (1, 2),
    {1, 2},
    frozenset(),
    math.nan,
    math.inf,
    [1, -math.inf],
    {1: "int key"},
    {"nested": {(1, 2): "tuple key"}},
    Color.RED,
    b"bytes",
    2 ** (20_000),
    _shared(),
    Point(1, 2),
]


@pytest.mark.parametrize("value", PLAIN, ids=repr)
def test_plain_data_is_json_and_round_trips_exactly(value: Any) -> None:
    ser = serializers.choose(value)
    assert ser.name == "json"
    back = roundtrip(ser, value)
    assert back == value
    assert repr(back) == repr(value)  # same types all the way down: -0.0, bool vs int, floats


@pytest.mark.parametrize("value", NOT_PLAIN, ids=lambda v: type(v).__name__)
def test_values_json_would_change_fall_back_to_pickle(value: Any) -> None:
    assert not serializers.get("json").accepts(value)
    ser = serializers.choose(value)
    assert ser.name == "pickle"
    back = roundtrip(ser, value)
    if isinstance(value, float) and math.isnan(value):
        assert math.isnan(back)
    else:
        assert back == value
        assert type(back) is type(value)


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype=np.float32).reshape(3, 4),
        np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3)),
        np.array([], dtype=np.uint8),
        np.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]),
        np.array(["ab", "c"]),
        np.array(["2024-01-01"], dtype="datetime64[D]"),
    ],
    ids=["float32", "fortran", "empty", "structured", "unicode", "datetime"],
)
def test_numpy_arrays_are_npy(array: np.ndarray[Any, Any]) -> None:
    ser = serializers.choose(array)
    assert (ser.name, ser.extension) == ("npy", ".npy")
    back = roundtrip(ser, array)
    assert back.dtype == array.dtype
    assert back.flags.f_contiguous == array.flags.f_contiguous
    np.testing.assert_array_equal(back, array)


@pytest.mark.parametrize(
    "value",
    [
        np.array([1, "a"], dtype=object),
        np.float64(1.5),
        np.ma.masked_array([1, 2], mask=[False, True]),
    ],
    ids=["object-dtype", "scalar", "masked"],
)
def test_numpy_values_npy_cannot_hold_are_pickled(value: Any) -> None:
    assert serializers.choose(value).name == "pickle"


def test_dataframe_is_parquet_and_keeps_index_and_dtypes() -> None:
    df = pd.DataFrame(
        {
            "n": [3, 1, 2],
            "x": [0.5, -1.0, 2.25],
            "s": ["a", "b", "c"],
            "flag": [True, False, True],
            "when": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01"]),
        },
        index=pd.Index(["r1", "r2", "r3"], name="row"),
    )
    ser = serializers.choose(df)
    assert (ser.name, ser.extension) == ("parquet", ".parquet")
    back = roundtrip(ser, df)
    assert type(back) is pd.DataFrame
    pd.testing.assert_frame_equal(back, df)


def test_dataframe_keeps_a_range_index_with_a_step() -> None:
    df = pd.DataFrame({"v": [1.0, 2.0, 3.0]}, index=pd.RangeIndex(10, 16, 2))
    back = roundtrip(serializers.choose(df), df)
    pd.testing.assert_frame_equal(back, df)


def test_arrow_table_comes_back_a_table_with_its_metadata() -> None:
    table = pa.table({"a": [1, 2, 3], "b": ["x", "y", None]}).replace_schema_metadata(
        {"owner": "rota"}
    )
    ser = serializers.choose(table)
    assert ser.name == "parquet"
    back = roundtrip(ser, table)
    assert isinstance(back, pa.Table)
    assert back.equals(table, check_metadata=True)


def test_arrow_table_made_from_pandas_stays_a_table() -> None:
    table = pa.Table.from_pandas(pd.DataFrame({"a": [1, 2]}))
    back = roundtrip(serializers.choose(table), table)
    assert isinstance(back, pa.Table)
    assert back.equals(table, check_metadata=True)


def test_pandas_series_is_pickled() -> None:
    series = pd.Series([1, 2], name="s")
    ser = serializers.choose(series)
    assert ser.name == "pickle"
    pd.testing.assert_series_equal(roundtrip(ser, series), series)


def test_sklearn_estimator_is_joblib_and_predicts_the_same() -> None:
    from sklearn.linear_model import LogisticRegression

    x = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0]])
    y = np.array([0, 0, 1, 1])
    model = LogisticRegression().fit(x, y)
    ser = serializers.choose(model)
    assert (ser.name, ser.extension) == ("joblib", ".joblib")
    back = roundtrip(ser, model)
    assert type(back) is LogisticRegression
    np.testing.assert_array_equal(back.predict_proba(x), model.predict_proba(x))


def test_local_classes_and_closures_use_the_pickle_fallback() -> None:
    class Local:
        def __init__(self, v: int) -> None:
            self.v = v

    offset = 10
    value = {"obj": Local(3), "fn": lambda n: n + offset, "point": Point(1, 2)}
    ser = serializers.choose(value)
    assert (ser.name, ser.extension) == ("pickle", ".pkl")
    back = roundtrip(ser, value)
    assert back["obj"].v == 3
    assert back["fn"](1) == 11
    assert back["point"] == Point(1, 2)


def test_override_by_name() -> None:
    assert serializers.choose([1, 2], "pickle").name == "pickle"
    assert serializers.choose(pd.DataFrame({"a": [1]}), "pickle").name == "pickle"
    assert serializers.choose(np.zeros(2), "npy").name == "npy"


def test_unknown_serializer_name_lists_the_names() -> None:
    with pytest.raises(DefinitionError, match="unknown serializer 'yaml'") as info:
        serializers.choose([1], "yaml")
    for name in ("json", "npy", "parquet", "joblib", "pickle"):
        assert name in str(info.value)
    with pytest.raises(DefinitionError):
        serializers.get("yaml")


@pytest.mark.parametrize(
    ("value", "name"),
    [((1, 2), "json"), (math.nan, "json"), ([1.0, 2.0], "npy"), ({"a": 1}, "parquet")],
)
def test_override_that_cannot_hold_the_value_is_an_artifact_error(value: Any, name: str) -> None:
    with pytest.raises(ArtifactError, match=f"serializer '{name}' cannot store"):
        serializers.choose(value, name)


def test_get_and_names() -> None:
    assert serializers.names() == ["json", "npy", "parquet", "joblib", "pickle"]
    for name in serializers.names():
        assert serializers.get(name).name == name


def test_plain_data_flow_never_imports_the_heavy_libraries(tmp_path: Any) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        from rota.artifacts.store import ArtifactStore
        store = ArtifactStore({str(tmp_path)!r})
        class Obj:
            pass
        for i, value in enumerate([{{"a": [1, 2.5]}}, (1, 2), Obj(), "text"]):
            out = store.put("run", f"t{{i}}", -1, value)
            store.get(out.uri, out.serializer, producer="t", content_hash=out.content_hash)
        store.preview([1, 2, 3])
        heavy = [m for m in ("numpy", "pandas", "pyarrow", "joblib", "sklearn") if m in sys.modules]
        print(",".join(heavy))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == ""


# --- previews ----------------------------------------------------------------------------------


def test_preview_of_plain_data_is_a_short_repr() -> None:
    assert preview([1, 2, 3]) == "[1, 2, 3]"
    long = preview(list(range(10_000)))
    assert long.startswith("[0, 1, 2") and "..." in long and len(long) < 100
    assert len(preview("x" * 10_000)) <= 300


def test_preview_of_numpy_shows_shape_dtype_and_a_few_values() -> None:
    text = preview(np.arange(1_000_000, dtype=np.float64).reshape(1000, 1000))
    assert text.startswith("ndarray shape=(1000, 1000) dtype=float64 [0., 1., 2.")
    assert text.endswith(", …]")
    assert len(text) < 100


def test_preview_of_pandas_shows_shape_and_head() -> None:
    text = preview(pd.DataFrame({"a": range(1000), "b": 1.5}))
    lines = text.splitlines()
    assert lines[0] == "DataFrame 1000 rows x 2 columns"
    assert len(lines) == 7  # the header line, the column names, five rows
    assert "999" not in text


def test_preview_of_arrow_shows_rows_and_schema() -> None:
    text = preview(pa.table({"a": [1, 2, 3], "b": ["x", "y", "z"]}))
    assert text.splitlines() == ["pyarrow.Table num_rows=3", "a: int64", "b: string"]


def test_preview_survives_a_broken_repr() -> None:
    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert preview(Broken()).startswith("<Broken instance at 0x")
