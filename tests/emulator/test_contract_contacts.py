"""Contact endpoints, every exchange validated against tsg_mc_contacts_v3.json.

The ``api`` fixture fails the test if any request or response violates the documents.
"""

from __future__ import annotations

import csv
import io
import json

import httpx
from sg_helpers import upsert, wait_export, wait_job

from sendgrid_operator.emulator import AdminClient


def test_upsert_202_then_job_completed_with_counts(api: httpx.Client, admin: AdminClient) -> None:
    list_id = admin.create_list("vip")
    r = api.put(
        "/v3/marketing/contacts",
        json={
            "list_ids": [list_id],
            "contacts": [{"email": "Ann@Example.com", "first_name": "Ann"}],
        },
    )
    assert r.status_code == 202
    job_id = r.json()["job_id"]
    first = api.get(f"/v3/marketing/contacts/imports/{job_id}").json()
    assert first["status"] in ("pending", "completed")
    job = wait_job(api, job_id)
    assert job["status"] == "completed" and job["job_type"] == "upsert"
    assert job["results"] == {
        "requested_count": 1,
        "created_count": 1,
        "updated_count": 0,
        "errored_count": 0,
    }
    again = upsert(api, [{"email": "ann@example.com", "last_name": "Lee"}])
    assert again["results"]["updated_count"] == 1
    contact = admin.contact("ANN@example.com")
    assert contact is not None
    assert (contact["email"], contact["first_name"], contact["last_name"]) == (
        "ann@example.com",
        "Ann",
        "Lee",
    )
    assert contact["list_ids"] == [list_id]
    assert admin.members(list_id) == {"ann@example.com"}


def test_unknown_custom_field_and_bad_number_rejected_in_errors_file_csv(
    api: httpx.Client, admin: AdminClient
) -> None:
    """Choice: the errors file is CSV (row, identifiers, error); Number values must be JSON numbers."""
    score = admin.create_field("score", "Number")
    when = admin.create_field("joined", "Date")
    job = upsert(
        api,
        [
            {"email": "a@example.com", "custom_fields": {score: 3, when: "2024-01-31"}},
            {"email": "b@example.com", "custom_fields": {"nope": "x"}},
            {"email": "c@example.com", "custom_fields": {score: "3"}},
            {"email": "d@example.com", "custom_fields": {when: "yesterday"}},
        ],
    )
    assert job["status"] == "errored"
    assert job["results"]["created_count"] == 1 and job["results"]["errored_count"] == 3
    rows = list(csv.DictReader(io.StringIO(httpx.get(job["results"]["errors_url"]).text)))
    assert [r["email"] for r in rows] == ["b@example.com", "c@example.com", "d@example.com"]
    assert "does not exist" in rows[0]["error"] and "Number" in rows[1]["error"]
    assert "Date" in rows[2]["error"]


def test_upsert_400_field_too_long_and_no_identifier(api: httpx.Client) -> None:
    r = api.put(
        "/v3/marketing/contacts",
        json={
            "contacts": [{"email": "a@example.com", "first_name": "x" * 51}, {"first_name": "y"}]
        },
        extensions={"expect_invalid_request": True},
    )
    assert r.status_code == 400
    fields = [e["field"] for e in r.json()["errors"]]
    assert fields == ["contacts[0].first_name", "contacts[1]"]


def test_upsert_400_invalid_email(api: httpx.Client) -> None:
    r = api.put("/v3/marketing/contacts", json={"contacts": [{"email": "not-an-email"}]})
    assert r.status_code == 400
    assert r.json()["errors"][0]["field"] == "contacts[0].email"


def test_upsert_404_unknown_list(api: httpx.Client) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    r = api.put(
        "/v3/marketing/contacts",
        json={"list_ids": [missing], "contacts": [{"email": "a@example.com"}]},
    )
    assert r.status_code == 404
    assert missing in r.json()["errors"][0]["message"]


def test_updating_needs_existing_identifiers(api: httpx.Client) -> None:
    upsert(api, [{"email": "x@example.com", "external_id": "ext-1"}])
    job = upsert(api, [{"email": "x@example.com", "first_name": "X"}])
    assert job["status"] == "failed" and job["results"]["errored_count"] == 1
    ok = upsert(api, [{"email": "x@example.com", "external_id": "ext-1", "first_name": "X"}])
    assert ok["results"]["updated_count"] == 1
    by_ext = upsert(api, [{"external_id": "ext-1", "email": "x@example.com", "last_name": "Y"}])
    assert by_ext["results"]["updated_count"] == 1


def test_import_status_404(api: httpx.Client) -> None:
    r = api.get("/v3/marketing/contacts/imports/does-not-exist")
    assert r.status_code == 404


def test_search_emails_partial_200_and_none_404(api: httpx.Client) -> None:
    upsert(api, [{"email": "hit@example.com", "alternate_emails": ["alt@example.com"]}])
    r = api.post(
        "/v3/marketing/contacts/search/emails",
        json={"emails": ["HIT@example.com", "miss@example.com", "alt@example.com"]},
    )
    assert r.status_code == 200
    result = r.json()["result"]
    assert result["hit@example.com"]["contact"]["email"] == "hit@example.com"
    assert result["alt@example.com"]["contact"]["email"] == "hit@example.com"
    assert result["miss@example.com"] == {"error": "contact not found"}
    none = api.post("/v3/marketing/contacts/search/emails", json={"emails": ["nobody@example.com"]})
    assert none.status_code == 404


def test_search_emails_400_over_100(api: httpx.Client) -> None:
    emails = [f"u{i}@example.com" for i in range(101)]
    r = api.post("/v3/marketing/contacts/search/emails", json={"emails": emails})
    assert r.status_code == 400


def test_search_identifiers(api: httpx.Client) -> None:
    upsert(api, [{"email": "i@example.com", "external_id": "E-9"}])
    r = api.post(
        "/v3/marketing/contacts/search/identifiers/external_id",
        json={"identifiers": ["E-9", "E-0"]},
    )
    assert r.status_code == 200
    assert r.json()["result"]["E-9"]["contact"]["external_id"] == "E-9"
    assert r.json()["result"]["E-0"] == {"error": "contact not found"}
    miss = api.post(
        "/v3/marketing/contacts/search/identifiers/email", json={"identifiers": ["no@example.com"]}
    )
    assert miss.status_code == 404
    bad = api.post(
        "/v3/marketing/contacts/search/identifiers/nickname",
        json={"identifiers": ["x"]},
        extensions={"expect_invalid_request": True},
    )
    assert bad.status_code == 400


def test_count_get_and_batch(api: httpx.Client) -> None:
    upsert(api, [{"email": "p@example.com"}, {"email": "q@example.com"}])
    assert api.get("/v3/marketing/contacts/count").json()["contact_count"] == 2
    found = api.post(
        "/v3/marketing/contacts/search/emails", json={"emails": ["p@example.com"]}
    ).json()
    cid = found["result"]["p@example.com"]["contact"]["id"]
    got = api.get(f"/v3/marketing/contacts/{cid}")
    assert got.status_code == 200 and got.json()["email"] == "p@example.com"
    assert api.get("/v3/marketing/contacts/nope").status_code == 404
    batch = api.post("/v3/marketing/contacts/batch", json={"ids": [cid, "nope"]})
    assert [c["id"] for c in batch.json()["result"]] == [cid]
    assert api.post("/v3/marketing/contacts/batch", json={"ids": ["nope"]}).status_code == 404


def test_export_by_list_csv_and_json(api: httpx.Client, admin: AdminClient) -> None:
    """Choice: CSV columns CONTACT_ID, EMAIL, ... plus custom fields by name; json is NDJSON."""
    list_id = admin.create_list("members")
    tier = admin.create_field("tier", "Text")
    upsert(
        api,
        [{"email": f"m{i}@example.com", "custom_fields": {tier: "gold"}} for i in range(3)],
        [list_id],
    )
    upsert(api, [{"email": "other@example.com"}])
    r = api.post("/v3/marketing/contacts/exports", json={"list_ids": [list_id]})
    assert r.status_code == 202
    status = wait_export(api, r.json()["id"])
    assert status["status"] == "ready" and status["contact_count"] == 3
    rows = list(csv.DictReader(io.StringIO(httpx.get(status["urls"][0]).text)))
    assert {r["EMAIL"] for r in rows} == {f"m{i}@example.com" for i in range(3)}
    assert admin.member_ids(list_id) == {r["CONTACT_ID"] for r in rows}
    assert {r["tier"] for r in rows} == {"gold"}
    r = api.post(
        "/v3/marketing/contacts/exports", json={"list_ids": [list_id], "file_type": "json"}
    )
    status = wait_export(api, r.json()["id"])
    lines = httpx.get(status["urls"][0]).text.splitlines()
    assert {json.loads(line)["EMAIL"] for line in lines} == {f"m{i}@example.com" for i in range(3)}


def test_export_errors(api: httpx.Client) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    assert (
        api.post("/v3/marketing/contacts/exports", json={"list_ids": [missing]}).status_code == 404
    )
    bad = api.post(
        "/v3/marketing/contacts/exports",
        json={"file_type": "xml"},
        extensions={"expect_invalid_request": True},
    )
    assert bad.status_code == 400
    assert api.get("/v3/marketing/contacts/exports/nope").status_code == 404
