"""Custom field definitions, ``GET /v3/scopes``, and contact exports."""

from __future__ import annotations

from aiohttp import web

from sendgrid_operator.emulator.config import MAX_CUSTOM_FIELDS
from sendgrid_operator.emulator.context import CTX
from sendgrid_operator.emulator.fields import (
    FIELD_TYPES,
    MSG_BAD_TYPE,
    MSG_FIELD_CAP,
    MSG_NOT_FOUND,
    RESERVED_FIELDS,
    name_problem,
)
from sendgrid_operator.emulator.handlers_contacts import read_json
from sendgrid_operator.emulator.middleware import _api_key
from sendgrid_operator.emulator.render import (
    MSG_AUTH_REQUIRED,
    MSG_BAD_JSON,
    error_response,
    generic_error,
    json_response,
)

MSG_RESERVED_READONLY = "reserved fields cannot be changed"
MSG_EXPORT_NOT_FOUND = "export not found"
MSG_FILE_TYPE = "file_type must be csv or json"
MSG_SEGMENTS = "segment_ids are not supported by the emulator"
MSG_EXPORT_LIST = "list ID {lid} does not exist"


async def fields_get(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    return json_response(
        {
            "custom_fields": [f.to_json() for f in ctx.store.fields.values()],
            "reserved_fields": RESERVED_FIELDS,
            "_metadata": {"self": f"{ctx.base_url}/v3/marketing/field_definitions"},
        }
    )


async def field_create(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    try:
        body = await read_json(request)
    except ValueError:
        return error_response(400, MSG_BAD_JSON, "")
    if not isinstance(body, dict):
        return error_response(400, MSG_BAD_JSON, "")
    name, field_type = body.get("name"), body.get("field_type")
    problem = name_problem(name, list(ctx.store.fields.values()))
    if problem:
        return error_response(400, problem, "name")
    if field_type not in FIELD_TYPES:
        return error_response(400, MSG_BAD_TYPE, "field_type")
    if len(ctx.store.fields) >= MAX_CUSTOM_FIELDS:
        return error_response(400, MSG_FIELD_CAP, "name")
    assert isinstance(name, str) and isinstance(field_type, str)
    fld = ctx.store.create_field(name, field_type)
    ctx.changed()
    meta = {"self": f"{ctx.base_url}/v3/marketing/field_definitions/{fld.id}"}
    return json_response({**fld.to_json(), "_metadata": meta})


async def field_update(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    fid = request.match_info["custom_field_id"]
    if fid.startswith("_rf"):
        return error_response(400, MSG_RESERVED_READONLY, "custom_field_id")
    fld = ctx.store.fields.get(fid)
    if fld is None:
        return error_response(404, MSG_NOT_FOUND, "custom_field_id")
    try:
        body = await read_json(request)
    except ValueError:
        return error_response(400, MSG_BAD_JSON, "")
    name = body.get("name") if isinstance(body, dict) else None
    problem = name_problem(name, list(ctx.store.fields.values()), own_id=fid)
    if problem:
        return error_response(400, problem, "name")
    assert isinstance(name, str)
    fld.name = name
    ctx.changed()
    meta = {"self": f"{ctx.base_url}/v3/marketing/field_definitions/{fld.id}"}
    return json_response({**fld.to_json(), "_metadata": meta})


async def field_delete(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    fid = request.match_info["custom_field_id"]
    if ctx.store.fields.pop(fid, None) is None:
        return error_response(404, MSG_NOT_FOUND, "custom_field_id")
    ctx.changed()
    return web.Response(status=204)


async def scopes(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    key = ctx.keys.get(_api_key(request) or "")
    if key is None:  # the middleware already answered; kept for direct calls
        return generic_error(401, MSG_AUTH_REQUIRED)
    return json_response({"scopes": list(dict.fromkeys(key.scopes))})


async def export_create(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    try:
        body = await read_json(request)
    except ValueError:
        return error_response(400, MSG_BAD_JSON, "")
    body = body if isinstance(body, dict) else {}
    if body.get("segment_ids"):
        return error_response(400, MSG_SEGMENTS, "segment_ids")
    list_ids = body.get("list_ids") or []
    if not isinstance(list_ids, list) or not all(isinstance(i, str) for i in list_ids):
        return error_response(400, "list_ids must be an array of list IDs", "list_ids")
    for lid in list_ids:
        if lid not in ctx.store.lists:
            return error_response(404, MSG_EXPORT_LIST.format(lid=lid), "list_ids")
    file_type = body.get("file_type", "csv")
    if file_type not in ("csv", "json"):
        return error_response(400, MSG_FILE_TYPE, "file_type")
    max_size = body.get("max_file_size", 5000)
    if not isinstance(max_size, int) or isinstance(max_size, bool) or max_size < 1:
        return error_response(400, "max_file_size must be a positive integer (MB)", "max_file_size")
    export = ctx.runner.submit_export(list_ids, file_type, max_size)
    meta = {"self": f"{ctx.base_url}/v3/marketing/contacts/exports/{export.id}"}
    return json_response({"id": export.id, "_metadata": meta}, 202)


async def export_status(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    export = ctx.runner.exports.get(request.match_info["id"])
    if export is None:
        return error_response(404, MSG_EXPORT_NOT_FOUND, "id")
    return json_response(export.to_json(ctx.base_url))


async def export_download(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    export = ctx.runner.exports.get(request.match_info["id"])
    stem, _, ext = request.match_info["name"].partition(".")
    if export is None or export.status != "ready" or ext != export.file_type or not stem.isdigit():
        return error_response(404, MSG_EXPORT_NOT_FOUND, "id")
    index = int(stem)
    if index >= len(export.files):
        return error_response(404, MSG_EXPORT_NOT_FOUND, "id")
    content_type = "text/csv" if ext == "csv" else "application/x-ndjson"
    return web.Response(body=export.files[index], content_type=content_type)
