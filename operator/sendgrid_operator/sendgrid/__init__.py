"""The SendGrid client: one async HTTP client, its errors and its retry policy.

Everything outside this package talks to SendGrid only through :class:`SendGridClient`
and catches only the errors listed in :mod:`sendgrid_operator.sendgrid.errors`.
"""

from sendgrid_operator.sendgrid.client import (
    MARKETING_SCOPE,
    REMOVE_IDS_PER_REQUEST,
    SEARCH_EMAILS_PER_REQUEST,
    ExportStatus,
    FieldDefinition,
    ImportStatus,
    ListInfo,
    SendGridClient,
)
from sendgrid_operator.sendgrid.errors import (
    AuthenticationError,
    ErrorItem,
    NotFound,
    PermissionDenied,
    RateLimited,
    RequestRejected,
    SendGridError,
    Unavailable,
)
from sendgrid_operator.sendgrid.retry import RetryPolicy

__all__ = [
    "MARKETING_SCOPE",
    "REMOVE_IDS_PER_REQUEST",
    "SEARCH_EMAILS_PER_REQUEST",
    "AuthenticationError",
    "ErrorItem",
    "ExportStatus",
    "FieldDefinition",
    "ImportStatus",
    "ListInfo",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "RequestRejected",
    "RetryPolicy",
    "SendGridClient",
    "SendGridError",
    "Unavailable",
]
