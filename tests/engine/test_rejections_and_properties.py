"""Whole-batch 400s are split to isolate bad rows; mirror never removes a segment member;
progress is rate-limited; the state round-trips."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fakes import LIST_ID, FakeSendGrid
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import FAST, file_segment, make_plan, make_spec, offline_plan
from sendgrid_operator.api.report import Phase, Progress
from sendgrid_operator.emulator import AdminClient, Emulator
from sendgrid_operator.engine import MemoryStateStore, run_export
from sendgrid_operator.engine.plan import ExportPlan
from sendgrid_operator.engine.state import ExportState, FileStateStore
from sendgrid_operator.sendgrid import SendGridClient


def _plan(path: Path) -> ExportPlan:
    return offline_plan(make_spec([LIST_ID], [file_segment("s", path)]))


@pytest.mark.parametrize("name_fields", [False, True])
async def test_whole_batch_400_is_split_to_isolate_bad_rows(
    tmp_path: Path, name_fields: bool
) -> None:
    emails = [f"ok{i}@example.com" for i in range(40)]
    emails[7] = "reject7@example.com"
    emails[30] = "reject30@example.com"
    path = tmp_path / "s.csv"
    path.write_text("email\n" + "\n".join(emails) + "\n")
    fake = FakeSendGrid(
        reject=lambda c: "bad contact" if c["email"].startswith("reject") else None,
        name_fields=name_fields,
    )
    async with SendGridClient(
        "SG.test-key", "https://sg.test", transport=fake.transport()
    ) as client:
        report = await run_export(
            _plan(path), client=client, state=MemoryStateStore(), settings=FAST
        )
    assert report.result == "Succeeded", report.message
    assert sorted(fake.sent) == sorted(e for e in emails if not e.startswith("reject"))
    assert report.counts.rejected == 2 and report.counts.created == 38
    assert {s.row for s in report.rejected_samples} == {"s:s.csv:9", "s:s.csv:32"}
    assert all(s.message == "bad contact" for s in report.rejected_samples)
    if name_fields:
        assert report.counts.upsert_requests == 2  # one refused, one with the rest


async def test_400_about_the_request_fails_the_run(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("email\na@example.com\n")

    class ListRejecting(FakeSendGrid):
        def handle(self, request: Any) -> Any:
            import httpx

            if request.method == "PUT":
                self.requests.append(("PUT", request.url.path))
                return httpx.Response(
                    400, json={"errors": [{"field": "list_ids", "message": "invalid list"}]}
                )
            return super().handle(request)

    fake = ListRejecting()
    async with SendGridClient(
        "SG.test-key", "https://sg.test", transport=fake.transport()
    ) as client:
        report = await run_export(
            _plan(path), client=client, state=MemoryStateStore(), settings=FAST
        )
    assert report.reason == "SendGridRejected" and "invalid list" in report.message
    assert len([r for r in fake.requests if r[0] == "PUT"]) == 1


async def test_progress_is_rate_limited_and_reaches_finished(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("email\n" + "".join(f"p{i}@example.com\n" for i in range(20_000)))
    seen: list[Progress] = []
    fake = FakeSendGrid()
    async with SendGridClient(
        "SG.test-key", "https://sg.test", transport=fake.transport()
    ) as client:
        await run_export(
            _plan(path),
            client=client,
            state=MemoryStateStore(),
            settings=replace(FAST, progress_interval=10.0, max_contacts_per_upsert=1000),
            progress=seen.append,
        )
    phases = [p.phase for p in seen]
    assert phases[-1] == Phase.FINISHED and seen[-1].percent == 100
    assert {Phase.READING, Phase.UPLOADING, Phase.VERIFYING} <= set(phases)
    assert len(seen) <= 12  # phase changes plus a few forced updates, not one per row or batch


def test_state_round_trip_and_file_store(tmp_path: Path) -> None:
    import pyarrow as pa

    state = ExportState.new(["l1", "l2"])
    state.keys = pa.array([1, 5, 2**64 - 1], pa.uint64())
    state.content = pa.array([7, 0, 9], pa.uint32())
    state.flags = pa.array([1, 3, 0], pa.uint16())
    store = FileStateStore(tmp_path / "st", "ns", "exp/1")
    store.save(state.encode())
    again = ExportState.decode(store.load() or b"")
    assert again.keys.to_pylist() == [1, 5, 2**64 - 1] and again.flags.to_pylist() == [1, 3, 0]
    assert again.salt == state.salt and again.list_ids == ["l1", "l2"]
    assert (store.path.stat().st_mode & 0o777) == 0o600


segments = st.lists(st.integers(0, 14), max_size=15).map(lambda xs: sorted(set(xs)))


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(first=segments, second=segments, invalid_rows=st.lists(st.integers(0, 14), max_size=3))
def test_mirror_never_removes_a_contact_still_in_the_segment(
    tmp_path: Path,
    emu: Emulator,
    admin: AdminClient,
    first: list[int],
    second: list[int],
    invalid_rows: list[int],
) -> None:
    admin.reset()
    list_id = admin.create_list("prop")
    path = tmp_path / "m.csv"

    def write(members: list[int], invalid: list[int]) -> None:
        rows = [f"c{i}@example.com,Name" for i in members]
        rows += [f"c{i}@example.com,{'x' * 60}" for i in invalid]  # valid email, too-long name
        path.write_text("email,first\n" + "\n".join(rows) + "\n")

    spec = make_spec(
        [list_id],
        [file_segment("m", path)],
        mode="mirror",
        maxRemovalPercent=100,
        allowEmptySegment=True,
        fieldMapping={"email": "email", "firstName": "first"},
    )
    state = MemoryStateStore()

    async def go() -> None:
        write(first, [])
        await run_export(make_plan(emu, spec), state=state, settings=FAST)
        write(second, invalid_rows)
        report = await run_export(make_plan(emu, spec), state=state, settings=FAST)
        assert report.result == "Succeeded", report.message
        members = admin.members(list_id)
        still = {f"c{i}@example.com" for i in [*second, *invalid_rows]}
        assert {f"c{i}@example.com" for i in second} <= members
        assert still & {f"c{i}@example.com" for i in first} <= members
        assert members == {f"c{i}@example.com" for i in second} | (
            still & {f"c{i}@example.com" for i in first}
        )

    asyncio.run(go())


async def _polled_run(
    tmp_path: Path, rows: int, pending: dict[str, int], **schedule: float
) -> FakeSendGrid:
    """A run of ``rows`` contacts in 1,000-contact bodies sent one at a time, whose jobs
    answer ``pending`` to their first polls as ``pending`` says; the fake records the
    polls and when each job was accepted."""
    path = tmp_path / "s.csv"
    path.write_text("email\n" + "".join(f"n{i}@example.com\n" for i in range(rows)))
    fake = FakeSendGrid()
    fake.pending_polls = dict(pending)
    settings = replace(
        FAST, poll_max=5.0, max_contacts_per_upsert=1000, upload_concurrency=1, **schedule
    )
    async with SendGridClient(
        "SG.test-key", "https://sg.test", transport=fake.transport()
    ) as client:
        report = await run_export(
            _plan(path), client=client, state=MemoryStateStore(), settings=settings
        )
    assert report.result == "Succeeded" and report.counts.created == rows
    return fake


async def test_a_job_is_polled_again_when_a_later_one_is_seen_finished(tmp_path: Path) -> None:
    """SendGrid applies an account's jobs about in order: when a later job is seen
    finished, an earlier one still pending is polled at once, not at its next backoff."""
    # poll_last as poll_initial: the last job's own short schedule is the next test's
    fake = await _polled_run(tmp_path, 2000, {"job-0": 1}, poll_initial=1.0, poll_last=1.0)
    polls = [(job, status) for _, job, status in fake.polls]
    assert polls == [("job-0", "pending"), ("job-1", "completed"), ("job-0", "completed")]
    (_, _, _), (later_done, _, _), (again, _, _) = fake.polls
    # without the nudge, job-0 would wait 1.5 s (its backoff) after its first poll
    assert again - later_done < 0.5


async def test_the_newest_job_is_polled_soon_once_every_body_is_accepted(
    tmp_path: Path,
) -> None:
    """With nothing left to send, the run only waits: its newest job is polled after
    ``poll_last``, growing by 1.5x, not after ``poll_initial``; once it is seen finished
    the older jobs are polled at once."""
    fake = await _polled_run(tmp_path, 3000, {"job-2": 2}, poll_initial=2.0, poll_last=0.05)
    polls = [(job, status) for _, job, status in fake.polls]
    assert polls[:3] == [("job-2", "pending"), ("job-2", "pending"), ("job-2", "completed")]
    assert sorted(polls[3:]) == [("job-0", "completed"), ("job-1", "completed")]
    times = [at for at, _, _ in fake.polls]
    accepted = fake.accepted_at["job-2"]
    # the short schedule: about 0.05, then 0.075 and 0.1125 s apart (not 2.0 and 3.0)
    assert 0.04 <= times[0] - accepted < 0.5
    assert 0.06 <= times[1] - times[0] < 0.5
    assert 0.09 <= times[2] - times[1] < 0.5
    # the older jobs, whose own first poll was 2 s away, right after
    assert times[4] - times[2] < 0.5
