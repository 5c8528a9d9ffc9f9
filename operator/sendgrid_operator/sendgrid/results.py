"""Typed results of the SendGrid client: what the engine reads instead of raw JSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldDefinition:
    id: str
    name: str
    field_type: str
    reserved: bool


@dataclass(frozen=True)
class ListInfo:
    id: str
    name: str
    contact_count: int


@dataclass(frozen=True)
class ImportStatus:
    """``GET /v3/marketing/contacts/imports/{id}``: a job's state and SendGrid's counts."""

    id: str
    status: str  # pending | completed | errored | failed
    requested: int = 0
    created: int = 0
    updated: int = 0
    deleted: int = 0
    errored: int = 0
    errors_url: str | None = None

    @property
    def finished(self) -> bool:
        return self.status != "pending"


@dataclass(frozen=True)
class ExportStatus:
    id: str
    status: str  # pending | ready | failure
    urls: tuple[str, ...] = ()
    contact_count: int | None = None
    message: str | None = None


def as_int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0
