"""What one run did: the counts, results and samples the export engine reports.

The same models serve the local command's summary (``--output json``), the progress the
export Job sends while it runs, and the export's ``status.lastRun`` and ``status.history``.
Every count here is true: SendGrid's counts come from its job results, never from a 202.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from sendgrid_operator.api.common import Model

#: How many example rows of each reason a report keeps.
SAMPLES_PER_REASON = 5
#: How many example rows a report keeps in all.
MAX_SAMPLES = 25


class Phase(StrEnum):
    PENDING = "Pending"
    READING = "Reading"
    UPLOADING = "Uploading"
    VERIFYING = "Verifying"
    REMOVING = "Removing"
    FINISHED = "Finished"


class RunResult(StrEnum):
    SUCCEEDED = "Succeeded"
    """SendGrid applied the run: every job completed (rows SendGrid rejected are counted)."""
    FAILED = "Failed"
    """The run did not complete; the reason says why. Nothing was removed."""
    REFUSED = "Refused"
    """A safety guard or bad input stopped the run before any write."""


class RunTrigger(StrEnum):
    SCHEDULE = "Schedule"
    REQUEST = "Request"
    MANUAL = "Manual"


class RejectedRow(Model):
    """One example row that was not sent (invalid) or that SendGrid rejected."""

    reason: str = Field(description="Why, as a short code such as invalid_email or too_long.")
    row: str = Field(description="Where: segment and source row (e.g. vip:17) or the email.")
    field: str | None = Field(default=None, description="The SendGrid field concerned.")
    message: str | None = Field(default=None, description="Details, e.g. SendGrid's message.")


class SegmentCounts(Model):
    name: str
    read: int = Field(default=0, description="Rows read from the source.")
    invalid: int = Field(default=0, description="Rows that failed validation.")
    duplicates: int = Field(default=0, description="Rows whose email came earlier in the run.")
    profiles: int = Field(default=0, description="Valid profiles first seen in this segment.")


class RunCounts(Model):
    read: int = Field(default=0, description="Rows read from all segments.")
    invalid: int = Field(default=0, description="Rows not sent because they failed validation.")
    invalid_by_reason: dict[str, int] = Field(
        default_factory=dict, description="invalid, by reason."
    )
    duplicates: int = Field(default=0, description="Rows dropped as duplicates (by email).")
    profiles: int = Field(default=0, description="Unique valid profiles in the segments.")
    unchanged: int = Field(
        default=0, description="Profiles not sent: unchanged since the last run."
    )
    sent: int = Field(default=0, description="Contacts sent to SendGrid (dry run: would be sent).")
    created: int = Field(default=0, description="Contacts SendGrid created (from its job results).")
    updated: int = Field(default=0, description="Contacts SendGrid updated (from its job results).")
    rejected: int = Field(default=0, description="Contacts SendGrid rejected (errored rows).")
    removed: int = Field(default=0, description="List memberships removed (mirror).")
    upsert_requests: int = Field(default=0, description="PUT /v3/marketing/contacts requests.")
    minimum_upsert_requests: int = Field(
        default=0, description="The fewest upserts SendGrid's ceilings allow for what was sent."
    )


class RunReport(Model):
    run_id: str = Field(description="Identifies the run (the Job's name in the cluster).")
    result: RunResult
    reason: str = Field(description="A CamelCase reason, such as RunSucceeded or TooManyRemovals.")
    message: str = Field(default="", description="What happened, and what to do about it.")
    trigger: RunTrigger | None = None
    dry_run: bool = False
    mode: str = "upsert"
    full_run: bool = Field(default=True, description="False when only changes were sent.")
    start_time: str | None = None
    completion_time: str | None = None
    duration_seconds: float | None = None
    counts: RunCounts = Field(default_factory=RunCounts)
    segments: list[SegmentCounts] = Field(default_factory=list)
    list_ids: list[str] = Field(default_factory=list)
    sendgrid_job_ids: list[str] = Field(
        default_factory=list, description="SendGrid job IDs of the run's upserts and removals."
    )
    invalid_samples: list[RejectedRow] = Field(
        default_factory=list, description="The first invalid rows of each reason."
    )
    rejected_samples: list[RejectedRow] = Field(
        default_factory=list, description="The first rows SendGrid rejected, with its reasons."
    )
    sendgrid_requests: dict[str, int] = Field(
        default_factory=dict,
        description="SendGrid requests by endpoint and status code, as 'endpoint status' "
        "(e.g. 'upsert 202', 'upsert 429').",
    )
    planned_removals: list[str] | None = Field(
        default=None,
        description="Dry run, mirror: the emails that would be removed (status keeps the first).",
    )


class Progress(Model):
    """Live progress of the active run, at a bounded update rate."""

    phase: Phase = Phase.PENDING
    read: int = Field(default=0, description="Rows read so far.")
    sent: int = Field(default=0, description="Contacts sent so far.")
    applied: int = Field(default=0, description="Contacts SendGrid has applied so far.")
    removed: int = Field(default=0, description="List memberships removed so far.")
    total: int | None = Field(default=None, description="Rows expected, when the source says.")
    percent: int | None = Field(default=None, ge=0, le=100, description="Estimated completion.")
    updated_at: str | None = None


class ActiveRun(Model):
    job_name: str
    run_id: str
    trigger: RunTrigger
    start_time: str
    scheduled_time: str | None = Field(default=None, description="The schedule slot it serves.")
