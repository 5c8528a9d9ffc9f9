"""Sources: CSV, JSON Lines, Parquet, URL, ConfigMap and PostgreSQL, each through the engine."""

from __future__ import annotations

import datetime as dt
import functools
import http.server
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import FAST, DictResolver, make_plan, make_spec
from sendgrid_operator.api.common import KeySelector
from sendgrid_operator.api.export import SQLSource
from sendgrid_operator.emulator import AdminClient, Emulator
from sendgrid_operator.engine import MemoryStateStore, run_export
from sendgrid_operator.engine.sql import PostgresSource, SqlAlchemySource

EXPECTED = {"a@example.com", "b@example.com", "c@example.com"}


async def _run(
    emu: Emulator,
    list_id: str,
    source: dict[str, object],
    resolver: DictResolver | None = None,
    mapping: dict[str, object] | None = None,
):  # type: ignore[no-untyped-def]
    spec = make_spec(
        [list_id],
        [{"name": "s", "source": source}],
        fieldMapping=mapping or {"email": "email", "firstName": "first"},
    )
    return await run_export(make_plan(emu, spec, resolver), state=MemoryStateStore(), settings=FAST)


async def test_csv_delimiter_and_encoding(
    tmp_path: Path, emu: Emulator, admin: AdminClient, list_id: str
) -> None:
    path = tmp_path / "s.txt"
    path.write_bytes(
        "email;first\na@example.com;Zoë\nb@example.com;Bjørn\nc@example.com;\n".encode("latin-1")
    )
    report = await _run(
        emu,
        list_id,
        {"file": {"path": str(path), "format": "csv", "delimiter": ";", "encoding": "latin-1"}},
    )
    assert report.result == "Succeeded", report.message
    assert admin.members(list_id) == EXPECTED
    contact = admin.contact("b@example.com")
    assert contact is not None and contact["first_name"] == "Bjørn"


async def test_csv_with_a_byte_order_mark_and_quoted_header(
    tmp_path: Path, emu: Emulator, admin: AdminClient, list_id: str
) -> None:
    """Excel's "CSV UTF-8" starts with a BOM; a quoted first header name still maps."""
    path = tmp_path / "excel.csv"
    rows = '"email","first"\r\na@example.com,Ann\r\nb@example.com,Bo\r\nc@example.com,Cy\r\n'
    path.write_bytes(rows.encode("utf-8-sig"))
    report = await _run(emu, list_id, {"file": {"path": str(path)}})
    assert report.result == "Succeeded", report.message
    assert admin.members(list_id) == EXPECTED
    assert (admin.contact("a@example.com") or {}).get("first_name") == "Ann"


async def test_jsonl(tmp_path: Path, emu: Emulator, admin: AdminClient, list_id: str) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text(
        '{"email": "a@example.com", "first": "A"}\n\n{"email": "B@example.com"}\n{"email": "c@example.com", "first": null}\n'
    )
    report = await _run(emu, list_id, {"file": {"path": str(path)}})
    assert report.result == "Succeeded", report.message
    assert admin.members(list_id) == EXPECTED
    assert report.counts.read == 3


def _parquet_bytes() -> bytes:
    table = pa.table(
        {
            "email": ["a@example.com", "b@example.com", "c@example.com", None],
            "first": ["A", None, "C", "D"],
            "score": [1, 2, None, 4],
            "joined": [dt.date(2024, 1, 2), None, dt.date(2023, 5, 6), None],
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=2)
    return buf.getvalue()


async def test_parquet_with_typed_custom_fields(
    tmp_path: Path, emu: Emulator, admin: AdminClient, list_id: str
) -> None:
    admin.create_field("score", "Number")
    admin.create_field("joined", "Date")
    path = tmp_path / "s.parquet"
    path.write_bytes(_parquet_bytes())
    mapping = {
        "email": "email",
        "firstName": "first",
        "customFields": [
            {"name": "score", "column": "score"},
            {"name": "joined", "column": "joined"},
        ],
    }
    report = await _run(emu, list_id, {"file": {"path": str(path)}}, mapping=mapping)
    assert report.result == "Succeeded", report.message
    assert report.counts.invalid_by_reason == {"missing_email": 1}
    assert admin.members(list_id) == EXPECTED
    a = admin.contact("a@example.com")
    assert a is not None and a["custom_fields"] == {"score": 1, "joined": "2024-01-02"}
    # a Date field fed from a numeric column stops the run, naming the field
    bad = {**mapping, "customFields": [{"name": "joined", "column": "score"}]}
    report = await _run(emu, list_id, {"file": {"path": str(path)}}, mapping=bad)
    assert report.reason == "InvalidMapping" and "'joined'" in report.message


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))

    class Quiet(http.server.ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            pass

    server = Quiet(("127.0.0.1", 0), handler)
    server.RequestHandlerClass.log_message = lambda *a: None  # type: ignore[assignment]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def test_url_source(
    http_dir: tuple[Path, str], emu: Emulator, admin: AdminClient, list_id: str
) -> None:
    root, base = http_dir
    (root / "s.parquet").write_bytes(_parquet_bytes())
    report = await _run(emu, list_id, {"file": {"url": f"{base}/s.parquet"}})
    assert report.result == "Succeeded", report.message
    assert admin.members(list_id) == EXPECTED
    report = await _run(emu, list_id, {"file": {"url": f"{base}/missing.csv"}})
    assert report.reason == "SourceError" and "404" in report.message


async def test_config_map_sources(emu: Emulator, admin: AdminClient, list_id: str) -> None:
    resolver = DictResolver(
        config_maps={
            ("segs", "vip.csv"): b"email,first\na@example.com,A\nb@example.com,B\n",
            ("segs", "more.parquet"): _parquet_bytes(),
        }
    )
    report = await _run(
        emu, list_id, {"file": {"configMap": {"name": "segs", "key": "vip.csv"}}}, resolver
    )
    assert report.result == "Succeeded", report.message
    report = await _run(
        emu, list_id, {"file": {"configMap": {"name": "segs", "key": "more.parquet"}}}, resolver
    )
    assert report.result == "Succeeded", report.message
    assert admin.members(list_id) == EXPECTED
    report = await _run(
        emu, list_id, {"file": {"configMap": {"name": "segs", "key": "nope.csv"}}}, resolver
    )
    assert report.reason == "SourceError" and "nope.csv" in report.message


async def test_missing_file_is_bad_input(tmp_path: Path, emu: Emulator, list_id: str) -> None:
    report = await _run(emu, list_id, {"file": {"path": str(tmp_path / "absent.csv")}})
    assert report.reason == "SourceError" and "absent.csv" in report.message


@pytest.fixture
def pg_table(postgres_url: str) -> Iterator[str]:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS people")
        conn.execute(
            "CREATE TABLE people (id serial, email text, first text, score numeric, joined date)"
        )
        with conn.cursor().copy("COPY people (email, first, score, joined) FROM STDIN") as copy:
            for i in range(1_000):
                copy.write_row((f"user{i}@example.com", f"Név{i}", i, dt.date(2024, 1, 1)))
            copy.write_row(("not-an-email", "x", 1, None))
    yield postgres_url


@pytest.mark.postgres
async def test_postgres_source(
    pg_table: str, emu: Emulator, admin: AdminClient, list_id: str
) -> None:
    admin.create_field("score", "Number")
    resolver = DictResolver(secrets={("db", "url"): pg_table})
    source = {
        "sql": {
            "query": "SELECT email, first, score FROM people ORDER BY id",
            "databaseURLSecretRef": {"name": "db", "key": "url"},
            "fetchSize": 100,
        }
    }
    mapping = {
        "email": "email",
        "firstName": "first",
        "customFields": [{"name": "score", "column": "score"}],
    }
    report = await _run(emu, list_id, source, resolver, mapping)
    assert report.result == "Succeeded", report.message
    assert (report.counts.read, report.counts.profiles, report.counts.invalid) == (1_001, 1_000, 1)
    assert len(admin.members(list_id)) == 1_000
    contact = admin.contact("user7@example.com")
    assert (
        contact is not None
        and contact["custom_fields"] == {"score": 7}
        and contact["first_name"] == "Név7"
    )


@pytest.mark.postgres
def test_postgres_uses_a_server_side_cursor(pg_table: str) -> None:
    spec = SQLSource.model_validate(
        {
            "query": "SELECT email FROM people",
            "databaseURLSecretRef": {"name": "db", "key": "url"},
            "fetchSize": 100,
        }
    )
    source = PostgresSource(spec, pg_table, "query")
    source.open(["email"])
    try:
        assert source._cur.name  # a named cursor is a server-side cursor
        rows = source.rows()
        next(rows)
        with psycopg.connect(pg_table) as other:
            names = [r[0] for r in other.execute("SELECT name FROM pg_cursors").fetchall()]
        # pg_cursors is per session; from our own connection the cursor is visible
        own = [r[0] for r in source._conn.execute("SELECT name FROM pg_cursors").fetchall()]
        assert "sendgrid_operator_export" in own and names == []
        assert sum(1 for _ in rows) == 1_000
    finally:
        source.close()


@pytest.mark.postgres
def test_sqlalchemy_path_streams(pg_table: str) -> None:
    url = pg_table.replace("postgresql://", "postgresql+psycopg://")
    spec = SQLSource.model_validate(
        {
            "query": "SELECT email, first FROM people ORDER BY id",
            "databaseURLSecretRef": {"name": "db", "key": "url"},
            "fetchSize": 100,
        }
    )
    source = SqlAlchemySource(spec, url, "query")
    columns = source.open(["email"])
    try:
        assert list(columns) == ["email", "first"]
        rows = list(source.rows())
        assert len(rows) == 1_001 and rows[0] == (
            1,
            {"email": "user0@example.com", "first": "Név0"},
        )
    finally:
        source.close()


@pytest.mark.postgres
async def test_postgres_bad_query_is_bad_input(
    postgres_url: str, emu: Emulator, list_id: str
) -> None:
    resolver = DictResolver(
        secrets={("db", "url"): postgres_url.replace("postgres@", "postgres:secretpw@")}
    )
    source = {
        "sql": {
            "query": "SELECT nope FROM nowhere",
            "databaseURLSecretRef": {"name": "db", "key": "url"},
        }
    }
    report = await _run(emu, list_id, source, resolver)
    assert report.reason == "SourceError" and "nowhere" in report.message
    assert "secretpw" not in report.message


def test_key_selector_roundtrip() -> None:
    assert DictResolver(secrets={("a", "b"): "x"}).secret(KeySelector(name="a", key="b")) == "x"
