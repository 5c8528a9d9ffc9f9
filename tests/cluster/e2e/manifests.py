"""Manifests for the end-to-end tests, as a user would write them, rendered to YAML."""

from __future__ import annotations

from typing import Any

import yaml

from kube import GROUP, VERSION

JSON = dict[str, Any]
API_VERSION = f"{GROUP}/{VERSION}"
CSV = (
    "email,first_name,last_name,city\n"
    "ada@example.com,Ada,Lovelace,London\n"
    "Grace@Example.com,Grace,Hopper,Arlington\n"
    "not-an-email,Bad,Row,Nowhere\n"
    " grace@example.com ,Grace,Duplicate,Arlington\n"
    "alan@example.com,Alan,Turing,Wilmslow\n"
)
CSV_MEMBERS = {"ada@example.com", "grace@example.com", "alan@example.com"}


def dump(*docs: JSON) -> str:
    return yaml.safe_dump_all(list(docs), sort_keys=False)


def secret(name: str, key: str, namespace: str | None = None, field: str = "apiKey") -> JSON:
    meta: JSON = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "stringData": {field: key}}


def connection(
    name: str,
    base_url: str,
    *,
    namespace: str | None = None,
    consent: bool = True,
    secret_name: str = "sendgrid-api-key",
    **spec: Any,
) -> JSON:
    meta: JSON = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {
        "apiVersion": API_VERSION,
        "kind": "SendGridConnection",
        "metadata": meta,
        "spec": {
            "displayName": "e2e emulator",
            "apiKeySecretRef": {"name": secret_name},
            "baseURL": base_url,
            "consent": {"personalData": consent},
            **spec,
        },
    }


def config_map(name: str, data: dict[str, str]) -> JSON:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def export(
    name: str,
    list_id: str,
    *,
    connection_name: str = "sendgrid",
    connection_namespace: str | None = None,
    **spec: Any,
) -> JSON:
    ref: JSON = {"name": connection_name}
    if connection_namespace:
        ref["namespace"] = connection_namespace
    body: JSON = {
        "connectionRef": ref,
        "listIds": [list_id],
        "segments": [
            {
                "name": "vip",
                "source": {"file": {"configMap": {"name": "profiles", "key": "vip.csv"}}},
            }
        ],
        "fieldMapping": {
            "email": "email",
            "firstName": "first_name",
            "lastName": "last_name",
            "city": "city",
        },
    }
    body.update(spec)
    return {
        "apiVersion": API_VERSION,
        "kind": "SegmentExport",
        "metadata": {"name": name},
        "spec": body,
    }
