"""Steps 6 to 8 of a run, past the upload itself: what the upload's outcome means, mirror's
removals, and the state to save.

Why apart from :mod:`.run`: that module keeps the order of a run, which is the safety
argument; this one says how the writing steps turn what SendGrid did into a reason and
the new state. The state is built ahead, on a thread, as if SendGrid applies every
contact (:func:`speculate`), and kept only if that is what happened (:func:`state_to_save`).
"""

from __future__ import annotations

import asyncio
import logging
from array import array
from collections.abc import Callable, Sequence

from sendgrid_operator.engine import incremental, mirror
from sendgrid_operator.engine.jobs import UploadOutcome
from sendgrid_operator.engine.outcomes import Reason, reason_for
from sendgrid_operator.engine.plan import EngineSettings
from sendgrid_operator.engine.reading import Prepared
from sendgrid_operator.engine.state import ExportState
from sendgrid_operator.sendgrid import SendGridClient, SendGridError

log = logging.getLogger(__name__)

Failure = tuple[Reason, str]


def speculate(
    state: ExportState,
    list_ids: Sequence[str],
    prepared: Prepared,
    send: bytearray,
    foreign: dict[str, array[int]],
    memberships: Sequence[mirror.Membership],
) -> asyncio.Future[bytes] | None:
    """The state this run leaves if SendGrid applies every contact in ``send`` and mirror
    removes nothing, encoded on a thread (None: there is nothing to build ahead)."""
    if not any(send) or any(m.candidates for m in memberships):
        return None
    return asyncio.ensure_future(
        asyncio.to_thread(
            incremental.encoded_next_state,
            state,
            list_ids,
            prepared,
            send,
            send,
            foreign,
            {},
            last=False,
        )
    )


def failure_of(out: UploadOutcome, job_timeout: float) -> Failure | None:
    """Why the upload failed, if it did: SendGrid refused a request, or jobs failed or
    were still pending."""
    if out.error is not None:
        return reason_for(out.error), out.error.message
    if out.failed_jobs:
        return (
            Reason.JOBS_FAILED,
            f"{len(out.failed_jobs)} SendGrid job(s) failed "
            f"({out.failure_message or 'no reason given'}); their contacts were not "
            "applied and will be sent again on the next run",
        )
    if out.timed_out_jobs:
        return (
            Reason.JOBS_TIMED_OUT,
            f"{len(out.timed_out_jobs)} SendGrid job(s) were still pending after "
            f"{job_timeout:.0f}s; their contacts will be sent again on the next run",
        )
    return None


async def remove_memberships(
    client: SendGridClient,
    settings: EngineSettings,
    memberships: Sequence[mirror.Membership],
    on_removed: Callable[[int], None],
) -> tuple[mirror.RemovalOutcome, Failure | None]:
    """Mirror's step 7: remove every candidate membership (only after every job
    succeeded); what was removed, and why it stopped if it did."""
    removals = mirror.RemovalOutcome()
    try:
        for member in memberships:
            await mirror.remove_members(client, member, settings, removals, on_removed)
    except SendGridError as exc:
        return removals, (reason_for(exc), f"removing list members failed: {exc.message}")
    return removals, None


async def state_to_save(
    speculated: asyncio.Future[bytes] | None,
    state: ExportState,
    list_ids: Sequence[str],
    prepared: Prepared,
    send: bytearray,
    applied: bytearray,
    sent: int,
    foreign: dict[str, array[int]],
    removals: mirror.RemovalOutcome,
) -> bytes | None:
    """The encoded state after this run: the one built ahead if every contact was
    applied and nothing removed, else built from what SendGrid did. None: nothing was
    sent or removed and the state names the same lists (an unchanged re-run, say), so
    the saved state stays as it is."""
    removed = removals.removed_keys
    encoded: bytes | None = None
    if speculated is not None:
        try:
            encoded = await speculated
        except Exception:  # built again below, from what happened
            log.warning("building the new state ahead failed", exc_info=True)
        if applied != send or any(removed.values()):
            encoded = None  # not every contact was applied: it does not hold
    unchanged = (
        sent == 0
        and not any(removed.values())
        and len(state) > 0
        and state.list_ids == list(list_ids)
    )
    if unchanged:
        return None
    if encoded is None:
        encoded = incremental.encoded_next_state(
            state, list_ids, prepared, send, applied, foreign, removed, last=True
        )
    return encoded
