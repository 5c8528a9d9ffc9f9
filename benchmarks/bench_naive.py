"""A naive baseline: what a reverse-ETL tool does with the official ``sendgrid`` library.

Layout: the emulator in its own process (``--apply-delay 0``), the same Parquet file as the
engine benchmark (``bench_engine``'s generator: email in mixed case, first and last name,
city). The naive client reads the file, and for every 1,000 profiles sends one
``PUT /v3/marketing/contacts`` with ``sendgrid.SendGridAPIClient(key, host=emulator)``
and then waits for that import job to end (``GET /v3/marketing/contacts/imports/{id}``,
first after ``EngineSettings().poll_initial`` (0.25 s), then 1.5 times longer each time up
to ``poll_max`` (5 s): the engine's own schedule for a job while it still sends),
one request after the other. No validation, no de-duplication, no state. The first run
also times the naive client with the short schedule the engine keeps for the job a run
ends on (``poll_last``, 0.05 s): on an emulator that applies jobs at once, most of the
ratio is the poll schedule, and this says how much.

The project's engine runs on the same file in the same run, as its CLI in a subprocess
(``sendgrid-operator export -f m.yaml --sendgrid-url URL --full --output json``), into a
fresh emulator account each time. The figure that matters is the ratio of wall times.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import KEY, ROOT, env, make_parquet, manifest, new_list, spawn_emulator
from sendgrid_operator.engine.plan import EngineSettings

BATCH = 1_000
POLL_INITIAL = EngineSettings().poll_initial
POLL_LAST = EngineSettings().poll_last
POLL_MAX = EngineSettings().poll_max


def naive_upload(
    parquet: Path, url: str, list_id: str, first_poll: float = POLL_INITIAL
) -> dict[str, Any]:
    """Sequential 1,000-contact upserts with the official library, each job waited for
    (first poll after ``first_poll``)."""
    import pyarrow.parquet as pq
    import sendgrid

    client = sendgrid.SendGridAPIClient(KEY, host=url)
    requests = {"upsert": 0, "job_status": 0}
    statuses: dict[str, int] = {}
    started = time.perf_counter()
    cpu0 = time.process_time()

    def send(contacts: list[dict[str, Any]]) -> None:
        response = client.client.marketing.contacts.put(
            request_body={"list_ids": [list_id], "contacts": contacts}
        )
        requests["upsert"] += 1
        job_id = json.loads(response.body)["job_id"]
        delay = first_poll
        while True:
            time.sleep(delay)
            job = client.client.marketing.contacts.imports._(job_id).get()
            requests["job_status"] += 1
            status = json.loads(job.body)["status"]
            if status != "pending":
                statuses[status] = statuses.get(status, 0) + 1
                return
            delay = min(POLL_MAX, delay * 1.5)

    batch: list[dict[str, Any]] = []
    profiles = 0
    for record_batch in pq.ParquetFile(str(parquet)).iter_batches(batch_size=BATCH):
        for row in record_batch.to_pylist():
            batch.append(
                {
                    "email": row["email"],
                    "first_name": row["first_name"],
                    "last_name": row["last_name"],
                    "city": row["city"],
                }
            )
            profiles += 1
            if len(batch) == BATCH:
                send(batch)
                batch = []
    if batch:
        send(batch)
    return {
        "profiles": profiles,
        "wall_seconds": round(time.perf_counter() - started, 2),
        "cpu_seconds": round(time.process_time() - cpu0, 2),
        "upsert_requests": requests["upsert"],
        "job_status_requests": requests["job_status"],
        "requests": requests["upsert"] + requests["job_status"],
        "job_statuses": statuses,
    }


def engine_cli(manifest_path: Path, url: str, state_dir: Path) -> dict[str, Any]:
    """``sendgrid-operator export`` in a subprocess: wall time, its CPU time and its report."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "sendgrid_operator",
            "export",
            "-f",
            str(manifest_path),
            "--sendgrid-url",
            url,
            "--full",
            "--state-dir",
            str(state_dir),
            "--output",
            "json",
        ],
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise RuntimeError(f"engine exited {out.returncode}: {out.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(out.stdout)
    counts = report.get("counts") or {}
    return {
        "result": report.get("result"),
        "profiles": counts.get("profiles"),
        "created": counts.get("created"),
        "wall_seconds": round(wall, 2),
        "cpu_seconds": round(
            (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime), 2
        ),
        "upsert_requests": counts.get("upsertRequests", counts.get("upsert_requests")),
        "sendgrid_requests": report.get("sendgridRequests", report.get("sendgrid_requests")),
    }


def _members(url: str, list_id: str) -> int:
    import httpx

    got = httpx.get(f"{url}/_emulator/lists/{list_id}/members", timeout=60).json()
    return len(got["emails"])


def main(quick: bool) -> dict[str, Any]:
    n = 20_000 if quick else 100_000
    repeats = 1 if quick else 2
    results: dict[str, Any] = {"profiles": n, "batch": BATCH, "runs": []}
    emu, url = spawn_emulator()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-naive-") as tmp:
            root = Path(tmp)
            parquet = root / "p.parquet"
            make_parquet(parquet, n)
            for i in range(repeats):
                run: dict[str, Any] = {}
                list_id = new_list(url)
                path = root / f"m{i}.yaml"
                path.write_text(manifest(list_id, {"file": {"path": str(parquet)}}, None))
                run["engine"] = engine_cli(path, url, root / f"state-{i}")
                run["engine"]["list_members"] = _members(url, list_id)
                list_id = new_list(url)
                run["naive"] = naive_upload(parquet, url, list_id)
                run["naive"]["list_members"] = _members(url, list_id)
                run["naive_over_engine_wall"] = round(
                    run["naive"]["wall_seconds"] / run["engine"]["wall_seconds"], 1
                )
                if i == 0:
                    # how much of the ratio is the poll schedule: the naive client with the
                    # schedule the engine keeps for the job a run ends on (it waits on
                    # every job in turn); reported, not the target's reference
                    list_id = new_list(url)
                    run["naive_short_poll"] = naive_upload(parquet, url, list_id, POLL_LAST)
                    run["naive_short_poll_over_engine_wall"] = round(
                        run["naive_short_poll"]["wall_seconds"] / run["engine"]["wall_seconds"], 1
                    )
                results["runs"].append(run)
    finally:
        emu.terminate()
        emu.wait(timeout=30)
    ratios = [r["naive_over_engine_wall"] for r in results["runs"]]
    results["naive_over_engine_wall_min"] = min(ratios)
    results["target_engine_10x_faster"] = min(ratios) >= 10
    return results


if __name__ == "__main__":
    print(json.dumps(main(quick="--quick" in sys.argv), indent=2))
