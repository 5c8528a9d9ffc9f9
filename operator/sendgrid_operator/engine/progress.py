"""Progress callbacks at a bounded rate, delivered on the event loop's thread.

The engine counts every row; people and the Kubernetes status need a few updates a second
at most. :class:`ProgressReporter` keeps the latest counts, emits when ``interval`` has
passed or the phase changes, and hands the callback to the event loop with
``call_soon_threadsafe`` when the count comes from the reading thread, so a callback
never needs to be thread-safe.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import Callable

from sendgrid_operator.api.report import Phase, Progress

ProgressCallback = Callable[[Progress], None]

# Share of the bar each phase covers (start, end), in percent.
_SPANS: dict[Phase, tuple[int, int]] = {
    Phase.PENDING: (0, 0),
    Phase.READING: (0, 40),
    Phase.UPLOADING: (40, 90),
    Phase.VERIFYING: (90, 98),
    Phase.REMOVING: (98, 100),
    Phase.FINISHED: (100, 100),
}


class ProgressReporter:
    def __init__(
        self,
        callback: ProgressCallback | None,
        interval: float,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.callback = callback
        self.interval = interval
        self.loop = loop or asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self.state = Progress()
        self._last = 0.0
        self.emitted = 0
        self.to_send = 0
        self.to_remove = 0

    def phase(self, phase: Phase) -> None:
        if self.state.phase != phase:
            self.state = self.state.model_copy(update={"phase": phase})
            self._emit()

    def update(self, *, force: bool = False, **counts: int | None) -> None:
        self.state = self.state.model_copy(update=counts)
        if force or time.monotonic() - self._last >= self.interval:
            self._emit()

    def _percent(self) -> int | None:
        s = self.state
        start, end = _SPANS[Phase(s.phase)]
        if s.phase == Phase.READING:
            if not s.total:
                return None
            fraction = s.read / s.total
        elif s.phase == Phase.UPLOADING:
            fraction = s.sent / self.to_send if self.to_send else 1.0
        elif s.phase == Phase.VERIFYING:
            fraction = s.applied / self.to_send if self.to_send else 1.0
        elif s.phase == Phase.REMOVING:
            fraction = s.removed / self.to_remove if self.to_remove else 1.0
        else:
            fraction = 1.0
        return max(0, min(100, int(start + (end - start) * min(1.0, fraction))))

    def _emit(self) -> None:
        self._last = time.monotonic()
        if self.callback is None:
            return
        snapshot = self.state.model_copy(
            update={
                "percent": self._percent(),
                "updated_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )
        self.emitted += 1
        if threading.get_ident() == self._loop_thread:
            self.callback(snapshot)
        else:
            self.loop.call_soon_threadsafe(self.callback, snapshot)
