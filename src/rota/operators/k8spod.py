"""A pod's life as one task attempt: create it, stream its log, wait for its end, delete it.

Only the official client's ``CoreV1Api`` is used, with four calls a real API server answers:
create, read (the status), read the log with ``follow``, delete; and a list by label selector for
the leftovers of a run. The pod is deleted whatever happens (success, failure, timeout, an error
while waiting); a pod left by a runner that was killed is found by its labels.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from rota.errors import TaskTimeout
from rota.operators.k8smanifest import CONTAINER, run_selector
from rota.operators.liveends import ended_with_process

_STUCK: Final = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError"}
)
"""Waiting reasons of a container that will not start by itself: the attempt fails at once."""

LOG_DRAIN_S: Final = 10.0
"""Seconds the log stream may take to end once the pod has ended."""


class PodFailed(Exception):
    """Raised when a task's pod ends Failed, or cannot start (its image cannot be pulled)."""

    def __init__(self, pod: str, reason: str, code: int | None = None) -> None:
        self.pod = pod
        self.reason = reason
        self.code = code
        tail = f" with code {code}" if code is not None else ""
        super().__init__(f"pod {pod} failed{tail}: {reason}")


@dataclass(frozen=True, slots=True)
class PodEnd:
    """How a pod that ran to its end ended."""

    phase: str
    code: int | None
    reason: str


def _status(api: Any, name: str, namespace: str) -> Any:
    """The pod as the API shows it now.

    Raises:
        PodFailed: it is gone (deleted by someone else, or evicted and removed).
    """
    from kubernetes.client.exceptions import ApiException

    try:
        return api.read_namespaced_pod_status(name, namespace)
    except ApiException as err:
        if err.status == 404:
            raise PodFailed(name, "the pod is gone: deleted outside Rota, or evicted") from None
        raise


def _terminated(pod: Any) -> Any:
    """The task container's ``terminated`` state, if it has one."""
    for status in pod.status.container_statuses or ():
        if status.name == CONTAINER and status.state is not None:
            return status.state.terminated
    return None


def _stuck_reason(pod: Any) -> str | None:
    for status in pod.status.container_statuses or ():
        waiting = status.state.waiting if status.state is not None else None
        if waiting is not None and waiting.reason in _STUCK:
            return f"{waiting.reason}: {waiting.message or ''}".rstrip(": ")
    return None


def create_pod(api: Any, manifest: Any) -> None:
    """Create the pod; a pod of the same name (this very attempt, left by a killed runner) is
    deleted first, since its name is a function of the attempt."""
    from kubernetes.client.exceptions import ApiException

    namespace = manifest.metadata.namespace
    try:
        api.create_namespaced_pod(namespace, manifest)
    except ApiException as err:
        if err.status != 409:
            raise
        delete_pod(api, manifest.metadata.name, namespace)
        api.create_namespaced_pod(namespace, manifest)


def delete_pod(api: Any, name: str, namespace: str) -> bool:
    """Delete pod *name* at once; False when it was already gone (404)."""
    from kubernetes.client import V1DeleteOptions
    from kubernetes.client.exceptions import ApiException

    try:
        api.delete_namespaced_pod(name, namespace, body=V1DeleteOptions(grace_period_seconds=0))
    except ApiException as err:
        if err.status == 404:
            return False
        raise
    return True


def delete_leftovers(api: Any, namespace: str, run_id: str) -> list[str]:
    """Delete every pod Rota made for *run_id* in *namespace*; the names of those deleted."""
    pods = api.list_namespaced_pod(namespace, label_selector=run_selector(run_id))
    names = [p.metadata.name for p in pods.items]
    return [n for n in names if delete_pod(api, n, namespace)]


def _check_deadline(deadline: float | None, name: str) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise TaskTimeout(f"pod {name} timed out")


def wait_end(api: Any, name: str, namespace: str, *, deadline: float | None, poll: float) -> PodEnd:
    """Poll the pod's status until its phase is Succeeded or Failed.

    Raises:
        TaskTimeout: *deadline* (a ``time.monotonic()`` value) passed first.
        PodFailed: its container cannot start.
    """
    while True:
        pod = _status(api, name, namespace)
        phase = pod.status.phase or "Pending"
        if phase in {"Succeeded", "Failed"}:
            ended = _terminated(pod)
            code = ended.exit_code if ended is not None else None
            # the pod's own reason first: DeadlineExceeded, Evicted say more than "Error"
            reason = pod.status.reason or (ended.reason if ended is not None else None) or phase
            return PodEnd(phase, code, reason)
        stuck = _stuck_reason(pod)
        if stuck is not None:
            raise PodFailed(name, stuck)
        _check_deadline(deadline, name)
        time.sleep(poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic())))


def wait_started(
    api: Any, name: str, namespace: str, *, deadline: float | None, poll: float
) -> None:
    """Poll until the pod has left Pending (its log can be read from then on).

    Raises:
        TaskTimeout: *deadline* passed first.
        PodFailed: its container cannot start.
    """
    while True:
        pod = _status(api, name, namespace)
        if (pod.status.phase or "Pending") != "Pending":
            return
        stuck = _stuck_reason(pod)
        if stuck is not None:
            raise PodFailed(name, stuck)
        _check_deadline(deadline, name)
        time.sleep(poll)


LOG_RETRIES: Final = 20
"""Reads of a pod's log in a row that may bring nothing new before the log is given up."""
LOG_RETRY_S: Final = 0.2


def _open_log(api: Any, name: str, namespace: str) -> Any:
    """The pod's log, followed; None when it cannot be read now but may be soon (410 Gone, as
    the API server answers a read too old to serve, or a container not started yet).

    Raises:
        ApiException: the pod is gone (404), or another refusal.
    """
    from kubernetes.client.exceptions import ApiException

    try:
        return api.read_namespaced_pod_log(
            name, namespace, container=CONTAINER, follow=True, _preload_content=False
        )
    except ApiException as err:
        if err.status in (400, 410):
            return None
        raise


def _copy(response: Any, sink: Callable[[bytes], None], skip: int) -> tuple[int, bool]:
    """Copy *response*'s bytes past the first *skip* to *sink*: the bytes read, and whether
    the stream ended as the API ends it (not cut short)."""
    read = 0
    try:
        for chunk in response.stream(4096):
            fresh = chunk[max(0, skip - read) :]
            read += len(chunk)
            if fresh:
                sink(fresh)
    except Exception:  # a cut connection (a restarted API server or kubelet, a proxy's timeout)
        return read, False
    finally:
        response.release_conn()
    return read, True


def stream_log(api: Any, name: str, namespace: str, sink: Callable[[bytes], None]) -> None:
    """Copy the task container's log to *sink* as it is printed, until the stream ends.

    A follow that is refused with 410 Gone or cut short is read again from the start, as a
    client of the real API must, and the bytes already copied are skipped: the log reaches
    *sink* once, whole. A pod that is gone (404) ends it.
    """
    from kubernetes.client.exceptions import ApiException

    copied = 0
    idle = 0
    while idle < LOG_RETRIES:
        try:
            response = _open_log(api, name, namespace)
        except ApiException:
            return  # the pod is already gone: its end is read from its status, or it timed out
        if response is not None:
            read, whole = _copy(response, sink, copied)
            idle = 0 if read > copied else idle + 1
            copied = max(copied, read)
            if whole:
                return
        else:
            idle += 1
        time.sleep(LOG_RETRY_S)


def run_pod(
    api: Any,
    manifest: Any,
    *,
    deadline: float | None,
    poll: float,
    sink: Callable[[bytes], None],
) -> PodEnd:
    """Run one attempt's pod to its end and delete it, whatever happened.

    Raises:
        TaskTimeout: *deadline* passed (the pod is deleted).
        PodFailed: the pod ended Failed or cannot start (it is deleted).
    """
    name, namespace = manifest.metadata.name, manifest.metadata.namespace
    # a pool worker ended for a timeout or a cancel (SIGTERM), or whose engine died, deletes it
    with ended_with_process(functools.partial(delete_pod, api, name, namespace)):
        return _run_created(api, manifest, deadline=deadline, poll=poll, sink=sink)


def _run_created(
    api: Any,
    manifest: Any,
    *,
    deadline: float | None,
    poll: float,
    sink: Callable[[bytes], None],
) -> PodEnd:
    name, namespace = manifest.metadata.name, manifest.metadata.namespace
    create_pod(api, manifest)
    pump: threading.Thread | None = None
    try:
        wait_started(api, name, namespace, deadline=deadline, poll=poll)
        pump = threading.Thread(target=stream_log, args=(api, name, namespace, sink), daemon=True)
        pump.start()
        end = wait_end(api, name, namespace, deadline=deadline, poll=poll)
        pump.join(LOG_DRAIN_S)
    finally:
        delete_pod(api, name, namespace)
        if pump is not None:
            pump.join(LOG_DRAIN_S)
    if end.phase == "Failed" and end.reason == "DeadlineExceeded":
        raise TaskTimeout(f"pod {name} passed its active deadline (the cluster ended it)")
    if end.phase == "Failed":
        raise PodFailed(name, end.reason, end.code)
    return end
