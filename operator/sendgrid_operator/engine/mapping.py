"""The field mapping, resolved against SendGrid, and the per-row validation it implies.

Why here and not in the sources: a row becomes a SendGrid contact in exactly one place, so
what is checked, how values are normalised and how the JSON is encoded is the same for
every source. Custom fields are resolved by *name* to SendGrid's field IDs (upserts key
them by ID, facts §2/§6) before anything is sent; an unknown name or an impossible type
stops the run with a message naming the field.

Each valid row is encoded to compact UTF-8 JSON exactly once; batching, hashing and the
request body all use those bytes.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import orjson

from sendgrid_operator.api.export import FieldMapping
from sendgrid_operator.engine.outcomes import MappingError
from sendgrid_operator.sendgrid.client import FieldDefinition

# -- reasons a row is not sent (RunCounts.invalid_by_reason keys) ----------------------
MISSING_EMAIL = "missing_email"
INVALID_EMAIL = "invalid_email"
TOO_LONG = "too_long"  # too_long:<field>
INVALID_NUMBER = "invalid_number"  # invalid_number:<field>
INVALID_DATE = "invalid_date"  # invalid_date:<field>

#: SendGrid's per-field maximum lengths (facts §2, ContactRequest). None: no maximum given.
FIELD_LIMITS: dict[str, int | None] = {
    "email": 254,
    "first_name": 50,
    "last_name": 50,
    "country": 50,
    "state_province_region": 50,
    "city": 60,
    "postal_code": None,
    "address_line_1": 100,
    "address_line_2": 100,
    "external_id": 254,
}
#: FieldMapping attribute -> SendGrid reserved field name (email is handled apart).
RESERVED_FIELDS: tuple[tuple[str, str], ...] = (
    ("first_name", "first_name"),
    ("last_name", "last_name"),
    ("country", "country"),
    ("state_province_region", "state_province_region"),
    ("city", "city"),
    ("postal_code", "postal_code"),
    ("address_line1", "address_line_1"),
    ("address_line2", "address_line_2"),
    ("external_id", "external_id"),
)
MAX_LOCAL_PART = 64

# A pragmatic subset of RFC 5322 (no DNS): a dot-atom local part and a domain of LDH labels
# with an alphabetic (or IDNA "xn--") top-level label. Applied to the trimmed, lower-cased
# address; non-ASCII addresses are refused (SendGrid's acceptance of them is undocumented).
_ATEXT = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
EMAIL_RE = re.compile(
    rf"^{_ATEXT}+(?:\.{_ATEXT}+)*@(?:{_LABEL}\.)+(?:[a-z]{{2,63}}|xn--[a-z0-9-]{{1,59}})$"
)
# SendGrid Date fields: ISO 8601 date or date-time, or MM/DD/YYYY.
DATE_RE = re.compile(
    r"^(\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?|\d{2}/\d{2}/\d{4})$"
)

ColumnKind = Literal["string", "number", "date", "bool", "other", "any"]
FieldType = Literal["Text", "Number", "Date"]


def normalize_email(value: Any) -> str | None:
    """Trimmed and lower-cased, or None when empty."""
    if value is None:
        return None
    text = (value if isinstance(value, str) else str(value)).strip().lower()
    return text or None


def valid_email(email: str) -> bool:
    """Syntax only: at most 254 characters, a local part of at most 64, RFC 5322 subset."""
    if len(email) > 254:
        return False
    at = email.rfind("@")
    return 0 < at <= MAX_LOCAL_PART and EMAIL_RE.match(email) is not None


@dataclass(frozen=True)
class CustomTarget:
    column: str
    field_id: str
    name: str
    field_type: FieldType


@dataclass(frozen=True)
class CompiledMapping:
    """The mapping resolved to SendGrid names and field IDs."""

    email_column: str
    reserved: tuple[tuple[str, str, int | None], ...]  # (column, sendgrid field, limit)
    custom: tuple[CustomTarget, ...]

    @property
    def columns(self) -> list[str]:
        cols = [
            self.email_column,
            *(c for c, _, _ in self.reserved),
            *(c.column for c in self.custom),
        ]
        return list(dict.fromkeys(cols))

    def describe(self) -> str:
        """The mapping as text, for the content hash's documentation and debugging."""
        parts = [f"email={self.email_column}"]
        parts += [f"{f}={c}" for c, f, _ in self.reserved]
        parts += [f"{t.name}({t.field_id})={t.column}" for t in self.custom]
        return ",".join(parts)


def compile_mapping(mapping: FieldMapping, fields: Sequence[FieldDefinition]) -> CompiledMapping:
    """Resolve custom fields by name; unknown names stop the run naming the field."""
    reserved: list[tuple[str, str, int | None]] = []
    for attr, sg_field in RESERVED_FIELDS:
        column = getattr(mapping, attr)
        if column:
            reserved.append((column, sg_field, FIELD_LIMITS[sg_field]))
    custom: list[CustomTarget] = []
    by_name = {f.name: f for f in fields if not f.reserved}
    for item in mapping.custom_fields or ():
        definition = by_name.get(item.name)
        if definition is None:
            known = ", ".join(sorted(by_name)) or "none"
            raise MappingError(
                f"custom field {item.name!r} (spec.fieldMapping.customFields) does not exist in "
                f"this SendGrid account (custom fields found: {known}); create it in SendGrid "
                "first or correct the name (names are case-sensitive)"
            )
        ftype = (
            definition.field_type if definition.field_type in ("Text", "Number", "Date") else "Text"
        )
        custom.append(CustomTarget(item.column, definition.id, item.name, ftype))  # type: ignore[arg-type]
    return CompiledMapping(mapping.email, tuple(reserved), tuple(custom))


def check_columns(compiled: CompiledMapping, found: Mapping[str, ColumnKind], where: str) -> None:
    """Every mapped column exists in the source, and typed columns fit their custom fields."""
    names = set(found)
    for column in compiled.columns:
        if column not in names:
            listing = ", ".join(sorted(found)) or "none"
            raise MappingError(
                f"{where}: column {column!r} named in spec.fieldMapping is not in the source; "
                f"columns found: {listing}"
            )
    for target in compiled.custom:
        kind = found[target.column]
        if target.field_type == "Number" and kind in ("date", "bool", "other"):
            raise MappingError(
                f"{where}: custom field {target.name!r} is a Number field but column "
                f"{target.column!r} holds {kind} values; map a numeric column"
            )
        if target.field_type == "Date" and kind in ("number", "bool", "other"):
            raise MappingError(
                f"{where}: custom field {target.name!r} is a Date field but column "
                f"{target.column!r} holds {kind} values; map a date or text column"
            )


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None
        return int(value) if value == value.to_integral_value() else float(value)
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _date(value: Any) -> str | None:
    if isinstance(value, dt.datetime):
        stamp: dt.datetime = value
        if stamp.tzinfo is not None:
            stamp = stamp.astimezone(dt.UTC).replace(tzinfo=None)
        return stamp.replace(microsecond=0).isoformat() + "Z"
    if isinstance(value, dt.date):
        day: dt.date = value
        return day.isoformat()
    text = str(value).strip()
    return text if DATE_RE.match(text) else None


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


#: (email, encoded contact, reason, field): one of encoded / reason is set.
Converted = tuple[str | None, bytes | None, str | None, str | None]


def convert_row(
    compiled: CompiledMapping,
    row: Mapping[str, Any],
    _match: Any = EMAIL_RE.match,
    _dumps: Any = orjson.dumps,
) -> Converted:
    """Validate one row and encode it as SendGrid contact JSON, or say why not.

    This runs once per row of every segment, so the common path is written inline
    (normalise, check and encode with no helper calls for plain strings)."""
    raw = row.get(compiled.email_column)
    if raw is None:
        return None, None, MISSING_EMAIL, "email"
    email = (raw if raw.__class__ is str else str(raw)).strip().lower()
    if not email:
        return None, None, MISSING_EMAIL, "email"
    if len(email) > 254 or not 0 < email.rfind("@") <= MAX_LOCAL_PART or _match(email) is None:
        return email, None, INVALID_EMAIL, "email"
    contact: dict[str, Any] = {"email": email}
    for column, sg_field, limit in compiled.reserved:
        value = row.get(column)
        if value is None:
            continue
        text = value.strip() if value.__class__ is str else _text(value)
        if not text:
            continue
        if limit is not None and len(text) > limit:
            return email, None, f"{TOO_LONG}:{sg_field}", sg_field
        contact[sg_field] = text
    if compiled.custom:
        custom: dict[str, Any] = {}
        for target in compiled.custom:
            value = row.get(target.column)
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            if target.field_type == "Number":
                number = _number(value)
                if number is None:
                    return email, None, f"{INVALID_NUMBER}:{target.name}", target.name
                custom[target.field_id] = number
            elif target.field_type == "Date":
                date = _date(value)
                if date is None:
                    return email, None, f"{INVALID_DATE}:{target.name}", target.name
                custom[target.field_id] = date
            else:
                custom[target.field_id] = _text(value)
        if custom:
            contact["custom_fields"] = custom
    return email, _dumps(contact), None, None
