"""Following SendGrid's import jobs to their end, and counting what each one did.

Why its own module: a 202 means only "queued" (facts §2). Each accepted upsert's job is
polled until it leaves ``pending``; its results give the created and updated counts, and
its ``errors_url`` the rows SendGrid rejected, found again in the spool so that the
report names them by source row and the state does not record them as applied.

When to poll: first after ``poll_initial``, then 1.5 times longer each time up to
``poll_max``. Jobs are numbered as SendGrid accepts them, and SendGrid applies an
account's jobs about in order, so a job waiting for its next poll is polled at once when
a later one is seen finished. Once every body is accepted (:meth:`JobWatch.all_accepted`)
the run only waits, so the newest job is polled on the short ``poll_last`` schedule: a
few more requests a run, none a job.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from array import array
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import IO

from sendgrid_operator.api.report import MAX_SAMPLES, SAMPLES_PER_REASON, RejectedRow
from sendgrid_operator.engine.plan import EngineSettings
from sendgrid_operator.engine.reading import Prepared
from sendgrid_operator.sendgrid import ImportStatus, SendGridClient, SendGridError

log = logging.getLogger(__name__)

REJECTED_BY_SENDGRID = "rejected"
JOB_FAILED = "job_failed"

#: The finished spool and a handle on it, once there is one (None: there will be none).
SpoolAccess = Callable[[], Awaitable["tuple[Prepared, IO[bytes]] | None"]]


@dataclass
class UploadOutcome:
    """What the send pass did: its requests, its jobs, and what they applied."""

    sent: int = 0
    created: int = 0
    updated: int = 0
    rejected: int = 0
    upsert_requests: int = 0
    job_ids: list[str] = field(default_factory=list)
    failed_jobs: list[str] = field(default_factory=list)
    timed_out_jobs: list[str] = field(default_factory=list)
    samples: list[RejectedRow] = field(default_factory=list)
    error: SendGridError | None = None
    failure_message: str | None = None

    def sample(self, reason: str, ref: str, message: str | None) -> None:
        """Keep a rejected row for the report, within its limits."""
        samples = self.samples
        if (
            len(samples) < MAX_SAMPLES
            and sum(1 for s in samples if s.reason == reason) < SAMPLES_PER_REASON
        ):
            samples.append(RejectedRow(reason=reason, row=ref, message=message))


class JobWatch:
    """Polls every job it is given to its end and accounts for it in ``outcome`` and
    ``applied`` (by spool index: 1 once SendGrid applied that contact)."""

    def __init__(
        self,
        client: SendGridClient,
        settings: EngineSettings,
        outcome: UploadOutcome,
        applied: bytearray,
        spool: SpoolAccess,
        on_applied: Callable[[], None],
    ) -> None:
        self.client = client
        self.settings = settings
        self.outcome = outcome
        self.applied = applied
        self.applied_count = 0
        self._spool = spool
        self._on_applied = on_applied
        self._tasks: list[asyncio.Task[None]] = []
        self._accepted = 0
        self._latest_finished = -1
        self._last_job = -1  # the newest job, once every body is accepted
        self._news = asyncio.Event()  # replaced each time it is set

    def follow(self, job_id: str, positions: Sequence[int]) -> None:
        """Poll the job SendGrid accepted for the contacts at spool ``positions``."""
        self.outcome.job_ids.append(job_id)
        number = self._accepted
        self._accepted += 1
        self._tasks.append(asyncio.create_task(self._verify(job_id, array("I", positions), number)))

    def all_accepted(self) -> None:
        """Nothing is left to send: from now on the run only waits for its jobs, so its
        newest job is polled on the short ``poll_last`` schedule (when it is seen
        finished, the older ones are polled at once)."""
        self._last_job = self._accepted - 1
        self._tell()

    async def wait(self) -> None:
        """Until every job followed so far is accounted for."""
        if self._tasks:
            await asyncio.gather(*self._tasks)

    # -- when to poll ----------------------------------------------------------------------
    async def _pause(self, delay: float, number: int) -> None:
        """Sleep ``delay`` seconds, or less: not past the moment a job accepted after job
        ``number`` is seen finished, nor more than ``poll_last`` after this job becomes
        the newest one left to wait for."""
        deadline = time.monotonic() + delay
        was_last = number == self._last_job
        while (remaining := deadline - time.monotonic()) > 0:
            news = self._news
            try:
                await asyncio.wait_for(news.wait(), remaining)
            except TimeoutError:
                return
            if self._latest_finished > number:
                return
            if not was_last and number == self._last_job:
                was_last = True
                deadline = min(deadline, time.monotonic() + self.settings.poll_last)

    def _tell(self) -> None:
        """Wake every job's pause to look at what changed."""
        news, self._news = self._news, asyncio.Event()
        news.set()

    def _seen_finished(self, number: int) -> None:
        self._latest_finished = max(self._latest_finished, number)
        self._tell()

    async def _verify(self, job_id: str, positions: array[int], number: int) -> None:
        s = self.settings
        deadline = time.monotonic() + s.job_timeout
        delay = s.poll_last if number == self._last_job else s.poll_initial
        short = s.poll_last  # the last-job schedule's current step
        try:
            while True:
                await self._pause(delay, number)
                status = await self.client.import_status(job_id)
                if status.finished:
                    self._seen_finished(number)
                    break
                if time.monotonic() >= deadline:
                    self.outcome.timed_out_jobs.append(job_id)
                    return
                delay = min(s.poll_max, delay * 1.5)
                if number == self._last_job:
                    short = min(s.poll_max, short * 1.5)
                    delay = min(delay, short)
            await self._account(status, positions)
        except SendGridError as exc:
            if self.outcome.error is None:
                self.outcome.error = exc

    # -- what a job did ----------------------------------------------------------------------
    async def _account(self, status: ImportStatus, positions: array[int]) -> None:
        out = self.outcome
        if status.status == "failed":
            out.failed_jobs.append(status.id)
            message = await self._first_error(status)
            if out.failure_message is None:
                out.failure_message = message
            out.sample(JOB_FAILED, f"job {status.id}", message)
            return
        out.created += status.created
        out.updated += status.updated
        out.rejected += status.errored
        bad: set[int] = set()
        if status.errored:
            bad = await self._rejected_positions(status, positions)
            if len(bad) < status.errored:
                # SendGrid's file did not name every rejected row: record none of this job,
                # so the next run sends it again rather than trusting unknown rows.
                log.warning(
                    "job %s: %d errored rows, %d identified", status.id, status.errored, len(bad)
                )
                bad = set(positions)
        applied = self.applied
        if positions:  # an early body's job may end before the mask covers the whole spool
            top = max(positions)
            if top >= len(applied):
                applied.extend(bytes(top + 1 - len(applied)))
        if bad:
            for p in positions:
                if p not in bad:
                    applied[p] = 1
        else:
            for p in positions:
                applied[p] = 1
        self.applied_count += len(positions) - min(len(positions), status.errored)
        self._on_applied()

    async def _first_error(self, status: ImportStatus) -> str:
        if not status.errors_url:
            return f"SendGrid job {status.id} failed"
        try:
            rows = await self.client.download_errors(status.errors_url)
        except SendGridError:
            return f"SendGrid job {status.id} failed"
        reason = _error_text(rows[0]) if rows else ""
        return f"SendGrid job {status.id} failed" + (f": {reason}" if reason else "")

    async def _rejected_positions(self, status: ImportStatus, positions: array[int]) -> set[int]:
        if not status.errors_url:
            return set()
        spooled = await self._spool()
        if spooled is None:
            return set()  # none named: the job's rows count as not applied
        prepared, handle = spooled
        rows = await self.client.download_errors(status.errors_url)
        spool = prepared.spool
        by_email: dict[str, int] | None = None
        bad: set[int] = set()
        for row in rows:
            email = (row.get("email") or "").strip().lower()
            found: int | None = None
            index = row.get("row") or row.get("row_number") or row.get("index")
            if index is not None and str(index).isdigit() and int(index) < len(positions):
                candidate = positions[int(index)]
                _, _, encoded = spool.read(handle, candidate)
                if not email or json.loads(encoded).get("email") == email:
                    found = candidate
            if found is None and email:
                if by_email is None:
                    by_email = {}
                    for p, _, _, encoded in spool.read_many(handle, positions):
                        by_email[json.loads(encoded)["email"]] = p
                found = by_email.get(email)
            if found is None:
                continue
            bad.add(found)
            segment, rownum, _ = spool.read(handle, found)
            self.outcome.sample(
                REJECTED_BY_SENDGRID, prepared.ref(segment, rownum), _error_text(row)
            )
        return bad


def _error_text(row: dict[str, str]) -> str:
    for key in ("error", "errors", "message", "reason"):
        if row.get(key):
            return row[key][:300]
    return ""
