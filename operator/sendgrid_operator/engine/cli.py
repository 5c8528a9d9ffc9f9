"""``sendgrid-operator export``: run one export on this machine, from manifests.

Takes the same multi-document YAML a user would ``kubectl apply`` (a Secret with the API
key, a SendGridConnection, a SegmentExport, optionally ConfigMaps and a database-URL
Secret), runs the export once through :func:`~sendgrid_operator.engine.run.run_export`,
draws progress on stderr, and prints a summary (text, or the RunReport as JSON on stdout).
Exit codes: :mod:`sendgrid_operator.engine.outcomes`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path
from typing import TextIO

from sendgrid_operator.api.common import KeySelector
from sendgrid_operator.api.report import Phase, Progress, RunReport
from sendgrid_operator.engine import manifests as mf
from sendgrid_operator.engine import memory
from sendgrid_operator.engine.outcomes import (
    EXIT_BAD_INPUT,
    EXIT_REFUSED,
    EXIT_UNEXPECTED,
    Reason,
    exit_code,
)
from sendgrid_operator.engine.plan import EngineSettings, ExportPlan
from sendgrid_operator.engine.run import run_export
from sendgrid_operator.engine.state import DEFAULT_STATE_DIR, FileStateStore

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f",
        "--filename",
        dest="files",
        action="append",
        required=True,
        metavar="MANIFESTS.yaml",
        help="YAML with the Secret, SendGridConnection and SegmentExport (repeatable; - for stdin)",
    )
    parser.add_argument("--export", metavar="NAME", help="which SegmentExport, if several")
    parser.add_argument("--sendgrid-url", metavar="URL", help="override the connection's baseURL")
    parser.add_argument("--dry-run", action="store_true", help="read and report; write nothing")
    parser.add_argument("--full", action="store_true", help="send every contact, not only changes")
    parser.add_argument("--output", choices=("text", "json"), default="text")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help=f"where incremental state is kept (default: ./{DEFAULT_STATE_DIR})",
    )


class _Fail(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _plan(args: argparse.Namespace) -> ExportPlan:
    try:
        found = mf.load(args.files)
    except mf.ManifestError as exc:
        raise _Fail(EXIT_BAD_INPUT, str(exc)) from exc
    exports = found.exports
    if args.export:
        exports = {k: v for k, v in exports.items() if k[1] == args.export}
    if not exports:
        what = f"named {args.export!r} " if args.export else ""
        raise _Fail(EXIT_BAD_INPUT, f"no SegmentExport {what}in the manifests")
    if len(exports) > 1:
        names = ", ".join(n for _, n in sorted(exports))
        raise _Fail(EXIT_BAD_INPUT, f"several SegmentExports ({names}): choose one with --export")
    (namespace, name), export = next(iter(exports.items()))
    ref = export.spec.connection_ref
    conn_ns = ref.namespace or namespace
    connection = found.connections.get((conn_ns, ref.name))
    if connection is None:
        raise _Fail(
            EXIT_BAD_INPUT,
            f"SegmentExport {name}: SendGridConnection {conn_ns}/{ref.name} "
            "(spec.connectionRef) is not in the manifests",
        )
    if not connection.spec.consent.personal_data:
        raise _Fail(
            EXIT_REFUSED,
            f"SendGridConnection {conn_ns}/{ref.name}: consent.personalData is not true; an "
            "export sends personal data to SendGrid, so the connection must record consent "
            "(spec.consent.personalData: true) before anything is sent",
        )
    key_ref = connection.spec.api_key_secret_ref
    try:
        api_key = mf.ManifestResolver(found, conn_ns).secret(
            KeySelector(name=key_ref.name, key=key_ref.key)
        )
    except KeyError as exc:
        raise _Fail(
            EXIT_BAD_INPUT, f"SendGridConnection {conn_ns}/{ref.name}: {exc.args[0]}"
        ) from exc
    api_key = api_key.strip()
    if not api_key:
        raise _Fail(EXIT_BAD_INPUT, f"the API key in Secret {conn_ns}/{key_ref.name} is empty")
    return ExportPlan(
        namespace=namespace,
        name=name,
        spec=export.spec,
        api_key=api_key,
        base_url=args.sendgrid_url or connection.spec.base_url,
        resolver=mf.ManifestResolver(found, namespace),
    )


class ProgressLine:
    """A one-line progress bar on a TTY; a plain line per phase (and every 5 s) otherwise."""

    WIDTH = 30

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._phase: str | None = None
        self._last = 0.0

    def __call__(self, p: Progress) -> None:
        counts = f"read {p.read:,} sent {p.sent:,} applied {p.applied:,}"
        if p.removed:
            counts += f" removed {p.removed:,}"
        if self.tty:
            pct = p.percent or 0
            filled = int(self.WIDTH * pct / 100)
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            end = "\n" if p.phase == Phase.FINISHED else ""
            self.stream.write(f"\r{p.phase:<10} [{bar}] {pct:3d}% {counts}\x1b[K{end}")
            self.stream.flush()
            return
        now = time.monotonic()
        if p.phase != self._phase or now - self._last >= 5:
            self._phase = str(p.phase)
            self._last = now
            shown = "" if p.percent is None else f" {p.percent}%"
            self.stream.write(f"{p.phase}{shown}: {counts}\n")
            self.stream.flush()


def summary(report: RunReport) -> str:
    c = report.counts
    lines = [
        f"{report.result}: {report.reason}" + (" (dry run)" if report.dry_run else ""),
        f"  {report.message}" if report.message else "",
        f"  read {c.read:,} rows: {c.profiles:,} profiles, {c.duplicates:,} duplicates, "
        f"{c.invalid:,} invalid",
    ]
    for reason, n in c.invalid_by_reason.items():
        lines.append(f"    {reason}: {n:,}")
    lines.append(
        f"  sent {c.sent:,} ({c.unchanged:,} unchanged): created {c.created:,}, updated "
        f"{c.updated:,}, rejected {c.rejected:,}, removed {c.removed:,}"
    )
    lines.append(
        f"  upsert requests {c.upsert_requests} (minimum {c.minimum_upsert_requests}); "
        f"{report.duration_seconds or 0:.1f}s"
    )
    for seg in report.segments:
        lines.append(
            f"  segment {seg.name}: read {seg.read:,}, profiles {seg.profiles:,}, "
            f"duplicates {seg.duplicates:,}, invalid {seg.invalid:,}"
        )
    for sample in [*report.invalid_samples, *report.rejected_samples][:10]:
        lines.append(
            f"  {sample.reason} at {sample.row}" + (f": {sample.message}" if sample.message else "")
        )
    if report.planned_removals:
        lines.append(f"  would remove ({len(report.planned_removals)}):")
        lines.extend(f"    {email}" for email in report.planned_removals[:50])
    return "\n".join(line for line in lines if line)


def use_system_allocator() -> None:
    """Arrow's allocator without decay and a fixed malloc mmap threshold (:mod:`.memory`);
    :func:`run_export` does this too."""
    memory.configure()


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    use_system_allocator()
    try:
        plan = _plan(args)
    except _Fail as fail:
        print(f"error: {fail.message}", file=sys.stderr)
        return fail.code
    store = FileStateStore(args.state_dir, plan.namespace, plan.name)
    bar = ProgressLine(sys.stderr)
    try:
        report = asyncio.run(
            run_export(
                plan,
                state=store,
                progress=bar,
                dry_run=args.dry_run,
                full=args.full,
                settings=EngineSettings(),
            )
        )
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_UNEXPECTED
    except Exception as exc:  # the report covers every expected failure
        log.exception("the export failed unexpectedly")
        print(f"error: unexpected failure: {type(exc).__name__}", file=sys.stderr)
        return EXIT_UNEXPECTED
    if args.output == "json":
        print(report.model_dump_json(by_alias=True, exclude_none=True, indent=2))
    else:
        print(summary(report))
    code = exit_code(report.reason)
    if report.reason == Reason.UNEXPECTED:
        return EXIT_UNEXPECTED
    return code
