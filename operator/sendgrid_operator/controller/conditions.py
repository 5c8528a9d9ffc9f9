"""Build the kstatus conditions (Ready, Reconciling, Stalled) for a status patch.

A transition time changes only when a condition's status changes, so watchers see a
stable object while nothing happens; the helpers here keep that rule in one place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sendgrid_operator.api.common import ConditionStatus, ConditionType

MAX_MESSAGE = 1024


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(
    ctype: ConditionType,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int | None,
) -> dict[str, Any]:
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 1] + "…"
    return {
        "type": str(ctype),
        "status": str(status),
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def merge(
    existing: Iterable[Mapping[str, Any]] | None, desired: Iterable[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The desired conditions, keeping lastTransitionTime where the status did not change."""
    old = {c.get("type"): c for c in existing or []}
    stamp = now_rfc3339()
    out = []
    for cond in desired:
        prev = old.get(cond["type"])
        keep = prev is not None and prev.get("status") == cond["status"]
        cond = {
            **cond,
            "lastTransitionTime": prev.get("lastTransitionTime") if keep and prev else stamp,
        }
        out.append(cond)
    return out


def kstatus_set(
    *,
    ready: bool,
    reason: str,
    message: str,
    generation: int | None,
    reconciling: bool = False,
    stalled: bool = False,
) -> list[dict[str, Any]]:
    """Ready plus the abnormal-true conditions kstatus reads (Reconciling, Stalled)."""
    t, f = ConditionStatus.TRUE, ConditionStatus.FALSE
    out = [condition(ConditionType.READY, t if ready else f, reason, message, generation)]
    out.append(
        condition(
            ConditionType.RECONCILING,
            t if reconciling else f,
            reason,
            message if reconciling else "",
            generation,
        )
    )
    out.append(
        condition(
            ConditionType.STALLED,
            t if stalled else f,
            reason,
            message if stalled else "",
            generation,
        )
    )
    return out


def same(a: Iterable[Mapping[str, Any]] | None, b: Iterable[Mapping[str, Any]]) -> bool:
    """Equal but for transition times: no status patch is needed."""

    def key(conds: Iterable[Mapping[str, Any]] | None) -> list[tuple[Any, ...]]:
        return sorted(
            (
                c.get("type"),
                c.get("status"),
                c.get("reason"),
                c.get("message"),
                c.get("observedGeneration"),
            )
            for c in conds or []
        )

    return key(a) == key(b)
