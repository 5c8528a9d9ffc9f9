"""The SendGrid endpoints the emulator serves, named once.

Faults, rate limits, the request log and the shutdown summary all refer to endpoints by
these names (``upsert``, ``import_status``, ...) or by groups of them (``lists``,
``contacts``, ``export``). A selector may also be ``METHOD /path/glob`` or ``*``.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass


@dataclass(frozen=True)
class Endpoint:
    """One SendGrid operation: a name, its method and aiohttp path, and its groups."""

    name: str
    method: str
    path: str
    groups: tuple[str, ...] = ()


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("upsert", "PUT", "/v3/marketing/contacts", ("contacts",)),
    Endpoint("import_status", "GET", "/v3/marketing/contacts/imports/{id}", ("contacts",)),
    Endpoint("contact_count", "GET", "/v3/marketing/contacts/count", ("contacts",)),
    Endpoint("search_emails", "POST", "/v3/marketing/contacts/search/emails", ("search",)),
    Endpoint(
        "search_identifiers",
        "POST",
        "/v3/marketing/contacts/search/identifiers/{identifier_type}",
        ("search",),
    ),
    Endpoint("contacts_batch", "POST", "/v3/marketing/contacts/batch", ("contacts",)),
    Endpoint("export", "POST", "/v3/marketing/contacts/exports", ("exports",)),
    Endpoint("export_status", "GET", "/v3/marketing/contacts/exports/{id}", ("exports",)),
    Endpoint("contact_get", "GET", "/v3/marketing/contacts/{id}", ("contacts",)),
    Endpoint("list_create", "POST", "/v3/marketing/lists", ("lists",)),
    Endpoint("list_all", "GET", "/v3/marketing/lists", ("lists",)),
    Endpoint("list_get", "GET", "/v3/marketing/lists/{id}", ("lists",)),
    Endpoint("list_update", "PATCH", "/v3/marketing/lists/{id}", ("lists",)),
    Endpoint("list_delete", "DELETE", "/v3/marketing/lists/{id}", ("lists",)),
    Endpoint("list_remove", "DELETE", "/v3/marketing/lists/{id}/contacts", ("lists",)),
    Endpoint("list_count", "GET", "/v3/marketing/lists/{id}/contacts/count", ("lists",)),
    Endpoint("fields_get", "GET", "/v3/marketing/field_definitions", ("field_definitions",)),
    Endpoint("field_create", "POST", "/v3/marketing/field_definitions", ("field_definitions",)),
    Endpoint(
        "field_update",
        "PATCH",
        "/v3/marketing/field_definitions/{custom_field_id}",
        ("field_definitions",),
    ),
    Endpoint(
        "field_delete",
        "DELETE",
        "/v3/marketing/field_definitions/{custom_field_id}",
        ("field_definitions",),
    ),
    Endpoint("scopes", "GET", "/v3/scopes"),
    # Export files are served by the emulator outside /v3 (SendGrid serves them from S3).
    Endpoint("export_download", "GET", "/_emulator/files/exports/{id}/{name}", ("exports",)),
    Endpoint("errors_download", "GET", "/_emulator/files/errors/{id}", ()),
)

BY_NAME: dict[str, Endpoint] = {e.name: e for e in ENDPOINTS}
GROUPS: frozenset[str] = frozenset(g for e in ENDPOINTS for g in e.groups)


def check_selector(selector: str) -> str:
    """Return ``selector`` if it names an endpoint, a group, ``*`` or ``METHOD /path``."""
    if selector == "*" or selector in BY_NAME or selector in GROUPS:
        return selector
    method, sep, path = selector.partition(" ")
    if sep and method.isupper() and path.startswith("/"):
        return selector
    known = sorted([*BY_NAME, *GROUPS])
    raise ValueError(
        f"unknown endpoint selector {selector!r}; use one of {known}, '*' or 'METHOD /path'"
    )


def matches(selector: str, endpoint: str, method: str, path: str) -> bool:
    """Whether a request (``endpoint`` name, ``method``, concrete ``path``) is selected."""
    if selector == "*" or selector == endpoint:
        return True
    ep = BY_NAME.get(endpoint)
    if ep is not None and selector in ep.groups:
        return True
    sel_method, sep, sel_path = selector.partition(" ")
    return bool(sep) and sel_method == method and fnmatch.fnmatchcase(path, sel_path)
