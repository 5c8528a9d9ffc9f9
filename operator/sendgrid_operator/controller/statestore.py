"""An export's incremental state, kept in ConfigMaps owned by the export.

The export Job has no Kubernetes API access: it uploads its new state to the operator,
which stores it here in shards under the ConfigMap size limit, and the next run's Job gets
the shards mounted read-only. A manifest (run, shard count, sha256) in every shard's
annotations makes a half-written state detectable; such a state counts as lost, which
costs a full run and nothing else.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from sendgrid_operator.api.common import GROUP
from sendgrid_operator.controller.jobs import LABEL_EXPORT, owner_reference
from sendgrid_operator.controller.kube import Conflict, Kube

SHARD_BYTES = 900_000
KEY = "state"
ANN_RUN = f"{GROUP}/state-run"
ANN_SHARDS = f"{GROUP}/state-shards"
ANN_SHA = f"{GROUP}/state-sha256"
LABEL_STATE = f"{GROUP}/state"
JSON = dict[str, Any]


@dataclass(frozen=True)
class StoredState:
    shards: tuple[str, ...]
    sha256: str
    run_id: str
    size: int


def shard_name(export_name: str, index: int) -> str:
    return f"{export_name[:50]}-state-{index}"


async def current(kube: Kube, namespace: str, export_name: str) -> StoredState | None:
    """The complete, consistent state of the export, or None."""
    items = await kube.list(
        "configmaps", namespace, labels={LABEL_EXPORT: export_name[:63], LABEL_STATE: "true"}
    )
    if not items:
        return None
    by_name = {i["metadata"]["name"]: i for i in items}
    first = by_name.get(shard_name(export_name, 0))
    if first is None:
        return None
    ann = first["metadata"].get("annotations") or {}
    try:
        count = int(ann.get(ANN_SHARDS, "0"))
    except ValueError:
        return None
    run, sha = ann.get(ANN_RUN, ""), ann.get(ANN_SHA, "")
    names = tuple(shard_name(export_name, i) for i in range(count))
    size = 0
    for name in names:
        item = by_name.get(name)
        if item is None:
            return None
        a = item["metadata"].get("annotations") or {}
        if a.get(ANN_RUN) != run or a.get(ANN_SHA) != sha:
            return None
        size += len(base64.b64decode((item.get("binaryData") or {}).get(KEY, "")))
    return StoredState(shards=names, sha256=sha, run_id=run, size=size) if count else None


async def store(kube: Kube, export: JSON, run_id: str, data: bytes) -> StoredState:
    meta = export["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    sha = hashlib.sha256(data).hexdigest()
    chunks = [data[i : i + SHARD_BYTES] for i in range(0, len(data), SHARD_BYTES)] or [b""]
    names = []
    for index, chunk in enumerate(chunks):
        cm_name = shard_name(name, index)
        names.append(cm_name)
        obj = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": cm_name,
                "namespace": namespace,
                "labels": {
                    LABEL_EXPORT: name[:63],
                    LABEL_STATE: "true",
                    "app.kubernetes.io/managed-by": "sendgrid-operator",
                },
                "annotations": {ANN_RUN: run_id, ANN_SHARDS: str(len(chunks)), ANN_SHA: sha},
                "ownerReferences": [owner_reference(export, controller=False)],
            },
            "binaryData": {KEY: base64.b64encode(chunk).decode()},
        }
        try:
            await kube.create("configmaps", namespace, obj)
        except Conflict:
            await kube.replace("configmaps", namespace, cm_name, obj)
    existing = await kube.list(
        "configmaps", namespace, labels={LABEL_EXPORT: name[:63], LABEL_STATE: "true"}
    )
    for item in existing:
        if item["metadata"]["name"] not in names:
            await kube.delete("configmaps", namespace, item["metadata"]["name"])
    return StoredState(shards=tuple(names), sha256=sha, run_id=run_id, size=len(data))
