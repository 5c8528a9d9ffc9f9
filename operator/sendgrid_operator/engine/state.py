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

Serialised as a small JSON header plus the arrays in three sections (keys delta-encoded
and compressed, content hashes stored as they are, flags compressed). A :class:`StateStore` only moves the bytes: a file for the local command, something
in the cluster for the Job. Losing the state is safe: the next run is a full run, and
mirror removes nothing that run.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import struct
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

log = logging.getLogger(__name__)

MAGIC = b"SGOSTATE"
VERSION = 2  # 1: the three arrays in one zlib stream (still read)
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


@dataclass
class ExportState:
    salt: bytes
    list_ids: list[str]
    # uint64 keys, sorted ascending, unique; uint32 content; uint16 flags. Decoded states
    # hold arrays; a state built by incremental.next_state holds chunked arrays (one chunk
    # per key bucket), which only encode() reads.
    keys: pa.Array
    content: pa.Array
    flags: pa.Array

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

    def release(self) -> None:
        """Drop the arrays (keeping salt and lists) once nothing reads them."""
        self.keys = pa.array([], pa.uint64())
        self.content = pa.array([], pa.uint32())
        self.flags = pa.array([], pa.uint16())

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
        """Header, then three sections: the first key and the deltas between sorted keys
        (8 bytes each, Huffman-coded: their high bytes are mostly zero), the content
        hashes (4 bytes each, stored as they are: random bits do not compress, and zlib
        spent most of a large run's state time finding that out), the flags (2 bytes
        each, zlib). Each section is ``<codec:u8><size:u64>`` and its bytes, written
        piece by piece from the arrays' own buffers, so no uncompressed copy of the whole
        state is made."""
        header = json.dumps(
            {"version": VERSION, "salt": self.salt.hex(), "lists": self.list_ids, "n": len(self)}
        ).encode()
        out = io.BytesIO()  # getvalue() hands over its buffer: the result is never copied
        out.write(MAGIC + struct.pack("<BI", VERSION, len(header)) + header)

        def deltas() -> Iterator[memoryview]:
            previous = pa.array([0], pa.uint64())
            for piece in _pieces(self.keys, pa.uint64()):
                shifted = pa.concat_arrays([previous, piece.slice(0, len(piece) - 1)])
                yield _view(pc.subtract_checked(piece, shifted), 8)
                previous = piece.slice(len(piece) - 1)

        # the deltas' bytes are random but for their mostly-zero high bytes, which Huffman
        # coding alone captures (LZ77 matching found nothing more and took 2.5x as long)
        _section(out, _ZLIB, deltas(), zlib.Z_HUFFMAN_ONLY)
        _section(out, _RAW, (_view(p, 4) for p in _pieces(self.content, pa.uint32())))
        _section(out, _ZLIB, (_view(p, 2) for p in _pieces(self.flags, pa.uint16())))
        return out.getvalue()

    @classmethod
    def decode(cls, data: bytes) -> ExportState:
        """The inverse of :meth:`encode` (and of version 1's single zlib stream)."""
        if not data.startswith(MAGIC):
            raise StateError("not an export state")
        try:
            version, hlen = struct.unpack_from("<BI", data, len(MAGIC))
            if version not in (1, VERSION):
                raise StateError(f"state version {version} is not supported")
            start = len(MAGIC) + 5
            header: dict[str, Any] = json.loads(data[start : start + hlen])
            n = int(header["n"])
            body = memoryview(data)[start + hlen :]
            reader = _Version1(body) if version == 1 else _Sections(body)
            deltas = pa.Array.from_buffers(pa.uint64(), n, [None, reader.part(8 * n)])
            keys = pc.cumulative_sum(deltas) if n else deltas
            del deltas
            content = pa.Array.from_buffers(pa.uint32(), n, [None, reader.part(4 * n)])
            flags = pa.Array.from_buffers(pa.uint16(), n, [None, reader.part(2 * n)])
            reader.end()
        except (struct.error, ValueError, zlib.error) as exc:
            raise StateError(f"corrupt state: {exc}") from exc
        return cls(bytes.fromhex(header["salt"]), list(header["lists"]), keys, content, flags)


_RAW = 0
_ZLIB = 1
_SECTION = struct.Struct("<BQ")


def _section(
    out: io.BytesIO,
    codec: int,
    pieces: Iterator[memoryview],
    strategy: int = zlib.Z_DEFAULT_STRATEGY,
) -> None:
    """Write one section: its codec and size, then its bytes (size patched in after)."""
    at = out.tell()
    out.write(_SECTION.pack(codec, 0))
    if codec == _ZLIB:
        packer = zlib.compressobj(1, zlib.DEFLATED, zlib.MAX_WBITS, 8, strategy)
        for piece in pieces:
            out.write(packer.compress(piece))
        out.write(packer.flush())
    else:
        for piece in pieces:
            out.write(piece)
    end = out.tell()
    out.seek(at)
    out.write(_SECTION.pack(codec, end - at - _SECTION.size))
    out.seek(end)


class _Sections:
    """Reads version 2's sections, each exactly the size the header's ``n`` implies."""

    def __init__(self, body: memoryview) -> None:
        self.body = body

    def part(self, size: int) -> pa.Buffer:
        codec, stored = _SECTION.unpack_from(self.body)
        chunk = self.body[_SECTION.size : _SECTION.size + stored]
        if len(chunk) != stored:
            raise StateError("corrupt state: a section is cut short")
        self.body = self.body[_SECTION.size + stored :]
        if codec == _RAW:
            plain: bytes | memoryview = chunk
        elif codec == _ZLIB:
            unpacker = zlib.decompressobj()
            plain = unpacker.decompress(chunk, size) if size else b""
            if size and (unpacker.unconsumed_tail or not unpacker.eof):
                raise StateError("corrupt state: size does not match")
        else:
            raise StateError(f"corrupt state: unknown codec {codec}")
        if len(plain) != size:
            raise StateError("corrupt state: size does not match")
        return pa.py_buffer(bytes(plain) if isinstance(plain, memoryview) else plain)

    def end(self) -> None:
        if len(self.body):
            raise StateError("corrupt state: bytes after the last section")


class _Version1:
    """Reads version 1: the three arrays in one zlib stream."""

    def __init__(self, body: memoryview) -> None:
        self.unpacker = zlib.decompressobj()
        self.pending = body

    def part(self, size: int) -> pa.Buffer:
        if not size:
            return pa.py_buffer(b"")
        chunk = self.unpacker.decompress(self.pending, size)
        self.pending = memoryview(self.unpacker.unconsumed_tail)
        if len(chunk) != size:
            raise StateError("corrupt state: size does not match")
        return pa.py_buffer(chunk)

    def end(self) -> None:
        if self.unpacker.decompress(self.pending, 1) or not self.unpacker.eof:
            raise StateError("corrupt state: size does not match")


#: Keys, content and flags are encoded this many entries at a time.
_PIECE = 1 << 16


def _pieces(values: pa.Array | pa.ChunkedArray, arrow_type: pa.DataType) -> Iterator[pa.Array]:
    """Non-empty slices of at most ``_PIECE`` entries, without nulls, of ``arrow_type``."""
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    for chunk in chunks:
        chunk = chunk.cast(arrow_type)
        if chunk.null_count:
            chunk = chunk.fill_null(0)
        for start in range(0, len(chunk), _PIECE):
            yield chunk.slice(start, _PIECE)


def _view(values: pa.Array, width: int) -> memoryview:
    """The bytes of a fixed-width array without nulls, without copying them."""
    start = values.offset * width
    return memoryview(values.buffers()[1])[start : start + len(values) * width]


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
