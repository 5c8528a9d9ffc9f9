"""The key-hashing helper: the same keys as the state's ``email_key``, in their places
among keys appended directly, whatever happens to the helper."""

from __future__ import annotations

import random
import string
import sys
from array import array
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from firstpass import first_pass

from sendgrid_operator.api.export import FieldMapping, FileSource
from sendgrid_operator.engine import keyhash
from sendgrid_operator.engine.keyhash import KeyHasher
from sendgrid_operator.engine.mapping import compile_mapping
from sendgrid_operator.engine.state import ExportState

SALT = b"0123456789abcdef"


def _emails(rng: random.Random, n: int) -> list[str]:
    alphabet = string.ascii_lowercase + string.digits + ".+_-"
    return [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30))) + f"{i}@example.com"
        for i in range(n)
    ]


def _expected(emails: list[str]) -> list[int]:
    state = ExportState.new(["L1"])
    state.salt = SALT
    return [state.email_key(e) for e in emails]


def _feed(hasher: KeyHasher, rng: random.Random, emails: list[str]) -> array[int]:
    """Runs of random length, from sliced arrays, with single keys appended directly
    between them (as the first pass does for rows off the fast path)."""
    keys: array[int] = array("Q")
    whole = pa.array(["padding", *emails], pa.string())
    at = 0
    while at < len(emails):
        if rng.random() < 0.2:
            keys.append(_expected([emails[at]])[0])
            at += 1
            continue
        n = rng.randint(1, 3000)
        hasher.add(keys, whole.slice(1 + at, min(n, len(emails) - at)))
        at += n
    hasher.fill(keys)
    return keys


@pytest.mark.parametrize("seed", [1, 2])
def test_the_helper_gives_the_states_keys_in_place(seed: int) -> None:
    rng = random.Random(seed)
    emails = _emails(rng, 20_000)
    hasher = KeyHasher(SALT, min_rows=0)
    try:
        keys = _feed(hasher, rng, emails)
        assert hasher.helper_rows > 0  # the helper did hash them
    finally:
        hasher.close()
    assert list(keys) == _expected(emails)
    assert hasher.helper_peak_kib > 0  # it reported its memory when it stopped


def test_small_exports_hash_here() -> None:
    rng = random.Random(3)
    emails = _emails(rng, 1000)
    hasher = KeyHasher(SALT)  # below HELPER_MIN_ROWS
    try:
        keys = _feed(hasher, rng, emails)
        assert hasher.helper_rows == 0
    finally:
        hasher.close()
    assert list(keys) == _expected(emails)


def test_a_helper_that_cannot_start_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    rng = random.Random(4)
    emails = _emails(rng, 5000)
    hasher = KeyHasher(SALT, min_rows=0)
    try:
        keys = _feed(hasher, rng, emails)
    finally:
        hasher.close()
    assert list(keys) == _expected(emails)


def _in_runs(
    emails: list[str], size: int, before: Callable[[KeyHasher, int], None] | None = None
) -> array[int]:
    """The keys of ``emails`` added in runs of ``size``, the helper used from the first
    row; ``before(hasher, n)`` is called before run ``n``."""
    hasher = KeyHasher(SALT, min_rows=0)
    keys: array[int] = array("Q")
    whole = pa.array(emails, pa.string())
    try:
        for n, at in enumerate(range(0, len(emails), size)):
            if before is not None:
                before(hasher, n)
            hasher.add(keys, whole.slice(at, size))
        hasher.fill(keys)
    finally:
        hasher.close()
    return keys


def test_a_helper_that_dies_midway_changes_nothing() -> None:
    def kill(hasher: KeyHasher, n: int) -> None:
        if n == 1:
            assert hasher._proc is not None
            hasher._proc.kill()
            hasher._proc.wait()

    emails = _emails(random.Random(5), 30_000)
    assert list(_in_runs(emails, 10_000, kill)) == _expected(emails)


def test_a_helper_thread_that_ends_early_blocks_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its queue is never read: adding more runs than it holds must not wait forever."""
    monkeypatch.setattr(KeyHasher, "_serve", lambda self, proc: None)
    emails = _emails(random.Random(7), 10_000)
    assert list(_in_runs(emails, 1000)) == _expected(emails)  # ten runs, > MAX_PENDING


def test_the_salt_is_not_on_the_helpers_command_line() -> None:
    hasher = KeyHasher(SALT, min_rows=0)
    keys: array[int] = array("Q")
    try:
        hasher.add(keys, pa.array(["a@example.com"]))
        assert hasher._proc is not None
        cmdline = Path(f"/proc/{hasher._proc.pid}/cmdline").read_bytes()
        assert SALT not in cmdline
        hasher.fill(keys)
    finally:
        hasher.close()
    assert hasher._proc is None


@pytest.mark.parametrize("max_profiles", [10**6, 11_900, 5_000])
def test_first_pass_is_the_same_with_the_helper(tmp_path: Path, max_profiles: int) -> None:
    """Also when ``maxProfiles`` is near: the owed keys are filled before they are
    counted (11,900: counted and passed; 5,000: refused)."""
    rng = random.Random(6)
    n = 12_000
    emails = _emails(rng, n)
    for i in range(0, n, 97):
        emails[i] = "not an email"  # rows off the fast path, between runs
    for i in range(5, n, 389):
        emails[i] = emails[i - 3].upper()  # duplicates
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"email": emails, "first_name": [f"F{i}" for i in range(n)]}), path)
    mapping = compile_mapping(FieldMapping(email="email", first_name="first_name"), [])
    file = FileSource(path=str(path))
    with_helper = first_pass(
        file,
        mapping,
        batches=True,
        max_profiles=max_profiles,
        patches={"sendgrid_operator.engine.keyhash.HELPER_MIN_ROWS": 0},
    )
    without = first_pass(
        file,
        mapping,
        batches=True,
        max_profiles=max_profiles,
        patches={"sendgrid_operator.engine.keyhash.HELPER_MIN_ROWS": 10**9},
    )
    assert with_helper == without
    assert keyhash.HELPER_MIN_ROWS == 65_536  # the patches were undone
