"""The memory-saving paths give the same answers as the plain rules: de-duplication, the
incremental diff and the new state bucket by bucket (any bucket size), the spool's random
access from sparse offsets, the state's piecewise encoding, and streamed upload bodies."""

from __future__ import annotations

import random
from array import array
from pathlib import Path

import httpx
import pyarrow as pa
import pytest
from fakes import LIST_ID, FakeSendGrid
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sendgrid_operator.api.report import SegmentCounts
from sendgrid_operator.engine import buckets, dedupe, incremental, reading
from sendgrid_operator.engine import spool as spool_module
from sendgrid_operator.engine.batching import BodyBuilder
from sendgrid_operator.engine.spool import Spool
from sendgrid_operator.engine.state import ExportState, StateError
from sendgrid_operator.sendgrid import SendGridClient
from sendgrid_operator.sendgrid import client as client_module


def _prepared(tmp_path: Path, keys: list[int], content: list[int]) -> reading.Prepared:
    spool = Spool(tmp_path)
    prepared = reading.Prepared([SegmentCounts(name="a"), SegmentCounts(name="b")], [], spool)
    for i, (k, c) in enumerate(zip(keys, content, strict=True)):
        if i in (0, len(keys) // 2):
            spool.begin_segment()
        prepared.keys.append(k)
        prepared.content.append(c)
        spool.append(i + 1, b'{"email":"%d"}' % i)
    spool.finish()
    prepared.seg_starts = [0, len(keys) // 2]
    return prepared


def _reference(
    old: dict[int, tuple[int, int]],
    rows: list[tuple[int, int]],
    send: list[int],
    applied: list[int],
    foreign: set[int],
    removed: set[int],
) -> dict[int, tuple[int, int]]:
    """next_state's rules, one contact at a time (one list, bit 1)."""
    new: dict[int, tuple[int, int]] = {k: (0, flags) for k, (_, flags) in old.items()}
    for i, (key, content) in enumerate(rows):
        known = applied[i] or not send[i]
        bits = 1 if applied[i] and key not in foreign else 0
        new[key] = (content if known else 0, bits | old.get(key, (0, 0))[1])
    for key in removed:
        if key in new:
            new[key] = (0, new[key][1] & ~1)
    return {k: v for k, v in new.items() if v != (0, 0)}


@pytest.mark.parametrize("rows_per_bucket", [1, 3, 1 << 16])
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_bucketed_dedup_diff_and_state_follow_the_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rows_per_bucket: int, data: st.DataObject
) -> None:
    monkeypatch.setattr(buckets, "ROWS_PER_BUCKET", rows_per_bucket)
    pool = data.draw(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=12, unique=True))
    picks = data.draw(st.lists(st.sampled_from(pool), max_size=30))
    keys = picks
    content = [data.draw(st.integers(1, 3)) for _ in keys]
    prepared = _prepared(tmp_path, keys, content)
    dedupe.deduplicate(prepared)
    first: dict[int, int] = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    assert list(prepared.keep) == [1 if first[k] == i else 0 for i, k in enumerate(keys)]
    assert prepared.profiles == len(first)
    assert sum(s.profiles for s in prepared.segments) == len(first)
    assert sum(s.duplicates for s in prepared.segments) == len(keys) - len(first)
    # told which rows can be duplicates (every duplicate, and any others), the same answer
    repeats = {i for i, k in enumerate(keys) if first[k] != i}
    others = data.draw(st.sets(st.integers(0, max(len(keys) - 1, 0))))
    whole = bytes(prepared.keep)
    dedupe.deduplicate(prepared, array("Q", sorted(repeats | (others if keys else set()))))
    assert bytes(prepared.keep) == whole

    old_keys = sorted(data.draw(st.sets(st.sampled_from(pool))))
    old = {k: (data.draw(st.integers(0, 3)), data.draw(st.integers(0, 1))) for k in old_keys}
    state = ExportState.new([LIST_ID])
    state.keys = pa.array(old_keys, pa.uint64())
    state.content = pa.array([old[k][0] for k in old_keys], pa.uint32())
    state.flags = pa.array([old[k][1] for k in old_keys], pa.uint16())
    state = ExportState.decode(state.encode())

    send, unchanged = incremental.to_send(prepared, state, full=False)
    kept = [(k, content[i]) for i, k in enumerate(keys) if prepared.keep[i]]
    expected_send = [
        1 if prepared.keep[i] and old.get(k, (0, 0))[0] != content[i] else 0
        for i, k in enumerate(keys)
    ]
    assert list(send) == expected_send
    assert unchanged == len(kept) - sum(expected_send)

    applied = bytearray(1 if s and data.draw(st.booleans()) else 0 for s in send)
    foreign = set(data.draw(st.lists(st.sampled_from(pool), max_size=3)))
    removed = set(data.draw(st.lists(st.sampled_from(pool), max_size=3)))
    new = incremental.next_state(
        state,
        [LIST_ID],
        prepared,
        send,
        applied,
        {LIST_ID: array("Q", sorted(foreign))},
        {LIST_ID: sorted(removed)},
    )
    kept_send = [send[i] for i in range(len(keys)) if prepared.keep[i]]
    kept_applied = [applied[i] for i in range(len(keys)) if prepared.keep[i]]
    want = _reference(old, kept, kept_send, kept_applied, foreign, removed)
    again = ExportState.decode(new.encode())
    assert again.keys.to_pylist() == sorted(want)
    assert again.content.to_pylist() == [want[k][0] for k in sorted(want)]
    assert again.flags.to_pylist() == [want[k][1] for k in sorted(want)]
    prepared.spool.remove()


@pytest.mark.parametrize("stride", [1, 3, 256])
def test_spool_random_access_from_sparse_offsets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stride: int
) -> None:
    monkeypatch.setattr(spool_module, "_STRIDE", stride)
    rng = random.Random(stride)
    spool = Spool(tmp_path)
    records: list[tuple[int, int, bytes]] = []
    segment, row = -1, 0
    for i in range(500):
        if i == 0 or rng.random() < 0.02:
            segment, row = segment + 1, 0
            spool.begin_segment()
            if rng.random() < 0.3:  # an empty segment
                segment += 1
                spool.begin_segment()
        row += 1 if rng.random() < 0.8 else rng.randrange(2, 9)  # gaps: invalid rows
        encoded = b"x" * rng.randrange(0, 40)
        records.append((segment, row, encoded))
        if rng.random() < 0.5:
            spool.append(row, encoded)
        else:  # the fast path's bulk append, of one row or with the next ones
            spool.extend(row, [encoded], [len(encoded)])
    spool.finish()
    assert Path(spool.path).read_bytes() == b"".join(e + b"," for _, _, e in records)
    with open(spool.path, "rb") as handle:
        for index in [*range(0, 500, 7), 499, 0, 250, 3]:
            assert spool.read(handle, index) == records[index]
        wanted = sorted(rng.sample(range(500), 120))
        got = list(spool.read_many(handle, wanted))
    assert got == [(i, *records[i]) for i in wanted]
    assert [(s, r, e) for _, s, r, e in spool.scan()] == records
    mask = bytearray(rng.randrange(2) for _ in records)
    prepared = reading.Prepared([], [], spool)
    assert prepared.payload_size(mask, force=True) == sum(
        len(e) for (_, _, e), m in zip(records, mask, strict=True) if m
    )
    spool.remove()


def test_spool_extend_keeps_row_runs(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.begin_segment()
    spool.extend(1, [b"a", b"bb"], [1, 2])
    spool.append(3, b"c")  # continues the run
    spool.append(7, b"d")  # rows 4-6 were invalid
    spool.begin_segment()
    spool.extend(1, [b"e", b"f"], [1, 1])
    spool.extend(5, [], [])
    spool.finish()
    assert [spool.locate(i) for i in range(len(spool))] == [
        (0, 1),
        (0, 2),
        (0, 3),
        (0, 7),
        (1, 1),
        (1, 2),
    ]
    assert len(spool._run_starts) == 3
    spool.remove()


def _version1(state: ExportState) -> bytes:
    """A state as version 1 wrote it: the three arrays in one zlib stream."""
    import json
    import struct
    import zlib

    keys = state.keys.to_pylist()
    deltas = [b - a for a, b in zip([0, *keys], keys, strict=False)]
    header = json.dumps(
        {"version": 1, "salt": state.salt.hex(), "lists": state.list_ids, "n": len(keys)}
    ).encode()
    body = (
        array("Q", deltas).tobytes()
        + array("I", state.content.to_pylist()).tobytes()
        + array("H", state.flags.to_pylist()).tobytes()
    )
    return b"SGOSTATE" + struct.pack("<BI", 1, len(header)) + header + zlib.compress(body, 6)


def test_a_version_1_state_is_still_read() -> None:
    rng = random.Random(7)
    keys = sorted({rng.getrandbits(64) for _ in range(5_000)})
    state = ExportState.new(["a"])
    state.keys = pa.array(keys, pa.uint64())
    state.content = pa.array([rng.getrandbits(32) for _ in keys], pa.uint32())
    state.flags = pa.array([rng.getrandbits(1) for _ in keys], pa.uint16())
    old = ExportState.decode(_version1(state))
    assert old.keys.to_pylist() == keys and old.salt == state.salt
    assert old.content.to_pylist() == state.content.to_pylist()
    assert old.flags.to_pylist() == state.flags.to_pylist()
    # the current version: content hashes stored as they are, the rest compressed
    data = state.encode()
    assert data[8] == 2
    assert len(data) < 8 * len(keys) + 4 * len(keys) + 2 * len(keys)
    with pytest.raises(StateError, match="after the last section"):
        ExportState.decode(data + b"\x00")
    with pytest.raises(StateError, match="not supported"):
        ExportState.decode(data[:8] + b"\x03" + data[9:])


def test_state_encoding_is_piecewise_and_checks_its_size() -> None:
    rng = random.Random(5)
    keys = sorted({rng.getrandbits(64) for _ in range(150_000)} | {0, 2**64 - 1})
    state = ExportState.new(["a", "b"])
    half = len(keys) // 2
    state.keys = pa.chunked_array(
        [
            pa.array(keys[:half], pa.uint64()),
            pa.array([], pa.uint64()),
            pa.array(keys[half:], pa.uint64()),
        ]
    )
    state.content = pa.array([rng.getrandbits(32) for _ in keys], pa.uint32())
    state.flags = pa.array([rng.getrandbits(2) for _ in keys], pa.uint16())
    data = state.encode()
    again = ExportState.decode(data)
    assert again.keys.to_pylist() == keys
    assert again.content.to_pylist() == state.content.to_pylist()
    assert again.flags.to_pylist() == state.flags.to_pylist()
    for bad in (data[:-1], data[:-1000]):
        with pytest.raises(StateError):
            ExportState.decode(bad)
    empty = ExportState.decode(ExportState.new(["a"]).encode())
    assert len(empty) == 0 and empty.list_ids == ["a"]


async def test_large_bodies_are_streamed_with_their_length(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "STREAM_CHUNK", 64)
    fake = FakeSendGrid()
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return fake.handle(request)

    body = BodyBuilder([LIST_ID], 100, 10_000)
    for i in range(20):
        body.add(b'{"email":"user%d@example.com"}' % i)
    sent = body.build()
    transport = httpx.MockTransport(handle)
    async with SendGridClient("SG.test-key", "https://sg.test", transport=transport) as c:
        assert await c.upsert(sent)
    (request,) = seen
    assert request.headers["content-length"] == str(len(sent)) == str(len(request.content))
    assert "transfer-encoding" not in request.headers and request.content == sent
    assert fake.sent == [f"user{i}@example.com" for i in range(20)]
