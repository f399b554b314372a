"""Write a file so that a reader sees the old file or the whole new one, never a part.

It lives in data/, the bottom layer, because the loader writes its cache and downloads with it;
the run machinery above (common/) imports it from here."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it: set it straight back
    os.umask(mask)
    return mask


# mkstemp creates files 0600; a run's files should be readable as any other file the user makes.
FILE_MODE = 0o666 & ~_umask()


def atomic_write(path: str | os.PathLike, payload: bytes) -> None:
    """Temporary file in the same folder, fsync, rename, then fsync the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
