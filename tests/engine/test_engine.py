"""The engine against the emulator: counts, membership, requests, incremental, dry run, faults."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import FAST, file_segment, make_plan, make_spec
from sendgrid_operator.emulator import AdminClient, Emulator
from sendgrid_operator.engine import (
    EXIT_BAD_INPUT,
    EXIT_REFUSED,
    EXIT_SENDGRID,
    MemoryStateStore,
    exit_code,
    run_export,
)
from sendgrid_operator.sendgrid import SendGridClient

WRITE_ENDPOINTS = {
    "upsert",
    "list_remove",
    "list_create",
    "list_update",
    "list_delete",
    "field_create",
    "field_update",
    "field_delete",
}

LONG = "x" * 51
ROWS = [
    # email, first, last, country, city, tier
    (" Alice@Example.com ", "Alice", "Ångström", "Sweden", "Malmö", "3"),
    ("alice@example.com", "Alice2", "", "", "", ""),  # duplicate (case)
    ("ALICE@EXAMPLE.COM  ", "Alice3", "", "", "", ""),  # duplicate (case and spaces)
    ("bob@example.com", "Bob", "", "", "", ""),  # missing optional fields
    ("not-an-email", "X", "", "", "", ""),  # invalid_email
    ("", "NoEmail", "", "", "", ""),  # missing_email
    ("carol@example.com", LONG, "", "", "", ""),  # too_long:first_name
    ("dave@example.com", "Dave", "", "", "", "lots"),  # invalid_number:tier
    ("émile@example.com", "Émile", "", "", "", ""),  # invalid_email (non-ASCII)
    ("frank@example.com", "Frank", "Müller", "Deutschland", "Köln", "7"),
]
MAPPING = {
    "email": "email",
    "firstName": "first",
    "lastName": "last",
    "country": "country",
    "city": "city",
    "customFields": [{"name": "tier", "column": "tier"}],
}


def write_csv(
    path: Path,
    rows: list[tuple[str, ...]],
    header: tuple[str, ...] = ("email", "first", "last", "country", "city", "tier"),
) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def emails_csv(path: Path, emails: list[str]) -> Path:
    return write_csv(path, [(e,) for e in emails], header=("email",))


def writes(admin: AdminClient) -> list[str]:
    return [r.endpoint for r in admin.request_log() if r.endpoint in WRITE_ENDPOINTS]


async def test_exact_counts_and_contacts(
    tmp_path: Path, emu: Emulator, admin: AdminClient, list_id: str
) -> None:
    admin.create_field("tier", "Number")
    spec = make_spec(
        [list_id],
        [file_segment("vip", write_csv(tmp_path / "vip.csv", ROWS))],
        fieldMapping=MAPPING,
    )
    report = await run_export(make_plan(emu, spec), state=MemoryStateStore(), settings=FAST)
    assert report.result == "Succeeded", report.message
    c = report.counts
    assert (c.read, c.invalid, c.duplicates, c.profiles, c.sent, c.created, c.rejected) == (
        10,
        5,
        2,
        3,
        3,
        3,
        0,
    )
    assert c.invalid_by_reason == {
        "invalid_email": 2,
        "missing_email": 1,
        "too_long:first_name": 1,
        "invalid_number:tier": 1,
    }
    seg = report.segments[0]
    assert (seg.name, seg.read, seg.invalid, seg.duplicates, seg.profiles) == ("vip", 10, 5, 2, 3)
    assert {s.row for s in report.invalid_samples} == {
        "vip:vip.csv:6",
        "vip:vip.csv:7",
        "vip:vip.csv:8",
        "vip:vip.csv:9",
        "vip:vip.csv:10",
    }
    assert admin.members(list_id) == {"alice@example.com", "bob@example.com", "frank@example.com"}
    alice = admin.contact("alice@example.com")
    assert alice is not None
    assert (alice["first_name"], alice["last_name"], alice["city"]) == (
        "Alice",
        "Ångström",
        "Malmö",
    )
    assert alice["custom_fields"] == {"tier": 3}
    bob = admin.contact("bob@example.com")
    assert bob is not None and "last_name" not in bob and "city" not in bob
    assert report.sendgrid_requests["upsert 202"] == 1


async def test_several_segments_united_first_occurrence_wins(
    tmp_path: Path, emu: Emulator, admin: AdminClient, list_id: str
) -> None:
    a = emails_csv(tmp_path / "a.csv", ["a@example.com", "b@example.com"])
    b = write_csv(
        tmp_path / "b.csv",
        [("B@example.com", "Bee"), ("c@example.com", "Cee")],
        header=("email", "first"),
    )
    spec = make_spec(
        [list_id],
        [file_segment("one", a), file_segment("two", b)],
        fieldMapping={"email": "email"},
    )
    report = await run_export(make_plan(emu, spec), state=MemoryStateStore(), settings=FAST)
    assert [(s.name, s.read, s.duplicates, s.profiles) for s in report.segments] == [
        ("one", 2, 0, 2),
        ("two", 2, 1, 1),
    ]
    assert admin.members(list_id) == {"a@example.com", "b@example.com", "c@example.com"}


async def test_minimum_requests_and_incremental(
    tmp_path: Path, emu: Emulator, admin: AdminClient, list_id: str
) -> None:
    emails = [f"user{i}@example.com" for i in range(2_500)]
    spec = make_spec([list_id], [file_segment("all", emails_csv(tmp_path / "all.csv", emails))])
    settings = replace(FAST, max_contacts_per_upsert=1_000)
    state = MemoryStateStore()
    report = await run_export(make_plan(emu, spec), state=state, settings=settings)
    assert report.result == "Succeeded", report.message
    upserts = [r for r in admin.request_log() if r.endpoint == "upsert"]
    assert (
        len(upserts) == report.counts.upsert_requests == report.counts.minimum_upsert_requests == 3
    )
    assert admin.members(list_id) == set(emails)
    # byte ceiling: a smaller body limit needs more requests, still the minimum
    admin.clear_request_log()
    report = await run_export(
        make_plan(emu, spec),
        state=MemoryStateStore(),
        settings=replace(FAST, max_upsert_bytes=20_000),
    )
    upserts = [r for r in admin.request_log() if r.endpoint == "upsert"]
    assert len(upserts) == report.counts.minimum_upsert_requests
    assert all(r.bytes <= 20_000 for r in upserts)
    # an unchanged incremental re-run sends nothing
    admin.clear_request_log()
    report = await run_export(make_plan(emu, spec), state=state, settings=settings)
    assert (report.counts.sent, report.counts.unchanged, report.full_run) == (0, 2_500, False)
    assert writes(admin) == []
    # one changed and one new contact: exactly two sent
    emails_csv(tmp_path / "all.csv", [*emails, "new@example.com"])
    report = await run_export(make_plan(emu, spec), state=state, settings=settings, full=False)
    assert report.counts.sent == 1 and report.counts.unchanged == 2_500
    report = await run_export(make_plan(emu, spec), state=state, settings=settings, full=True)
    assert report.counts.sent == 2_501 and report.counts.updated == 2_501


async def test_dry_run_writes_nothing(
    tmp_path: Path, emu: Emulator, admin: AdminClient, list_id: str
) -> None:
    emails_csv(tmp_path / "s.csv", ["a@example.com", "b@example.com"])
    spec = make_spec([list_id], [file_segment("s", tmp_path / "s.csv")])
    state = MemoryStateStore()
    await run_export(make_plan(emu, spec), state=state, settings=FAST)
    emails_csv(tmp_path / "s.csv", ["a@example.com", "c@example.com", "bad"])
    admin.clear_request_log()
    saved = state.data
    report = await run_export(make_plan(emu, spec), state=state, settings=FAST, dry_run=True)
    assert report.result == "Succeeded" and report.dry_run
    assert (
        report.counts.sent,
        report.counts.created,
        report.counts.updated,
        report.counts.invalid,
    ) == (1, 1, 0, 1)
    assert writes(admin) == []
    assert state.data == saved
    assert admin.members(list_id) == {"a@example.com", "b@example.com"}


async def _mirror(
    emu: Emulator,
    tmp_path: Path,
    list_id: str,
    emails: list[str],
    state: MemoryStateStore,
    **extra: object,
):  # type: ignore[no-untyped-def]
    emails_csv(tmp_path / "m.csv", emails)
    spec = make_spec([list_id], [file_segment("m", tmp_path / "m.csv")], mode="mirror", **extra)
    return await run_export(make_plan(emu, spec), state=state, settings=FAST)


async def test_mirror_removes_only_own_contacts(
    tmp_path: Path, emu: Emulator, admin: AdminClient, list_id: str
) -> None:
    # someone else puts a contact on the list
    async with SendGridClient(emu.api_key, emu.url) as client:
        await client.upsert(
            b'{"list_ids":["%s"],"contacts":[{"email":"other@example.com"}]}' % list_id.encode()
        )
    admin.settle()
    first = [f"m{i}@example.com" for i in range(20)]
    state = MemoryStateStore()
    report = await _mirror(emu, tmp_path, list_id, first, state)
    assert report.result == "Succeeded", report.message
    assert admin.members(list_id) == {*first, "other@example.com"}
    # two leave the segment: removed; the other contact stays
    report = await _mirror(emu, tmp_path, list_id, first[2:], state)
    assert report.result == "Succeeded", report.message
    assert report.counts.removed == 2
    assert admin.members(list_id) == {*first[2:], "other@example.com"}
    assert admin.contact(first[0]) is not None  # the contact itself is not deleted
    # a dry run lists every planned removal
    report = await _mirror(emu, tmp_path, list_id, first[3:], state, dryRun=True)
    assert report.planned_removals == [first[2]]
    assert admin.members(list_id) == {*first[2:], "other@example.com"}


async def test_mirror_without_state_removes_nothing(
    tmp_path: Path, emu: Emulator, admin: AdminClient, list_id: str
) -> None:
    state = MemoryStateStore()
    await _mirror(emu, tmp_path, list_id, ["a@example.com", "b@example.com"], state)
    lost = MemoryStateStore()
    report = await _mirror(emu, tmp_path, list_id, ["a@example.com"], lost)
    assert report.result == "Succeeded"
    assert report.counts.removed == 0 and "removed nothing" in report.message
    assert admin.members(list_id) == {"a@example.com", "b@example.com"}


async def test_mirror_guards_refuse_before_any_write(
    tmp_path: Path, emu: Emulator, admin: AdminClient, list_id: str
) -> None:
    state = MemoryStateStore()
    emails = [f"g{i}@example.com" for i in range(10)]
    await _mirror(emu, tmp_path, list_id, emails, state)
    admin.clear_request_log()
    report = await _mirror(emu, tmp_path, list_id, [], state)
    assert (report.result, report.reason) == ("Refused", "EmptySegment")
    assert exit_code(report.reason) == EXIT_REFUSED and "allowEmptySegment" in report.message
    report = await _mirror(emu, tmp_path, list_id, ["g0@example.com", "x@example.com"], state)
    assert (report.result, report.reason) == ("Refused", "TooManyRemovals")
    assert "maxRemovalPercent" in report.message
    assert writes(admin) == []
    assert admin.members(list_id) == set(emails)
    # within the limit: allowed
    report = await _mirror(emu, tmp_path, list_id, emails[1:], state)
    assert report.counts.removed == 1


async def test_max_profiles_refuses_before_any_write(
    tmp_path: Path, emu: Emulator, admin: AdminClient, list_id: str
) -> None:
    spec = make_spec(
        [list_id],
        [
            file_segment(
                "s", emails_csv(tmp_path / "s.csv", [f"p{i}@example.com" for i in range(50)])
            )
        ],
        maxProfiles=10,
    )
    report = await run_export(make_plan(emu, spec), state=MemoryStateStore(), settings=FAST)
    assert (report.result, report.reason) == ("Refused", "TooManyProfiles")
    assert "spec.maxProfiles" in report.message
    assert writes(admin) == []


async def test_mapping_errors_stop_before_writes(
    tmp_path: Path, emu: Emulator, admin: AdminClient, list_id: str
) -> None:
    path = write_csv(tmp_path / "vip.csv", ROWS)
    spec = make_spec(
        [list_id],
        [file_segment("vip", path)],
        fieldMapping={**MAPPING, "customFields": [{"name": "loyalty", "column": "tier"}]},
    )
    report = await run_export(make_plan(emu, spec), state=MemoryStateStore(), settings=FAST)
    assert report.reason == "InvalidMapping" and "'loyalty'" in report.message
    assert exit_code(report.reason) == EXIT_BAD_INPUT
    spec = make_spec([list_id], [file_segment("vip", path)], fieldMapping={"email": "mail"})
    report = await run_export(make_plan(emu, spec), state=MemoryStateStore(), settings=FAST)
    assert report.reason == "InvalidMapping"
    assert "'mail'" in report.message and "email, first, last" in report.message
    assert writes(admin) == []


async def test_sendgrid_errors_have_clear_messages(
    tmp_path: Path, emu: Emulator, admin: AdminClient, list_id: str
) -> None:
    spec = make_spec(
        [list_id], [file_segment("s", emails_csv(tmp_path / "s.csv", ["a@example.com"]))]
    )
    plan = replace(make_plan(emu, spec), api_key="SG.wrong-key")
    report = await run_export(plan, state=MemoryStateStore(), settings=FAST)
    assert report.reason == "KeyRejected" and "check the Secret" in report.message
    assert exit_code(report.reason) == EXIT_SENDGRID
    missing = "11111111-2222-4333-8444-555555555555"
    report = await run_export(
        make_plan(emu, make_spec([missing], spec.model_dump(by_alias=True)["segments"])),
        state=MemoryStateStore(),
        settings=FAST,
    )
    assert report.reason == "ListNotFound" and f"list {missing} does not exist" in report.message
    admin.set_keys({emu.api_key: ["mail.send"]})
    report = await run_export(make_plan(emu, spec), state=MemoryStateStore(), settings=FAST)
    assert report.reason == "ScopeMissing" and "marketing.read" in report.message
    assert exit_code(report.reason) == EXIT_SENDGRID


@pytest.mark.parametrize(
    ("selector", "kind", "params"),
    [
        ("upsert", "429", {"count": 3}),
        ("upsert", "503", {"count": 2}),
        ("import_status", "500", {"count": 2}),
        ("upsert", "drop", {"count": 2}),
        ("import_status", "drop", {"count": 1}),
    ],
)
async def test_transient_faults_lose_nothing(
    tmp_path: Path,
    emu: Emulator,
    admin: AdminClient,
    list_id: str,
    selector: str,
    kind: str,
    params: dict[str, int],
) -> None:
    emails = [f"f{i}@example.com" for i in range(300)]
    spec = make_spec([list_id], [file_segment("s", emails_csv(tmp_path / "s.csv", emails))])
    admin.add_fault(selector, kind, **params)
    report = await run_export(
        make_plan(emu, spec),
        state=MemoryStateStore(),
        settings=replace(FAST, max_contacts_per_upsert=100),
    )
    assert report.result == "Succeeded", report.message
    assert report.counts.created == 300 and report.counts.upsert_requests == 3
    assert admin.members(list_id) == set(emails)
    if kind in ("429", "503", "500"):
        assert report.sendgrid_requests[f"{selector} {kind}"] == params["count"]


async def test_errored_jobs_report_rejected_rows_and_resend_them(
    tmp_path: Path, emu: Emulator, admin: AdminClient, list_id: str
) -> None:
    emails = [f"r{i}@example.com" for i in range(100)]
    spec = make_spec([list_id], [file_segment("s", emails_csv(tmp_path / "s.csv", emails))])
    admin.add_fault("upsert", "reject_rows", every=10)
    state = MemoryStateStore()
    report = await run_export(make_plan(emu, spec), state=state, settings=FAST)
    assert report.result == "Succeeded", report.message
    assert (report.counts.created, report.counts.rejected) == (90, 10)
    assert report.rejected_samples and report.rejected_samples[0].row.startswith("s:s.csv:")
    assert "injected" in (report.rejected_samples[0].message or "")
    admin.clear_faults()
    report = await run_export(make_plan(emu, spec), state=state, settings=FAST)
    assert (report.counts.sent, report.counts.created) == (10, 10)
    assert admin.members(list_id) == set(emails)


async def test_failed_job_fails_the_run_and_nothing_is_lost(
    tmp_path: Path, emu: Emulator, admin: AdminClient, list_id: str
) -> None:
    emails = [f"j{i}@example.com" for i in range(300)]
    spec = make_spec(
        [list_id], [file_segment("s", emails_csv(tmp_path / "s.csv", emails))], mode="mirror"
    )
    admin.add_fault("upsert", "fail_job", count=1)
    state = MemoryStateStore()
    settings = replace(FAST, max_contacts_per_upsert=100)
    report = await run_export(make_plan(emu, spec), state=state, settings=settings)
    assert (report.result, report.reason) == ("Failed", "JobsFailed")
    assert exit_code(report.reason) == EXIT_SENDGRID
    assert report.counts.created == 200
    report = await run_export(make_plan(emu, spec), state=state, settings=settings)
    assert report.result == "Succeeded"
    assert report.counts.sent == 100 and report.counts.unchanged == 200
    assert admin.members(list_id) == set(emails)
