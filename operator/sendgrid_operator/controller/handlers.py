"""The one module that knows kopf: it registers handlers that call plain functions.

Handlers are registered into a registry built *after* the settings are loaded
(:func:`build_registry`), so no decorator argument is read at import time.
All reconciling is level-based: watch events and the operator's two loops (``loops``) call
the same idempotent functions. Only watch-event handlers are registered, so kopf writes
nothing to the users' objects: no finalizers (deleting an export never waits for the
operator), no progress annotations.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import kopf
import prometheus_client

from sendgrid_operator.api.common import GROUP, RUN_REQUESTED_ANNOTATION, VERSION
from sendgrid_operator.controller import connection_reconciler, exports, jobs, loops, server
from sendgrid_operator.controller.connections import make_scope_reader
from sendgrid_operator.controller.context import Context
from sendgrid_operator.controller.events import EventPoster
from sendgrid_operator.controller.kube import Kube
from sendgrid_operator.controller.metrics import Metrics
from sendgrid_operator.controller.settings import Settings

log = logging.getLogger(__name__)
CONNECTIONS = (GROUP, VERSION, "sendgridconnections")
EXPORTS = (GROUP, VERSION, "segmentexports")
JOBS = ("batch", "v1", "jobs")


async def _measured(ctx: Context, controller: str, work: Callable[[], Awaitable[None]]) -> bool:
    """Run one reconcile, counted and timed; False if it failed (logged, not raised)."""
    started = time.monotonic()
    try:
        await work()
    except Exception:
        ctx.metrics.reconcile_total.labels(controller, "error").inc()
        ctx.metrics.reconcile_errors_total.labels(controller).inc()
        log.exception(
            "reconcile of a %s failed; it is retried on the next event or tick", controller
        )
        return False
    else:
        ctx.metrics.reconcile_total.labels(controller, "success").inc()
        return True
    finally:
        ctx.metrics.reconcile_time_seconds.labels(controller).observe(time.monotonic() - started)


def _trigger(body: dict[str, Any]) -> tuple[Any, ...]:
    """What in an export can ask the reconcile for something new: its spec (generation)
    and its on-demand request. A watch event that changes neither is a status write (the
    operator's own, or a Job's progress report) and needs no reconcile: a Job's end, a
    due schedule, a connection's change and the periodic resync reconcile through their
    own paths."""
    meta = body["metadata"]
    return (meta.get("generation"), (meta.get("annotations") or {}).get(RUN_REQUESTED_ANNOTATION))


def _usability(body: dict[str, Any] | None) -> tuple[Any, ...] | None:
    """What exports read from their connection: its spec's generation (consent, allowed
    namespaces) and its Ready condition, for the generation it was checked at."""
    if body is None:
        return None
    for cond in (body.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return (
                body["metadata"].get("generation"),
                cond.get("status"),
                cond.get("observedGeneration"),
            )
    return (body["metadata"].get("generation"), None, None)


def _bind(
    fn: Callable[[Context, dict[str, Any]], Awaitable[None]], ctx: Context, body: dict[str, Any]
) -> Callable[[], Awaitable[None]]:
    return lambda: fn(ctx, body)


def build_registry(settings: Settings) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    state: dict[str, Any] = {"ready": False}

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        """Kubeconfig or in-cluster ServiceAccount, as the official client reads them."""
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        # Only watch-event handlers are registered, so kopf writes nothing to the objects;
        # should that change, its marks stay under the project's own API group.
        settings.persistence.finalizer = f"{GROUP}/finalizer"
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
        settings.posting.enabled = False
        settings.scanning.disabled = True
        settings.watching.server_timeout = 300
        # The chart installs ClusterKopfPeering only: peer cluster-wide even when watching
        # a list of namespaces.
        settings.peering.clusterwide = True
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        kube = Kube.from_configuration()
        ctx = Context(
            settings=_settings,
            kube=kube,
            metrics=Metrics(),
            read_scopes=make_scope_reader(_settings.sendgrid_timeout_seconds),
            event=EventPoster(kube),
        )
        memo["ctx"] = ctx
        channel = server.RunChannel(ctx, ready=lambda: bool(state["ready"]))
        memo["runner"] = await server.start(channel, _settings.http_host, _settings.http_port)
        memo["loops"] = [
            asyncio.create_task(loops.schedule_loop(ctx, _measured), name="schedule-loop"),
            asyncio.create_task(loops.connection_loop(ctx, _measured), name="connection-loop"),
        ]
        state["ready"] = True
        log.info(
            "sendgrid-operator started; HTTP on %s:%d", _settings.http_host, _settings.http_port
        )

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        state["ready"] = False
        for task in memo.get("loops") or []:
            task.cancel()
        runner = memo.get("runner")
        if runner is not None:
            await runner.cleanup()
        ctx: Context | None = memo.get("ctx")
        if ctx is not None:
            await ctx.kube.aclose()

    _settings = settings

    # -- SendGridConnection
    @kopf.on.event(*CONNECTIONS, registry=registry)
    async def connection_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        ctx: Context = memo["ctx"]
        body: dict[str, Any] = dict(event["object"])
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if event["type"] == "DELETED":
            ctx.connections.pop(key, None)
            ctx.metrics.forget_connection(*key)
            return
        before = _usability(ctx.connections.get(key))
        ctx.connections[key] = body
        await _measured(
            ctx, "sendgridconnection", lambda: connection_reconciler.reconcile(ctx, body)
        )
        if before != _usability(ctx.connections.get(key)):
            # Exports using this connection learn of the change now, not at resync (their
            # own status writes do not reconcile them again: see _trigger).
            for export in list(ctx.exports.values()):
                ref = (export.get("spec") or {}).get("connectionRef") or {}
                ns = ref.get("namespace") or export["metadata"]["namespace"]
                if (ns, ref.get("name")) == key:
                    await _measured(ctx, "segmentexport", _bind(exports.reconcile, ctx, export))

    # -- SegmentExport
    @kopf.on.event(*EXPORTS, registry=registry)
    async def export_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        ctx: Context = memo["ctx"]
        body: dict[str, Any] = dict(event["object"])
        meta = body["metadata"]
        uid = meta["uid"]
        if event["type"] == "DELETED":
            ctx.exports.pop(uid, None)
            ctx.handled.pop(uid, None)
            ctx.metrics.forget_export(meta["namespace"], meta["name"])
            ctx.locks.pop(uid, None)
            return
        ctx.exports[uid] = body
        trigger = _trigger(body)
        if ctx.handled.get(uid) == trigger:
            return
        if await _measured(ctx, "segmentexport", lambda: exports.reconcile(ctx, body)):
            ctx.handled[uid] = trigger

    @kopf.on.event(
        *JOBS, labels={"app.kubernetes.io/managed-by": jobs.MANAGED_BY}, registry=registry
    )
    async def job_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        ctx: Context = memo["ctx"]
        job: dict[str, Any] = dict(event["object"])
        if event["type"] == "DELETED" or jobs.job_finished(job) is None:
            return
        for owner in job["metadata"].get("ownerReferences") or []:
            if owner.get("kind") == "SegmentExport":
                export = await ctx.kube.get_or_none(
                    "segmentexports", job["metadata"]["namespace"], owner["name"]
                )
                if export is not None:
                    await _measured(ctx, "segmentexport", _bind(exports.reconcile, ctx, export))

    return registry


def run(settings: Settings) -> None:
    """Run the operator until it is signalled to stop."""
    registry = build_registry(settings)
    namespaces = list(settings.watch_namespaces)
    asyncio.run(
        kopf.operator(
            registry=registry,
            clusterwide=not namespaces,
            namespaces=namespaces,
            standalone=settings.peering is None,
            peering_name=settings.peering,
            priority=0,
        )
    )
