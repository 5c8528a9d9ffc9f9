"""Parsing the files SendGrid hands out: contact exports and job error reports.

Their layouts are not documented (facts §5), so the parser is defensive: gzip or not,
CSV with a header row, JSON Lines, or one JSON array; keys are lower-cased so
``CONTACT_ID`` and ``contact_id`` read the same.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from typing import IO, Any

_GZIP_MAGIC = b"\x1f\x8b"


def _text_stream(source: bytes | IO[bytes]) -> IO[str]:
    raw: IO[bytes] = io.BytesIO(source) if isinstance(source, bytes) else source
    head = raw.read(2)
    raw.seek(0)
    if head == _GZIP_MAGIC:
        raw = gzip.GzipFile(fileobj=raw)  # type: ignore[assignment]
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


def _row(item: dict[str, Any]) -> dict[str, str]:
    return {
        str(k).lower(): ""
        if v is None
        else (",".join(map(str, v)) if isinstance(v, list) else str(v))
        for k, v in item.items()
    }


def iter_file_rows(source: bytes | IO[bytes]) -> Iterator[dict[str, str]]:
    """Rows of a CSV, JSON Lines or JSON-array file, as ``{lower-case column: text}``."""
    text = _text_stream(source)
    first = ""
    while True:
        ch = text.read(1)
        if not ch or not ch.isspace():
            first = ch
            break
    if not first:
        return
    rest = text
    if first in "[{":
        if first == "[":
            data = json.loads(first + rest.read())
            for item in data if isinstance(data, list) else []:
                if isinstance(item, dict):
                    yield _row(item)
            return
        line_iter = _prepend(first, rest)
        for line in line_iter:
            line = line.strip()
            if line:
                item = json.loads(line)
                if isinstance(item, dict):
                    yield _row(item)
        return
    reader = csv.reader(_prepend(first, rest))
    header = next(reader, None)
    if header is None:
        return
    keys = [h.strip().lower() for h in header]
    for values in reader:
        if values:
            yield dict(zip(keys, values, strict=False))


def _prepend(first: str, rest: IO[str]) -> Iterator[str]:
    line = first + rest.readline()
    yield line
    yield from rest
