"""The send pass: upload the contacts to send, each job followed to its end by :mod:`.jobs`.

Why its own module: bodies come from two places (the first pass's thread while it still
reads, :mod:`.early`, and the spool once it is complete, :mod:`.bodies`) and go out
through one bound: at most ``upload_concurrency`` upserts exist at once, while earlier
jobs are being applied and polled.

A body SendGrid refuses as a whole (400) is split to isolate the bad rows: rows named by
the error's ``field`` (``contacts[3].email``) are dropped directly, otherwise the batch is
bisected, so *k* bad rows cost about *k*·log₂(n) extra requests. A 400 about the request
itself (``list_ids``) fails the run instead.
"""

from __future__ import annotations

import asyncio
import re
import threading
from array import array
from collections.abc import Callable, Sequence
from typing import IO

from sendgrid_operator.engine.batching import BodyBuilder
from sendgrid_operator.engine.bodies import cut_bodies
from sendgrid_operator.engine.jobs import REJECTED_BY_SENDGRID, JobWatch, UploadOutcome
from sendgrid_operator.engine.plan import EngineSettings
from sendgrid_operator.engine.reading import Prepared
from sendgrid_operator.sendgrid import RequestRejected, SendGridClient, SendGridError

_CONTACT_FIELD = re.compile(r"^contacts\[(\d+)\]")


class Uploader:
    """Sends the rows of a mask over the spool and marks the ``applied`` ones.

    Bodies may also arrive from the first pass's thread before the spool is complete
    (:meth:`early_submitter`, :mod:`.early`); :meth:`attach` then hands over the finished
    spool and what remains to send, and :meth:`run` sends that and verifies every job."""

    def __init__(
        self,
        client: SendGridClient,
        settings: EngineSettings,
        list_ids: list[str],
        on_progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.list_ids = list_ids
        self.prepared: Prepared | None = None
        self._remainder = bytearray()
        self.applied = bytearray()
        self.outcome = UploadOutcome()
        self._on_progress = on_progress
        self._jobs = JobWatch(
            client, settings, self.outcome, self.applied, self._spool, self._progress
        )
        self._slots = asyncio.Semaphore(max(1, settings.upload_concurrency))
        self._spool_ready = asyncio.Event()  # set by attach() (or drain(): no spool)
        self._spool_handle: IO[bytes] | None = None
        self._early: list[asyncio.Task[None]] = []
        self._early_closed = False
        self._bodies = BodyBuilder(
            list_ids, settings.max_contacts_per_upsert, settings.max_upsert_bytes
        )

    def attach(
        self, prepared: Prepared, send: bytearray, remainder: bytearray | None = None
    ) -> None:
        """The finished spool, the mask of every contact this run sends, and of those not
        sent early (default: all of ``send``)."""
        self.prepared = prepared
        self._remainder = send if remainder is None else remainder
        if len(self.applied) < len(send):
            self.applied.extend(bytes(len(send) - len(self.applied)))
        self._spool_handle = open(prepared.spool.path, "rb")  # noqa: SIM115 - closed in run()
        self._spool_ready.set()

    # -- bodies from the first pass --------------------------------------------------------
    def early_submitter(
        self, loop: asyncio.AbstractEventLoop
    ) -> Callable[[bytes, array[int]], bool]:
        """A function for the first pass's thread that hands this uploader a body (and
        its contacts' spool indices). It blocks while ``upload_concurrency`` bodies
        are waiting or in flight, and returns False once the uploader takes no more."""
        outstanding = threading.Semaphore(max(1, self.settings.upload_concurrency))

        def submit(data: bytes, positions: array[int]) -> bool:
            while not outstanding.acquire(timeout=0.1):
                if self._early_closed:
                    return False
            if self._early_closed:
                outstanding.release()
                return False
            loop.call_soon_threadsafe(self._start_early, data, positions, outstanding)
            return True

        return submit

    def _start_early(
        self, data: bytes, positions: array[int], outstanding: threading.Semaphore
    ) -> None:
        async def upload() -> None:
            try:
                await self._slots.acquire()
                await self._upload(data, positions)
            finally:
                if self.outcome.error is not None:
                    self._early_closed = True  # before the first pass may submit again
                outstanding.release()

        self._early.append(asyncio.create_task(upload()))

    async def drain(self) -> UploadOutcome:
        """The first pass failed: take no more bodies, and finish (send and verify) those
        taken. Without a spool, rejected rows cannot be named (:mod:`.jobs`)."""
        self._early_closed = True
        self._spool_ready.set()
        await asyncio.gather(*self._early)
        self._jobs.all_accepted()
        await self._jobs.wait()
        return self.outcome

    def _progress(self) -> None:
        if self._on_progress is not None:
            self._on_progress(self.outcome.sent, self._jobs.applied_count)

    async def run(
        self,
        on_uploaded: Callable[[], None] | None = None,
        on_cut: Callable[[], None] | None = None,
    ) -> UploadOutcome:
        """Upload and verify; ``on_cut`` is called once the last body is cut (at most
        ``upload_concurrency`` are still being sent), ``on_uploaded`` once all are sent."""
        try:
            await self._produce(on_cut)
            self._jobs.all_accepted()
            if on_uploaded is not None:
                on_uploaded()
            await self._jobs.wait()
        finally:
            self._early_closed = True
            if self._spool_handle is not None:
                self._spool_handle.close()
        return self.outcome

    # -- producing bodies ----------------------------------------------------------------
    async def _produce(self, on_cut: Callable[[], None] | None) -> None:
        s = self.settings
        assert self.prepared is not None, "attach() comes first"
        bodies = cut_bodies(
            self.prepared.spool,
            self._remainder,
            self.list_ids,
            s.max_contacts_per_upsert,
            s.max_upsert_bytes,
        )
        uploads: list[asyncio.Task[None]] = []
        # a body takes its slot before it is cut, so at most upload_concurrency bodies
        # exist at once, the one being cut included
        await self._slots.acquire()
        for body in bodies:
            if self.outcome.error is not None:
                break
            if body is None:
                await asyncio.sleep(0)  # let jobs be polled while the spool is read
                continue
            uploads.append(self._dispatch(body.data, body.positions))
            await self._slots.acquire()
        self._slots.release()
        if on_cut is not None:
            on_cut()
        await asyncio.gather(*uploads, *self._early)

    def _dispatch(self, body: bytes, indices: array[int]) -> asyncio.Task[None]:
        """Send a body whose slot is taken; the upload releases it."""
        return asyncio.create_task(self._upload(body, indices))

    async def _upload(self, body: bytes, indices: array[int]) -> None:
        try:
            accepted = await self._send(indices, body=body)
        except SendGridError as exc:
            if self.outcome.error is None:
                self.outcome.error = exc
            return
        finally:
            self._slots.release()
        for job_id, positions in accepted:
            self._jobs.follow(job_id, positions)

    async def _spool(self) -> tuple[Prepared, IO[bytes]] | None:
        """The finished spool and a handle on it, once there is one (None: the first pass
        failed, and there will be none)."""
        await self._spool_ready.wait()
        if self.prepared is None or self._spool_handle is None:
            return None
        return self.prepared, self._spool_handle

    async def _pieces(self, positions: Sequence[int]) -> list[bytes] | None:
        """The encoded contacts at ``positions``, read back from the spool."""
        spooled = await self._spool()
        if spooled is None:
            return None
        prepared, handle = spooled
        return [encoded for _, _, _, encoded in prepared.spool.read_many(handle, positions)]

    async def _send(
        self,
        positions: Sequence[int],
        pieces: list[bytes] | None = None,
        body: bytes | None = None,
    ) -> list[tuple[str, Sequence[int]]]:
        """Upsert ``body`` (or one built from ``pieces``); on a whole-body 400, isolate
        the bad rows and send the rest. The pieces are read back from the spool only then."""
        self.outcome.upsert_requests += 1
        try:
            if body is None:
                assert pieces is not None
                body = self._bodies.build(pieces)
            job_id = await self.client.upsert(body)
        except RequestRejected as exc:
            if exc.status != 400 or _about_request(exc):
                raise
            body = None
            if pieces is None:
                pieces = await self._pieces(positions)
                if pieces is None:  # no spool to isolate the bad rows with
                    raise
            named = _named_rows(exc, len(pieces))
            if named:
                for i, message in named.items():
                    self._reject(positions[i], message)
                keep = [i for i in range(len(pieces)) if i not in named]
                if not keep:
                    return []
                return await self._send([positions[i] for i in keep], [pieces[i] for i in keep])
            if len(pieces) == 1:
                detail = "; ".join(e.message for e in exc.errors if e.message)
                self._reject(positions[0], detail or exc.message)
                return []
            half = len(pieces) // 2
            first = await self._send(positions[:half], pieces[:half])
            second = await self._send(positions[half:], pieces[half:])
            return first + second
        self.outcome.sent += len(positions)
        self._progress()
        return [(job_id, positions)]

    def _reject(self, position: int, message: str) -> None:
        """Count a row SendGrid refused (only after :meth:`_pieces`: the spool is ready)."""
        self.outcome.rejected += 1
        assert self.prepared is not None and self._spool_handle is not None
        segment, row, _ = self.prepared.spool.read(self._spool_handle, position)
        self.outcome.sample(REJECTED_BY_SENDGRID, self.prepared.ref(segment, row), message)


def _about_request(exc: RequestRejected) -> bool:
    """A 400 about the request as a whole (list IDs, body shape), not about rows."""
    return any(
        e.field is not None and not _CONTACT_FIELD.match(e.field) and e.field != "contacts"
        for e in exc.errors
    ) and not any(e.field and _CONTACT_FIELD.match(e.field) for e in exc.errors)


def _named_rows(exc: RequestRejected, count: int) -> dict[int, str]:
    named: dict[int, str] = {}
    for e in exc.errors:
        match = _CONTACT_FIELD.match(e.field or "")
        if match and int(match.group(1)) < count:
            named.setdefault(int(match.group(1)), e.message)
    return named
