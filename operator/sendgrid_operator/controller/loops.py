"""The operator's two clocks: schedules and connection checks, one task each.

kopf timers would start one task per object and put a finalizer on every object, so that
deleting an export hangs while the operator is down. Instead the watch keeps an index of
the objects (``Context.exports``, ``Context.connections``) and these loops walk it:

- the schedule loop reconciles an export when its ``nextScheduleTime`` has come, and every
  export once per resync period (level-based safety net);
- the connection loop re-checks each connection (its Secret, its key) when due.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from sendgrid_operator.controller import connection_reconciler, exports, schedule
from sendgrid_operator.controller.context import Context

log = logging.getLogger(__name__)
JSON = dict[str, Any]
RESYNC_SECONDS = 60.0
Measure = Callable[[Context, str, Callable[[], Awaitable[None]]], Awaitable[bool]]


def export_due(body: JSON, now: datetime) -> bool:
    """True when the export's next schedule slot has come (status.nextScheduleTime)."""
    next_time = schedule.parse_time((body.get("status") or {}).get("nextScheduleTime"))
    return next_time is not None and next_time <= now


async def schedule_loop(ctx: Context, measure: Measure) -> None:
    last_resync: dict[str, float] = {}
    while True:
        await asyncio.sleep(ctx.settings.schedule_tick_seconds)
        now = datetime.now(UTC)
        mono = time.monotonic()
        for uid, body in list(ctx.exports.items()):
            due = export_due(body, now)
            stale = mono - last_resync.get(uid, 0.0) >= RESYNC_SECONDS
            if not (due or stale):
                continue
            last_resync[uid] = mono
            await measure(ctx, "segmentexport", _bind(exports.reconcile, ctx, body))
        for uid in set(last_resync) - set(ctx.exports):
            del last_resync[uid]


async def connection_loop(ctx: Context, measure: Measure) -> None:
    while True:
        await asyncio.sleep(ctx.settings.connection_poll_seconds)
        for body in list(ctx.connections.values()):
            if body["metadata"].get("deletionTimestamp"):
                continue
            await measure(
                ctx,
                "sendgridconnection",
                _bind_poll(ctx, body),
            )


def _bind(
    fn: Callable[[Context, JSON], Awaitable[None]], ctx: Context, body: JSON
) -> Callable[[], Awaitable[None]]:
    return lambda: fn(ctx, body)


def _bind_poll(ctx: Context, body: JSON) -> Callable[[], Awaitable[None]]:
    return lambda: connection_reconciler.reconcile(ctx, body, poll=True)
