"""Synchronous checks of an upsert body: what SendGrid answers with 400 before queueing.

These are the request schema's rules ([C] ContactRequest): types, per-field maximum
lengths, at least one identifier, the 30,000-contact ceiling. They run once per row with
plain dict operations (no schema library) because this is the emulator's hot path. Rules
that need the account's state (custom field IDs and types, identifier conflicts) are
checked when the job is applied and reject single rows into the job's errors file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from itertools import chain
from operator import itemgetter
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
# Rows with only these keys may take the bulk paths (email the only identifier, no alternates).
SIMPLE_KEYS = STORED_KEYS - {"phone_number_id", "external_id", "anonymous_id", "alternate_emails"}
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
E164_RE = re.compile(r"^\+[1-9]\d{1,14}$")
MAX_ERRORS = 100  # a 400 lists at most this many problems

# EMAIL_RE for ASCII text, one email per line, in one deterministic (possessive) pass. _A is
# ASCII minus "@" and minus what \s matches there (\t \n \v \f \r, \x1c-\x1f, space);
# _A_NO_DOT also minus ".". A domain is one character, non-dots, the first later dot and one
# or more characters: it matches exactly when the domain has a dot with characters on both
# sides, as EMAIL_RE's [^@\s]+\.[^@\s]+ requires.
_A = r"[\x00-\x08\x0e-\x1b!-?A-\x7f]"
_A_NO_DOT = r"[\x00-\x08\x0e-\x1b!-\-/-?A-\x7f]"
_EMAIL_LINES_RE = re.compile(rf"(?:{_A}++@{_A}{_A_NO_DOT}*+\.{_A}++\n)*+")
_GET_EMAIL = itemgetter("email")

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


@dataclass(frozen=True)
class SimpleRows:
    """What the columnar check learned about rows it found simple and valid (every row
    has an email, its only identifier; keys in ``SIMPLE_KEYS``; ASCII emails). The job's
    apply step trusts it instead of re-checking the rows; it checks only what depends on
    the account then (existing emails, duplicates, custom field IDs and types)."""

    emails: list[str]  # the rows' emails, lower-cased
    lowered: bool  # some email had upper-case letters (else ``emails`` are the rows' own)
    custom_ids: frozenset[str]  # every custom field ID the rows use
    custom_text: bool  # every custom field value is a string
    custom_every_row: bool  # every row has custom_fields

    def chunk(self, start: int, stop: int) -> SimpleRows:
        """The same facts for ``rows[start:stop]`` (the custom-field ones as an upper bound)."""
        return replace(self, emails=self.emails[start:stop])


def simple_upsert_body(body: Any) -> SimpleRows | None:
    """A ``SimpleRows`` for a body that certainly passes ``check_upsert_body`` and whose
    rows are simple, or None: then call ``check_upsert_body``. A None never means
    "invalid", only "not decided here"."""
    if type(body) is not dict:
        return None
    rows = body.get("contacts")
    if type(rows) is not list or not 0 < len(rows) <= MAX_CONTACTS_PER_UPSERT:
        return None
    list_ids = body.get("list_ids", [])
    if type(list_ids) is not list or not set(map(type, list_ids)) <= {str}:
        return None
    return simple_rows(rows)


def simple_rows(rows: list[Any]) -> SimpleRows | None:
    """The rows' half of ``simple_upsert_body``: columnar, with C-level operations (``map``,
    ``set``, one regular expression over all emails joined), so a 30,000-row body is
    checked without a Python loop per row."""
    if not rows:
        return None
    try:
        # Raises KeyError for a row without an email, TypeError for a row that isn't a dict.
        emails: list[Any] = list(map(_GET_EMAIL, rows))
        joined = "\n".join(emails)  # TypeError: an email that isn't a string
    except (KeyError, TypeError):
        return None
    # Usually every row has the first row's keys: then the key counts add up, and each of
    # those keys is found in every row (else _simple_rows starts over with all keys).
    uniform = sum(map(len, rows)) == len(rows) * len(rows[0])
    return _simple_rows(rows, emails, joined, set(rows[0]) if uniform else None)


def _simple_rows(
    rows: list[dict[str, Any]], emails: list[str], joined: str, uniform_keys: set[str] | None
) -> SimpleRows | None:
    keys = set().union(*rows) if uniform_keys is None else uniform_keys
    if not keys <= SIMPLE_KEYS or max(map(len, emails)) > _LIMITS["email"]:
        return None
    if (
        not joined.isascii()
        or joined.count("\n") != len(emails) - 1
        or _EMAIL_LINES_RE.fullmatch(joined + "\n") is None
    ):
        return None
    try:
        columns = {
            key: _column(rows, key, strict=uniform_keys is not None)
            for key in keys
            if key != "email"
        }
    except KeyError:  # the rows don't all have the first row's keys
        return _simple_rows(rows, emails, joined, None)
    custom_ids: frozenset[str] = frozenset()
    custom_text = True
    custom_every_row = False
    customs = columns.pop("custom_fields", None)
    if customs is not None:
        try:  # dict.values raises TypeError for a custom_fields that isn't an object
            value_types = set(map(type, chain.from_iterable(map(dict.values, customs))))
        except TypeError:
            return None
        custom_ids = frozenset().union(*customs)
        custom_text = value_types <= {str}
        custom_every_row = len(customs) == len(rows)
    for key, values in columns.items():
        if set(map(type, values)) != {str}:
            return None
        limit = _LIMITS[key]
        if limit and max(map(len, values)) > limit:
            return None
    lowered = joined.lower()
    if lowered != joined:
        emails = lowered.split("\n")
    return SimpleRows(emails, lowered != joined, custom_ids, custom_text, custom_every_row)


def _column(rows: list[dict[str, Any]], key: str, strict: bool) -> list[Any]:
    """The values of ``key`` in the rows that have it (``strict``: KeyError unless all do)."""
    try:
        return list(map(itemgetter(key), rows))
    except KeyError:
        if strict:
            raise
        return [row[key] for row in rows if key in row]


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
