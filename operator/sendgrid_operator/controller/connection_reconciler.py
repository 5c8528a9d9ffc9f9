"""Reconcile a SendGridConnection: check it when it changed, when its Secret changed, and
periodically; write Ready with a reason a person understands.

Secrets are not watched cluster-wide (that would need list/watch on every Secret): each
connection's own Secret is looked at with a GET on the poll tick, and a new
resourceVersion triggers a check at once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sendgrid_operator.api.common import ConditionReason
from sendgrid_operator.controller import conditions, schedule
from sendgrid_operator.controller.connections import CheckResult, check_connection
from sendgrid_operator.controller.context import Context

JSON = dict[str, Any]
RETRY_UNREACHABLE = timedelta(seconds=30)


async def _secret_changed(ctx: Context, body: JSON, status: JSON) -> bool:
    spec = body.get("spec") or {}
    ref = spec.get("apiKeySecretRef") or {}
    if not ref.get("name"):
        return False
    secret = await ctx.kube.get_or_none("secrets", body["metadata"]["namespace"], ref["name"])
    rv = (secret or {}).get("metadata", {}).get("resourceVersion")
    return bool(rv != status.get("secretResourceVersion"))


def _ready(status: JSON) -> JSON:
    found: JSON = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    return found


async def check_due(ctx: Context, body: JSON, *, poll: bool) -> bool:
    meta = body["metadata"]
    status = body.get("status") or {}
    if not status.get("conditions") or status.get("observedGeneration") != meta.get("generation"):
        return True
    if not poll:
        return False
    last = schedule.parse_time(status.get("lastCheckedTime"))
    now = datetime.now(UTC)
    interval = timedelta(seconds=int((body.get("spec") or {}).get("checkIntervalSeconds", 600)))
    if last is None or now - last >= interval:
        return True
    ready = _ready(status)
    if (
        ready.get("reason") == ConditionReason.SENDGRID_UNREACHABLE
        and now - last >= RETRY_UNREACHABLE
    ):
        return True
    return await _secret_changed(ctx, body, status)


async def reconcile(ctx: Context, body: JSON, *, poll: bool = False) -> None:
    """Check the connection when due; one check at a time per connection."""
    async with ctx.locks[body["metadata"]["uid"]]:
        fresh = await ctx.kube.get_or_none(
            "sendgridconnections", body["metadata"]["namespace"], body["metadata"]["name"]
        )
        if fresh is not None and fresh["metadata"].get("uid") == body["metadata"]["uid"]:
            await _reconcile_locked(ctx, fresh, poll=poll)


async def _reconcile_locked(ctx: Context, body: JSON, *, poll: bool) -> None:
    meta = body["metadata"]
    ns, name = meta["namespace"], meta["name"]
    status = body.get("status") or {}
    if not await check_due(ctx, body, poll=poll):
        ready = _ready(status)
        ctx.metrics.connection_ready.labels(ns, name).set(1 if ready.get("status") == "True" else 0)
        return
    result: CheckResult = await check_connection(body, ctx.kube, ctx.read_scopes)
    generation = meta.get("generation")
    desired = conditions.kstatus_set(
        ready=result.ready,
        reason=result.reason,
        message=result.message,
        generation=generation,
        stalled=result.stalled,
    )
    patch: JSON = {
        "observedGeneration": generation,
        "lastCheckedTime": conditions.now_rfc3339(),
        "conditions": conditions.merge(status.get("conditions"), desired),
        "scopes": result.scopes,
        "secretResourceVersion": result.secret_resource_version,
    }
    updated = await ctx.kube.patch(
        "sendgridconnections", ns, name, {"status": patch}, subresource="status"
    )
    ctx.connections[(ns, name)] = updated
    ctx.metrics.connection_ready.labels(ns, name).set(1 if result.ready else 0)
    before = _ready(status)
    if before.get("reason") != result.reason or before.get("status") != (
        "True" if result.ready else "False"
    ):
        await ctx.emit(body, "Normal" if result.ready else "Warning", result.reason, result.message)
