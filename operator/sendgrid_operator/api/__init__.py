"""The project's Kubernetes API, ``sendgrid-operator.io/v1alpha1``, as typed models.

These pydantic models are the one source of the custom resources: the CRDs in ``crds/``
are generated from them (``hack/gen_crds.py``, checked for drift by a test), the export
engine reads manifests through them, and the controller writes status with them.
"""

from sendgrid_operator.api.common import (
    API_VERSION,
    CATEGORY,
    GROUP,
    VERSION,
    Condition,
    ConditionReason,
    ConditionStatus,
    ConditionType,
    KeySelector,
    LocalObjectReference,
)
from sendgrid_operator.api.connection import (
    AllowedNamespaces,
    Consent,
    SendGridConnection,
    SendGridConnectionSpec,
    SendGridConnectionStatus,
)
from sendgrid_operator.api.export import (
    ConcurrencyPolicy,
    ConnectionReference,
    CustomFieldMapping,
    FieldMapping,
    FileFormat,
    FileSource,
    JobSettings,
    Mode,
    Segment,
    SegmentExport,
    SegmentExportSpec,
    SegmentSource,
    SQLSource,
)
from sendgrid_operator.api.report import (
    ActiveRun,
    Phase,
    Progress,
    RejectedRow,
    RunCounts,
    RunReport,
    RunResult,
    RunTrigger,
    SegmentCounts,
)
from sendgrid_operator.api.status import SegmentExportStatus

__all__ = [
    "API_VERSION",
    "CATEGORY",
    "GROUP",
    "VERSION",
    "ActiveRun",
    "AllowedNamespaces",
    "ConcurrencyPolicy",
    "Condition",
    "ConditionReason",
    "ConditionStatus",
    "ConditionType",
    "ConnectionReference",
    "Consent",
    "CustomFieldMapping",
    "FieldMapping",
    "FileFormat",
    "FileSource",
    "JobSettings",
    "KeySelector",
    "LocalObjectReference",
    "Mode",
    "Phase",
    "Progress",
    "RejectedRow",
    "RunCounts",
    "RunReport",
    "RunResult",
    "RunTrigger",
    "SQLSource",
    "Segment",
    "SegmentCounts",
    "SegmentExport",
    "SegmentExportSpec",
    "SegmentExportStatus",
    "SegmentSource",
    "SendGridConnection",
    "SendGridConnectionSpec",
    "SendGridConnectionStatus",
]
