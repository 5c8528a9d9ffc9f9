"""The end of a run: read what the Job reported, write it to status once, and clean up.

A Job reports its result to the operator's HTTP endpoint (``server``), which stores it as
``status.lastRun``. When the operator was unreachable at that moment, the Job's
termination message carries a compact copy; when even that is missing (the Pod was
killed, the deadline passed), the run is recorded as failed with the Job's own reason.
The reconcile writes the end in the same status patch as the conditions it implies, then
:func:`after_written` counts metrics and posts the event, exactly once per run.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from sendgrid_operator.api.common import ConditionReason
from sendgrid_operator.api.report import RunReport, RunResult, RunTrigger
from sendgrid_operator.controller import jobs, schedule
from sendgrid_operator.controller.context import Context
from sendgrid_operator.controller.metrics import code_label, endpoint_label

JSON = dict[str, Any]
log = logging.getLogger(__name__)


def active_from_job(job: JSON) -> JSON:
    meta = job["metadata"]
    ann = meta.get("annotations") or {}
    start = (job.get("status") or {}).get("startTime") or meta.get("creationTimestamp")
    active: JSON = {
        "jobName": meta["name"],
        "runId": meta["name"],
        "trigger": ann.get(jobs.ANNOTATION_TRIGGER, RunTrigger.REQUEST),
        "startTime": start or schedule.format_time(datetime.now(UTC)),
    }
    if ann.get(jobs.ANNOTATION_SLOT):
        active["scheduledTime"] = ann[jobs.ANNOTATION_SLOT]
    return active


async def _termination_report(ctx: Context, namespace: str, job_name: str) -> RunReport | None:
    pods = await ctx.kube.list("pods", namespace, labels={"batch.kubernetes.io/job-name": job_name})
    pods.sort(key=lambda p: p["metadata"].get("creationTimestamp", ""), reverse=True)
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            message = ((cs.get("state") or {}).get("terminated") or {}).get("message")
            if not message:
                continue
            try:
                return RunReport.model_validate(json.loads(message))
            except (ValueError, ValidationError):
                continue
    return None


def _job_failure(job: JSON | None) -> str:
    if job is None:
        return "the run's Job was deleted before the run finished"
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Failed" and cond.get("status") == "True":
            return (
                f"the export Job failed ({cond.get('reason')}): {cond.get('message', '')}".strip()
            )
    return "the export Job ended without a report"


def _record_metrics(ctx: Context, namespace: str, name: str, report: RunReport) -> None:
    m = ctx.metrics
    m.runs_total.labels(namespace, name, report.result).inc()
    if report.duration_seconds is not None:
        m.run_duration_seconds.labels(report.result).observe(report.duration_seconds)
    c = report.counts
    for outcome, value in (
        ("read", c.read),
        ("invalid", c.invalid),
        ("duplicate", c.duplicates),
        ("unchanged", c.unchanged),
        ("sent", c.sent),
    ):
        if value and not report.dry_run:
            m.profiles_total.labels(namespace, name, outcome).inc(value)
    if not report.dry_run:
        for operation, value in (
            ("created", c.created),
            ("updated", c.updated),
            ("removed", c.removed),
            ("rejected", c.rejected),
        ):
            if value:
                m.contacts_total.labels(namespace, name, operation).inc(value)
    for key, count in report.sendgrid_requests.items():
        endpoint, _, code = key.partition(" ")
        m.sendgrid_requests_total.labels(endpoint_label(endpoint), code_label(code)).inc(count)
        if code == "429":
            m.sendgrid_rate_limited_total.labels(endpoint_label(endpoint)).inc(count)
    if report.result == RunResult.SUCCEEDED and not report.dry_run:
        m.last_success_timestamp.labels(namespace, name).set(datetime.now(UTC).timestamp())


@dataclass
class Ended:
    """A run's end, worked out but not yet written: the status fields to write (in the
    same patch as the conditions they imply, so no reader sees ``lastRun`` of a run the
    conditions still call in progress), and what to do once they are written."""

    report: RunReport
    patch: JSON
    job_secret: str | None = None  # the run's Secret, deleted afterwards
    was_active: bool = False  # counted in runs_in_progress


async def finish(
    ctx: Context,
    export: JSON,
    active: JSON,
    job: JSON | None,
    *,
    replaced_by_new: bool = False,
) -> Ended:
    """The end of ``active``: its report (from status, the Job's termination message, or
    the Job's failure) and the status fields recording it. Writes nothing: the caller
    writes ``Ended.patch`` with the rest of status, then calls :func:`after_written`."""
    meta = export["metadata"]
    ns = meta["namespace"]
    status: JSON = dict(export.get("status") or {})
    run_id = active["runId"]
    now = schedule.format_time(datetime.now(UTC))

    report: RunReport | None = None
    last = status.get("lastRun") or {}
    if last.get("runId") == run_id:
        try:
            report = RunReport.model_validate(last)
        except ValidationError:
            report = None
    if report is None and job is not None:
        report = await _termination_report(ctx, ns, run_id)
    if report is None:
        reason = "Replaced" if replaced_by_new else "JobFailed"
        message = (
            "stopped: a new run replaced it (concurrencyPolicy: Replace)"
            if replaced_by_new
            else _job_failure(job)
        )
        report = RunReport(
            run_id=run_id,
            result=RunResult.FAILED,
            reason=reason,
            message=message,
            trigger=active.get("trigger"),
            start_time=active.get("startTime"),
            completion_time=now,
        )
    report.trigger = report.trigger or active.get("trigger")
    ended = record(export, report)
    ended.job_secret = run_id
    ended.was_active = True
    return ended


def record(export: JSON, report: RunReport) -> Ended:
    """The status fields for a finished run (lastRun, history, active cleared)."""
    status: JSON = dict(export.get("status") or {})
    now = schedule.format_time(datetime.now(UTC))
    history = [h for h in status.get("history") or [] if h.get("runId") != report.run_id]
    brief = report.model_copy(
        update={"invalid_samples": [], "rejected_samples": [], "planned_removals": None}
    )
    spec = export.get("spec") or {}
    limit = int(spec.get("runHistoryLimit", 5))
    history = [brief.to_wire(), *history][:limit]

    patch: JSON = {
        "active": None,
        "progress": None,
        "lastRun": report.to_wire(),
        "history": history,
    }
    if report.result == RunResult.SUCCEEDED and not report.dry_run:
        patch["lastSuccessfulTime"] = report.completion_time or now
        patch["contactsExported"] = max(0, report.counts.profiles - report.counts.rejected)
    return Ended(report, patch)


async def after_written(ctx: Context, export: JSON, ended: Ended) -> None:
    """Once the run's end is in status: count it, post its event, delete the run's Secret
    and prune old Jobs (only now, so a crash before the write finds the Job again)."""
    meta = export["metadata"]
    ns, name = meta["namespace"], meta["name"]
    report = ended.report
    _record_metrics(ctx, ns, name, report)
    event_reason = {
        RunResult.SUCCEEDED: ConditionReason.RUN_SUCCEEDED,
        RunResult.REFUSED: ConditionReason.RUN_REFUSED,
    }.get(RunResult(report.result), ConditionReason.RUN_FAILED)
    event_type = "Normal" if report.result == RunResult.SUCCEEDED else "Warning"
    await ctx.emit(
        export, event_type, event_reason, f"run {report.run_id}: {report.message}"[:1024]
    )
    if ended.was_active:
        ctx.metrics.runs_in_progress.dec()
    if ended.job_secret is not None:
        await ctx.kube.delete("secrets", ns, ended.job_secret)
        await prune_jobs(ctx, export)


async def prune_jobs(ctx: Context, export: JSON) -> None:
    """Keep the newest finished Jobs within the export's history limits."""
    meta = export["metadata"]
    spec = export.get("spec") or {}
    keep = {
        "Complete": int(spec.get("successfulJobsHistoryLimit", 3)),
        "Failed": int(spec.get("failedJobsHistoryLimit", 1)),
    }
    found = await ctx.kube.list(
        "jobs", meta["namespace"], labels={jobs.LABEL_EXPORT: meta["name"][:63]}
    )
    found.sort(key=lambda j: j["metadata"].get("creationTimestamp", ""), reverse=True)
    seen = {"Complete": 0, "Failed": 0}
    for job in found:
        state = jobs.job_finished(job)
        if state is None:
            continue
        seen[state] += 1
        if seen[state] > keep[state]:
            await ctx.kube.delete("jobs", meta["namespace"], job["metadata"]["name"])
            await ctx.kube.delete("secrets", meta["namespace"], job["metadata"]["name"])
