"""The single-machine install's home (COGPLANE_HOME): owner-only.

It holds the state database (webhook secrets, inputs, outputs), the install's keys and the admin
token, so the folder is 0700 and every state file 0600 — also for homes made by older versions,
which are tightened on every start (`secure_home`)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

HOME_MODE = 0o700
FILE_MODE = 0o600
# Files the platform keeps in the home (the database with its WAL/shared-memory files, the
# install's signing/encryption secret, the admin token, the local CA's private keys).
STATE_FILES = (
    "cogplane.db",
    "cogplane.db-wal",
    "cogplane.db-shm",
    "ratelimits.db",
    "ratelimits.db-wal",
    "ratelimits.db-shm",
    "secret",
    "token",
    "tls/ca-key.pem",
    "tls/key.pem",
)


def _tighten(path: Path, mode: int) -> None:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode) or info.st_uid != os.getuid():
        return  # never follow a link or change what another user owns
    if stat.S_IMODE(info.st_mode) & ~mode:
        os.chmod(path, stat.S_IMODE(info.st_mode) & mode)


def secure_home(home: Path) -> Path:
    """Create the home 0700 (or tighten an existing one) and make its state files 0600."""
    home = Path(home)
    home.mkdir(mode=HOME_MODE, parents=True, exist_ok=True)
    _tighten(home, HOME_MODE)
    for name in STATE_FILES:
        _tighten(home / name, FILE_MODE)
    return home


def create_private(path: str | Path) -> None:
    """Make sure `path` exists and is 0600 before anything else opens it (SQLite creates the -wal
    and -shm files with the database file's mode)."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        _tighten(path, FILE_MODE)
    else:
        os.close(fd)
