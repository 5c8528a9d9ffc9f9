"""Asynchronous jobs: upserts and list removals are answered 202 and applied later.

A job waits ``apply_delay`` seconds after its 202, then one worker applies jobs in arrival
order (SendGrid queues them; the emulator keeps FIFO so a test can reason about order).
Large upserts yield to the event loop every few thousand rows so status polls stay fast.
Rejected rows are kept for the job's ``errors_url`` (a CSV file, see docs/emulator.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sendgrid_operator.emulator.exports import EXPORT_TTL_SECONDS, Export, render
from sendgrid_operator.emulator.faults import FaultSpec, row_rejected
from sendgrid_operator.emulator.hotpath import gc_paused
from sendgrid_operator.emulator.store import RowError, Store, iso_now
from sendgrid_operator.emulator.validate import SimpleRows

CHUNK_ROWS = 5000
MSG_JOB_FAILED = "job failed: injected emulator fault"
ERRORS_CSV_COLUMNS = ("row", "email", "phone_number_id", "external_id", "anonymous_id", "error")


@dataclass
class Job:
    """One import-status record (``GET /v3/marketing/contacts/imports/{id}``)."""

    id: str
    job_type: str  # "upsert" or "delete" (list removal / delete)
    requested: int
    due: float
    payload: dict[str, Any] = field(default_factory=dict)
    faults: list[FaultSpec] = field(default_factory=list)
    status: str = "pending"
    created: int = 0
    updated: int = 0
    deleted: int = 0
    errors: list[RowError] = field(default_factory=list)
    started_at: str | None = None
    finished_at: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def to_json(self, base_url: str) -> dict[str, Any]:
        results: dict[str, Any] = {"requested_count": self.requested}
        if self.status != "pending":
            if self.job_type == "upsert":
                results["created_count"] = self.created
                results["updated_count"] = self.updated
            else:
                results["deleted_count"] = self.deleted
            results["errored_count"] = len(self.errors)
            if self.errors:
                results["errors_url"] = f"{base_url}/_emulator/files/errors/{self.id}"
        body: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "job_type": self.job_type,
            "results": results,
        }
        if self.started_at:
            body["started_at"] = self.started_at
        if self.finished_at:
            body["finished_at"] = self.finished_at
        return body

    def errors_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(ERRORS_CSV_COLUMNS)
        for index, row, reason in self.errors:
            ids = [row.get(k, "") if isinstance(row, dict) else "" for k in ERRORS_CSV_COLUMNS[1:5]]
            writer.writerow([index, *ids, reason])
        return buf.getvalue()


class JobRunner:
    """Owns the job table and the worker task that applies jobs in order."""

    def __init__(
        self, store: Store, apply_delay: float, on_change: Callable[[list[str]], None]
    ) -> None:
        self.store = store
        self.apply_delay = apply_delay
        self.jobs: dict[str, Job] = {}
        self.exports: dict[str, Export] = {}
        self._queue: deque[Job | Export] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._on_change = on_change
        self.freeze_gc = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._work(), name="emulator-jobs")

    async def stop(self, flush: bool = True) -> None:
        if flush:
            while self._queue:
                await self._apply(self._queue.popleft())
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def submit(
        self, job_type: str, requested: int, payload: dict[str, Any], faults: list[FaultSpec]
    ) -> Job:
        job = Job(
            self.store.ids.next(),
            job_type,
            requested,
            time.monotonic() + self.apply_delay,
            payload,
            faults,
        )
        self.jobs[job.id] = job
        self._queue.append(job)
        self._wake.set()
        return job

    def submit_export(self, list_ids: list[str], file_type: str, max_file_size: int) -> Export:
        export = Export(
            self.store.ids.next(),
            list_ids,
            file_type,
            max_file_size,
            time.monotonic() + self.apply_delay,
            iso_now(),
        )
        export.expires_at = iso_now(time.time() + EXPORT_TTL_SECONDS)
        self.exports[export.id] = export
        self._queue.append(export)
        self._wake.set()
        return export

    def discard_pending(self) -> None:
        while self._queue:
            item = self._queue.popleft()
            if isinstance(item, Job):
                item.done.set()

    def pending(self) -> int:
        return len(self._queue)

    async def _work(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            job = self._queue[0]
            wait = job.due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._queue.popleft()
            await self._apply(job)

    async def _apply(self, job: Job | Export) -> None:
        if isinstance(job, Export):
            render(self.store, job)
            job.status = "ready"
            job.completed_at = job.updated_at = iso_now()
            return
        job.started_at = iso_now()
        if any(f.kind == "fail_job" for f in job.faults):
            job.errors = [(i, {}, MSG_JOB_FAILED) for i in range(job.requested)]
            job.status = "failed"
        elif job.job_type == "upsert":
            await self._apply_upsert(job)
        else:
            self._apply_delete(job)
        job.finished_at = iso_now()
        job.payload = {}
        job.done.set()

    async def _apply_upsert(self, job: Job) -> None:
        rows: list[dict[str, Any]] = job.payload["contacts"]
        list_ids: list[str] = job.payload.get("list_ids") or []
        simple: SimpleRows | None = job.payload.get("simple")
        rejects = [f for f in job.faults if f.kind == "reject_rows"]
        touched: list[str] = []
        for start in range(0, len(rows), CHUNK_ROWS):
            chunk = rows[start : start + CHUNK_ROWS]
            reject: Callable[[int, str | None], bool] | None = None
            if rejects:

                def reject(i: int, email: str | None, base: int = start) -> bool:
                    return any(row_rejected(f, base + i, email) for f in rejects)

            with gc_paused(self.freeze_gc):
                out = self.store.apply_upsert(
                    chunk,
                    list_ids,
                    reject,
                    simple=None if simple is None else simple.chunk(start, start + CHUNK_ROWS),
                )
            job.created += out.created
            job.updated += out.updated
            job.errors.extend((start + i, row, why) for i, row, why in out.errors)
            touched.extend(out.touched)
            if start + CHUNK_ROWS < len(rows):
                await asyncio.sleep(0)
        job.status = _final_status(len(job.errors), job.requested)
        self._on_change(touched)

    def _apply_delete(self, job: Job) -> None:
        list_id: str | None = job.payload["list_id"]
        ids: list[str] = job.payload["contact_ids"]
        rejects = [f for f in job.faults if f.kind == "reject_rows"]
        keep: list[str] = []
        for index, cid in enumerate(ids):
            if any(row_rejected(f, index, None) for f in rejects):
                job.errors.append(
                    (index, {"contact_id": cid}, "rejected by an injected emulator fault")
                )
            else:
                keep.append(cid)
        if list_id is None:  # DELETE /v3/marketing/lists/{id}?delete_contacts=true
            job.deleted = self.store.delete_contacts(keep)
        else:
            job.deleted = self.store.remove_from_list(list_id, keep)
        job.status = _final_status(len(job.errors), job.requested)
        self._on_change(keep)


def _final_status(errored: int, requested: int) -> str:
    if errored == 0:
        return "completed"
    return "failed" if errored >= requested else "errored"
