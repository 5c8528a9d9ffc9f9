"""The layer every SendGrid-facing request passes: faults, auth, rate limits, the log.

Order: injected request faults (delay, drop, 429/500/503) act first, as a flaky network
or server would; then the API key (401) and its scope (403, ``marketing.read`` for every
``/v3/marketing`` path); then the endpoint's rate-limit window (429); then the handler.
Every ``/v3`` response carries ``X-RateLimit-*`` headers. Admin paths bypass all of it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from sendgrid_operator.emulator.context import (
    BODY_BYTES,
    BODY_CONTACTS,
    CTX,
    Context,
    RequestRecord,
)
from sendgrid_operator.emulator.endpoints import BY_NAME
from sendgrid_operator.emulator.render import (
    MSG_ACCESS_FORBIDDEN,
    MSG_AUTH_REQUIRED,
    MSG_INTERNAL,
    MSG_NOT_FOUND,
    MSG_TOO_MANY,
    MSG_UNAVAILABLE,
    generic_error,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MARKETING_SCOPE = "marketing.read"
_FAULT_STATUS = {
    "429": (429, MSG_TOO_MANY),
    "500": (500, MSG_INTERNAL),
    "503": (503, MSG_UNAVAILABLE),
}


def _api_key(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


@web.middleware
async def emulator_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    route = request.match_info.route
    endpoint = route.name or ""
    if endpoint not in BY_NAME:
        if request.path.startswith("/_emulator/"):
            return await handler(request)
        return generic_error(404, MSG_NOT_FOUND)
    ctx = request.app[CTX]
    started = time.time()
    fault_name: str | None = None
    response: web.StreamResponse
    try:
        response, fault_name = await _dispatch(ctx, request, handler, endpoint)
    except web.HTTPException as exc:
        response = exc
    if response.status != 599:
        ctx.record(
            RequestRecord(
                method=request.method,
                path=request.path,
                endpoint=endpoint,
                status=response.status,
                bytes=int(request.get(BODY_BYTES, request.content_length or 0)),
                contacts=int(request.get(BODY_CONTACTS, 0)),
                timestamp=started,
                duration=time.time() - started,
                fault=fault_name,
            )
        )
    return response


async def _dispatch(
    ctx: Context, request: web.Request, handler: Handler, endpoint: str
) -> tuple[web.StreamResponse, str | None]:
    method, path = request.method, request.path
    for fault in ctx.faults.request_faults(endpoint, method, path):
        if fault.kind == "delay":
            await asyncio.sleep(fault.seconds)
        elif fault.kind == "drop":
            ctx.record(RequestRecord(method, path, endpoint, 0, 0, 0, time.time(), 0.0, "drop"))
            if request.transport is not None:
                request.transport.close()
            raise asyncio.CancelledError("connection dropped by an injected emulator fault")
        else:
            status, message = _FAULT_STATUS[fault.kind]
            headers = ctx.limiter.exhaust(endpoint, method, path).headers(ctx.reset_mode)
            return generic_error(status, message, headers if status == 429 else None), fault.kind
    on_v3 = path.startswith("/v3/")
    if on_v3:
        key = ctx.keys.get(_api_key(request) or "")
        if key is None:
            return generic_error(401, MSG_AUTH_REQUIRED), None
        if path.startswith("/v3/marketing/") and MARKETING_SCOPE not in key.scopes:
            return generic_error(403, MSG_ACCESS_FORBIDDEN), None
    decision = ctx.limiter.check(endpoint, method, path)
    headers = decision.headers(ctx.reset_mode)
    if not decision.allowed:
        return generic_error(429, MSG_TOO_MANY, headers), None
    response = await handler(request)
    if on_v3:
        response.headers.update(headers)
    return response, None
