"""SendGridConnection: how to reach one SendGrid account, and who may send data to it.

It mirrors the origin feature's connection (a display name, the API key, a data-privacy
consent, who may use it) in Kubernetes terms: the key lives in a Secret, and the namespaces
that may use the connection are named or selected by label, in the manner of External
Secrets' ClusterSecretStore conditions.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from sendgrid_operator.api.common import Model, ObjectStatus

GLOBAL_BASE_URL = "https://api.sendgrid.com"
EU_BASE_URL = "https://api.eu.sendgrid.com"

#: CEL: plain http only to loopback, so a local emulator works and nothing else leaks a key.
BASE_URL_RULE = (
    "self.startsWith('https://') || "
    "self.matches('^http://(127\\\\.0\\\\.0\\\\.1|localhost|\\\\[::1\\\\])(:[0-9]+)?(/.*)?$')"
)
BASE_URL_MESSAGE = (
    "baseURL must use https:// (plain http:// is allowed only for 127.0.0.1, localhost "
    "or [::1], such as a local SendGrid emulator)"
)


class ApiKeySecretRef(Model):
    """The Secret that holds the SendGrid API key, in the connection's namespace."""

    name: str = Field(min_length=1, max_length=253, description="Name of the Secret.")
    key: str = Field(
        default="apiKey",
        min_length=1,
        max_length=253,
        description="Key in the Secret's data that holds the API key. Defaults to apiKey.",
    )


class Consent(Model):
    """The data-privacy consent: exports send personal data (emails, names, addresses)."""

    personal_data: bool = Field(
        default=False,
        description=(
            "I agree that exports using this connection send personal data to SendGrid. "
            "Until this is true, no export may use the connection and nothing is sent."
        ),
    )
    granted_by: str | None = Field(
        default=None,
        max_length=256,
        description="Who gave the consent (a person or team), kept for audit.",
    )


class LabelSelector(Model):
    """A standard label selector (matchLabels and matchExpressions)."""

    match_labels: dict[str, str] | None = Field(
        default=None, description="Labels a namespace must have, all of them."
    )
    match_expressions: list[dict[str, Any]] | None = Field(
        default=None,
        description="Set-based requirements: {key, operator: In|NotIn|Exists|DoesNotExist, values}.",
        json_schema_extra={
            "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        },
    )


class AllowedNamespaces(Model):
    """Namespaces other than the connection's own that may use it. Its own may always."""

    names: list[str] | None = Field(
        default=None,
        max_length=256,
        description="Namespaces allowed by name.",
    )
    selector: LabelSelector | None = Field(
        default=None,
        description=("Namespaces allowed by label. An empty selector ({}) allows every namespace."),
    )


class SendGridConnectionSpec(Model):
    display_name: str | None = Field(
        default=None, max_length=256, description="A name for people, shown in status and events."
    )
    api_key_secret_ref: ApiKeySecretRef = Field(
        description=(
            "The Secret holding the API key. The key needs the marketing.read scope (it grants "
            "read and write on Marketing Campaigns)."
        )
    )
    consent: Consent = Field(
        default_factory=Consent,
        description="Data-privacy consent; must be given before any export may use this connection.",
    )
    base_url: str = Field(
        default=GLOBAL_BASE_URL,
        alias="baseURL",
        max_length=2048,
        description=(
            "SendGrid API base URL. https://api.sendgrid.com (default) or "
            "https://api.eu.sendgrid.com for EU regional subusers, or a proxy."
        ),
        json_schema_extra={
            "x-kubernetes-validations": [{"rule": BASE_URL_RULE, "message": BASE_URL_MESSAGE}]
        },
    )
    allowed_namespaces: AllowedNamespaces | None = Field(
        default=None,
        description=(
            "Other namespaces whose SegmentExports may use this connection. By default only "
            "exports in the connection's own namespace may."
        ),
    )
    check_interval_seconds: int = Field(
        default=600,
        ge=60,
        le=86400,
        description="How often the operator checks the key against SendGrid, in seconds.",
    )


class SendGridConnectionStatus(ObjectStatus):
    scopes: list[str] | None = Field(
        default=None,
        description="The Marketing scopes the key holds (from GET /v3/scopes), for diagnosis.",
    )
    last_checked_time: str | None = Field(
        default=None, description="When the key was last checked against SendGrid."
    )
    secret_resource_version: str | None = Field(
        default=None, description="resourceVersion of the Secret at the last check."
    )


class SendGridConnection(Model):
    api_version: str = Field(default="sendgrid-operator.io/v1alpha1")
    kind: str = Field(default="SendGridConnection")
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: SendGridConnectionSpec
    status: SendGridConnectionStatus | None = None

    model_config = Model.model_config | {"extra": "ignore"}
