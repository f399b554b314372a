"""JAX's persistent compilation cache, on by default for the CLI: a second run loads its compiled
steps from disk instead of compiling them again (on a 2-core CPU, seconds of every run).

Where: --compilation-cache DIR, else $FASHION_PARITY_JAX_CACHE, else $XDG_CACHE_HOME/fashion-parity/jax
(~/.cache/fashion-parity/jax). "off" in either place switches it off. A folder this module creates
is private (0700). JAX loads what it finds there as compiled code, so whoever can write the folder
can run code in this process: a folder that other users may write (group- or world-writable, or
owned by someone else) is not used, with a one-line warning, and neither is one that cannot be
made or written. A corrupt entry is JAX's to report: it warns and compiles. Never a failed run.
"""

from __future__ import annotations

import os
import stat
import tempfile
import warnings
from pathlib import Path

import jax
import jax.monitoring

ENV = "FASHION_PARITY_JAX_CACHE"
OFF = ("off", "none", "no", "0", "false")
_HIT = "/jax/compilation_cache/cache_hits"
_MISS = "/jax/compilation_cache/cache_misses"


def default_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fashion-parity" / "jax"


def unsafe_reason(path: Path) -> str | None:
    """Why other users could write into the folder, or None where only its owner, this user, can."""
    st = path.stat()
    if st.st_uid != os.getuid():
        return f"it belongs to another user (uid {st.st_uid})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"other users can write to it (mode {stat.filemode(st.st_mode)})"
    return None


def _off(message: str | None = None) -> None:
    if message:
        warnings.warn(message, stacklevel=3)
    jax.config.update("jax_enable_compilation_cache", False)


def enable(setting: str | None = None) -> str | None:
    """Switch the cache on in the chosen folder (None: the environment, else the default) or off.

    Returns the folder in use, or None when the cache is off. Call before the first compilation.
    """
    value = (setting if setting is not None else os.environ.get(ENV, "")).strip()
    if value.lower() in OFF and value:
        return _off()
    path = Path(value).expanduser() if value else default_dir()
    try:
        if not path.is_dir():
            path.mkdir(mode=0o700, parents=True)  # parents as the umask says, the cache itself private
            path.chmod(0o700)
        reason = unsafe_reason(path)
        if reason:
            return _off(f"compilation cache {path} is not used: {reason}, and JAX runs what it finds there; "
                        f"compiling without it (chmod go-w {path}, or choose another with --compilation-cache)")
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as e:
        return _off(f"compilation cache {path} is not usable ({e.strerror or e}); compiling without it")
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    # Cache every program: ours compile in well under JAX's default threshold of 1 s each.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return str(path)


class CacheCounter:
    """Counts persistent-cache hits and misses of the compilations made inside a `with` block."""

    def __init__(self):
        self.hits = self.misses = 0

    def _listen(self, event: str, **_):
        if event == _HIT:
            self.hits += 1
        elif event == _MISS:
            self.misses += 1

    def __enter__(self) -> CacheCounter:
        jax.monitoring.register_event_listener(self._listen)
        return self

    def __exit__(self, *exc) -> None:
        jax.monitoring.unregister_event_listener(self._listen)

    def describe(self) -> str:
        """'from the compilation cache', 'compiled, now cached', 'N of M from the cache', or 'cache off'."""
        total = self.hits + self.misses
        if total == 0:
            return "compilation cache off"
        if self.hits == total:
            return "loaded from the compilation cache"
        if self.hits == 0:
            return "compiled; saved to the compilation cache"
        return f"{self.hits} of {total} programs from the compilation cache"
