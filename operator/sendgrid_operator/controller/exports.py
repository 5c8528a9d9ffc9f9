"""Reconcile a SegmentExport: decide whether a run starts now, and keep status true.

Level-based and idempotent: called on every change of the export, on a timer for its
schedule, and when one of its Jobs changes. It reads the export, its connection (from the
watch cache) and its Jobs, then acts: start a run, skip or replace one, adopt a Job it
finds running, or finish a run whose Job has ended (see ``runs``).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from sendgrid_operator.api.common import RUN_REQUESTED_ANNOTATION, ConditionReason
from sendgrid_operator.api.connection import SendGridConnectionSpec
from sendgrid_operator.api.export import ConcurrencyPolicy, SegmentExportSpec
from sendgrid_operator.api.report import RunReport, RunResult, RunTrigger
from sendgrid_operator.controller import access, conditions, jobs, runs, schedule, statestore
from sendgrid_operator.controller.connections import read_api_key
from sendgrid_operator.controller.context import Context
from sendgrid_operator.controller.kube import Conflict

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


async def _reconcile_locked(ctx: Context, export: JSON) -> None:
    meta = export["metadata"]
    ns, name = meta["namespace"], meta["name"]
    generation = meta.get("generation")
    status: JSON = dict(export.get("status") or {})
    patch: JSON = {}
    written = export  # status as read: what the one status patch is computed against
    ended: list[runs.Ended] = []

    async def write(fields: JSON) -> None:
        """The one status write of this reconcile, then what ended runs do after it."""
        await _patch_status(ctx, written, fields)
        for end in ended:
            await runs.after_written(ctx, export, end)

    def end_run(end: runs.Ended) -> None:
        nonlocal status, export
        ended.append(end)
        patch.update(end.patch)
        status = {**status, **end.patch}
        export = {**export, "status": status}

    try:
        spec = SegmentExportSpec.model_validate(export.get("spec") or {})
    except ValidationError as exc:
        conds = conditions.kstatus_set(
            ready=False,
            reason=ConditionReason.INVALID_SPEC,
            message=f"invalid spec: {exc}",
            generation=generation,
            stalled=True,
        )
        await _patch_status(ctx, export, {"conditions": conds, "observedGeneration": generation})
        return
    now = _now()

    # -- the active run: still running, finished, gone, or a Job to adopt
    active = status.get("active")
    running_job: JSON | None = None
    if active:
        job = await ctx.kube.get_or_none("jobs", ns, active["jobName"])
        if job is not None and jobs.job_finished(job) is None:
            running_job = job
        else:
            end_run(await runs.finish(ctx, export, active, job))
    else:
        for job in await ctx.kube.list("jobs", ns, labels={jobs.LABEL_EXPORT: name[:63]}):
            owners = job["metadata"].get("ownerReferences") or []
            if any(o.get("uid") == meta["uid"] for o in owners) and jobs.job_finished(job) is None:
                running_job = job
                patch["active"] = runs.active_from_job(job)
                break

    # -- triggers
    request = (meta.get("annotations") or {}).get(RUN_REQUESTED_ANNOTATION)
    requested = request is not None and request != status.get("lastHandledRunRequest")
    due = None
    if spec.schedule and not spec.suspend:
        try:
            due = schedule.due(
                spec.schedule,
                spec.time_zone,
                now=now,
                last_scheduled=schedule.parse_time(status.get("lastScheduleTime")),
                created=schedule.parse_time(meta.get("creationTimestamp")) or now,
                starting_deadline_seconds=spec.starting_deadline_seconds,
            )
        except schedule.ScheduleError as exc:
            conds = conditions.kstatus_set(
                ready=False,
                reason=ConditionReason.INVALID_SPEC,
                message=str(exc),
                generation=generation,
                stalled=True,
            )
            await write({**patch, "conditions": conds, "observedGeneration": generation})
            return
        patch["nextScheduleTime"] = schedule.format_time(due.next_slot) if due.next_slot else None
        if due.missed_deadline is not None:
            patch["lastScheduleTime"] = schedule.format_time(due.missed_deadline)
            await ctx.emit(
                export,
                "Warning",
                ConditionReason.RUN_SKIPPED,
                f"missed the run at {schedule.format_time(due.missed_deadline)} by more than startingDeadlineSeconds",
            )
    else:
        patch["nextScheduleTime"] = None
    slot = due.slot if due is not None else None

    problem = await connection_problem(ctx, export, spec)
    if problem is not None and problem[0] == ConditionReason.CONNECTION_PENDING:
        # Transient: the connection was created or changed and is being checked. Requests
        # and due slots wait (they are not marked handled) instead of being refused.
        if running_job is None:
            patch["conditions"] = conditions.kstatus_set(
                ready=False,
                reason=ConditionReason.CONNECTION_NOT_READY,
                message=problem[1],
                generation=generation,
                reconciling=True,
            )
        patch["observedGeneration"] = generation
        await write(patch)
        return
    if problem is not None:
        reason, message = problem
        if requested:
            patch["lastHandledRunRequest"] = request
            await ctx.emit(export, "Warning", ConditionReason.RUN_REFUSED, message)
        if slot is not None:
            patch["lastScheduleTime"] = schedule.format_time(slot)
            await ctx.emit(export, "Warning", ConditionReason.RUN_REFUSED, message)
        if running_job is None:
            patch["conditions"] = conditions.kstatus_set(
                ready=False, reason=reason, message=message, generation=generation, stalled=True
            )
        patch["observedGeneration"] = generation
        await write(patch)
        return

    start: tuple[RunTrigger, str | None, datetime | None] | None = None
    if requested:
        start = (RunTrigger.REQUEST, request, None)
    elif slot is not None:
        start = (RunTrigger.SCHEDULE, None, slot)

    if start is not None and running_job is not None:
        if spec.concurrency_policy == ConcurrencyPolicy.REPLACE:
            await ctx.kube.delete("jobs", ns, running_job["metadata"]["name"])
            replaced = (
                patch.get("active") or status.get("active") or runs.active_from_job(running_job)
            )
            end_run(await runs.finish(ctx, export, replaced, None, replaced_by_new=True))
            running_job = None
        elif start[0] == RunTrigger.SCHEDULE:
            assert slot is not None
            patch["lastScheduleTime"] = schedule.format_time(slot)
            await ctx.emit(
                export,
                "Normal",
                ConditionReason.RUN_SKIPPED,
                f"skipped the run at {schedule.format_time(slot)}: run {running_job['metadata']['name']} is still active (concurrencyPolicy: Forbid)",
            )
            start = None
        else:
            start = None  # an on-demand request waits until the active run ends

    if start is not None:
        trigger, token, when = start
        run_id = (
            jobs.scheduled_run_id(name, when)
            if when is not None
            else jobs.requested_run_id(name, token or "")
        )
        missing = await missing_references(ctx, ns, spec)
        if missing is None:
            started = await start_run(ctx, export, spec, run_id, trigger, token, when)
        else:
            # Refused before any Job: a Pod would wait for the missing volume or
            # secretKeyRef until the run's deadline (as a kubelet does).
            stamp = schedule.format_time(now)
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
            end_run(runs.record(export, refused))
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
        running_job = {} if started is not None else None

    if running_job is not None:
        act = patch.get("active") or status.get("active") or {}
        msg = f"run {act.get('runId', '?')} in progress"
        patch["conditions"] = conditions.kstatus_set(
            ready=False,
            reason=ConditionReason.PROGRESSING,
            message=msg,
            generation=generation,
            reconciling=True,
        )
        patch["conditions"][0]["status"] = "Unknown"
    else:
        patch["conditions"] = _summary_conditions(status, generation, spec)
    patch["observedGeneration"] = generation
    ctx.metrics.export_suspended.labels(ns, name).set(1 if spec.suspend else 0)
    await write(patch)


async def missing_references(ctx: Context, namespace: str, spec: SegmentExportSpec) -> str | None:
    """What the run's Pod would wait for forever: a missing ConfigMap, Secret or key."""
    problems: list[str] = []
    for name, keys in sorted(jobs.config_map_keys(spec).items()):
        found = await ctx.kube.list("configmaps", namespace, fields={"metadata.name": name})
        if not found:
            problems.append(f"ConfigMap {namespace}/{name} not found")
            continue
        held = {**(found[0].get("data") or {}), **(found[0].get("binaryData") or {})}
        problems += [
            f"ConfigMap {namespace}/{name} has no key {k!r}" for k in sorted(keys - held.keys())
        ]
    for ref in sorted(jobs.secret_refs(spec)):
        name, key = ref.split("/", 1)
        secret = await ctx.kube.get_or_none("secrets", namespace, name)
        if secret is None:
            problems.append(f"Secret {namespace}/{name} not found")
        elif key not in (secret.get("data") or {}):
            problems.append(f"Secret {namespace}/{name} has no key {key!r}")
    if not problems:
        return None
    return "; ".join(problems) + ": create it, or fix the reference in spec.segments"


async def start_run(
    ctx: Context,
    export: JSON,
    spec: SegmentExportSpec,
    run_id: str,
    trigger: RunTrigger,
    token: str | None,
    when: datetime | None,
) -> JSON | None:
    """Create the run's Secret and Job (or adopt them when they exist); return status.active,
    or None when that run's Job exists and has already finished."""
    meta = export["metadata"]
    ns = meta["namespace"]
    conn_ns = spec.connection_ref.namespace or ns
    conn = ctx.connections.get((conn_ns, spec.connection_ref.name)) or {}
    conn_spec = SendGridConnectionSpec.model_validate(conn.get("spec") or {})
    existing = await ctx.kube.get_or_none("jobs", ns, run_id)
    if existing is None:
        report_token = secrets.token_urlsafe(32)
        copied_key: str | None = None
        key_ref = (conn_spec.api_key_secret_ref.name, conn_spec.api_key_secret_ref.key)
        if conn_ns != ns:
            copied_key, _, problem = await read_api_key(ctx.kube, conn_ns, *key_ref)
            if problem is not None:
                raise RuntimeError(problem.message)
            key_ref = (run_id, jobs.SECRET_KEY_API_KEY)
        state = await statestore.current(ctx.kube, ns, meta["name"]) if spec.incremental else None
        plan = jobs.RunPlan(
            run_id=run_id,
            trigger=trigger,
            base_url=conn_spec.base_url,
            api_key_secret=key_ref,
            report_token_hash=jobs.token_hash(report_token),
            state_shards=state.shards if state else (),
            state_sha256=state.sha256 if state else None,
            scheduled_time=schedule.format_time(when) if when else None,
            request_token=token,
        )
        # The run's Secret is owned by the export (deleted with it) and removed when the run
        # is recorded (runs.finish), so the operator never needs to patch Secrets.
        secret = jobs.build_run_secret(export, plan, report_token, copied_key)
        try:
            await ctx.kube.create("secrets", ns, secret)
        except Conflict:
            await ctx.kube.delete("secrets", ns, run_id)
            await ctx.kube.create("secrets", ns, secret)
        job = jobs.build_job(export, spec, plan, ctx.settings)
        try:
            existing = await ctx.kube.create("jobs", ns, job)
            await ctx.emit(
                export,
                "Normal",
                ConditionReason.RUN_STARTED,
                f"started run {run_id} ({trigger}) as Job {run_id}",
            )
        except Conflict:
            existing = await ctx.kube.get("jobs", ns, run_id)
        ctx.metrics.runs_in_progress.inc()
    elif jobs.job_finished(existing) is not None:
        return None  # this run already happened (an earlier attempt started and recorded it)
    return runs.active_from_job(existing)


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
