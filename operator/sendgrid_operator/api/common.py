"""Names and building blocks shared by both kinds: the API group, conditions and references.

Condition types and reasons are named constants, documented once here, because they are
user interface: ``kubectl wait --for=condition=Ready``, Argo CD and Flux health checks and
alerts all match on them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "sendgrid-operator.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "sendgrid"

#: The annotation whose every new value asks for one run now (Flux's requestedAt pattern).
RUN_REQUESTED_ANNOTATION = f"{GROUP}/run-requested-at"


class Model(BaseModel):
    """Base for API models: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The object as it is written to the API: camelCase, unset and null fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class ConditionType(StrEnum):
    """Condition types, kstatus-compatible (sigs.k8s.io/cli-utils/pkg/kstatus)."""

    READY = "Ready"
    """True when the resource is usable: a connection whose key works, an export that can run."""
    RECONCILING = "Reconciling"
    """True while the operator is working toward the desired state (for an export: a run)."""
    STALLED = "Stalled"
    """True when progress needs a person: the message says what to fix."""


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class ConditionReason(StrEnum):
    """Every reason the operator writes into a condition, an event or a run result."""

    # -- shared
    SUCCEEDED = "Succeeded"
    PROGRESSING = "Progressing"
    INVALID_SPEC = "InvalidSpec"
    # -- SendGridConnection
    SECRET_NOT_FOUND = "SecretNotFound"
    SECRET_KEY_MISSING = "SecretKeyMissing"
    CONSENT_NOT_GIVEN = "ConsentNotGiven"
    KEY_REJECTED = "KeyRejected"
    SCOPE_MISSING = "ScopeMissing"
    SENDGRID_UNREACHABLE = "SendGridUnreachable"
    # -- SegmentExport
    CONNECTION_NOT_FOUND = "ConnectionNotFound"
    CONNECTION_NOT_READY = "ConnectionNotReady"
    CONNECTION_PENDING = "ConnectionPending"
    """Internal: the connection has not been checked since it changed (runs wait)."""
    NAMESPACE_NOT_ALLOWED = "NamespaceNotAllowed"
    SUSPENDED = "Suspended"
    WAITING_FOR_SCHEDULE = "WaitingForSchedule"
    RUN_STARTED = "RunStarted"
    RUN_SUCCEEDED = "RunSucceeded"
    RUN_FAILED = "RunFailed"
    RUN_REFUSED = "RunRefused"
    RUN_SKIPPED = "RunSkipped"
    SOURCE_NOT_FOUND = "SourceNotFound"
    """A run was refused: a ConfigMap or Secret its sources need does not exist."""


class Condition(Model):
    """A standard Kubernetes condition (metav1.Condition)."""

    type: str = Field(description="Type of the condition: Ready, Reconciling or Stalled.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(description="A CamelCase word for programs: why the status is what it is.")
    message: str = Field(default="", description="What happened, and what to do about it.")
    last_transition_time: str | None = Field(
        default=None, description="When the status last changed (RFC 3339)."
    )
    observed_generation: int | None = Field(
        default=None, description="The metadata.generation this condition was set for."
    )


class LocalObjectReference(Model):
    name: str = Field(min_length=1, max_length=253, description="Name of the object.")


class KeySelector(Model):
    """A key of a Secret or ConfigMap in the same namespace as the resource."""

    name: str = Field(min_length=1, max_length=253, description="Name of the Secret or ConfigMap.")
    key: str = Field(min_length=1, max_length=253, description="Key inside its data.")


class ObjectStatus(Model):
    """What every status of the project's kinds starts with (kstatus)."""

    observed_generation: int | None = Field(
        default=None, description="The metadata.generation the status was written for."
    )
    conditions: list[Condition] | None = Field(
        default=None,
        description="Ready, Reconciling and Stalled.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )
