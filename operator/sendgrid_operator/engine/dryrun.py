"""A dry run's one question to SendGrid: how many of the contacts to send exist already.

Why apart from :mod:`.run`: it is the only read a dry run adds, with its own trade-off
(a search by email is one request for a few contacts; for many, one export of every
contact, matched by email key, is cheaper than thousands of searches) and nothing in it
writes.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc

from sendgrid_operator.engine.plan import EngineSettings
from sendgrid_operator.engine.reading import Prepared
from sendgrid_operator.engine.spool import mask_array
from sendgrid_operator.engine.state import ExportState
from sendgrid_operator.sendgrid import SendGridClient

#: Dry runs look up at most this many contacts by email; more are matched with an export.
DRY_RUN_SEARCH_LIMIT = 2_000


async def existing_count(
    client: SendGridClient,
    settings: EngineSettings,
    prepared: Prepared,
    state: ExportState,
    send: bytearray,
) -> int:
    """How many contacts of ``send`` (a mask over the spool) already exist in SendGrid."""
    total = sum(send)
    if total == 0:
        return 0
    if total <= DRY_RUN_SEARCH_LIMIT:
        emails = [
            json.loads(encoded)["email"]
            for index, _seg, _row, encoded in prepared.spool.scan()
            if send[index]
        ]
        return len(await client.search_emails(emails))
    wanted = pc.take(prepared.keys_array(), pc.indices_nonzero(mask_array(send)))
    found = 0
    batch: list[int] = []
    async for row in client.iter_export(
        None,
        timeout=settings.export_timeout,
        poll_initial=settings.poll_initial,
        poll_max=settings.poll_max,
    ):
        email = (row.get("email") or "").strip().lower()
        if email:
            batch.append(state.email_key(email))
        if len(batch) >= 10_000:
            found += _count_in(batch, wanted)
            batch.clear()
    return found + _count_in(batch, wanted)


def _count_in(keys: list[int], wanted: pa.Array) -> int:
    if not keys:
        return 0
    hits = pc.sum(pc.is_in(pa.array(keys, pa.uint64()), value_set=wanted)).as_py()
    return int(hits or 0)
