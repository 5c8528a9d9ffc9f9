"""Batching: the ceilings hold and greedy packing uses the fewest requests."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from fakes import LIST_ID, FakeSendGrid
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import FAST, make_spec, offline_plan
from sendgrid_operator.engine import MemoryStateStore, run_export
from sendgrid_operator.engine.batching import BodyBuilder, body_size, lower_bound, overhead, pack
from sendgrid_operator.sendgrid import SendGridClient


def optimal(sizes: list[int], max_count: int, max_bytes: int, fixed: int) -> int:
    """Exhaustive minimum of contiguous bodies (dynamic programming)."""
    n = len(sizes)
    best = [0] + [n + 1] * n
    for end in range(1, n + 1):
        for start in range(end - 1, -1, -1):
            chunk = sizes[start:end]
            if len(chunk) > max_count or fixed + sum(chunk) + len(chunk) - 1 > max_bytes:
                break
            best[end] = min(best[end], best[start] + 1)
    return best[n]


@given(
    sizes=st.lists(st.integers(1, 40), max_size=60),
    max_count=st.integers(1, 10),
    room=st.integers(40, 200),
)
def test_greedy_is_minimal_and_within_ceilings(sizes: list[int], max_count: int, room: int) -> None:
    fixed = 20
    max_bytes = fixed + room
    counts = pack(sizes, max_count, max_bytes, fixed)
    assert sum(counts) == len(sizes)
    start = 0
    for c in counts:
        chunk = sizes[start : start + c]
        assert 1 <= c <= max_count
        assert fixed + sum(chunk) + c - 1 <= max_bytes
        start += c
    assert len(counts) == optimal(sizes, max_count, max_bytes, fixed)
    assert len(counts) >= lower_bound(len(sizes), sum(sizes), max_count, max_bytes, fixed)


def test_builder_measures_the_bytes_actually_sent() -> None:
    ids = [LIST_ID]
    builder = BodyBuilder(ids, 3, 10_000)
    pieces = [json.dumps({"email": f"a{i}@example.com"}).encode() for i in range(3)]
    for p in pieces:
        assert builder.fits(p)
        builder.add(p)
    body = builder.build()
    assert len(body) == builder.size == body_size([len(p) for p in pieces], ids)
    assert json.loads(body) == {"list_ids": ids, "contacts": [json.loads(p) for p in pieces]}
    assert not builder.fits(pieces[0])  # count ceiling
    assert overhead(ids) == len(builder.build([]))


def test_count_ceiling_binds_at_30000() -> None:
    sizes = [60] * 65_001
    assert (
        len(pack(sizes, 30_000, 5_900_000, 100))
        == 3
        == lower_bound(65_001, 60 * 65_001, 30_000, 5_900_000, 100)
    )


def test_byte_ceiling_binds_for_large_contacts() -> None:
    sizes = [1_000] * 30_000  # 30 MB: the byte ceiling decides
    counts = pack(sizes, 30_000, 5_900_000, 100)
    assert len(counts) == lower_bound(30_000, 1_000 * 30_000, 30_000, 5_900_000, 100) == 6


emails = st.lists(
    st.one_of(
        st.from_regex(r"[a-e]{1,3}@example\.com", fullmatch=True),
        st.from_regex(r" ?[A-E]{1,3}@EXAMPLE\.com ?", fullmatch=True),
        st.just("not-an-email"),
        st.just(""),
    ),
    max_size=40,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=emails, max_count=st.integers(1, 6))
def test_every_valid_contact_is_sent_exactly_once(
    tmp_path: Path, rows: list[str], max_count: int
) -> None:
    path = tmp_path / f"p{abs(hash((tuple(rows), max_count)))}.csv"
    path.write_text("email\n" + "".join(f'"{e}"\n' for e in rows))
    fake = FakeSendGrid()
    spec = make_spec([LIST_ID], [{"name": "s", "source": {"file": {"path": str(path)}}}])
    plan = offline_plan(spec)
    from dataclasses import replace

    settings_ = replace(FAST, max_contacts_per_upsert=max_count, max_upsert_bytes=300)

    async def go() -> None:
        async with SendGridClient(
            "SG.test-key", "https://sg.test", transport=fake.transport()
        ) as client:
            report = await run_export(
                plan, client=client, state=MemoryStateStore(), settings=settings_
            )
        assert report.result == "Succeeded", report.message
        from sendgrid_operator.engine.mapping import normalize_email, valid_email

        expected = {e for e in (normalize_email(r) for r in rows) if e and valid_email(e)}
        assert sorted(fake.sent) == sorted(expected)  # each exactly once
        assert report.counts.upsert_requests == len(
            fake.bodies
        ) == report.counts.minimum_upsert_requests or (
            len(fake.bodies) >= report.counts.minimum_upsert_requests
        )
        assert all(b <= 300 for b in fake.bodies)
        assert all(n <= max_count for n in fake.jobs.values())

    asyncio.run(go())
