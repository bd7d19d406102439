"""The UI's access token: random, made once per ``ROTA_HOME``, kept in a private file.

The token file is ``$ROTA_HOME/ui-token`` (0600, created exclusively, never through a symbolic
link): two homes never share a token, and whoever can read the file could read the store anyway.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
from pathlib import Path
from typing import Final

from rota.errors import UnsafeHome
from rota.home import create_exclusive, private_dir

TOKEN_FILE: Final = "ui-token"
TOKEN_BYTES: Final = 32
_MIN_CHARS: Final = 43  # 32 random bytes in URL-safe base64


def token_path(home: Path) -> Path:
    """Where the home's token is kept."""
    return home / TOKEN_FILE


def load_or_create(home: Path) -> tuple[str, bool]:
    """The home's token, made on first use; and whether it was made now.

    Raises:
        UnsafeHome: the token file is not a private regular file of ours, or is not a token.
    """
    path = token_path(home)
    private_dir(home)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        fd = create_exclusive(path)
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
        return token, True
    except OSError as err:  # a symbolic link (ELOOP), or unreadable
        raise UnsafeHome(f"{path} cannot be read as the UI token: {err.strerror}", path) from None
    with os.fdopen(fd) as fh:
        info = os.fstat(fh.fileno())
        text = fh.read(4096).strip()
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise UnsafeHome(
            f"{path} is not a private file of yours (mode {info.st_mode & 0o777:o}): remove it "
            "and start `rota ui` again to make a new token",
            path,
        )
    if len(text) < _MIN_CHARS or not text.isascii():
        raise UnsafeHome(f"{path} does not hold a token: remove it to make a new one", path)
    return text, False


def same(given: str | None, token: str) -> bool:
    """Whether *given* is *token*, compared in constant time."""
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode())


def derive(token: str, purpose: str) -> str:
    """A value derived from *token* for one *purpose* (the session cookie, CSRF tokens)."""
    return hmac.new(token.encode(), purpose.encode(), "sha256").hexdigest()
