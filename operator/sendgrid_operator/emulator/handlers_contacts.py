"""Contact endpoints: upsert, import status, search, batch, get, count.

``PUT /v3/marketing/contacts`` checks the body synchronously (400s), checks ``list_ids``
(404), and queues a job; the contacts are applied ``apply_delay`` seconds later.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sendgrid_operator.emulator.config import (
    MAX_BATCH_IDS,
    MAX_SEARCH_EMAILS,
    MAX_UPSERT_BODY_BYTES,
)
from sendgrid_operator.emulator.context import BODY_BYTES, BODY_CONTACTS, CTX
from sendgrid_operator.emulator.hotpath import gc_paused, loads
from sendgrid_operator.emulator.render import (
    MSG_BAD_JSON,
    contact_json,
    error_response,
    json_response,
)
from sendgrid_operator.emulator.validate import (
    EMAIL_RE,
    IDENTIFIERS,
    check_upsert_body,
    simple_upsert_body,
)

MSG_BODY_TOO_LARGE = f"request body must be at most {MAX_UPSERT_BODY_BYTES} bytes (6 MB)"
MSG_LIST_NOT_FOUND = "list ID {lid} does not exist"
MSG_JOB_NOT_FOUND = "job not found"
MSG_NO_CONTACTS_FOUND = "no contacts found"
MSG_CONTACT_NOT_FOUND = "contact not found"  # SendGrid's per-email search entry
MSG_TOO_MANY_EMAILS = f"emails must contain at most {MAX_SEARCH_EMAILS} items"
MSG_IDENTIFIER_TYPE = (
    "identifier_type must be one of email, phone_number_id, external_id, anonymous_id"
)


async def read_json(request: web.Request) -> Any:
    """The body parsed once from bytes; raises ValueError when it isn't JSON."""
    raw = await request.read()
    request[BODY_BYTES] = len(raw)
    return loads(raw) if raw else None


async def upsert(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    raw = await request.read()
    request[BODY_BYTES] = len(raw)
    if len(raw) > MAX_UPSERT_BODY_BYTES:
        return error_response(400, MSG_BODY_TOO_LARGE, "contacts")
    try:
        with gc_paused(ctx.config.freeze_gc):
            body = loads(raw)
            # The columnar check decides the common body; anything else gets every check.
            simple = simple_upsert_body(body)
            errors = [] if simple is not None else check_upsert_body(body)
    except ValueError:
        return error_response(400, MSG_BAD_JSON, "")
    if isinstance(body, dict) and isinstance(body.get("contacts"), list):
        request[BODY_CONTACTS] = len(body["contacts"])
    if errors:
        return json_response({"errors": errors}, 400)
    list_ids: list[str] = body.get("list_ids") or []
    for lid in list_ids:
        if lid not in ctx.store.lists:
            return error_response(404, MSG_LIST_NOT_FOUND.format(lid=lid), "list_ids")
    faults = ctx.faults.job_faults("upsert", request.method, request.path)
    payload = {"contacts": body["contacts"], "list_ids": list_ids, "simple": simple}
    job = ctx.runner.submit("upsert", len(body["contacts"]), payload, faults)
    return json_response({"job_id": job.id}, 202)


async def import_status(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    job = ctx.runner.jobs.get(request.match_info["id"])
    if job is None:
        return error_response(404, MSG_JOB_NOT_FOUND, "id")
    return json_response(job.to_json(ctx.base_url))


async def errors_file(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    job = ctx.runner.jobs.get(request.match_info["id"])
    if job is None or job.status == "pending":
        return error_response(404, MSG_JOB_NOT_FOUND, "id")
    return web.Response(text=job.errors_csv(), content_type="text/csv")


async def contact_count(request: web.Request) -> web.Response:
    n = len(request.app[CTX].store.contacts)
    return json_response({"contact_count": n, "billable_count": n})


async def contact_get(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    contact = ctx.store.contacts.get(request.match_info["id"])
    if contact is None:
        return error_response(404, MSG_CONTACT_NOT_FOUND, "id")
    return json_response(contact_json(contact, ctx.store, ctx.base_url))


async def contacts_batch(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    try:
        body = await read_json(request)
    except ValueError:
        return error_response(400, MSG_BAD_JSON, "")
    ids = body.get("ids") if isinstance(body, dict) else None
    if (
        not isinstance(ids, list)
        or len(ids) > MAX_BATCH_IDS
        or not all(isinstance(i, str) for i in ids)
    ):
        return error_response(
            400, f"ids must be an array of at most {MAX_BATCH_IDS} strings", "ids"
        )
    found = [ctx.store.contacts[i] for i in ids if i in ctx.store.contacts]
    if not found:
        return error_response(404, MSG_NO_CONTACTS_FOUND, "ids")
    return json_response({"result": [contact_json(c, ctx.store, ctx.base_url) for c in found]})


async def search_emails(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    try:
        body = await read_json(request)
    except ValueError:
        return error_response(400, MSG_BAD_JSON, "")
    emails = body.get("emails") if isinstance(body, dict) else None
    if not isinstance(emails, list) or not emails:
        return error_response(400, "emails is required and must be a non-empty array", "emails")
    if len(emails) > MAX_SEARCH_EMAILS:
        return error_response(400, MSG_TOO_MANY_EMAILS, "emails")
    for email in emails:
        if not isinstance(email, str) or len(email) > 100 or not EMAIL_RE.match(email):
            return error_response(400, f"invalid email: {email!r}", "emails")
    result: dict[str, Any] = {}
    hits = 0
    for email in emails:
        key = email.lower()
        contact = ctx.store.find("email", key)
        if contact is None:
            result[key] = {"error": MSG_CONTACT_NOT_FOUND}
        else:
            hits += 1
            result[key] = {"contact": contact_json(contact, ctx.store, ctx.base_url)}
    if not hits:
        return error_response(404, MSG_NO_CONTACTS_FOUND, "emails")
    return json_response({"result": result})


async def search_identifiers(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    kind = request.match_info["identifier_type"]
    if kind not in IDENTIFIERS:
        return error_response(400, MSG_IDENTIFIER_TYPE, "identifier_type", style="object")
    try:
        body = await read_json(request)
    except ValueError:
        return error_response(400, MSG_BAD_JSON, "", style="object")
    values = body.get("identifiers") if isinstance(body, dict) else None
    if not isinstance(values, list) or not values or len(values) > MAX_SEARCH_EMAILS:
        return error_response(
            400, "identifiers must be an array of 1 to 100 strings", "identifiers", style="object"
        )
    result: dict[str, Any] = {}
    hits = 0
    for value in values:
        if not isinstance(value, str):
            return error_response(400, "identifiers must be strings", "identifiers", style="object")
        contact = ctx.store.find(kind, value)
        key = value.lower() if kind == "email" else value
        if contact is None:
            result[key] = {"error": MSG_CONTACT_NOT_FOUND}
        else:
            hits += 1
            result[key] = {"contact": contact_json(contact, ctx.store, ctx.base_url)}
    if not hits:
        return error_response(404, MSG_NO_CONTACTS_FOUND, "identifiers", style="object")
    return json_response({"result": result})
