"""A tiny synchronous client for the Kubernetes API, and the kubeconfig files it reads.

Why it exists: the node agent, the control-plane supervisor and the test helpers need a handful
of raw requests (subresources such as ``pods/binding`` and ``pods/status``, TokenRequest,
``/readyz``) with errors that carry the HTTP status. A thin layer over httpx keeps those
requests visible and avoids the official client's generated models. Only the kubeconfig shape
this package writes (one cluster, one bearer-token user) is supported.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

JSON = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"


class ApiError(Exception):
    """A request the API server answered with a non-2xx status."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        self.method, self.path, self.status, self.body = method, path, status, body
        try:
            self.message = str(json.loads(body).get("message", body))
        except (ValueError, AttributeError):
            self.message = body
        super().__init__(f"{method} {path}: HTTP {status}: {self.message}")


@dataclass(frozen=True)
class KubeConfig:
    """One API server, its CA certificate (PEM) and a bearer token."""

    server: str
    ca_pem: bytes
    token: str
    namespace: str = "default"
    user: str = "user"

    def render(self) -> str:
        ca = base64.b64encode(self.ca_pem).decode()
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "devcluster",
                    "cluster": {"server": self.server, "certificate-authority-data": ca},
                }
            ],
            "users": [{"name": self.user, "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "devcluster",
                    "context": {
                        "cluster": "devcluster",
                        "user": self.user,
                        "namespace": self.namespace,
                    },
                }
            ],
            "current-context": "devcluster",
        }
        return yaml.safe_dump(doc, sort_keys=False)

    def write(self, path: Path) -> Path:
        """Write the file atomically with mode 0600 (it holds a credential)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w") as fh:
            fh.write(self.render())
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: Path) -> KubeConfig:
        doc = yaml.safe_load(path.read_text())
        context = doc["contexts"][0]["context"]
        cluster = doc["clusters"][0]["cluster"]
        user = doc["users"][0]
        return cls(
            server=cluster["server"],
            ca_pem=base64.b64decode(cluster["certificate-authority-data"]),
            token=user["user"]["token"],
            namespace=context.get("namespace", "default"),
            user=user["name"],
        )


class Api:
    """Raw JSON requests against one API server with one identity."""

    def __init__(self, config: KubeConfig, timeout: float = 30.0) -> None:
        self.config = config
        context = ssl.create_default_context(cadata=config.ca_pem.decode())
        self._client = httpx.Client(
            base_url=config.server,
            verify=context,
            timeout=timeout,
            headers={"Authorization": f"Bearer {config.token}", "Accept": "application/json"},
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
    ) -> JSON:
        content = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type} if content is not None else {}
        resp = self._client.request(method, path, content=content, headers=headers, params=params)
        if resp.status_code >= 300:
            raise ApiError(method, path, resp.status_code, resp.text)
        if not resp.content:
            return {}
        data = resp.json()
        return data if isinstance(data, dict) else {"items": data}

    def text(self, path: str) -> tuple[int, str]:
        """GET a non-JSON endpoint (``/readyz``), returning the status and the body."""
        resp = self._client.get(path, headers={"Accept": "*/*"})
        return resp.status_code, resp.text

    def get(self, path: str, params: dict[str, str] | None = None) -> JSON:
        return self.request("GET", path, params=params)

    def get_or_none(self, path: str) -> JSON | None:
        try:
            return self.get(path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def post(self, path: str, body: Any) -> JSON:
        return self.request("POST", path, body)

    def put(self, path: str, body: Any) -> JSON:
        return self.request("PUT", path, body)

    def patch(self, path: str, body: Any, content_type: str = MERGE_PATCH) -> JSON:
        return self.request("PATCH", path, body, content_type=content_type)

    def delete(self, path: str, body: Any = None) -> JSON:
        return self.request("DELETE", path, body)


def namespaced(namespace: str, resource: str, name: str = "", api: str = "api/v1") -> str:
    """The path of a namespaced resource (or collection), e.g. ``/api/v1/namespaces/x/pods``."""
    path = f"/{api}/namespaces/{namespace}/{resource}"
    return f"{path}/{name}" if name else path
