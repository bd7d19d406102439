"""The runner's side of the cache: compute an attempt's key, and reuse an earlier output.

The key (:mod:`rota.engine.cachekey`) is computed from what the attempt will run: the
:class:`~rota.executors.base.AttemptSpec` the executor would get, so the run's parameters and
dates, and the templates rendered from them, are those the task would see, except that every
secret (:mod:`rota.model.secrets`) is ``***``: a key never depends on a secret, and the parts
stored with it never hold one (a ``rota.Secret`` is never read here). When the key cannot
be computed (a template does not render, a ``cache_key=`` function raises), the attempt runs
without a key and the reason is kept in its key parts for ``rota cache explain``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rota.artifacts.inline import is_inline
from rota.artifacts.store import ArtifactStore
from rota.engine.cachekey import constants_digest, key_parts, make_key, task_code
from rota.engine.mapping import expand_args, instance_done
from rota.engine.refs import record_ref
from rota.executors.base import AttemptSpec
from rota.model import cacheon
from rota.model.dag import TaskSpec
from rota.model.policies import CacheInputs
from rota.model.safetext import safe_text
from rota.model.secrets import Masker, display_params
from rota.model.states import TaskState
from rota.operators.base import ExecContext, ReadsRun, RunReads
from rota.store.base import AttemptRecord

if TYPE_CHECKING:
    from rota.engine.loop import Key, RunLoop


def try_cache(loop: RunLoop, key: Key) -> bool:
    """Reuse an earlier output with the same cache key; True when *key* is done that way.

    Either way, the key and its parts are recorded with the attempt.
    """
    tid = key[0]
    spec = loop.dag.tasks[tid]
    fields = _key_fields(loop, key, spec)
    loop.cache_fields[key] = fields
    if fields["cache_key"] is None:
        return False
    if not loop.r.options.use_cache:
        fields["cache_parts"]["bypassed"] = True
        return False
    expires = spec.cache.expires if spec.cache is not None else None
    since = loop.r.clock.now() - expires if expires is not None else None
    hit = loop.r.store.find_cached(tid, fields["cache_key"], since=since)
    if hit is None or _output_gone(hit, loop.r.artifacts):
        return False
    del loop.cache_fields[key]
    _reuse(loop, key, hit, fields)
    return True


def _output_gone(hit: AttemptRecord, artifacts: ArtifactStore) -> bool:
    """Whether the output attempt *hit* stored is no longer there (deleted by hand or pruned)."""
    if hit.output_path is None:  # the task returned None: nothing to lose
        return False
    if is_inline(hit.output_path):
        return hit.output_inline is None
    return not artifacts.exists(hit.output_path)


def _key_fields(loop: RunLoop, key: Key, spec: TaskSpec) -> dict[str, Any]:
    """The attempt's ``cache_key`` and ``cache_parts``; no key when user code fails on the way."""
    code = loop.codes.get(key[0])
    if code is None:
        code = loop.codes[key[0]] = task_code(spec)
    try:
        inputs = cache_inputs(loop, key, code.digest)
        cache_key, added = make_key(spec, inputs)
    except Exception as err:  # a template or a cache_key function: the attempt runs, unkeyed
        masker = Masker.of_params(loop.dag.params)
        why = safe_text(masker.redact(f"{type(err).__name__}: {err}"))[:1000]
        parts = {"code": code.digest, "code_parts": dict(code.parts), "unkeyed": why}
        return {"cache_key": None, "cache_parts": parts}
    on = spec.cache.on if spec.cache is not None else None
    parts = {**key_parts(inputs, code, on), **added}
    return {"cache_key": cache_key, "cache_parts": parts}


def _reuse(loop: RunLoop, key: Key, hit: AttemptRecord, fields: dict[str, Any]) -> None:
    """Finish *key* as cached, with the stored output of attempt *hit*."""
    tid, index = key
    fields.update(
        cached_from=hit.cached_from or hit.id,
        finished_at=loop.r.clock.now(),
        output_path=hit.output_path,
        output_size=hit.output_size,
        output_length=hit.output_length,
        output_hash=hit.output_hash,
        output_serializer=hit.output_serializer,
        output_inline=hit.output_inline,
    )
    loop.change(key, TaskState.CACHED, fields)
    if index >= 0:
        loop.maps[tid].record(index, TaskState.CACHED, record_ref(hit))
        instance_done(loop, tid, index, TaskState.CACHED, None)
        return
    loop.outputs[tid] = record_ref(hit)
    loop.lengths[tid] = hit.output_length
    loop.hashes[tid] = hit.output_hash
    loop.note_datasets(tid)
    loop.apply_decisions(loop.ready_set.done(tid, TaskState.CACHED))


def cache_inputs(loop: RunLoop, key: Key, code: str) -> CacheInputs:
    """What the key of *key*'s next attempt is made of, from the spec the executor would get.

    Raises:
        TemplateRenderError: a template of the task does not render.
    """
    tid, index = key
    spec = loop.dag.tasks[tid]
    kwargs = spec.kwargs
    hashes = {up: str(loop.hashes.get(up)) for up in loop.inputs[tid]}
    if index >= 0:
        kwargs, extra = expand_args(spec, index, loop.outputs)
        for ref in extra:
            producer = ref.task_id.split("@", 1)[0]
            hashes[ref.task_id] = f"{loop.hashes.get(producer)}[{index}]"
    ctx = attempt_context(loop.attempt_spec(key, loop.attempt[key]))
    reads = spec.op.run_reads(ctx) if isinstance(spec.op, ReadsRun) else RunReads(False)
    variables = ctx.template_vars()
    return CacheInputs(
        tid,
        code,
        hashes,
        constants_digest(spec.args, display_params(kwargs)),  # a secret keyword: ***
        spec.cache.version if spec.cache is not None else "",
        run=run_facts(spec, reads, variables),
        rendered=dict(reads.rendered),
        variables=variables,
    )


def run_facts(spec: TaskSpec, reads: RunReads, variables: dict[str, Any]) -> dict[str, str]:
    """The run facts in the key: those the task declares (``cache_on=``), else every parameter
    and date when it can read them, else none."""
    declared = spec.cache.on if spec.cache is not None else None
    if declared is None:
        declared = cacheon.EVERYTHING if reads.ambient else ()
    return cacheon.facts(declared, variables)


def attempt_context(attempt: AttemptSpec) -> ExecContext:
    """The facts of the context *attempt* runs with, as its templates and ``ctx`` see them, but
    with every secret parameter ``***``: no key, and no part stored with it, holds a secret."""
    return ExecContext(
        attempt.run_id,
        attempt.flow,
        attempt.task_id,
        attempt.try_number,
        display_params(attempt.params),
        logical_date=attempt.logical_date,
        data_interval_start=attempt.data_interval_start,
        data_interval_end=attempt.data_interval_end,
    )
