"""A small async Kubernetes API client: the operator's one door to the apiserver.

kopf watches and calls handlers; everything the handlers read or write beyond the object
in hand goes through here. Credentials come from the kubeconfig or the in-cluster
ServiceAccount (loaded by the official client's config loader). HTTP errors are
translated once, into :class:`ApiError` and its subclasses, with the apiserver's message.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any
from urllib.parse import quote

import httpx
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException

JSON = dict[str, Any]
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"

#: Requests in flight at once, and the HTTP connections kept for them. More callers wait in
#: :class:`Kube`'s own queue (no timeout), never in httpcore's pool: a request that times
#: out there (PoolTimeout) can leave a connection that never connects counted against the
#: pool for good (encode/httpcore#1093), and after a burst of ~1,000 reconciles every
#: later request failed with PoolTimeout until the operator restarted.
MAX_IN_FLIGHT = 20

_CORE = {"pods", "secrets", "configmaps", "namespaces", "events", "serviceaccounts"}
_GROUPS = {
    "jobs": "apis/batch/v1",
    "sendgridconnections": "apis/sendgrid-operator.io/v1alpha1",
    "segmentexports": "apis/sendgrid-operator.io/v1alpha1",
}


class ApiError(Exception):
    """The apiserver refused a request; ``status`` is the HTTP code."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    """409: AlreadyExists on create, or a resourceVersion conflict on update."""


def _path(resource: str, namespace: str | None, name: str | None, sub: str | None) -> str:
    base = "api/v1" if resource in _CORE else _GROUPS[resource]
    parts = [base]
    if namespace is not None and resource != "namespaces":
        parts += ["namespaces", quote(namespace)]
    parts.append(resource)
    if name is not None:
        parts.append(quote(name))
    if sub is not None:
        parts.append(sub)
    return "/" + "/".join(parts)


def load_configuration() -> k8s_client.Configuration:
    """Kubeconfig ($KUBECONFIG or ~/.kube/config) first, then the in-cluster account."""
    cfg = k8s_client.Configuration()
    try:
        k8s_config.load_kube_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    except (ConfigException, FileNotFoundError, TypeError):
        k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    return cfg


class Kube:
    def __init__(self, http: httpx.AsyncClient, max_in_flight: int = MAX_IN_FLIGHT) -> None:
        """``max_in_flight`` must not exceed ``http``'s connection limit."""
        self._http = http
        self._slots = asyncio.Semaphore(max_in_flight)

    @classmethod
    def from_configuration(cls, cfg: k8s_client.Configuration | None = None) -> Kube:
        cfg = cfg or load_configuration()
        headers = {"Accept": "application/json"}
        token = cfg.api_key.get("authorization") or cfg.api_key.get("BearerToken")
        if token:
            prefix = cfg.api_key_prefix.get("authorization", "")
            headers["Authorization"] = (
                token if token.startswith("Bearer") else f"{prefix or 'Bearer'} {token}"
            )
        verify: ssl.SSLContext | bool = False
        if cfg.verify_ssl:
            ctx = (
                ssl.create_default_context(cafile=cfg.ssl_ca_cert)
                if cfg.ssl_ca_cert
                else ssl.create_default_context()
            )
            if cfg.cert_file and cfg.key_file:
                ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
            verify = ctx
        http = httpx.AsyncClient(
            base_url=cfg.host,
            headers=headers,
            verify=verify,
            timeout=httpx.Timeout(30.0, connect=10.0),
            limits=httpx.Limits(
                max_connections=MAX_IN_FLIGHT, max_keepalive_connections=MAX_IN_FLIGHT // 2
            ),
        )
        return cls(http)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        content_type: str | None = None,
    ) -> JSON:
        headers = {"Content-Type": content_type} if content_type else None
        try:
            async with self._slots:
                response = await self._http.request(
                    method, path, json=json, params=params, headers=headers
                )
        except httpx.HTTPError as exc:
            raise ApiError(
                0, "Unreachable", f"the Kubernetes API could not be reached: {exc}"
            ) from exc
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {}
            reason = str(body.get("reason") or response.reason_phrase)
            message = str(body.get("message") or response.text[:500])
            kind = {404: NotFound, 409: Conflict}.get(response.status_code, ApiError)
            raise kind(response.status_code, reason, message)
        if not response.content:
            return {}
        result: JSON = response.json()
        return result

    async def get(self, resource: str, namespace: str | None, name: str) -> JSON:
        return await self._request("GET", _path(resource, namespace, name, None))

    async def get_or_none(self, resource: str, namespace: str | None, name: str) -> JSON | None:
        try:
            return await self.get(resource, namespace, name)
        except NotFound:
            return None

    async def list(
        self,
        resource: str,
        namespace: str | None,
        *,
        labels: dict[str, str] | None = None,
        fields: dict[str, str] | None = None,
    ) -> list[JSON]:
        params: dict[str, str] = {}
        if labels:
            params["labelSelector"] = ",".join(f"{k}={v}" for k, v in labels.items())
        if fields:
            params["fieldSelector"] = ",".join(f"{k}={v}" for k, v in fields.items())
        body = await self._request(
            "GET", _path(resource, namespace, None, None), params=params or None
        )
        items: list[JSON] = body.get("items", [])
        return items

    async def create(self, resource: str, namespace: str | None, obj: JSON) -> JSON:
        return await self._request("POST", _path(resource, namespace, None, None), json=obj)

    async def replace(self, resource: str, namespace: str | None, name: str, obj: JSON) -> JSON:
        return await self._request("PUT", _path(resource, namespace, name, None), json=obj)

    async def patch(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        subresource: str | None = None,
        content_type: str = MERGE,
    ) -> JSON:
        return await self._request(
            "PATCH",
            _path(resource, namespace, name, subresource),
            json=patch,
            content_type=content_type,
        )

    async def delete(
        self, resource: str, namespace: str | None, name: str, *, propagation: str = "Background"
    ) -> None:
        try:
            await self._request(
                "DELETE",
                _path(resource, namespace, name, None),
                json={
                    "kind": "DeleteOptions",
                    "apiVersion": "v1",
                    "propagationPolicy": propagation,
                },
            )
        except NotFound:
            return
