"""Where the control plane's binaries are, and how to get them built.

Why it exists: ``hack/controlplane/build.sh`` owns building and caching; Python code (the
fixtures, the ``up`` command) only needs the resulting paths. Both sides read the same
``hack/controlplane/versions.env`` and the same cache-dir rule, so a version bump there moves
everything to a fresh cache folder.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path


class BinariesError(RuntimeError):
    """The binaries are missing and could not be built."""


def repo_root() -> Path:
    """The checkout this package was loaded from (``SGOP_REPO_ROOT`` overrides it)."""
    if env := os.environ.get("SGOP_REPO_ROOT"):
        return Path(env)
    return Path(__file__).resolve().parents[3]


def cache_dir() -> Path:
    """``${SGOP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sendgrid-operator}``, as in build.sh."""
    if env := os.environ.get("SGOP_CACHE"):
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "sendgrid-operator"


def read_versions(path: Path | None = None) -> dict[str, str]:
    """Parse ``versions.env`` (``KEY=value`` lines, ``#`` comments)."""
    path = path or repo_root() / "hack" / "controlplane" / "versions.env"
    versions: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            versions[key.strip()] = value.strip()
    return versions


@dataclass(frozen=True)
class Binaries:
    """Absolute paths of the five executables."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kubectl: Path
    helm: Path

    @classmethod
    def expected(cls) -> Binaries:
        v = read_versions()
        cache = cache_dir()
        kube = cache / f"kubernetes-{v['KUBERNETES_VERSION']}" / "bin"
        tools = cache / f"kubectl-{v['KUBECTL_WHEEL']}-{v['KUBECTL_WHEEL_VERSION']}" / "bin"
        return cls(
            etcd=cache / f"etcd-{v['ETCD_VERSION']}" / "bin" / "etcd",
            kube_apiserver=kube / "kube-apiserver",
            kube_controller_manager=kube / "kube-controller-manager",
            kubectl=tools / "kubectl",
            helm=tools / "helm",
        )

    def missing(self) -> list[Path]:
        paths = (
            self.etcd,
            self.kube_apiserver,
            self.kube_controller_manager,
            self.kubectl,
            self.helm,
        )
        return [p for p in paths if not os.access(p, os.X_OK)]


def ensure_binaries(build: bool = True) -> Binaries:
    """Return the binaries, running ``build.sh`` first if any is missing (and ``build``)."""
    binaries = Binaries.expected()
    if not binaries.missing():
        return binaries
    script = repo_root() / "hack" / "controlplane" / "build.sh"
    if not build:
        raise BinariesError(
            f"missing {binaries.missing()}; run `bash {script}` (make controlplane)"
        )
    result = subprocess.run(["bash", str(script)], check=False)
    if result.returncode != 0 or binaries.missing():
        raise BinariesError(f"{script} failed (exit {result.returncode}); see its output above")
    return binaries
