"""Small outputs kept inline: serialized once, into memory while they fit, spilled past it."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rota.artifacts.inline import INLINE_LIMIT, SpillWriter, inline_uri, is_inline
from rota.artifacts.store import ArtifactStore, load_inline, peek_inline
from rota.errors import ArtifactError


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    if request.param == "local":
        yield ArtifactStore(str(tmp_path / "artifacts"))
    else:
        mem = ArtifactStore(f"memory://rota-inline-{uuid.uuid4().hex}")
        yield mem
        if mem.fs.exists(mem.root):
            mem.fs.rm(mem.root, recursive=True)


def _objects(store: ArtifactStore) -> list[str]:
    if not store.fs.exists(store.root):
        return []
    return sorted(str(p) for p in store.fs.find(store.root, withdirs=False))


def _staging() -> set[str]:
    return {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("rota-artifact-")}


def test_a_small_output_comes_back_inline_and_writes_nothing(store: ArtifactStore) -> None:
    before = _staging()
    out = store.put("r", "t", 3, {"n": 7}, inline_limit=INLINE_LIMIT)
    assert out.inline is not None and out.size == len(out.inline)
    assert out.uri == inline_uri("r", "t", 3) == "inline:r/t@3" and is_inline(out.uri)
    assert _objects(store) == [] and _staging() <= before
    back = store.get(out.uri, out.serializer, producer="t", content_hash=out.content_hash,
                     inline=out.inline)  # fmt: skip
    assert back == {"n": 7}
    assert load_inline(out.uri, out.inline, out.serializer, producer="t",
                       content_hash=out.content_hash) == {"n": 7}  # fmt: skip


def test_an_output_past_the_limit_is_stored_as_a_file(store: ArtifactStore) -> None:
    value = list(range(50_000))  # well over 64 KiB however it is serialized
    out = store.put("r", "t", -1, value, inline_limit=INLINE_LIMIT)
    assert out.inline is None and not is_inline(out.uri) and out.size > INLINE_LIMIT
    assert _objects(store) == [store.fs._strip_protocol(out.uri)]
    assert store.get(out.uri, out.serializer, producer="t", content_hash=out.content_hash) == value


def test_the_same_value_hashes_alike_inline_and_stored(store: ArtifactStore) -> None:
    inline = store.put("r", "a", -1, [1, 2, 3], serializer="pickle", inline_limit=INLINE_LIMIT)
    stored = store.put("r", "b", -1, [1, 2, 3], serializer="pickle")
    assert inline.inline is not None and stored.inline is None
    assert (inline.content_hash, inline.size) == (stored.content_hash, stored.size)


def test_no_limit_means_a_file_even_for_no_bytes(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "a"))
    out = store.put("r", "t", -1, b"", serializer="pickle")
    assert out.inline is None and store.exists(out.uri)


def test_inline_bytes_are_checked_against_the_recorded_hash(store: ArtifactStore) -> None:
    out = store.put("r", "t", -1, {"n": 7}, serializer="json", inline_limit=INLINE_LIMIT)
    assert out.inline is not None
    bad = out.inline.replace(b"7", b"8")
    with pytest.raises(ArtifactError, match=r"output of task 't' at inline:r/t is corrupt"):
        load_inline(out.uri, bad, "json", producer="t", content_hash=out.content_hash)
    with pytest.raises(ArtifactError, match="is corrupt"):
        peek_inline(out.uri, bad, "json", producer="t", content_hash=out.content_hash)
    told = peek_inline(out.uri, out.inline, "json", producer="t", content_hash=out.content_hash)
    assert "7" in told.text and not told.pickled


def test_an_inline_uri_without_its_bytes_is_missing(store: ArtifactStore) -> None:
    with pytest.raises(ArtifactError, match=r"output of task 't' is missing: inline:r/t"):
        store.get("inline:r/t", "pickle", producer="t")
    assert not store.exists("inline:r/t")


def test_a_pickled_inline_output_is_previewed_without_unpickling(store: ArtifactStore) -> None:
    out = store.put("r", "t", -1, {"a": (1, 2)}, serializer="pickle", inline_limit=INLINE_LIMIT)
    assert out.inline is not None
    told = peek_inline(out.uri, out.inline, "pickle", producer="t", content_hash=out.content_hash)
    assert told.pickled and "dict" in told.text


def test_a_spill_writes_what_was_held_first_then_the_rest() -> None:
    opened: list[bytearray] = []

    class Sink:
        def __init__(self) -> None:
            self.data = bytearray()
            opened.append(self.data)

        def write(self, b: bytes) -> int:
            self.data += b
            return len(b)

        def flush(self) -> None:
            pass

    spill = SpillWriter(10, Sink)  # type: ignore[arg-type]
    spill.write(b"abcd")
    spill.write(b"efgh")
    assert spill.spilled is None and spill.held() == b"abcdefgh" and opened == []
    spill.write(b"ijk")  # 11 bytes: past the limit
    spill.write(b"lmn")
    assert spill.spilled is not None and len(opened) == 1
    assert bytes(opened[0]) == b"abcdefghijklmn" and spill.held() == b""
