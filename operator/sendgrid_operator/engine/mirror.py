"""Mirror mode: remove from the lists the contacts that left the segment, safely.

Why so careful: removal is where the other tools hurt people (product notes). Here:

- only list *membership* is removed (``DELETE /v3/marketing/lists/{id}/contacts``); no
  contact is ever deleted;
- only contacts this export added to that list (ownership bits in the state) are
  candidates; a contact someone else put on the list stays, and with no state nothing is
  removed at all;
- a contact whose email appears anywhere in the segment (even on a row that failed
  validation for another field) is never removed;
- the current membership (emails and contact IDs) is read with a contacts export by list
  before any write, so the guards (empty segment, ``maxRemovalPercent``) refuse the run
  before anything changes, and a dry run lists every planned removal.
"""

from __future__ import annotations

import asyncio
import logging
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from sendgrid_operator.api.export import SegmentExportSpec
from sendgrid_operator.engine.outcomes import Reason, RunStopped
from sendgrid_operator.engine.plan import EngineSettings
from sendgrid_operator.engine.reading import Prepared
from sendgrid_operator.engine.state import ExportState
from sendgrid_operator.sendgrid import NotFound, SendGridClient

log = logging.getLogger(__name__)

CHUNK = 10_000


@dataclass
class Membership:
    """One list's current members, as far as mirror needs them."""

    list_id: str
    total: int = 0
    #: (email, contact ID, email key) of owned members that left the segment.
    candidates: list[tuple[str, str, int]] = field(default_factory=list)
    #: Keys of members this export does not own (never claimed by this run's upserts).
    foreign: array[int] = field(default_factory=lambda: array("Q"))

    @property
    def percent(self) -> float:
        return 100.0 * len(self.candidates) / self.total if self.total else 0.0


async def preflight(
    client: SendGridClient,
    settings: EngineSettings,
    spec: SegmentExportSpec,
    list_ids: Sequence[str],
    prepared: Prepared,
    state: ExportState,
    had_state: bool,
) -> list[Membership]:
    """Mirror's guards, read-only and before any write: an empty segment (unless
    ``allowEmptySegment``), then each list's membership, and ``maxRemovalPercent``."""
    if prepared.profiles == 0 and not spec.allow_empty_segment:
        raise RunStopped(
            Reason.EMPTY_SEGMENT,
            "the segments hold no valid profiles, and mode: mirror would empty the lists; "
            "nothing was sent. If the segment is meant to be empty, set "
            "spec.allowEmptySegment: true",
        )
    present = prepared.present()
    memberships = [
        await read_membership(client, list_id, state, had_state, present, settings)
        for list_id in list_ids
    ]
    limit = spec.max_removal_percent
    for member in memberships:
        if member.candidates and member.percent > limit:
            raise RunStopped(
                Reason.TOO_MANY_REMOVALS,
                f"mirror would remove {len(member.candidates):,} of {member.total:,} "
                f"contacts ({member.percent:.1f}%) from list {member.list_id}, more than "
                f"spec.maxRemovalPercent ({limit}%); nothing was sent. Check the segment's "
                "source; if the removals are expected, raise spec.maxRemovalPercent",
            )
    return memberships


async def read_membership(
    client: SendGridClient,
    list_id: str,
    state: ExportState,
    had_state: bool,
    present: pa.Array,
    settings: EngineSettings,
) -> Membership:
    """Stream the list's export; collect removal candidates and foreign members."""
    member = Membership(list_id)
    bit = state.list_bit(list_id)
    value_set = pc.unique(present)
    rows: list[tuple[str, str]] = []

    def flush() -> None:
        if not rows:
            return
        keys = pa.array([state.email_key(email) for email, _ in rows], pa.uint64())
        if had_state and bit is not None and len(state.keys):
            where = pc.index_in(keys, value_set=state.keys)
            flags = pc.take(state.flags, where).fill_null(0)
            owned = pc.not_equal(pc.bit_wise_and(flags, pa.scalar(bit, pa.uint16())), 0)
        else:
            owned = pa.array([False] * len(rows))
        in_segment = pc.is_in(keys, value_set=value_set)
        remove = pc.and_(owned, pc.invert(in_segment)).to_pylist()
        owned_list = owned.to_pylist()
        key_list = keys.to_pylist()
        for i, (email, contact_id) in enumerate(rows):
            if remove[i]:
                member.candidates.append((email, contact_id, key_list[i]))
            if had_state and not owned_list[i]:
                member.foreign.append(key_list[i])
        rows.clear()

    async for row in client.iter_export(
        [list_id],
        timeout=settings.export_timeout,
        poll_initial=settings.poll_initial,
        poll_max=settings.poll_max,
    ):
        email = (row.get("email") or "").strip().lower()
        contact_id = (row.get("contact_id") or row.get("id") or "").strip()
        if not email:
            continue
        member.total += 1
        rows.append((email, contact_id))
        if len(rows) >= CHUNK:
            flush()
            await asyncio.sleep(0)
    flush()
    return member


@dataclass
class RemovalOutcome:
    removed: int = 0
    job_ids: list[str] = field(default_factory=list)
    removed_keys: dict[str, list[int]] = field(default_factory=dict)
    gone: int = 0  # contacts that no longer existed (nothing to remove)


async def remove_members(
    client: SendGridClient,
    member: Membership,
    settings: EngineSettings,
    outcome: RemovalOutcome,
    on_progress: Callable[[int], None] | None = None,
) -> None:
    """Remove the candidates' membership, verify the jobs, and note what was removed."""
    from sendgrid_operator.sendgrid import REMOVE_IDS_PER_REQUEST

    ids = [(cid, key) for _, cid, key in member.candidates if cid]
    removed_keys = outcome.removed_keys.setdefault(member.list_id, [])
    for start in range(0, len(ids), REMOVE_IDS_PER_REQUEST):
        chunk = ids[start : start + REMOVE_IDS_PER_REQUEST]
        done = await _remove_chunk(client, member.list_id, chunk, settings, outcome)
        removed_keys.extend(key for _, key in done)
        if on_progress is not None:
            on_progress(outcome.removed)


async def _remove_chunk(
    client: SendGridClient,
    list_id: str,
    chunk: list[tuple[str, int]],
    settings: EngineSettings,
    outcome: RemovalOutcome,
) -> list[tuple[str, int]]:
    """Remove one chunk; a 404 (a contact no longer exists) is bisected to skip it."""
    try:
        jobs = await client.remove_from_list(list_id, [cid for cid, _ in chunk])
    except NotFound:
        if len(chunk) == 1:
            outcome.gone += 1
            return [chunk[0]]  # it no longer exists: it is not on the list either
        half = len(chunk) // 2
        first = await _remove_chunk(client, list_id, chunk[:half], settings, outcome)
        return first + await _remove_chunk(client, list_id, chunk[half:], settings, outcome)
    for job_id in jobs:
        outcome.job_ids.append(job_id)
        await _wait_job(client, job_id, settings)
    outcome.removed += len(chunk)
    return chunk


async def _wait_job(client: SendGridClient, job_id: str, settings: EngineSettings) -> None:
    """Poll a removal job to its end. Whether SendGrid reports removal jobs through the
    import-status endpoint is not documented (facts §3): a 404 there is taken as done."""
    deadline = time.monotonic() + settings.job_timeout
    delay = settings.poll_initial
    while True:
        await asyncio.sleep(delay)
        try:
            status = await client.import_status(job_id)
        except NotFound:
            log.info("removal job %s is not reported by import status; assuming applied", job_id)
            return
        if status.finished:
            if status.status == "failed":
                from sendgrid_operator.sendgrid import Unavailable

                raise Unavailable(f"SendGrid removal job {job_id} failed", endpoint="list_remove")
            return
        if time.monotonic() >= deadline:
            from sendgrid_operator.sendgrid import Unavailable

            raise Unavailable(
                f"SendGrid removal job {job_id} did not finish within {settings.job_timeout:.0f}s",
                endpoint="list_remove",
            )
        delay = min(settings.poll_max, delay * 1.5)
