"""The running emulator's shared state, handed to every handler through the aiohttp app.

One object owns the account data (store), the job worker, faults, rate limits, keys and
the request log, so handlers, middleware, the admin API and persistence all see the same
world without globals.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web

from sendgrid_operator.emulator.config import ApiKey, EmulatorConfig
from sendgrid_operator.emulator.faults import FaultInjector
from sendgrid_operator.emulator.jobs import JobRunner
from sendgrid_operator.emulator.ratelimit import RateLimiter
from sendgrid_operator.emulator.store import Store

REQUEST_LOG_MAX = 200_000


@dataclass(frozen=True)
class RequestRecord:
    """One SendGrid-facing request as the request log keeps it."""

    method: str
    path: str
    endpoint: str
    status: int
    bytes: int
    contacts: int
    timestamp: float
    duration: float
    fault: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Context:
    """Everything a request may touch."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.store = Store()
        self.keys: dict[str, ApiKey] = {k.key: k for k in config.api_keys}
        self.faults = FaultInjector(config.faults, config.fault_seed)
        self.limiter = RateLimiter(config.rate_limits)
        self.reset_mode: str = config.reset_header
        self.log: deque[RequestRecord] = deque(maxlen=REQUEST_LOG_MAX)
        self.totals: Counter[tuple[str, int]] = Counter()  # (endpoint, status) since start
        self.base_url = ""
        self.track_changes = config.state_file is not None
        self.dirty_contacts: set[str] = set()
        self.meta_dirty = False
        self.runner = JobRunner(self.store, config.apply_delay, self.contacts_changed)
        self.runner.freeze_gc = config.freeze_gc
        self.started = time.time()

    def contacts_changed(self, ids: list[str]) -> None:
        if self.track_changes:
            self.dirty_contacts.update(ids)
            self.meta_dirty = True

    def changed(self) -> None:
        """Lists, fields or counters changed (persisted at the next save)."""
        self.meta_dirty = True

    def record(self, rec: RequestRecord) -> None:
        self.log.append(rec)
        self.totals[(rec.endpoint, rec.status)] += 1

    def reset(self) -> None:
        """Forget all account data, jobs, the request log, faults and rate windows."""
        old = self.store
        self.store = Store()
        self.runner.store = self.store
        self.runner.jobs.clear()
        self.runner.exports.clear()
        self.runner.discard_pending()
        self.log.clear()
        self.totals.clear()
        self.faults.clear()
        self.limiter.set(self.limiter.specs)
        if self.track_changes:
            self.dirty_contacts.update(old.contacts)
            self.meta_dirty = True


CTX = web.AppKey("sendgrid_emulator_context", Context)
BODY_BYTES = web.RequestKey("sendgrid_emulator_body_bytes", int)
BODY_CONTACTS = web.RequestKey("sendgrid_emulator_body_contacts", int)
