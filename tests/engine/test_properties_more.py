"""More properties (hypothesis), next to test_batching.py and
test_rejections_and_properties.py, on what those do not cover:

- mapping: whatever the engine's validation accepts, SendGrid's request checks (the
  emulator's, held to the OpenAPI documents) accept too; normalising is idempotent;
- batching at SendGrid's real ceilings (30,000 contacts, 5,900,000 bytes) with large and
  multi-byte contacts: no body exceeds them and every contact is in exactly one body;
- several segments with duplicates and SendGrid refusing rows (400 splitting): every valid
  contact is accepted exactly once, the refused ones are counted, none is lost;
- the incremental diff over a sequence of runs: a run sends exactly the contacts that are
  new or changed since the previous successful run (one that left the segment and came
  back is new again).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
from fakes import LIST_ID, FakeSendGrid
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import FAST, make_spec, offline_plan
from sendgrid_operator.api.export import FieldMapping
from sendgrid_operator.emulator.validate import check_upsert_body
from sendgrid_operator.engine import MemoryStateStore, run_export
from sendgrid_operator.engine.batching import BodyBuilder
from sendgrid_operator.engine.mapping import (
    compile_mapping,
    convert_row,
    normalize_email,
    valid_email,
)
from sendgrid_operator.engine.plan import (
    MAX_CONTACTS_PER_UPSERT,
    MAX_UPSERT_BYTES,
)
from sendgrid_operator.sendgrid import SendGridClient

COLUMNS = {
    "email": "email",
    "firstName": "first",
    "lastName": "last",
    "city": "city",
    "country": "country",
    "postalCode": "zip",
    "addressLine1": "a1",
    "externalId": "ext",
}
COMPILED = compile_mapping(FieldMapping.model_validate(COLUMNS), [])

text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=120
) | st.text(alphabet="ab ", min_size=0, max_size=300)
emails = st.one_of(
    st.emails(),
    st.from_regex(r" ?[A-Za-z0-9._%+-]{1,70}@[A-Za-z0-9.-]{1,70}\.[A-Za-z]{2,6} ?", fullmatch=True),
    st.text(max_size=40),
)


@settings(max_examples=400, deadline=None)
@given(email=emails, values=st.fixed_dictionaries({c: text for c in COLUMNS.values()}))
def test_what_validation_accepts_sendgrid_accepts(email: str, values: dict[str, str]) -> None:
    row = {**values, "email": email}
    normalized, encoded, reason, _ = convert_row(COMPILED, row)
    if encoded is None:
        assert reason is not None
        return
    contact = orjson.loads(encoded)
    assert contact["email"] == normalized == normalize_email(email)
    assert valid_email(contact["email"])
    assert normalize_email(contact["email"]) == contact["email"]  # idempotent
    assert check_upsert_body({"list_ids": [LIST_ID], "contacts": [contact]}) == []
    # Nothing is invented: every value sent is the trimmed source value.
    for key, column in COLUMNS.items():
        sent = {
            "firstName": "first_name",
            "lastName": "last_name",
            "postalCode": "postal_code",
            "addressLine1": "address_line_1",
            "externalId": "external_id",
        }.get(key, key)
        if key != "email":
            assert contact.get(sent, "") == values[column].strip()


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 700_000), min_size=1, max_size=40),
    list_count=st.integers(1, 10),
)
def test_bodies_respect_the_real_ceilings(sizes: list[int], list_count: int) -> None:
    list_ids = [f"{i:08d}-0000-4000-8000-000000000000" for i in range(list_count)]
    builder = BodyBuilder(list_ids, MAX_CONTACTS_PER_UPSERT, MAX_UPSERT_BYTES)
    pieces = [
        json.dumps({"email": f"c{i}@e.co", "f": "é" * (n // 2)}).encode()
        for i, n in enumerate(sizes)
    ]
    bodies: list[bytes] = []
    for piece in pieces:
        if not builder.fits(piece):
            bodies.append(builder.build())
            builder.reset()
        builder.add(piece)
        assert builder.size == len(builder.build())
    bodies.append(builder.build())
    seen: list[dict[str, Any]] = []
    for body in bodies:
        assert len(body) <= MAX_UPSERT_BYTES
        parsed = json.loads(body)
        assert parsed["list_ids"] == list_ids
        assert 1 <= len(parsed["contacts"]) <= MAX_CONTACTS_PER_UPSERT
        seen += parsed["contacts"]
    assert [c["email"] for c in seen] == [f"c{i}@e.co" for i in range(len(sizes))]


def test_the_count_ceiling_with_tiny_contacts() -> None:
    builder = BodyBuilder([LIST_ID], MAX_CONTACTS_PER_UPSERT, MAX_UPSERT_BYTES)
    piece = b'{"email":"a@b.co"}'
    for _ in range(MAX_CONTACTS_PER_UPSERT):
        assert builder.fits(piece)
        builder.add(piece)
    assert not builder.fits(piece)
    assert len(json.loads(builder.build())["contacts"]) == MAX_CONTACTS_PER_UPSERT


local = st.sampled_from(["ann", "bob", "cy", "dee", "eve", "fay", "gus", "hal"])
variant = st.tuples(local, st.sampled_from(["", " ", "  "]), st.booleans()).map(
    lambda t: t[1] + (t[0].upper() if t[2] else t[0]) + "@Example.com" + t[1]
)
row_email = st.one_of(variant, st.just("not-an-email"), st.just(""))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    segments=st.lists(st.lists(row_email, max_size=15), min_size=1, max_size=3),
    refused=st.sets(local, max_size=3),
    name_fields=st.booleans(),
    max_count=st.integers(1, 5),
)
def test_every_valid_contact_is_accepted_exactly_once_across_segments_and_400s(
    tmp_path: Path,
    segments: list[list[str]],
    refused: set[str],
    name_fields: bool,
    max_count: int,
) -> None:
    seg_specs = []
    for i, rows in enumerate(segments):
        path = tmp_path / f"s{i}-{abs(hash((tuple(rows), max_count, name_fields)))}.csv"
        path.write_text("email\n" + "".join(f'"{e}"\n' for e in rows))
        seg_specs.append({"name": f"s{i}", "source": {"file": {"path": str(path)}}})
    refused_emails = {f"{r}@example.com" for r in refused}
    fake = FakeSendGrid(
        reject=lambda c: "refused" if c["email"] in refused_emails else None,
        name_fields=name_fields,
    )
    settings_ = replace(FAST, max_contacts_per_upsert=max_count)

    async def go() -> None:
        async with SendGridClient(
            "SG.test-key", "https://sg.test", transport=fake.transport()
        ) as client:
            report = await run_export(
                offline_plan(make_spec([LIST_ID], seg_specs)),
                client=client,
                state=MemoryStateStore(),
                settings=settings_,
            )
        assert report.result == "Succeeded", report.message
        flat = [e for rows in segments for e in rows]
        valid = {e for e in (normalize_email(r) for r in flat) if e and valid_email(e)}
        assert sorted(fake.sent) == sorted(valid - refused_emails)  # each exactly once
        c = report.counts
        assert c.rejected == len(valid & refused_emails)
        assert c.created == len(valid - refused_emails)
        assert c.read == len(flat) == c.profiles + c.invalid + c.duplicates
        assert all(n <= max_count for n in fake.jobs.values())

    asyncio.run(go())


versions = st.lists(
    st.dictionaries(local, st.sampled_from(["A", "B", "C"]), max_size=8), min_size=2, max_size=4
)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(runs=versions)
def test_incremental_sends_exactly_what_changed(tmp_path: Path, runs: list[dict[str, str]]) -> None:
    path = tmp_path / f"inc-{abs(hash(str(runs)))}.csv"
    spec = make_spec(
        [LIST_ID],
        [{"name": "s", "source": {"file": {"path": str(path)}}}],
        fieldMapping={"email": "email", "firstName": "first"},
    )
    state = MemoryStateStore()

    async def go() -> None:
        previous: dict[str, str] = {}  # the last successful run's segment
        for version in runs:
            path.write_text(
                "email,first\n" + "".join(f"{e}@example.com,{n}\n" for e, n in version.items())
            )
            fake = FakeSendGrid()
            async with SendGridClient(
                "SG.test-key", "https://sg.test", transport=fake.transport()
            ) as client:
                report = await run_export(
                    offline_plan(spec), client=client, state=state, settings=FAST
                )
            assert report.result == "Succeeded", report.message
            current = {f"{e}@example.com": n for e, n in version.items()}
            # New, changed, or back after leaving the segment (re-sent on purpose: it may
            # have been removed in SendGrid meanwhile).
            changed = {e for e, n in current.items() if previous.get(e) != n}
            assert set(fake.sent) == changed and len(fake.sent) == len(changed)
            assert report.counts.unchanged == len(current) - len(changed)
            if changed or not previous:
                # A run that sends nothing keeps the earlier state as it is ("unchanged
                # re-runs keep the state"), so contacts that left meanwhile stay known.
                previous = current

    asyncio.run(go())
