"""Export engine: profiles per second from Parquet and PostgreSQL into the emulator.

Layout: the emulator runs in its own process (``--apply-delay 0``) so its CPU is not the
engine's; each engine run is its own subprocess (this file with ``--child``), so peak
memory is that process's ``VmHWM`` (``ru_maxrss`` would include the parent's memory at
fork) and CPU time is its own. The baseline, measured in
the same run, is a child that only reads the same Parquet file, encodes the same contacts
and PUTs the same greedy bodies (3 in flight, no validation, no state, no job polling): the
limit of this machine for "read and send", which the engine's wall time is divided by.
A second, sequential baseline builds every body before sending the first (the engine's
order: nothing is written until the whole segment is read); it is reported beside the
first, which stays the target's reference.

Runs (``quick``: 100,000 only, one pair): Parquet, CSV and PostgreSQL (a throw-away
server from ``tests/pg.py``) full runs, each alternating with the limit baseline of
``benchmarks/limit.py`` (``PAIRS`` pairs; the pair with the median ratio is the one
reported, every pair's ratio beside it), an unchanged incremental re-run, and the two
read+encode+send baselines.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
KEY = "SG.test-emulator-key"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{ROOT / 'operator'}:{ROOT / 'tests'}:{ROOT}"}


def _spawn_server(args: list[str]) -> tuple[subprocess.Popen[str], str]:
    """Start a server that prints ``listening on URL`` first; return it and the URL."""
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True, env=_env())
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, line.split("listening on ")[1].split()[0]


def _spawn_emulator(*extra: str) -> tuple[subprocess.Popen[str], str]:
    """The emulator in its own process, jobs applied at once (``--apply-delay 0``)."""
    return _spawn_server(
        [
            sys.executable,
            "-m",
            "sendgrid_operator",
            "emulator",
            "--port",
            "0",
            "--apply-delay",
            "0",
            "--quiet",
            *extra,
        ]
    )


def _make_parquet(path: Path, n: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    step = 100_000
    writer = None
    for start in range(0, n, step):
        idx = range(start, min(n, start + step))
        table = pa.table(
            {
                "email": [f"User{i}@Example.com" for i in idx],
                "first_name": [f"First{i % 1000}" for i in idx],
                "last_name": [f"Last{i % 777}" for i in idx],
                "city": ["Berlin" if i % 2 else "Köln" for i in idx],
            }
        )
        if writer is None:
            writer = pq.ParquetWriter(str(path), table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()


def _make_csv(parquet: Path, out: Path) -> None:
    """The same rows as CSV, with a header row (the engine's CSV source)."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    pcsv.write_csv(pq.read_table(parquet), out)


def _make_table(url: str, n: int) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS people_{n}")
        conn.execute(
            f"CREATE TABLE people_{n} (email text, first_name text, last_name text, city text)"
        )
        with conn.cursor().copy(f"COPY people_{n} FROM STDIN") as copy:
            for i in range(n):
                copy.write_row(
                    (f"User{i}@Example.com", f"First{i % 1000}", f"Last{i % 777}", "Berlin")
                )


def _manifest(list_id: str, source: dict[str, Any], db_url: str | None) -> str:
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "key"},
            "stringData": {"apiKey": KEY},
        },
        {
            "apiVersion": "sendgrid-operator.io/v1alpha1",
            "kind": "SendGridConnection",
            "metadata": {"name": "sg"},
            "spec": {"apiKeySecretRef": {"name": "key"}, "consent": {"personalData": True}},
        },
        {
            "apiVersion": "sendgrid-operator.io/v1alpha1",
            "kind": "SegmentExport",
            "metadata": {"name": "bench"},
            "spec": {
                "connectionRef": {"name": "sg"},
                "listIds": [list_id],
                "segments": [{"name": "all", "source": source}],
                "fieldMapping": {
                    "email": "email",
                    "firstName": "first_name",
                    "lastName": "last_name",
                    "city": "city",
                },
                "maxProfiles": 10_000_000,
            },
        },
    ]
    if db_url:
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "db"},
                "stringData": {"url": db_url},
            }
        )
    return "\n---\n".join(json.dumps(d) for d in docs)


def _peak_kib(usage: resource.struct_rusage) -> int:
    """This process's peak resident set. ``ru_maxrss`` of a child also counts what its
    parent held when it forked (Linux keeps the larger of the pre-exec and the new
    address space), so the benchmark's own ~190 MB would hide a smaller engine peak;
    ``VmHWM`` is the peak of the exec'd program alone."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return int(usage.ru_maxrss)


def _child(argv: list[str]) -> int:
    """Run one engine export (or the baseline) and print its figures as JSON."""
    mode, manifest, url, state_dir = argv
    started = time.perf_counter()
    helper_kib: list[int] = []
    if mode == "limit":  # state_dir names the prepared bodies
        from benchmarks.limit import preload, run_limit

        preload(Path(manifest))
        ready = time.perf_counter()
        figures = asyncio.run(run_limit(Path(manifest), url, Path(state_dir)))
        loading = figures.pop("load_seconds")  # prepared payloads: loading is not timed
        started += loading
        ready += loading
    elif mode in ("baseline", "baseline_sequential"):
        ready = started
        figures = asyncio.run(_baseline(manifest, url, sequential=mode == "baseline_sequential"))
    else:
        from argparse import Namespace

        from sendgrid_operator.engine import FileStateStore, run_export
        from sendgrid_operator.engine.cli import _plan, use_system_allocator

        use_system_allocator()
        # the key-hashing helper process reports its own peak when it stops
        from sendgrid_operator.engine import keyhash

        close = keyhash.KeyHasher.close

        def closing(hasher: keyhash.KeyHasher) -> None:
            close(hasher)
            helper_kib.append(hasher.helper_peak_kib)

        keyhash.KeyHasher.close = closing  # type: ignore[method-assign]
        ready = time.perf_counter()

        plan = _plan(Namespace(files=[manifest], export=None, sendgrid_url=url))
        # wall seconds spent in each phase (reading, uploading, verifying: the last one
        # includes writing the state), from the engine's own progress reports
        marks: list[tuple[str, float]] = []

        def progress(p: Any) -> None:
            if not marks or marks[-1][0] != str(p.phase):
                marks.append((str(p.phase), time.perf_counter()))

        report = asyncio.run(
            run_export(
                plan,
                state=FileStateStore(state_dir, plan.namespace, plan.name),
                full=mode == "full",
                progress=progress,
            )
        )
        c = report.counts
        figures = {
            "result": report.result,
            "reason": report.reason,
            "profiles": c.profiles,
            "sent": c.sent,
            "applied": c.created + c.updated,
            "unchanged": c.unchanged,
            "upsert_requests": c.upsert_requests,
            "minimum_upsert_requests": c.minimum_upsert_requests,
            "phase_seconds": {
                name.lower(): round(end - start, 2) for (name, start), (_, end) in pairwise(marks)
            },
        }
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the key-hashing helper
    peak_mb = round(_peak_kib(usage) / 1024, 1)
    helper_mb = round(max(helper_kib, default=0) / 1024, 1)
    now = time.perf_counter()
    figures.update(
        wall_seconds=round(now - started, 2),
        # the interpreter's start and the imports, then the rest (the engine's rest
        # includes reading and validating the manifest)
        startup_seconds=round(ready - started, 2),
        after_startup_seconds=round(now - ready, 2),
        cpu_seconds=round(
            usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime, 2
        ),
        peak_rss_mb=peak_mb,
        # the helper's own peak (0: not started); the two peaks need not coincide, so
        # their sum is an upper bound of the engine's memory
        helper_peak_rss_mb=helper_mb,
        peak_rss_with_helper_mb=round(peak_mb + helper_mb, 1),
    )
    print(json.dumps(figures))
    return 0


async def _baseline(manifest: str, url: str, sequential: bool = False) -> dict[str, Any]:
    """Read the Parquet file and PUT the same greedy bodies; nothing else. ``sequential``:
    build every body first and send them after the whole file is read (the order the
    engine must keep, since a run may be refused until its last row is read), to tell
    that cost apart from the engine's own."""
    import httpx
    import pyarrow.parquet as pq
    import yaml

    from benchmarks.limit import contact_json

    docs = list(yaml.safe_load_all(Path(manifest).read_text()))
    spec = next(d for d in docs if d["kind"] == "SegmentExport")["spec"]
    path = spec["segments"][0]["source"]["file"]["path"]
    from sendgrid_operator.engine.batching import BodyBuilder

    builder = BodyBuilder(spec["listIds"], 30_000, 5_900_000)
    slots = asyncio.Semaphore(3)
    tasks: list[asyncio.Task[None]] = []
    requests = 0
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120
    ) as http:

        async def put(body: bytes) -> None:
            try:
                (await http.put("/v3/marketing/contacts", content=body)).raise_for_status()
            finally:
                slots.release()

        held: list[bytes] = []

        async def flush() -> None:
            nonlocal requests
            requests += 1
            if sequential:
                held.append(builder.build())
            else:
                await slots.acquire()
                tasks.append(asyncio.create_task(put(builder.build())))
            builder.reset()

        for batch in pq.ParquetFile(path).iter_batches(batch_size=8192):
            for row in batch.to_pylist():
                piece = contact_json(row)
                if not builder.fits(piece):
                    await flush()
                builder.add(piece)
        if len(builder):
            await flush()
        for body in held:
            await slots.acquire()
            tasks.append(asyncio.create_task(put(body)))
        held.clear()
        await asyncio.gather(*tasks)
    return {"upsert_requests": requests}


def _run_child(mode: str, manifest: Path, url: str, state_dir: Path) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.bench_engine",
            "--child",
            mode,
            str(manifest),
            url,
            str(state_dir),
        ],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"child {mode} failed: {out.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def _new_list(url: str) -> str:
    import httpx

    with httpx.Client(base_url=url + "/_emulator", timeout=60) as admin:
        admin.post("/reset")
        return str(admin.post("/lists", json={"name": "bench"}).json()["id"])


LIMIT_LIST = "00000000-0000-4000-8000-00000000b3c4"


def _limit_list(url: str) -> None:
    """A fresh account with the list the limit baseline's prepared bodies name."""
    import httpx

    with httpx.Client(base_url=url + "/_emulator", timeout=60) as admin:
        admin.post("/reset")
        admin.post("/lists", json={"name": "limit", "id": LIMIT_LIST}).raise_for_status()


#: (limit, engine) pairs per source and size in a full run, alternating; the figures
#: kept are the pair with the median ratio (this machine is noisy: one pair can be off
#: by a third either way)
PAIRS = 5


def main(quick: bool) -> dict[str, Any]:
    sizes = [100_000] if quick else [10_000, 100_000, 1_000_000]
    pairs = 1 if quick else PAIRS
    results: dict[str, Any] = {
        "layout": "emulator and each engine run in separate processes",
        "pairs": pairs,
    }
    emu, url = _spawn_emulator()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
            root = Path(tmp)
            sys.path.insert(0, str(ROOT / "tests"))
            from pg import postgres_server

            with postgres_server() as db_url:
                for n in sizes:
                    results[str(n)] = _size(root / str(n), url, db_url, n, pairs)
    finally:
        emu.terminate()
        emu.wait(timeout=30)
    return results


def _size(root: Path, url: str, db_url: str, n: int, pairs: int) -> dict[str, Any]:
    """Every figure for ``n`` profiles: the two read+encode+send baselines, then per
    source ``pairs`` alternating runs of the limit and the engine (a full run), and an
    unchanged incremental re-run after the last Parquet one."""
    from benchmarks.limit import prepare_bodies

    root.mkdir()
    parquet = root / "p.parquet"
    _make_parquet(parquet, n)
    csv_file = root / "p.csv"
    _make_csv(parquet, csv_file)
    _make_table(db_url, n)
    bodies = root / "bodies.bin"
    prepare_bodies(parquet, LIMIT_LIST, bodies)
    sources: dict[str, tuple[dict[str, Any], str | None]] = {
        "parquet": ({"file": {"path": str(parquet)}}, None),
        "postgres": (
            {
                "sql": {
                    "query": f"SELECT * FROM people_{n}",
                    "databaseURLSecretRef": {"name": "db", "key": "url"},
                }
            },
            db_url,
        ),
        "csv": ({"file": {"path": str(csv_file)}}, None),
    }
    written = 0

    def manifest(source: str) -> Path:
        """A manifest for ``source`` naming a new list of a fresh emulator account."""
        nonlocal written
        written += 1
        path = root / f"m{written}.yaml"
        spec, db = sources[source]
        path.write_text(_manifest(_new_list(url), spec, db))
        return path

    figures: dict[str, Any] = {
        "baseline": _run_child("baseline", manifest("parquet"), url, root / "s-base"),
        "baseline_sequential": _run_child(
            "baseline_sequential", manifest("parquet"), url, root / "s-base"
        ),
    }
    base = figures["baseline"]["wall_seconds"]
    for source in sources:
        limits, engines = [], []
        for i in range(pairs):
            limit_manifest = manifest(source)
            _limit_list(url)  # the prepared bodies name this list
            limits.append(_run_child("limit", limit_manifest, url, bodies))
            # Parquet's runs keep their state for the unchanged re-run below
            engine_manifest, state = manifest(source), root / f"state-{source}-{i}"
            mode = "incremental" if source == "parquet" else "full"
            engines.append(_run_child(mode, engine_manifest, url, state))
        ratios = [
            e["wall_seconds"] / r["wall_seconds"] for r, e in zip(limits, engines, strict=True)
        ]
        after = [
            e["after_startup_seconds"] / r["after_startup_seconds"]
            for r, e in zip(limits, engines, strict=True)
        ]
        middle = sorted(range(pairs), key=ratios.__getitem__)[pairs // 2]
        figures[f"limit_{source}"] = limits[middle]
        figures[f"{source}_full"] = engines[middle]
        figures[f"{source}_full_vs_limit"] = round(ratios[middle], 2)
        figures[f"{source}_full_vs_limit_pairs"] = [round(r, 2) for r in ratios]
        # the same without either process's start-up (beside the target's figure, which
        # counts it): the median of the pairs
        figures[f"{source}_full_vs_limit_after_startup"] = round(sorted(after)[pairs // 2], 2)
        figures[f"{source}_full_vs_limit_after_startup_pairs"] = [round(r, 2) for r in after]
        figures[f"{source}_full_vs_baseline"] = round(engines[middle]["wall_seconds"] / base, 2)
        if source == "parquet":  # an unchanged re-run, over the last full run's state
            figures["parquet_unchanged"] = _run_child("incremental", engine_manifest, url, state)
            figures["state_bytes"] = sum(f.stat().st_size for f in state.glob("*.state"))
    sequential = figures["baseline_sequential"]["wall_seconds"]
    figures["parquet_full_vs_baseline_sequential"] = round(
        figures["parquet_full"]["wall_seconds"] / sequential, 2
    )
    return figures


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        raise SystemExit(_child(sys.argv[2:]))
    print(json.dumps(main(quick="--quick" in sys.argv), indent=2))
