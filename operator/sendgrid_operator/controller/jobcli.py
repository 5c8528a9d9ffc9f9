"""``sendgrid-operator job``: one export run inside its Kubernetes Job.

The Pod has no Kubernetes API token. Everything it needs arrives as environment variables
and mounted files set by the operator (``jobs.build_job``): the export spec as it was when
the run started, the API key and database URLs by ``secretKeyRef``, ConfigMap sources and
the previous incremental state as read-only volumes. It reports to the operator's run
channel (``server``) with a per-run token: progress while it runs, the state after a
successful run, and the final report; a compact copy of the report also goes to the
termination message, for when the operator cannot be reached at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from sendgrid_operator.api.common import KeySelector
from sendgrid_operator.api.export import SegmentExportSpec
from sendgrid_operator.api.report import Progress, RunReport, RunTrigger

log = logging.getLogger("sendgrid_operator.job")
TERMINATION_LOG = Path("/dev/termination-log")
TERMINATION_LIMIT = 4096
PROGRESS_EVERY = 1.0
REPORT_ATTEMPTS = 8


class JobConfigError(Exception):
    """The Job's environment is incomplete: it was not created by the operator."""


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise JobConfigError(f"{name} is not set: this command runs inside an export Job")
    return value


class MountedResolver:
    """Secrets from the environment (secretKeyRef), ConfigMaps from the projected volume."""

    def __init__(self, secret_env: dict[str, str], config_map_dir: Path) -> None:
        self._secret_env = secret_env
        self._dir = config_map_dir

    def secret(self, ref: KeySelector) -> str:
        var = self._secret_env.get(f"{ref.name}/{ref.key}")
        value = os.environ.get(var or "")
        if value is None or var is None:
            raise KeyError(f"Secret {ref.name} key {ref.key} is not available to the run")
        return value

    def config_map(self, ref: KeySelector) -> bytes:
        path = self._dir / ref.name / ref.key
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise KeyError(f"ConfigMap {ref.name} has no key {ref.key}") from exc


class RunChannel:
    """The Job's side of the operator's run channel."""

    def __init__(self, base: str, namespace: str, export: str, run_id: str, token: str) -> None:
        self.url = f"{base.rstrip('/')}/runs/{namespace}/{export}/{run_id}"
        self.headers = {"Authorization": f"Bearer {token}"}

    def _send(self, method: str, path: str, attempts: int, **kw: Any) -> bool:
        delay = 0.5
        for attempt in range(attempts):
            try:
                r = httpx.request(method, self.url + path, headers=self.headers, timeout=30, **kw)
                if r.status_code < 300:
                    return True
                if r.status_code < 500 and r.status_code != 409:
                    log.warning("the operator refused %s %s: %s", method, path, r.status_code)
                    return False
            except httpx.HTTPError as exc:
                log.info(
                    "the operator is unreachable (%s), attempt %d", type(exc).__name__, attempt + 1
                )
            if attempt + 1 < attempts:
                time.sleep(delay)  # backoff between retries of a failed report
                delay = min(delay * 2, 10)
        return False

    def progress(self, progress: Progress) -> bool:
        return self._send("POST", "/progress", 1, json=progress.to_wire())

    def report(self, report: RunReport) -> bool:
        return self._send("POST", "/report", REPORT_ATTEMPTS, json=report.to_wire())

    def state(self, data: bytes) -> bool:
        return self._send("PUT", "/state", REPORT_ATTEMPTS, content=data)


class ChannelStateStore:
    """Previous state from the mounted shards (checked against its SHA-256); new state is
    uploaded to the operator, which keeps it in ConfigMaps."""

    def __init__(self, directory: Path, sha256: str, channel: RunChannel) -> None:
        self.directory = directory
        self.sha256 = sha256
        self.channel = channel
        self.saved = False

    def load(self) -> bytes | None:
        if not self.sha256 or not self.directory.is_dir():
            log.info("no incremental state from an earlier run: this run is a full run")
            return None
        parts = sorted(
            (p for p in self.directory.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)
        )
        data = b"".join(p.read_bytes() for p in parts)
        if hashlib.sha256(data).hexdigest() != self.sha256:
            log.warning("the stored state is incomplete or changed; this run is a full run")
            return None
        log.info("incremental state from an earlier run: %d bytes", len(data))
        return data

    def save(self, data: bytes) -> None:
        self.saved = self.channel.state(data)
        if not self.saved:
            log.warning("could not hand the new state to the operator; the next run is a full run")


class ProgressPump:
    """Keeps the newest progress and posts it at most every PROGRESS_EVERY seconds."""

    def __init__(self, channel: RunChannel) -> None:
        self.channel = channel
        self.latest: Progress | None = None
        self.sent: Progress | None = None
        self._task: asyncio.Task[None] | None = None

    def __call__(self, progress: Progress) -> None:
        self.latest = progress

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY)
            latest = self.latest
            if latest is not None and latest != self.sent:
                self.sent = latest
                await asyncio.to_thread(self.channel.progress, latest)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def compact(report: RunReport) -> str:
    """The report for the termination message: under 4 KiB, samples dropped first."""
    slim = report.model_copy(
        update={"invalid_samples": [], "rejected_samples": [], "planned_removals": None}
    )
    text = json.dumps(slim.to_wire(), separators=(",", ":"))
    if len(text) > TERMINATION_LIMIT:
        slim = slim.model_copy(
            update={"segments": [], "sendgrid_job_ids": [], "sendgrid_requests": {}}
        )
        text = json.dumps(slim.to_wire(), separators=(",", ":"))
    return text[:TERMINATION_LIMIT]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = "Reads SGOP_* variables set by the operator; not meant to be run by hand."


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from sendgrid_operator.engine.outcomes import EXIT_BAD_INPUT, exit_code

    try:
        run_id = _env("SGOP_RUN_ID")
        namespace = _env("SGOP_EXPORT_NAMESPACE")
        name = _env("SGOP_EXPORT_NAME")
        raw = json.loads(_env("SGOP_RUN_SPEC"))
        spec = SegmentExportSpec.model_validate(raw["spec"])
        channel = RunChannel(
            _env("SGOP_REPORT_URL"), namespace, name, run_id, _env("SGOP_REPORT_TOKEN")
        )
        api_key = _env("SGOP_API_KEY").strip()
    except (JobConfigError, ValueError, KeyError) as exc:
        print(f"sendgrid-operator job: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    resolver = MountedResolver(
        raw.get("secretEnv") or {}, Path(os.environ.get("SGOP_CONFIGMAP_DIR", "/nonexistent"))
    )
    store = ChannelStateStore(
        Path(os.environ.get("SGOP_STATE_DIR", "/nonexistent")),
        os.environ.get("SGOP_STATE_SHA256", ""),
        channel,
    )
    pump = ProgressPump(channel)
    report = asyncio.run(
        _run(
            namespace,
            name,
            run_id,
            RunTrigger(raw.get("trigger", "Request")),
            spec,
            api_key,
            raw["baseURL"],
            resolver,
            store,
            pump,
        )
    )
    delivered = channel.report(report)
    if not delivered:
        log.warning(
            "could not deliver the report to the operator; it is in the termination message"
        )
    with contextlib.suppress(OSError):
        TERMINATION_LOG.write_text(compact(report))
    log.info("run %s: %s (%s) %s", run_id, report.result, report.reason, report.message)
    return exit_code(report.reason)


async def _run(
    namespace: str,
    name: str,
    run_id: str,
    trigger: RunTrigger,
    spec: SegmentExportSpec,
    api_key: str,
    base_url: str,
    resolver: MountedResolver,
    store: ChannelStateStore,
    pump: ProgressPump,
) -> RunReport:
    from sendgrid_operator.engine.plan import ExportPlan
    from sendgrid_operator.engine.run import run_export

    plan = ExportPlan(
        namespace=namespace,
        name=name,
        spec=spec,
        api_key=api_key,
        base_url=base_url,
        resolver=resolver,
        run_id=run_id,
        trigger=trigger,
    )
    pump.start()
    try:
        return await run_export(plan, state=store, progress=pump, dry_run=spec.dry_run)
    finally:
        await pump.stop()
        if pump.latest is not None:
            await asyncio.to_thread(channel_progress_final, pump)


def channel_progress_final(pump: ProgressPump) -> None:
    latest = pump.latest
    if latest is not None and latest != pump.sent:
        pump.channel.progress(latest)
