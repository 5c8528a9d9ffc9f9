"""Every fault kind, through the admin API and the CLI spelling; deterministic counts."""

from __future__ import annotations

import time

import httpx
import pytest
from sg_helpers import upsert, wait_job

from sendgrid_operator.emulator import AdminClient, FaultSpec


def test_429_burst_then_normal(api: httpx.Client, admin: AdminClient) -> None:
    admin.add_fault("upsert", "429", count=2)
    body = {"contacts": [{"email": "a@example.com"}]}
    statuses = [api.put("/v3/marketing/contacts", json=body).status_code for _ in range(3)]
    assert statuses == [429, 429, 202]
    log = admin.request_log()
    assert [r.fault for r in log] == ["429", "429", None]


@pytest.mark.parametrize("kind", ["500", "503"])
def test_server_errors(api: httpx.Client, admin: AdminClient, kind: str) -> None:
    admin.add_fault_spec(f"lists:{kind}:count=1,after=1")
    assert api.get("/v3/marketing/lists").status_code == 200
    r = api.get("/v3/marketing/lists")
    assert r.status_code == int(kind) and r.json()["errors"][0]["field"] is None
    assert api.get("/v3/marketing/lists").status_code == 200


def test_delay(api: httpx.Client, admin: AdminClient) -> None:
    admin.add_fault("scopes", "delay", seconds=0.3)
    started = time.monotonic()
    assert api.get("/v3/scopes").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_drop_closes_the_connection(api: httpx.Client, admin: AdminClient) -> None:
    admin.add_fault("GET /v3/marketing/contacts/count", "drop")
    with pytest.raises(httpx.TransportError):
        api.get("/v3/marketing/contacts/count")
    assert api.get("/v3/marketing/contacts/count").status_code == 200
    assert [r.fault for r in admin.request_log()] == ["drop", None]


def test_reject_every_kth_row(api: httpx.Client, admin: AdminClient) -> None:
    admin.add_fault("upsert", "reject_rows", every=3)
    job = upsert(api, [{"email": f"r{i}@example.com"} for i in range(9)])
    assert job["status"] == "errored"
    assert job["results"]["created_count"] == 6 and job["results"]["errored_count"] == 3
    assert admin.contact("r2@example.com") is None and admin.contact("r3@example.com") is not None
    assert (
        upsert(api, [{"email": "next@example.com"}])["status"] == "completed"
    )  # count=1 by default


def test_reject_rows_matching_pattern(api: httpx.Client, admin: AdminClient) -> None:
    admin.add_fault("upsert", "reject_rows", pattern=r"@blocked\.example$")
    job = upsert(api, [{"email": "ok@example.com"}, {"email": "x@blocked.example"}])
    assert job["results"]["errored_count"] == 1
    assert admin.contact("x@blocked.example") is None


def test_fail_job(api: httpx.Client, admin: AdminClient) -> None:
    admin.add_fault_spec("upsert:fail_job")
    job = upsert(api, [{"email": "f@example.com"}])
    assert job["status"] == "failed" and job["results"]["errored_count"] == 1
    assert admin.contact("f@example.com") is None


def test_list_remove_job_fault(api: httpx.Client, admin: AdminClient) -> None:
    list_id = admin.create_list("x")
    upsert(api, [{"email": "a@example.com"}], [list_id])
    cid = admin.contact("a@example.com")["id"]  # type: ignore[index]
    admin.add_fault("list_remove", "fail_job")
    r = api.delete(f"/v3/marketing/lists/{list_id}/contacts", params={"contact_ids": cid})
    assert wait_job(api, r.json()["job_id"])["status"] == "failed"
    assert admin.members(list_id) == {"a@example.com"}


def test_probability_with_seed_is_repeatable() -> None:
    from sendgrid_operator.emulator.faults import FaultInjector

    def run() -> list[bool]:
        inj = FaultInjector([FaultSpec("upsert", "500", count=None, probability=0.5)], seed=7)
        return [
            bool(inj.request_faults("upsert", "PUT", "/v3/marketing/contacts")) for _ in range(20)
        ]

    first = run()
    assert first == run() and 0 < sum(first) < 20


def test_bad_specs_are_refused(admin: AdminClient) -> None:
    with pytest.raises(ValueError):
        FaultSpec.parse("nowhere:500")
    with pytest.raises(ValueError):
        FaultSpec.parse("upsert:explode")
    with pytest.raises(RuntimeError):
        admin.add_fault("upsert", "reject_rows")
    assert admin.faults() == []
    admin.add_fault("upsert", "500", count=5)
    admin.clear_faults()
    assert admin.faults() == []
