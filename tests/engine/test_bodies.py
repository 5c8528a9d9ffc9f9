"""Bodies cut from the spool in slices are the bodies contact-by-contact greedy packing
builds: the same bytes, the same contacts, in the same order, whatever the windows."""

from __future__ import annotations

from array import array
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sendgrid_operator.engine import bodies
from sendgrid_operator.engine.batching import BodyBuilder, lower_bound, overhead
from sendgrid_operator.engine.spool import Spool

LISTS = ["0d3f9c1e-aaaa-bbbb-cccc-000000000001"]


def _spool(tmp_path: Path, pieces: list[bytes]) -> Spool:
    spool = Spool(tmp_path)
    spool.begin_segment()
    for row, piece in enumerate(pieces, start=1):
        spool.append(row, piece)
    spool.finish()
    return spool


def _reference(
    pieces: list[bytes], send: bytearray, max_count: int, max_bytes: int
) -> list[tuple[bytes, list[int]]]:
    builder = BodyBuilder(LISTS, max_count, max_bytes)
    out: list[tuple[bytes, list[int]]] = []
    positions: list[int] = []
    for index, piece in enumerate(pieces):
        if not send[index]:
            continue
        if not builder.fits(piece):
            out.append((builder.build(), positions))
            builder.reset()
            positions = []
        builder.add(piece)
        positions.append(index)
    if len(builder):
        out.append((builder.build(), positions))
    return out


def _cut(spool: Spool, send: bytearray, max_count: int, max_bytes: int) -> list[bodies.Body]:
    return [
        body
        for body in bodies.cut_bodies(spool, send, LISTS, max_count, max_bytes)
        if body is not None
    ]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.data(),
    sizes=st.lists(st.integers(0, 60), max_size=120),
    max_count=st.integers(1, 12),
    window_records=st.integers(1, 40),
    window_bytes=st.integers(1, 600),
)
def test_cut_bodies_equal_greedy_packing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    data: st.DataObject,
    sizes: list[int],
    max_count: int,
    window_records: int,
    window_bytes: int,
) -> None:
    monkeypatch.setattr(bodies, "WINDOW_RECORDS", window_records)
    monkeypatch.setattr(bodies, "WINDOW_BYTES", window_bytes)
    pieces = [b'{"email":"%s"}' % (b"x" * size) for size in sizes]
    largest = max((len(p) for p in pieces), default=0)
    max_bytes = overhead(LISTS) + largest + data.draw(st.integers(0, 200))
    send = bytearray(
        data.draw(st.lists(st.sampled_from([0, 1]), min_size=len(pieces), max_size=len(pieces)))
    )
    spool = _spool(tmp_path, pieces)
    try:
        got = _cut(spool, send, max_count, max_bytes)
    finally:
        spool.remove()
    want = _reference(pieces, send, max_count, max_bytes)
    assert [(b.data, b.positions.tolist()) for b in got] == want
    for body in got:
        assert len(body.data) <= max_bytes and len(body.positions) <= max_count
    chosen = [p for p, s in zip(pieces, send, strict=True) if s]
    minimum = lower_bound(len(chosen), sum(map(len, chosen)), max_count, max_bytes, overhead(LISTS))
    assert len(got) >= minimum


def test_a_full_run_is_a_few_slices(tmp_path: Path) -> None:
    pieces = [b'{"email":"user%d@example.com"}' % i for i in range(70_000)]
    spool = _spool(tmp_path, pieces)
    try:
        got = _cut(spool, bytearray(b"\x01") * len(pieces), 30_000, 6_000_000)
    finally:
        spool.remove()
    assert [len(b.positions) for b in got] == [30_000, 30_000, 10_000]
    assert got[1].positions == array("I", range(30_000, 60_000))
    assert got[2].data.endswith(b'{"email":"user69999@example.com"}]}')


def test_a_contact_too_large_for_any_body_is_refused(tmp_path: Path) -> None:
    spool = _spool(tmp_path, [b"{}", b'{"email":"' + b"x" * 500 + b'"}'])
    try:
        with pytest.raises(ValueError, match="cannot fit"):
            _cut(spool, bytearray(b"\x01\x01"), 10, overhead(LISTS) + 100)
    finally:
        spool.remove()


def test_nothing_to_send_cuts_nothing(tmp_path: Path) -> None:
    spool = _spool(tmp_path, [b"{}"] * 5)
    try:
        assert _cut(spool, bytearray(5), 10, 10_000) == []
    finally:
        spool.remove()
    empty = _spool(tmp_path, [])
    try:
        assert _cut(empty, bytearray(), 10, 10_000) == []
    finally:
        empty.remove()
