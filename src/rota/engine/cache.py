"""Cache keys: what a task's code, inputs and constants hash to, and why two keys differ.

The key of an attempt is a digest of the task's transitive code hash (its source and the user
code it reaches, plus the packages it uses), the user's ``version=``, the content hash of each
input it reads, and its constant arguments. A task whose key matches an earlier success reuses
that stored output instead of running.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import cloudpickle

from rota.engine.mapping import expand_args, instance_done
from rota.engine.refs import record_ref
from rota.model.dag import Ref, TaskSpec
from rota.model.policies import CacheInputs
from rota.model.states import TaskState
from rota.operators.base import digest
from rota.operators.codehash import CodeHash, code_hash

if TYPE_CHECKING:
    from rota.engine.loop import Key, RunLoop


def task_code(spec: TaskSpec) -> CodeHash:
    """The transitive code hash of a task (a shell task: its command, env and folder)."""
    fn = getattr(spec.op, "fn", None)
    version = spec.cache.version if spec.cache is not None else ""
    if fn is None:
        own = spec.op.code_hash()
        parts = {f"code:{spec.id}": own, **({"version": version} if version else {})}
        return CodeHash(digest(own, version), parts)
    return code_hash(fn, version)


def constants_digest(args: Any, kwargs: Mapping[str, Any]) -> str:
    """A digest of a task's constant arguments (its references to other tasks' outputs named)."""
    try:
        blob = cloudpickle.dumps((_strip(args), _strip(dict(sorted(kwargs.items())))), protocol=4)
    except Exception:  # something unpicklable: its repr is the best we have
        blob = repr((args, sorted(kwargs.items()))).encode()
    return hashlib.blake2b(blob, digest_size=16).hexdigest()


def _strip(value: Any) -> Any:
    if isinstance(value, Ref):
        return ("ref", value.task_id)
    if isinstance(value, list):
        return [_strip(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_strip(v) for v in value)
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items()}
    return value


def make_key(spec: TaskSpec, inputs: CacheInputs) -> str:
    """The cache key: the user's ``cache_key`` function's, else a digest of *inputs*."""
    if spec.cache is not None and spec.cache.key_fn is not None:
        return f"user:{spec.cache.key_fn(inputs)}"
    ordered = "|".join(f"{k}={v}" for k, v in sorted(inputs.inputs.items()))
    return digest(inputs.code, inputs.version, ordered, inputs.constants)


def key_parts(inputs: CacheInputs, code: CodeHash) -> dict[str, Any]:
    """What ``rota cache explain`` shows: every part that went into a key."""
    return {
        "code": inputs.code,
        "code_parts": dict(code.parts),
        "version": inputs.version,
        "inputs": dict(inputs.inputs),
        "constants": inputs.constants,
    }


def explain_difference(now: Mapping[str, Any], before: Mapping[str, Any]) -> list[str]:
    """Which parts differ between two keys' parts, in words."""
    out: list[str] = []
    for name in sorted(set(now.get("code_parts", {})) | set(before.get("code_parts", {}))):
        a, b = now.get("code_parts", {}).get(name), before.get("code_parts", {}).get(name)
        if a != b:
            what = "added" if b is None else "removed" if a is None else "changed"
            out.append(f"{name} {what}" + (f" ({b} -> {a})" if name.startswith("package:") else ""))
    if now.get("version") != before.get("version"):
        out.append(f"version changed ({before.get('version')!r} -> {now.get('version')!r})")
    for name in sorted(set(now.get("inputs", {})) | set(before.get("inputs", {}))):
        if now.get("inputs", {}).get(name) != before.get("inputs", {}).get(name):
            out.append(f"input {name} changed (its content hash differs)")
    if now.get("constants") != before.get("constants"):
        out.append("constant arguments or parameters changed")
    if not out and now.get("code") != before.get("code"):
        out.append("code changed")
    return out


# --- the runner's side ---------------------------------------------------------------------------
def try_cache(loop: RunLoop, key: Key) -> bool:
    """Reuse an earlier output with the same cache key; True when *key* is done that way.

    Either way, the key and its parts are recorded with the attempt.
    """
    tid, index = key
    spec = loop.dag.tasks[tid]
    code = loop.codes.get(tid)
    if code is None:
        code = loop.codes[tid] = task_code(spec)
    inputs = cache_inputs(loop, key, code.digest)
    cache_key = make_key(spec, inputs)
    fields: dict[str, Any] = {
        "cache_key": cache_key,
        "cache_parts": key_parts(inputs, code),
    }
    loop.cache_fields[key] = fields
    if not loop.r.options.use_cache:
        fields["cache_parts"]["bypassed"] = True
        return False
    expires = spec.cache.expires if spec.cache is not None else None
    since = loop.r.clock.now() - expires if expires is not None else None
    hit = loop.r.store.find_cached(tid, cache_key, since=since)
    gone = hit is not None and hit.output_path and not loop.r.artifacts.exists(hit.output_path)
    if hit is None or gone:
        return False
    del loop.cache_fields[key]
    fields.update(
        cached_from=hit.cached_from or hit.id,
        finished_at=loop.r.clock.now(),
        output_path=hit.output_path,
        output_size=hit.output_size,
        output_length=hit.output_length,
        output_hash=hit.output_hash,
        output_serializer=hit.output_serializer,
    )
    loop.change(key, TaskState.CACHED, fields)
    if index >= 0:
        loop.maps[tid].record(index, TaskState.CACHED, record_ref(hit))
        instance_done(loop, tid, index, TaskState.CACHED, None)
        return True
    loop.outputs[tid] = record_ref(hit)
    loop.lengths[tid] = hit.output_length
    loop.hashes[tid] = hit.output_hash
    loop.note_datasets(tid)
    loop.apply_decisions(loop.ready_set.done(tid, TaskState.CACHED))
    return True


def cache_inputs(loop: RunLoop, key: Key, code: str) -> CacheInputs:
    tid, index = key
    spec = loop.dag.tasks[tid]
    kwargs = spec.kwargs
    hashes = {up: str(loop.hashes.get(up)) for up in loop.inputs[tid]}
    if index >= 0:
        kwargs, extra = expand_args(spec, index, loop.outputs)
        for ref in extra:
            producer = ref.task_id.split("@", 1)[0]
            hashes[ref.task_id] = f"{loop.hashes.get(producer)}[{index}]"
    version = spec.cache.version if spec.cache is not None else ""
    return CacheInputs(tid, code, hashes, constants_digest(spec.args, kwargs), version)
