"""The opcode readers: what a pickle or joblib file holds, told without running any of it.

Hostile inputs (a __reduce__ that would touch a marker file or call os.system, truncated streams,
deep nesting, announced lengths of exabytes, random corruption) must give a description or
NotAPickle, never run code, never exhaust memory.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import os
import pathlib
import pickle
import random
import struct
import zlib
from pathlib import Path
from typing import Any

import cloudpickle
import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from rota.artifacts import pickleinfo, picklevm
from rota.artifacts.joblibinfo import read_joblib
from rota.artifacts.pickleinfo import NotAPickle, read_pickle


class Touch:
    """Unpickling this creates *marker*: the stand-in for any code a hostile pickle runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


class System:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.marker}",))


class Point:
    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y


@dataclasses.dataclass
class Pair:
    left: int
    right: str


def info(data: bytes, *, seekable: bool = True) -> pickleinfo.PickleInfo:
    return read_pickle(io.BytesIO(data), seekable=seekable)


def _local_class_instance() -> Any:
    @dataclasses.dataclass
    class Local:
        x: int

    return Local(1)


def su(text: str) -> bytes:
    """SHORT_BINUNICODE *text*."""
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


# --- what ordinary pickles are ------------------------------------------------------------------

KINDS = [
    (Point(1, 2), f"{__name__}.Point", False),
    (Pair(1, "a"), f"{__name__}.Pair", False),
    ([1, 2, 3], "list", False),
    ({"a": 1, "b": [2]}, "dict", False),
    ((1, "x"), "tuple", False),
    ({1, 2}, "set", False),
    ("text", "str", False),
    (b"raw", "bytes", False),
    (None, "NoneType", False),
    (datetime.datetime(2024, 1, 2), "datetime.datetime", True),
    (np.arange(6.0).reshape(2, 3), "numpy.ndarray", False),
]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize(("value", "type_name", "called"), KINDS)
def test_ordinary_pickles_are_named_by_their_type(
    value: Any, type_name: str, called: bool, protocol: int
) -> None:
    found = info(pickle.dumps(value, protocol=protocol))
    kind = found.type_name.partition(" of ")[0]  # "list of 3 items"; older protocols call set()
    assert (kind, found.made_by_call, found.complete) == (type_name, called, True)
    assert found.protocol == (protocol if protocol >= 2 else 0)


def test_containers_are_counted() -> None:
    assert info(pickle.dumps([1, 2, 3])).type_name == "list of 3 items"
    assert info(pickle.dumps({"a": 1, "b": [2]})).type_name == "dict of 2 items"
    assert info(pickle.dumps(tuple(range(300)))).type_name == "tuple of 300 items"


def test_a_class_pickled_by_value_and_a_function_are_named() -> None:
    found = info(cloudpickle.dumps(_local_class_instance()))
    assert found.type_name.endswith(".Local (class pickled by value)")
    assert "cloudpickle.cloudpickle._make_skeleton_class" in found.imports
    assert info(cloudpickle.dumps(lambda x: x)).type_name == "function (pickled by value)"
    assert info(pickle.dumps(os.path.join)).type_name == "a reference to posixpath.join"


def test_a_stream_that_is_not_seekable_reads_the_same() -> None:
    data = pickle.dumps({"blob": b"x" * 100_000, "points": [Point(1, 2)] * 3}, protocol=5)
    assert info(data, seekable=False) == info(data)


# --- hostile pickles ----------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [0, 2, 5])
@pytest.mark.parametrize("kind", [Touch, System])
def test_a_reduce_that_runs_code_is_named_not_run(
    tmp_path: Path, protocol: int, kind: type[Touch | System]
) -> None:
    marker = tmp_path / "marker"
    data = pickle.dumps({"payload": kind(marker)}, protocol=protocol)
    found = info(data)
    assert found.type_name == "dict of 1 item"
    callee = "pathlib.Path.touch" if kind is Touch else f"{os.name}.system"
    # protocols before 4 name a method as getattr(class, name)
    assert (callee if protocol >= 4 or kind is System else "pathlib.Path") in found.imports
    top = info(pickle.dumps(kind(marker), protocol=protocol))
    assert (top.type_name, top.made_by_call) == (callee, True)
    assert not marker.exists()
    pickle.loads(data)  # the pickle does run code when loaded: the check above can fail
    assert marker.exists()


def test_every_truncation_is_not_a_pickle(tmp_path: Path) -> None:
    value = {"points": [Point(i, i) for i in range(3)], "name": "ab" * 50, "run": Touch(tmp_path)}
    data = pickle.dumps(value, protocol=5)
    for cut in range(len(data)):
        for seekable in (True, False):
            with pytest.raises(NotAPickle, match=r"truncated|underflow|MARK"):
                info(data[:cut], seekable=seekable)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x80\x05\xff.", "not a pickle opcode"),
        (b"\x80\x05h\x07.", "memo entry 7"),
        (b"\x80\x05a.", "underflow"),
        (b"\x80\x05K\x01\x93.", "underflow"),
        (b"\x80\x05K\x01K\x02\x93.", "STACK_GLOBAL"),
        (b"\x80\x05e.", "no MARK"),
        (b"\x80\x05(K\x01d.", "odd number"),
        (b"\x80\x05\x8a\xff\xff\xff\xff.", "truncated"),
        (b"\x80\x05\x8b\xfb\xff\xff\xff.", "negative length"),
        (b"\x80\x05X\x02\x00\x00\x00\xff\xfe.", "bad unicodestring4"),
        (b"", "truncated"),
    ],
)
def test_malformed_streams_are_not_pickles(data: bytes, message: str) -> None:
    with pytest.raises(NotAPickle, match=message):
        info(data)


@pytest.mark.parametrize("seekable", [True, False])
@pytest.mark.parametrize("opcode", [b"\x8e", b"\x8d", b"\x96"])  # BINBYTES8 BINUNICODE8 BYTEARRAY8
def test_an_exabyte_length_is_refused_without_reading_it(opcode: bytes, seekable: bool) -> None:
    data = b"\x80\x05" + opcode + struct.pack("<Q", 2**62) + b"tiny."
    with pytest.raises(NotAPickle, match="truncated"):
        info(data, seekable=seekable)


def test_long_values_are_passed_over_not_kept() -> None:
    big = b"\x00" * (20 * 1024 * 1024)
    found = info(pickle.dumps({"weights": big, "text": "y" * 100_000}, protocol=5))
    assert (found.type_name, found.complete) == ("dict of 2 items", True)
    assert info(pickle.dumps("z" * 200_000, protocol=0)).type_name == "str"  # one long text line


def test_deep_nesting_reads_without_recursion() -> None:
    depth = 200_000
    lists = b"\x80\x04" + b"]" * depth + b"a" * (depth - 1) + b"."  # [[[...]]] by APPENDs
    assert info(lists).type_name == "list of 1 item"
    tuples = b"\x80\x04" + b"(" * 5_000 + b"t" * 5_000 + b"."  # ((((),),),) by MARKs
    assert info(tuples).type_name == "tuple of 1 item"


def test_nesting_past_the_depth_limit_stops_with_what_it_has() -> None:
    data = b"\x80\x04]" + b"(" * (picklevm.MAX_DEPTH + 10) + b"."
    found = info(data)
    assert not found.complete
    assert found.type_name == "list of 0 items" or found.type_name.startswith("list of at least")
    assert "nested more than" in found.note


def test_a_pickle_longer_than_the_opcode_budget_is_read_in_part() -> None:
    found = info(pickle.dumps(list(range(picklevm.MAX_OPCODES + 10_000)), protocol=5))
    assert not found.complete
    assert found.type_name.startswith("list of at least ")
    assert f"read {picklevm.MAX_OPCODES:,} opcodes" in found.note


def test_random_corruption_never_escapes_as_another_error_or_runs_code(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    seeds = [
        pickle.dumps([Touch(marker), {"a": (1, 2.5, "x")}, Point(1, 2)], protocol=p)
        for p in (0, 2, 4, 5)
    ]
    rng = random.Random(5)
    outcomes = {"info": 0, "refused": 0}
    for _ in range(3_000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            info(bytes(data))
            outcomes["info"] += 1
        except NotAPickle:
            outcomes["refused"] += 1
    assert outcomes["info"] > 0 and outcomes["refused"] > 0
    assert not marker.exists()


# --- joblib -------------------------------------------------------------------------------------


def dumped(value: Any, compress: Any = 0) -> io.BytesIO:
    buf = io.BytesIO()
    joblib.dump(value, buf, compress=compress)
    buf.seek(0)
    return buf


def test_a_joblib_estimator_is_named_past_its_inline_arrays() -> None:
    model = LogisticRegression().fit(np.random.default_rng(1).random((40, 3)), [0, 1] * 20)
    found, compression = read_joblib(dumped(model))
    assert compression is None
    assert found.type_name == "sklearn.linear_model._logistic.LogisticRegression"
    assert found.complete
    assert "joblib.numpy_pickle.NumpyArrayWrapper" in found.imports


ARRAYS = {
    "floats": np.arange(1000.0),
    "objects": np.array([1, "x", None], dtype=object),
    "text": np.array(["ab", "cde"]),
    "records": np.zeros(3, dtype=[("a", "<i4"), ("b", ">f8")]),
    "scalar": np.array(7),
    "empty": np.zeros((0, 4)),
    "fortran": np.asfortranarray(np.arange(12).reshape(3, 4)),
    "dates": np.array(["2024-01-01"], dtype="M8[ns]"),
    "after": "the last key: read only if every array above was passed over exactly",
}


@pytest.mark.parametrize("compress", [0, 3, ("gzip", 3), ("bz2", 3), ("lzma", 3), ("xz", 3)])
def test_joblib_arrays_of_every_layout_and_compression_are_passed_over(compress: Any) -> None:
    found, compression = read_joblib(dumped(ARRAYS, compress))
    expected = {0: None, 3: "zlib"}.get(compress) if not isinstance(compress, tuple) else None
    assert compression == (compress[0] if isinstance(compress, tuple) else expected)
    assert (found.type_name, found.complete) == (f"dict of {len(ARRAYS)} items", True)


def test_a_hostile_joblib_file_is_named_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    for compress in (0, 3):
        found, _ = read_joblib(dumped({"x": np.ones(3), "evil": Touch(marker)}, compress))
        assert "pathlib.Path.touch" in found.imports and found.complete
    assert not marker.exists()


def test_a_joblib_array_cut_short_is_not_a_pickle() -> None:
    data = dumped(np.arange(100_000.0)).getvalue()
    with pytest.raises(NotAPickle, match="truncated"):
        read_joblib(io.BytesIO(data[: len(data) // 2]))
    packed = dumped(np.arange(100_000.0), 3).getvalue()
    with pytest.raises(NotAPickle, match=r"truncated|corrupt"):
        read_joblib(io.BytesIO(packed[: len(packed) // 2]))


def test_a_joblib_wrapper_with_a_layout_it_cannot_read_stops_there() -> None:
    wrapper = su("joblib.numpy_pickle") + su("NumpyArrayWrapper") + b"\x93)\x81"
    data = b"\x80\x04" + wrapper + b"}" + su("shape") + su("bogus") + b"sb."
    found, _ = read_joblib(io.BytesIO(data))
    assert not found.complete and "layout is not understood" in found.note
    assert found.type_name == "joblib.numpy_pickle.NumpyArrayWrapper"


def test_a_decompression_bomb_stops_at_the_scan_budget() -> None:
    """600 MiB of zeros behind a wrapper announcing an 8 GiB array, zlib-compressed to 3 MB."""
    plain = dumped(np.zeros(4)).getvalue()
    announced = struct.pack("<i", 2**30)
    head = plain.replace(b"shape\x94K\x04\x85", b"shape\x94J" + announced + b"\x85")[:-33]
    packer = zlib.compressobj(1)
    zeros = bytes(1024 * 1024)
    parts = [packer.compress(head), *(packer.compress(zeros) for _ in range(600)), packer.flush()]
    found, compression = read_joblib(io.BytesIO(b"".join(parts)))
    assert compression == "zlib" and not found.complete
    assert found.note == "stopped: read 512 MiB of decompressed data"
    assert found.type_name == "joblib.numpy_pickle.NumpyArrayWrapper"


def test_random_corruption_of_joblib_files_is_refused_or_read(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    seeds = [dumped({"a": np.arange(10.0), "e": Touch(marker)}, c).getvalue() for c in (0, 3)]
    seeds.append(dumped(ARRAYS, ("xz", 1)).getvalue())
    rng = random.Random(11)
    outcomes = {"read": 0, "refused": 0}
    for _ in range(1_500):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            read_joblib(io.BytesIO(bytes(data)))
            outcomes["read"] += 1
        except NotAPickle:
            outcomes["refused"] += 1
    assert outcomes["read"] > 0 and outcomes["refused"] > 0
    assert not marker.exists()


def test_an_lz4_joblib_file_is_refused_by_name() -> None:
    with pytest.raises(NotAPickle, match="lz4"):
        read_joblib(io.BytesIO(b'\x04"M\x18' + b"\x00" * 20))
