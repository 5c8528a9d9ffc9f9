"""Optional SQLite persistence (``--state FILE``) so a demo survives a restart.

The hot path only marks changed contact IDs; a background task writes them every
``save_interval`` seconds (serialised in the loop, written in a thread) and once more at
shutdown. Lists and custom fields are small and rewritten whole; list membership is
rebuilt from each contact's ``list_ids`` on load. Jobs and exports are not persisted:
pending jobs are applied before the final save.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from typing import Any

from sendgrid_operator.emulator.context import Context
from sendgrid_operator.emulator.fields import CustomField

SCHEMA = """
CREATE TABLE IF NOT EXISTS contacts (id TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS lists (id TEXT PRIMARY KEY, name TEXT NOT NULL, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS fields (id TEXT PRIMARY KEY, name TEXT NOT NULL, field_type TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Persistence:
    """Loads the state file at start and saves changes periodically and at stop."""

    def __init__(self, path: str, ctx: Context, interval: float) -> None:
        self.path = path
        self.ctx = ctx
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path)
        conn.executescript(SCHEMA)
        return conn

    def load(self) -> None:
        store = self.ctx.store
        with contextlib.closing(self._connect()) as conn:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            for lid, name, seq in conn.execute("SELECT id, name, seq FROM lists ORDER BY seq"):
                store.create_list(name, list_id=lid).created_seq = seq
            for fid, name, ftype in conn.execute("SELECT id, name, field_type FROM fields"):
                store.fields[fid] = CustomField(fid, name, ftype)
            for (data,) in conn.execute("SELECT data FROM contacts"):
                contact: dict[str, Any] = json.loads(data)
                contact["list_ids"] = frozenset(contact["list_ids"])
                store.contacts[contact["id"]] = contact
                if contact.get("email"):
                    store.by_email[contact["email"]] = contact
                store._index(contact)
                for lid in contact["list_ids"]:
                    if lid in store.lists:
                        store.lists[lid].members.add(contact["id"])
        store.field_seq = int(meta.get("field_seq", len(store.fields)))
        store.list_seq = int(meta.get("list_seq", len(store.lists)))
        store.ids.counter = int(meta.get("id_counter", 0))
        if "id_prefix" in meta:
            store.ids.prefix = meta["id_prefix"]

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="emulator-save")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.save()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if self.ctx.meta_dirty or self.ctx.dirty_contacts:
                await self.save()

    def _snapshot(self) -> dict[str, Any]:
        ctx, store = self.ctx, self.ctx.store
        dirty, ctx.dirty_contacts = ctx.dirty_contacts, set()
        ctx.meta_dirty = False
        upserts, deletes = [], []
        for cid in dirty:
            contact = store.contacts.get(cid)
            if contact is None:
                deletes.append((cid,))
            else:
                contact = store.full(contact)
                data = {k: v for k, v in contact.items() if k != "_idents"}
                data["list_ids"] = sorted(contact["list_ids"])
                upserts.append((cid, json.dumps(data)))
        return {
            "upserts": upserts,
            "deletes": deletes,
            "lists": [(lst.id, lst.name, lst.created_seq) for lst in store.lists.values()],
            "fields": [(f.id, f.name, f.field_type) for f in store.fields.values()],
            "meta": [
                ("field_seq", str(store.field_seq)),
                ("list_seq", str(store.list_seq)),
                ("id_counter", str(store.ids.counter)),
                ("id_prefix", store.ids.prefix),
            ],
            "full": not store.contacts and not store.lists,
        }

    def _write(self, snap: dict[str, Any]) -> None:
        with contextlib.closing(self._connect()) as conn, conn:
            if snap["full"]:
                conn.execute("DELETE FROM contacts")
            conn.executemany(
                "INSERT OR REPLACE INTO contacts (id, data) VALUES (?, ?)", snap["upserts"]
            )
            conn.executemany("DELETE FROM contacts WHERE id = ?", snap["deletes"])
            conn.execute("DELETE FROM lists")
            conn.executemany("INSERT INTO lists (id, name, seq) VALUES (?, ?, ?)", snap["lists"])
            conn.execute("DELETE FROM fields")
            conn.executemany(
                "INSERT INTO fields (id, name, field_type) VALUES (?, ?, ?)", snap["fields"]
            )
            conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", snap["meta"])

    async def save(self) -> None:
        async with self._lock:
            snap = self._snapshot()
            await asyncio.to_thread(self._write, snap)
