"""SegmentExport: which segments, from which sources, into which SendGrid lists, and when.

The spec follows the origin feature (a connection, a list ID, a field mapping, one or more
segments) and CronJob for scheduling (schedule, timeZone, suspend, concurrencyPolicy,
startingDeadlineSeconds, history limits). Cross-field rules are CEL, so a bad manifest is
refused at ``kubectl apply`` with a message that says what to fix.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import Field, field_validator

from sendgrid_operator.api.common import KeySelector, Model
from sendgrid_operator.api.status import SegmentExportStatus

UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
CRON_PATTERN = (
    r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|"
    r"\S+\s+\S+\s+\S+\s+\S+\s+\S+)$"
)
CUSTOM_FIELD_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
LIST_ID_MESSAGE = (
    "each listIds entry must be a SendGrid list ID, a UUID such as "
    "3f1e9a52-7c4b-4d2e-9a61-0b8f5c7d2e14 (Marketing > Contacts > Lists; the last part of "
    "the list's URL)"
)
SCHEDULE_MESSAGE = (
    "schedule must be 5 cron fields (minute hour day-of-month month day-of-week, e.g. "
    "'0 6 * * *') or one of @hourly, @daily, @weekly, @monthly, @yearly"
)
DEFAULT_MAX_PROFILES = 100_000
DEFAULT_MAX_REMOVAL_PERCENT = 10


class Mode(StrEnum):
    UPSERT = "upsert"
    MIRROR = "mirror"


class ConcurrencyPolicy(StrEnum):
    FORBID = "Forbid"
    REPLACE = "Replace"


class FileFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"
    PARQUET = "parquet"


def _one_of(*names: str) -> str:
    return " + ".join(f"(has(self.{n}) ? 1 : 0)" for n in names) + " == 1"


class FileSource(Model):
    """A file of profiles: CSV (with a header row), JSON Lines or Parquet, read as a stream."""

    path: str | None = Field(
        default=None,
        max_length=4096,
        description="A local path. In the cluster, a path inside a volume given in spec.job.volumes.",
    )
    url: str | None = Field(
        default=None,
        max_length=4096,
        pattern=r"^https?://",
        description="An http(s) URL the export Job can reach.",
    )
    config_map: KeySelector | None = Field(
        default=None,
        description="A key of a ConfigMap in the export's namespace (data or binaryData).",
    )
    format: FileFormat | None = Field(
        default=None,
        description="csv, jsonl or parquet. Defaults to the file name's extension.",
    )
    delimiter: str = Field(
        default=",", min_length=1, max_length=1, description="CSV field delimiter."
    )
    encoding: str = Field(
        default="utf-8", max_length=32, description="CSV and JSON Lines text encoding."
    )

    model_config = Model.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": _one_of("path", "url", "configMap"),
                    "message": "a file source needs exactly one of path, url or configMap",
                },
                {
                    "rule": "has(self.format) || !has(self.url) || "
                    "self.url.endsWith('.csv') || self.url.endsWith('.jsonl') || "
                    "self.url.endsWith('.parquet')",
                    "message": "set format (csv, jsonl or parquet): the url does not end in "
                    ".csv, .jsonl or .parquet",
                },
            ]
        }
    }


class SQLSource(Model):
    """A query on a database. PostgreSQL URLs are read with a server-side cursor; other
    SQLAlchemy URLs (Trino, BigQuery, Snowflake, ...) stream through SQLAlchemy."""

    query: str = Field(
        min_length=1,
        max_length=65536,
        description="The query. Its column names are what spec.fieldMapping refers to.",
    )
    database_url_secret_ref: KeySelector = Field(
        alias="databaseURLSecretRef",
        description=(
            "Secret key holding the database URL, e.g. postgresql://user:password@host:5432/db."
        ),
    )
    fetch_size: int = Field(
        default=10_000, ge=100, le=1_000_000, description="Rows fetched per round trip."
    )


class SegmentSource(Model):
    file: FileSource | None = Field(default=None, description="Read the segment from a file.")
    sql: SQLSource | None = Field(default=None, description="Read the segment with a SQL query.")

    model_config = Model.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": _one_of("file", "sql"),
                    "message": "a segment source needs exactly one of file or sql",
                }
            ]
        }
    }


class Segment(Model):
    """One segment: a named set of profiles. Several segments are united by email."""

    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="A name for the segment, used in status counts (lower case, digits, dashes).",
    )
    source: SegmentSource = Field(description="Where the segment's profiles come from.")


class CustomFieldMapping(Model):
    name: str = Field(
        min_length=1,
        max_length=100,
        pattern=CUSTOM_FIELD_NAME_PATTERN,
        description="The SendGrid custom field's name. It must exist in SendGrid; the type "
        "(Text, Number, Date) is checked before anything is sent.",
    )
    column: str = Field(min_length=1, max_length=256, description="The source column.")


class FieldMapping(Model):
    """Which source column feeds which SendGrid field. Only email is required."""

    email: str = Field(min_length=1, max_length=256, description="Column with the email address.")
    first_name: str | None = Field(
        default=None, max_length=256, description="Column for first_name."
    )
    last_name: str | None = Field(default=None, max_length=256, description="Column for last_name.")
    country: str | None = Field(default=None, max_length=256, description="Column for country.")
    state_province_region: str | None = Field(
        default=None, max_length=256, description="Column for state_province_region."
    )
    city: str | None = Field(default=None, max_length=256, description="Column for city.")
    postal_code: str | None = Field(
        default=None, max_length=256, description="Column for postal_code."
    )
    address_line1: str | None = Field(
        default=None, max_length=256, description="Column for address_line_1."
    )
    address_line2: str | None = Field(
        default=None, max_length=256, description="Column for address_line_2."
    )
    external_id: str | None = Field(
        default=None, max_length=256, description="Column for external_id."
    )
    custom_fields: list[CustomFieldMapping] | None = Field(
        default=None,
        max_length=500,
        description="Custom fields by SendGrid field name.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )


class ConnectionReference(Model):
    name: str = Field(min_length=1, max_length=253, description="Name of the SendGridConnection.")
    namespace: str | None = Field(
        default=None,
        max_length=63,
        description="Its namespace; defaults to the export's. The connection must allow this "
        "export's namespace (spec.allowedNamespaces).",
    )


class Toleration(Model):
    key: str | None = None
    operator: str | None = Field(default=None, description="Exists or Equal.")
    value: str | None = None
    effect: str | None = Field(
        default=None, description="NoSchedule, PreferNoSchedule or NoExecute."
    )
    toleration_seconds: int | None = None


_QUANTITY: dict[str, Any] = {
    "x-kubernetes-int-or-string": True,
    "anyOf": [{"type": "integer"}, {"type": "string"}],
}


class ResourceRequirements(Model):
    limits: dict[str, int | str] | None = Field(
        default=None,
        description="Resource limits, e.g. {cpu: 1, memory: 512Mi}.",
        json_schema_extra={"additionalProperties": _QUANTITY},
    )
    requests: dict[str, int | str] | None = Field(
        default=None,
        description="Resource requests, e.g. {cpu: 100m, memory: 256Mi}.",
        json_schema_extra={"additionalProperties": _QUANTITY},
    )


_OBJECT_LIST: dict[str, Any] = {
    "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
}


class JobSettings(Model):
    """Settings of each run's Job and Pod."""

    service_account_name: str | None = Field(
        default=None,
        max_length=253,
        description="ServiceAccount of the run's Pod. The Pod needs no Kubernetes API access; "
        "its token is not mounted.",
    )
    resources: ResourceRequirements | None = Field(
        default=None, description="Resources of the export container (default: 100m CPU, 256Mi)."
    )
    backoff_limit: int = Field(default=2, ge=0, le=10, description="Retries of a failed Pod.")
    active_deadline_seconds: int = Field(
        default=3600, ge=60, description="A run taking longer is stopped and fails."
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None,
        ge=0,
        description="Delete finished Jobs after this many seconds. By default the history "
        "limits decide.",
    )
    node_selector: dict[str, str] | None = Field(default=None, description="Pod node selector.")
    tolerations: list[Toleration] | None = Field(default=None, description="Pod tolerations.")
    volumes: list[dict[str, Any]] | None = Field(
        default=None,
        description="Extra Pod volumes, e.g. a PersistentVolumeClaim holding a source file.",
        json_schema_extra=_OBJECT_LIST,
    )
    volume_mounts: list[dict[str, Any]] | None = Field(
        default=None,
        description="Mounts of spec.job.volumes into the export container.",
        json_schema_extra=_OBJECT_LIST,
    )


class SegmentExportSpec(Model):
    connection_ref: ConnectionReference = Field(description="The SendGridConnection to use.")
    list_ids: list[str] = Field(
        min_length=1,
        max_length=10,
        description="IDs of existing SendGrid lists the segment is exported into.",
        json_schema_extra={
            "items": {
                "type": "string",
                "maxLength": 36,
                "x-kubernetes-validations": [
                    {
                        "rule": f"self.matches(r'{UUID_PATTERN}')",
                        "message": LIST_ID_MESSAGE,
                    }
                ],
            },
            "x-kubernetes-list-type": "set",
        },
    )
    segments: list[Segment] = Field(
        min_length=1,
        max_length=20,
        description="The segments to export, united and de-duplicated by email.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    field_mapping: FieldMapping = Field(description="Source columns for SendGrid fields.")
    mode: Mode = Field(
        default=Mode.UPSERT,
        description="upsert adds and updates contacts. mirror also removes from the lists the "
        "contacts this export added that have left the segment (list membership only; no "
        "contact is ever deleted).",
    )
    max_profiles: int = Field(
        default=DEFAULT_MAX_PROFILES,
        ge=1,
        le=10_000_000,
        description="A run whose segments hold more unique profiles is refused before any write.",
    )
    max_removal_percent: int = Field(
        default=DEFAULT_MAX_REMOVAL_PERCENT,
        ge=0,
        le=100,
        description="mirror: a run that would remove more than this share of a list is refused.",
    )
    allow_empty_segment: bool = Field(
        default=False,
        description="mirror: allow a run whose segments are empty (it would empty the list).",
    )
    incremental: bool = Field(
        default=True,
        description="Send only contacts that are new or changed since the last successful run.",
    )
    dry_run: bool = Field(
        default=False,
        description="Read and validate, read SendGrid, report what would change; write nothing.",
    )
    schedule: str | None = Field(
        default=None,
        max_length=128,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": f"self.matches(r'{CRON_PATTERN}')",
                    "message": SCHEDULE_MESSAGE,
                }
            ]
        },
        description="Cron schedule (5 fields or @hourly, @daily ...). Without it the export "
        "runs only on demand (annotation sendgrid-operator.io/run-requested-at).",
    )
    time_zone: str | None = Field(
        default=None,
        max_length=64,
        description="IANA time zone of the schedule, e.g. Europe/Berlin. Default UTC.",
    )
    suspend: bool = Field(default=False, description="Stop starting scheduled runs.")
    concurrency_policy: ConcurrencyPolicy = Field(
        default=ConcurrencyPolicy.FORBID,
        description="Forbid skips a run while one is active; Replace stops the active run and "
        "starts the new one. (Two runs never write one list at once.)",
    )
    starting_deadline_seconds: int | None = Field(
        default=None,
        ge=1,
        description="A scheduled run missed by more than this is skipped. After downtime at "
        "most one missed run is started, never a backlog.",
    )
    successful_jobs_history_limit: int = Field(
        default=3, ge=0, le=50, description="Finished successful Jobs to keep."
    )
    failed_jobs_history_limit: int = Field(
        default=1, ge=0, le=50, description="Finished failed Jobs to keep."
    )
    run_history_limit: int = Field(
        default=5, ge=1, le=20, description="Runs kept in status.history."
    )
    job: JobSettings = Field(default_factory=JobSettings, description="Job and Pod settings.")

    @field_validator("list_ids")
    @classmethod
    def _list_ids(cls, value: list[str]) -> list[str]:
        return _check_list_ids(value)

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        return _check_schedule(value)

    model_config = Model.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.timeZone) || has(self.schedule)",
                    "message": "timeZone needs a schedule",
                },
                {
                    "rule": "!has(self.startingDeadlineSeconds) || has(self.schedule)",
                    "message": "startingDeadlineSeconds needs a schedule",
                },
                {
                    "rule": "!has(self.fieldMapping.customFields) || self.fieldMapping.customFields.all(c, "
                    "!(c.name.lowerAscii() in ['email', 'first_name', 'last_name', "
                    "'country', 'state_province_region', 'city', 'postal_code', "
                    "'address_line_1', 'address_line_2', 'external_id']))",
                    "message": "a custom field cannot have the name of a reserved field: map "
                    "reserved fields with the fieldMapping keys (firstName, city, ...)",
                },
                {
                    "rule": "self.mode == 'mirror' || !self.allowEmptySegment",
                    "message": "allowEmptySegment applies only to mode: mirror",
                },
            ]
        }
    }


def _check_list_ids(values: list[str]) -> list[str]:
    for value in values:
        if not re.fullmatch(UUID_PATTERN, value):
            raise ValueError(f"{value!r}: {LIST_ID_MESSAGE}")
    return values


def _check_schedule(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(CRON_PATTERN, value.strip()):
        raise ValueError(SCHEDULE_MESSAGE)
    return value


class SegmentExport(Model):
    api_version: str = Field(default="sendgrid-operator.io/v1alpha1")
    kind: str = Field(default="SegmentExport")
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: SegmentExportSpec
    status: SegmentExportStatus | None = None

    model_config = Model.model_config | {"extra": "ignore"}
