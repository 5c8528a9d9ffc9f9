"""The account's data: contacts, lists and custom fields, and how jobs change them.

Contacts are plain dicts indexed by lower-cased email (the main identifier), by ID, and by
the other identifiers when a contact has them. Applying an upsert is the emulator's hot
path: one pass over the rows with dict operations, IDs from a counter instead of
``uuid4()``, and one timestamp per job.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sendgrid_operator.emulator.config import MAX_LISTS_PER_CONTACT
from sendgrid_operator.emulator.faults import INJECTED_ROW_ERROR
from sendgrid_operator.emulator.fields import CustomField, value_problem
from sendgrid_operator.emulator.validate import OTHER_IDENTIFIERS, STORED_KEYS

Contact = dict[str, Any]  # stored fields + id, list_ids (frozenset), custom_fields, timestamps
RowError = tuple[int, dict[str, Any], str]  # (row index, row, reason)

# Rows with only these keys may take the bulk path (no other identifiers, no alternates).
_FAST_KEYS = STORED_KEYS - {"phone_number_id", "external_id", "anonymous_id", "alternate_emails"}
MSG_UNKNOWN_FIELD = "custom field ID {fid!r} does not exist"
MSG_MISSING_IDENTIFIER = "updating this contact requires its existing identifier {name}"
MSG_IDENTIFIER_TAKEN = "identifier {name} belongs to another contact"
MSG_LIST_CAP = f"a contact can be on at most {MAX_LISTS_PER_CONTACT} lists"


def iso_now(now: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if now is None else now))


class IdFactory:
    """UUID-shaped (version 4 layout) IDs: a random prefix per emulator and a counter."""

    def __init__(self, start: int = 0) -> None:
        raw = os.urandom(10).hex()
        self.prefix = f"{raw[:8]}-{raw[8:12]}-4{raw[12:15]}-8{raw[15:18]}-"
        self.counter = start

    def next(self) -> str:
        self.counter += 1
        return f"{self.prefix}{self.counter:012x}"


@dataclass
class ContactList:
    """A contact list and the IDs of its members."""

    id: str
    name: str
    members: set[str] = field(default_factory=set)
    created_seq: int = 0


@dataclass
class UpsertOutcome:
    created: int = 0
    updated: int = 0
    errors: list[RowError] = field(default_factory=list)
    touched: list[str] = field(default_factory=list)  # contact IDs changed


class Store:
    """All account state. Not thread-safe: used from the emulator's event loop only."""

    def __init__(self) -> None:
        self.ids = IdFactory()
        self.contacts: dict[str, Contact] = {}  # id -> contact
        self.by_email: dict[str, Contact] = {}
        self.by_ident: dict[tuple[str, str], Contact] = {}  # other identifiers, alt emails
        self.lists: dict[str, ContactList] = {}
        self.fields: dict[str, CustomField] = {}
        self.field_seq = 0
        self.list_seq = 0

    # -- lists --------------------------------------------------------------
    def create_list(self, name: str, list_id: str | None = None) -> ContactList:
        self.list_seq += 1
        lst = ContactList(list_id or self.ids.next(), name, created_seq=self.list_seq)
        self.lists[lst.id] = lst
        return lst

    def delete_list(self, list_id: str, delete_contacts: bool) -> list[str]:
        lst = self.lists.pop(list_id)
        for cid in lst.members:
            contact = self.contacts.get(cid)
            if contact is not None:
                contact["list_ids"] = contact["list_ids"] - {list_id}
        if delete_contacts:
            self.delete_contacts(lst.members)
        return list(lst.members)

    # -- custom fields ------------------------------------------------------
    def create_field(self, name: str, field_type: str) -> CustomField:
        self.field_seq += 1
        fld = CustomField(f"e{self.field_seq}_{field_type[0]}", name, field_type)
        self.fields[fld.id] = fld
        return fld

    # -- contacts -----------------------------------------------------------
    def find(self, identifier_type: str, value: str) -> Contact | None:
        if identifier_type == "email":
            value = value.lower()
            return self.by_email.get(value) or self.by_ident.get(("alternate_emails", value))
        return self.by_ident.get((identifier_type, value))

    def delete_contacts(self, ids: Iterable[str]) -> int:
        deleted = 0
        for cid in list(ids):
            contact = self.contacts.pop(cid, None)
            if contact is None:
                continue
            deleted += 1
            email = contact.get("email")
            if email is not None:
                self.by_email.pop(email, None)
            for name in OTHER_IDENTIFIERS:
                if name in contact:
                    self.by_ident.pop((name, contact[name]), None)
            for alt in contact.get("alternate_emails") or ():
                self.by_ident.pop(("alternate_emails", alt), None)
            for lid in contact["list_ids"]:
                lst = self.lists.get(lid)
                if lst is not None:
                    lst.members.discard(cid)
        return deleted

    def remove_from_list(self, list_id: str, contact_ids: list[str]) -> int:
        lst = self.lists.get(list_id)
        if lst is None:
            return 0
        removed = 0
        for cid in contact_ids:
            if cid in lst.members:
                lst.members.discard(cid)
                removed += 1
                contact = self.contacts.get(cid)
                if contact is not None:
                    contact["list_ids"] = contact["list_ids"] - {list_id}
        return removed

    def apply_upsert(
        self,
        rows: list[dict[str, Any]],
        list_ids: list[str],
        reject: Callable[[int, str | None], bool] | None = None,
        now: float | None = None,
    ) -> UpsertOutcome:
        """Apply validated rows; rows that break account-level rules go to ``errors``.

        New contacts reuse the parsed row dict as their record (no copy), and ``list_ids``
        is a frozenset shared between contacts and replaced, never mutated.
        """
        stamp = iso_now(now)
        if reject is None:
            fast = self._apply_new_by_email(rows, list_ids, stamp)
            if fast is not None:
                return fast
        out = UpsertOutcome()
        by_email = self.by_email
        contacts = self.contacts
        ftypes = {fid: f.field_type for fid, f in self.fields.items()}
        list_set = frozenset(lid for lid in list_ids if lid in self.lists)
        n_lists = len(list_set)
        touched = out.touched
        errors = out.errors
        prefix, counter = self.ids.prefix, self.ids.counter
        stored = STORED_KEYS
        common = {"list_ids": list_set, "created_at": stamp, "updated_at": stamp}
        for index, row in enumerate(rows):
            email = row.get("email")
            if email is not None:
                email = email.lower()
            if reject is not None and reject(index, email):
                errors.append((index, row, INJECTED_ROW_ERROR))
                continue
            problem: str | None = None
            custom = row.get("custom_fields")
            if custom:
                for fid, value in custom.items():
                    ftype = ftypes.get(fid)
                    if ftype is None:
                        problem = MSG_UNKNOWN_FIELD.format(fid=fid)
                        break
                    if ftype != "Text" or type(value) is not str:
                        problem = value_problem(ftype, value)
                        if problem:
                            problem = f"custom field {fid!r}: {problem}"
                            break
            contact = by_email.get(email) if email is not None else None
            others = "external_id" in row or "phone_number_id" in row or "anonymous_id" in row
            if problem is None and (
                others or email is None or (contact is not None and contact.get("_idents"))
            ):
                contact, problem = self._match_identifiers(row, email, contact)
            if problem is None and contact is not None and n_lists:
                current = contact["list_ids"]
                if (
                    len(current) + n_lists > MAX_LISTS_PER_CONTACT
                    and len(current | list_set) > MAX_LISTS_PER_CONTACT
                ):
                    problem = MSG_LIST_CAP
            if problem is not None:
                errors.append((index, row, problem))
                continue
            if contact is None:
                contact = (
                    row if row.keys() <= stored else {k: v for k, v in row.items() if k in stored}
                )
                counter += 1
                cid = f"{prefix}{counter:012x}"
                contact["id"] = cid
                if custom is None:
                    contact["custom_fields"] = {}
                contact.update(common)
                if email is not None:
                    contact["email"] = email
                    by_email[email] = contact
                contacts[cid] = contact
                if others or row.get("alternate_emails"):
                    self._index(contact)
                out.created += 1
            else:
                cid = contact["id"]
                for key, value in row.items():
                    if key in stored and key != "custom_fields":
                        contact[key] = value
                if email is not None:
                    contact["email"] = email
                if custom:
                    contact["custom_fields"].update(custom)
                if n_lists and not list_set <= contact["list_ids"]:
                    contact["list_ids"] = contact["list_ids"] | list_set
                contact["updated_at"] = stamp
                if others or row.get("alternate_emails"):
                    self._index(contact)
                out.updated += 1
            touched.append(cid)
        self.ids.counter = counter
        for lid in list_set:
            self.lists[lid].members.update(touched)
        return out

    def _apply_new_by_email(
        self, rows: list[dict[str, Any]], list_ids: list[str], stamp: str
    ) -> UpsertOutcome | None:
        """The common case in bulk: every row is a new contact identified by email only,
        with valid custom fields. Checked and applied with comprehensions and C-level
        dict/set operations; anything else returns None and takes the general path."""
        try:
            lowered = [row["email"].lower() for row in rows]
        except KeyError:
            return None
        if not self.by_email.keys().isdisjoint(lowered) or len(set(lowered)) != len(lowered):
            return None
        fast_keys = _FAST_KEYS
        if not all(row.keys() <= fast_keys for row in rows):
            return None
        ftypes = {fid: f.field_type for fid, f in self.fields.items()}
        customs = [cf for row in rows if (cf := row.get("custom_fields"))]
        if customs:
            text_ids = {fid for fid, t in ftypes.items() if t == "Text"}
            if not all(cf.keys() <= text_ids for cf in customs):
                return None
            if not all(type(v) is str for cf in customs for v in cf.values()):
                return None
        list_set = frozenset(lid for lid in list_ids if lid in self.lists)
        prefix, start = self.ids.prefix, self.ids.counter + 1
        ids = [f"{prefix}{n:012x}" for n in range(start, start + len(rows))]
        self.ids.counter += len(rows)
        for row, cid, email in zip(rows, ids, lowered, strict=True):
            row["id"] = cid
            row["email"] = email
            row["list_ids"] = list_set
            row["created_at"] = row["updated_at"] = stamp
            if "custom_fields" not in row:
                row["custom_fields"] = {}
        self.contacts.update(zip(ids, rows, strict=True))
        self.by_email.update(zip(lowered, rows, strict=True))
        for lid in list_set:
            self.lists[lid].members.update(ids)
        return UpsertOutcome(created=len(rows), touched=ids)

    def _match_identifiers(
        self, row: dict[str, Any], email: str | None, contact: Contact | None
    ) -> tuple[Contact | None, str | None]:
        for name in OTHER_IDENTIFIERS:
            if name not in row:
                continue
            other = self.by_ident.get((name, row[name]))
            if other is None:
                continue
            if contact is None:
                contact = other
            elif other is not contact:
                return contact, MSG_IDENTIFIER_TAKEN.format(name=name)
        if contact is not None:
            if contact.get("email") is not None and email != contact["email"]:
                return contact, MSG_MISSING_IDENTIFIER.format(name="email")
            for name in OTHER_IDENTIFIERS:
                if name in contact and row.get(name) != contact[name]:
                    return contact, MSG_MISSING_IDENTIFIER.format(name=name)
        return contact, None

    def _index(self, contact: Contact) -> None:
        has = False
        for name in OTHER_IDENTIFIERS:
            if contact.get(name):
                self.by_ident[(name, contact[name])] = contact
                has = True
        for alt in contact.get("alternate_emails") or ():
            self.by_ident[("alternate_emails", alt.lower())] = contact
        contact["_idents"] = has
