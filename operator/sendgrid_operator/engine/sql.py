"""SQL sources: PostgreSQL through psycopg with a server-side cursor, anything else
through SQLAlchemy with ``stream_results``.

Why two paths: psycopg's named cursor is the cheapest way to stream from PostgreSQL (the
server holds the result, the client fetches ``fetchSize`` rows per round trip) and gives
column types; SQLAlchemy covers every other warehouse dialect (Trino, BigQuery, Snowflake)
with the same streaming contract, as long as its driver is installed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sendgrid_operator.api.export import SegmentSource, SQLSource
from sendgrid_operator.engine.mapping import ColumnKind
from sendgrid_operator.engine.outcomes import SourceError
from sendgrid_operator.engine.plan import Resolver
from sendgrid_operator.engine.sources import Row, RowBatch, register_source

POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2")
CURSOR_NAME = "sendgrid_operator_export"

# PostgreSQL type OIDs -> column kinds (pg_type.h).
_PG_KINDS: dict[int, ColumnKind] = {
    16: "bool",
    20: "number",
    21: "number",
    23: "number",
    700: "number",
    701: "number",
    1700: "number",
    1082: "date",
    1114: "date",
    1184: "date",
    25: "string",
    1042: "string",
    1043: "string",
    19: "string",
    705: "string",
}


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    creds, _, host = rest.partition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


class PostgresSource:
    """A query on PostgreSQL, read with a named (server-side) cursor."""

    def __init__(self, spec: SQLSource, url: str, label: str) -> None:
        self.spec = spec
        self.url = "postgresql://" + url.split("://", 1)[1]
        self.label = label
        self._conn: Any = None

    def open(self, columns: Sequence[str]) -> Mapping[str, ColumnKind]:
        import psycopg

        try:
            self._conn = psycopg.connect(self.url, connect_timeout=15)
            # one snapshot for the cursor and row_bound()'s count
            self._conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            self._cur = self._conn.cursor(name=CURSOR_NAME)
            self._cur.itersize = self.spec.fetch_size
            self._cur.execute(self.spec.query)
        except psycopg.Error as exc:
            self.close()
            raise SourceError(
                f"{self.label}: the query failed on {_redact(self.url)}: {exc}".strip()
            ) from exc
        desc = self._cur.description or []
        self._names = [d.name for d in desc]
        self._wanted = set(columns)
        self._kinds: list[ColumnKind] = [_PG_KINDS.get(d.type_code, "other") for d in desc]
        return {d.name: _PG_KINDS.get(d.type_code, "other") for d in desc}

    def estimated_total(self) -> int | None:
        return None

    def row_bound(self) -> int | None:
        """The query's row count in the cursor's own snapshot (the transaction is
        REPEATABLE READ): the server runs the query once more and sends one number. It
        counts whole rows, so every column is computed: a query that fails on some row
        (a division by zero, a bad cast) fails here, before anything is sent. None if
        the count fails; the savepoint keeps the cursor usable, and reading then meets
        the same error and refuses the run."""
        import psycopg

        query = self.spec.query.strip().rstrip(";")
        try:
            with self._conn.transaction():
                row = self._conn.execute(
                    f"SELECT count(sgexport_rows) FROM (\n{query}\n) AS sgexport_rows"
                ).fetchone()
        except psycopg.Error:
            return None
        return int(row[0]) if row else None

    def _fetched(self) -> Iterator[tuple[int, list[tuple[Any, ...]]]]:
        """``(rows before it, batch)`` for each ``fetchmany``; a database error while
        reading becomes a :class:`SourceError` that says after which row."""
        import psycopg

        number = 0
        try:
            while batch := self._cur.fetchmany(self.spec.fetch_size):
                yield number, batch
                number += len(batch)
        except psycopg.Error as exc:
            raise SourceError(f"{self.label}: reading failed after row {number}: {exc}") from exc

    def rows(self) -> Iterator[tuple[int, Row]]:
        names = self._names
        for before, batch in self._fetched():
            for number, values in enumerate(batch, before + 1):
                yield number, dict(zip(names, values, strict=True))

    def batches(self) -> Iterator[RowBatch]:
        """The rows of each ``fetchmany``, with the mapped text columns as Arrow arrays
        (a column only when every value is a ``str`` or None)."""
        import pyarrow as pa

        names = self._names
        text = [
            (j, name)
            for j, name in enumerate(names)
            if name in self._wanted and self._kinds[j] == "string"
        ]
        if len(set(names)) != len(names):
            text = []  # equal column names: rows keep the last; leave it all to the rows
        for before, batch in self._fetched():
            arrays: dict[str, Any] = {}
            for j, name in text:
                try:
                    array = pa.array([values[j] for values in batch])
                except (pa.ArrowInvalid, pa.ArrowTypeError):
                    continue
                if array.type == pa.string():
                    arrays[name] = array
                elif array.type == pa.null():
                    arrays[name] = pa.nulls(len(batch), pa.string())
            yield RowBatch(
                before + 1,
                len(batch),
                arrays,
                _tuple_row(names, batch),
                lambda b=batch: [dict(zip(names, v, strict=True)) for v in b],  # type: ignore[misc]
            )

    def close(self) -> None:
        if self._conn is not None:
            import psycopg

            try:
                # A connection the server ended (restart, failover) cannot roll back; raising
                # here would replace the SourceError that says why the read failed.
                with contextlib.suppress(psycopg.Error):
                    self._conn.rollback()
                self._conn.close()
            finally:
                self._conn = None


class SqlAlchemySource:
    """A query on any SQLAlchemy URL, streamed with ``stream_results`` and ``yield_per``."""

    def __init__(self, spec: SQLSource, url: str, label: str) -> None:
        self.spec = spec
        self.url = url
        self.label = label
        self._engine: Any = None
        self._conn: Any = None

    def open(self, columns: Sequence[str]) -> Mapping[str, ColumnKind]:
        try:
            import sqlalchemy as sa
        except ImportError as exc:  # pragma: no cover - sqlalchemy is in the sql extra
            raise SourceError(
                "SQL sources other than PostgreSQL need sqlalchemy installed"
            ) from exc
        try:
            self._engine = sa.create_engine(self.url)
            self._conn = self._engine.connect()
            self._result = self._conn.execution_options(
                stream_results=True, yield_per=self.spec.fetch_size
            ).execute(sa.text(self.spec.query))
        except Exception as exc:  # driver errors and missing dialects alike
            self.close()
            raise SourceError(
                f"{self.label}: the query failed on {_redact(self.url)}: {exc}"
            ) from exc
        self._names = list(self._result.keys())
        return dict.fromkeys(self._names, "any")

    def estimated_total(self) -> int | None:
        return None

    def rows(self) -> Iterator[tuple[int, Row]]:
        names = self._names
        number = 0
        try:
            for values in self._result:
                number += 1
                yield number, dict(zip(names, values, strict=True))
        except Exception as exc:
            raise SourceError(f"{self.label}: reading failed after row {number}: {exc}") from exc

    def close(self) -> None:
        try:
            if self._conn is not None:
                self._conn.close()
            if self._engine is not None:
                self._engine.dispose()
        finally:
            self._conn = self._engine = None


def _tuple_row(names: list[str], batch: list[Any]) -> Any:
    def row(index: int) -> Row:
        return dict(zip(names, batch[index], strict=True))

    return row


def _sql_source(spec: SegmentSource, resolver: Resolver) -> Any:
    assert spec.sql is not None
    try:
        url = resolver.secret(spec.sql.database_url_secret_ref).strip()
    except KeyError as exc:
        raise SourceError(str(exc.args[0] if exc.args else exc)) from exc
    scheme = _scheme(url)
    if not scheme:
        raise SourceError("the database URL in the Secret is not a URL (scheme://...)")
    label = "query"
    if scheme in POSTGRES_SCHEMES:
        return PostgresSource(spec.sql, url, label)
    return SqlAlchemySource(spec.sql, url, label)


register_source("sql", _sql_source)
