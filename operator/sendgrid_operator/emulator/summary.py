"""The human summary printed when the emulator stops (also at ``GET /_emulator/summary``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sendgrid_operator.emulator.context import Context


def summary_text(ctx: Context) -> str:
    store = ctx.store
    lines = ["SendGrid emulator summary", "requests by endpoint and status:"]
    if not ctx.totals:
        lines.append("  (none)")
    for (endpoint, status), n in sorted(ctx.totals.items()):
        lines.append(f"  {endpoint:<20} {status:>3}  {n}")
    lines.append(f"contacts: {len(store.contacts)}")
    lines.append(f"lists: {len(store.lists)}")
    for lst in store.lists.values():
        lines.append(f"  {lst.id}  {lst.name!r}: {len(lst.members)} contacts")
    lines.append(f"custom fields: {len(store.fields)}")
    jobs = ctx.runner.jobs.values()
    by_status: dict[str, int] = {}
    for job in jobs:
        by_status[job.status] = by_status.get(job.status, 0) + 1
    lines.append(f"jobs: {dict(sorted(by_status.items()))}")
    return "\n".join(lines) + "\n"
