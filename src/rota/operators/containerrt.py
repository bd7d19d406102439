"""The container runtime a container task talks to: ``podman`` or ``docker``, by their CLI.

Both share the CLI surface used here (``run``, ``rm``, ``ps``). Which one: the task's own
``runtime=``, else ``ROTA_CONTAINER_RUNTIME`` (a name on ``PATH`` or a path), else the first of
``podman`` and ``docker`` found on ``PATH``.

Every container Rota starts carries the labels :data:`MANAGED`, :data:`RUN` and :data:`ATTEMPT`,
so that what a killed runner left can be found and removed (:func:`remove_leftovers`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

from rota.errors import DefinitionError

ENV_RUNTIME = "ROTA_CONTAINER_RUNTIME"
KNOWN = ("podman", "docker")

MANAGED = "rota.managed"
RUN = "rota.run"
TASK = "rota.task"
ATTEMPT = "rota.attempt"
"""Label values: ``rota.attempt`` is ``<run>/<task>/<try number>``, one attempt's identity."""


FIRE_WAIT_S = 30.0
"""How long removing a container is waited for before the attempt goes on without it."""


class NoContainerRuntime(DefinitionError):
    """Raised when neither podman nor docker (nor the runtime asked for) can be found."""


def find_runtime(asked: str | None, environ: Mapping[str, str]) -> str:
    """The path of the runtime's executable: *asked*, else ``$ROTA_CONTAINER_RUNTIME``, else
    podman or docker on ``PATH``.

    Raises:
        NoContainerRuntime: the runtime asked for, or any, is not found.
    """
    name = asked or environ.get(ENV_RUNTIME, "").strip()
    path = environ.get("PATH", os.defpath)
    if name:
        found = shutil.which(name, path=path)
        if found is None:
            raise NoContainerRuntime(f"container runtime {name!r} not found on PATH")
        return found
    for candidate in KNOWN:
        found = shutil.which(candidate, path=path)
        if found is not None:
            return found
    raise NoContainerRuntime(
        f"no container runtime: install podman or docker, or set {ENV_RUNTIME}"
    )


@dataclass(slots=True)
class Reaper:
    """A small process, in a session of its own, that removes a container once the attempt's
    process is gone: it waits for the end of a pipe only that process holds.

    So a worker killed for a timeout, by a cancel or with its runner leaves no container
    running. When the attempt ends normally, :meth:`dismiss` ends the reaper unused.
    """

    proc: subprocess.Popen[bytes]
    write_fd: int
    closed: bool = False

    @classmethod
    def start(cls, runtime: str, name: str, env: Mapping[str, str]) -> Reaper:
        """Start one for container *name* (its name is an argument, never shell text)."""
        read_fd, write_fd = os.pipe()
        os.set_inheritable(write_fd, False)
        # podman stops it at once (-t 0); docker's rm -f kills it at once anyway
        now = " -t 0" if os.path.basename(runtime).startswith("podman") else ""
        script = f'read _ignored; exec "$0" rm -f{now} "$1" >/dev/null 2>&1'
        try:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", script, runtime, name],
                stdin=read_fd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=dict(env),
                start_new_session=True,  # outlives a kill of the worker's process group
            )
        except BaseException:
            os.close(write_fd)
            raise
        finally:
            os.close(read_fd)
        return cls(proc, write_fd)

    def dismiss(self) -> None:
        """The container is gone already: end the reaper without letting it run."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._close()

    def fire(self) -> None:
        """Remove the container now and wait (a while) until it is removed.

        Safe to call again, and from a signal handler: the wait never blocks on a lock.
        """
        self._close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=FIRE_WAIT_S)

    def _close(self) -> None:
        # once only: a second close could end an unrelated file that reused the number
        if not self.closed:
            self.closed = True
            os.close(self.write_fd)


def remove(runtime: str, names: list[str], env: Mapping[str, str]) -> None:
    """Force-remove containers *names* (stopping them first); missing ones are no error."""
    if names:
        subprocess.run(
            [runtime, "rm", "-f", *names],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=dict(env),
            check=False,
        )


def labelled(runtime: str, label: str, env: Mapping[str, str]) -> list[str]:
    """Names of the containers, running or not, that carry *label* (``key=value``).

    Raises:
        OSError: the runtime cannot be started.
        subprocess.CalledProcessError: the runtime refused to list containers.
    """
    done = subprocess.run(
        [runtime, "ps", "-a", "--filter", f"label={label}", "--format", "{{.Names}}"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=dict(env),
        check=True,
        text=True,
    )
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def remove_leftovers(runtime: str, run_id: str, env: Mapping[str, str]) -> list[str]:
    """Remove every container Rota started for run *run_id*; return their names.

    Called before a run is driven again (resume, or a dead runner's run taken over): nothing
    of that run is running then, so whatever container it has is left over by a runner that died.

    Raises:
        OSError: the runtime cannot be started.
        subprocess.CalledProcessError: the runtime refused to list containers.
    """
    names = labelled(runtime, f"{RUN}={run_id}", env)
    remove(runtime, names, env)
    return names
