"""Bodies sent during the first pass (``engine/early.py``): they go out while the source
is still being read, only when no guard can refuse the run any more, hold only first
occurrences, and change nothing else: what the pass produces, what SendGrid ends up with,
the number of requests. A source failing after bodies went out is reported as such."""

from __future__ import annotations

import json
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from firstpass import digest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import FAST, DictResolver, file_segment, make_plan, make_spec
from sendgrid_operator.api.export import SegmentSource
from sendgrid_operator.api.report import RunReport
from sendgrid_operator.emulator import AdminClient, Emulator
from sendgrid_operator.engine import MemoryStateStore, early, keyhash, run_export, sources
from sendgrid_operator.engine import run as run_module
from sendgrid_operator.engine import upload as upload_module
from sendgrid_operator.engine.early import EarlyBodies
from sendgrid_operator.engine.mapping import compile_mapping
from sendgrid_operator.engine.outcomes import Reason, SourceError
from sendgrid_operator.engine.reading import read_segments
from sendgrid_operator.engine.sources import build_source
from sendgrid_operator.engine.state import ExportState

LIST = "00000000-0000-4000-8000-000000000001"


def write_parquet(path: Path, rows: list[tuple[str, str]]) -> Path:
    table = pa.table({"email": [r[0] for r in rows], "first": [r[1] for r in rows]})
    pq.write_table(table, path)
    return path


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# -- the first pass: bodies hold first occurrences, and the pass is otherwise unchanged --
POOL = [
    *(f"user{i}@example.com" for i in range(30)),
    *(f" USER{i}@Example.com " for i in range(0, 30, 3)),  # duplicates by case and spaces
    "not-an-email",
    "",
]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    emails=st.one_of(
        st.lists(st.sampled_from(POOL), min_size=20, max_size=250),
        st.lists(st.sampled_from(POOL[:30]), min_size=20, max_size=250),  # all fast-path rows
    ),
    split=st.one_of(st.just(0.0), st.floats(0, 1)),  # 0: one segment, every row offered
    max_count=st.integers(1, 7),
    max_body=st.integers(150, 600),
    slots=st.sampled_from([8, 64, 1 << 16]),
    helper=st.booleans(),
)
def test_early_bodies_hold_first_occurrences_and_change_nothing(
    tmp_path: Path,
    emails: list[str],
    split: float,
    max_count: int,
    max_body: int,
    slots: int,
    helper: bool,
) -> None:
    rows = [(e, f"n{i}" * (i % 4)) for i, e in enumerate(emails)]
    at = int(len(rows) * split)  # only the last segment's rows can go early
    files = [
        write_parquet(tmp_path / "a.parquet", rows[:at]),
        write_parquet(tmp_path / "b.parquet", rows[at:]),
    ]
    spec = make_spec(
        [LIST],
        [file_segment("a", files[0]), file_segment("b", files[1])],
        fieldMapping={"email": "email", "firstName": "first"},
    )
    compiled = compile_mapping(spec.field_mapping, [])
    state = ExportState.new([LIST])
    bodies: list[tuple[bytes, list[int]]] = []

    def submit(data: bytes, positions: Any) -> bool:
        bodies.append((data, list(positions)))
        return True

    def first_pass(with_early: EarlyBodies | None) -> Any:
        return read_segments(
            spec.segments,
            compiled,
            state,
            [LIST],
            DictResolver(),
            max_profiles=10_000,
            max_body=max_body,
            early=with_early,
        )

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sources, "PARQUET_BATCH_ROWS", 16)
        mp.setattr(early, "MIN_SLOTS", slots)
        mp.setattr(early, "MAX_SLOTS", slots)  # few slots: many keys find theirs taken
        mp.setattr(keyhash, "HELPER_MIN_ROWS", 0 if helper else 1 << 30)
        plain = first_pass(None)
        sender = EarlyBodies([LIST], max_count, max_body, submit)
        prepared = first_pass(sender)
        holds_rest = sender.holds_rest(len(prepared.keep))
        sender.finish(prepared.keep)  # what the run does next
    try:
        assert digest(prepared) == digest(plain)
        records = {index: encoded for index, _, _, encoded in prepared.spool.scan()}
        sent = [p for _, positions in bodies for p in positions]
        assert holds_rest or at > 0  # one segment: every row, slow path too, was offered
        if holds_rest:  # every first occurrence went out from here
            assert sorted(sent) == [i for i, flag in enumerate(prepared.keep) if flag]
        event(f"held the rest: {holds_rest}")
        assert len(sent) == len(set(sent))
        assert all(prepared.keep[p] for p in sent)  # first occurrences only
        assert [i for i, flag in enumerate(sender.streamed) if flag] == sorted(sent)
        for data, positions in bodies:
            assert len(data) <= max_body and 0 < len(positions) <= max_count
            body = json.loads(data)
            assert body["list_ids"] == [LIST]
            assert body["contacts"] == [json.loads(records[p]) for p in positions]
        assert len(bodies) == sender.bodies
        event(f"bodies sent early: {min(len(bodies), 3)}")
    finally:
        plain.spool.remove()
        prepared.spool.remove()


@settings(max_examples=60, deadline=None)
@given(
    keys=st.lists(
        st.one_of(st.integers(0, 40), st.integers(0, 2**64 - 1)), min_size=1, max_size=400
    ),
    cuts=st.lists(st.integers(0, 400), max_size=6),
    slots=st.sampled_from([8, 64, 1 << 16]),
)
def test_slots_recorded_in_bulk_match_the_loop(
    keys: list[int], cuts: list[int], slots: int
) -> None:
    """The Arrow kernels give the same first occurrences and the same bitmap as the
    per-key loop, for keys repeated within one call and across calls."""

    def record(bulk_rows: int) -> tuple[list[bytes], bytes]:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(early, "BULK_ROWS", bulk_rows)
            mp.setattr(early, "MIN_SLOTS", slots)
            mp.setattr(early, "MAX_SLOTS", slots)
            sender = EarlyBodies([LIST], 10, 1000, lambda data, positions: True)
            sender.enable(len(keys))
            bounds = [0, *sorted(c for c in cuts if c < len(keys)), len(keys)]
            firsts = [
                bytes(sender._record(array("Q", keys[a:b]))) for a, b in pairwise(bounds) if b > a
            ]
            assert sender._bits is not None
            return firsts, bytes(sender._bits)

    assert record(1) == record(1 << 30)


# -- the engine against the emulator ----------------------------------------------------
N = 6_000


@dataclass
class People:
    """An emulator list and ``people.parquet``: N profiles, then 858 duplicates of them."""

    emu: Emulator
    admin: AdminClient
    list_id: str
    path: Path

    async def export(
        self,
        state: MemoryStateStore | None = None,
        *,
        dry_run: bool = False,
        early_upload: bool = True,
        per_upsert: int = 1_000,
        **spec: Any,
    ) -> RunReport:
        """One run into the list, bodies of ``per_upsert`` contacts."""
        spec.setdefault("fieldMapping", {"email": "email", "firstName": "first"})
        segments = [file_segment("all", self.path)]
        plan = make_plan(self.emu, make_spec([self.list_id], segments, **spec))
        settings = replace(FAST, max_contacts_per_upsert=per_upsert, early_upload=early_upload)
        return await run_export(
            plan,
            state=MemoryStateStore() if state is None else state,
            settings=settings,
            dry_run=dry_run,
        )

    def upserted(self) -> bool:
        return any(r.endpoint == "upsert" for r in self.admin.request_log())


@pytest.fixture
def people(tmp_path: Path, emu: Emulator, admin: AdminClient, list_id: str) -> People:
    rows = [(f"user{i}@example.com", f"First{i}") for i in range(N)]
    rows += [(f"USER{i}@example.com", "Later") for i in range(0, N, 7)]  # duplicates at the end
    return People(emu, admin, list_id, write_parquet(tmp_path / "people.parquet", rows))


def pause_reading(monkeypatch: pytest.MonkeyPatch, at_batch: int, then: Callable[[], None]) -> None:
    """Parquet batches of 500 rows; ``then()`` runs on the reading thread before batch
    ``at_batch`` is handed over."""
    monkeypatch.setattr(sources, "PARQUET_BATCH_ROWS", 500)
    original = sources.ParquetSource.batches

    def batches(self: sources.ParquetSource) -> Iterator[sources.RowBatch]:
        for index, batch in enumerate(original(self)):
            if index == at_batch:
                then()
            yield batch

    monkeypatch.setattr(sources.ParquetSource, "batches", batches)


def spy_early(monkeypatch: pytest.MonkeyPatch) -> list[EarlyBodies | None]:
    """What each run handed the first pass as ``early`` (Parquet batches of 500 rows)."""
    monkeypatch.setattr(sources, "PARQUET_BATCH_ROWS", 500)
    seen: list[EarlyBodies | None] = []
    real = run_module.read_segments

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("early"))
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, "read_segments", spy)
    return seen


@pytest.mark.parametrize("early_upload", [True, False])
async def test_bodies_go_out_while_the_source_is_still_read(
    people: People, monkeypatch: pytest.MonkeyPatch, early_upload: bool
) -> None:
    seen: list[bool] = []
    # after 4,000 of 6,858 rows, bodies of 1,000 contacts have filled up
    wait = 10.0 if early_upload else 1.0
    pause_reading(monkeypatch, 8, lambda: seen.append(wait_for(people.upserted, wait)))
    report = await people.export(early_upload=early_upload)
    assert seen == [early_upload]
    assert report.result == "Succeeded", report.message
    c = report.counts
    assert (c.profiles, c.duplicates, c.sent, c.created) == (N, 858, N, N)
    assert c.upsert_requests == c.minimum_upsert_requests == 6
    assert len(people.admin.members(people.list_id)) == N
    later = people.admin.contact("user700@example.com")
    assert later is not None and later["first_name"] == "First700"  # the first occurrence


@pytest.mark.parametrize("held_bytes", [early.HELD_BYTES, 0])
async def test_the_waiting_rows_go_out_from_memory_when_the_pass_held_them(
    people: People, monkeypatch: pytest.MonkeyPatch, held_bytes: int
) -> None:
    """Rows that found their key's slot taken wait for the exact de-duplication. Held in
    memory, they (and the last, partly filled body) go out once it has decided, and no
    body is cut from the spool; past ``HELD_BYTES`` the spool serves them as before.
    Either way SendGrid ends with the same contacts, in the fewest requests."""
    monkeypatch.setattr(early, "MAX_SLOTS", 1 << 12)  # most of the 6,858 keys find theirs taken
    monkeypatch.setattr(early, "HELD_BYTES", held_bytes)
    cut: list[int] = []
    real_cut = upload_module.cut_bodies

    def counting(*args: Any, **kwargs: Any) -> Iterator[Any]:
        for body in real_cut(*args, **kwargs):
            if body is not None:
                cut.append(len(body.positions))
            yield body

    monkeypatch.setattr(upload_module, "cut_bodies", counting)
    report = await people.export(per_upsert=700)  # the last body is partly filled
    assert report.result == "Succeeded", report.message
    c = report.counts
    assert (c.profiles, c.duplicates, c.sent, c.created) == (N, 858, N, N)
    assert c.upsert_requests == c.minimum_upsert_requests == 9
    assert (cut == []) == (held_bytes > 0), cut
    assert len(people.admin.members(people.list_id)) == N
    later = people.admin.contact("user700@example.com")
    assert later is not None and later["first_name"] == "First700"  # the first occurrence


async def test_a_source_failing_after_bodies_went_out(
    people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail() -> None:
        assert wait_for(people.upserted, 10.0)
        raise SourceError("people.parquet: the volume went away")

    pause_reading(monkeypatch, 8, fail)
    state = MemoryStateStore()
    report = await people.export(state)
    assert (report.reason, report.result) == (Reason.SOURCE_ERROR, "Failed")  # not refused
    assert "the volume went away" in report.message and "sent while reading" in report.message
    c = report.counts
    assert c.sent > 0 and c.sent % 1_000 == 0 and c.created == c.sent
    assert c.upsert_requests == len(report.sendgrid_job_ids) == c.sent // 1_000
    members = people.admin.members(people.list_id)
    assert len(members) == c.sent
    assert members <= {f"user{i}@example.com" for i in range(4_000)}  # read before the failure
    assert state.data is None  # not advanced: the next run sends everything again
    monkeypatch.undo()
    report = await people.export(state)
    assert report.result == "Succeeded", report.message
    assert (report.counts.sent, report.counts.updated) == (N, c.sent)
    assert len(people.admin.members(people.list_id)) == N


async def test_nothing_goes_out_early_while_a_guard_could_still_refuse(
    people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = spy_early(monkeypatch)

    async def run(state: MemoryStateStore, **spec: Any) -> None:
        report = await people.export(state, **spec)
        assert report.result == "Succeeded", report.message

    await run(MemoryStateStore(), dry_run=True)
    assert seen[-1] is None
    await run(MemoryStateStore(), mode="mirror")
    assert seen[-1] is None  # mirror reads membership after the pass
    # 6,858 rows may hold more than 6,000 profiles until the duplicates are known
    await run(MemoryStateStore(), maxProfiles=N)
    assert seen[-1] is not None and seen[-1].bodies == 0
    state = MemoryStateStore()
    await run(state)
    assert seen[-1] is not None and seen[-1].bodies > 0  # the control: it can send early
    await run(state)  # an incremental run with state: sends what changed, after the pass
    assert seen[-1] is None


# -- row bounds ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "bounded"),
    [
        ("email\na@x.io\nb@x.io\n", True),
        ("email\r\na@x.io\r\nb@x.io", True),
        ("email\ra@x.io\rb@x.io\r", True),  # old Mac line ends: no \n at all
        ("email", False),  # nothing after the header: the csv module reads it
        # read by the csv module (a value over two lines, a blank line): no bound
        ('email,note\na@x.io,"two\nlines"\n\nb@x.io,x\n', False),
    ],
)
def test_a_csv_bound_is_never_below_its_rows(tmp_path: Path, text: str, bounded: bool) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(text.encode())
    source = build_source(
        SegmentSource.model_validate({"file": {"path": str(path)}}), DictResolver()
    )
    source.open(["email"])
    try:
        bound = source.row_bound()  # type: ignore[attr-defined]
        rows = sum(batch.length for batch in source.batches())  # type: ignore[attr-defined]
    finally:
        source.close()
    assert rows == text.count("@")
    if bounded:
        assert bound is not None and rows <= bound <= text.count("\r") + text.count("\n")
    else:
        assert bound is None


async def test_a_csv_the_csv_module_refuses_late_is_refused_before_any_write(
    tmp_path: Path, emu: Emulator, admin: AdminClient, list_id: str
) -> None:
    """Arrow's whole-file check fails (a value over the csv module's field limit), so the
    csv module reads the file and stops at that line: nothing may have been sent."""
    lines = ["email,note", *(f"u{i}@example.com,x" for i in range(3_000))]
    lines[2_500] = "late@example.com," + "y" * 200_000
    path = tmp_path / "late.csv"
    path.write_text("\n".join(lines) + "\n")
    spec = make_spec([list_id], [file_segment("all", path)])
    settings = replace(FAST, max_contacts_per_upsert=500)
    report = await run_export(make_plan(emu, spec), state=MemoryStateStore(), settings=settings)
    assert (report.result, report.reason) == ("Refused", Reason.SOURCE_ERROR), report.message
    assert "late.csv:2501" in report.message
    assert not [r for r in admin.request_log() if r.endpoint == "upsert"]


@pytest.mark.postgres
def test_a_postgres_bound_is_the_count_in_the_cursor_snapshot(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bounded")
        conn.execute("CREATE TABLE bounded (email text)")
        conn.execute(
            "INSERT INTO bounded SELECT 'u' || g || '@x.io' FROM generate_series(1, 250) g"
        )
    resolver = DictResolver(secrets={("db", "url"): postgres_url})
    spec = {
        "sql": {
            "query": "SELECT email FROM bounded -- every row\n;",
            "databaseURLSecretRef": {"name": "db", "key": "url"},
            "fetchSize": 100,
        }
    }
    source = build_source(SegmentSource.model_validate(spec), resolver)
    source.open(["email"])
    try:
        with psycopg.connect(postgres_url, autocommit=True) as other:
            other.execute("INSERT INTO bounded VALUES ('late@x.io')")  # after the snapshot
        assert source.row_bound() == 250  # type: ignore[attr-defined]
        assert sum(1 for _ in source.rows()) == 250
    finally:
        source.close()
    # a count that fails (here: a query changed under the source) gives no bound, and
    # its savepoint leaves the cursor readable
    source = build_source(SegmentSource.model_validate(spec), resolver)
    source.open(["email"])
    try:
        source.spec = source.spec.model_copy(update={"query": "SELECT nope FROM nowhere"})  # type: ignore[attr-defined]
        assert source.row_bound() is None  # type: ignore[attr-defined]
        assert sum(1 for _ in source.rows()) == 251
    finally:
        source.close()


# -- SendGrid's answers to bodies sent while reading ----------------------------------------
@pytest.mark.parametrize("early_upload", [True, False])
async def test_rows_rejected_in_early_bodies_are_named_and_sent_again(
    people: People, monkeypatch: pytest.MonkeyPatch, early_upload: bool
) -> None:
    seen = spy_early(monkeypatch)
    people.admin.add_fault("upsert", "reject_rows", every=100)
    state = MemoryStateStore()
    report = await people.export(state, early_upload=early_upload)
    assert (seen[-1] is not None and seen[-1].bodies > 0) == early_upload
    assert report.result == "Succeeded", report.message
    c = report.counts
    assert c.rejected > 0 and c.created + c.rejected == N
    assert report.rejected_samples and all(
        s.row.startswith("all:people.parquet:") for s in report.rejected_samples
    )  # the spool, finished by then, names each rejected row
    people.admin.clear_faults()
    report = await people.export(state, early_upload=early_upload)
    assert (report.counts.sent, report.counts.created) == (c.rejected, c.rejected)
    assert len(people.admin.members(people.list_id)) == N


async def test_sendgrid_failing_during_the_read_stops_the_early_bodies(
    people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = spy_early(monkeypatch)
    people.admin.add_fault("upsert", "503", count=1_000)
    state = MemoryStateStore()
    report = await people.export(state)
    assert (report.result, report.reason) == ("Failed", "SendGridUnreachable"), report.message
    early_bodies = seen[-1]
    # at most the first upload_concurrency bodies: none is handed over once one failed
    assert early_bodies is not None and 0 < early_bodies.bodies <= FAST.upload_concurrency
    assert report.counts.sent == report.counts.created == 0
    assert people.admin.members(people.list_id) == set()
    people.admin.clear_faults()
    report = await people.export(state)
    assert report.result == "Succeeded" and len(people.admin.members(people.list_id)) == N


@pytest.mark.postgres
async def test_a_query_failing_late_is_refused_before_any_write(
    postgres_url: str, emu: Emulator, admin: AdminClient, list_id: str
) -> None:
    """The bound's count computes every column, so it meets the division by zero that
    reading would meet at row 2,500 and the run sends nothing early."""
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS late")
        conn.execute("CREATE TABLE late (id int, email text)")
        conn.execute(
            "INSERT INTO late SELECT g, 'u' || g || '@x.io' FROM generate_series(1, 3000) g"
        )
    source = {
        "sql": {
            "query": "SELECT email, 1 / (2500 - id) AS x FROM late",  # no sort: rows stream
            "databaseURLSecretRef": {"name": "db", "key": "url"},
            "fetchSize": 100,
        }
    }
    spec = make_spec([list_id], [{"name": "all", "source": source}])
    resolver = DictResolver(secrets={("db", "url"): postgres_url})
    settings = replace(FAST, max_contacts_per_upsert=500)
    report = await run_export(
        make_plan(emu, spec, resolver), state=MemoryStateStore(), settings=settings
    )
    assert (report.result, report.reason) == ("Refused", Reason.SOURCE_ERROR), report.message
    assert "division by zero" in report.message
    assert not [r for r in admin.request_log() if r.endpoint == "upsert"]
