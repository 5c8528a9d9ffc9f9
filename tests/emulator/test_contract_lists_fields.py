"""Lists, field definitions and scopes, every exchange validated against the documents."""

from __future__ import annotations

import httpx
from sg_helpers import upsert, wait_job

from sendgrid_operator.emulator import AdminClient, Emulator

MISSING = "00000000-0000-4000-8000-000000000000"


def test_list_create_get_rename_count_delete(api: httpx.Client) -> None:
    r = api.post("/v3/marketing/lists", json={"name": "weekly"})
    assert r.status_code == 201
    list_id = r.json()["id"]
    assert len(list_id) == 36 and r.json()["contact_count"] == 0
    upsert(api, [{"email": f"w{i}@example.com"} for i in range(3)], [list_id])
    got = api.get(f"/v3/marketing/lists/{list_id}").json()
    assert got["contact_count"] == 3 and "contact_sample" not in got
    assert api.get(f"/v3/marketing/lists/{list_id}/contacts/count").json() == {
        "contact_count": 3,
        "billable_count": 3,
    }
    renamed = api.patch(f"/v3/marketing/lists/{list_id}", json={"name": "weekly-2"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "weekly-2"
    assert api.delete(f"/v3/marketing/lists/{list_id}").status_code == 204
    assert api.get(f"/v3/marketing/lists/{list_id}").status_code == 404


def test_contact_sample_is_an_array_of_recent_contacts(
    api: httpx.Client, admin: AdminClient
) -> None:
    """Spec inconsistency CONTACT_SAMPLE_IS_ARRAY: the schema says one object, the text "up to 50"."""
    list_id = admin.create_list("sampled")
    upsert(api, [{"email": f"s{i}@example.com"} for i in range(60)], [list_id])
    sample = api.get(f"/v3/marketing/lists/{list_id}", params={"contact_sample": "true"}).json()[
        "contact_sample"
    ]
    assert isinstance(sample, list) and len(sample) == 50


def test_list_errors_use_the_declared_shapes(api: httpx.Client) -> None:
    """GET /lists/{id} 404 is a bare array of errors, as [L] declares; others {"errors": [...]}."""
    r = api.get(f"/v3/marketing/lists/{MISSING}")
    assert r.status_code == 404 and isinstance(r.json(), list)
    assert api.patch(f"/v3/marketing/lists/{MISSING}", json={"name": "x"}).status_code == 404
    assert api.delete(f"/v3/marketing/lists/{MISSING}").status_code == 404
    assert api.get(f"/v3/marketing/lists/{MISSING}/contacts/count").status_code == 404
    bad = api.post(
        "/v3/marketing/lists", json={"name": ""}, extensions={"expect_invalid_request": True}
    )
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "name"
    api.post("/v3/marketing/lists", json={"name": "dup"})
    assert api.post("/v3/marketing/lists", json={"name": "dup"}).status_code == 400


def test_list_paging(api: httpx.Client, admin: AdminClient) -> None:
    ids = [admin.create_list(f"l{i}") for i in range(5)]
    first = api.get("/v3/marketing/lists", params={"page_size": 2}).json()
    assert [x["id"] for x in first["result"]] == ids[:2]
    assert first["_metadata"]["count"] == 5 and "prev" not in first["_metadata"]
    seen = [x["id"] for x in first["result"]]
    page = first
    while "next" in page["_metadata"]:
        page = api.get(page["_metadata"]["next"]).json()
        seen += [x["id"] for x in page["result"]]
    assert seen == ids and "prev" in page["_metadata"]
    assert (
        api.get(
            "/v3/marketing/lists",
            params={"page_size": 0},
            extensions={"expect_invalid_request": True},
        ).status_code
        == 400
    )


def test_list_cap_1000(api: httpx.Client, admin: AdminClient) -> None:
    for i in range(1000):
        admin.create_list(f"cap-{i}")
    r = api.post("/v3/marketing/lists", json={"name": "one-too-many"})
    assert r.status_code == 400 and "1000" in r.json()["errors"][0]["message"]


def test_remove_contacts_from_list_is_a_job(api: httpx.Client, admin: AdminClient) -> None:
    """Choice: list-removal job IDs are answered by imports/{id} with job_type "delete"."""
    list_id = admin.create_list("trim")
    upsert(api, [{"email": "keep@example.com"}, {"email": "drop@example.com"}], [list_id])
    found = api.post(
        "/v3/marketing/contacts/search/emails", json={"emails": ["drop@example.com"]}
    ).json()
    drop_id = found["result"]["drop@example.com"]["contact"]["id"]
    r = api.delete(f"/v3/marketing/lists/{list_id}/contacts", params={"contact_ids": drop_id})
    assert r.status_code == 202
    job = wait_job(api, r.json()["job_id"])
    assert job["status"] == "completed" and job["job_type"] == "delete"
    assert job["results"]["deleted_count"] == 1
    assert admin.members(list_id) == {"keep@example.com"}
    assert admin.contact("drop@example.com") is not None  # removed from the list, not deleted
    unknown = api.delete(
        f"/v3/marketing/lists/{list_id}/contacts", params={"contact_ids": f"{drop_id},nope"}
    )
    assert unknown.status_code == 404
    empty = api.delete(
        f"/v3/marketing/lists/{list_id}/contacts",
        params={"contact_ids": ""},
        extensions={"expect_invalid_request": True},
    )
    assert empty.status_code == 400


def test_delete_list_with_contacts_is_a_job(api: httpx.Client, admin: AdminClient) -> None:
    list_id = admin.create_list("gone")
    upsert(api, [{"email": "g@example.com"}], [list_id])
    r = api.delete(f"/v3/marketing/lists/{list_id}", params={"delete_contacts": "true"})
    assert r.status_code == 200
    assert wait_job(api, r.json()["job_id"])["results"]["deleted_count"] == 1
    assert admin.contact("g@example.com") is None


def test_field_definitions(api: httpx.Client) -> None:
    listing = api.get("/v3/marketing/field_definitions").json()
    reserved = {f["name"]: f["id"] for f in listing["reserved_fields"]}
    assert reserved["first_name"] == "_rf0_T" and reserved["contact_id"] == "_rf23_T"
    r = api.post("/v3/marketing/field_definitions", json={"name": "plan", "field_type": "Text"})
    assert r.status_code == 200
    fid = r.json()["id"]
    assert [
        f["id"] for f in api.get("/v3/marketing/field_definitions").json()["custom_fields"]
    ] == [fid]
    renamed = api.patch(f"/v3/marketing/field_definitions/{fid}", json={"name": "plan_name"})
    assert renamed.json()["name"] == "plan_name"
    assert api.delete(f"/v3/marketing/field_definitions/{fid}").status_code == 204
    assert api.delete(f"/v3/marketing/field_definitions/{fid}").status_code == 404
    assert (
        api.patch(f"/v3/marketing/field_definitions/{fid}", json={"name": "x"}).status_code == 404
    )


def test_field_name_rules(api: httpx.Client) -> None:
    def create(name: str, field_type: str = "Text", invalid: bool = False) -> httpx.Response:
        ext = {"expect_invalid_request": True} if invalid else {}
        return api.post(
            "/v3/marketing/field_definitions",
            json={"name": name, "field_type": field_type},
            extensions=ext,
        )

    assert create("_ok_1").status_code == 200
    assert create("_OK_1").status_code == 400  # case-insensitively unique
    assert create("1st").status_code == 400  # must start with a letter or _
    assert create("has-dash").status_code == 400
    assert create("First_Name").status_code == 400  # reserved
    assert create("good", "Boolean", invalid=True).status_code == 400


def test_field_cap_500(api: httpx.Client, admin: AdminClient) -> None:
    for i in range(500):
        admin.create_field(f"f{i}")
    r = api.post("/v3/marketing/field_definitions", json={"name": "f500", "field_type": "Text"})
    assert r.status_code == 400 and "500" in r.json()["errors"][0]["message"]


def test_scopes_and_auth(api: httpx.Client, emu: Emulator, admin: AdminClient) -> None:
    assert "marketing.read" in api.get("/v3/scopes").json()["scopes"]
    r = api.get("/v3/scopes", headers={"Authorization": "Bearer SG.unknown"})
    assert r.status_code == 401
    assert r.json() == {"errors": [{"field": None, "message": "authorization required"}]}
    no_auth = api.get(
        "/v3/marketing/lists",
        headers={"Authorization": ""},
        extensions={"expect_invalid_request": True},
    )
    assert no_auth.status_code == 401
    admin.set_keys({emu.api_key: ["marketing.read"], "SG.test-mail-only": ["mail.send"]})
    mail_only = {"Authorization": "Bearer SG.test-mail-only"}
    assert api.get("/v3/scopes", headers=mail_only).json() == {"scopes": ["mail.send"]}
    forbidden = api.put(
        "/v3/marketing/contacts", json={"contacts": [{"email": "a@example.com"}]}, headers=mail_only
    )
    assert forbidden.status_code == 403
    assert api.get("/v3/marketing/field_definitions", headers=mail_only).status_code == 403
