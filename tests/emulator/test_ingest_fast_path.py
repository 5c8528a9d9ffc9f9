"""The ingest fast paths give exactly what the general paths give.

``validate.simple_upsert_body`` (columnar request checks) must only accept bodies that
``check_upsert_body`` accepts, and describe them truly. ``Store._apply_new_simple`` (bulk
apply, contacts sharing a ``Batch`` record) must leave the store as the general per-row
path would: same outcomes, same contacts key for key and in key order (as responses,
exports and the state file see them), same indexes and list members, also after lists
are emptied or deleted and contacts are updated or deleted later.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sendgrid_operator.emulator.exports import Export, render
from sendgrid_operator.emulator.jobs import CHUNK_ROWS, JobRunner
from sendgrid_operator.emulator.render import contact_json
from sendgrid_operator.emulator.store import IdFactory, Store, UpsertOutcome
from sendgrid_operator.emulator.validate import (
    _EMAIL_LINES_RE,
    EMAIL_RE,
    SimpleRows,
    check_upsert_body,
    simple_upsert_body,
)

NOW = 1_790_000_000.0
TEXT, NUMBER, DATE = "e1_T", "e2_N", "e3_D"  # the fields _stores() creates, in this order

valid_emails = st.sampled_from(
    [
        "a@example.com",
        "A@Example.COM",  # the same contact as a@example.com
        "b@example.com",
        "c@sub.example.org",
        "d@x.io",
        "e@x.io",
    ]
) | st.from_regex(r"[a-zA-Z0-9._%+-]{1,8}@[a-zA-Z0-9-]{1,6}\.[a-z]{2,3}", fullmatch=True)
emails = valid_emails | st.sampled_from(
    [
        "ü@example.de",  # valid, not ASCII: decided by the general checks
        "no-at-sign",
        "two@@x.io",
        "x@nodot",
        "x@.io",
        "sp ace@x.io",
        "",
    ]
)
text = st.text(alphabet="abcXYZ é-", max_size=6) | st.sampled_from(["x" * 51, "y" * 101])
custom_values = st.sampled_from(["tier-1", "", 7, 2.5, True, "2024-01-31", "31/01/2024", None])
custom_fields = st.dictionaries(
    st.sampled_from([TEXT, NUMBER, DATE, "e99_T"]), custom_values, max_size=3
)
row = st.fixed_dictionaries(
    {},
    optional={
        "email": emails | st.sampled_from([None, 5]),
        "first_name": text | st.sampled_from([None, 3]),
        "last_name": text,
        "city": text,
        "postal_code": text,
        "custom_fields": custom_fields | st.sampled_from([None, [], "x"]),
        "phone_number_id": st.sampled_from(["+15551230000", "+15551230001", "555"]),
        "external_id": st.sampled_from(["ext-1", "ext-2"]),
        "anonymous_id": st.sampled_from(["anon-1"]),
        "alternate_emails": st.sampled_from([["alt@x.io"], ["bad"], []]),
        "unknown": st.just("ignored"),
    },
)
# Mostly simple rows (email and plain fields), so the fast paths get exercised.
simple_row = st.fixed_dictionaries(
    {"email": valid_emails},
    optional={
        "first_name": text,
        "last_name": text,
        "custom_fields": st.dictionaries(
            st.sampled_from([TEXT, TEXT, TEXT, NUMBER, DATE, "e99_T"]),
            st.sampled_from(["t", "u", 3, "2024-01-31"]),
            max_size=2,
        ),
    },
)
rows = st.lists(simple_row | row, min_size=1, max_size=12) | st.lists(
    simple_row, min_size=1, max_size=12
)
upsert = st.tuples(rows, st.lists(st.sampled_from([0, 1]), max_size=2, unique=True))
# Between upserts: remove the first K members of a list, delete a list, delete contacts.
action = st.one_of(
    st.tuples(st.just("remove"), st.sampled_from([0, 1]), st.integers(1, 3)),
    st.tuples(st.just("delete_list"), st.sampled_from([0, 1]), st.just(0)),
    st.tuples(st.just("delete_contacts"), st.just(0), st.integers(1, 3)),
)
steps = st.lists(st.tuples(upsert, st.none() | action), min_size=1, max_size=4)


def _stores() -> tuple[Store, Store, Store]:
    """Three empty stores that hand out the same IDs: fast with the checks' hint, fast
    finding the hint itself, and the general path only."""
    stores = (Store(), Store(), Store())
    for store in stores:
        store.ids.prefix = stores[0].ids.prefix
        store.create_list("zero")
        store.create_list("one")
        store.create_field("text", "Text")
        store.create_field("number", "Number")
        store.create_field("date", "Date")
    return stores


def _never(index: int, email: str | None) -> bool:
    return False  # a reject callback forces the general path and rejects nothing


def _apply(
    store: Store, raw: bytes, list_ids: list[str], mode: str, chunk: int
) -> UpsertOutcome | None:
    """Check and apply like the upsert handler and the job runner (in chunks)."""
    body = orjson.loads(raw)
    simple = simple_upsert_body(body)
    if simple is not None:
        assert check_upsert_body(orjson.loads(raw)) == []
    elif check_upsert_body(body):
        return None
    contacts: list[dict[str, Any]] = body["contacts"]
    total = UpsertOutcome()
    for start in range(0, len(contacts), chunk):
        part = contacts[start : start + chunk]
        if mode == "hint":
            hint = None if simple is None else simple.chunk(start, start + chunk)
            out = store.apply_upsert(part, list_ids, now=NOW, simple=hint)
        elif mode == "self":
            out = store.apply_upsert(part, list_ids, now=NOW)
        else:
            out = store.apply_upsert(part, list_ids, _never, now=NOW)
        total.created += out.created
        total.updated += out.updated
        total.errors += [(start + i, r, why) for i, r, why in out.errors]
        total.touched += out.touched
    return total


def _state(store: Store) -> dict[str, Any]:
    """Everything observable: contacts as stored (key order too), as responses, as an
    export; the indexes; list members; the ID counter."""
    export = Export("x", [], "csv", 1, 0.0, "")
    render(store, export)
    return {
        "contacts": [list(store.full(c).items()) for c in store.contacts.values()],
        "json": [json.dumps(contact_json(c, store, "http://e")) for c in store.contacts.values()],
        "by_email": {e: c["id"] for e, c in store.by_email.items()},
        "by_ident": {k: c["id"] for k, c in store.by_ident.items()},
        "lists": {lid: sorted(lst.members) for lid, lst in store.lists.items()},
        "counter": store.ids.counter,
        "export": export.files,
        "sample_keys": sorted(
            (store.updated_at_of(c), store.list_ids_of(c) == store.full(c)["list_ids"])
            for c in store.contacts.values()
        ),
    }


def _act(store: Store, kind: str, which: int, k: int) -> None:
    list_id = sorted(store.lists)[which] if len(store.lists) > which else None
    if kind == "remove" and list_id is not None:
        store.remove_from_list(list_id, sorted(store.lists[list_id].members)[:k])
    elif kind == "delete_list" and list_id is not None:
        store.delete_list(list_id, delete_contacts=False)
    elif kind == "delete_contacts":
        store.delete_contacts(list(store.contacts)[:k])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps, st.sampled_from([2, 5, CHUNK_ROWS]))
def test_fast_paths_equal_general_path(
    sequence: list[tuple[tuple[list[dict[str, Any]], list[int]], tuple[str, int, int] | None]],
    chunk: int,
) -> None:
    stores = _stores()
    list_order = list(stores[0].lists)
    for (body_rows, list_idx), act in sequence:
        raw = orjson.dumps({"contacts": body_rows, "list_ids": [list_order[i] for i in list_idx]})
        list_ids = [list_order[i] for i in list_idx if list_order[i] in stores[0].lists]
        outs = [
            _apply(s, raw, list_ids, mode, chunk)
            for s, mode in zip(stores, ("hint", "self", "general"), strict=True)
        ]
        views = [
            None
            if o is None
            else (o.created, o.updated, [(i, r, w) for i, r, w in o.errors], o.touched)
            for o in outs
        ]
        assert views[0] == views[2] and views[1] == views[2]
        if act is not None:
            for s in stores:
                _act(s, *act)
        states = [_state(s) for s in stores]
        assert states[0] == states[2] and states[1] == states[2]


@given(st.lists(simple_row | row, min_size=1, max_size=12))
def test_simple_rows_are_valid_and_described_truly(body_rows: list[dict[str, Any]]) -> None:
    body = orjson.loads(orjson.dumps({"contacts": body_rows}))
    simple = simple_upsert_body(body)
    if simple is None:
        return
    assert check_upsert_body(body) == []
    originals = [r["email"] for r in body["contacts"]]
    customs = [r["custom_fields"] for r in body["contacts"] if "custom_fields" in r]
    assert simple == SimpleRows(
        emails=[e.lower() for e in originals],
        lowered=any(e != e.lower() for e in originals),
        custom_ids=frozenset(itertools.chain.from_iterable(customs)),
        custom_text=all(type(v) is str for cf in customs for v in cf.values()),
        custom_every_row=len(customs) == len(body["contacts"]),
    )
    assert all(
        r.keys() <= {"email", "first_name", "last_name", "city", "postal_code", "custom_fields"}
        for r in body["contacts"]
    )


@given(st.text(alphabet=st.characters(max_codepoint=127, exclude_characters="\n"), max_size=12))
def test_bulk_email_expression_equals_email_re_on_ascii(value: str) -> None:
    bulk = _EMAIL_LINES_RE.fullmatch(value + "\n") is not None
    assert bulk == (EMAIL_RE.match(value) is not None)


@given(st.text(alphabet="a@. \t\x1c\x7fZ", max_size=8))
def test_bulk_email_expression_on_tricky_characters(value: str) -> None:
    bulk = _EMAIL_LINES_RE.fullmatch(value + "\n") is not None
    assert bulk == (EMAIL_RE.match(value) is not None)


def test_bulk_email_expression_exhaustively_on_short_strings() -> None:
    """Every string of up to 5 characters from "@", ".", "a" and the ASCII characters at
    the edges of the expression's classes."""
    alphabet = "a@.\x00\x08\t\r\x0e\x1b\x1c\x1f !-/?A\x7f"
    for size in range(6):
        for chars in itertools.product("a@." if size > 3 else alphabet, repeat=size):
            value = "".join(chars)
            assert (_EMAIL_LINES_RE.fullmatch(value + "\n") is not None) == (
                EMAIL_RE.match(value) is not None
            ), repr(value)
    for char in map(chr, range(128)):
        if char != "\n":
            for value in (
                f"{char}@b.c",
                f"a@{char}.c",
                f"a@b{char}c",
                f"a@b.{char}",
                f"a{char}@b.c",
            ):
                bulk = _EMAIL_LINES_RE.fullmatch(value + "\n") is not None
                assert bulk == (EMAIL_RE.match(value) is not None), repr(value)


def test_rows_with_as_many_keys_but_other_keys_are_all_checked() -> None:
    """The columnar check guesses every row has the first row's keys when the key counts
    add up; a row with other keys must still be checked (or left to the general path)."""
    first = {"email": "a@x.io", "city": "c"}
    for second, valid in (
        ({"email": "b@x.io", "first_name": "x" * 51}, False),
        ({"email": "b@x.io", "first_name": 5}, False),
        ({"email": "b@x.io", "unknown": "kept out"}, True),
        ({"email": "b@x.io", "phone_number_id": "+15551230000"}, True),
        ({"email": "b@x.io", "custom_fields": {TEXT: "t"}}, True),
    ):
        body = {"contacts": [first, second]}
        simple = simple_upsert_body(body)
        assert (check_upsert_body(body) == []) is valid
        if simple is not None:
            assert second.keys() <= {"email", "first_name", "city", "custom_fields"}
            assert simple.custom_every_row is False


def test_non_ascii_or_newline_emails_are_left_to_the_general_checks() -> None:
    assert simple_upsert_body({"contacts": [{"email": "ü@example.de"}]}) is None
    # EMAIL_RE's "$" accepts a trailing newline; the bulk check doesn't decide it.
    assert simple_upsert_body({"contacts": [{"email": "a@b.co\n"}]}) is None
    assert check_upsert_body({"contacts": [{"email": "a@b.co\n"}]}) == []
    # Two valid lines in one email are one invalid email.
    body = {"contacts": [{"email": "a@b.co\nc@d.ef"}, {"email": "g@h.ij"}]}
    assert simple_upsert_body(body) is None
    assert check_upsert_body(body) == [
        {"field": "contacts[0].email", "message": "email is not a valid email address"}
    ]


@given(
    st.sampled_from([0, 1, 4094, 4095, 4096, 8191, 16**9, 16**12 - 5000, 16**12 - 2]),
    st.integers(0, 9000),
)
def test_ids_in_bulk_equal_ids_one_by_one(start: int, n: int) -> None:
    bulk, single = IdFactory(start), IdFactory(start)
    single.prefix = bulk.prefix
    assert bulk.take(n) == [single.next() for _ in range(n)]
    assert bulk.counter == single.counter


def test_bulk_batches_survive_list_and_contact_changes() -> None:
    store = Store()
    lid = store.create_list("l").id
    other = store.create_list("m").id
    rows = [{"email": f"u{i}@example.com", "first_name": "F"} for i in range(10)]
    out = store.apply_upsert(rows, [lid, other], now=NOW)
    assert out.created == 10 and len(store.batches) == 1
    first = store.contacts[out.touched[0]]
    assert "created_at" not in first  # batched
    store.remove_from_list(lid, [out.touched[0]])
    assert store.full(first)["list_ids"] == frozenset({other}) and "created_at" in first
    store.delete_list(other, delete_contacts=False)
    assert store.batches[0].list_ids == frozenset({lid})
    assert all(store.list_ids_of(c) == frozenset({lid}) for c in list(store.contacts.values())[1:])
    assert store.list_ids_of(first) == frozenset()
    again = store.apply_upsert([{"email": "U1@example.com", "city": "X"}], [], now=NOW + 60)
    assert again.updated == 1
    updated = store.contacts[out.touched[1]]
    assert updated["updated_at"] != updated["created_at"] and updated["city"] == "X"
    assert list(updated) == [
        "email",
        "first_name",
        "id",
        "custom_fields",
        "list_ids",
        "created_at",
        "updated_at",
        "city",
    ]


async def test_event_loop_answers_between_chunks_of_a_big_apply() -> None:
    """A 30,000-contact job is applied in chunks with the loop free in between: other
    tasks run while it is pending, and no pause of the loop is long."""
    store = Store()
    lid = store.create_list("l").id
    runner = JobRunner(store, 0.0, lambda ids: None)
    body = orjson.loads(
        orjson.dumps({"contacts": [{"email": f"c{i}@example.com"} for i in range(30_000)]})
    )
    simple = simple_upsert_body(body)
    assert simple is not None
    runner.start()
    job = runner.submit(
        "upsert", 30_000, {"contacts": body["contacts"], "list_ids": [lid], "simple": simple}, []
    )
    ticks = 0
    longest = 0.0
    last = time.perf_counter()
    while not job.done.is_set():
        await asyncio.sleep(0)
        now = time.perf_counter()
        longest = max(longest, now - last)
        last = now
        ticks += 1
    await runner.stop()
    assert job.status == "completed" and job.created == 30_000
    assert ticks >= 30_000 // CHUNK_ROWS
    assert longest < 1.0, longest  # one chunk takes a few ms; generous for a busy machine
