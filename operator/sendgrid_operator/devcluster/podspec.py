"""Turn a Pod's container into a local process: argv, environment and files on disk.

Why it exists: the node agent plays a kubelet without a container runtime, so what a kubelet
would give a container (its env from values, Secrets, ConfigMaps and the downward API; its
volumes; a ServiceAccount identity) has to be made of plain files and variables. Volumes are
written under the Pod's own folder, and every volume ``mountPath`` (and the
``terminationMessagePath``) found in command, args or env values is rewritten to that folder,
since a local process cannot see paths such as ``/etc/config``. The ServiceAccount identity is a
``KUBECONFIG`` holding a TokenRequest token, where a real Pod would use in-cluster config.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sendgrid_operator.devcluster.api import Api, ApiError, KubeConfig, namespaced

JSON = dict[str, Any]
SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class ConfigError(Exception):
    """A referenced Secret, ConfigMap or key is missing (kubelet: CreateContainerConfigError)."""


@dataclass(frozen=True)
class Launch:
    """Everything needed to start one container's process."""

    container: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    log_path: Path
    termination_path: Path
    termination_policy: str


def field_value(pod: JSON, path: str) -> str:
    """Resolve a downward-API ``fieldPath``."""
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status", {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.podIP": status.get("podIP", "127.0.0.1"),
        "status.hostIP": status.get("hostIP", "127.0.0.1"),
    }
    if path in simple:
        return str(simple[path])
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        return str(meta.get(match.group(1), {}).get(match.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = sorted(meta.get(path.split(".")[1], {}).items())
        return "\n".join(f'{k}="{v}"' for k, v in items)
    raise ConfigError(f"fieldPath {path!r} is not supported by the local node agent")


class Resolver:
    """Reads the Secrets and ConfigMaps one Pod refers to (cached per Pod start)."""

    def __init__(self, api: Api, pod: JSON) -> None:
        self.api, self.pod = api, pod
        self.namespace: str = pod["metadata"]["namespace"]
        self._cache: dict[tuple[str, str], JSON | None] = {}

    def data(self, kind: str, name: str, optional: bool) -> dict[str, bytes] | None:
        """The decoded data of a Secret or ConfigMap, or None if it is optional and missing."""
        key = (kind, name)
        if key not in self._cache:
            resource = "secrets" if kind == "Secret" else "configmaps"
            self._cache[key] = self.api.get_or_none(namespaced(self.namespace, resource, name))
        obj = self._cache[key]
        if obj is None:
            if optional:
                return None
            raise ConfigError(f'{kind.lower()} "{name}" not found')
        if kind == "Secret":
            return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        out = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
        out.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        return out

    def key(self, kind: str, ref: JSON) -> str | None:
        data = self.data(kind, ref["name"], bool(ref.get("optional")))
        if data is None:
            return None
        if ref["key"] not in data:
            if ref.get("optional"):
                return None
            raise ConfigError(f"couldn't find key {ref['key']} in {kind} {ref['name']}")
        return data[ref["key"]].decode(errors="replace")

    def token(self, audience: str | None = None, expiration: int = 3600) -> str:
        """A TokenRequest token for the Pod's ServiceAccount, bound to the Pod."""
        sa = self.pod["spec"].get("serviceAccountName") or "default"
        spec: JSON = {
            "expirationSeconds": expiration,
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": self.pod["metadata"]["name"],
                "uid": self.pod["metadata"]["uid"],
            },
        }
        if audience:
            spec["audiences"] = [audience]
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        try:
            answer = self.api.post(
                namespaced(self.namespace, "serviceaccounts", f"{sa}/token"), body
            )
        except ApiError as exc:
            raise ConfigError(f"TokenRequest for serviceaccount {sa}: {exc.message}") from exc
        token: str = answer["status"]["token"]
        return token


def _write_items(
    target: Path, data: dict[str, bytes], items: list[JSON] | None, default_mode: int | None
) -> None:
    chosen = [(i["key"], i["path"], i.get("mode")) for i in items] if items else None
    for key, rel, mode in chosen or [(k, k, None) for k in data]:
        if key not in data:
            raise ConfigError(f"key {key} not found")
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data[key])
        path.chmod(mode or default_mode or 0o644)


def _write_source(r: Resolver, target: Path, src: JSON, default_mode: int | None) -> None:
    """One volume source (or projected source) into ``target``."""
    for kind, field in (("ConfigMap", "configMap"), ("Secret", "secret")):
        if field in src:
            ref = src[field]
            # a Secret volume names it `secretName`; a projected Secret source `name`
            name = ref.get("secretName") or ref.get("name")
            data = r.data(kind, name, bool(ref.get("optional")))
            _write_items(target, data or {}, ref.get("items"), ref.get("defaultMode", default_mode))
            return
    if "downwardAPI" in src:
        for item in src["downwardAPI"].get("items", []):
            if "fieldRef" not in item:
                raise ConfigError("downwardAPI resourceFieldRef is not supported")
            value = field_value(r.pod, item["fieldRef"]["fieldPath"]).encode()
            _write_items(target, {"v": value}, [{"key": "v", "path": item["path"]}], default_mode)
        return
    if "serviceAccountToken" in src:
        sat = src["serviceAccountToken"]
        token = r.token(sat.get("audience"), int(sat.get("expirationSeconds", 3600)))
        _write_items(target, {"t": token.encode()}, [{"key": "t", "path": sat["path"]}], 0o600)
        return
    if "projected" in src:
        mode = src["projected"].get("defaultMode", default_mode)
        for source in src["projected"].get("sources", []):
            _write_source(r, target, source, mode)
        return
    if "emptyDir" in src:
        return
    raise ConfigError(f"volume type {sorted(src)} is not supported by the local node agent")


def write_volumes(r: Resolver, pod_dir: Path) -> dict[str, Path]:
    """Write every volume of the Pod to ``pod_dir/volumes/NAME``; returns name -> folder."""
    root = pod_dir / "volumes"
    folders: dict[str, Path] = {}
    for volume in r.pod["spec"].get("volumes") or []:
        target = root / volume["name"]
        if not (target.exists() and "emptyDir" in volume):  # emptyDirs survive restarts
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            source = {k: v for k, v in volume.items() if k != "name"}
            _write_source(r, target, source, None)
        folders[volume["name"]] = target
    return folders


def rewrite(value: str, mounts: list[tuple[str, str]]) -> str:
    """Replace each mount path by its local folder in one pass, longest path first."""
    if not mounts:
        return value
    table = dict(mounts)
    alternatives = sorted(table, key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(p) for p in alternatives))
    return pattern.sub(lambda m: table[m.group(0)], value)


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: defined names are replaced, ``$$`` escapes ``$``."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR_REF.sub(sub, value)


def build_env(r: Resolver, container: JSON) -> dict[str, str]:
    """The container's own variables, resolved in the kubelet's order (envFrom, then env)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        for kind, field in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if field in source:
                ref = source[field]
                data = r.data(kind, ref["name"], bool(ref.get("optional"))) or {}
                prefix = source.get("prefix", "")
                env.update({prefix + k: v.decode(errors="replace") for k, v in data.items()})
    for var in container.get("env") or []:
        value: str | None
        if "valueFrom" not in var:
            value = expand(var.get("value", ""), env)
        else:
            vf = var["valueFrom"]
            if "secretKeyRef" in vf:
                value = r.key("Secret", vf["secretKeyRef"])
            elif "configMapKeyRef" in vf:
                value = r.key("ConfigMap", vf["configMapKeyRef"])
            elif "fieldRef" in vf:
                value = field_value(r.pod, vf["fieldRef"]["fieldPath"])
            else:
                raise ConfigError(f"env {var['name']}: {sorted(vf)} is not supported")
        if value is not None:
            env[var["name"]] = value
    return env


def prepare(
    api: Api,
    pod: JSON,
    container: JSON,
    pod_dir: Path,
    default_entrypoint: list[str],
    bin_dirs: list[str],
) -> Launch:
    """Write the Pod's files and resolve one container's launch; raises ConfigError."""
    r = Resolver(api, pod)
    folders = write_volumes(r, pod_dir)
    name = container["name"]
    termination_path = pod_dir / f"termination-log-{name}"
    termination_path.write_bytes(b"")
    mounts = [
        (m["mountPath"], str(folders[m["name"]] / m.get("subPath", "")).rstrip("/"))
        for m in container.get("volumeMounts") or []
        if m["name"] in folders
    ]
    message_path = container.get("terminationMessagePath") or "/dev/termination-log"
    mounts.append((message_path, str(termination_path)))

    env = build_env(r, container)
    env = {k: rewrite(v, mounts) for k, v in env.items()}
    base = {
        "PATH": os.pathsep.join([*bin_dirs, "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": str(pod_dir / "home"),
        "TMPDIR": str(pod_dir / "tmp"),
        "LANG": "C.UTF-8",
        "HOSTNAME": pod["metadata"]["name"],
        "PYTHONUNBUFFERED": "1",
    }
    (pod_dir / "home").mkdir(exist_ok=True)
    (pod_dir / "tmp").mkdir(exist_ok=True)
    if pod["spec"].get("automountServiceAccountToken", True):
        config = KubeConfig(
            server=api.config.server,
            ca_pem=api.config.ca_pem,
            token=r.token(),
            namespace=pod["metadata"]["namespace"],
            user=pod["spec"].get("serviceAccountName") or "default",
        )
        base["KUBECONFIG"] = str(config.write(pod_dir / "kubeconfig"))
    full_env = {**base, **env}

    command = container.get("command") or default_entrypoint
    args = container.get("args") or []
    argv = [rewrite(expand(a, full_env), mounts) for a in [*command, *args]]
    working_dir = container.get("workingDir")
    cwd = Path(rewrite(working_dir, mounts)) if working_dir else pod_dir / "home"
    return Launch(
        container=name,
        argv=argv,
        env=full_env,
        cwd=cwd,
        log_path=pod_dir / f"{name}.log",
        termination_path=termination_path,
        termination_policy=container.get("terminationMessagePolicy", "File"),
    )
