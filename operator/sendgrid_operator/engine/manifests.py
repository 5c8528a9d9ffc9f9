"""Reading the manifests a user would ``kubectl apply``, for the local command.

Why: the local command takes exactly the YAML the cluster takes, so a user can try an
export on their machine first. Documents are validated with the ``api`` models; every
error names the file, the document (by position and kind/name) and the field.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sendgrid_operator.api.common import KeySelector
from sendgrid_operator.api.connection import SendGridConnection
from sendgrid_operator.api.export import SegmentExport

DEFAULT_NAMESPACE = "default"


class ManifestError(Exception):
    """The manifests are unusable; the message says which document and field."""


@dataclass
class Manifests:
    """Every object found, by (namespace, name)."""

    secrets: dict[tuple[str, str], dict[str, bytes]] = field(default_factory=dict)
    config_maps: dict[tuple[str, str], dict[str, bytes]] = field(default_factory=dict)
    connections: dict[tuple[str, str], SendGridConnection] = field(default_factory=dict)
    exports: dict[tuple[str, str], SegmentExport] = field(default_factory=dict)


def _where(path: str, index: int, doc: dict[str, Any]) -> str:
    meta = doc.get("metadata") or {}
    return f"{path}, document {index + 1} ({doc.get('kind', '?')} {meta.get('name', '?')!s})"


def _pydantic_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def _decode_data(where: str, data: Any, base64_encoded: bool) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    if data is None:
        return out
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: data must be a mapping of keys to values")
    for key, value in data.items():
        text = "" if value is None else str(value)
        if base64_encoded:
            try:
                out[str(key)] = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ManifestError(f"{where}: data.{key} is not valid base64") from exc
        else:
            out[str(key)] = text.encode()
    return out


def load(paths: list[str]) -> Manifests:
    found = Manifests()
    for path in paths:
        try:
            text = Path(path).read_text() if path != "-" else __import__("sys").stdin.read()
            docs = list(yaml.safe_load_all(text))
        except OSError as exc:
            raise ManifestError(f"cannot read {path}: {exc.strerror or exc}") from exc
        except yaml.YAMLError as exc:
            raise ManifestError(f"{path}: not valid YAML: {exc}") from exc
        for index, doc in enumerate(docs):
            if doc is None:
                continue
            if not isinstance(doc, dict):
                raise ManifestError(f"{path}, document {index + 1}: not a mapping")
            _add(found, path, index, doc)
    return found


def _add(found: Manifests, path: str, index: int, doc: dict[str, Any]) -> None:
    where = _where(path, index, doc)
    kind = doc.get("kind")
    meta = doc.get("metadata") or {}
    name = meta.get("name")
    if not name:
        raise ManifestError(f"{where}: metadata.name is required")
    key = (str(meta.get("namespace") or DEFAULT_NAMESPACE), str(name))
    if kind == "Secret":
        values = _decode_data(where, doc.get("data"), True)
        values.update(_decode_data(where, doc.get("stringData"), False))
        found.secrets[key] = values
    elif kind == "ConfigMap":
        values = _decode_data(where, doc.get("data"), False)
        values.update(_decode_data(where, doc.get("binaryData"), True))
        found.config_maps[key] = values
    elif kind == "SendGridConnection":
        try:
            found.connections[key] = SendGridConnection.model_validate(doc)
        except ValidationError as exc:
            raise ManifestError(f"{where}: {_pydantic_message(exc)}") from exc
    elif kind == "SegmentExport":
        try:
            found.exports[key] = SegmentExport.model_validate(doc)
        except ValidationError as exc:
            raise ManifestError(f"{where}: {_pydantic_message(exc)}") from exc
    # other kinds (Namespace, ...) are ignored: they do not affect a local run


class ManifestResolver:
    """Secret and ConfigMap values from the manifests, in one namespace."""

    def __init__(self, manifests: Manifests, namespace: str) -> None:
        self.manifests = manifests
        self.namespace = namespace

    def __repr__(self) -> str:
        return f"ManifestResolver(namespace={self.namespace!r})"

    def _get(
        self, store: dict[tuple[str, str], dict[str, bytes]], kind: str, ref: KeySelector
    ) -> bytes:
        values = store.get((self.namespace, ref.name))
        if values is None:
            raise KeyError(
                f"{kind} {self.namespace}/{ref.name} is not in the manifests: add it with -f"
            )
        if ref.key not in values:
            raise KeyError(
                f"{kind} {self.namespace}/{ref.name} has no key {ref.key!r} "
                f"(keys: {', '.join(sorted(values)) or 'none'})"
            )
        return values[ref.key]

    def secret(self, ref: KeySelector) -> str:
        return self._get(self.manifests.secrets, "Secret", ref).decode("utf-8", "replace")

    def config_map(self, ref: KeySelector) -> bytes:
        return self._get(self.manifests.config_maps, "ConfigMap", ref)
