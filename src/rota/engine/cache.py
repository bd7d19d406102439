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

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rota.artifacts.inline import is_inline
from rota.engine.book import Key, RunBook, Settled
from rota.engine.cachekey import constants_digest, key_parts, make_key, task_code
from rota.engine.mapping import expand_args
from rota.engine.refs import record_ref
from rota.executors.base import AttemptSpec, StoredRef
from rota.model import cacheon
from rota.model.dag import Dag, TaskSpec
from rota.model.policies import CacheInputs
from rota.model.safetext import safe_text
from rota.model.secrets import Masker, display_params
from rota.model.states import TaskState
from rota.operators.base import ExecContext, ReadsRun, RunReads
from rota.operators.codehash import CodeHash
from rota.store.base import AttemptRecord

FindCached = Callable[[str, str, datetime | None], AttemptRecord | None]
"""The store's latest success of a task with a cache key, committed since a time (or ever)."""


@dataclass(slots=True, eq=False)
class RunCache:
    """What the cache reads and writes of one run (given by the loop; never the loop itself).

    Args:
        book: the run's attempts, states and outputs.
        dag: the run's graph; *inputs*: per task, the upstreams whose outputs it reads.
        find_cached: looks an earlier output up; *exists*: whether its artifact is still there.
        use_cache: False: keys are computed and recorded, never used (``--no-cache``).
        now: the clock.
        spec_of: the AttemptSpec the executor would get for a key's current attempt.
        instance_done: ends a mapped instance (engine/mapping.py); *note_datasets* and *settled*
            end a plain task (its datasets, then its downstreams).
    """

    book: RunBook
    dag: Dag
    inputs: Mapping[str, tuple[str, ...]]
    find_cached: FindCached
    exists: Callable[[str], bool]
    use_cache: bool
    now: Callable[[], datetime]
    spec_of: Callable[[Key], AttemptSpec]
    instance_done: Callable[[str, int, TaskState, StoredRef | None], None]
    note_datasets: Callable[[str], None]
    settled: Settled
    codes: dict[str, CodeHash] = field(default_factory=dict)
    fields: dict[Key, dict[str, Any]] = field(default_factory=dict)
    """The key fields of attempts that run (cache missed): recorded with their outcome."""


def try_cache(cache: RunCache, key: Key) -> bool:
    """Reuse an earlier output with the same cache key; True when *key* is done that way.

    Either way, the key and its parts are recorded with the attempt.
    """
    tid = key[0]
    spec = cache.dag.tasks[tid]
    fields = _key_fields(cache, key, spec)
    cache.fields[key] = fields
    if fields["cache_key"] is None:
        return False
    if not cache.use_cache:
        fields["cache_parts"]["bypassed"] = True
        return False
    expires = spec.cache.expires if spec.cache is not None else None
    since = cache.now() - expires if expires is not None else None
    hit = cache.find_cached(tid, fields["cache_key"], since)
    if hit is None or _output_gone(hit, cache.exists):
        return False
    del cache.fields[key]
    _reuse(cache, key, hit, fields)
    return True


def _output_gone(hit: AttemptRecord, exists: Callable[[str], bool]) -> bool:
    """Whether the output attempt *hit* stored is no longer there (deleted by hand or pruned)."""
    if hit.output_path is None:  # the task returned None: nothing to lose
        return False
    if is_inline(hit.output_path):
        return hit.output_inline is None
    return not exists(hit.output_path)


def _key_fields(cache: RunCache, key: Key, spec: TaskSpec) -> dict[str, Any]:
    """The attempt's ``cache_key`` and ``cache_parts``; no key when user code fails on the way."""
    code = cache.codes.get(key[0])
    if code is None:
        code = cache.codes[key[0]] = task_code(spec)
    try:
        inputs = cache_inputs(cache, key, code.digest)
        cache_key, added = make_key(spec, inputs)
    except Exception as err:  # a template or a cache_key function: the attempt runs, unkeyed
        masker = Masker.of_params(cache.dag.params)
        why = safe_text(masker.redact(f"{type(err).__name__}: {err}"))[:1000]
        parts = {"code": code.digest, "code_parts": dict(code.parts), "unkeyed": why}
        return {"cache_key": None, "cache_parts": parts}
    on = spec.cache.on if spec.cache is not None else None
    parts = {**key_parts(inputs, code, on), **added}
    return {"cache_key": cache_key, "cache_parts": parts}


def _reuse(cache: RunCache, key: Key, hit: AttemptRecord, fields: dict[str, Any]) -> None:
    """Finish *key* as cached, with the stored output of attempt *hit*."""
    tid, index = key
    fields.update(
        cached_from=hit.cached_from or hit.id,
        finished_at=cache.now(),
        output_path=hit.output_path,
        output_size=hit.output_size,
        output_length=hit.output_length,
        output_hash=hit.output_hash,
        output_serializer=hit.output_serializer,
        output_inline=hit.output_inline,
    )
    cache.book.change(key, TaskState.CACHED, fields)
    if index >= 0:
        cache.instance_done(tid, index, TaskState.CACHED, record_ref(hit))
        return
    cache.book.booked(tid, record_ref(hit), hit.output_length, hit.output_hash)
    cache.note_datasets(tid)
    cache.settled(tid, TaskState.CACHED)


def cache_inputs(cache: RunCache, key: Key, code: str) -> CacheInputs:
    """What the key of *key*'s next attempt is made of, from the spec the executor would get.

    Raises:
        TemplateRenderError: a template of the task does not render.
    """
    tid, index = key
    spec = cache.dag.tasks[tid]
    kwargs = spec.kwargs
    known = cache.book.hashes
    hashes = {up: str(known.get(up)) for up in cache.inputs[tid]}
    if index >= 0:
        kwargs, extra = expand_args(spec, index, cache.book.outputs)
        for ref in extra:
            producer = ref.task_id.split("@", 1)[0]
            hashes[ref.task_id] = f"{known.get(producer)}[{index}]"
    ctx = attempt_context(cache.spec_of(key))
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
