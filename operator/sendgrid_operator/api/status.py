"""SegmentExport status: conditions, the schedule's bookkeeping, live progress and run history."""

from __future__ import annotations

from pydantic import Field

from sendgrid_operator.api.common import ObjectStatus
from sendgrid_operator.api.report import ActiveRun, Progress, RunReport


class SegmentExportStatus(ObjectStatus):
    last_handled_run_request: str | None = Field(
        default=None,
        description="The last value of the run-requested-at annotation that was handled.",
    )
    last_schedule_time: str | None = Field(
        default=None, description="When a run was last scheduled."
    )
    last_successful_time: str | None = Field(default=None, description="When a run last succeeded.")
    next_schedule_time: str | None = Field(default=None, description="When the next run is due.")
    active: ActiveRun | None = Field(default=None, description="The run in progress, if any.")
    progress: Progress | None = Field(default=None, description="Live progress of the active run.")
    last_run: RunReport | None = Field(default=None, description="The last finished run.")
    contacts_exported: int | None = Field(
        default=None,
        description="Contacts in the segments that SendGrid holds after the last successful "
        "run (profiles minus rejected).",
    )
    history: list[RunReport] | None = Field(
        default=None, description="Recent runs, newest first, without their samples."
    )
