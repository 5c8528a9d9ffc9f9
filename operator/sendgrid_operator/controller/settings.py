"""The operator's settings, loaded from the environment and validated before anything runs.

Every setting is documented here, where it is declared, and nothing reads the environment
elsewhere: a bad value stops the operator at start-up with a message naming the variable,
never halfway through a reconcile.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

PREFIX = "SGOP_"


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the environment variable."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str = Field(
        default="sendgrid-operator",
        description="SGOP_NAMESPACE: the operator's own namespace (from the downward API).",
    )
    watch_namespaces: tuple[str, ...] = Field(
        default=(),
        description="SGOP_WATCH_NAMESPACES: comma-separated namespaces to watch; empty = all.",
    )
    job_image: str = Field(
        default="sendgrid-operator:0.1.0",
        min_length=1,
        description="SGOP_JOB_IMAGE: the image export Jobs run (the operator's own image).",
    )
    job_image_pull_policy: str = Field(
        default="IfNotPresent",
        pattern="^(Always|IfNotPresent|Never)$",
        description="SGOP_JOB_IMAGE_PULL_POLICY.",
    )
    report_url: str = Field(
        default="http://sendgrid-operator.sendgrid-operator.svc:8080",
        pattern=r"^https?://",
        description="SGOP_REPORT_URL: the base URL at which export Jobs reach the operator "
        "to report progress, results and incremental state.",
    )
    http_host: str = Field(default="0.0.0.0", description="SGOP_HTTP_HOST.")
    http_port: int = Field(
        default=8080,
        ge=0,
        le=65535,
        description="SGOP_HTTP_PORT: /metrics, /healthz, /readyz and the run reports.",
    )
    peering: str | None = Field(
        default=None,
        description="SGOP_PEERING: kopf peering name; set it to run several replicas with "
        "one active. Empty runs standalone.",
    )
    connection_poll_seconds: float = Field(
        default=15.0,
        gt=0,
        description="SGOP_CONNECTION_POLL_SECONDS: how often a connection's Secret is "
        "looked at for changes (a GET, not a cluster-wide watch of Secrets).",
    )
    schedule_tick_seconds: float = Field(
        default=5.0, gt=0, description="SGOP_SCHEDULE_TICK_SECONDS: schedule resolution."
    )
    sendgrid_timeout_seconds: float = Field(
        default=15.0, gt=0, description="SGOP_SENDGRID_TIMEOUT_SECONDS: key checks' timeout."
    )
    log_format: str = Field(default="text", pattern="^(text|json)$", description="SGOP_LOG_FORMAT.")
    log_level: str = Field(
        default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$", description="SGOP_LOG_LEVEL."
    )
    job_command: tuple[str, ...] = Field(
        default=("sendgrid-operator", "job"),
        description="SGOP_JOB_COMMAND: the export container's command (space-separated).",
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Load and validate; raise SettingsError naming the variable on a bad value."""
        source = os.environ if env is None else env
        raw: dict[str, object] = {}
        for name, field in cls.model_fields.items():
            key = PREFIX + name.upper()
            if key not in source:
                continue
            value = source[key]
            if field.annotation in (tuple[str, ...],):
                sep = " " if name == "job_command" else ","
                raw[name] = tuple(v.strip() for v in value.split(sep) if v.strip())
            elif name == "peering":
                raw[name] = value or None
            else:
                raw[name] = value
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{PREFIX}{str(err['loc'][0]).upper()}: {err['msg']}" for err in exc.errors()
            )
            raise SettingsError(f"invalid operator settings: {problems}") from exc
