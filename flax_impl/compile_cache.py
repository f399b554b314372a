"""JAX's persistent compilation cache, on by default for the CLI: a second run loads its compiled
steps from disk instead of compiling them again (on a 2-core CPU, seconds of every run).

Where: --compilation-cache DIR, else $FASHION_PARITY_JAX_CACHE, else $XDG_CACHE_HOME/fashion-parity/jax
(~/.cache/fashion-parity/jax). "off" in either place switches it off. A cache folder that cannot be
made or written, or a corrupt entry, never fails a run: JAX (or this module) warns and compiles.
"""

from __future__ import annotations

import os
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


def enable(setting: str | None = None) -> str | None:
    """Switch the cache on in the chosen folder (None: the environment, else the default) or off.

    Returns the folder in use, or None when the cache is off. Call before the first compilation.
    """
    value = setting if setting is not None else os.environ.get(ENV, "")
    if value.strip().lower() in OFF and value.strip():
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    path = Path(value).expanduser() if value.strip() else default_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as e:
        warnings.warn(f"compilation cache {path} is not usable ({e.strerror or e}); compiling without it",
                      stacklevel=2)
        jax.config.update("jax_enable_compilation_cache", False)
        return None
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
