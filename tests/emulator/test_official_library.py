"""The official ``sendgrid`` Python library, pointed at the emulator, does the product's job."""

from __future__ import annotations

import json
import time

import sendgrid

from sendgrid_operator.emulator import AdminClient, Emulator

DEADLINE = 15.0


def test_official_library_end_to_end(emu: Emulator, admin: AdminClient) -> None:
    sg = sendgrid.SendGridAPIClient(api_key=emu.api_key, host=emu.url)
    mc = sg.client.marketing
    created = mc.lists.post(request_body={"name": "library"})
    assert created.status_code == 201
    list_id = json.loads(created.body)["id"]
    upserted = mc.contacts.put(
        request_body={
            "list_ids": [list_id],
            "contacts": [{"email": "one@example.com"}, {"email": "two@example.com"}],
        }
    )
    assert upserted.status_code == 202
    job_id = json.loads(upserted.body)["job_id"]
    end = time.monotonic() + DEADLINE
    status = "pending"
    while status == "pending" and time.monotonic() < end:
        status = json.loads(mc.contacts.imports._(job_id).get().body)["status"]
    assert status == "completed"
    count = json.loads(mc.lists._(list_id).contacts.count.get().body)
    assert count["contact_count"] == 2
    found = json.loads(
        mc.contacts.search.emails.post(request_body={"emails": ["two@example.com"]}).body
    )
    two_id = found["result"]["two@example.com"]["contact"]["id"]
    removed = mc.lists._(list_id).contacts.delete(query_params={"contact_ids": two_id})
    assert removed.status_code == 202
    end = time.monotonic() + DEADLINE
    while admin.members(list_id) != {"one@example.com"} and time.monotonic() < end:
        pass
    assert admin.members(list_id) == {"one@example.com"}
