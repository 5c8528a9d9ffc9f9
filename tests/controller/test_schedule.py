"""Schedules: due slots, time zones, starting deadlines, and no backlog replay after downtime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sendgrid_operator.controller import schedule


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_nothing_due_before_the_first_slot_after_creation() -> None:
    due = schedule.due(
        "0 6 * * *",
        None,
        now=t("2026-03-01T05:59:00"),
        last_scheduled=None,
        created=t("2026-03-01T05:00:00"),
        starting_deadline_seconds=None,
    )
    assert due.slot is None
    assert due.next_slot == t("2026-03-01T06:00:00")


def test_the_slot_is_due_once() -> None:
    due = schedule.due(
        "0 6 * * *",
        None,
        now=t("2026-03-01T06:00:03"),
        last_scheduled=None,
        created=t("2026-03-01T05:00:00"),
        starting_deadline_seconds=None,
    )
    assert due.slot == t("2026-03-01T06:00:00")
    again = schedule.due(
        "0 6 * * *",
        None,
        now=t("2026-03-01T06:00:08"),
        last_scheduled=due.slot,
        created=t("2026-03-01T05:00:00"),
        starting_deadline_seconds=None,
    )
    assert again.slot is None
    assert again.next_slot == t("2026-03-02T06:00:00")


def test_after_downtime_only_the_latest_missed_slot_runs() -> None:
    # Down from 00:10 to 05:30: slots 01:00 .. 05:00 were missed; one run, for 05:00.
    due = schedule.due(
        "0 * * * *",
        None,
        now=t("2026-03-01T05:30:00"),
        last_scheduled=t("2026-03-01T00:00:00"),
        created=t("2026-02-01T00:00:00"),
        starting_deadline_seconds=None,
    )
    assert due.slot == t("2026-03-01T05:00:00")


def test_a_slot_past_the_starting_deadline_is_skipped_and_reported() -> None:
    due = schedule.due(
        "0 * * * *",
        None,
        now=t("2026-03-01T05:30:00"),
        last_scheduled=t("2026-03-01T04:00:00"),
        created=t("2026-02-01T00:00:00"),
        starting_deadline_seconds=600,
    )
    assert due.slot is None
    assert due.missed_deadline == t("2026-03-01T05:00:00")


def test_time_zone_is_honoured() -> None:
    # 06:00 in Berlin (UTC+1 in winter) is 05:00 UTC.
    due = schedule.due(
        "0 6 * * *",
        "Europe/Berlin",
        now=t("2026-01-10T05:00:01"),
        last_scheduled=None,
        created=t("2026-01-10T00:00:00"),
        starting_deadline_seconds=None,
    )
    assert due.slot == t("2026-01-10T05:00:00")


def test_a_new_export_never_runs_for_slots_before_it_existed() -> None:
    due = schedule.due(
        "0 6 * * *",
        None,
        now=t("2026-03-01T07:00:00"),
        last_scheduled=None,
        created=t("2026-03-01T06:30:00"),
        starting_deadline_seconds=None,
    )
    assert due.slot is None


@pytest.mark.parametrize(
    ("cron", "zone", "fragment"),
    [("61 * * * *", None, "invalid schedule"), ("@daily", "Mars/Base", "unknown timeZone")],
)
def test_bad_schedules_say_what_to_fix(cron: str, zone: str | None, fragment: str) -> None:
    with pytest.raises(schedule.ScheduleError, match=fragment):
        schedule.validate(cron, zone)


def test_lookback_is_bounded_for_an_old_export_never_scheduled() -> None:
    now = t("2026-03-10T12:00:00")
    due = schedule.due(
        "0 0 1 1 *",
        None,
        now=now,
        last_scheduled=None,
        created=now - timedelta(days=400),
        starting_deadline_seconds=None,
    )
    assert due.slot is None  # Jan 1st is more than a day ago: no surprise run on upgrade
