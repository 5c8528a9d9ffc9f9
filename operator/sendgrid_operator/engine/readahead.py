"""Read-ahead: the next batches are read and converted on a second thread.

Why: in the first pass, decoding a Parquet or database batch and the fast path's
``pyarrow.compute`` kernels release the GIL, while hashing emails and writing the spool
hold it. Done one after the other they use one core; with the next batches prepared on
another thread while this one hashes and spools the current one, both cores work (the
machine's other core is otherwise idle until the upload starts).

The catch is the GIL hand-over: each kernel call releases the GIL and must take it back
from a thread running Python, which lets go only every ``sys.getswitchinterval()``
seconds (5 ms by default). With tens of kernel calls per batch the worker spent more time
waiting for the GIL than computing, and the first pass was no faster than on one thread.
So while the worker runs the interval is 1 ms, and batches are large enough that each
call does real work per hand-over (16,384 Parquet rows; 32,768 while this thread still
hashed the emails itself, before :mod:`.keyhash`).

:func:`read_ahead` keeps at most ``depth`` prepared items waiting, so memory stays
bounded; an exception on the worker is raised in the consumer at the item where it
happened; closing the returned generator (or leaving it early) stops the worker and waits
for it, so the caller may close the source afterwards.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable, Generator, Iterator
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

_DONE = object()
#: The GIL switch interval while a worker runs (seconds).
SWITCH_INTERVAL = 0.001


class _Failed:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def read_ahead(
    items: Callable[[], Iterator[T]], prepare: Callable[[T], R], depth: int = 2
) -> Generator[tuple[T, R]]:
    """``(item, prepare(item))`` for every item of ``items()``, in order; ``items()`` is
    called, iterated and ``prepare`` applied on a worker thread."""
    ready: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(value: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            iterator = items()
            try:
                for item in iterator:
                    if stop.is_set() or not put((item, prepare(item))):
                        return
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put(_Failed(exc))
            return
        put(_DONE)

    worker = threading.Thread(target=work, name="sgexport-read-ahead", daemon=True)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, SWITCH_INTERVAL))
    worker.start()
    try:
        while True:
            value = ready.get()
            if value is _DONE:
                return
            if isinstance(value, _Failed):
                raise value.error
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        worker.join()
        sys.setswitchinterval(interval)
