"""The batch fast path (engine/fastpath.py) against the exact per-row path (convert_row).

Generated rows mix the cases where Python and Arrow could disagree: Unicode whitespace
(U+0085, U+00A0, U+1680, U+2000..U+200A, U+2028, U+3000, and ASCII's \\x1c-\\x1f, which
``str.strip`` removes), characters whose lower case differs (Kelvin sign, dotted I, ß),
characters JSON escapes, fields at and over their limits, bad and missing emails, and
numbers and dates for custom fields."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from firstpass import first_pass
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sendgrid_operator.api.export import (
    CustomFieldMapping,
    FieldMapping,
    FileSource,
)
from sendgrid_operator.engine import fastpath
from sendgrid_operator.engine.mapping import CompiledMapping, compile_mapping, convert_row
from sendgrid_operator.sendgrid.results import FieldDefinition

TRICKY = (
    " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u200a\u2028\u2029\u202f\u205f\u3000"
    '"\\\x00\x01\x7f/éÉßİ\u0131K\u212a\u017f\ufb00Ωω中😀'
)
ASCII = "abcXYZ09.-_+@'!#$%&*/=?^`{|}~ "

pieces = st.one_of(
    st.text(alphabet=TRICKY, max_size=3),
    st.text(alphabet=ASCII, max_size=8),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=4),
    st.sampled_from(["User", "EXAMPLE", "Köln", "Straße", "x" * 49, "y" * 60, "z" * 101]),
)
plain = st.one_of(
    st.none(),
    st.just(""),
    st.text(alphabet="abcXYZ09 .'-éß中", min_size=1, max_size=20),
    st.integers(min_value=0, max_value=120).map(lambda n: "n" * n),
    st.sampled_from([49, 50, 51, 59, 60, 61, 253, 254, 255]).map(
        lambda n: "n" + "é" * (n - 2) + "n"
    ),
)
text_values = st.one_of(plain, plain, plain, plain, st.lists(pieces, max_size=4).map("".join))
emails = st.one_of(
    text_values,
    st.tuples(
        st.sampled_from(["", "", "", "", " ", "\u3000", "\x1c", "\t"]),
        st.one_of(
            st.lists(st.text(alphabet="aZ09_+!'", min_size=1, max_size=12), min_size=1).map(
                ".".join
            ),
            st.text(alphabet="aZ09.-_+!'", min_size=1, max_size=70),
        ),
        st.sampled_from(["@", "@", "@", "@@", ""]),
        st.lists(
            st.one_of(
                st.text(alphabet="aZ09", min_size=1, max_size=8),
                st.text(alphabet="aZ09-", min_size=1, max_size=64),
            ),
            min_size=1,
            max_size=4,
        ),
        st.sampled_from(["com", "DE", "xn--p1ai", "c", "c0m", "K\u212a", "com-"]),
        st.sampled_from(["", "", "", "", " ", "\n", "\xa0", "\u2028", "\x1f"]),
    ).map(lambda t: f"{t[0]}{t[1]}{t[2]}{'.'.join(t[3])}.{t[4]}{t[5]}"),
)
valid_emails = st.tuples(
    st.lists(st.text(alphabet="aZ09_+!'", min_size=1, max_size=12), min_size=1, max_size=3),
    st.lists(st.text(alphabet="aZ09", min_size=1, max_size=8), min_size=1, max_size=3),
    st.sampled_from(["com", "DE", "xn--p1ai"]),
).map(lambda t: f"{'.'.join(t[0])}@{'.'.join(t[1])}.{t[2]}")


def _rows(email: Any, text: Any) -> Any:
    return st.fixed_dictionaries(
        {
            "email": email,
            "first": text,
            "last": text,
            "city": text,
            "country": text,
            "extid": text,
            "tier": st.one_of(st.none(), st.integers(-(2**40), 2**40)),
            "born": st.one_of(st.none(), st.dates(dt.date(1900, 1, 1), dt.date(2100, 1, 1))),
        }
    )


# mostly plain rows (the fast path's case, near its edges), and rows with anything in them
row_strategy = st.one_of(_rows(valid_emails, plain), _rows(emails, text_values))
SCHEMA = pa.schema(
    [
        ("email", pa.string()),
        ("first", pa.string()),
        ("last", pa.string()),
        ("city", pa.string()),
        ("country", pa.large_string()),
        ("extid", pa.string()),
        ("tier", pa.int64()),
        ("born", pa.date32()),
    ]
)
FIELDS = [
    FieldDefinition("e1", "tier", "Number", False),
    FieldDefinition("e2", "born", "Date", False),
    FieldDefinition("e3", "nick", "Text", False),
]


def _mapping(custom: bool) -> CompiledMapping:
    mapping = FieldMapping(
        email="email",
        first_name="first",
        last_name="last",
        city="city",
        country="country",
        external_id="extid",
        custom_fields=[
            CustomFieldMapping(name="tier", column="tier"),
            CustomFieldMapping(name="born", column="born"),
            CustomFieldMapping(name="nick", column="first"),
        ]
        if custom
        else None,
    )
    return compile_mapping(mapping, FIELDS)


RESERVED = _mapping(custom=False)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(row_strategy, min_size=1, max_size=40))
def test_fast_rows_are_exactly_convert_row(rows: list[dict[str, Any]]) -> None:
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    arrays = {name: table.column(name).combine_chunks() for name in table.column_names}
    assert fastpath.usable(RESERVED, arrays)
    good, emails, contacts = fastpath.convert_batch(RESERVED, arrays)
    for index, row in enumerate(table.to_pylist()):
        exact = convert_row(RESERVED, row)
        if good[index].as_py():
            assert exact == (emails[index].as_py(), contacts[index].as_py(), None, None)


def test_plain_rows_take_the_fast_path() -> None:
    rows = [
        {"email": "User@Example.COM", "first": "Ann", "last": None, "city": "Köln"},
        {"email": "a.b+c@mail.xn--p1ai", "first": "", "last": "O'Neil", "city": "x" * 60},
    ]
    mapping = compile_mapping(
        FieldMapping(email="email", first_name="first", last_name="last", city="city"), []
    )
    table = pa.Table.from_pylist(rows)
    arrays = {name: table.column(name).combine_chunks() for name in table.column_names}
    good, _, _ = fastpath.convert_batch(mapping, arrays)
    assert good.to_pylist() == [True, True]


# -- whole first passes: Parquet batches (fast path) vs the same rows one by one ----------
def _first_pass(
    path: Path, custom: bool, max_profiles: int, max_body: int, batches: bool
) -> tuple[str, list[tuple[int, int | None]]]:
    return first_pass(
        FileSource(path=str(path)),
        _mapping(custom),
        batches=batches,
        max_profiles=max_profiles,
        max_body=max_body,
        patches={
            "sendgrid_operator.engine.sources.PARQUET_BATCH_ROWS": 7,
            "sendgrid_operator.engine.reading.TICK_ROWS": 5,
        },
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(row_strategy, min_size=0, max_size=60),
    custom=st.booleans(),
    max_profiles=st.sampled_from([1, 3, 10, 1000]),
    max_body=st.sampled_from([5_900_000, 400]),
)
def test_first_pass_is_the_same_with_and_without_batches(
    tmp_path_factory: pytest.TempPathFactory,
    rows: list[dict[str, Any]],
    custom: bool,
    max_profiles: int,
    max_body: int,
) -> None:
    path = tmp_path_factory.mktemp("fp") / "rows.parquet"
    # the same addresses again, so that duplicates exist
    pq.write_table(pa.Table.from_pylist(rows + rows[:5], schema=SCHEMA), path)
    fast = _first_pass(path, custom, max_profiles, max_body, batches=True)
    exact = _first_pass(path, custom, max_profiles, max_body, batches=False)
    assert fast == exact
