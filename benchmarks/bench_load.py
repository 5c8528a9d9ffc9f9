"""Load: N SegmentExports (200; ``quick``: 40) on a ``* * * * *`` schedule at once, against
the emulator with tight rate limits.

Layout as in ``bench_operator``: a devcluster in a temporary directory, the emulator in its
own process, the operator installed with the real ``helm``; one shared SendGridConnection
allowing a few namespaces. Each export has its own list and a small ConfigMap CSV (valid
rows, one invalid row, one duplicate). The emulator's rate limits are set low
(``LIMITS``), so the Jobs that all start at the same minute meet 429s.

Measured / checked:

- every export gets a successful *scheduled* run, and each list's members equal its CSV's
  valid emails exactly (nothing lost, nothing extra);
- every run's counts are exact (read, invalid, duplicates, created or updated);
- 429s answered by the emulator per endpoint, and the most requests it accepted in any one
  rate-limit window (which must not exceed the limit);
- the operator process's RSS (sampled, and its ``VmHWM`` peak) and CPU time; the number of
  export Job processes alive at once and their summed RSS (sampled from ``/proc``);
- the time from the exports' creation until every one has had its successful scheduled run.

Not part of ``make test``: run it with ``python -m benchmarks.run load [--quick]``.
"""

from __future__ import annotations

import collections
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_operator import GROUP_API, Bench, _wait
from benchmarks.common import ProcSampler, cpu_seconds, rss_mb
from sendgrid_operator.emulator import AdminClient

JSON = dict[str, Any]
ROWS = 3  # valid rows per export (plus one invalid, plus one duplicate)
LIMITS = {  # tight on purpose: Jobs starting in the same second meet 429s
    "upsert": (2, 1.0),
    "import_status": (4, 1.0),
    "list_get": (4, 1.0),
    "scopes": (4, 1.0),
}


def _csv(index: int) -> str:
    valid = [f"load{index:04d}-{j}@example.com" for j in range(ROWS)]
    rows = [f"{e},First{j}" for j, e in enumerate(valid)]
    rows += ["not-an-email,Bad", f"{valid[0].upper()},Duplicate"]
    return "email,first_name\n" + "\n".join(rows) + "\n"


def _valid(index: int) -> set[str]:
    return {f"load{index:04d}-{j}@example.com" for j in range(ROWS)}


class JobSampler:
    """Export Job processes alive (``sendgrid-operator job``) and their summed RSS."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.peak_count = 0
        self.peak_rss_mb = 0.0
        self.peak_single_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="job-sampler", daemon=True)

    def start(self) -> JobSampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            count, total = 0, 0.0
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    argv = (entry / "cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if b"job" in argv[1:3] and any(a.endswith(b"sendgrid-operator") for a in argv):
                    rss = rss_mb(int(entry.name)) or 0.0
                    count += 1
                    total += rss
                    self.peak_single_mb = max(self.peak_single_mb, rss)
            self.peak_count = max(self.peak_count, count)
            self.peak_rss_mb = max(self.peak_rss_mb, total)
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class LoadBench(Bench):
    def __init__(self, quick: bool) -> None:
        super().__init__(quick)
        self.exports = 40 if quick else 200
        self.results = {"exports": self.exports, "namespaces": len(self.namespaces)}

    def _export(self, name: str) -> JSON:
        body = super()._export(name)
        body["spec"]["listIds"] = [self.lists[name]]
        body["spec"]["schedule"] = "* * * * *"
        body["spec"]["fieldMapping"] = {"email": "email", "firstName": "first_name"}
        return body

    def run(self) -> JSON:
        self.start()
        self.helm_install()
        self.connection()
        admin = AdminClient(self.url)
        names = self._names()
        self.lists = {name: admin.create_list(name) for _, name in names}
        index = {name: i for i, (_, name) in enumerate(names)}
        admin.set_rate_limits(LIMITS)
        admin.clear_request_log()

        sampler = ProcSampler(self.pid).start()
        jobs = JobSampler().start()
        cpu0 = cpu_seconds(self.pid) or 0.0
        began = time.monotonic()
        self._in_threads(
            lambda api, ns, name: api.post(
                f"/api/v1/namespaces/{ns}/configmaps",
                {"metadata": {"name": name}, "data": {"p.csv": _csv(index[name])}},
            )
        )
        self._in_threads(
            lambda api, ns, name: api.post(
                f"/{GROUP_API}/namespaces/{ns}/segmentexports", self._export(name)
            )
        )
        created = time.monotonic()
        done: dict[str, JSON] = {}

        def all_scheduled_runs_succeeded() -> bool:
            items = self.api.get(f"/{GROUP_API}/segmentexports")["items"]
            for obj in items:
                name = obj["metadata"]["name"]
                status = obj.get("status") or {}
                for run in status.get("history") or []:
                    if run.get("trigger") == "Schedule" and run.get("result") == "Succeeded":
                        full = status.get("lastRun") or {}
                        done.setdefault(name, full if full.get("runId") == run["runId"] else run)
                        break
            return len(done) >= self.exports

        try:
            _wait(
                all_scheduled_runs_succeeded,
                1500,
                "a successful scheduled run of every export",
                2.0,
            )
        finally:
            finished = time.monotonic()
            jobs.stop()
            sampler.stop()
        cpu1 = cpu_seconds(self.pid) or 0.0
        admin.settle()

        # Exactness: each list holds exactly its CSV's valid emails; counts are exact.
        wrong_members = [n for n, i in index.items() if admin.members(self.lists[n]) != _valid(i)]
        wrong_counts = []
        for name, run in done.items():
            c = run.get("counts") or {}
            applied = c.get("created", 0) + c.get("updated", 0)
            if (c.get("read"), c.get("invalid"), c.get("duplicates"), applied) != (
                ROWS + 2,
                1,
                1,
                ROWS,
            ) and c.get("unchanged", 0) != ROWS:
                wrong_counts.append(name)

        log = admin.request_log()
        status_by_endpoint: dict[str, collections.Counter[int]] = collections.defaultdict(
            collections.Counter
        )
        windows: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)
        for r in log:
            status_by_endpoint[r.endpoint][r.status] += 1
            if r.endpoint in LIMITS and r.status != 429:
                windows[r.endpoint][int(r.timestamp // LIMITS[r.endpoint][1])] += 1
        peak_per_window = {e: max(w.values()) for e, w in windows.items()}
        over_limit = {e: n for e, n in peak_per_window.items() if n > LIMITS[e][0]}
        durations = [
            float(run["durationSeconds"]) for run in done.values() if run.get("durationSeconds")
        ]
        rss = [v for _, v in sampler.samples]
        self.results.update(
            {
                "rate_limits": {e: f"{n}/{w:g}s" for e, (n, w) in LIMITS.items()},
                "all_succeeded": len(done) == self.exports,
                "lists_exact": not wrong_members,
                "lists_wrong": wrong_members[:10],
                "counts_exact": not wrong_counts,
                "counts_wrong": wrong_counts[:10],
                "seconds_until_all_succeeded": round(finished - created, 1),
                "requests": {e: dict(c) for e, c in sorted(status_by_endpoint.items())},
                "rate_limited_429": sum(c[429] for c in status_by_endpoint.values()),
                "peak_accepted_per_window": peak_per_window,
                "limits_exceeded": over_limit,
                "run_duration_seconds": {
                    "median": round(statistics.median(durations), 1) if durations else None,
                    "max": round(max(durations), 1) if durations else None,
                },
                "operator_rss_mb": {
                    "start": round(rss[0], 1) if rss else None,
                    "max": round(max(rss), 1) if rss else None,
                    "end": round(rss[-1], 1) if rss else None,
                    "vm_hwm": rss_mb(self.pid, "VmHWM"),
                },
                "operator_cpu_seconds": round(cpu1 - cpu0, 1),
                "job_processes_peak": jobs.peak_count,
                "job_processes_peak_rss_mb": round(jobs.peak_rss_mb, 1),
                "job_process_peak_rss_mb": round(jobs.peak_single_mb, 1),
                "wall_seconds": round(finished - began, 1),
            }
        )
        return self.results


def main(quick: bool) -> dict[str, Any]:
    bench = LoadBench(quick)
    try:
        return bench.run()
    finally:
        bench.close()


if __name__ == "__main__":
    import json

    print(json.dumps(main(quick="--quick" in sys.argv), indent=2))
