"""The account's data: contacts, lists and custom fields, and how jobs change them.

Contacts are plain dicts indexed by lower-cased email (the main identifier), by ID, and by
the other identifiers when a contact has them. Applying an upsert is the emulator's hot
path: one pass over the rows with dict operations, IDs from a counter instead of
``uuid4()``, and one timestamp per job.

Contacts created by the bulk path don't carry ``list_ids``, ``created_at`` and
``updated_at``: their ``Batch`` (found by ID) holds them once for all its contacts, until
the contact is changed (then it is *materialized*: the three keys are added, in the order
the general path stores them). Read contacts through ``full()``, ``list_ids_of()`` and
``updated_at_of()``; a contact is batched exactly when it has no ``created_at``.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sendgrid_operator.emulator.config import MAX_LISTS_PER_CONTACT
from sendgrid_operator.emulator.faults import INJECTED_ROW_ERROR
from sendgrid_operator.emulator.fields import CustomField, value_problem
from sendgrid_operator.emulator.validate import (
    OTHER_IDENTIFIERS,
    STORED_KEYS,
    SimpleRows,
    simple_rows,
)

Contact = dict[str, Any]  # stored fields + id, list_ids (frozenset), custom_fields, timestamps
RowError = tuple[int, dict[str, Any], str]  # (row index, row, reason)

MSG_UNKNOWN_FIELD = "custom field ID {fid!r} does not exist"
MSG_MISSING_IDENTIFIER = "updating this contact requires its existing identifier {name}"
MSG_IDENTIFIER_TAKEN = "identifier {name} belongs to another contact"
MSG_LIST_CAP = f"a contact can be on at most {MAX_LISTS_PER_CONTACT} lists"


_LOW_HEX = [f"{i:03x}" for i in range(4096)]
_MAX_COUNTER = 16**12  # IDs keep 12 hex digits below this


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

    def take(self, n: int) -> list[str]:
        """The next ``n`` IDs, the same as ``n`` calls of ``next()``: a shared head per
        4,096 IDs plus three precomputed hex digits, joined by C-level ``map``."""
        first, end = self.counter + 1, self.counter + 1 + n
        self.counter += n
        if end > _MAX_COUNTER:
            return [f"{self.prefix}{c:012x}" for c in range(first, end)]
        ids: list[str] = []
        while first < end:
            high = first >> 12
            stop = min(end, (high + 1) << 12)
            ids += map(
                f"{self.prefix}{high:09x}".__add__, _LOW_HEX[first & 0xFFF : stop - (high << 12)]
            )
            first = stop
        return ids


@dataclass
class ContactList:
    """A contact list and the IDs of its members."""

    id: str
    name: str
    members: set[str] = field(default_factory=set)
    created_seq: int = 0


@dataclass
class Batch:
    """What the contacts the bulk path created together share: IDs ``first``..``last``
    (counter values under ``prefix``), their lists and their creation (= update) time."""

    prefix: str
    first: int
    last: int
    list_ids: frozenset[str]
    created_at: str


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
        self.batches: list[Batch] = []
        self._batch_firsts: list[int] = []  # batches' ``first``, ascending, for bisect

    # -- batched contacts ---------------------------------------------------
    def _batch_of(self, contact: Contact) -> Batch:
        cid: str = contact["id"]
        counter = int(cid[-12:], 16)
        batch = self.batches[bisect_right(self._batch_firsts, counter) - 1]
        assert cid.startswith(batch.prefix) and counter <= batch.last, cid
        return batch

    def full(self, contact: Contact) -> Contact:
        """The contact with every stored key: itself, or for a batched contact a copy with
        ``list_ids``, ``created_at`` and ``updated_at`` (the general path's key order)."""
        if "created_at" in contact:
            return contact
        batch = self._batch_of(contact)
        return {
            **contact,
            "list_ids": batch.list_ids,
            "created_at": batch.created_at,
            "updated_at": batch.created_at,
        }

    def materialize(self, contact: Contact) -> Contact:
        """Give a batched contact its own ``list_ids``/``created_at``/``updated_at`` (before
        changing any of them); a no-op for other contacts. Returns the contact."""
        if "created_at" not in contact:
            batch = self._batch_of(contact)
            contact["list_ids"] = batch.list_ids
            contact["created_at"] = contact["updated_at"] = batch.created_at
        return contact

    def list_ids_of(self, contact: Contact) -> frozenset[str]:
        lids: frozenset[str] | None = contact.get("list_ids")
        return self._batch_of(contact).list_ids if lids is None else lids

    def updated_at_of(self, contact: Contact) -> str:
        stamp: str | None = contact.get("updated_at")
        return self._batch_of(contact).created_at if stamp is None else stamp

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
            if contact is not None and "created_at" in contact:
                contact["list_ids"] = contact["list_ids"] - {list_id}
        # Batched contacts still in a batch's lists are members of all of them (leaving a
        # list materializes a contact), so the batch records say it for all at once.
        for batch in self.batches:
            if list_id in batch.list_ids:
                batch.list_ids = batch.list_ids - {list_id}
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
            for lid in self.list_ids_of(contact):
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
                    self.materialize(contact)
                    contact["list_ids"] = contact["list_ids"] - {list_id}
        return removed

    def apply_upsert(
        self,
        rows: list[dict[str, Any]],
        list_ids: list[str],
        reject: Callable[[int, str | None], bool] | None = None,
        now: float | None = None,
        simple: SimpleRows | None = None,
    ) -> UpsertOutcome:
        """Apply validated rows; rows that break account-level rules go to ``errors``.

        ``simple``: what the request checks found about the rows (``validate.SimpleRows``),
        if they found every row simple; without it the rows are looked at here. New
        contacts reuse the parsed row dict as their record (no copy), and ``list_ids`` is a
        frozenset shared between contacts and replaced, never mutated.
        """
        stamp = iso_now(now)
        if reject is None:
            if simple is None:
                simple = simple_rows(rows)
            if simple is not None:
                fast = self._apply_new_simple(rows, simple, list_ids, stamp)
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
            if contact is not None:
                self.materialize(contact)
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

    def _apply_new_simple(
        self, rows: list[dict[str, Any]], simple: SimpleRows, list_ids: list[str], stamp: str
    ) -> UpsertOutcome | None:
        """The common case in bulk: every row is a new contact identified by email only,
        with valid custom fields. The request checks established the rows' shape
        (``simple``); what depends on the account is checked here with set operations.
        The contacts get an ID (and their lower-cased email) and share one ``Batch``; they
        equal what the general path makes (see ``full()``). When any row is not such a
        row, returns None before changing anything."""
        n = len(rows)
        emails = simple.emails
        by_email = self.by_email
        if len(emails) != n or not by_email.keys().isdisjoint(emails):
            return None
        if simple.custom_ids:
            text_ids = {fid for fid, f in self.fields.items() if f.field_type == "Text"}
            if not simple.custom_text or not simple.custom_ids <= text_ids:
                return None
        size = len(by_email)
        by_email.update(zip(emails, rows, strict=True))
        if len(by_email) != size + n:  # an email twice in the rows: undo, the general path
            for email in emails:
                by_email.pop(email, None)
            return None
        list_set = frozenset(lid for lid in list_ids if lid in self.lists)
        first = self.ids.counter + 1
        ids = self.ids.take(n)
        common: dict[str, Any] | None = None
        if self.batches and first <= self.batches[-1].last:  # the counter was set back
            common = {"list_ids": list_set, "created_at": stamp, "updated_at": stamp}
        else:
            self.batches.append(Batch(self.ids.prefix, first, self.ids.counter, list_set, stamp))
            self._batch_firsts.append(first)
        if simple.lowered:
            for row, email in zip(rows, emails, strict=True):
                row["email"] = email
        if simple.custom_every_row:
            for row, cid in zip(rows, ids, strict=True):
                row["id"] = cid
        else:
            for row, cid in zip(rows, ids, strict=True):
                row["id"] = cid
                if "custom_fields" not in row:
                    row["custom_fields"] = {}
        if common is not None:
            for row in rows:
                row.update(common)
        self.contacts.update(zip(ids, rows, strict=True))
        for lid in list_set:
            self.lists[lid].members.update(ids)
        return UpsertOutcome(created=n, touched=ids)

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
