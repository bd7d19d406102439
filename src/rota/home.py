"""``ROTA_HOME`` is private: folders 0700, files 0600; a home others could tamper with is refused.

Every folder and file Rota makes under the home (the SQLite file, logs, callbacks.log, artifacts,
checkpoints) is created through this module, with its mode set explicitly rather than left to the
umask. Files are opened without following a symbolic link, so nothing planted at a predictable
name (an attempt's log path) can redirect a write. :func:`check_home` is called once at the
edge, when a command opens the home: it refuses a home, store file or logs folder that another
user owns or that group or others can write, since whoever can plant ``rota.db`` decides which
flow files ``rota resume`` imports.

It sits below every layer (it imports only :mod:`rota.errors`), so the store, the artifact store
and the executors all create their files the same way.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from rota.errors import UnsafeHome

DIR_MODE: Final = 0o700
FILE_MODE: Final = 0o600

_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
_TRIES: Final = 8  # how often a name is freed and tried again before giving up


def private_dir(path: Path) -> Path:
    """Create the folder *path* and any missing parents, each 0700; return *path*.

    Folders that exist already are left as they are (:func:`check_home` judges the home's own).

    Raises:
        OSError: a folder cannot be created (e.g. a file is in the way).
    """
    if path.is_dir():
        return path
    missing: list[Path] = []
    here = path
    while not here.is_dir() and here.parent != here:
        missing.append(here)
        here = here.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, DIR_MODE)
        except FileExistsError:
            if not folder.is_dir():
                raise
            continue  # made meanwhile by another worker of ours
        os.chmod(folder, DIR_MODE)  # the umask may have taken bits away; set it, don't assume it
    return path


def create_exclusive(path: Path) -> int:
    """Create *path* as a new empty 0600 file and return a read-write descriptor for it.

    The file is created with ``O_EXCL``: whatever is at *path* already (a stale file of ours, a
    planted symbolic link) is removed, never opened or followed, and creation tried again.

    Raises:
        OSError: *path* stayed taken (e.g. by a folder) after several tries.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
    for _ in range(_TRIES):
        try:
            fd = os.open(path, flags, FILE_MODE)
        except FileExistsError:
            # Unlinking removes the name only: a symbolic link's target is never touched.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            continue
        os.fchmod(fd, FILE_MODE)
        return fd
    raise FileExistsError(f"{path} is taken and could not be freed")


def open_private(path: Path, *, append: bool = False) -> int:
    """Open *path* for writing (truncated, or at its end with *append*); create it 0600.

    The folder is created first (0700). A symbolic link at *path* is replaced by a plain file,
    never followed.

    Raises:
        OSError: the file cannot be created or opened.
    """
    private_dir(path.parent)
    flags = os.O_WRONLY | os.O_CREAT | _NOFOLLOW | _CLOEXEC
    flags |= os.O_APPEND if append else os.O_TRUNC
    try:
        fd = os.open(path, flags, FILE_MODE)
    except OSError:
        if not path.is_symlink():
            raise
        return create_exclusive(path)
    os.fchmod(fd, FILE_MODE)
    return fd


def write_private(path: Path, data: bytes) -> None:
    """Replace *path* with a 0600 file holding *data*: written beside it, then renamed over it.

    Raises:
        OSError: the file cannot be written.
    """
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)  # a rename replaces a symbolic link at *path*, never follows it
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def check_home(home: Path, *, store_file: Path | None = None) -> None:
    """Create *home* (0700) if it is missing, then refuse it if another user could tamper with it.

    Checked: *home*, its ``logs`` folder and *store_file* (the SQLite file, with its ``-wal`` and
    ``-shm`` files), each if it exists. One of them that another user owns, or that group or
    others can write, is refused. One that is ours and only readable by others is made private
    (0700 or 0600): older versions of Rota left them to the umask.

    Raises:
        UnsafeHome: one of them is refused; the message names it and the command that fixes it.
    """
    try:
        private_dir(home)
    except OSError as err:
        raise UnsafeHome(f"cannot create ROTA_HOME {home}: {err.strerror or err}", home) from None
    for path in _checked(home, store_file):
        try:
            info = path.stat()
        except FileNotFoundError:
            continue
        _judge(path, info)


def check_config_file(path: Path, *, make_private: bool) -> None:
    """Refuse the configuration file *path* if another user could have written it.

    The file and its folder are refused when another user owns them or group or others can
    write them (whoever can change the configuration chooses the store Rota opens and the flow
    files it imports). With *make_private* (``rota.toml``, one of the home's files) a file that
    is ours and readable by others is made 0600, as the home's other files are; a project's
    ``pyproject.toml`` keeps its mode.

    Raises:
        UnsafeHome: the file or its folder is refused; the message names it and the fix.
    """
    for target in (path.parent, path):
        try:
            info = target.stat()
        except FileNotFoundError:
            continue
        if make_private:
            _judge(target, info)
        else:
            _refuse_others(target, info)


def _checked(home: Path, store_file: Path | None) -> Iterable[Path]:
    yield home
    yield home / "logs"
    if store_file is not None:
        yield store_file
        yield store_file.with_name(store_file.name + "-wal")
        yield store_file.with_name(store_file.name + "-shm")


def _judge(path: Path, info: os.stat_result) -> None:
    """Refuse *path* if another user owns it or group/others can write it; else make it private.

    Raises:
        UnsafeHome: *path* is refused.
    """
    _refuse_others(path, info)
    if info.st_mode & 0o077:
        os.chmod(path, DIR_MODE if stat.S_ISDIR(info.st_mode) else FILE_MODE)


def _refuse_others(path: Path, info: os.stat_result) -> None:
    """Refuse *path* if another user owns it or group/others can write it.

    Raises:
        UnsafeHome: *path* is refused; the message names the command that fixes it.
    """
    folder = stat.S_ISDIR(info.st_mode)
    mode = DIR_MODE if folder else FILE_MODE
    quoted = shlex.quote(str(path))
    me = os.geteuid()
    if info.st_uid != me:
        raise UnsafeHome(
            f"{path} belongs to {_user(info.st_uid)}, not to you ({_user(me)}): use a ROTA_HOME "
            f"of your own, or take it over with `chown -R {_user(me)} {quoted}` "
            f"and `chmod {mode:o} {quoted}`",
            path,
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        risk = "plant files in it" if folder else "change what Rota reads from it"
        raise UnsafeHome(
            f"{path} can be written by {_who(info.st_mode)}, who could {risk}: "
            f"check it, then `chmod {mode:o} {quoted}`",
            path,
        )


def _who(st_mode: int) -> str:
    both = st_mode & stat.S_IWGRP and st_mode & stat.S_IWOTH
    return "its group and others" if both else "its group" if st_mode & stat.S_IWGRP else "others"


def _user(uid: int) -> str:
    """The login name of *uid*, or the number when it has none."""
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)
