"""What every reconcile needs, built once at start-up and passed explicitly.

No module-level state: tests build a Context of their own (a Kube pointed at the test
control plane, a fresh metrics registry), the operator builds one in its startup handler.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sendgrid_operator.controller.connections import ScopeReader
from sendgrid_operator.controller.kube import Kube
from sendgrid_operator.controller.metrics import Metrics
from sendgrid_operator.controller.settings import Settings

JSON = dict[str, Any]
#: Posts a Kubernetes Event: (object, type Normal|Warning, reason, message).
EventSink = Callable[[JSON, str, str, str], Awaitable[None] | None]


@dataclass
class Context:
    settings: Settings
    kube: Kube
    metrics: Metrics
    read_scopes: ScopeReader
    event: EventSink
    connections: dict[tuple[str, str], JSON] = field(default_factory=dict)
    """The latest body of every SendGridConnection, kept by a watch (no GET per reconcile)."""
    exports: dict[str, JSON] = field(default_factory=dict)
    """The latest body of every SegmentExport by uid, kept by a watch, for the schedule loop."""
    handled: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    """Per export uid, the spec generation and run request a watch event last reconciled
    successfully (``handlers._trigger``): later events with the same are status writes."""
    locks: defaultdict[str, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))
    """One lock per export uid: the timer, the watch and a Job's end never interleave."""

    async def emit(self, obj: JSON, type_: str, reason: str, message: str) -> None:
        result = self.event(obj, type_, reason, message)
        if result is not None:
            await result
