"""Hold emulator traffic to SendGrid's official OpenAPI documents (../shared/sendgrid-oai).

``ValidatingTransport`` wraps httpx's transport: every request and response to a ``/v3``
path is validated with openapi-core against the document that declares the path, and
violations are collected for the test to assert on. Exceptions, each narrow and named
(docs/emulator.md, "Validator exceptions"):

- ``NULLABLE_IN_OAS31``: the 3.1 documents use the 3.0 keyword ``nullable: true`` (e.g.
  the 401 body ``{"field": null}``, which the spec's own example shows). We rewrite
  ``{"nullable": true, "type": T}`` to ``{"type": [T, "null"]}`` before loading.
- ``CONTACT_SAMPLE_IS_ARRAY``: ``GET /v3/marketing/lists/{id}`` types ``contact_sample`` as
  one ContactDetails object while its description says "up to 50 contacts"; the emulator
  returns an array, and each element is validated against ContactDetails.
- ``UNDECLARED_ERROR_STATUS``: the lists and custom-field documents declare no 401, 403,
  429, 500 or 503, and no document declares 429; such responses are validated against
  SendGrid's generic error body (the scopes 401 schema, identical to the rate-limit docs'
  429 body), plus the ``X-RateLimit-*`` headers on 429.
- ``BODY_ON_204``: ``DELETE /v3/marketing/lists/{id}`` declares a JSON string body on 204,
  which HTTP forbids (RFC 9110 §15.3.5); a 204 is checked to have an empty body instead.
- ``UNDECLARED_400``: ``GET /v3/marketing/lists`` declares only 200; its 400 for an
  out-of-range ``page_size`` is validated as ``UNDECLARED_ERROR_STATUS``.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import jsonschema
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

SPEC_FILES = (
    "tsg_mc_contacts_v3.json",
    "tsg_mc_lists_v3.json",
    "tsg_mc_custom_fields_v3.json",
    "tsg_scopes_v3.json",
)
HOST = "https://api.sendgrid.com"
GENERIC_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["errors"],
    "properties": {
        "errors": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {
                    "field": {"type": ["string", "null"]},
                    "message": {"type": "string"},
                },
            },
        }
    },
}
RATE_LIMIT_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


def oai_dir() -> Path:
    override = os.environ.get("SENDGRID_OAI_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2].parent / "shared" / "sendgrid-oai"


def _fix_nullable(node: Any) -> Any:
    """NULLABLE_IN_OAS31: ``nullable: true`` -> a type list including "null"."""
    if isinstance(node, dict):
        node = {k: _fix_nullable(v) for k, v in node.items()}
        if node.pop("nullable", False) and isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
        return node
    if isinstance(node, list):
        return [_fix_nullable(v) for v in node]
    return node


def _fix_contact_sample(spec: dict[str, Any]) -> None:
    """CONTACT_SAMPLE_IS_ARRAY: contact_sample is an array of ContactDetails."""
    op = spec["paths"].get("/v3/marketing/lists/{id}", {}).get("get")
    if op is None:
        return
    props = op["responses"]["200"]["content"]["application/json"]["schema"]["properties"]
    props["contact_sample"] = {"type": "array", "maxItems": 50, "items": props["contact_sample"]}


class Specs:
    """The four documents, loaded once, and a path -> document lookup."""

    def __init__(self) -> None:
        self.raw: dict[str, dict[str, Any]] = {}
        self.apis: dict[str, OpenAPI] = {}
        for name in SPEC_FILES:
            spec = _fix_nullable(json.loads((oai_dir() / name).read_text()))
            _fix_contact_sample(spec)
            self.raw[name] = spec
            self.apis[name] = OpenAPI.from_dict(copy.deepcopy(spec))

    def find(self, method: str, path: str) -> tuple[str, dict[str, Any]] | None:
        """The document and operation declaring ``method path`` (templates matched)."""
        parts = path.strip("/").split("/")
        best: tuple[int, str, dict[str, Any]] | None = None
        for name, spec in self.raw.items():
            for template, ops in spec["paths"].items():
                tparts = template.strip("/").split("/")
                if len(tparts) != len(parts) or method.lower() not in ops:
                    continue
                if all(t == p or t.startswith("{") for t, p in zip(tparts, parts, strict=True)):
                    literal = sum(not t.startswith("{") for t in tparts)
                    if best is None or literal > best[0]:
                        best = (literal, name, ops[method.lower()])
        return None if best is None else (best[1], best[2])


class _Request:
    def __init__(self, request: httpx.Request) -> None:
        self.host_url = HOST
        self.path = request.url.path
        self.full_url_pattern = HOST + self.path
        self.method = request.method.lower()
        query = parse_qs(request.url.query.decode(), keep_blank_values=True)
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(query),
            header=Headers(dict(request.headers)),
            cookie=ImmutableMultiDict(),
        )
        self.content_type = request.headers.get("content-type", "application/json")
        self.body = request.content or None


class _Response:
    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        self.content_type = response.headers.get("content-type", "")
        self.headers = Headers(dict(response.headers))
        self.data = response.content or None


class Validator:
    """Validates one exchange; collects human-readable violations."""

    def __init__(self, specs: Specs) -> None:
        self.specs = specs
        self.violations: list[str] = []
        self.checked: list[tuple[str, str, int]] = []  # (method, path template doc, status)

    def request_errors(self, request: httpx.Request) -> list[str]:
        found = self.specs.find(request.method, request.url.path)
        if found is None:
            return [f"{request.method} {request.url.path} is not in the SendGrid documents"]
        api = self.specs.apis[found[0]]
        return [str(e) for e in api.iter_request_errors(_Request(request))]

    def response_errors(self, request: httpx.Request, response: httpx.Response) -> list[str]:
        found = self.specs.find(request.method, request.url.path)
        if found is None:
            return [f"{request.method} {request.url.path} is not in the SendGrid documents"]
        name, op = found
        status = response.status_code
        if status == 429:
            missing = [h for h in RATE_LIMIT_HEADERS if h not in response.headers]
            if missing:
                return [f"429 without {missing}"]
        if status == 204 and str(status) in op["responses"]:  # BODY_ON_204
            return [] if not response.content else ["204 with a body"]
        if str(status) not in op["responses"] and status >= 400:
            return self._generic(response)  # UNDECLARED_ERROR_STATUS
        api = self.specs.apis[name]
        return [
            f"{e}: {getattr(e, '__cause__', None)!r}"
            for e in api.iter_response_errors(_Request(request), _Response(response))
        ]

    def _generic(self, response: httpx.Response) -> list[str]:
        try:
            jsonschema.validate(response.json(), GENERIC_ERROR_SCHEMA)
        except (ValueError, jsonschema.ValidationError) as exc:
            return [f"generic error body: {exc}"]
        return []


class ValidatingTransport(httpx.BaseTransport):
    """Validate every ``/v3`` exchange. ``extensions={"expect_invalid_request": True}``
    marks a request the test sends invalid on purpose: it must then *fail* validation."""

    def __init__(self, validator: Validator) -> None:
        self.validator = validator
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if not request.url.path.startswith("/v3/"):
            return response
        response.read()
        v = self.validator
        where = f"{request.method} {request.url.path} -> {response.status_code}"
        req_errors = self.validator.request_errors(request)
        if request.extensions.get("expect_invalid_request"):
            if not req_errors:
                v.violations.append(f"{where}: request expected to violate the spec but is valid")
        elif req_errors:
            v.violations.append(f"{where}: request: {req_errors}")
        resp_errors = v.response_errors(request, response)
        if resp_errors:
            v.violations.append(f"{where}: response: {resp_errors}")
        v.checked.append((request.method, request.url.path, response.status_code))
        return response

    def close(self) -> None:
        self.inner.close()
