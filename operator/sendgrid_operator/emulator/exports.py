"""Contact exports: ``POST /v3/marketing/contacts/exports`` and the files it produces.

SendGrid does not document the export file's columns (facts §5). The emulator writes one
row per contact with ``CONTACT_ID``, ``EMAIL``, the other reserved fields, ``CREATED_AT``,
``UPDATED_AT`` and one column per custom field (named by the field's name); ``json`` files
are newline-delimited JSON objects with the same keys. Files are split at
``max_file_size`` MB (10^6 bytes) and served, without auth, under ``/_emulator/files/``.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import Any

from sendgrid_operator.emulator.store import Store

RESERVED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("CONTACT_ID", "id"),
    ("EMAIL", "email"),
    ("FIRST_NAME", "first_name"),
    ("LAST_NAME", "last_name"),
    ("ALTERNATE_EMAILS", "alternate_emails"),
    ("ADDRESS_LINE_1", "address_line_1"),
    ("ADDRESS_LINE_2", "address_line_2"),
    ("CITY", "city"),
    ("STATE_PROVINCE_REGION", "state_province_region"),
    ("POSTAL_CODE", "postal_code"),
    ("COUNTRY", "country"),
    ("PHONE_NUMBER_ID", "phone_number_id"),
    ("EXTERNAL_ID", "external_id"),
    ("ANONYMOUS_ID", "anonymous_id"),
    ("CREATED_AT", "created_at"),
    ("UPDATED_AT", "updated_at"),
)
EXPORT_TTL_SECONDS = 72 * 3600


@dataclass
class Export:
    """One export job and, once ready, its files' contents."""

    id: str
    list_ids: list[str]
    file_type: str
    max_file_size: int
    due: float
    created_at: str
    status: str = "pending"
    updated_at: str = ""
    completed_at: str | None = None
    expires_at: str = ""
    files: list[bytes] = field(default_factory=list)
    contact_count: int = 0
    message: str | None = None

    def to_json(self, base_url: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "created_at": self.created_at,
            "updated_at": self.updated_at or self.created_at,
            "expires_at": self.expires_at,
            "_metadata": {"self": f"{base_url}/v3/marketing/contacts/exports/{self.id}"},
        }
        if self.status == "ready":
            ext = self.file_type
            body["urls"] = [
                f"{base_url}/_emulator/files/exports/{self.id}/{n}.{ext}"
                for n in range(len(self.files))
            ]
            body["contact_count"] = self.contact_count
            if self.completed_at:
                body["completed_at"] = self.completed_at
        if self.message:
            body["message"] = self.message
        return body


def render(store: Store, export: Export) -> None:
    """Snapshot the selected contacts into the export's files."""
    if export.list_ids:
        ids: set[str] = set()
        for lid in export.list_ids:
            lst = store.lists.get(lid)
            if lst is not None:
                ids |= lst.members
        contacts = [store.contacts[c] for c in ids if c in store.contacts]
    else:
        contacts = list(store.contacts.values())
    custom = list(store.fields.values())
    header = [name for name, _ in RESERVED_COLUMNS] + [f.name for f in custom]
    limit = max(1, export.max_file_size) * 1_000_000
    files: list[bytes] = []
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if export.file_type == "csv":
        writer.writerow(header)
    full = store.full
    for batched in contacts:
        contact = full(batched)
        values: list[Any] = []
        for _, key in RESERVED_COLUMNS:
            value = contact.get(key, "")
            values.append(",".join(value) if isinstance(value, list) else value)
        cf = contact["custom_fields"]
        values.extend(cf.get(f.id, "") for f in custom)
        if export.file_type == "csv":
            writer.writerow(values)
        else:
            buf.write(json.dumps(dict(zip(header, values, strict=True))) + "\n")
        if buf.tell() >= limit:
            files.append(buf.getvalue().encode())
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            if export.file_type == "csv":
                writer.writerow(header)
    if buf.tell() or not files:
        files.append(buf.getvalue().encode())
    export.files = files
    export.contact_count = len(contacts)
