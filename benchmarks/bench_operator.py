"""The operator at scale: 1,000 SegmentExports on the local control plane.

Layout: a devcluster (real etcd, kube-apiserver, kube-controller-manager and the node agent)
in a temporary directory, the SendGrid emulator in its own process (``--apply-delay 0``),
and the operator installed with the real ``helm`` from ``charts/sendgrid-operator``; the
node agent runs its Pod as a local process, whose PID comes from the Pod's
``containerStatuses[].containerID`` (``local://PID``). One shared SendGridConnection (in
its own namespace, allowing the others by name) and N SegmentExports (``quick``: 100) spread
over a few namespaces, each with a tiny ConfigMap CSV and no schedule, so nothing runs on
its own.

Measured:

- time from the first export's creation until every export reports ``Ready=True`` (a
  watch on SegmentExports, arrival time at this client);
- the operator process's RSS (``/proc/PID/status``, sampled every 0.25 s the whole time,
  plus ``VmHWM``) and CPU time (``/proc/PID/stat``), per phase: idle, creating the exports,
  steady state (one resync period with nothing to do), on-demand runs;
- the delay from writing a new ``run-requested-at`` annotation to the ADDED event of the
  run's Job reaching this client (a watch on Jobs labelled as the operator's), one export at
  a time, each run allowed to finish before the next request.

Everything (cluster, emulator, temporary files) is torn down at the end, also on failure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import (
    KEY,
    ROOT,
    ProcSampler,
    cpu_seconds,
    env,
    new_list,
    percentile,
    rss_mb,
    spawn_emulator,
)

JSON = dict[str, Any]
GROUP_API = "apis/sendgrid-operator.io/v1alpha1"
OPERATOR_NS = "sendgrid-operator-bench"
RELEASE = "sgop"
PLATFORM_NS = "bench-platform"
RUN_REQUESTED = "sendgrid-operator.io/run-requested-at"
CSV = "email,first_name,city\nada@example.com,Ada,London\ngrace@example.com,Grace,Arlington\n"
RESYNC_SECONDS = 60.0  # controller/loops.py: every export is reconciled once per period


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _ready(obj: JSON) -> bool:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def _has(table: dict[str, float], key: str) -> Callable[[], bool]:
    return lambda: key in table


def _wait(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Watch:
    """A list-then-watch of one collection in a thread; ``on_event(type, obj, t)`` per event.

    Arrival times are taken at this client (``time.monotonic()``) as each line is read.
    The watch is re-established from the last resourceVersion when the server ends it.
    """

    def __init__(
        self,
        cluster: Any,
        path: str,
        on_event: Callable[[str, JSON, float], None],
        label_selector: str | None = None,
    ) -> None:
        import ssl

        cfg = cluster.admin
        self.path = path
        self.on_event = on_event
        self.selector = label_selector
        self.client = httpx.Client(
            base_url=cfg.server,
            verify=ssl.create_default_context(cadata=cfg.ca_pem.decode()),
            headers={"Authorization": f"Bearer {cfg.token}"},
            timeout=httpx.Timeout(30.0, read=None),
        )
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"watch {path}", daemon=True)

    def start(self) -> Watch:
        self.thread.start()
        return self

    def _params(self, **extra: str) -> dict[str, str]:
        params = dict(extra)
        if self.selector:
            params["labelSelector"] = self.selector
        return params

    def _run(self) -> None:
        listed = self.client.get(self.path, params=self._params()).json()
        now = time.monotonic()
        for item in listed.get("items") or []:
            self.on_event("ADDED", item, now)
        version = listed["metadata"]["resourceVersion"]
        while not self.stopped.is_set():
            params = self._params(watch="1", resourceVersion=version, timeoutSeconds="1800")
            try:
                with self.client.stream("GET", self.path, params=params) as response:
                    for line in response.iter_lines():
                        if not line:
                            continue
                        event = json.loads(line)
                        obj = event["object"]
                        if event["type"] == "ERROR":
                            version = ""
                            break
                        version = obj["metadata"].get("resourceVersion", version)
                        self.on_event(event["type"], obj, time.monotonic())
            except (httpx.HTTPError, RuntimeError):
                if self.stopped.is_set():
                    return
                time.sleep(0.2)

    def stop(self) -> None:
        self.stopped.set()
        self.client.close()


class Bench:
    def __init__(self, quick: bool, profile: Path | None = None) -> None:
        self.quick = quick
        self.profile = profile
        self.local: subprocess.Popen[bytes] | None = None
        self.exports = 100 if quick else 1000
        self.namespaces = [f"bench-{i}" for i in range(2 if quick else 5)]
        self.on_demand = 15 if quick else 60
        self.steady_seconds = 20.0 if quick else RESYNC_SECONDS + 10
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-operator-"))
        self.cluster: Any = None
        self.api: Any = None
        self.emulator: subprocess.Popen[str] | None = None
        self.results: JSON = {
            "exports": self.exports,
            "namespaces": len(self.namespaces),
            "on_demand_requests": self.on_demand,
        }

    # -- set-up --------------------------------------------------------------------------

    def start(self) -> None:
        from sendgrid_operator.devcluster import DevCluster

        self.emulator, self.url = spawn_emulator()
        self.list_id = new_list(self.url)
        began = time.monotonic()
        self.cluster = DevCluster(self.tmp / "cluster")
        self.cluster.start(timeout=120)
        self.api = self.cluster.api()
        self.results["devcluster_start_seconds"] = round(time.monotonic() - began, 1)

    def helm_install(self) -> None:
        api = self.api
        for ns in [OPERATOR_NS, PLATFORM_NS, *self.namespaces]:
            api.post("/api/v1/namespaces", {"metadata": {"name": ns}})
        _wait(
            lambda: api.get_or_none(f"/api/v1/namespaces/{OPERATOR_NS}/serviceaccounts/default"),
            60,
            "the default ServiceAccount",
        )
        self.port = _free_port()
        values = {
            "image": {"repository": "sendgrid-operator", "tag": "dev"},
            "operator": {
                "httpPort": self.port,
                "logLevel": "INFO",
                "reportURL": f"http://127.0.0.1:{self.port}",
            },
            "extraEnv": [{"name": "SGOP_HTTP_HOST", "value": "127.0.0.1"}],
        }
        values_file = self.tmp / "values.json"
        values_file.write_text(json.dumps(values))
        subprocess.run(
            [
                str(self.cluster.binaries.helm),
                "install",
                RELEASE,
                str(ROOT / "charts" / "sendgrid-operator"),
                "--namespace",
                OPERATOR_NS,
                "--values",
                str(values_file),
                "--wait=hookOnly",
            ],
            env={**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig)},
            check=True,
            capture_output=True,
            timeout=180,
        )

        _wait(self._http_ready, 120, "the operator to serve /readyz")
        self.pid = int(_wait(self._operator_pid, 30, "the operator Pod's process"))

    def local_operator(self) -> None:
        """The operator as a process of this benchmark, as admin, under pyinstrument.

        For profiling only (``--profile OUT``): the CRDs are applied with kubectl, the
        operator runs from this checkout with the same settings as the chart would give it,
        and the text report is written to OUT when it is stopped (SIGINT) at the end.
        """
        api = self.api
        for ns in [PLATFORM_NS, *self.namespaces]:
            api.post("/api/v1/namespaces", {"metadata": {"name": ns}})
        kube_env = {**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig)}
        subprocess.run(
            [
                str(self.cluster.binaries.kubectl),
                "apply",
                "--server-side",
                "-f",
                str(ROOT / "crds"),
            ],
            env=kube_env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        self.port = _free_port()
        assert self.profile is not None
        self.local = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pyinstrument",
                "-r",
                "text",
                "--show-all",
                "-o",
                str(self.profile),
                "-m",
                "sendgrid_operator",
                "operator",
            ],
            env={
                **env(),
                "KUBECONFIG": str(self.cluster.kubeconfig),
                "SGOP_HTTP_HOST": "127.0.0.1",
                "SGOP_HTTP_PORT": str(self.port),
                "SGOP_REPORT_URL": f"http://127.0.0.1:{self.port}",
                "SGOP_JOB_IMAGE": "sendgrid-operator:dev",
            },
            cwd=ROOT,
            stdout=(self.tmp / "operator.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        _wait(self._http_ready, 120, "the local operator to serve /readyz")
        self.pid = self.local.pid

    def _http_ready(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.port}/readyz"
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def _operator_pid(self) -> int | None:
        pods = self.api.get(
            f"/api/v1/namespaces/{OPERATOR_NS}/pods",
            params={"labelSelector": f"app.kubernetes.io/instance={RELEASE}"},
        )["items"]
        for pod in pods:
            for cs in (pod.get("status") or {}).get("containerStatuses") or []:
                cid = str(cs.get("containerID") or "")
                if cid.startswith("local://"):
                    pid = int(cid.removeprefix("local://"))
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                    if b"operator" in cmdline:
                        return pid
        return None

    def connection(self) -> None:
        api = self.api
        api.post(
            f"/api/v1/namespaces/{PLATFORM_NS}/secrets",
            {"metadata": {"name": "sendgrid-api-key"}, "stringData": {"apiKey": KEY}},
        )
        api.post(
            f"/{GROUP_API}/namespaces/{PLATFORM_NS}/sendgridconnections",
            {
                "apiVersion": "sendgrid-operator.io/v1alpha1",
                "kind": "SendGridConnection",
                "metadata": {"name": "sendgrid"},
                "spec": {
                    "apiKeySecretRef": {"name": "sendgrid-api-key"},
                    "baseURL": self.url,
                    "consent": {"personalData": True},
                    "allowedNamespaces": {"names": self.namespaces},
                },
            },
        )
        path = f"/{GROUP_API}/namespaces/{PLATFORM_NS}/sendgridconnections/sendgrid"
        _wait(lambda: _ready(api.get(path)), 60, "the connection to be Ready")

    def _names(self) -> list[tuple[str, str]]:
        return [
            (self.namespaces[i % len(self.namespaces)], f"export-{i:04d}")
            for i in range(self.exports)
        ]

    def _export(self, name: str) -> JSON:
        return {
            "apiVersion": "sendgrid-operator.io/v1alpha1",
            "kind": "SegmentExport",
            "metadata": {"name": name},
            "spec": {
                "connectionRef": {"name": "sendgrid", "namespace": PLATFORM_NS},
                "listIds": [self.list_id],
                "segments": [
                    {
                        "name": "all",
                        "source": {"file": {"configMap": {"name": name, "key": "p.csv"}}},
                    }
                ],
                "fieldMapping": {"email": "email", "firstName": "first_name", "city": "city"},
            },
        }

    def _in_threads(self, work: Callable[[Any, str, str], None], threads: int = 4) -> None:
        names = self._names()
        chunks = [names[i::threads] for i in range(threads)]

        def run(chunk: list[tuple[str, str]]) -> None:
            with self.cluster.api() as api:
                for ns, name in chunk:
                    work(api, ns, name)

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(run, chunks))

    # -- phases --------------------------------------------------------------------------

    def create_exports(self, sampler: ProcSampler) -> None:
        self._in_threads(
            lambda api, ns, name: api.post(
                f"/api/v1/namespaces/{ns}/configmaps",
                {"metadata": {"name": name}, "data": {"p.csv": CSV}},
            )
        )
        ready_at: dict[str, float] = {}
        all_ready = threading.Event()
        lock = threading.Lock()

        def on_event(kind: str, obj: JSON, t: float) -> None:
            if kind == "DELETED" or not _ready(obj):
                return
            with lock:
                ready_at.setdefault(obj["metadata"]["uid"], t)
                if len(ready_at) >= self.exports:
                    all_ready.set()

        watch = Watch(self.cluster, f"/{GROUP_API}/segmentexports", on_event).start()
        try:
            time.sleep(1.0)  # the watch has listed (nothing) and is waiting
            cpu0 = cpu_seconds(self.pid)
            sampler.mark("create")
            began = time.monotonic()
            self._in_threads(
                lambda api, ns, name: api.post(
                    f"/{GROUP_API}/namespaces/{ns}/segmentexports", self._export(name)
                )
            )
            created = time.monotonic()
            if not all_ready.wait(timeout=900):
                raise TimeoutError(f"only {len(ready_at)} of {self.exports} exports became Ready")
            done = time.monotonic()
            sampler.mark("ready")
            cpu1 = cpu_seconds(self.pid)
        finally:
            watch.stop()
        lags = [t - began for t in ready_at.values()]
        self.results["create"] = {
            "create_requests_seconds": round(created - began, 2),
            "all_ready_seconds": round(done - began, 2),
            "ready_after_last_create_seconds": round(done - created, 2),
            "exports_ready_per_second": round(self.exports / (done - began), 1),
            "ready_median_seconds": round(statistics.median(lags), 2),
            "operator_cpu_seconds": round((cpu1 or 0) - (cpu0 or 0), 2),
            "operator_cpu_ms_per_export": round(
                ((cpu1 or 0) - (cpu0 or 0)) * 1000 / self.exports, 2
            ),
        }

    def steady(self, sampler: ProcSampler) -> None:
        """One resync period and a bit: the operator re-reconciles every export once."""
        cpu0 = cpu_seconds(self.pid)
        sampler.mark("steady")
        time.sleep(self.steady_seconds)
        sampler.mark("steady_end")
        cpu1 = cpu_seconds(self.pid)
        cpu = (cpu1 or 0) - (cpu0 or 0)
        self.results["steady"] = {
            "seconds": self.steady_seconds,
            "operator_cpu_seconds": round(cpu, 2),
            "operator_cpu_percent": round(100 * cpu / self.steady_seconds, 1),
            "rss": sampler.summary("steady", "steady_end"),
        }

    def on_demand_runs(self, sampler: ProcSampler) -> None:
        from sendgrid_operator.controller.jobs import requested_run_id

        added: dict[str, float] = {}
        complete: dict[str, float] = {}
        job_failed: set[str] = set()
        cond = threading.Condition()

        def on_event(kind: str, obj: JSON, t: float) -> None:
            name = obj["metadata"]["name"]
            with cond:
                if kind == "ADDED":
                    added.setdefault(name, t)
                for c in (obj.get("status") or {}).get("conditions") or []:
                    if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
                        complete.setdefault(name, t)
                        if c.get("type") == "Failed":
                            job_failed.add(name)
                cond.notify_all()

        watch = Watch(
            self.cluster,
            "/apis/batch/v1/jobs",
            on_event,
            label_selector="app.kubernetes.io/managed-by=sendgrid-operator",
        ).start()
        names = self._names()
        step = max(1, len(names) // self.on_demand)
        picked = names[::step][: self.on_demand]
        delays: list[float] = []
        failed = 0
        cpu0 = cpu_seconds(self.pid)
        sampler.mark("on_demand")
        began = time.monotonic()
        try:
            time.sleep(1.0)
            for ns, name in picked:
                token = f"bench-{time.time_ns()}"
                run = requested_run_id(name, token)
                sent = time.monotonic()
                self.api.patch(
                    f"/{GROUP_API}/namespaces/{ns}/segmentexports/{name}",
                    {"metadata": {"annotations": {RUN_REQUESTED: token}}},
                )
                with cond:
                    if not cond.wait_for(_has(added, run), timeout=60):
                        raise TimeoutError(f"no Job {run} within 60 s of the request")
                    delays.append(added[run] - sent)
                    # Let the run finish before the next request (runs don't overlap).
                    cond.wait_for(_has(complete, run), timeout=60)
                    if run not in complete:
                        failed += 1
                time.sleep(0.5)
        finally:
            watch.stop()
        sampler.mark("on_demand_end")
        cpu1 = cpu_seconds(self.pid)
        self.results["on_demand"] = {
            "requests": len(delays),
            "runs_not_finished_within_60s": failed,
            "jobs_failed": len(job_failed),
            "delay_median_seconds": round(statistics.median(delays), 3),
            "delay_p95_seconds": round(percentile(delays, 95), 3),
            "delay_max_seconds": round(max(delays), 3),
            "delay_min_seconds": round(min(delays), 3),
            "phase_seconds": round(time.monotonic() - began, 1),
            "operator_cpu_seconds": round((cpu1 or 0) - (cpu0 or 0), 2),
            "rss": sampler.summary("on_demand", "on_demand_end"),
        }

    def run(self) -> JSON:
        self.start()
        if self.profile is not None:
            self.local_operator()
        else:
            self.helm_install()
        self.connection()
        sampler = ProcSampler(self.pid).start()
        try:
            sampler.mark("idle")
            cpu_start = cpu_seconds(self.pid)
            time.sleep(5.0)
            sampler.mark("idle_end")
            self.create_exports(sampler)
            self.steady(sampler)
            self.on_demand_runs(sampler)
            cpu_end = cpu_seconds(self.pid)
        finally:
            sampler.stop()
        peak = max(v for _, v in sampler.samples)
        self.results["operator"] = {
            "pid_command": " ".join(
                a.decode() for a in Path(f"/proc/{self.pid}/cmdline").read_bytes().split(b"\0") if a
            ),
            "rss_idle_mb": sampler.summary("idle", "idle_end").get("median_mb"),
            "rss_create_phase": sampler.summary("create", "ready"),
            "rss_peak_sampled_mb": round(peak, 1),
            "rss_peak_vmhwm_mb": round(rss_mb(self.pid, "VmHWM") or 0, 1),
            "rss_steady_median_mb": self.results["steady"]["rss"].get("median_mb"),
            "cpu_seconds_total_since_ready": round((cpu_end or 0) - (cpu_start or 0), 2),
            "cpu_seconds_since_start": cpu_end,
        }
        self.results["targets"] = {
            "memory_under_250_mb": self.results["operator"]["rss_peak_vmhwm_mb"] < 250,
            "on_demand_p95_under_2_s": self.results["on_demand"]["delay_p95_seconds"] < 2.0,
        }
        return self.results

    def close(self) -> None:
        if self.local is not None:
            self.local.send_signal(signal.SIGINT)  # kopf stops; pyinstrument writes its report
            try:
                self.local.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.local.kill()
        if self.api is not None:
            self.api.close()
        if self.cluster is not None:
            try:
                self.cluster.stop()
            except Exception as exc:  # keep tearing down
                print(f"devcluster stop failed: {exc}", file=sys.stderr)
        if self.emulator is not None:
            self.emulator.terminate()
            try:
                self.emulator.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.emulator.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


def main(quick: bool, profile: Path | None = None) -> dict[str, Any]:
    bench = Bench(quick, profile)
    try:
        return bench.run()
    finally:
        bench.close()


if __name__ == "__main__":
    # python -m benchmarks.bench_operator [--quick] [--profile OUT.txt]
    out = Path(sys.argv[sys.argv.index("--profile") + 1]) if "--profile" in sys.argv else None
    print(json.dumps(main(quick="--quick" in sys.argv, profile=out), indent=2))
