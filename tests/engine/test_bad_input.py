"""Bad input through the whole engine, against the emulator: malformed source files, SQL
errors, unknown lists, revoked keys. Each ends with a clear reason and message, and sends
no write request to SendGrid (the request log is the evidence)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from conftest import FAST, DictResolver, file_segment, make_plan, make_spec
from sendgrid_operator.api.report import RunReport
from sendgrid_operator.emulator import AdminClient, Emulator
from sendgrid_operator.engine import MemoryStateStore, run_export

WRITES = {"upsert", "list_remove", "list_create", "list_update", "list_delete"}
WRITE_METHODS = {"PUT", "POST", "PATCH", "DELETE"}
READ_POSTS = {"search_emails", "search_identifiers", "contacts_batch", "export"}


def write_requests(admin: AdminClient) -> list[str]:
    """Every request that could change SendGrid (POSTs that only read are left out)."""
    return [
        f"{r.method} {r.path}"
        for r in admin.request_log()
        if r.endpoint in WRITES or (r.method in WRITE_METHODS and r.endpoint not in READ_POSTS)
    ]


async def run_file(
    emu: Emulator,
    list_id: str,
    path: Path,
    mapping: dict[str, Any] | None = None,
    **file: Any,
) -> RunReport:
    spec = make_spec(
        [list_id],
        [file_segment("s", path, **file)],
        fieldMapping=mapping or {"email": "email", "firstName": "first"},
    )
    return await run_export(make_plan(emu, spec), state=MemoryStateStore(), settings=FAST)


def assert_refused_without_writes(
    report: RunReport, admin: AdminClient, list_id: str, reason: str, *needles: str
) -> None:
    assert report.result == "Refused" and report.reason == reason, (report.reason, report.message)
    for needle in needles:
        assert needle in report.message, report.message
    assert write_requests(admin) == []
    assert admin.members(list_id) == set()


# -- malformed files: refused before any write ---------------------------------------------


async def test_undecodable_bytes_are_a_source_error(
    tmp_path: Path, emu: Emulator, admin: AdminClient, list_id: str
) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("email,first\nzoë@example.com,Zoë\na@example.com,A\n".encode("latin-1"))
    report = await run_file(emu, list_id, path)
    assert_refused_without_writes(report, admin, list_id, "SourceError", "latin1.csv")
    assert "encoding" in report.message or "decode" in report.message, report.message
    # The same file with its real encoding declared is read.
    report = await run_file(emu, list_id, path, encoding="latin-1")
    assert report.result == "Succeeded", report.message
    assert report.counts.invalid == 1  # zoë@: non-ASCII emails are invalid, not mangled


async def test_unknown_encoding_name_is_a_source_error(
    tmp_path: Path, emu: Emulator, admin: AdminClient, list_id: str
) -> None:
    path = tmp_path / "a.csv"
    path.write_text("email\na@example.com\n")
    report = await run_file(emu, list_id, path, encoding="klingon-8")
    assert report.result == "Refused" and report.reason in ("SourceError", "InvalidSpec")
    assert "klingon-8" in report.message, report.message
    assert write_requests(admin) == []


async def test_wrong_delimiter_names_the_missing_column(
    tmp_path: Path, emu: Emulator, admin: AdminClient, list_id: str
) -> None:
    path = tmp_path / "semi.csv"
    path.write_text("email;first\na@example.com;A\nb@example.com;B\n")
    report = await run_file(emu, list_id, path)
    assert_refused_without_writes(report, admin, list_id, "InvalidMapping", "'email'")
    assert "email;first" in report.message  # the column that was found
    report = await run_file(emu, list_id, path, delimiter=";")
    assert report.result == "Succeeded" and report.counts.created == 2, report.message


async def test_missing_email_column(
    tmp_path: Path, emu: Emulator, admin: AdminClient, list_id: str
) -> None:
    path = tmp_path / "noemail.csv"
    path.write_text("mail,first\na@example.com,A\n")
    report = await run_file(emu, list_id, path)
    assert_refused_without_writes(report, admin, list_id, "InvalidMapping", "'email'", "mail")


async def test_header_only_upsert_sends_nothing_and_succeeds(
    tmp_path: Path, emu: Emulator, admin: AdminClient, list_id: str
) -> None:
    path = tmp_path / "header.csv"
    path.write_text("email,first\n")
    report = await run_file(emu, list_id, path)
    assert report.result == "Succeeded" and report.counts.sent == 0, report.message
    assert write_requests(admin) == []


async def test_header_only_mirror_is_refused_as_empty(
    tmp_path: Path, emu: Emulator, admin: AdminClient, list_id: str
) -> None:
    path = tmp_path / "header.csv"
    path.write_text("email,first\n")
    spec = make_spec(
        [list_id],
        [file_segment("s", path)],
        mode="mirror",
        fieldMapping={"email": "email"},
    )
    report = await run_export(make_plan(emu, spec), state=MemoryStateStore(), settings=FAST)
    assert_refused_without_writes(report, admin, list_id, "EmptySegment")


async def test_huge_field_is_refused_with_its_location(
    tmp_path: Path, emu: Emulator, admin: AdminClient, list_id: str
) -> None:
    """A 2 MB field, beyond the csv module's 128 KiB field limit: one clear error naming the
    line, nothing sent, and the value is not copied into the report."""
    path = tmp_path / "huge.csv"
    path.write_text(f"email,first\na@example.com,A\nb@example.com,{'x' * 2_000_000}\n")
    report = await run_file(emu, list_id, path)
    assert_refused_without_writes(
        report, admin, list_id, "SourceError", "huge.csv:3", "field larger than field limit"
    )
    assert len(report.model_dump_json()) < 10_000


async def test_huge_unmapped_field_also_refuses_the_file(
    tmp_path: Path, emu: Emulator, admin: AdminClient, list_id: str
) -> None:
    """A limitation, not a loss: a column the mapping does not use still has to fit the
    128 KiB CSV field limit, and the whole file is refused (reported in docs/reliability.md)."""
    path = tmp_path / "notes.csv"
    path.write_text(f"email,notes\na@example.com,{'n' * 500_000}\nb@example.com,short\n")
    report = await run_file(emu, list_id, path, mapping={"email": "email"})
    assert_refused_without_writes(report, admin, list_id, "SourceError", "notes.csv:2")


async def test_ragged_rows_and_nul_bytes(
    tmp_path: Path, emu: Emulator, admin: AdminClient, list_id: str
) -> None:
    """CSV semantics, every row accounted for: a short row keeps its email, extra columns
    are ignored, a NUL byte makes the email invalid, and an unterminated quote swallows the
    rest of the file into one (invalid) field; read = profiles + invalid."""
    path = tmp_path / "ragged.csv"
    path.write_bytes(
        b"email,first\n"
        b"a@example.com\n"  # a missing column
        b"b@example.com,B,extra,columns\n"  # too many columns
        b"c@exa\x00mple.com,C\n"  # a NUL byte in the email
        b'"d@example.com,D\n'  # an unterminated quote swallows the rest
        b"e@example.com,E\n"
    )
    report = await run_file(emu, list_id, path)
    assert report.result == "Succeeded", report.message
    c = report.counts
    assert (c.read, c.profiles, c.invalid) == (4, 2, 2)
    assert c.invalid_by_reason == {"invalid_email": 2}
    assert admin.members(list_id) == {"a@example.com", "b@example.com"}
    # A record spanning lines is referenced by its last line (the csv reader's line_num).
    assert [s.row for s in report.invalid_samples] == ["s:ragged.csv:4", "s:ragged.csv:6"]


@pytest.mark.parametrize("content", [b"", b"\n\n\n"], ids=["empty", "blank-lines"])
async def test_a_file_without_a_header_is_refused(
    tmp_path: Path, emu: Emulator, admin: AdminClient, list_id: str, content: bytes
) -> None:
    path = tmp_path / "nohead.csv"
    path.write_bytes(content)
    report = await run_file(emu, list_id, path)
    assert_refused_without_writes(report, admin, list_id, "SourceError", "nohead.csv", "header")


async def test_malformed_json_lines(
    tmp_path: Path, emu: Emulator, admin: AdminClient, list_id: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        json.dumps({"email": "a@example.com", "first": "A"}) + "\n{not json\n"
        '{"email": "b@example.com"}\n'
    )
    report = await run_file(emu, list_id, path)
    assert_refused_without_writes(report, admin, list_id, "SourceError", "bad.jsonl", ":2")


async def test_a_corrupt_parquet_file(
    tmp_path: Path, emu: Emulator, admin: AdminClient, list_id: str
) -> None:
    path = tmp_path / "corrupt.parquet"
    path.write_bytes(b"PAR1" + b"\x00garbage" * 100)
    report = await run_file(emu, list_id, path)
    assert_refused_without_writes(report, admin, list_id, "SourceError", "corrupt.parquet")


async def test_a_csv_named_parquet(
    tmp_path: Path, emu: Emulator, admin: AdminClient, list_id: str
) -> None:
    path = tmp_path / "wrong.parquet"
    path.write_text("email\na@example.com\n")
    report = await run_file(emu, list_id, path)
    assert_refused_without_writes(report, admin, list_id, "SourceError", "wrong.parquet")


@pytest.mark.timeout(120)
async def test_two_million_duplicates_send_one_contact(
    tmp_path: Path, emu: Emulator, admin: AdminClient, list_id: str
) -> None:
    n = 2_000_000
    path = tmp_path / "dups.csv"
    with path.open("w") as f:
        f.write("email\n")
        f.write("Same@Example.com\n" * (n // 2))
        f.write(" same@example.com \n" * (n // 2))
    report = await run_file(emu, list_id, path, mapping={"email": "email"})
    assert report.result == "Succeeded", report.message
    c = report.counts
    assert (c.read, c.duplicates, c.profiles, c.sent, c.created) == (n, n - 1, 1, 1, 1)
    assert c.upsert_requests == 1
    assert admin.members(list_id) == {"same@example.com"}


# -- SendGrid-side bad input: nothing is written ---------------------------------------------


async def test_unknown_list_id_writes_nothing(
    tmp_path: Path, emu: Emulator, admin: AdminClient, list_id: str
) -> None:
    path = tmp_path / "a.csv"
    path.write_text("email\na@example.com\n")
    unknown = "11111111-2222-4333-8444-555555555555"
    spec = make_spec([list_id, unknown], [file_segment("s", path)])
    report = await run_export(make_plan(emu, spec), state=MemoryStateStore(), settings=FAST)
    assert (report.result, report.reason) == ("Failed", "ListNotFound")
    assert unknown in report.message
    assert write_requests(admin) == [] and admin.contact_count() == 0


@pytest.mark.parametrize("mode", ["upsert", "mirror"])
async def test_revoked_key_writes_nothing_and_never_leaks(
    tmp_path: Path, emu: Emulator, admin: AdminClient, list_id: str, mode: str
) -> None:
    path = tmp_path / "a.csv"
    path.write_text("email\na@example.com\n")
    spec = make_spec([list_id], [file_segment("s", path)], mode=mode)
    revoked = "SG.revoked-0123456789abcdef"
    plan = replace(make_plan(emu, spec), api_key=revoked)
    report = await run_export(plan, state=MemoryStateStore(), settings=FAST)
    assert (report.result, report.reason) == ("Failed", "KeyRejected")
    assert revoked not in report.model_dump_json()
    assert write_requests(admin) == [] and admin.contact_count() == 0


async def test_key_revoked_between_preflight_and_upload(
    tmp_path: Path, emu: Emulator, admin: AdminClient, list_id: str
) -> None:
    """The key stops working mid-run (401 on the upsert): a clear failure, nothing lost on
    the rerun with a working key."""
    emails = [f"k{i}@example.com" for i in range(50)]
    path = tmp_path / "k.csv"
    path.write_text("email\n" + "\n".join(emails) + "\n")
    spec = make_spec([list_id], [file_segment("s", path)])
    state = MemoryStateStore()
    admin.add_fault("upsert", "delay", seconds=0.5)
    import asyncio

    task = asyncio.create_task(run_export(make_plan(emu, spec), state=state, settings=FAST))
    await asyncio.sleep(0.2)  # inside the delayed upsert; the fault answers after the delay
    admin.set_keys({"SG.someone-else": ["marketing.read"]})
    report = await task
    if report.result == "Failed":
        assert report.reason == "KeyRejected", (report.reason, report.message)
    admin.set_keys({emu.api_key: ["marketing.read"]})
    report = await run_export(make_plan(emu, spec), state=state, settings=FAST)
    assert report.result == "Succeeded", report.message
    assert admin.members(list_id) == set(emails)


# -- SQL errors ---------------------------------------------------------------------------------


def _sql(query: str, url: str) -> tuple[dict[str, Any], DictResolver]:
    source = {"sql": {"query": query, "databaseURLSecretRef": {"name": "db", "key": "url"}}}
    return source, DictResolver(secrets={("db", "url"): url})


async def _run_sql(emu: Emulator, list_id: str, query: str, url: str) -> RunReport:
    source, resolver = _sql(query, url)
    spec = make_spec([list_id], [{"name": "s", "source": source}])
    return await run_export(make_plan(emu, spec, resolver), state=MemoryStateStore(), settings=FAST)


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("SELEC email FROM x", "syntax error"),
        ("SELECT email FROM no_such_table", "no_such_table"),
        ("SELECT 1 AS id", "'email'"),  # no email column
        # fails after the first fetches: the error arrives mid-stream
        (
            "SELECT 'u' || i || '@example.com' AS email, 1 / (i - 25000) AS boom "
            "FROM generate_series(1, 30000) AS i",
            "division by zero",
        ),
    ],
    ids=["syntax", "unknown-table", "no-email-column", "error-mid-stream"],
)
async def test_sql_errors_are_refused_before_any_write(
    postgres_url: str, emu: Emulator, admin: AdminClient, list_id: str, query: str, needle: str
) -> None:
    url = postgres_url.replace("postgres@", "postgres:hunter2@")
    report = await _run_sql(emu, list_id, query, url)
    assert report.result == "Refused", (report.reason, report.message)
    assert report.reason in ("SourceError", "InvalidMapping")
    assert needle in report.message, report.message
    assert "hunter2" not in report.model_dump_json()
    assert write_requests(admin) == []


@pytest.mark.postgres
async def test_unreachable_database_is_a_source_error(
    emu: Emulator, admin: AdminClient, list_id: str
) -> None:
    url = "postgresql://app:hunter2@127.0.0.1:9/crm"
    report = await _run_sql(emu, list_id, "SELECT email FROM people", url)
    assert_refused_without_writes(report, admin, list_id, "SourceError")
    assert "hunter2" not in report.model_dump_json()


async def test_missing_database_secret_is_a_source_error(
    emu: Emulator, admin: AdminClient, list_id: str
) -> None:
    source, _ = _sql("SELECT email FROM people", "unused")
    spec = make_spec([list_id], [{"name": "s", "source": source}])
    report = await run_export(
        make_plan(emu, spec, DictResolver()), state=MemoryStateStore(), settings=FAST
    )
    assert report.result == "Refused" and report.reason in ("SourceError", "InvalidSpec")
    assert "db" in report.message, report.message
    assert write_requests(admin) == []


@pytest.mark.postgres
async def test_database_connection_lost_mid_read_is_a_source_error(
    postgres_url: str, emu: Emulator, admin: AdminClient, list_id: str
) -> None:
    """The server ends the session while the cursor streams (a restart, a failover): the run
    is refused with the database's message, not a crash in the cleanup."""
    import asyncio

    import psycopg

    query = (
        "SELECT 'lost' || i || '@example.com' AS email FROM generate_series(1, 50000) AS i "
        "WHERE CASE WHEN i % 5000 = 0 THEN pg_sleep(0.2)::text = '' ELSE true END"
    )
    task = asyncio.create_task(_run_sql(emu, list_id, query, postgres_url))

    def running_pid() -> int | None:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE query LIKE '%sendgrid_operator_export%' "
                "AND pid <> pg_backend_pid()"
            ).fetchone()
        return int(row[0]) if row else None

    pid = None
    for _ in range(100):  # poll until the export's session is reading
        pid = await asyncio.to_thread(running_pid)
        if pid:
            break
        await asyncio.sleep(0.05)
    assert pid, "the export's query never started"
    await asyncio.sleep(0.3)  # inside the stream, past the first fetch
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    report = await task
    assert_refused_without_writes(report, admin, list_id, "SourceError", "terminating connection")
