"""Packing encoded contacts into upsert bodies at SendGrid's two ceilings.

SendGrid takes at most 30,000 contacts and 6 MB per ``PUT /v3/marketing/contacts``
(facts §2). Each contact is encoded once (:mod:`.mapping`); a body is the fixed prefix
with the list IDs, the pieces joined by commas, and the suffix, so its size is known
exactly before it is built.

Greedy packing (fill a body until the next contact would break a ceiling) gives the fewest
requests for contacts sent in a fixed order: by induction, after *k* bodies greedy has
placed at least as many contacts as any other packing, because each body is a prefix of
what remains and greedy's prefix is the longest allowed. ``tests/engine`` checks this
against an exhaustive search with hypothesis.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence


def body_prefix(list_ids: Sequence[str]) -> bytes:
    return b'{"list_ids":' + json.dumps(list(list_ids)).encode() + b',"contacts":['


BODY_SUFFIX = b"]}"


def overhead(list_ids: Sequence[str]) -> int:
    return len(body_prefix(list_ids)) + len(BODY_SUFFIX)


def body_size(sizes: Iterable[int], list_ids: Sequence[str]) -> int:
    sizes = list(sizes)
    return overhead(list_ids) + sum(sizes) + max(0, len(sizes) - 1)


def pack(sizes: Sequence[int], max_count: int, max_bytes: int, fixed: int) -> list[int]:
    """Greedy packing: the number of contacts in each body, in order.

    ``fixed`` is the body's size without contacts; a contact that cannot fit even alone
    raises ValueError (the engine refuses such rows before packing).
    """
    counts: list[int] = []
    n = 0
    size = fixed
    for s in sizes:
        if fixed + s > max_bytes:
            raise ValueError(f"a contact of {s} bytes cannot fit in a body of {max_bytes} bytes")
        extra = s + (1 if n else 0)
        if n and (n >= max_count or size + extra > max_bytes):
            counts.append(n)
            n, size, extra = 0, fixed, s
        n += 1
        size += extra
    if n:
        counts.append(n)
    return counts


def lower_bound(count: int, total_bytes: int, max_count: int, max_bytes: int, fixed: int) -> int:
    """Fewest bodies any packing could use: by count, and by bytes (pieces plus commas)."""
    if count == 0:
        return 0
    by_count = math.ceil(count / max_count)
    # b bodies hold total_bytes of pieces + (count - b) commas within b * (max_bytes - fixed).
    # Solve total + count - b <= b * (max_bytes - fixed)  =>  b >= (total + count) / (cap + 1).
    by_bytes = math.ceil((total_bytes + count) / (max_bytes - fixed + 1))
    return max(by_count, by_bytes)


class BodyBuilder:
    """Accumulates encoded contacts for one body and tells when the next would not fit."""

    def __init__(self, list_ids: Sequence[str], max_count: int, max_bytes: int) -> None:
        self.prefix = body_prefix(list_ids)
        self.fixed = len(self.prefix) + len(BODY_SUFFIX)
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.pieces: list[bytes] = []
        self.size = self.fixed

    def fits(self, piece: bytes) -> bool:
        if not self.pieces:
            return True
        return len(self.pieces) < self.max_count and self.size + len(piece) + 1 <= self.max_bytes

    def add(self, piece: bytes) -> None:
        self.size += len(piece) + (1 if self.pieces else 0)
        self.pieces.append(piece)

    def __len__(self) -> int:
        return len(self.pieces)

    def build(self, pieces: Sequence[bytes] | None = None) -> bytes:
        return self.prefix + b",".join(self.pieces if pieces is None else pieces) + BODY_SUFFIX

    def reset(self) -> None:
        self.pieces = []
        self.size = self.fixed
