"""Reconcile a SegmentExport: decide whether a run starts now, and keep status true.

Level-based and idempotent: called on every change of the export, on a timer for its
schedule, and when one of its Jobs changes. It reads the export, its connection (from the
watch cache) and its Jobs, then acts: start a run, skip or replace one, adopt a Job it
finds running, or finish a run whose Job has ended (see ``starts`` and ``runs``).
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from sendgrid_operator.api.common import RUN_REQUESTED_ANNOTATION, ConditionReason
from sendgrid_operator.api.connection import SendGridConnectionSpec
from sendgrid_operator.api.export import ConcurrencyPolicy, SegmentExportSpec
from sendgrid_operator.api.report import RunReport, RunResult, RunTrigger
from sendgrid_operator.controller import access, conditions, jobs, runs, schedule, starts
from sendgrid_operator.controller.context import Context

JSON = dict[str, Any]


def _ready_condition(conn: JSON | None) -> JSON | None:
    for cond in ((conn or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return dict(cond)
    return None


async def connection_problem(
    ctx: Context, export: JSON, spec: SegmentExportSpec
) -> tuple[ConditionReason, str] | None:
    """Why the export may not use its connection now, or None."""
    ns = export["metadata"]["namespace"]
    ref = spec.connection_ref
    conn_ns = ref.namespace or ns
    conn = ctx.connections.get((conn_ns, ref.name))
    if conn is None:
        conn = await ctx.kube.get_or_none("sendgridconnections", conn_ns, ref.name)
        if conn is not None:
            ctx.connections[(conn_ns, ref.name)] = conn
    if conn is None:
        return ConditionReason.CONNECTION_NOT_FOUND, (
            f"SendGridConnection {conn_ns}/{ref.name} not found (spec.connectionRef)."
        )
    try:
        conn_spec = SendGridConnectionSpec.model_validate(conn.get("spec") or {})
    except ValidationError:
        return (
            ConditionReason.CONNECTION_NOT_READY,
            f"SendGridConnection {conn_ns}/{ref.name} is invalid.",
        )
    allowed = conn_spec.allowed_namespaces
    labels: dict[str, str] | None = None
    if access.needs_namespace_labels(allowed, ns):
        namespace = await ctx.kube.get_or_none("namespaces", None, ns)
        labels = ((namespace or {}).get("metadata") or {}).get("labels") or {}
    if not access.is_allowed(conn_ns, allowed, ns, labels):
        return ConditionReason.NAMESPACE_NOT_ALLOWED, (
            f"namespace {ns} may not use SendGridConnection {conn_ns}/{ref.name}: it allows "
            f"{access.describe(conn_ns, allowed)}. Ask its owner to add {ns} to "
            "spec.allowedNamespaces."
        )
    if not conn_spec.consent.personal_data:
        return ConditionReason.CONSENT_NOT_GIVEN, (
            f"SendGridConnection {conn_ns}/{ref.name} has no consent to send personal data "
            "(spec.consent.personalData); nothing is sent."
        )
    ready = _ready_condition(conn)
    if ready is None or ready.get("observedGeneration") != conn["metadata"].get("generation"):
        return ConditionReason.CONNECTION_PENDING, (
            f"waiting for SendGridConnection {conn_ns}/{ref.name} to be checked"
        )
    if ready.get("status") != "True":
        why = ready.get("message") or ready.get("reason") or "unknown"
        return ConditionReason.CONNECTION_NOT_READY, (
            f"SendGridConnection {conn_ns}/{ref.name} is not Ready: {why}"
        )
    return None


def _now() -> datetime:
    return datetime.now(UTC)


def _summary_conditions(
    status: JSON, generation: int | None, spec: SegmentExportSpec
) -> list[JSON]:
    """Ready/Reconciling/Stalled for an export with no run active and a usable connection."""
    last = status.get("lastRun") or {}
    result = last.get("result")
    if result == RunResult.FAILED:
        return conditions.kstatus_set(
            ready=False,
            reason=ConditionReason.RUN_FAILED,
            message=f"last run {last.get('runId')} failed: {last.get('message', '')}",
            generation=generation,
        )
    if result == RunResult.REFUSED:
        return conditions.kstatus_set(
            ready=False,
            reason=ConditionReason.RUN_REFUSED,
            message=f"last run {last.get('runId')} was refused: {last.get('message', '')}",
            generation=generation,
            stalled=True,
        )
    if spec.suspend:
        return conditions.kstatus_set(
            ready=True,
            reason=ConditionReason.SUSPENDED,
            message="schedule suspended (spec.suspend)",
            generation=generation,
        )
    if result == RunResult.SUCCEEDED:
        msg = f"last run {last.get('runId')} succeeded: {last.get('message', '')}"
        return conditions.kstatus_set(
            ready=True, reason=ConditionReason.RUN_SUCCEEDED, message=msg, generation=generation
        )
    msg = (
        "waiting for the schedule"
        if spec.schedule
        else f"runs on demand: annotate with {RUN_REQUESTED_ANNOTATION}=<new value>"
    )
    return conditions.kstatus_set(
        ready=True, reason=ConditionReason.WAITING_FOR_SCHEDULE, message=msg, generation=generation
    )


async def reconcile(ctx: Context, export: JSON) -> None:
    """Bring one export's runs and status in line with its spec. Safe to call any time."""
    meta = export["metadata"]
    async with ctx.locks[meta["uid"]]:
        fresh = await ctx.kube.get_or_none("segmentexports", meta["namespace"], meta["name"])
        if fresh is None or fresh["metadata"].get("uid") != meta["uid"]:
            return
        await _reconcile_locked(ctx, fresh)


#: What starts a run: the trigger, the request token (on demand) or the slot (schedule).
Start = tuple[RunTrigger, str | None, datetime | None]


async def _reconcile_locked(ctx: Context, export: JSON) -> None:
    try:
        spec = SegmentExportSpec.model_validate(export.get("spec") or {})
    except ValidationError as exc:
        generation = export["metadata"].get("generation")
        conds = conditions.kstatus_set(
            ready=False,
            reason=ConditionReason.INVALID_SPEC,
            message=f"invalid spec: {exc}",
            generation=generation,
            stalled=True,
        )
        await _patch_status(ctx, export, {"conditions": conds, "observedGeneration": generation})
        return
    await _Pass(ctx, export, spec).run()


class _Written(Exception):
    """The pass has written the status, and ends here."""


class _Pass:
    """One reconcile of one export, from what was read to its one status write.

    ``patch`` gathers the status fields this pass sets; ``status`` and ``export`` follow
    what ended runs change, so later steps see them; ``written`` is the status as read,
    which the one patch is computed against."""

    def __init__(self, ctx: Context, export: JSON, spec: SegmentExportSpec) -> None:
        self.ctx = ctx
        self.export = export
        self.written = export
        self.spec = spec
        meta = export["metadata"]
        self.meta = meta
        self.ns, self.name = meta["namespace"], meta["name"]
        self.generation = meta.get("generation")
        self.status: JSON = dict(export.get("status") or {})
        self.patch: JSON = {}
        self.ended: list[runs.Ended] = []
        self.running_job: JSON | None = None
        self.now = _now()

    async def run(self) -> None:
        with contextlib.suppress(_Written):
            await self._run()

    async def _run(self) -> None:
        await self._find_active()
        meta, status = self.meta, self.status
        request = (meta.get("annotations") or {}).get(RUN_REQUESTED_ANNOTATION)
        requested = request is not None and request != status.get("lastHandledRunRequest")
        slot = await self._due_slot()
        await self._check_connection(request if requested else None, slot)
        start: Start | None = None
        if requested:
            start = (RunTrigger.REQUEST, request, None)
        elif slot is not None:
            start = (RunTrigger.SCHEDULE, None, slot)
        if start is not None and self.running_job is not None:
            start = await self._while_running(start)
        if start is not None:
            await self._start(start)
        await self._conclude()

    async def _write(self, fields: JSON) -> None:
        """The one status write of this reconcile, then what ended runs do after it."""
        await _patch_status(self.ctx, self.written, fields)
        for end in self.ended:
            await runs.after_written(self.ctx, self.export, end)

    def _end_run(self, end: runs.Ended) -> None:
        self.ended.append(end)
        self.patch.update(end.patch)
        self.status = {**self.status, **end.patch}
        self.export = {**self.export, "status": self.status}

    def _conditions(self, reason: str, message: str, **state: bool) -> list[JSON]:
        return conditions.kstatus_set(
            ready=False, reason=reason, message=message, generation=self.generation, **state
        )

    async def _find_active(self) -> None:
        """The active run: still running, finished, gone, or a Job to adopt."""
        ctx, active = self.ctx, self.status.get("active")
        if active:
            job = await ctx.kube.get_or_none("jobs", self.ns, active["jobName"])
            if job is not None and jobs.job_finished(job) is None:
                self.running_job = job
            else:
                self._end_run(await runs.finish(ctx, self.export, active, job))
            return
        for job in await ctx.kube.list("jobs", self.ns, labels={jobs.LABEL_EXPORT: self.name[:63]}):
            owners = job["metadata"].get("ownerReferences") or []
            if (
                any(o.get("uid") == self.meta["uid"] for o in owners)
                and jobs.job_finished(job) is None
            ):
                self.running_job = job
                self.patch["active"] = runs.active_from_job(job)
                break

    async def _due_slot(self) -> datetime | None:
        """The schedule's slot due now, if any (an invalid schedule: the status says so,
        and the pass ends)."""
        spec, patch = self.spec, self.patch
        if not spec.schedule or spec.suspend:
            patch["nextScheduleTime"] = None
            return None
        try:
            due = schedule.due(
                spec.schedule,
                spec.time_zone,
                now=self.now,
                last_scheduled=schedule.parse_time(self.status.get("lastScheduleTime")),
                created=schedule.parse_time(self.meta.get("creationTimestamp")) or self.now,
                starting_deadline_seconds=spec.starting_deadline_seconds,
            )
        except schedule.ScheduleError as exc:
            conds = self._conditions(ConditionReason.INVALID_SPEC, str(exc), stalled=True)
            await self._write({**patch, "conditions": conds, "observedGeneration": self.generation})
            raise _Written from exc
        patch["nextScheduleTime"] = schedule.format_time(due.next_slot) if due.next_slot else None
        if due.missed_deadline is not None:
            patch["lastScheduleTime"] = schedule.format_time(due.missed_deadline)
            await self.ctx.emit(
                self.export,
                "Warning",
                ConditionReason.RUN_SKIPPED,
                f"missed the run at {schedule.format_time(due.missed_deadline)} by more than startingDeadlineSeconds",
            )
        return due.slot

    async def _check_connection(self, request: str | None, slot: datetime | None) -> None:
        """If the connection keeps this export from running, the status says why, and the
        pass ends: a request or a due slot is refused, or waits while the connection is
        being checked."""
        problem = await connection_problem(self.ctx, self.export, self.spec)
        if problem is None:
            return
        patch = self.patch
        reason, message = problem
        if reason == ConditionReason.CONNECTION_PENDING:
            # Transient: the connection was created or changed and is being checked. Requests
            # and due slots wait (they are not marked handled) instead of being refused.
            if self.running_job is None:
                patch["conditions"] = self._conditions(
                    ConditionReason.CONNECTION_NOT_READY, message, reconciling=True
                )
        else:
            if request is not None:
                patch["lastHandledRunRequest"] = request
                await self.ctx.emit(self.export, "Warning", ConditionReason.RUN_REFUSED, message)
            if slot is not None:
                patch["lastScheduleTime"] = schedule.format_time(slot)
                await self.ctx.emit(self.export, "Warning", ConditionReason.RUN_REFUSED, message)
            if self.running_job is None:
                patch["conditions"] = self._conditions(reason, message, stalled=True)
        patch["observedGeneration"] = self.generation
        await self._write(patch)
        raise _Written

    async def _while_running(self, start: Start) -> Start | None:
        """A run is due while another is active: replace it, skip the slot, or let the
        request wait (``concurrencyPolicy``); the start that remains, if any."""
        running = self.running_job
        assert running is not None
        if self.spec.concurrency_policy == ConcurrencyPolicy.REPLACE:
            await self.ctx.kube.delete("jobs", self.ns, running["metadata"]["name"])
            replaced = (
                self.patch.get("active")
                or self.status.get("active")
                or runs.active_from_job(running)
            )
            self._end_run(
                await runs.finish(self.ctx, self.export, replaced, None, replaced_by_new=True)
            )
            self.running_job = None
            return start
        trigger, _, slot = start
        if trigger == RunTrigger.SCHEDULE:
            assert slot is not None
            self.patch["lastScheduleTime"] = schedule.format_time(slot)
            await self.ctx.emit(
                self.export,
                "Normal",
                ConditionReason.RUN_SKIPPED,
                f"skipped the run at {schedule.format_time(slot)}: run {running['metadata']['name']} is still active (concurrencyPolicy: Forbid)",
            )
        return None  # an on-demand request waits until the active run ends

    async def _start(self, start: Start) -> None:
        """Start the run (its Secret and Job), or record it refused when its Pod would wait
        for a missing ConfigMap or Secret."""
        ctx, spec, patch = self.ctx, self.spec, self.patch
        trigger, token, when = start
        run_id = (
            jobs.scheduled_run_id(self.name, when)
            if when is not None
            else jobs.requested_run_id(self.name, token or "")
        )
        missing = await starts.missing_references(ctx, self.ns, spec)
        if missing is None:
            started = await starts.start_run(ctx, self.export, spec, run_id, trigger, token, when)
        else:
            # Refused before any Job: a Pod would wait for the missing volume or
            # secretKeyRef until the run's deadline (as a kubelet does).
            stamp = schedule.format_time(self.now)
            refused = RunReport(
                run_id=run_id,
                result=RunResult.REFUSED,
                reason=ConditionReason.SOURCE_NOT_FOUND,
                message=missing,
                trigger=trigger,
                start_time=stamp,
                completion_time=stamp,
                duration_seconds=0.0,
                list_ids=spec.list_ids,
                mode=str(spec.mode),
            )
            self._end_run(runs.record(self.export, refused))
            started = None
        patch["active"] = started
        patch["progress"] = (
            None
            if started is None
            else {
                "phase": "Pending",
                "read": 0,
                "sent": 0,
                "applied": 0,
                "removed": 0,
                "updatedAt": conditions.now_rfc3339(),
            }
        )
        if token is not None:
            patch["lastHandledRunRequest"] = token
        if when is not None:
            patch["lastScheduleTime"] = schedule.format_time(when)
        self.running_job = {} if started is not None else None

    async def _conclude(self) -> None:
        """The conditions (a run in progress, or the summary of the last runs) and the
        one status write."""
        patch = self.patch
        if self.running_job is not None:
            act = patch.get("active") or self.status.get("active") or {}
            msg = f"run {act.get('runId', '?')} in progress"
            patch["conditions"] = self._conditions(
                ConditionReason.PROGRESSING, msg, reconciling=True
            )
            patch["conditions"][0]["status"] = "Unknown"
        else:
            patch["conditions"] = _summary_conditions(self.status, self.generation, self.spec)
        patch["observedGeneration"] = self.generation
        self.ctx.metrics.export_suspended.labels(self.ns, self.name).set(
            1 if self.spec.suspend else 0
        )
        await self._write(patch)


async def _patch_status(ctx: Context, export: JSON, patch: JSON) -> None:
    status = export.get("status") or {}
    changed = {}
    for key, value in patch.items():
        if key == "conditions":
            if not conditions.same(status.get("conditions"), value):
                changed[key] = conditions.merge(status.get("conditions"), value)
        elif status.get(key) != value:
            changed[key] = value
    if not changed:
        return
    meta = export["metadata"]
    await ctx.kube.patch(
        "segmentexports", meta["namespace"], meta["name"], {"status": changed}, subresource="status"
    )
