"""The emulator's core path end to end: list, field, upsert, job, search, admin client."""

from __future__ import annotations

import time

import httpx

from sendgrid_operator.emulator import AdminClient, Emulator

DEADLINE = 10.0


def wait_job(client: httpx.Client, job_id: str) -> dict[str, object]:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        body: dict[str, object] = client.get(f"/v3/marketing/contacts/imports/{job_id}").json()
        if body["status"] != "pending":
            return body
    raise AssertionError(f"job {job_id} still pending after {DEADLINE}s")


def test_upsert_lands_in_list(
    sendgrid_emulator_thread: Emulator, emulator_admin: AdminClient
) -> None:
    emu = sendgrid_emulator_thread
    list_id = emulator_admin.create_list("vip")
    field_id = emulator_admin.create_field("score", "Number")
    headers = {"Authorization": f"Bearer {emu.api_key}"}
    with httpx.Client(base_url=emu.url, headers=headers) as client:
        r = client.put(
            "/v3/marketing/contacts",
            json={
                "list_ids": [list_id],
                "contacts": [{"email": "A@Example.com", "custom_fields": {field_id: 7}}],
            },
        )
        assert r.status_code == 202
        job = wait_job(client, r.json()["job_id"])
        assert job["status"] == "completed"
    assert emulator_admin.members(list_id) == {"a@example.com"}
    contact = emulator_admin.contact("a@example.com")
    assert contact is not None and contact["custom_fields"] == {"score": 7}
    log = emulator_admin.request_log()
    assert log[0].endpoint == "upsert" and log[0].contacts == 1
