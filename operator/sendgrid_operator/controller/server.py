"""The operator's HTTP side: /metrics, /healthz, /readyz, and the run channel for Jobs.

Export Jobs have no Kubernetes API access. They report here instead, with a per-run
bearer token whose SHA-256 sits in the Job's annotations:

- ``POST /runs/{namespace}/{export}/{run}/progress``: a Progress, written to status.progress;
- ``POST /runs/{namespace}/{export}/{run}/report``: the final RunReport, written to
  status.lastRun (the Job's end is then recorded by ``runs.finish``);
- ``PUT /runs/{namespace}/{export}/{run}/state``: the new incremental state (bytes),
  stored in ConfigMaps owned by the export.

Any replica can serve these; they touch only the run's own fields.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from sendgrid_operator.api.report import Progress, RunReport
from sendgrid_operator.controller import jobs, statestore
from sendgrid_operator.controller.context import Context
from sendgrid_operator.controller.kube import ApiError

log = logging.getLogger(__name__)
MAX_STATE_BYTES = 64 * 1024 * 1024
MAX_REPORT_BYTES = 1024 * 1024
JSON = dict[str, Any]


class RunChannel:
    def __init__(self, ctx: Context, ready: Callable[[], bool]) -> None:
        self.ctx = ctx
        self.ready = ready

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_STATE_BYTES)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_post("/runs/{namespace}/{export}/{run}/progress", self.progress)
        app.router.add_post("/runs/{namespace}/{export}/{run}/report", self.report)
        app.router.add_put("/runs/{namespace}/{export}/{run}/state", self.state)
        return app

    async def metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.ctx.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(self, request: web.Request) -> web.Response:
        return (
            web.Response(text="ok") if self.ready() else web.Response(status=503, text="starting")
        )

    async def _authorize(self, request: web.Request) -> tuple[JSON, JSON]:
        """The run's Job and export, if the bearer token belongs to this run."""
        ns = request.match_info["namespace"]
        export_name = request.match_info["export"]
        run = request.match_info["run"]
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip()
        if not token:
            raise web.HTTPUnauthorized(text="a run token is required")
        try:
            job = await self.ctx.kube.get_or_none("jobs", ns, run)
        except ApiError as exc:
            raise web.HTTPServiceUnavailable(text="the Kubernetes API is unavailable") from exc
        if job is None:
            raise web.HTTPNotFound(text=f"no run {ns}/{run}")
        expected = (job["metadata"].get("annotations") or {}).get(jobs.ANNOTATION_TOKEN_HASH, "")
        labels = job["metadata"].get("labels") or {}
        if not expected or not hmac.compare_digest(expected, jobs.token_hash(token)):
            raise web.HTTPForbidden(text="the run token does not match")
        if labels.get(jobs.LABEL_EXPORT) != export_name[:63]:
            raise web.HTTPForbidden(text="the run belongs to another export")
        export = await self.ctx.kube.get_or_none("segmentexports", ns, export_name)
        if export is None:
            raise web.HTTPNotFound(text=f"no export {ns}/{export_name}")
        return job, export

    async def progress(self, request: web.Request) -> web.Response:
        _, export = await self._authorize(request)
        try:
            progress = Progress.model_validate(await request.json())
        except (ValueError, ValidationError) as exc:
            raise web.HTTPBadRequest(text=f"bad progress: {exc}") from exc
        active = (export.get("status") or {}).get("active") or {}
        if active.get("runId") != request.match_info["run"]:
            return web.Response(status=409, text="the run is not the export's active run")
        await self._patch(export, {"progress": progress.to_wire()})
        return web.Response(status=204)

    async def report(self, request: web.Request) -> web.Response:
        _, export = await self._authorize(request)
        if request.content_length and request.content_length > MAX_REPORT_BYTES:
            raise web.HTTPRequestEntityTooLarge(
                max_size=MAX_REPORT_BYTES, actual_size=request.content_length
            )
        try:
            report = RunReport.model_validate(await request.json())
        except (ValueError, ValidationError) as exc:
            raise web.HTTPBadRequest(text=f"bad report: {exc}") from exc
        if report.run_id != request.match_info["run"]:
            raise web.HTTPBadRequest(text="the report's runId does not match the URL")
        if report.planned_removals and len(report.planned_removals) > 100:
            report.planned_removals = report.planned_removals[:100]
        await self._patch(export, {"lastRun": report.to_wire()})
        return web.Response(status=204)

    async def state(self, request: web.Request) -> web.Response:
        _, export = await self._authorize(request)
        data = await request.read()
        stored = await statestore.store(self.ctx.kube, export, request.match_info["run"], data)
        log.info(
            "stored the state of %s/%s: %d bytes in %d ConfigMaps",
            export["metadata"]["namespace"],
            export["metadata"]["name"],
            stored.size,
            len(stored.shards),
        )
        return web.Response(status=204)

    async def _patch(self, export: JSON, status: JSON) -> None:
        meta = export["metadata"]
        try:
            await self.ctx.kube.patch(
                "segmentexports",
                meta["namespace"],
                meta["name"],
                {"status": status},
                subresource="status",
            )
        except ApiError as exc:
            raise web.HTTPServiceUnavailable(text=f"status not written: {exc.reason}") from exc


async def start(channel: RunChannel, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(channel.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner
