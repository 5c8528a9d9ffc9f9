"""One export run from start to report: :func:`run_export`, the engine's entry point.

The order of a run is the safety argument, so it is spelled out here once:

1. preflight, reads only: the key's scopes, every list, the custom field definitions;
2. the first pass (:mod:`.reading`): read, validate, de-duplicate, spool; ``maxProfiles``;
3. the diff against the state (:mod:`.incremental`);
4. mirror only: the guards and each list's membership (:mod:`.mirror`), still read-only;
5. a dry run stops here and reports what would happen;
6. upload (:mod:`.upload`) and follow every job to its end (:mod:`.jobs`);
7. mirror only, and only if every job succeeded: remove memberships;
8. save the new state (also after a failed run: it records only what SendGrid applied).

Every refusal happens before step 6, so a refused run has written nothing. Step 6 starts
during step 2 only when no refusal is left that could happen (:mod:`.early`: an upsert
run that sends everything it reads, within ``maxProfiles`` by the sources' own bounds);
then a source failing part-way leaves the contacts sent so far applied, and says so.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from array import array
from collections.abc import Callable

from sendgrid_operator.api.export import Mode
from sendgrid_operator.api.report import (
    Phase,
    Progress,
    RunCounts,
    RunReport,
    RunResult,
)
from sendgrid_operator.engine import dryrun, incremental, memory, mirror, writing
from sendgrid_operator.engine.batching import lower_bound, overhead
from sendgrid_operator.engine.early import EarlyBodies
from sendgrid_operator.engine.mapping import CompiledMapping, compile_mapping
from sendgrid_operator.engine.outcomes import (
    MappingError,
    Reason,
    RunStopped,
    SourceError,
    reason_for,
    result_for,
)
from sendgrid_operator.engine.plan import EngineSettings, ExportPlan
from sendgrid_operator.engine.progress import ProgressReporter
from sendgrid_operator.engine.reading import Prepared, read_segments
from sendgrid_operator.engine.state import ExportState, StateStore, load_state
from sendgrid_operator.engine.upload import Uploader
from sendgrid_operator.sendgrid import (
    MARKETING_SCOPE,
    PermissionDenied,
    SendGridClient,
    SendGridError,
)

log = logging.getLogger(__name__)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def run_export(
    plan: ExportPlan,
    *,
    client: SendGridClient | None = None,
    state: StateStore,
    progress: Callable[[Progress], None] | None = None,
    dry_run: bool = False,
    full: bool = False,
    settings: EngineSettings | None = None,
) -> RunReport:
    """Run one export and return its report. Never raises for a run that went wrong in an
    expected way (bad input, guard, SendGrid failure): the report says so, and
    :func:`~sendgrid_operator.engine.outcomes.exit_code` turns its reason into an exit code.

    ``client`` defaults to a new :class:`SendGridClient` for ``plan.base_url`` (closed at
    the end); ``state`` holds the incremental state between runs; ``progress`` is called
    with :class:`~sendgrid_operator.api.report.Progress` at a bounded rate, on the event
    loop's thread. ``dry_run`` and ``full`` add to the spec's ``dryRun`` and
    ``incremental: false``.
    """
    settings = settings or EngineSettings()
    memory.configure()
    own_client = client is None
    if client is None:
        client = SendGridClient(
            plan.api_key, plan.base_url, policy=settings.retry, timeout=settings.timeout
        )
    run = _Run(
        plan,
        client,
        state,
        settings,
        dry_run or plan.spec.dry_run,
        full or not plan.spec.incremental,
    )
    run.reporter = ProgressReporter(progress, settings.progress_interval)
    try:
        return await run.execute()
    finally:
        if own_client:
            await client.aclose()


class _Run:
    def __init__(
        self,
        plan: ExportPlan,
        client: SendGridClient,
        store: StateStore,
        settings: EngineSettings,
        dry_run: bool,
        full: bool,
    ) -> None:
        self.plan = plan
        self.spec = plan.spec
        self.client = client
        self.store = store
        self.settings = settings
        self.dry_run = dry_run
        self.full = full
        self.list_ids = list(dict.fromkeys(self.spec.list_ids))
        self.counts = RunCounts()
        self.report = RunReport(
            run_id=plan.run_id or f"{plan.name}-{uuid.uuid4().hex[:8]}",
            result=result_for(Reason.RUN_SUCCEEDED),
            reason=Reason.RUN_SUCCEEDED,
            trigger=plan.trigger,
            dry_run=dry_run,
            mode=str(self.spec.mode),
            full_run=True,
            list_ids=self.list_ids,
            counts=self.counts,
        )
        self.reporter: ProgressReporter
        self.notes: list[str] = []
        self.wrote = False  # bodies went out before the run stopped (see _abandon)
        self.prepared: Prepared | None = None

    # -- the run ------------------------------------------------------------------------
    async def execute(self) -> RunReport:
        started = time.monotonic()
        self.report.start_time = _now()
        try:
            await self._execute()
        except RunStopped as stop:
            self._finish(stop.reason, stop.message)
        except SendGridError as exc:
            self._finish(reason_for(exc), exc.message)
        finally:
            if self.prepared is not None:
                self.prepared.spool.remove()
            self.report.completion_time = _now()
            self.report.duration_seconds = round(time.monotonic() - started, 3)
            self.report.sendgrid_requests = dict(sorted(self.client.requests.items()))
            self.reporter.phase(Phase.FINISHED)
        return self.report

    def _finish(self, reason: Reason, message: str) -> None:
        self.report.reason = reason
        self.report.result = result_for(reason)
        if self.wrote and self.report.result == RunResult.REFUSED:
            self.report.result = RunResult.FAILED  # not refused: contacts went out first
        notes = " ".join(self.notes)
        self.report.message = f"{message} {notes}".strip() if notes else message

    async def _execute(self) -> None:
        compiled = await self._preflight()
        saved, note = load_state(self.store)
        if note:
            self.notes.append(note)
        state = saved or ExportState.new(self.list_ids)
        uploader = Uploader(self.client, self.settings, self.list_ids, self._upload_progress)
        early = self._early(uploader, state)
        try:
            prepared = await self._read(compiled, state, early)
        except RunStopped:
            if early is not None and early.bodies:
                await self._abandon(uploader)
            raise
        self.prepared = prepared
        memory.release()
        send, unchanged = incremental.to_send(prepared, state, self.full)
        memory.release()
        self.report.full_run = self.full or saved is None
        c = self.counts
        c.unchanged = unchanged
        c.sent = sum(send)
        sent_bytes = prepared.payload_size(send)
        c.minimum_upsert_requests = lower_bound(
            c.sent,
            sent_bytes,
            self.settings.max_contacts_per_upsert,
            self.settings.max_upsert_bytes,
            overhead(self.list_ids),
        )
        memberships: list[mirror.Membership] = []
        if self.spec.mode == Mode.MIRROR:
            memberships = await mirror.preflight(
                self.client,
                self.settings,
                self.spec,
                self.list_ids,
                prepared,
                state,
                saved is not None,
            )
            if saved is None:
                self.notes.append(
                    "Mirror removed nothing this run: there is no state from an earlier run, "
                    "so this export cannot tell which list members it added."
                )
        if self.dry_run:
            await self._dry_run(prepared, state, send, memberships)
            return
        remainder = None
        if early is not None:
            # the waiting rows it holds go out now; the spool serves what it does not hold
            await asyncio.to_thread(early.finish, prepared.keep)
            if early.bodies:
                remainder = early.rest(send)
        uploader.attach(prepared, send, remainder)
        await self._upload_and_verify(
            prepared, state, send, memberships, uploader, mostly_sent=remainder is not None
        )

    def _early(self, uploader: Uploader, state: ExportState) -> EarlyBodies | None:
        """Bodies sent during the first pass, if this run can allow them (:mod:`.early`):
        it writes, only upserts, and sends every contact it reads."""
        if (
            self.dry_run
            or not self.settings.early_upload
            or self.spec.mode != Mode.UPSERT
            or not (self.full or len(state) == 0)
        ):
            return None
        s = self.settings
        submit = uploader.early_submitter(asyncio.get_running_loop())
        return EarlyBodies(self.list_ids, s.max_contacts_per_upsert, s.max_upsert_bytes, submit)

    def _upload_progress(self, sent: int, applied: int) -> None:
        self.reporter.update(sent=sent, applied=applied)

    async def _abandon(self, uploader: Uploader) -> None:
        """The first pass failed after bodies went out: finish and verify those, and say
        what they did. The state is left as it was, so the next run sends them again."""
        out = await uploader.drain()
        self.wrote = out.upsert_requests > 0
        c = self.counts
        c.sent, c.created, c.updated = out.sent, out.created, out.updated
        c.rejected, c.upsert_requests = out.rejected, out.upsert_requests
        self.report.sendgrid_job_ids = list(out.job_ids)
        self.report.rejected_samples = out.samples
        self.notes.append(
            f"Before the read failed, {out.sent:,} contacts had been sent while reading and "
            f"SendGrid applied {out.created + out.updated:,} of them ({out.created:,} "
            f"created, {out.updated:,} updated); the state was left as it was, so the next "
            "run sends them again."
        )

    async def _preflight(self) -> CompiledMapping:
        self.reporter.phase(Phase.READING)
        try:
            scopes = await self.client.scopes()
        except PermissionDenied:
            scopes = None  # which scope /v3/scopes needs is undocumented; the lists decide
        if scopes is not None and MARKETING_SCOPE not in scopes:
            raise RunStopped(
                Reason.SCOPE_MISSING,
                f"the API key lacks the {MARKETING_SCOPE} scope (it has: "
                f"{', '.join(sorted(scopes)) or 'none'}); give the key Marketing access",
            )
        for list_id in self.list_ids:
            await self.client.get_list(list_id)
        fields = []
        if self.spec.field_mapping.custom_fields:
            fields = await self.client.field_definitions()
        try:
            return compile_mapping(self.spec.field_mapping, fields)
        except MappingError as exc:
            raise RunStopped(Reason.INVALID_MAPPING, str(exc)) from exc

    async def _read(
        self, compiled: CompiledMapping, state: ExportState, early: EarlyBodies | None
    ) -> Prepared:
        reporter = self.reporter

        def tick(read: int, total: int | None) -> None:
            reporter.update(read=read, total=total)

        try:
            prepared = await asyncio.to_thread(
                read_segments,
                self.spec.segments,
                compiled,
                state,
                self.list_ids,
                self.plan.resolver,
                max_profiles=self.spec.max_profiles,
                max_body=self.settings.max_upsert_bytes,
                spool_dir=self.settings.spool_dir,
                tick=tick,
                early=early,
            )
        except SourceError as exc:
            raise RunStopped(Reason.SOURCE_ERROR, str(exc)) from exc
        except MappingError as exc:
            raise RunStopped(Reason.INVALID_MAPPING, str(exc)) from exc
        c = self.counts
        c.read = prepared.read
        c.invalid = sum(prepared.invalid_by_reason.values())
        c.invalid_by_reason = dict(sorted(prepared.invalid_by_reason.items()))
        c.duplicates = sum(s.duplicates for s in prepared.segments)
        c.profiles = prepared.profiles
        self.report.segments = prepared.segments
        self.report.invalid_samples = prepared.invalid_samples
        reporter.update(read=c.read, force=True)
        return prepared

    # -- dry run ------------------------------------------------------------------------
    async def _dry_run(
        self,
        prepared: Prepared,
        state: ExportState,
        send: bytearray,
        memberships: list[mirror.Membership],
    ) -> None:
        existing = await dryrun.existing_count(self.client, self.settings, prepared, state, send)
        c = self.counts
        c.updated = existing
        c.created = c.sent - existing
        c.removed = sum(len(m.candidates) for m in memberships)
        if self.spec.mode == Mode.MIRROR:
            seen: dict[str, None] = {}
            for m in memberships:
                for email, _, _ in m.candidates:
                    seen.setdefault(email, None)
            self.report.planned_removals = list(seen)
        self._finish(
            Reason.DRY_RUN_SUCCEEDED,
            f"dry run: would send {c.sent:,} contacts ({c.created:,} new, {c.updated:,} "
            f"existing), remove {c.removed:,} list memberships; {c.invalid:,} rows invalid. "
            "Nothing was written.",
        )

    # -- writing ------------------------------------------------------------------------
    async def _upload_and_verify(
        self,
        prepared: Prepared,
        state: ExportState,
        send: bytearray,
        memberships: list[mirror.Membership],
        uploader: Uploader,
        mostly_sent: bool = False,
    ) -> None:
        reporter = self.reporter
        reporter.to_send = self.counts.sent
        reporter.phase(Phase.UPLOADING)
        foreign: dict[str, array[int]] = {m.list_id: m.foreign for m in memberships}
        # The new state is built ahead while SendGrid applies the last bodies: the engine
        # is mostly waiting then. Not earlier, so its memory and the bodies' do not add
        # up: once the last body is cut (at most ``upload_concurrency`` are still being
        # sent), or, when bodies went out while reading (``mostly_sent``: every body was
        # cut during the pass, or is one of the few left to cut), once all are sent.
        speculated: asyncio.Future[bytes] | None = None

        def speculate() -> None:
            nonlocal speculated
            if speculated is None and uploader.outcome.error is None:
                speculated = writing.speculate(
                    state, self.list_ids, prepared, send, foreign, memberships
                )

        def uploaded() -> None:
            reporter.phase(Phase.VERIFYING)
            speculate()

        out = await uploader.run(on_uploaded=uploaded, on_cut=None if mostly_sent else speculate)
        prepared.spool.lengths = array("I")  # the spool is not read again
        memory.release()
        c = self.counts
        c.sent = out.sent
        c.created = out.created
        c.updated = out.updated
        c.rejected = out.rejected
        c.upsert_requests = out.upsert_requests
        self.report.sendgrid_job_ids = list(out.job_ids)
        self.report.rejected_samples = out.samples
        reporter.update(sent=out.sent, applied=out.created + out.updated, force=True)
        failure = writing.failure_of(out, self.settings.job_timeout)
        removals = mirror.RemovalOutcome()
        if failure is None and any(m.candidates for m in memberships):
            reporter.to_remove = sum(len(m.candidates) for m in memberships)
            reporter.phase(Phase.REMOVING)
            removals, failure = await writing.remove_memberships(
                self.client, self.settings, memberships, lambda n: reporter.update(removed=n)
            )
            c.removed = removals.removed
            self.report.sendgrid_job_ids += removals.job_ids
        try:
            encoded = await writing.state_to_save(
                speculated,
                state,
                self.list_ids,
                prepared,
                send,
                uploader.applied,
                out.sent,
                foreign,
                removals,
            )
            if encoded is not None:
                self.store.save(encoded)
        except OSError as exc:
            self.notes.append(f"The state could not be saved ({exc}); the next run is a full run.")
        if failure is not None:
            raise RunStopped(*failure)
        self._finish(
            Reason.RUN_SUCCEEDED,
            f"SendGrid applied {c.created + c.updated:,} contacts ({c.created:,} created, "
            f"{c.updated:,} updated), rejected {c.rejected:,}; {c.unchanged:,} unchanged, "
            f"{c.invalid:,} invalid rows not sent, {c.removed:,} list memberships removed.",
        )
