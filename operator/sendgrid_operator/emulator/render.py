"""JSON bodies in SendGrid's shapes: contacts and error bodies per endpoint.

SendGrid's error bodies differ by endpoint in the official documents (facts §2, §4):
most are ``{"errors": [{"field", "message"}]}``, but ``GET /v3/marketing/lists/{id}``
declares a bare array for 404, and some declare a bare error object. Each handler names
the style its operation declares; auth, rate-limit and server errors always use the
generic ``{"errors": [{"field": null, "message": ...}]}``.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from aiohttp import web

from sendgrid_operator.emulator.store import Contact, Store

ErrorStyle = Literal["errors", "array", "object"]

MSG_AUTH_REQUIRED = "authorization required"
MSG_ACCESS_FORBIDDEN = "access forbidden"
MSG_TOO_MANY = "too many requests"
MSG_INTERNAL = "internal server error (injected by the emulator)"
MSG_UNAVAILABLE = "service unavailable (injected by the emulator)"
MSG_NOT_FOUND = "resource not found"
MSG_BAD_JSON = "request body is not valid JSON"

_OUTPUT_SKIP = frozenset({"list_ids", "custom_fields", "_idents"})


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=json.dumps(body).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def error_body(message: str, field: str | None = None, style: ErrorStyle = "errors") -> Any:
    item: dict[str, Any] = {"message": message}
    if field is not None:
        item["field"] = field
    if style == "array":
        return [item]
    if style == "object":
        return item
    return {"errors": [item]}


def error_response(
    status: int, message: str, field: str | None = None, style: ErrorStyle = "errors"
) -> web.Response:
    return json_response(error_body(message, field, style), status)


def generic_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """401/403/429/5xx: SendGrid's ``{"errors":[{"field":null,"message":...}]}``."""
    return json_response({"errors": [{"field": None, "message": message}]}, status, headers)


def contact_json(contact: Contact, store: Store, base_url: str) -> dict[str, Any]:
    """A stored contact as ContactDetails3 (custom fields keyed by field name)."""
    contact = store.full(contact)
    body = {k: v for k, v in contact.items() if k not in _OUTPUT_SKIP}
    body["list_ids"] = sorted(contact["list_ids"])
    body["segment_ids"] = []
    fields = store.fields
    body["custom_fields"] = {
        fields[fid].name: value for fid, value in contact["custom_fields"].items() if fid in fields
    }
    body["_metadata"] = {"self": f"{base_url}/v3/marketing/contacts/{contact['id']}"}
    return body
