"""``spool.mark``: the masks of contacts sent (early bodies) and applied (jobs) are set a
run of consecutive spool indices at a time, and must equal setting them one by one."""

from __future__ import annotations

from array import array

from hypothesis import given
from hypothesis import strategies as st

from sendgrid_operator.engine.spool import mark


@given(
    mask=st.binary(max_size=50).map(lambda b: bytearray(x % 2 for x in b)),
    runs=st.lists(st.tuples(st.integers(0, 120), st.integers(1, 30)), max_size=8),
    singles=st.lists(st.integers(0, 150), max_size=20),
)
def test_marking_equals_setting_each_position(
    mask: bytearray, runs: list[tuple[int, int]], singles: list[int]
) -> None:
    positions = array("I", [p for start, length in runs for p in range(start, start + length)])
    positions.extend(singles)  # out of order, repeated, past the mask's end
    expected = bytearray(mask)
    for p in positions:
        if p >= len(expected):
            expected.extend(bytes(p + 1 - len(expected)))
        expected[p] = 1
    mark(mask, positions)
    assert mask == expected
