"""The engine benchmark's limit baseline: read the run's own source and send payloads
prepared beforehand, both at once, and nothing else.

This is the issue's reference ("only reads the source and sends the same prepared
payloads"): the fastest this machine can get these profiles from that source into the
emulator. The bodies are the greedy bodies of the same contacts (what the engine sends),
built before the clock starts and loaded from a file; the clock runs while a thread reads
every row of the source the way the engine's readers get them (Parquet and CSV record
batches from Arrow, PostgreSQL rows from a server-side cursor, ``fetchmany``) and the
event loop PUTs the bodies, three in flight. It ends when both are done and the emulator
has applied every body (asked of the emulator's admin endpoint, which knows at once; the
engine finds out by polling each job). It does not validate, de-duplicate or keep state.
"""

from __future__ import annotations

import asyncio
import struct
import time
from pathlib import Path
from typing import Any

import yaml

_LENGTH = struct.Struct("<I")
KEY = "SG.test-emulator-key"


def contact_json(row: dict[str, Any]) -> bytes:
    """A benchmark row as the contact the engine sends for it (the mapping of
    ``bench_engine``'s manifest: lower-cased email, first and last name, city)."""
    import orjson

    return orjson.dumps(
        {
            "email": row["email"].strip().lower(),
            "first_name": row["first_name"],
            "last_name": row["last_name"],
            "city": row["city"],
        }
    )


def prepare_bodies(parquet: Path, list_id: str, out: Path) -> int:
    """Write the greedy bodies of the file's contacts (lower-cased emails, the mapped
    fields; the engine's bodies for this data) to ``out``, length-prefixed."""
    import pyarrow.parquet as pq

    from sendgrid_operator.engine.batching import BodyBuilder

    builder = BodyBuilder([list_id], 30_000, 5_900_000)
    count = 0
    with out.open("wb") as f:

        def flush() -> None:
            nonlocal count
            body = builder.build()
            f.write(_LENGTH.pack(len(body)))
            f.write(body)
            builder.reset()
            count += 1

        for batch in pq.ParquetFile(parquet).iter_batches(batch_size=16_384):
            for row in batch.to_pylist():
                piece = contact_json(row)
                if not builder.fits(piece):
                    flush()
                builder.add(piece)
        if len(builder):
            flush()
    return count


def _load(path: Path) -> list[bytes]:
    data = path.read_bytes()
    bodies, at = [], 0
    while at < len(data):
        (size,) = _LENGTH.unpack_from(data, at)
        bodies.append(data[at + 4 : at + 4 + size])
        at += 4 + size
    return bodies


def _read_source(manifest: Path) -> int:
    """Read every row of the export's (single) segment; return how many."""
    docs = list(yaml.safe_load_all(manifest.read_text()))
    spec = next(d for d in docs if d["kind"] == "SegmentExport")["spec"]
    source = spec["segments"][0]["source"]
    if "sql" in source:
        import psycopg

        url = next(d for d in docs if d.get("metadata", {}).get("name") == "db")["stringData"]
        rows = 0
        with psycopg.connect(url["url"]) as conn, conn.cursor(name="limit") as cursor:
            cursor.execute(source["sql"]["query"])
            while batch := cursor.fetchmany(10_000):
                rows += len(batch)
        return rows
    path = source["file"]["path"]
    if path.endswith(".csv"):
        import pyarrow.csv as pcsv

        reader = pcsv.open_csv(
            path, read_options=pcsv.ReadOptions(block_size=1 << 19, use_threads=False)
        )
        return sum(batch.num_rows for batch in reader)
    import pyarrow.parquet as pq

    return sum(b.num_rows for b in pq.ParquetFile(path).iter_batches(batch_size=16_384))


def preload(manifest: Path) -> None:
    """Import what :func:`run_limit` will use for this manifest's source (so the
    benchmark can tell the interpreter's start from the work; the wall time from the
    process's start is the same either way)."""
    import httpx  # noqa: F401
    import yaml  # noqa: F401

    text = manifest.read_text()
    if '"sql"' in text:
        import psycopg  # noqa: F401
    elif ".csv" in text:
        import pyarrow.csv
    else:
        import pyarrow.parquet  # noqa: F401


async def run_limit(manifest: Path, url: str, bodies_file: Path) -> dict[str, Any]:
    """Load the bodies (not timed), then read the source and send them at once."""
    import httpx

    loading = time.perf_counter()
    bodies = _load(bodies_file)
    load_seconds = time.perf_counter() - loading
    slots = asyncio.Semaphore(3)
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120
    ) as http:
        reading = asyncio.ensure_future(asyncio.to_thread(_read_source, manifest))

        async def put(body: bytes) -> None:
            try:
                (await http.put("/v3/marketing/contacts", content=body)).raise_for_status()
            finally:
                slots.release()

        tasks = []
        for body in bodies:
            await slots.acquire()
            tasks.append(asyncio.create_task(put(body)))
        await asyncio.gather(*tasks)
        rows = await reading
        # until the emulator has applied every body (its own admin endpoint: the limit
        # knows at once what the engine must find out by polling the jobs)
        settled = await http.post(url + "/_emulator/settle", params={"timeout": 120})
        if settled.raise_for_status().json()["pending"]:
            raise RuntimeError("the emulator did not apply every body within 120 s")
    return {"upsert_requests": len(bodies), "rows_read": rows, "load_seconds": load_seconds}
