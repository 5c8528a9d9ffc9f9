"""Small helpers shared by the emulator tests: wait on jobs and exports with a deadline."""

from __future__ import annotations

import time
from typing import Any

import httpx

DEADLINE = 15.0


def wait_job(client: httpx.Client, job_id: str, deadline: float = DEADLINE) -> dict[str, Any]:
    """Poll the import status until it leaves ``pending``."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        body: dict[str, Any] = client.get(f"/v3/marketing/contacts/imports/{job_id}").json()
        if body["status"] != "pending":
            return body
    raise AssertionError(f"job {job_id} still pending after {deadline}s")


def wait_export(client: httpx.Client, export_id: str, deadline: float = DEADLINE) -> dict[str, Any]:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        body: dict[str, Any] = client.get(f"/v3/marketing/contacts/exports/{export_id}").json()
        if body["status"] != "pending":
            return body
    raise AssertionError(f"export {export_id} still pending after {deadline}s")


def upsert(
    client: httpx.Client, contacts: list[dict[str, Any]], list_ids: list[str] | None = None
) -> dict[str, Any]:
    """Upsert and wait for the job to end; returns the final job status."""
    body: dict[str, Any] = {"contacts": contacts}
    if list_ids:
        body["list_ids"] = list_ids
    r = client.put("/v3/marketing/contacts", json=body)
    assert r.status_code == 202, r.text
    return wait_job(client, r.json()["job_id"])
