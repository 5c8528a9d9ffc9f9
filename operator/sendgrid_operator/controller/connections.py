"""Check a SendGridConnection: its Secret, the consent, and the key against SendGrid.

The result is a condition a person understands (Secret missing, consent not given, key
rejected, scope missing, SendGrid unreachable), and nothing secret: the key is read, used
for one ``GET /v3/scopes`` and dropped.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from sendgrid_operator.api.common import ConditionReason
from sendgrid_operator.api.connection import SendGridConnectionSpec
from sendgrid_operator.controller.kube import Kube
from sendgrid_operator.sendgrid.client import SendGridClient
from sendgrid_operator.sendgrid.errors import (
    AuthenticationError,
    PermissionDenied,
    SendGridError,
    Unavailable,
)
from sendgrid_operator.sendgrid.retry import RetryPolicy

REQUIRED_SCOPE = "marketing.read"
JSON = dict[str, Any]
ScopeReader = Callable[[str, str], Awaitable[list[str]]]


@dataclass(frozen=True)
class CheckResult:
    ready: bool
    reason: ConditionReason
    message: str
    stalled: bool = False
    scopes: list[str] | None = None
    secret_resource_version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def make_scope_reader(timeout: float) -> ScopeReader:
    async def read(api_key: str, base_url: str) -> list[str]:
        policy = RetryPolicy(
            max_attempts=2, max_rate_limited=2, total_seconds=timeout, base_delay=0.2
        )
        async with SendGridClient(api_key, base_url, policy=policy, timeout=timeout) as client:
            return await client.scopes()

    return read


async def read_api_key(
    kube: Kube, namespace: str, name: str, key: str
) -> tuple[str | None, str | None, CheckResult | None]:
    """(key, resourceVersion, problem): the API key from its Secret, or why it cannot be had."""
    secret = await kube.get_or_none("secrets", namespace, name)
    if secret is None:
        return (
            None,
            None,
            CheckResult(
                False,
                ConditionReason.SECRET_NOT_FOUND,
                f"Secret {namespace}/{name} not found: create it with the API key under the key "
                f"{key!r} (spec.apiKeySecretRef).",
                stalled=True,
            ),
        )
    rv = str(secret["metadata"].get("resourceVersion", ""))
    data = secret.get("data") or {}
    if key not in data or not data[key]:
        found = ", ".join(sorted(data)) or "none"
        return (
            None,
            rv,
            CheckResult(
                False,
                ConditionReason.SECRET_KEY_MISSING,
                f"Secret {namespace}/{name} has no key {key!r} (keys found: {found}); set "
                "spec.apiKeySecretRef.key or add the key.",
                stalled=True,
                secret_resource_version=rv,
            ),
        )
    value = base64.b64decode(data[key]).decode("utf-8", "replace").strip()
    return value, rv, None


async def check_connection(body: JSON, kube: Kube, read_scopes: ScopeReader) -> CheckResult:
    meta = body["metadata"]
    namespace = meta["namespace"]
    try:
        spec = SendGridConnectionSpec.model_validate(body.get("spec") or {})
    except ValidationError as exc:
        return CheckResult(
            False, ConditionReason.INVALID_SPEC, f"invalid spec: {exc}", stalled=True
        )
    ref = spec.api_key_secret_ref
    api_key, rv, problem = await read_api_key(kube, namespace, ref.name, ref.key)
    if problem is not None or api_key is None:
        assert problem is not None
        return problem
    try:
        scopes = await read_scopes(api_key, spec.base_url)
    except AuthenticationError:
        return CheckResult(
            False,
            ConditionReason.KEY_REJECTED,
            f"SendGrid rejected the API key in Secret {ref.name} (401): the key is wrong, "
            "revoked or for another region; put a valid key in the Secret.",
            stalled=True,
            secret_resource_version=rv,
        )
    except PermissionDenied:
        return CheckResult(
            False,
            ConditionReason.SCOPE_MISSING,
            f"the API key cannot read its scopes (403): give it the {REQUIRED_SCOPE} scope.",
            stalled=True,
            secret_resource_version=rv,
        )
    except Unavailable as exc:
        return CheckResult(
            False,
            ConditionReason.SENDGRID_UNREACHABLE,
            f"SendGrid at {spec.base_url} could not be reached: {exc.message}. Will retry.",
            secret_resource_version=rv,
        )
    except SendGridError as exc:
        return CheckResult(
            False,
            ConditionReason.SENDGRID_UNREACHABLE,
            f"SendGrid answered unexpectedly: {exc.message}. Will retry.",
            secret_resource_version=rv,
        )
    marketing = sorted(s for s in scopes if s.startswith("marketing"))
    if REQUIRED_SCOPE not in scopes:
        return CheckResult(
            False,
            ConditionReason.SCOPE_MISSING,
            f"the API key lacks the {REQUIRED_SCOPE} scope, which exports need (it grants "
            "read and write on Marketing contacts and lists); edit the key's permissions in "
            "SendGrid.",
            stalled=True,
            scopes=marketing,
            secret_resource_version=rv,
        )
    if not spec.consent.personal_data:
        return CheckResult(
            False,
            ConditionReason.CONSENT_NOT_GIVEN,
            "consent not given: exports send personal data (emails, names, addresses) to "
            "SendGrid; set spec.consent.personalData: true to agree. Nothing is sent until then.",
            stalled=True,
            scopes=marketing,
            secret_resource_version=rv,
        )
    name = spec.display_name or meta["name"]
    return CheckResult(
        True,
        ConditionReason.SUCCEEDED,
        f"{name}: the API key works and holds {REQUIRED_SCOPE}",
        scopes=marketing,
        secret_resource_version=rv,
    )
