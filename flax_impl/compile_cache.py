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
# JAX records a request for every compilation that may use the cache, and a hit for each one loaded;
# its "cache_misses" event comes only where an entry is written (process 0 alone writes), so the
# misses are counted here as requests that did not hit.
_REQUEST = "/jax/compilation_cache/compile_requests_use_cache"
_HIT = "/jax/compilation_cache/cache_hits"


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
        try:  # no exists-then-make: two first runs at once would both try to make it
            path.mkdir(mode=0o700, parents=True)  # parents as the umask says, the cache itself private
            path.chmod(0o700)
        except FileExistsError:
            pass  # made before, maybe by a run a moment ago: checked below like any other
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
    # Cache every program: ours compile in well under JAX's default threshold of 1 s each. (Entry size:
    # JAX's default, 0, already caches every size.)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return str(path)


class CacheCounter:
    """Counts persistent-cache hits and misses of the compilations made inside a `with` block."""

    def __init__(self):
        self.requests = self.hits = 0

    @property
    def misses(self) -> int:
        return self.requests - self.hits

    def _listen(self, event: str, **_):
        if event == _REQUEST:
            self.requests += 1
        elif event == _HIT:
            self.hits += 1

    def __enter__(self) -> CacheCounter:
        jax.monitoring.register_event_listener(self._listen)
        return self

    def __exit__(self, *exc) -> None:
        jax.monitoring.unregister_event_listener(self._listen)

    def describe(self) -> str:
        """'from the compilation cache', 'compiled, now cached', 'N of M from the cache', or 'cache off'."""
        total = self.requests
        if total == 0:
            return "compilation cache off"
        if self.hits == total:
            return "loaded from the compilation cache"
        if self.hits == 0:  # JAX saves from process 0 only
            return "compiled; saved to the compilation cache" if jax.process_index() == 0 else "compiled"
        return f"{self.hits} of {total} programs from the compilation cache"
