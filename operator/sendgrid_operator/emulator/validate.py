"""Synchronous checks of an upsert body: what SendGrid answers with 400 before queueing.

These are the request schema's rules ([C] ContactRequest): types, per-field maximum
lengths, at least one identifier, the 30,000-contact ceiling. They run once per row with
plain dict operations (no schema library) because this is the emulator's hot path. Rules
that need the account's state (custom field IDs and types, identifier conflicts) are
checked when the job is applied and reject single rows into the job's errors file.
"""

from __future__ import annotations

import re
from typing import Any

from sendgrid_operator.emulator.config import MAX_CONTACTS_PER_UPSERT

# Field -> maximum length (None: a string without a documented maximum).
STRING_LIMITS: dict[str, int | None] = {
    "email": 254,
    "phone_number_id": None,
    "external_id": 254,
    "anonymous_id": 254,
    "first_name": 50,
    "last_name": 50,
    "address_line_1": 100,
    "address_line_2": 100,
    "city": 60,
    "state_province_region": 50,
    "country": 50,
    "postal_code": None,
}
# The same as one lookup table: >0 maximum length, 0 no maximum.
_LIMITS: dict[str, int] = {k: v or 0 for k, v in STRING_LIMITS.items()}
IDENTIFIERS = ("email", "phone_number_id", "external_id", "anonymous_id")
OTHER_IDENTIFIERS = ("phone_number_id", "external_id", "anonymous_id")
STORED_KEYS = frozenset([*STRING_LIMITS, "alternate_emails", "custom_fields"])
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
E164_RE = re.compile(r"^\+[1-9]\d{1,14}$")
MAX_ERRORS = 100  # a 400 lists at most this many problems

MSG_BODY_NOT_OBJECT = "request body must be a JSON object"
MSG_CONTACTS_REQUIRED = "contacts is required and must be a non-empty array"
MSG_TOO_MANY_CONTACTS = f"contacts must contain at most {MAX_CONTACTS_PER_UPSERT} items"
MSG_LIST_IDS = "list_ids must be an array of list ID strings"
MSG_NO_IDENTIFIER = (
    "contact must have at least one identifier: email, phone_number_id, external_id or anonymous_id"
)
MSG_INVALID_EMAIL = "email is not a valid email address"
MSG_INVALID_PHONE = "phone_number_id must be a phone number in E.164 format"


def _error(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def check_upsert_body(body: Any) -> list[dict[str, str]]:
    """Every (up to MAX_ERRORS) reason the body is invalid; empty if it may be queued."""
    if not isinstance(body, dict):
        return [_error("", MSG_BODY_NOT_OBJECT)]
    contacts = body.get("contacts")
    if not isinstance(contacts, list) or not contacts:
        return [_error("contacts", MSG_CONTACTS_REQUIRED)]
    if len(contacts) > MAX_CONTACTS_PER_UPSERT:
        return [_error("contacts", MSG_TOO_MANY_CONTACTS)]
    list_ids = body.get("list_ids", [])
    if not isinstance(list_ids, list) or not all(isinstance(i, str) for i in list_ids):
        return [_error("list_ids", MSG_LIST_IDS)]
    errors: list[dict[str, str]] = []
    limit_of = _LIMITS.get
    email_ok = EMAIL_RE.match
    for index, row in enumerate(contacts):
        if type(row) is not dict:
            errors.append(_error(f"contacts[{index}]", "contact must be an object"))
            continue
        for key, value in row.items():
            limit = limit_of(key, -1)
            if limit > 0:
                if type(value) is not str or len(value) > limit:
                    errors.append(_field_error(index, key, value, limit))
            elif limit == 0:
                if type(value) is not str:
                    errors.append(_field_error(index, key, value, None))
            elif key == "custom_fields":
                if type(value) is not dict:
                    errors.append(
                        _error(
                            f"contacts[{index}].custom_fields", "custom_fields must be an object"
                        )
                    )
            elif key == "alternate_emails":
                problem = _alternate_emails_problem(value)
                if problem:
                    errors.append(_error(f"contacts[{index}].alternate_emails", problem))
        email = row.get("email")
        if email is None:
            if not any(row.get(k) for k in OTHER_IDENTIFIERS):
                errors.append(_error(f"contacts[{index}]", MSG_NO_IDENTIFIER))
        elif type(email) is str and not email_ok(email):
            errors.append(_error(f"contacts[{index}].email", MSG_INVALID_EMAIL))
        if "phone_number_id" in row:
            phone = row["phone_number_id"]
            if type(phone) is str and not E164_RE.match(phone):
                errors.append(_error(f"contacts[{index}].phone_number_id", MSG_INVALID_PHONE))
        if len(errors) >= MAX_ERRORS:
            break
    return errors[:MAX_ERRORS]


def _field_error(index: int, key: str, value: object, limit: int | None) -> dict[str, str]:
    if type(value) is not str:
        return _error(f"contacts[{index}].{key}", f"{key} must be a string")
    return _error(f"contacts[{index}].{key}", f"{key} must be at most {limit} characters")


def _alternate_emails_problem(value: object) -> str | None:
    if not isinstance(value, list) or len(value) > 5:
        return "alternate_emails must be an array of at most 5 emails"
    for item in value:
        if not isinstance(item, str) or len(item) > 254 or not EMAIL_RE.match(item):
            return "alternate_emails must contain valid emails of at most 254 characters"
    return None
