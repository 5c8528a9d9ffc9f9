"""How a run can end: reasons, exit codes, and the exception that stops a run early.

A run ends in one :class:`~sendgrid_operator.api.report.RunReport`; its ``reason`` is one
of :class:`Reason`, and the local command's exit code follows from the reason alone
(:func:`exit_code`), so the command, the cluster Job and the status agree on what happened.
"""

from __future__ import annotations

from enum import StrEnum

from sendgrid_operator.api.report import RunResult
from sendgrid_operator.exitcodes import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_SENDGRID,
    EXIT_UNEXPECTED,
)
from sendgrid_operator.sendgrid import (
    AuthenticationError,
    NotFound,
    PermissionDenied,
    RequestRejected,
    SendGridError,
)

__all__ = [
    "BAD_INPUT",
    "EXIT_BAD_INPUT",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_SENDGRID",
    "EXIT_UNEXPECTED",
    "GUARDS",
    "SENDGRID",
    "MappingError",
    "Reason",
    "RunStopped",
    "SourceError",
    "exit_code",
    "reason_for",
    "result_for",
]


class Reason(StrEnum):
    RUN_SUCCEEDED = "RunSucceeded"
    DRY_RUN_SUCCEEDED = "DryRunSucceeded"
    # bad input
    INVALID_SPEC = "InvalidSpec"
    INVALID_MAPPING = "InvalidMapping"
    SOURCE_ERROR = "SourceError"
    # safety guards
    CONSENT_NOT_GIVEN = "ConsentNotGiven"
    TOO_MANY_PROFILES = "TooManyProfiles"
    TOO_MANY_REMOVALS = "TooManyRemovals"
    EMPTY_SEGMENT = "EmptySegment"
    # SendGrid
    KEY_REJECTED = "KeyRejected"
    SCOPE_MISSING = "ScopeMissing"
    LIST_NOT_FOUND = "ListNotFound"
    SENDGRID_REJECTED = "SendGridRejected"
    SENDGRID_UNREACHABLE = "SendGridUnreachable"
    JOBS_FAILED = "JobsFailed"
    JOBS_TIMED_OUT = "JobsTimedOut"
    # anything else
    UNEXPECTED = "Unexpected"


BAD_INPUT = frozenset({Reason.INVALID_SPEC, Reason.INVALID_MAPPING, Reason.SOURCE_ERROR})
GUARDS = frozenset(
    {
        Reason.CONSENT_NOT_GIVEN,
        Reason.TOO_MANY_PROFILES,
        Reason.TOO_MANY_REMOVALS,
        Reason.EMPTY_SEGMENT,
    }
)
SENDGRID = frozenset(
    {
        Reason.KEY_REJECTED,
        Reason.SCOPE_MISSING,
        Reason.LIST_NOT_FOUND,
        Reason.SENDGRID_REJECTED,
        Reason.SENDGRID_UNREACHABLE,
        Reason.JOBS_FAILED,
        Reason.JOBS_TIMED_OUT,
    }
)


def exit_code(reason: str) -> int:
    """The local command's exit code for a run that ended with ``reason``."""
    if reason in (Reason.RUN_SUCCEEDED, Reason.DRY_RUN_SUCCEEDED):
        return EXIT_OK
    if reason in BAD_INPUT:
        return EXIT_BAD_INPUT
    if reason in GUARDS:
        return EXIT_REFUSED
    if reason in SENDGRID:
        return EXIT_SENDGRID
    return EXIT_UNEXPECTED


def result_for(reason: Reason) -> RunResult:
    """Refused for bad input and guards (nothing was written), Failed otherwise."""
    if reason in (Reason.RUN_SUCCEEDED, Reason.DRY_RUN_SUCCEEDED):
        return RunResult.SUCCEEDED
    if reason in BAD_INPUT or reason in GUARDS:
        return RunResult.REFUSED
    return RunResult.FAILED


class RunStopped(Exception):
    """Raised inside the engine to end a run early with a reason and a message for people."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class SourceError(Exception):
    """A source could not be read (missing file, bad format, database error)."""


class MappingError(Exception):
    """The field mapping does not fit the source or SendGrid's field definitions."""


def reason_for(exc: SendGridError) -> Reason:
    """The reason a run ends with when SendGrid answered ``exc``."""
    if isinstance(exc, AuthenticationError):
        return Reason.KEY_REJECTED
    if isinstance(exc, PermissionDenied):
        return Reason.SCOPE_MISSING
    if isinstance(exc, NotFound):
        return Reason.LIST_NOT_FOUND
    if isinstance(exc, RequestRejected):
        return Reason.SENDGRID_REJECTED
    return Reason.SENDGRID_UNREACHABLE  # Unavailable, and any other failure to get through
