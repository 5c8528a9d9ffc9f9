"""Kubernetes Events for the operator's resources (core/v1, as kubectl describe shows them).

Posted through the operator's own client so that any code path can post one, not only a
kopf handler. Messages are truncated and never carry secrets: callers pass messages built
from reasons and counts.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime
from typing import Any

from sendgrid_operator.controller.kube import ApiError, Kube

log = logging.getLogger(__name__)
JSON = dict[str, Any]
COMPONENT = "sendgrid-operator"


def build_event(obj: JSON, type_: str, reason: str, message: str) -> JSON:
    meta = obj["metadata"]
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{meta['name'][:200]}.{secrets.token_hex(8)}",
            "namespace": meta["namespace"],
        },
        "involvedObject": {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
        },
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


class EventPoster:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    async def __call__(self, obj: JSON, type_: str, reason: str, message: str) -> None:
        event = build_event(obj, type_, str(reason), message)
        try:
            await self.kube.create("events", obj["metadata"]["namespace"], event)
        except ApiError as exc:
            log.warning(
                "could not post event %s on %s: %s", reason, obj["metadata"]["name"], exc.reason
            )
