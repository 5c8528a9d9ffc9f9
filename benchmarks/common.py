"""Helpers shared by several benchmarks.

The emulator, data and list helpers live in ``bench_engine`` (private names there); they
are re-exported here under public names so the other benchmarks import one stable module
and ``bench_engine`` stays as it is. Also here: sampling a process's memory and CPU time
from ``/proc`` (for processes this benchmark did not start itself, such as the operator's
Pod run by the devcluster's node agent).
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.bench_engine import KEY, ROOT
from benchmarks.bench_engine import _env as env
from benchmarks.bench_engine import _make_parquet as make_parquet
from benchmarks.bench_engine import _manifest as manifest
from benchmarks.bench_engine import _new_list as new_list
from benchmarks.bench_engine import _spawn_emulator as spawn_emulator
from benchmarks.bench_engine import _spawn_server as spawn_server

__all__ = [
    "KEY",
    "ROOT",
    "ProcSampler",
    "cpu_seconds",
    "env",
    "make_parquet",
    "manifest",
    "new_list",
    "percentile",
    "rss_mb",
    "spawn_emulator",
    "spawn_server",
]

_TICKS = os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int, field_name: str = "VmRSS") -> float | None:
    """A memory figure of ``/proc/<pid>/status`` in MB (VmRSS now, VmHWM the peak)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of the process so far (``/proc/<pid>/stat``)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14, 15)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass
class ProcSampler:
    """Samples a process's RSS every ``interval`` seconds in a thread, with phase marks."""

    pid: int
    interval: float = 0.25
    samples: list[tuple[float, float]] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> ProcSampler:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            value = rss_mb(self.pid)
            if value is not None:
                self.samples.append((time.monotonic(), value))
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def mark(self, name: str) -> None:
        self.marks[name] = time.monotonic()

    def between(self, start: str, end: str | None = None) -> list[float]:
        t0 = self.marks[start]
        t1 = self.marks[end] if end is not None else float("inf")
        return [v for t, v in self.samples if t0 <= t <= t1]

    def summary(self, start: str, end: str | None = None) -> dict[str, float]:
        values = self.between(start, end)
        if not values:
            return {}
        return {
            "median_mb": round(statistics.median(values), 1),
            "max_mb": round(max(values), 1),
            "last_mb": round(values[-1], 1),
        }
