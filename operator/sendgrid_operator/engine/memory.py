"""Keeping the engine's peak memory low: the allocator settings and a release between phases.

Why: a 1,000,000-profile run must stay under 200 MB, of which about 110 MB is the
interpreter with pyarrow, httpx and pydantic loaded before any row is read. What remains
is spent in phases (read, diff, upload, new state) whose large temporaries are freed at
the end of each phase; the peak is only low if that freed memory really goes back to the
operating system before the next phase allocates its own.

- Arrow's default pool keeps freed pages for reuse (jemalloc decays them over seconds):
  Arrow's jemalloc with a decay time of 0 hands them back at once. (The system allocator
  does too, at the same peak, but with the fixed threshold below every Arrow buffer was a
  fresh mapping, page-faulted in and unmapped again: the first pass at 1,000,000 rows
  took 0.2-0.4 s longer.)
- glibc's malloc raises its mmap threshold each time a large block is freed (up to 32 MB),
  after which multi-megabyte buffers (Arrow arrays, upload bodies) come from the heap and
  fragment it; a fixed threshold keeps every buffer of 1 MB or more in its own mapping,
  returned to the system on free.
- :func:`release` trims what the heap still holds at a phase boundary, after a garbage
  collection. :func:`configure` freezes what is alive by then (``gc.freeze()``: modules,
  classes, the plan; the imports leave no garbage to freeze), so those collections look
  only at the run's own objects: 12-16 ms each with every module walked, none without.

Both are process-wide and harmless elsewhere (no-ops without glibc); :func:`configure`
runs once per process, from :func:`~sendgrid_operator.engine.run.run_export`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
from typing import Any

log = logging.getLogger(__name__)

#: Allocations at least this large get their own mapping (glibc ``M_MMAP_THRESHOLD``).
MMAP_THRESHOLD = 1 << 17
_M_MMAP_THRESHOLD = -3

_state: dict[str, Any] = {"configured": False, "libc": None}


def _libc() -> Any:
    libc = _state["libc"]
    if libc is None:
        libc = False
        name = ctypes.util.find_library("c")
        if name:
            try:
                candidate = ctypes.CDLL(name)
                if hasattr(candidate, "mallopt") and hasattr(candidate, "malloc_trim"):
                    libc = candidate
            except OSError:
                pass
        _state["libc"] = libc
    return libc or None


def configure() -> None:
    """Arrow's jemalloc without decay (or the system allocator) and a fixed malloc mmap
    threshold; once per process."""
    if _state["configured"]:
        return
    _state["configured"] = True
    # what is alive now (modules, classes, the plan) lives as long as the process: the
    # collections at phase boundaries (release()) need not walk it every time
    gc.freeze()
    import pyarrow as pa

    try:
        pa.jemalloc_set_decay_ms(0)  # freed pages go back at once
        pa.set_memory_pool(pa.jemalloc_memory_pool())
    except Exception:  # an Arrow build without jemalloc
        log.debug("no jemalloc in this Arrow build; using the system allocator", exc_info=True)
        try:
            pa.set_memory_pool(pa.system_memory_pool())
        except Exception:  # pragma: no cover - keeps its default
            log.debug("could not switch Arrow to the system allocator", exc_info=True)
    libc = _libc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def release() -> None:
    """Give freed memory back to the system at a phase boundary."""
    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
