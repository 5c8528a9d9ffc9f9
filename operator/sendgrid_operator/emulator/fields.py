"""Field definitions: SendGrid's reserved fields, custom-field rules and value checks.

Reserved field IDs and names are those of the spec's example ([F] GET
/v3/marketing/field_definitions). Custom fields get server-assigned IDs ``e<N>_<T|N|D>``
(opaque like SendGrid's ``w1`` / ``a1_T``; clients must resolve them by name).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

FIELD_TYPES = ("Text", "Number", "Date")
_RESERVED: tuple[tuple[str, str, str, bool], ...] = (
    ("_rf0_T", "first_name", "Text", False),
    ("_rf1_T", "last_name", "Text", False),
    ("_rf2_T", "email", "Text", False),
    ("_rf3_T", "alternate_emails", "Text", False),
    ("_rf4_T", "address_line_1", "Text", False),
    ("_rf5_T", "address_line_2", "Text", False),
    ("_rf6_T", "city", "Text", False),
    ("_rf7_T", "state_province_region", "Text", False),
    ("_rf8_T", "postal_code", "Text", False),
    ("_rf9_T", "country", "Text", False),
    ("_rf10_T", "phone_number", "Text", False),
    ("_rf11_T", "whatsapp", "Text", False),
    ("_rf12_T", "line", "Text", False),
    ("_rf13_T", "facebook", "Text", False),
    ("_rf14_T", "unique_name", "Text", False),
    ("_rf15_T", "email_domains", "Text", True),
    ("_rf16_D", "last_clicked", "Date", True),
    ("_rf17_D", "last_opened", "Date", True),
    ("_rf18_D", "last_emailed", "Date", True),
    ("_rf19_T", "singlesend_id", "Text", True),
    ("_rf20_T", "automation_id", "Text", True),
    ("_rf21_D", "created_at", "Date", True),
    ("_rf22_D", "updated_at", "Date", True),
    ("_rf23_T", "contact_id", "Text", True),
)
RESERVED_NAMES = frozenset(name for _, name, _, _ in _RESERVED) | {
    "phone_number_id",
    "external_id",
    "anonymous_id",
}
RESERVED_FIELDS: list[dict[str, Any]] = [
    {"id": fid, "name": name, "field_type": ftype, "read_only": ro}
    for fid, name, ftype, ro in _RESERVED
]

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Date values: ISO 8601 date or date-time, or the US form MM/DD/YYYY SendGrid's UI shows.
DATE_RE = re.compile(
    r"^(\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?|\d{2}/\d{2}/\d{4})$"
)

MSG_NAME_CHARS = (
    "custom field names may contain only letters, digits and '_', and must not start with a digit"
)
MSG_NAME_TAKEN = "a custom field with this name already exists"
MSG_NAME_RESERVED = "this name is reserved"
MSG_FIELD_CAP = "custom field limit reached: an account can have at most 500 custom fields"
MSG_BAD_TYPE = "field_type must be one of Text, Number, Date"
MSG_NOT_FOUND = "custom field not found"
MSG_NAME_LENGTH = "name must be 1 to 100 characters"


@dataclass
class CustomField:
    """A custom field definition."""

    id: str
    name: str
    field_type: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "field_type": self.field_type}


def name_problem(
    name: object, existing: list[CustomField], own_id: str | None = None
) -> str | None:
    """Why ``name`` cannot be a custom field name, or None if it can."""
    if not isinstance(name, str) or not 1 <= len(name) <= 100:
        return MSG_NAME_LENGTH
    if not NAME_RE.match(name):
        return MSG_NAME_CHARS
    lowered = name.lower()
    if lowered in RESERVED_NAMES:
        return MSG_NAME_RESERVED
    if any(f.name.lower() == lowered and f.id != own_id for f in existing):
        return MSG_NAME_TAKEN
    return None


def value_problem(field_type: str, value: object) -> str | None:
    """Why ``value`` is not acceptable for a field of ``field_type``, or None."""
    if field_type == "Text":
        return None if isinstance(value, str) else "value for a Text field must be a string"
    if field_type == "Number":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else "value for a Number field must be a JSON number"
    if isinstance(value, str) and DATE_RE.match(value):
        return None
    return "value for a Date field must be a date string (YYYY-MM-DD, ISO 8601, or MM/DD/YYYY)"
