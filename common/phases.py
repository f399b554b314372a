"""Where a run's seconds go, measured by the run itself and written to timings.json ("phases")."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager

PHASES = ("import", "data", "init", "compile", "train", "evaluate", "write")


class PhaseClock:
    """Seconds per phase of one process: import, data, init, compile, train, evaluate, write."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self._open: list[list] = []  # [phase, since] of the phases entered and not left, innermost last

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] += seconds

    @contextmanager
    def __call__(self, phase: str):
        """Time a phase; one entered inside another (a CUDA graph captured during the first epoch)
        pauses the outer one, so every second counts once."""
        now = time.perf_counter()
        if self._open:
            outer = self._open[-1]
            self.seconds[outer[0]] += now - outer[1]
        self._open.append([phase, now])
        try:
            yield
        finally:
            now = time.perf_counter()
            inner = self._open.pop()
            self.seconds[inner[0]] += now - inner[1]
            if self._open:
                self._open[-1][1] = now

    def rounded(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self.seconds.items()}


def process_age() -> float:
    """Seconds since this process started (Linux: from /proc, to 10 ms; elsewhere: since this import)."""
    try:
        start_ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
        uptime = float(open("/proc/uptime").read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _IMPORTED


_IMPORTED = time.perf_counter()
CLOCK = PhaseClock()  # the process's one clock: a CLI run is one process
