"""One attempt's log file, written while the attempt prints, with its secrets masked.

A :class:`LogSink` owns the log of one attempt from the moment the attempt begins. What reaches
it is written to the file at once, a line at a time (a line ends at ``\\n`` or ``\\r``), with
``os.write`` and no buffer of ours in between: whatever ends the attempt afterwards (its timeout,
a SIGKILL of its worker, its runner dying, Ctrl-C), the lines it printed are in the file, and
``rota tasks logs -f`` can follow it as it grows. Only a line not yet ended is held back (up to
64 KiB), until it ends or the attempt does.

Every line passes :meth:`LogSink._emit` on its way to the file, the one place where a log's text
is masked: the attempt's :class:`~rota.model.secrets.Masker` replaces its secrets with ``***``,
so the file never holds one, even for an attempt killed half-way.

Output arrives either as bytes given to :meth:`LogSink.write` (thread workers route
``sys.stdout``/``sys.stderr`` here) or through a pipe (:meth:`LogSink.pipe`): process workers
point fds 1 and 2 at it, so C extensions and child processes are captured too, and a pump thread
copies what arrives into the sink. When the attempt ends the pipe is drained and closed; a
process the task left running that writes to it later gets a broken pipe, not the next
attempt's log. A process worker gives each attempt a pipe of its own but keeps one pump thread
for its whole life (:class:`WorkerPump`): starting a thread per attempt, and waiting for it to
start and to end, cost more than a task that does nothing.

The file is created exclusively for a new attempt (whatever sits at its name, such as a planted
symbolic link, is removed, never followed) and opened without following a link when a sensor's
later poke adds to it; it is 0600 in 0700 folders (:mod:`rota.home`).

A new attempt's file is created at its first byte, not before: most tasks of a large run print
nothing, and a folder, a file and its removal per silent task cost more than the task. The run's
logs folder is made (and so checked) when the attempt begins, once per process and run, so an
unwritable logs tree still fails an attempt before it runs; the task's own folder and file follow
with the first output, and an error making them is the attempt's error when it ends.
"""

from __future__ import annotations

import contextlib
import os
import select
import selectors
import threading
from pathlib import Path
from typing import Final

from rota.home import create_exclusive, open_private, private_dir
from rota.model.secrets import Masker

HOLD_LIMIT: Final = 1 << 16
"""Bytes of a line not yet ended that are held back before they are written anyway."""
_MADE: set[Path] = set()
"""Run log folders this process has made (or found) already: each is made once, not per task."""


def _run_folder(path: Path) -> None:
    """Make the folder two levels above the log *path* (``logs/<run>``), once per process."""
    folder = path.parent.parent
    if folder not in _MADE:
        private_dir(folder)
        _MADE.add(folder)


class LogSink:
    """The log file of one attempt, written line by line as output arrives (thread-safe)."""

    def __init__(self, path: Path, masker: Masker, *, append: bool = False) -> None:
        """Open the log at *path*: a new file, or the end of the existing one with *append* (a
        sensor's later poke).

        Raises:
            OSError: the folder or the file cannot be made.
        """
        self.path = path
        self._fd: int | None = None
        self._size = 0
        if append:
            self._fd = open_private(path, append=True)
            self._size = os.fstat(self._fd).st_size
        else:
            _run_folder(path)
        self._masker = masker
        self._held = b""
        self._lock = threading.Lock()
        self._error: OSError | None = None
        self._pump: _Pump | None = None
        self._closed = False

    def write(self, data: bytes) -> None:
        """Add *data* to the log: the lines it ends are written now, the rest is held."""
        with self._lock:
            if self._closed:
                return
            held = self._held + data
            cut = max(held.rfind(b"\n"), held.rfind(b"\r")) + 1
            if cut == 0 and len(held) >= HOLD_LIMIT:
                cut = len(held)
            self._held = held[cut:]
            if cut:
                self._emit(held[:cut])

    def put(self, data: bytes) -> None:
        """Add *data* after what came before it through the pipe, if there is one (so a task's
        own prints and its child processes' output keep their order)."""
        pump = self._pump
        if pump is None:
            self.write(data)
            return
        if pump.closed:  # the attempt has ended (its fd number may be another file's now)
            return
        view = memoryview(data)
        with contextlib.suppress(OSError):  # the attempt has ended: nothing more goes in
            while view:
                view = view[os.write(pump.write_fd, view) :]

    def _emit(self, data: bytes) -> None:
        """Write *data* to the file with the attempt's secrets masked: every byte of a log passes
        here on its way to the file (the caller holds the lock)."""
        if self._masker:
            text = data.decode("utf-8", "surrogateescape")
            data = self._masker.redact(text).encode("utf-8", "surrogateescape")
        view = memoryview(data)
        try:
            if self._fd is None:  # the first byte: the file is made now
                if self._error is not None:  # it could not be made: what comes is lost
                    return
                private_dir(self.path.parent)
                self._fd = create_exclusive(self.path)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as err:  # reported when the attempt ends; the task itself goes on
            self.fail(err)
        self._size += len(data) - len(view)

    def fail(self, err: Exception) -> None:
        """Note that output was lost to *err* (raised when the log is closed, if no error was
        noted before it)."""
        if self._error is None:
            self._error = err if isinstance(err, OSError) else OSError(f"log not written: {err!r}")

    def pipe(self) -> int:
        """The write end of a pipe whose reader adds what arrives to this log (made once).

        Raises:
            OSError: the pipe or its reader thread cannot be made.
        """
        if self._pump is None:
            self._pump = _Pump(self)
        return self._pump.write_fd

    def close(self, *, timeout: float | None = None) -> bool:
        """Stop: drain the pipe, write the line not yet ended, close the file (once).

        *timeout* bounds the waits (for the pump and the lock), for a worker about to die.

        Returns:
            Whether the log holds anything.

        Raises:
            OSError: a write to the log failed (what was printed from then on is lost).
        """
        if self._pump is not None:
            self._pump.close(timeout)
        if not self._lock.acquire(timeout=-1 if timeout is None else timeout):
            return self._size > 0
        try:
            if not self._closed:
                self._closed = True
                if self._held:
                    self._emit(self._held)
                    self._held = b""
                if self._fd is not None:
                    os.close(self._fd)
        finally:
            self._lock.release()
        if self._error is not None:
            raise self._error
        return self._size > 0

    def finish(self, *, appended: bool) -> str | None:
        """Close the log and return its path, or remove it and return None when the attempt
        printed nothing into a log of its own (*appended*: a sensor's log kept from earlier pokes).

        Raises:
            OSError: a write to the log failed.
        """
        if self.close() or appended:
            return str(self.path)
        if self._fd is not None:  # made, but what reached it was empty
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        return None


class _Pump:
    """A pipe and the thread that copies what arrives in it into a sink."""

    def __init__(self, sink: LogSink) -> None:
        self._sink = sink
        self._read_fd, self.write_fd = os.pipe()
        self._wake_r, self._wake_w = os.pipe()
        self.closed = False
        self._thread = threading.Thread(target=self._run, name="rota-log-pump", daemon=True)
        try:
            self._thread.start()
        except BaseException:
            for fd in (self._read_fd, self.write_fd, self._wake_r, self._wake_w):
                os.close(fd)
            raise

    def _run(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self._read_fd, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while True:
                ready = {key.fd for key, _ in sel.select()}
                if self._read_fd in ready:  # output first: the wake-up only ends the pump
                    data = os.read(self._read_fd, HOLD_LIMIT)
                    if not data:
                        return
                    self._copy(data)
                elif self._wake_r in ready:
                    self._drain()
                    return

    def _copy(self, data: bytes) -> None:
        _into(self._sink, data)

    def _drain(self) -> None:
        """Copy what the pipe holds now; writers that are left (a process the task started and
        left running) are not waited for."""
        os.set_blocking(self._read_fd, False)
        with contextlib.suppress(BlockingIOError):
            while data := os.read(self._read_fd, HOLD_LIMIT):
                self._copy(data)

    def close(self, timeout: float | None) -> None:
        """Drain the pipe into the sink and close it (once)."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(OSError):
            os.close(self.write_fd)
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        self._thread.join(timeout)
        if self._thread.is_alive():  # stuck (a worker about to die): leave the fds to the OS
            return
        for fd in (self._read_fd, self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)


class WorkerPump:
    """One thread, for a worker process's life, that copies the pipe of the attempt running now
    into that attempt's sink (one attempt at a time).

    :meth:`attach` gives an attempt a new pipe; :meth:`detach` drains it into the attempt's sink
    in the caller's thread (nothing is waited for: whatever the attempt wrote before is in the
    pipe) and closes it, so a process the attempt left running gets a broken pipe. The thread
    reads only under the lock, so a chunk is never in between the pipe and the sink while
    :meth:`detach` drains.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._read_fd: int | None = None
        self._write_fd: int | None = None
        self._sink: LogSink | None = None
        self._thread: threading.Thread | None = None

    def attach(self, sink: LogSink) -> int:
        """Give *sink*'s attempt a new pipe; its write end (point fds 1 and 2 at it).

        Raises:
            OSError: the pipe or the thread cannot be made.
        """
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        with self._lock:
            self._read_fd, self._write_fd, self._sink = read_fd, write_fd, sink
        try:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="rota-log-pump", daemon=True)
                self._thread.start()
        except BaseException:
            self.detach()
            raise
        self._wake()
        return write_fd

    def detach(self, timeout: float | None = None) -> bool:
        """Copy what the attempt's pipe holds into its sink, close the pipe and forget both.

        *timeout* bounds the wait for the thread's lock (a worker about to die).

        Returns:
            False if the lock could not be had in time (the pipe is left to the OS).
        """
        if not self._lock.acquire(timeout=-1 if timeout is None else timeout):
            return False
        try:
            read_fd, write_fd, sink = self._read_fd, self._write_fd, self._sink
            self._read_fd = self._write_fd = self._sink = None
            if write_fd is not None:
                with contextlib.suppress(OSError):
                    os.close(write_fd)
            if read_fd is not None and sink is not None:
                while _copy_once(read_fd, sink):
                    pass
            if read_fd is not None:
                with contextlib.suppress(OSError):
                    os.close(read_fd)
        finally:
            self._lock.release()
        self._wake()  # the thread stops watching the closed pipe
        return True

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full: the thread is to look again anyway
            os.write(self._wake_w, b"x")

    def _run(self) -> None:
        while True:
            with self._lock:
                fd = self._read_fd
            poller = select.poll()
            poller.register(self._wake_r, select.POLLIN)
            if fd is not None:
                poller.register(fd, select.POLLIN)
            ready = {ready_fd for ready_fd, _ in poller.poll()}
            if self._wake_r in ready:
                with contextlib.suppress(OSError):
                    os.read(self._wake_r, 4096)
            if fd is not None and fd in ready:
                with self._lock:
                    if fd == self._read_fd and self._sink is not None:
                        _copy_once(fd, self._sink)


def _copy_once(fd: int, sink: LogSink) -> bool:
    """Copy one chunk of what the pipe *fd* holds into *sink*; False when it holds nothing (or
    is closed)."""
    try:
        data = os.read(fd, HOLD_LIMIT)
    except OSError:  # BlockingIOError: empty for now
        return False
    if data:
        _into(sink, data)
    return bool(data)


def _into(sink: LogSink, data: bytes) -> None:
    """Add *data* to *sink*. Whatever goes wrong, the pipe is still read: a reader that stopped
    would leave the task blocked on a full pipe."""
    try:
        sink.write(data)
    except Exception as err:
        sink.fail(err)
