"""Where a segment's rows come from: one small interface and a registry of implementations.

A :class:`Source` is opened (which reads the header or schema, so a missing column is
reported before any row is read), then yields ``(row number, row)`` pairs as a stream:
CSV (:mod:`.csvsource`) and JSON Lines line by line, Parquet one record batch at a time,
SQL (:mod:`.sql`) through a server-side cursor. Nothing loads a whole segment into memory.

Files come from a local path, an http(s) URL (downloaded as a stream to a temporary file,
since Parquet needs random access anyway) or a ConfigMap's bytes. More sources can be
added with :func:`register_source` (a new kind of segment source) or
:func:`register_file_format` (a new file format).
"""

from __future__ import annotations

import importlib
import io
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import IO, Any, Protocol

import httpx

from sendgrid_operator.api.export import FileFormat, FileSource, SegmentSource
from sendgrid_operator.engine.mapping import ColumnKind
from sendgrid_operator.engine.outcomes import SourceError
from sendgrid_operator.engine.plan import Resolver

Row = Mapping[str, Any]
#: Large enough that each compute kernel call of the fast path runs long without the GIL
#: (see :mod:`.readahead`), small enough that a batch and its temporaries stay a few MB.
PARQUET_BATCH_ROWS = 16384
DOWNLOAD_CHUNK = 1 << 16


class RowBatch:
    """Consecutive rows of a columnar source: row numbers ``first``, ``first + 1``, ...
    ``arrays`` holds (some of) the columns as Arrow arrays, for :mod:`.fastpath`;
    ``row(i)`` gives row ``i`` and ``rows()`` all of them, exactly as :meth:`Source.rows`
    would have."""

    __slots__ = ("arrays", "first", "length", "row", "rows")

    def __init__(
        self,
        first: int,
        length: int,
        arrays: Mapping[str, Any],
        row: Callable[[int], Row],
        rows: Callable[[], Sequence[Row]],
    ) -> None:
        self.first = first
        self.length = length
        self.arrays = arrays
        self.row = row
        self.rows = rows


class BatchSource(Protocol):
    """A source that can also hand out whole batches (:class:`RowBatch`) instead of
    :meth:`Source.rows`, with the same rows, row numbers and errors."""

    def batches(self) -> Iterator[RowBatch]: ...


class BoundedSource(Protocol):
    """A source that can say, before its rows are read, how many it will give at most.
    Optional: it lets a run send during its first pass (:mod:`.early`)."""

    def row_bound(self) -> int | None: ...


class Source(Protocol):
    """A stream of rows. ``label`` names it in row references (``vip.csv``)."""

    label: str

    def open(self, columns: Sequence[str]) -> Mapping[str, ColumnKind]:
        """Open the source; return its columns and their kinds. ``columns`` are the ones
        the mapping needs (a columnar source may read only those)."""
        ...

    def rows(self) -> Iterator[tuple[int, Row]]:
        """Yield ``(row number, row)``; row numbers are what a person finds in the source."""
        ...

    def estimated_total(self) -> int | None:
        """How many rows to expect, when the source knows cheaply."""
        ...

    def close(self) -> None: ...


# -- file bytes: path, URL, ConfigMap ------------------------------------------------------
class _Opened:
    """A binary file handle plus whatever must be cleaned up with it."""

    def __init__(self, handle: IO[bytes], cleanup: Callable[[], None] | None = None) -> None:
        self.handle = handle
        self._cleanup = cleanup

    def close(self) -> None:
        self.handle.close()
        if self._cleanup is not None:
            self._cleanup()


def _download(url: str) -> _Opened:
    fd, name = tempfile.mkstemp(prefix="sgexport-src-")
    try:
        with (
            os.fdopen(fd, "wb") as out,
            httpx.stream(
                "GET", url, timeout=httpx.Timeout(60.0, connect=10.0), follow_redirects=True
            ) as response,
        ):
            if response.status_code >= 400:
                raise SourceError(f"downloading {url} failed: HTTP {response.status_code}")
            for chunk in response.iter_bytes(DOWNLOAD_CHUNK):
                out.write(chunk)
    except httpx.HTTPError as exc:
        os.unlink(name)
        raise SourceError(f"downloading {url} failed: {type(exc).__name__}: {exc}") from exc
    except BaseException:
        os.unlink(name)
        raise
    return _Opened(open(name, "rb"), lambda: os.unlink(name))


def _open_file(spec: FileSource, resolver: Resolver) -> _Opened:
    if spec.path:
        try:
            return _Opened(open(spec.path, "rb"))
        except OSError as exc:
            raise SourceError(f"cannot open {spec.path}: {exc.strerror or exc}") from exc
    if spec.url:
        return _download(spec.url)
    if spec.config_map:
        try:
            data = resolver.config_map(spec.config_map)
        except KeyError as exc:
            raise SourceError(str(exc.args[0] if exc.args else exc)) from exc
        return _Opened(io.BytesIO(data))
    raise SourceError("a file source needs one of path, url or configMap")


def _file_label(spec: FileSource) -> str:
    if spec.path:
        return Path(spec.path).name
    if spec.url:
        return spec.url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0] or spec.url
    if spec.config_map:
        return f"{spec.config_map.name}/{spec.config_map.key}"
    return "file"


def file_format(spec: FileSource) -> str:
    if spec.format:
        return str(spec.format)
    name = spec.path or spec.url or (spec.config_map.key if spec.config_map else "")
    name = name.split("?", 1)[0].lower()
    for fmt in FileFormat:
        if name.endswith(f".{fmt.value}"):
            return fmt.value
    if name.endswith(".ndjson"):
        return FileFormat.JSONL.value
    raise SourceError(
        f"cannot tell the format of {name!r}: set format (csv, jsonl or parquet) on the file source"
    )


# -- file formats ---------------------------------------------------------------------------
class FileSourceBase:
    """Shared open/close for file formats; subclasses read ``self._file.handle``."""

    def __init__(self, spec: FileSource, resolver: Resolver) -> None:
        self.spec = spec
        self.resolver = resolver
        self.label = _file_label(spec)
        self._file: _Opened | None = None

    def _handle(self) -> IO[bytes]:
        if self._file is None:
            self._file = _open_file(self.spec, self.resolver)
        return self._file.handle

    def estimated_total(self) -> int | None:
        return None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class JsonLinesSource(FileSourceBase):
    """One JSON object per line. Its columns are the keys of the first object."""

    def open(self, columns: Sequence[str]) -> Mapping[str, ColumnKind]:
        self._text = io.TextIOWrapper(self._handle(), encoding=self.spec.encoding, newline=None)
        self._line = 0
        self._first: dict[str, Any] | None = None
        for line in self._text:
            self._line += 1
            if line.strip():
                self._first = self._parse(line)
                break
        return dict.fromkeys(self._first or {}, "any")

    def _parse(self, line: str) -> dict[str, Any]:
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise SourceError(f"{self.label}:{self._line}: not valid JSON: {exc}") from exc
        if not isinstance(item, dict):
            raise SourceError(f"{self.label}:{self._line}: each line must be a JSON object")
        return item

    def rows(self) -> Iterator[tuple[int, Row]]:
        if self._first is None:
            return
        yield self._line, self._first
        try:
            for line in self._text:
                self._line += 1
                if line.strip():
                    yield self._line, self._parse(line)
        except UnicodeDecodeError as exc:
            raise SourceError(
                f"{self.label}:{self._line}: not {self.spec.encoding}: {exc}"
            ) from exc


def _arrow_kind(arrow_type: Any) -> ColumnKind:
    import pyarrow as pa

    t = pa.types
    if t.is_string(arrow_type) or t.is_large_string(arrow_type) or t.is_dictionary(arrow_type):
        return "string"
    if t.is_integer(arrow_type) or t.is_floating(arrow_type) or t.is_decimal(arrow_type):
        return "number"
    if t.is_date(arrow_type) or t.is_timestamp(arrow_type):
        return "date"
    if t.is_boolean(arrow_type):
        return "bool"
    if t.is_null(arrow_type):
        return "any"
    return "other"


#: pyarrow's cloud filesystems, which ``pyarrow.parquet`` loads through ``pyarrow.fs``.
_CLOUD_FILESYSTEMS = ("pyarrow._s3fs", "pyarrow._gcsfs", "pyarrow._azurefs", "pyarrow._hdfs")


def _parquet_module() -> ModuleType:
    """``pyarrow.parquet``, imported (when it is the first to load ``pyarrow.fs``) without
    pyarrow's S3, GCS, Azure and HDFS filesystems: the engine reads local files and file
    handles only (URLs are downloaded with httpx), and those libraries cost about 8 MB of
    resident memory. They stay importable directly; only ``pyarrow.fs``'s shortcuts to them
    are missing in such a process."""
    if "pyarrow.parquet" not in sys.modules and "pyarrow.fs" not in sys.modules:
        blocked = [name for name in _CLOUD_FILESYSTEMS if name not in sys.modules]
        for name in blocked:
            sys.modules[name] = None  # type: ignore[assignment]  # makes the import fail
        try:
            importlib.import_module("pyarrow.parquet")
        finally:
            for name in blocked:
                if name in sys.modules and sys.modules[name] is None:
                    del sys.modules[name]
    return importlib.import_module("pyarrow.parquet")


class ParquetSource(FileSourceBase):
    """Parquet read one record batch at a time, only the mapped columns."""

    def open(self, columns: Sequence[str]) -> Mapping[str, ColumnKind]:
        pq = _parquet_module()
        try:
            self._pf = pq.ParquetFile(self._handle())
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ...
            raise SourceError(f"{self.label}: not a readable Parquet file: {exc}") from exc
        schema = self._pf.schema_arrow
        found = {name: _arrow_kind(schema.field(name).type) for name in schema.names}
        self._columns = [c for c in columns if c in found]
        return found

    def estimated_total(self) -> int | None:
        return int(self._pf.metadata.num_rows)

    def row_bound(self) -> int | None:
        return int(self._pf.metadata.num_rows)  # the footer's count is exact

    def rows(self) -> Iterator[tuple[int, Row]]:
        number = 0
        try:
            for batch in self._pf.iter_batches(
                batch_size=PARQUET_BATCH_ROWS, columns=self._columns
            ):
                for row in batch.to_pylist():
                    number += 1
                    yield number, row
        except OSError as exc:
            raise SourceError(f"{self.label}: reading failed after row {number}: {exc}") from exc

    def batches(self) -> Iterator[RowBatch]:
        number = 0
        try:
            for batch in self._pf.iter_batches(
                batch_size=PARQUET_BATCH_ROWS, columns=self._columns
            ):
                arrays = dict(zip(batch.schema.names, batch.columns, strict=True))
                yield RowBatch(
                    number + 1, batch.num_rows, arrays, _batch_row(batch), batch.to_pylist
                )
                number += batch.num_rows
        except OSError as exc:
            raise SourceError(f"{self.label}: reading failed after row {number}: {exc}") from exc


def _batch_row(batch: Any) -> Callable[[int], Row]:
    def row(index: int) -> Row:
        found: Row = batch.slice(index, 1).to_pylist()[0]
        return found

    return row


# -- the registries -------------------------------------------------------------------------
FileSourceFactory = Callable[[FileSource, Resolver], Source]
SourceFactory = Callable[[SegmentSource, Resolver], Source]

FILE_FORMATS: dict[str, FileSourceFactory] = {  # CSV registers itself (csvsource.py)
    FileFormat.JSONL.value: JsonLinesSource,
    FileFormat.PARQUET.value: ParquetSource,
}
SOURCES: dict[str, SourceFactory] = {}


def register_file_format(name: str, factory: FileSourceFactory) -> None:
    FILE_FORMATS[name] = factory


def register_source(kind: str, factory: SourceFactory) -> None:
    """``kind`` is the SegmentSource field that selects it (``file``, ``sql``)."""
    SOURCES[kind] = factory


def _builtin() -> None:
    """Import the built-in sources that live in modules of their own (they register
    themselves, and import this module's base classes, so this one cannot import them
    at the top)."""
    from sendgrid_operator.engine import csvsource, sql  # noqa: F401


def file_source_factory(spec: FileSource) -> FileSourceFactory:
    """The class that reads this file's format."""
    _builtin()
    return FILE_FORMATS[file_format(spec)]


def _file_source(spec: SegmentSource, resolver: Resolver) -> Source:
    assert spec.file is not None
    return file_source_factory(spec.file)(spec.file, resolver)


register_source("file", _file_source)


def build_source(spec: SegmentSource, resolver: Resolver) -> Source:
    """The source a segment's ``source`` names."""
    _builtin()
    for kind, factory in SOURCES.items():
        if getattr(spec, kind, None) is not None:
            return factory(spec, resolver)
    raise SourceError("a segment source needs one of: " + ", ".join(sorted(SOURCES)))
