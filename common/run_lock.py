"""One run per --out-dir at a time: an OS lock on the folder that dies with its process.

flock(2) on OUT/.lock, held from before the first file is touched until the process exits. The
kernel releases it however the process ends (exit, exception, SIGKILL), so `--resume` right
after a killed run finds the folder free, while a second live run into it is refused at once.
"""

from __future__ import annotations

import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not protected against each other
    fcntl = None

LOCK_FILE = ".lock"
_held: dict[str, int] = {}  # folder -> open descriptor, kept for the life of the process


class RunLocked(Exception):
    """Another live process is running into the same --out-dir."""


def lock_out_dir(out_dir: str | os.PathLike) -> None:
    """Take the folder's lock (the folder must exist); RunLocked if another process holds it."""
    path = Path(out_dir).resolve() / LOCK_FILE
    if fcntl is None or str(path) in _held:
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RunLocked(f"{Path(out_dir)} is in use by another run (process {holder}); wait for it to finish, "
                        "or choose another --out-dir") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _held[str(path)] = fd

