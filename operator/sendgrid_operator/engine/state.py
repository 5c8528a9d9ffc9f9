"""Incremental state: what the last runs applied, compact and without readable PII.

Why: an unchanged re-run should send nothing, and mirror must only remove contacts this
export put on a list. Both need memory of past runs; this module is that memory.

One entry per contact, in three parallel arrays sorted by key:

- ``keys``: 64-bit BLAKE2b of the lower-cased email, keyed with a random per-export salt
  (so the state holds no email; note the salt is stored beside it, so it defeats lookup
  tables, not a dictionary attack by someone holding the state);
- ``content``: 32-bit CRC of the exact contact JSON sent, seeded with the salt and the list IDs (custom
  fields are keyed by field ID inside the JSON, so a re-created field re-sends). 0 means
  "not known to be applied": the contact is sent on the next run;
- ``flags``: bit *i* set when this export added the contact to ``list_ids[i]`` (ownership,
  used by mirror).

Serialised as a small JSON header plus the arrays (keys delta-encoded) compressed with
zlib. A :class:`StateStore` only moves the bytes: a file for the local command, something
in the cluster for the Job. Losing the state is safe: the next run is a full run, and
mirror removes nothing that run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

log = logging.getLogger(__name__)

MAGIC = b"SGOSTATE"
VERSION = 1
MAX_LISTS = 16
DEFAULT_STATE_DIR = Path(".sendgrid-operator") / "state"


class StateStore(Protocol):
    """Where an export's state bytes live between runs."""

    def load(self) -> bytes | None:
        """The bytes last saved, or None if there are none (first run, or lost)."""
        ...

    def save(self, data: bytes) -> None:
        """Replace the saved bytes (atomically, where the medium allows)."""
        ...


class FileStateStore:
    """State in a file: ``<dir>/<namespace>_<export>.state``, written atomically, mode 0600."""

    def __init__(self, directory: Path | str, namespace: str, name: str) -> None:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{namespace}_{name}")
        self.path = Path(directory) / f"{safe}.state"

    def __repr__(self) -> str:
        return f"FileStateStore({str(self.path)!r})"

    def load(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    def save(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".state-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


class MemoryStateStore:
    """State in memory, for tests and dry runs."""

    def __init__(self, data: bytes | None = None) -> None:
        self.data = data
        self.saves = 0

    def load(self) -> bytes | None:
        return self.data

    def save(self, data: bytes) -> None:
        self.data = data
        self.saves += 1


class StateError(Exception):
    """The saved bytes are not a state this version can read."""


def _u64(values: pa.Array) -> bytes:
    return bytes(values.buffers()[1])[: 8 * len(values)] if len(values) else b""


@dataclass
class ExportState:
    salt: bytes
    list_ids: list[str]
    keys: pa.Array  # uint64, sorted ascending, unique
    content: pa.Array  # uint32
    flags: pa.Array  # uint16

    @classmethod
    def new(cls, list_ids: list[str] | None = None) -> ExportState:
        return cls(
            os.urandom(16),
            list(list_ids or []),
            pa.array([], pa.uint64()),
            pa.array([], pa.uint32()),
            pa.array([], pa.uint16()),
        )

    def __len__(self) -> int:
        return len(self.keys)

    # -- hashing ------------------------------------------------------------------------
    def email_key(self, email: str) -> int:
        digest = hashlib.blake2b(email.encode(), digest_size=8, key=self.salt).digest()
        return int.from_bytes(digest, "little")

    def content_seed(self, list_ids: list[str]) -> int:
        """The CRC seed for content hashes: the salt and the sorted list IDs, so a change
        of lists changes every content hash (and re-sends every contact)."""
        material = self.salt + b"\x00" + ",".join(sorted(list_ids)).encode()
        return int.from_bytes(hashlib.blake2b(material, digest_size=4).digest(), "little")

    def content_hash(self, encoded: bytes, list_ids: list[str]) -> int:
        """32-bit CRC of the exact contact JSON, seeded per export and list set. A change
        detector, not a secret: 0 is reserved for "not known to be applied"."""
        return zlib.crc32(encoded, self.content_seed(list_ids)) or 1

    def list_bit(self, list_id: str) -> int | None:
        try:
            return 1 << self.list_ids.index(list_id)
        except ValueError:
            return None

    # -- bytes --------------------------------------------------------------------------
    def encode(self) -> bytes:
        import pyarrow.compute as pc

        header = json.dumps(
            {"version": VERSION, "salt": self.salt.hex(), "lists": self.list_ids, "n": len(self)}
        ).encode()
        keys = self.keys.cast(pa.uint64())
        if len(keys):
            deltas = pc.subtract_checked(keys.slice(1), keys.slice(0, len(keys) - 1))
            body = _u64(keys.slice(0, 1)) + _u64(
                deltas.combine_chunks() if isinstance(deltas, pa.ChunkedArray) else deltas
            )
        else:
            body = b""
        body += _fixed(self.content, 4) + _fixed(self.flags, 2)
        return MAGIC + struct.pack("<BI", VERSION, len(header)) + header + zlib.compress(body, 6)

    @classmethod
    def decode(cls, data: bytes) -> ExportState:
        import pyarrow.compute as pc

        if not data.startswith(MAGIC):
            raise StateError("not an export state")
        try:
            version, hlen = struct.unpack_from("<BI", data, len(MAGIC))
            if version != VERSION:
                raise StateError(f"state version {version} is not supported")
            start = len(MAGIC) + 5
            header: dict[str, Any] = json.loads(data[start : start + hlen])
            body = zlib.decompress(data[start + hlen :])
        except (struct.error, ValueError, zlib.error) as exc:
            raise StateError(f"corrupt state: {exc}") from exc
        n = int(header["n"])
        if len(body) != n * 14:
            raise StateError("corrupt state: size does not match")
        deltas = pa.Array.from_buffers(pa.uint64(), n, [None, pa.py_buffer(body[: 8 * n])])
        keys = pc.cumulative_sum(deltas) if n else deltas
        content = pa.Array.from_buffers(pa.uint32(), n, [None, pa.py_buffer(body[8 * n : 12 * n])])
        flags = pa.Array.from_buffers(pa.uint16(), n, [None, pa.py_buffer(body[12 * n :])])
        return cls(bytes.fromhex(header["salt"]), list(header["lists"]), keys, content, flags)


def _fixed(values: pa.Array, width: int) -> bytes:
    if not len(values):
        return b""
    if values.offset or values.null_count:
        values = pa.concat_arrays([values])
    return bytes(values.buffers()[1])[values.offset * width : (values.offset + len(values)) * width]


def load_state(store: StateStore) -> tuple[ExportState | None, str | None]:
    """The saved state, or None with a note saying why (absent or unreadable)."""
    try:
        data = store.load()
    except OSError as exc:
        return None, f"the state could not be read ({exc}); this run is a full run"
    if data is None:
        return None, None
    try:
        return ExportState.decode(data), None
    except StateError as exc:
        log.warning("ignoring the saved state: %s", exc)
        return None, f"the saved state was unreadable ({exc}); this run is a full run"
