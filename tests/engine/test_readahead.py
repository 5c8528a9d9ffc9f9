"""The read-ahead worker: order, bounded look-ahead, errors where they happened, and a
clean stop when the consumer leaves early (before the caller closes the source)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest

from sendgrid_operator.engine.readahead import read_ahead


def test_items_come_in_order_with_their_prepared_value() -> None:
    threads: set[str] = set()

    def prepare(item: int) -> int:
        threads.add(threading.current_thread().name)
        return item * item

    got = list(read_ahead(lambda: iter(range(100)), prepare))
    assert got == [(i, i * i) for i in range(100)]
    assert threads == {"sgexport-read-ahead"}


def test_the_worker_stays_at_most_depth_items_ahead() -> None:
    produced: list[int] = []
    taken = threading.Semaphore(0)

    def items() -> Iterator[int]:
        for i in range(50):
            produced.append(i)
            yield i

    def prepare(i: int) -> int:
        taken.release()
        return i

    ahead = read_ahead(items, prepare, depth=2)
    first = next(ahead)
    assert first == (0, 0)
    for _ in range(4):  # items 0 (taken), 1 and 2 (queued), 3 (waiting to be queued)
        assert taken.acquire(timeout=5)
    assert not taken.acquire(timeout=0.3)
    assert len(produced) <= 5  # 0 taken, 2 queued, 1 blocked in put, 1 read ahead by the source
    ahead.close()


def test_an_error_on_the_worker_is_raised_at_its_item() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise OSError("disk gone after row 2")

    seen: list[int] = []
    with pytest.raises(OSError, match="disk gone"):
        for item, _ in read_ahead(items, lambda i: i):
            seen.append(item)
    assert seen == [1, 2]

    def bad_prepare(i: int) -> int:
        if i == 3:
            raise ValueError("cannot convert 3")
        return i

    seen.clear()
    with pytest.raises(ValueError, match="cannot convert 3"):
        for item, _ in read_ahead(lambda: iter(range(10)), bad_prepare):
            seen.append(item)
    assert seen == [0, 1, 2]


def test_leaving_early_stops_and_joins_the_worker_and_closes_the_source() -> None:
    closed = threading.Event()

    def items() -> Iterator[int]:
        try:
            yield from range(10_000)
        finally:
            closed.set()

    before = {t.name for t in threading.enumerate()}
    sys.setswitchinterval(0.005)
    interval = sys.getswitchinterval()
    ahead = read_ahead(items, lambda i: i)
    for item, _ in ahead:
        if item == 5:
            break
    assert sys.getswitchinterval() < interval  # while the worker runs
    ahead.close()
    assert closed.is_set()  # the source generator was closed on the worker, before we return
    assert "sgexport-read-ahead" not in {t.name for t in threading.enumerate()} - before
    assert sys.getswitchinterval() == interval
