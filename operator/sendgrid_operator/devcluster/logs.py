"""Finding the logs of a local cluster: its components' and each Pod's.

Why it exists: there is no kubelet log API (``kubectl logs`` cannot work without a kubelet), so
the node agent writes each container's output to a file under ``DIR/pods`` and these helpers
find it by namespace and Pod name. Test reports attach every file listed by :func:`all_logs`.
"""

from __future__ import annotations

import re
from pathlib import Path


class PodLogNotFound(LookupError):
    """No log file for that Pod (not started yet, or another node ran it)."""


def pod_dirs(cluster_dir: Path, namespace: str, name: str) -> list[Path]:
    """The Pod's folders (one per Pod UID with that name), newest first."""
    base = cluster_dir / "pods" / namespace
    pattern = re.compile(re.escape(name) + r"-[0-9a-f]{8}")
    found = [p for p in base.glob(f"{name}-*") if p.is_dir() and pattern.fullmatch(p.name)]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def pod_log(cluster_dir: Path, namespace: str, name: str, container: str | None = None) -> str:
    """The output (stdout and stderr) of a Pod's container, like ``kubectl logs``."""
    for folder in pod_dirs(cluster_dir, namespace, name):
        logs = sorted(folder.glob("*.log"))
        if container is not None:
            logs = [p for p in logs if p.stem == container]
        if len(logs) == 1:
            return logs[0].read_text(errors="replace")
        if len(logs) > 1:
            names = [p.stem for p in logs]
            raise PodLogNotFound(f"pod {namespace}/{name} has containers {names}; choose one")
    raise PodLogNotFound(f"no log for pod {namespace}/{name} under {cluster_dir / 'pods'}")


def all_logs(cluster_dir: Path) -> dict[str, Path]:
    """Every log file: components as ``etcd`` etc., containers as ``pod ns/name-uid/c``."""
    out = {p.stem: p for p in sorted((cluster_dir / "logs").glob("*.log"))}
    for path in sorted((cluster_dir / "pods").glob("*/*/*.log")):
        out[f"pod {path.parent.parent.name}/{path.parent.name}/{path.stem}"] = path
    return out
