"""When an export is due: cron schedules with a time zone, deadlines and no backlog replay.

kopf timers have no cron syntax and restart with the process, so the schedule is computed
here from the spec and the status (``lastScheduleTime``), which survives restarts. After
downtime at most the latest missed slot is run (as CronJob does with a deadline), never
every slot that was missed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, croniter

#: How far back to look for a missed slot when nothing was ever scheduled and no
#: starting deadline is set (CronJob looks back for 100 slots; one day is plenty here).
DEFAULT_LOOKBACK = timedelta(days=1)


class ScheduleError(ValueError):
    """The schedule or time zone cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Due:
    """The slot to run now, if any, and the next slot after now."""

    slot: datetime | None
    next_slot: datetime | None
    missed_deadline: datetime | None = None
    """A slot that was due but is past startingDeadlineSeconds (skipped)."""


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _zone(time_zone: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(time_zone or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(
            f"unknown timeZone {time_zone!r}: use an IANA name such as Europe/Berlin"
        ) from exc


def validate(schedule: str, time_zone: str | None) -> None:
    """Raise ScheduleError when the schedule or the zone is unusable."""
    _zone(time_zone)
    if not croniter.is_valid(schedule):
        raise ScheduleError(
            f"invalid schedule {schedule!r}: use 5 cron fields (minute hour day month "
            "weekday) or @hourly, @daily, @weekly, @monthly, @yearly"
        )


def next_after(schedule: str, time_zone: str | None, after: datetime) -> datetime:
    zone = _zone(time_zone)
    try:
        it = croniter(schedule, after.astimezone(zone))
    except (CroniterBadCronError, ValueError, KeyError) as exc:
        raise ScheduleError(f"invalid schedule {schedule!r}: {exc}") from exc
    nxt: datetime = it.get_next(datetime)
    return nxt.astimezone(UTC)


def latest_at_or_before(schedule: str, time_zone: str | None, moment: datetime) -> datetime:
    zone = _zone(time_zone)
    it = croniter(schedule, (moment + timedelta(seconds=1)).astimezone(zone))
    prev: datetime = it.get_prev(datetime)
    return prev.astimezone(UTC)


def due(
    schedule: str,
    time_zone: str | None,
    *,
    now: datetime,
    last_scheduled: datetime | None,
    created: datetime,
    starting_deadline_seconds: int | None,
) -> Due:
    """Which slot, if any, should start now.

    A slot is due when it lies at or before ``now`` and after the last scheduled slot (or,
    for a new export, after its creation). Only the latest such slot counts: a backlog is
    never replayed. With a starting deadline, a slot older than the deadline is skipped.
    """
    validate(schedule, time_zone)
    latest = latest_at_or_before(schedule, time_zone, now)
    floor = last_scheduled or created
    if last_scheduled is None and starting_deadline_seconds is None:
        floor = max(created, now - DEFAULT_LOOKBACK)
    next_slot = next_after(schedule, time_zone, now)
    if latest <= floor:
        return Due(slot=None, next_slot=next_slot)
    if starting_deadline_seconds is not None and (now - latest) > timedelta(
        seconds=starting_deadline_seconds
    ):
        return Due(slot=None, next_slot=next_slot, missed_deadline=latest)
    return Due(slot=latest, next_slot=next_slot)
