"""Shared steps of the fault, bad-input and security tests: set up an export, check a run's
counts against the CSV, rerun, and read the emulator's writes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kube import Kube, wait_for
from sendgrid_operator.emulator import AdminClient, Emulator
from sendgrid_operator.emulator.context import RequestRecord

from .conftest import API_KEY
from .helpers import JSON, apply, get, request_run, wait_condition, wait_run
from .manifests import CSV, CSV_MEMBERS, config_map, connection, dump, export, secret

WRITE_ENDPOINTS = frozenset({"upsert", "list_remove", "list_delete", "list_update", "list_create"})
EXPECTED_COUNTS = {
    "read": 5,
    "invalid": 1,
    "duplicates": 1,
    "profiles": 3,
    "sent": 3,
    "rejected": 0,
}


def setup_export(
    kube: Kube,
    emulator: Emulator,
    admin: AdminClient,
    *,
    csv: str = CSV,
    name: str = "vip",
    extra: tuple[JSON, ...] = (),
    wait_ready: bool = True,
    **spec: Any,
) -> str:
    """Secret, connection, ConfigMap ``profiles/vip.csv`` and an export; returns the list ID."""
    list_id = admin.create_list(f"{name}-{kube.namespace}"[:90])
    apply(
        kube,
        dump(
            secret("sendgrid-api-key", API_KEY),
            connection("sendgrid", emulator.url),
            config_map("profiles", {"vip.csv": csv}),
            export(name, list_id, **spec),
            *extra,
        ),
    )
    if wait_ready:
        wait_condition(kube, "sendgridconnections", "sendgrid", "True", "Succeeded")
    return list_id


def run(kube: Kube, name: str = "vip", timeout: float = 90) -> JSON:
    """Request a run and wait for its recorded end; returns status.lastRun."""
    return wait_run(kube, name, request_run(kube, name), timeout=timeout)


def assert_exact(last: JSON, created: int = 3, updated: int = 0) -> None:
    assert last["result"] == "Succeeded", last
    counts = last["counts"]
    for key, value in EXPECTED_COUNTS.items():
        assert counts.get(key, 0) == value, (key, counts)
    assert counts.get("created", 0) == created and counts.get("updated", 0) == updated, counts


def assert_rerun_converges(kube: Kube, admin: AdminClient, list_id: str, name: str = "vip") -> JSON:
    """A rerun after the fault: succeeds, and the list is exactly the CSV's valid emails."""
    again = run(kube, name)
    assert again["result"] == "Succeeded", again
    assert again["counts"].get("rejected", 0) == 0, again
    assert admin.members(list_id) == CSV_MEMBERS
    return again


def writes(admin: AdminClient) -> list[RequestRecord]:
    """Requests that could have changed anything in SendGrid (whatever their answer)."""
    return [
        r
        for r in admin.request_log()
        if r.endpoint in WRITE_ENDPOINTS or r.method in ("PUT", "DELETE", "PATCH")
    ]


def faults_fired(admin: AdminClient, selector: str) -> list[RequestRecord]:
    return [r for r in admin.request_log() if r.fault and r.endpoint == selector]


def active_run(kube: Kube, name: str = "vip") -> str | None:
    active = (get(kube, "segmentexports", name).get("status") or {}).get("active") or {}
    run_id = active.get("runId")
    return str(run_id) if run_id else None


def progress(kube: Kube, name: str = "vip") -> JSON:
    return dict((get(kube, "segmentexports", name).get("status") or {}).get("progress") or {})


def big_csv(n: int, prefix: str = "p") -> bytes:
    rows = "".join(f"{prefix}{i:07d}@example.com,F{i},L{i}\n" for i in range(n))
    return ("email,first_name,last_name\n" + rows).encode()


@contextmanager
def serve_files(files: dict[str, bytes]) -> Iterator[str]:
    """A loopback HTTP server for file sources (the Jobs' Pods are local processes)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = files.get(self.path.lstrip("/"))
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/csv")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def wait_upserts(admin: AdminClient, n: int, timeout: float = 60) -> list[RequestRecord]:
    def done() -> list[RequestRecord] | None:
        ups = [r for r in admin.request_log() if r.endpoint == "upsert" and r.status == 202]
        return ups if len(ups) >= n else None

    return wait_for(done, timeout, f"{n} accepted upserts")
