"""CSV batches (``CsvSource.batches``, the Arrow fast path) against ``CsvSource.rows``.

Generated files mix what makes CSV rows and row numbers irregular: blank lines, quoted
values that span lines (``\\n``, ``\\r\\n``, ``\\r``), rows shorter and longer than the
header, repeated header names, a BOM, ``;`` as the delimiter, latin-1, non-ASCII text,
whitespace around values, invalid emails, and undecodable bytes. Batches are made tiny
(and every run gets Arrow arrays) so that small files cross many batch boundaries."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from firstpass import first_pass
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sendgrid_operator.api.export import (
    FieldMapping,
    FileFormat,
    FileSource,
)
from sendgrid_operator.engine import csvarrow, csvsource, reading
from sendgrid_operator.engine.mapping import CompiledMapping, compile_mapping, convert_row
from sendgrid_operator.engine.outcomes import SourceError

MAPPING = compile_mapping(
    FieldMapping(email="email", first_name="first", last_name="last", city="city"), []
)
MAPPING_EFC = compile_mapping(FieldMapping(email="email", first_name="first", city="city"), [])
MAPPING_EF = compile_mapping(FieldMapping(email="email", first_name="first"), [])
# repeated names: dict(zip(header, values)) keeps the last value the row reaches
EXTRA_COLUMNS = ["note", "email", "city", "first"]

valid_emails = st.tuples(
    st.text(alphabet="aZ09_+.", min_size=1, max_size=10),
    st.text(alphabet="aZ09", min_size=1, max_size=8),
    st.sampled_from(["com", "DE", "xn--p1ai"]),
).map(lambda t: f"{t[0]}@{t[1]}.{t[2]}")
odd_text = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "  Ann ",
            "Zoë",
            "Bjørn",
            "Köln",
            "Straße",
            "中文",
            "😀",
            "line\nbreak",
            "two\r\nlines",
            "cr\ronly",
            "\n",
            'say "hi"',
            "a,b",
            "a;b",
            "x" * 60,
            "\t tab",
            "\xa0nbsp\xa0",
            "not-an-email",
            "User@Example.COM",
            " padded@example.com ",
            "@example.com",
            "a@b",
            "é@example.com",
        ]
    ),
    st.text(alphabet="ab Z9@.,;\"'\n\r\té中", max_size=12),
)
values = st.one_of(valid_emails, valid_emails, odd_text)
records = st.lists(values, min_size=0, max_size=8)  # the header is 4 to 7 wide: short and long rows


@st.composite
def csv_files(draw: st.DrawFn) -> tuple[bytes, str, str]:
    """``(file bytes, delimiter, encoding)``."""
    extra = draw(st.lists(st.sampled_from(EXTRA_COLUMNS), max_size=3))
    header = draw(st.permutations(["email", "first", "last", "city", *extra]))
    if draw(st.booleans()):
        header = [f" {name} " if i % 2 else name for i, name in enumerate(header)]
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16"]))
    terminator = draw(st.sampled_from(["\r\n", "\n"]))
    out = io.StringIO(newline="")
    if draw(st.booleans()):
        writer = csv.writer(out, delimiter=delimiter, lineterminator=terminator)
    else:
        writer = csv.writer(
            out, delimiter=delimiter, lineterminator=terminator, quoting=csv.QUOTE_ALL
        )
    writer.writerow(header)
    rows = draw(
        st.lists(
            st.one_of(
                records,
                st.lists(valid_emails, min_size=len(header), max_size=len(header)),
                st.just(None),  # a blank line
            ),
            max_size=40,
        )
    )
    for row in rows:
        if row is None:
            out.write(draw(st.sampled_from(["\n", "\r\n", "\r"])))
        else:
            writer.writerow(row)
    text = out.getvalue()
    # "utf-8-sig" writes a BOM; the spec then says utf-8, which must strip it
    data = text.encode(encoding, errors="replace")
    spec_encoding = "utf-8" if encoding == "utf-8-sig" else encoding
    if draw(st.integers(0, 9)) == 0 and spec_encoding == "utf-8":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + b"\xff" + data[at:]  # undecodable, anywhere (even the header)
    return data, delimiter, spec_encoding


def _source(path: Path, delimiter: str = ",", encoding: str = "utf-8") -> csvsource.CsvSource:
    spec = FileSource(path=str(path), format=FileFormat.CSV, delimiter=delimiter, encoding=encoding)
    return csvsource.CsvSource(spec, None)  # type: ignore[arg-type]  # a path needs no resolver


@contextmanager
def _batch_sizes(size: int, minimum: int) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(csvsource, "CSV_BATCH_ROWS", size)
        mp.setattr(csvarrow, "BATCH_ROWS", size)
        mp.setattr(csvsource, "CSV_MIN_ARROW_ROWS", minimum)
        mp.setattr(reading, "TICK_ROWS", 5)
        yield


def _by_rows(path: Path, delimiter: str, encoding: str, compiled: CompiledMapping) -> list[Any]:
    source = _source(path, delimiter, encoding)
    out: list[Any] = []
    try:
        source.open(compiled.columns)
        for number, row in source.rows():
            out.append((number, *convert_row(compiled, row)))
    except SourceError as exc:
        out.append(("error", str(exc)))
    finally:
        source.close()
    return out


def _by_batches(
    path: Path, delimiter: str, encoding: str, compiled: CompiledMapping
) -> tuple[list[Any], int]:
    """What the engine's read path gives (the fast path's runs expanded), and how many
    rows the fast path decided."""
    source = _source(path, delimiter, encoding)
    out: list[Any] = []
    fast = 0
    try:
        source.open(compiled.columns)
        for item in reading._converted(source, compiled):
            if isinstance(item, reading.FastRun):
                fast += item.length
                out.extend(item.expand())
            else:
                out.append(item)
    except SourceError as exc:
        out.append(("error", str(exc)))
    finally:
        source.close()
    return out, fast


def _raw(
    path: Path, delimiter: str, encoding: str, columns: list[str]
) -> tuple[list[Any], list[Any]]:
    """``rows()`` as is, and the batches' rows, ``row(i)`` and arrays, as the same list."""
    by_rows: list[Any] = []
    source = _source(path, delimiter, encoding)
    try:
        source.open(columns)
        by_rows.extend(source.rows())
    except SourceError as exc:
        by_rows.append(("error", str(exc)))
    finally:
        source.close()
    by_batches: list[Any] = []
    source = _source(path, delimiter, encoding)
    try:
        source.open(columns)
        for batch in source.batches():
            rows = list(batch.rows())
            assert len(rows) == batch.length
            for index, row in enumerate(rows):
                assert batch.row(index) == row
                for name, array in batch.arrays.items():
                    assert len(array) == batch.length
                    assert array[index].as_py() == row.get(name), (name, row)
                by_batches.append((batch.first + index, row))
    except SourceError as exc:
        by_batches.append(("error", str(exc)))
    finally:
        source.close()
    return by_rows, by_batches


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=csv_files(),
    size=st.sampled_from([1, 2, 3, 7, 8192]),
    minimum=st.sampled_from([1, 1, 2, 4]),
)
def test_batches_are_the_rows(
    tmp_path_factory: pytest.TempPathFactory, data: tuple[bytes, str, str], size: int, minimum: int
) -> None:
    content, delimiter, encoding = data
    path = tmp_path_factory.mktemp("csv") / "rows.csv"
    path.write_bytes(content)
    with _batch_sizes(size, minimum), _parsers() as used:
        by_rows, by_batches = _raw(path, delimiter, encoding, MAPPING.columns)
        assert by_batches == by_rows
        exact = _by_rows(path, delimiter, encoding, MAPPING)
        fast, decided = _by_batches(path, delimiter, encoding, MAPPING)
        assert fast == exact
    event("fast path: " + ("some rows" if decided else "no rows"))
    event("parser: " + ("Arrow" if "arrow" in used else "csv module"))


@contextmanager
def _parsers() -> Iterator[list[str]]:
    """Which parser ``CsvSource.batches`` used: ``"arrow"`` (csvarrow) or ``"csv"``."""
    used: list[str] = []
    plain = csvarrow.plain_batches

    def spy(*args: Any) -> Any:
        batches = plain(*args)
        used.append("csv" if batches is None else "arrow")
        return batches

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(csvarrow, "plain_batches", spy)
        yield used


_PLAIN = "email,first,last,city\n" + "".join(
    f"User{i}@Example.com,First{i},Last{i},Köln\n" for i in range(400)
)  # ~16 KB: past the csv module's first read


@pytest.mark.parametrize(
    ("content", "parser"),
    [
        (_PLAIN.encode(), "arrow"),
        (_PLAIN.replace("\n", "\r\n").encode(), "arrow"),
        (_PLAIN.replace("\n", "\r").encode(), "arrow"),
        (b"\xef\xbb\xbf" + _PLAIN.encode(), "arrow"),  # a BOM
        (_PLAIN.rstrip("\n").encode(), "arrow"),  # no line end at the end
        (_PLAIN.replace("First300,", '"Fi""rst3",').encode(), "arrow"),  # quoted, doubled
        (_PLAIN.replace("First300,", '"Fi"rst3,').encode(), "arrow"),  # text after the quote
        (_PLAIN.replace("First300,", 'Fi"rst3,').encode(), "arrow"),  # a quote inside
        (_PLAIN.replace("\nUser300@", "\n\nUser300@").encode(), "csv"),  # a blank line
        (_PLAIN.replace("First300,", '"Fi\nrst3",').encode(), "csv"),  # a value over 2 lines
        (_PLAIN.replace("First300,", '"Fi\r\nrst3",').encode(), "csv"),
        (_PLAIN.replace("First300,", "Fi\x00rst3,").encode(), "csv"),  # NUL
        (_PLAIN.replace(",Last300,Köln", "").encode(), "csv"),  # a short row
        (_PLAIN.replace("Köln\n", "Köln,extra\n", 1).encode(), "csv"),  # a long row
        (_PLAIN.encode().replace(b"First300,", b"First\xff300,"), "csv"),  # not UTF-8
        (_PLAIN.encode().replace(b"First300,", b"First\xed\xa0\x80300,"), "csv"),  # a surrogate
        (_PLAIN.replace("First399,", '"First399,').encode(), "csv"),  # a quote never closed
        (_PLAIN.replace("First300,", "F" * 131_073 + ",").encode(), "csv"),  # over the limit
        (('"email\nx",first\n' + "a@example.com,A\n").encode(), "csv"),  # 2-line header
        (b"email\n", "arrow"),  # no rows
    ],
)
def test_arrows_parser_only_where_it_is_the_csv_module(
    tmp_path: Path, content: bytes, parser: str
) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(content)
    with _parsers() as used:
        by_rows, by_batches = _raw(path, ",", "utf-8", MAPPING.columns)
        assert by_batches == by_rows
        exact = _by_rows(path, ",", "utf-8", MAPPING)
        fast, _ = _by_batches(path, ",", "utf-8", MAPPING)
        assert fast == exact
    assert ("arrow" in used) == (parser == "arrow")
    if parser == "arrow":
        assert set(used) == {"arrow"}


def test_plain_rows_take_the_fast_path(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    lines = ["email,first,last,city"]
    lines += [f"User{i}@Example.com,First{i},Last{i},Köln" for i in range(20)]
    # a blank line (22), an invalid email (23), a value over two lines (24-25, row 25)
    lines += ["", "bad,,,", 'c@example.com,"two', 'lines",,']
    lines += [f"v{i}@example.com,F,L,C" for i in range(9)]  # rows 26 to 34
    path.write_text("\n".join(lines) + "\n")
    with _batch_sizes(8, 1):
        exact = _by_rows(path, ",", "utf-8", MAPPING)
        fast, decided = _by_batches(path, ",", "utf-8", MAPPING)
    assert fast == exact
    assert [r[0] for r in exact] == [*range(2, 22), 23, 25, *range(26, 35)]
    assert decided == 20 + 9  # row 23 is invalid, row 25's first name needs trimming
    with _batch_sizes(8192, 512):  # runs shorter than CSV_MIN_ARROW_ROWS: rows one by one
        fast, decided = _by_batches(path, ",", "utf-8", MAPPING)
    assert fast == exact and decided == 0


def test_short_rows_and_repeated_columns(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    # "city" twice: dict(zip) keeps the later value, but only where the row reaches it
    path.write_text(
        "email,city,first,city\n"
        "a@example.com,Early,A,Late\n"
        "b@example.com,Early,B\n"
        "c@example.com\n"
        "d@example.com,Early,D,Late,extra,extra\n"
    )
    with _batch_sizes(8192, 1):
        by_rows, by_batches = _raw(path, ",", "utf-8", MAPPING_EFC.columns)
        assert by_batches == by_rows
        assert [row.get("city") for _, row in by_rows] == ["Late", "Early", None, "Late"]
        fast, decided = _by_batches(path, ",", "utf-8", MAPPING_EFC)
    assert fast == _by_rows(path, ",", "utf-8", MAPPING_EFC) and decided == 4


@pytest.mark.parametrize(
    ("content", "message"),
    [
        # TextIOWrapper decodes about 8 KB at a time: the error comes with the chunk
        (
            b"email,first\n" + b"a@example.com,A\n" * 3000 + b"b@example.com,\xff\nc@x.com,C\n",
            "CSV",
        ),
        (b"email,first\n" + b"a@example.com,A\n" * 3000 + b"\xff", "CSV"),
        (b"email,first\n\xff\n", "cannot read the header row"),
    ],
    ids=["between-rows", "last-byte", "first-chunk"],
)
def test_undecodable_byte_is_the_same_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(content)
    for size, minimum in ((8192, 512), (7, 1), (1000, 1)):
        with _batch_sizes(size, minimum):
            exact = _by_rows(path, ",", "utf-8", MAPPING_EF)
            fast, decided = _by_batches(path, ",", "utf-8", MAPPING_EF)
        assert exact[-1][0] == "error" and message in exact[-1][1], exact[-1]
        assert fast == exact
        if message == "CSV":
            assert len(exact) > 2000  # the rows before the bad chunk came first
            assert decided or minimum > 1


def test_csv_error_is_the_same_error(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    big = "x" * (csv.field_size_limit() + 1)
    path.write_text(f"email,first\na@example.com,A\nb@example.com,{big}\nc@example.com,C\n")
    with _batch_sizes(8192, 1):
        exact = _by_rows(path, ",", "utf-8", MAPPING_EF)
        fast, _ = _by_batches(path, ",", "utf-8", MAPPING_EF)
    assert exact[-1][0] == "error" and "field larger than field limit" in exact[-1][1]
    assert fast == exact


def test_header_only(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes("\ufeffemail;first\r\n".encode())
    source = _source(path, ";")
    assert list(source.open(MAPPING_EF.columns)) == ["email", "first"]
    assert list(source.batches()) == []
    source.close()


def test_lone_surrogates_leave_the_column_to_the_rows(tmp_path: Path) -> None:
    # unicode_escape can decode to a str Arrow cannot hold: no array for that column
    path = tmp_path / "s.csv"
    path.write_bytes(b"email,first\na@example.com,\\ud800\nb@example.com,B\n")
    source = _source(path, encoding="unicode_escape")
    source.open(MAPPING_EF.columns)
    with _batch_sizes(8192, 1):
        (batch,) = source.batches()
    source.close()
    assert set(batch.arrays) == {"email"}
    assert batch.rows() == [
        {"email": "a@example.com", "first": "\ud800"},
        {"email": "b@example.com", "first": "B"},
    ]


# -- whole first passes: CSV with batches vs without -------------------------------------
def _first_pass(
    path: Path, delimiter: str, encoding: str, max_profiles: int, batches: bool
) -> tuple[str, list[tuple[int, int | None]]]:
    file = FileSource(path=str(path), format=FileFormat.CSV, delimiter=delimiter, encoding=encoding)
    return first_pass(file, MAPPING, batches=batches, max_profiles=max_profiles)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=csv_files(),
    size=st.sampled_from([1, 3, 7]),
    max_profiles=st.sampled_from([1, 3, 1000]),
)
def test_first_pass_is_the_same_with_and_without_batches(
    tmp_path_factory: pytest.TempPathFactory,
    data: tuple[bytes, str, str],
    size: int,
    max_profiles: int,
) -> None:
    content, delimiter, encoding = data
    path = tmp_path_factory.mktemp("fp") / "rows.csv"
    path.write_bytes(content)
    with _batch_sizes(size, 1):
        fast = _first_pass(path, delimiter, encoding, max_profiles, batches=True)
        exact = _first_pass(path, delimiter, encoding, max_profiles, batches=False)
    assert fast == exact
