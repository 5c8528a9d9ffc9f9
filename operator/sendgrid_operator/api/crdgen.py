"""Generate the CustomResourceDefinitions from the API models.

Kubernetes wants a *structural* OpenAPI v3 schema: no ``$ref``, no ``null`` types, no
``additionalProperties: false``, no ``title``. pydantic emits JSON Schema; this module
turns one into the other, so ``crds/`` never drifts from the models the code uses.
Run it through ``hack/gen_crds.py``; a test fails when ``crds/`` is out of date.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from sendgrid_operator.api.common import CATEGORY, GROUP, VERSION
from sendgrid_operator.api.connection import SendGridConnectionSpec, SendGridConnectionStatus
from sendgrid_operator.api.export import SegmentExportSpec
from sendgrid_operator.api.status import SegmentExportStatus

JSON = dict[str, Any]
_DROP = {"title", "$defs"}


def structural(model: type[BaseModel]) -> JSON:
    """The structural schema of a model, with every reference inlined."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs: JSON = raw.get("$defs", {})
    converted: JSON = _convert(raw, defs)
    return converted


def _convert(node: Any, defs: JSON) -> Any:
    if isinstance(node, list):
        return [_convert(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        node = {**target, **node}
    if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express anyOf with {len(options)} non-null options: {node}")
        node = {**options[0], **node}
        if "$ref" in node:
            return _convert(node, defs)
    out: JSON = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "additionalProperties" and value is False:
            continue
        if key == "default" and value is None:
            continue
        if key == "const":
            out["enum"] = [value]
            continue
        if key in ("properties",):
            out[key] = {name: _convert(sub, defs) for name, sub in value.items()}
            continue
        if key == "x-kubernetes-validations" or key == "enum":
            out[key] = value
            continue
        out[key] = _convert(value, defs)
    if "properties" in out:
        out.setdefault("type", "object")
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


def _columns_export() -> list[JSON]:
    ready = '.status.conditions[?(@.type=="Ready")].status'
    return [
        {"name": "Lists", "type": "string", "jsonPath": ".spec.listIds[*]"},
        {"name": "Schedule", "type": "string", "jsonPath": ".spec.schedule"},
        {"name": "Suspend", "type": "boolean", "jsonPath": ".spec.suspend", "priority": 1},
        {"name": "Last Run", "type": "date", "jsonPath": ".status.lastRun.completionTime"},
        {"name": "Result", "type": "string", "jsonPath": ".status.lastRun.result"},
        {"name": "Contacts", "type": "integer", "jsonPath": ".status.contactsExported"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.progress.phase", "priority": 1},
        {
            "name": "Progress",
            "type": "string",
            "jsonPath": ".status.progress.percent",
            "priority": 1,
        },
        {"name": "Ready", "type": "string", "jsonPath": ready},
        {
            "name": "Status",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].message',
            "priority": 1,
        },
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]


def _columns_connection() -> list[JSON]:
    return [
        {"name": "Display Name", "type": "string", "jsonPath": ".spec.displayName"},
        {"name": "Base URL", "type": "string", "jsonPath": ".spec.baseURL", "priority": 1},
        {"name": "Consent", "type": "boolean", "jsonPath": ".spec.consent.personalData"},
        {
            "name": "Ready",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        },
        {
            "name": "Reason",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
        },
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]


def _crd(
    kind: str,
    plural: str,
    short_names: list[str],
    description: str,
    spec: type[BaseModel],
    status: type[BaseModel],
    columns: list[JSON],
) -> JSON:
    schema: JSON = {
        "type": "object",
        "description": description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": structural(spec),
            "status": structural(status),
        },
    }
    schema["properties"]["spec"]["description"] = f"Desired state of the {kind}."
    schema["properties"]["status"]["description"] = f"Observed state of the {kind}."
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short_names,
                "categories": [CATEGORY],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                }
            ],
        },
    }


def crds() -> dict[str, JSON]:
    """File name in ``crds/`` -> CustomResourceDefinition."""
    return {
        "sendgridconnections.yaml": _crd(
            "SendGridConnection",
            "sendgridconnections",
            ["sgconn"],
            "SendGridConnection says how to reach one SendGrid account (an API key held in a "
            "Secret), records the consent to send personal data to it, and names the "
            "namespaces whose SegmentExports may use it.",
            SendGridConnectionSpec,
            SendGridConnectionStatus,
            _columns_connection(),
        ),
        "segmentexports.yaml": _crd(
            "SegmentExport",
            "segmentexports",
            ["sgexp", "segexp"],
            "SegmentExport exports one or more segments, read from files or SQL queries, into "
            "SendGrid Marketing lists through a SendGridConnection, on a cron schedule or on "
            "demand, and reports true counts of what SendGrid applied.",
            SegmentExportSpec,
            SegmentExportStatus,
            _columns_export(),
        ),
    }
