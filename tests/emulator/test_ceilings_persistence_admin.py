"""The upsert ceilings, SQLite persistence across a restart, and the admin client."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
from sg_helpers import upsert

from sendgrid_operator.emulator import AdminClient, Emulator, EmulatorConfig
from sendgrid_operator.emulator.config import MAX_UPSERT_BODY_BYTES


def test_30001_contacts_is_400(api: httpx.Client) -> None:
    contacts = [{"email": f"c{i}@example.com"} for i in range(30_001)]
    r = api.put(
        "/v3/marketing/contacts",
        json={"contacts": contacts},
        extensions={"expect_invalid_request": True},
    )
    assert r.status_code == 400
    assert r.json() == {
        "errors": [{"field": "contacts", "message": "contacts must contain at most 30000 items"}]
    }


def test_30000_contacts_is_accepted(api: httpx.Client) -> None:
    job = upsert(api, [{"email": f"c{i}@example.com"} for i in range(30_000)])
    assert job["results"]["created_count"] == 30_000


def test_body_over_6_000_000_bytes_is_400(api: httpx.Client) -> None:
    """Choice: "6 MB" is 6,000,000 bytes, answered 400 (the only declared client error)."""
    pad = "p" * 180
    contacts = [{"email": f"c{i}@example.com", "postal_code": pad} for i in range(29_000)]
    raw = json.dumps({"contacts": contacts}).encode()
    assert len(raw) > MAX_UPSERT_BODY_BYTES
    r = api.put("/v3/marketing/contacts", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert (
        r.json()["errors"][0]["field"] == "contacts"
        and "6000000" in r.json()["errors"][0]["message"]
    )
    under = raw[: MAX_UPSERT_BODY_BYTES - 1000]
    assert len(under) < MAX_UPSERT_BODY_BYTES


async def test_state_survives_restart(tmp_path: Path) -> None:
    state = str(tmp_path / "emulator.sqlite")
    config = EmulatorConfig(apply_delay=0, state_file=state)
    headers = {"Authorization": "Bearer SG.test-emulator-key"}
    async with (
        Emulator(config) as emu,
        httpx.AsyncClient(base_url=emu.url, headers=headers) as client,
    ):
        list_id = (await client.post("/v3/marketing/lists", json={"name": "kept"})).json()["id"]
        fid = (
            await client.post(
                "/v3/marketing/field_definitions", json={"name": "n", "field_type": "Number"}
            )
        ).json()["id"]
        r = await client.put(
            "/v3/marketing/contacts",
            json={
                "list_ids": [list_id],
                "contacts": [{"email": "p@example.com", "custom_fields": {fid: 5}}],
            },
        )
        job_id = r.json()["job_id"]
        while (await client.get(f"/v3/marketing/contacts/imports/{job_id}")).json()[
            "status"
        ] == "pending":
            await asyncio.sleep(0.01)
        before = (
            await client.get(f"/v3/marketing/lists/{list_id}", params={"contact_sample": "true"})
        ).json()
    emu2 = Emulator(EmulatorConfig(apply_delay=0, state_file=state))
    async with emu2, httpx.AsyncClient(base_url=emu2.url, headers=headers) as client:
        after = (
            await client.get(f"/v3/marketing/lists/{list_id}", params={"contact_sample": "true"})
        ).json()
        fields = (await client.get("/v3/marketing/field_definitions")).json()["custom_fields"]
        new_list = (await client.post("/v3/marketing/lists", json={"name": "new"})).json()["id"]
    assert after["contact_count"] == 1
    assert after["contact_sample"][0]["id"] == before["contact_sample"][0]["id"]
    assert after["contact_sample"][0]["custom_fields"] == {"n": 5}
    assert fields == [{"id": fid, "name": "n", "field_type": "Number"}]
    assert new_list != list_id


def test_admin_client(api: httpx.Client, admin: AdminClient) -> None:
    list_id = admin.create_list("adm")
    upsert(api, [{"email": "Z@example.com"}], [list_id])
    assert admin.members(list_id) == {"z@example.com"}
    assert admin.contact_count() == 1
    log = admin.request_log()
    assert log[0].method == "PUT" and log[0].endpoint == "upsert" and log[0].status == 202
    assert log[0].contacts == 1 and log[0].bytes > 0
    assert "upsert" in admin.summary()
    admin.clear_request_log()
    assert admin.request_log() == []
    admin.add_fault("upsert", "500")
    admin.reset()
    assert admin.faults() == [] and admin.contact_count() == 0
    assert api.get("/v3/marketing/lists").json()["result"] == []
