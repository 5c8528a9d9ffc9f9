"""The start of a run: what its Pod would wait for, then its Secret and Job.

Why apart from :mod:`.exports`: the reconcile decides *whether* a run starts; this is
*how*. The run's Pod reads ConfigMaps and Secrets the export names, so a missing one is
found here first and the run is refused rather than left to wait for its deadline. The
Secret carries the run's report token (and the API key, copied when the connection lives
in another namespace); both it and the Job are named after the run, so a retried
reconcile adopts them instead of starting the run twice.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sendgrid_operator.api.common import ConditionReason
from sendgrid_operator.api.connection import SendGridConnectionSpec
from sendgrid_operator.api.export import SegmentExportSpec
from sendgrid_operator.api.report import RunTrigger
from sendgrid_operator.controller import jobs, runs, schedule, statestore
from sendgrid_operator.controller.connections import read_api_key
from sendgrid_operator.controller.context import Context
from sendgrid_operator.controller.kube import Conflict

JSON = dict[str, Any]


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
