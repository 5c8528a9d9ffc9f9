"""List endpoints: create, page through, get (with ``contact_sample``), rename, delete,
count, and remove contacts (an asynchronous job, like SendGrid's 202)."""

from __future__ import annotations

import base64
import heapq
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from sendgrid_operator.emulator.config import MAX_LISTS
from sendgrid_operator.emulator.context import BODY_CONTACTS, CTX, Context
from sendgrid_operator.emulator.handlers_contacts import read_json
from sendgrid_operator.emulator.render import (
    MSG_BAD_JSON,
    contact_json,
    error_response,
    json_response,
)
from sendgrid_operator.emulator.store import ContactList

MSG_LIST_NOT_FOUND = "list not found"
MSG_LIST_NAME = "name must be 1 to 100 characters"
MSG_LIST_NAME_TAKEN = "a list with this name already exists"
MSG_LIST_CAP = f"list limit reached: an account can have at most {MAX_LISTS} lists"
MSG_PAGE_SIZE = "page_size must be a number between 1 and 1000"
MSG_PAGE_TOKEN = "page_token is invalid"
MSG_CONTACT_IDS = "contact_ids is required: a comma-separated list of contact IDs"
MSG_UNKNOWN_CONTACT_IDS = "contact IDs not found: {ids}"
SAMPLE_SIZE = 50


def list_json(ctx: Context, lst: ContactList) -> dict[str, Any]:
    return {
        "id": lst.id,
        "name": lst.name,
        "contact_count": len(lst.members),
        "_metadata": {"self": f"{ctx.base_url}/v3/marketing/lists/{lst.id}"},
    }


def _name_problem(ctx: Context, name: object, own_id: str | None = None) -> str | None:
    if not isinstance(name, str) or not 1 <= len(name) <= 100:
        return MSG_LIST_NAME
    if any(lst.name == name and lst.id != own_id for lst in ctx.store.lists.values()):
        return MSG_LIST_NAME_TAKEN
    return None


async def list_create(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    try:
        body = await read_json(request)
    except ValueError:
        return error_response(400, MSG_BAD_JSON, "")
    name = body.get("name") if isinstance(body, dict) else None
    problem = _name_problem(ctx, name)
    if problem:
        return error_response(400, problem, "name")
    if len(ctx.store.lists) >= MAX_LISTS:
        return error_response(400, MSG_LIST_CAP, "name")
    assert isinstance(name, str)
    lst = ctx.store.create_list(name)
    ctx.changed()
    return json_response(list_json(ctx, lst), 201)


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _offset(token: str) -> int:
    padded = token + "=" * (-len(token) % 4)
    text = base64.urlsafe_b64decode(padded.encode()).decode()
    prefix, _, number = text.partition(":")
    if prefix != "offset" or not number.isdigit():
        raise ValueError(token)
    return int(number)


async def list_all(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    try:
        size_f = float(request.query.get("page_size", "100"))
        if not 1 <= size_f <= 1000 or size_f != int(size_f):
            raise ValueError(size_f)
    except ValueError:
        return error_response(400, MSG_PAGE_SIZE, "page_size")
    size = int(size_f)
    try:
        offset = _offset(request.query["page_token"]) if "page_token" in request.query else 0
    except (ValueError, UnicodeDecodeError):
        return error_response(400, MSG_PAGE_TOKEN, "page_token")
    lists = list(ctx.store.lists.values())
    page = lists[offset : offset + size]
    base = f"{ctx.base_url}/v3/marketing/lists"

    def url(at: int) -> str:
        query = {"page_size": size} | ({"page_token": _token(at)} if at else {})
        return f"{base}?{urlencode(query)}"

    meta: dict[str, Any] = {"self": url(offset), "count": len(lists)}
    if offset + size < len(lists):
        meta["next"] = url(offset + size)
    if offset > 0:
        meta["prev"] = url(max(0, offset - size))
    return json_response({"result": [list_json(ctx, lst) for lst in page], "_metadata": meta})


async def list_get(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    lst = ctx.store.lists.get(request.match_info["id"])
    if lst is None:
        return error_response(404, MSG_LIST_NOT_FOUND, "id", style="array")
    body = list_json(ctx, lst)
    if request.query.get("contact_sample", "false").lower() == "true":
        contacts = ctx.store.contacts
        recent = heapq.nlargest(
            SAMPLE_SIZE,
            (contacts[c] for c in lst.members if c in contacts),
            key=lambda c: (ctx.store.updated_at_of(c), c["id"]),
        )
        body["contact_sample"] = [contact_json(c, ctx.store, ctx.base_url) for c in recent]
    return json_response(body)


async def list_update(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    lst = ctx.store.lists.get(request.match_info["id"])
    if lst is None:
        return error_response(404, MSG_LIST_NOT_FOUND, "id")
    try:
        body = await read_json(request)
    except ValueError:
        return error_response(400, MSG_BAD_JSON, "")
    name = body.get("name") if isinstance(body, dict) else None
    problem = _name_problem(ctx, name, lst.id)
    if problem:
        return error_response(400, problem, "name")
    assert isinstance(name, str)
    lst.name = name
    ctx.changed()
    return json_response(list_json(ctx, lst))


async def list_delete(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    list_id = request.match_info["id"]
    if list_id not in ctx.store.lists:
        return error_response(404, MSG_LIST_NOT_FOUND, "id")
    delete_contacts = request.query.get("delete_contacts", "false").lower() == "true"
    members = ctx.store.delete_list(list_id, delete_contacts=False)
    ctx.changed()
    ctx.contacts_changed(members)
    if not delete_contacts:
        return web.Response(status=204)
    payload = {"list_id": None, "contact_ids": members}
    job = ctx.runner.submit("delete", len(members), payload, [])
    return json_response({"job_id": job.id}, 200)


async def list_remove(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    list_id = request.match_info["id"]
    if list_id not in ctx.store.lists:
        return error_response(404, MSG_LIST_NOT_FOUND, "id")
    raw = request.query.get("contact_ids", "")
    ids = [i.strip() for i in raw.split(",") if i.strip()]
    if not ids:
        return error_response(400, MSG_CONTACT_IDS, "contact_ids", style="object")
    unknown = [i for i in ids if i not in ctx.store.contacts]
    if unknown:
        shown = ",".join(unknown[:10])
        return error_response(404, MSG_UNKNOWN_CONTACT_IDS.format(ids=shown), "contact_ids")
    request[BODY_CONTACTS] = len(ids)
    faults = ctx.faults.job_faults("list_remove", request.method, request.path)
    job = ctx.runner.submit("delete", len(ids), {"list_id": list_id, "contact_ids": ids}, faults)
    return json_response({"job_id": job.id}, 202)


async def list_count(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    lst = ctx.store.lists.get(request.match_info["id"])
    if lst is None:
        return error_response(404, MSG_LIST_NOT_FOUND, "id")
    n = len(lst.members)
    return json_response({"contact_count": n, "billable_count": n})
