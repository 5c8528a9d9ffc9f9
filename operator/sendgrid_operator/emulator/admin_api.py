"""The emulator's own API under ``/_emulator/``: inspect, reset, and steer it.

Not SendGrid: no auth, no faults, no rate limits, never logged. ``admin.py`` is its typed
client. Paths cannot collide with SendGrid's, which all start with ``/v3/``.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from aiohttp import web

from sendgrid_operator.emulator.config import ApiKey
from sendgrid_operator.emulator.context import CTX
from sendgrid_operator.emulator.faults import FaultSpec
from sendgrid_operator.emulator.fields import FIELD_TYPES, name_problem
from sendgrid_operator.emulator.handlers_lists import list_json
from sendgrid_operator.emulator.ratelimit import RateLimitSpec
from sendgrid_operator.emulator.render import contact_json, json_response
from sendgrid_operator.emulator.summary import summary_text

routes = web.RouteTableDef()


def _bad(message: str) -> web.Response:
    return json_response({"error": message}, 400)


@routes.get("/_emulator/health")
async def health(request: web.Request) -> web.Response:
    return json_response({"ok": True})


@routes.get("/_emulator/lists/{id}/members")
async def members(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    lst = ctx.store.lists.get(request.match_info["id"])
    if lst is None:
        return json_response({"error": "list not found"}, 404)
    contacts = [ctx.store.contacts[c] for c in lst.members if c in ctx.store.contacts]
    return json_response(
        {
            "emails": sorted(c["email"] for c in contacts if c.get("email")),
            "contact_ids": sorted(c["id"] for c in contacts),
        }
    )


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


@routes.post("/_emulator/lists")
async def create_list(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    body = await request.json()
    name = body.get("name") if isinstance(body, dict) else None
    if not isinstance(name, str) or not name:
        return _bad("name is required")
    list_id = body.get("id")
    if list_id is not None:
        if not isinstance(list_id, str) or not _UUID.fullmatch(list_id):
            return _bad("id must be a UUID")
        if list_id in ctx.store.lists:
            existing = ctx.store.lists[list_id]
            if existing.name != name:
                return _bad(f"list {list_id} exists with another name")
            return json_response(list_json(ctx, existing), 200)
    lst = ctx.store.create_list(name, list_id)
    ctx.changed()
    return json_response(list_json(ctx, lst), 201)


@routes.post("/_emulator/fields")
async def create_field(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    body = await request.json()
    name, ftype = body.get("name"), body.get("field_type")
    problem = name_problem(name, list(ctx.store.fields.values()))
    if problem or ftype not in FIELD_TYPES:
        return _bad(problem or "field_type must be Text, Number or Date")
    fld = ctx.store.create_field(str(name), str(ftype))
    ctx.changed()
    return json_response(fld.to_json(), 201)


@routes.get("/_emulator/contacts")
async def contacts(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    email = request.query.get("email")
    if email is not None:
        found = ctx.store.find("email", email)
        selected = [found] if found is not None else []
    else:
        limit = int(request.query.get("limit", "1000"))
        selected = list(ctx.store.contacts.values())[:limit]
    return json_response(
        {
            "count": len(ctx.store.contacts),
            "contacts": [contact_json(c, ctx.store, ctx.base_url) for c in selected],
        }
    )


@routes.get("/_emulator/requests")
async def request_log(request: web.Request) -> web.Response:
    return json_response({"requests": [r.to_json() for r in request.app[CTX].log]})


@routes.delete("/_emulator/requests")
async def clear_request_log(request: web.Request) -> web.Response:
    request.app[CTX].log.clear()
    return web.Response(status=204)


@routes.post("/_emulator/reset")
async def reset(request: web.Request) -> web.Response:
    request.app[CTX].reset()
    return web.Response(status=204)


@routes.get("/_emulator/faults")
async def faults(request: web.Request) -> web.Response:
    return json_response({"faults": request.app[CTX].faults.describe()})


@routes.post("/_emulator/faults")
async def add_fault(request: web.Request) -> web.Response:
    body = await request.json()
    try:
        spec = FaultSpec.parse(body["spec"]) if "spec" in body else FaultSpec.from_dict(body)
    except (KeyError, ValueError, TypeError) as exc:
        return _bad(f"invalid fault: {exc}")
    request.app[CTX].faults.add(spec)
    return json_response(spec.to_dict(), 201)


@routes.delete("/_emulator/faults")
async def clear_faults(request: web.Request) -> web.Response:
    request.app[CTX].faults.clear()
    return web.Response(status=204)


@routes.put("/_emulator/rate-limits")
async def set_rate_limits(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    body: dict[str, Any] = await request.json()
    try:
        specs = [
            RateLimitSpec(str(x["selector"]), int(x["limit"]), float(x.get("window", 60)))
            for x in body.get("limits", [])
        ]
    except (KeyError, ValueError, TypeError) as exc:
        return _bad(f"invalid rate limit: {exc}")
    mode = body.get("reset_header", ctx.reset_mode)
    if mode not in ("epoch", "seconds"):
        return _bad("reset_header must be epoch or seconds")
    ctx.limiter.set(specs)
    ctx.reset_mode = mode
    return web.Response(status=204)


@routes.get("/_emulator/keys")
async def get_keys(request: web.Request) -> web.Response:
    keys = request.app[CTX].keys.values()
    return json_response({"keys": [{"key": k.key, "scopes": list(k.scopes)} for k in keys]})


@routes.put("/_emulator/keys")
async def set_keys(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    body = await request.json()
    try:
        keys = [
            ApiKey(str(k["key"]), tuple(k.get("scopes", ApiKey("x").scopes))) for k in body["keys"]
        ]
    except (KeyError, TypeError) as exc:
        return _bad(f"invalid keys: {exc}")
    ctx.keys = {k.key: k for k in keys}
    return web.Response(status=204)


@routes.post("/_emulator/settle")
async def settle(request: web.Request) -> web.Response:
    """Wait (up to ``timeout`` seconds) until every queued job and export has finished."""
    ctx = request.app[CTX]
    deadline = time.monotonic() + float(request.query.get("timeout", "30"))
    while ctx.runner.pending() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return json_response({"pending": ctx.runner.pending()})


@routes.get("/_emulator/summary")
async def summary(request: web.Request) -> web.Response:
    return web.Response(text=summary_text(request.app[CTX]))
