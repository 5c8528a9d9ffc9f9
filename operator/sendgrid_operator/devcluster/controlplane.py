"""Start and stop etcd, kube-apiserver and kube-controller-manager on loopback.

Why it exists: this is the part of a cluster whose behaviour the operator depends on (storage,
validation incl. CEL, RBAC, TokenRequest, Jobs, garbage collection), run from the binaries
``build.sh`` caches. Ports are picked free at start; every component logs to ``DIR/logs``;
``start`` returns once ``/readyz`` answers and the controller manager has done visible work.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from sendgrid_operator.devcluster import pki as pki_mod
from sendgrid_operator.devcluster.api import Api, KubeConfig
from sendgrid_operator.devcluster.binaries import Binaries

PR_SET_PDEATHSIG = 1
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"


class ControlPlaneError(RuntimeError):
    """A component did not start; the message names its log file."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Component:
    """One child process whose output goes to a log file."""

    name: str
    argv: Sequence[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self, env: dict[str, str] | None = None) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            list(self.argv),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # a Ctrl-C in the terminal reaches us, not the children
            preexec_fn=die_with_parent,
        )

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise ControlPlaneError(
                f"{self.name} exited with code {self.proc.returncode}; "
                f"last lines of {self.log_path}:\n{tail(self.log_path)}"
            )

    def stop(self, grace: float = 10.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


def die_with_parent() -> None:
    """Linux: SIGTERM the child when its parent dies, so no component outlives a killed run."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, alive: Sequence[Component] = ()
) -> None:
    """Poll ``check`` every 100 ms; fail early when a component died."""
    deadline = time.monotonic() + timeout
    while True:
        for component in alive:
            component.check_alive()
        if check():
            return
        if time.monotonic() > deadline:
            raise ControlPlaneError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager with state in one directory."""

    def __init__(self, directory: Path, binaries: Binaries) -> None:
        self.dir = directory
        self.binaries = binaries
        self.logs = directory / "logs"
        self.components: list[Component] = []
        self.admin: KubeConfig | None = None

    @property
    def kubeconfig_path(self) -> Path:
        return self.dir / "kubeconfig"

    def start(self, timeout: float = 60.0) -> KubeConfig:
        self.dir.mkdir(parents=True, exist_ok=True)
        pki = pki_mod.generate(self.dir / "pki")
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        server = f"https://127.0.0.1:{api_port}"
        ca_pem = pki.ca_cert.read_bytes()
        self.admin = KubeConfig(server=server, ca_pem=ca_pem, token=pki.admin_token, user="admin")
        self.admin.write(self.kubeconfig_path)
        kcm_kubeconfig = KubeConfig(
            server=server,
            ca_pem=ca_pem,
            token=pki.controller_manager_token,
            user="system:kube-controller-manager",
        ).write(self.dir / "kube-controller-manager.kubeconfig")

        etcd = Component(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=devcluster",
                f"--data-dir={self.dir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=devcluster=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            self.logs / "etcd.log",
        )
        apiserver = Component(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--cert-dir={self.dir / 'apiserver-certs'}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--token-auth-file={pki.token_file}",
                "--authorization-mode=RBAC",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                f"--service-cluster-ip-range={pki_mod.SERVICE_CIDR}",
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                "--profiling=false",
                "--v=1",
            ],
            self.logs / "kube-apiserver.log",
        )
        controller_manager = Component(
            "kube-controller-manager",
            [
                str(self.binaries.kube_controller_manager),
                f"--kubeconfig={kcm_kubeconfig}",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca_cert}",
                "--leader-elect=false",
                "--secure-port=0",
                # The defaults (job, garbagecollector, ttl-after-finished, namespace,
                # serviceaccount, serviceaccount-token, node lifecycle, ...) are all harmless.
                "--controllers=*",
                f"--service-cluster-ip-range={pki_mod.SERVICE_CIDR}",
                "--profiling=false",
                "--v=1",
            ],
            self.logs / "kube-controller-manager.log",
        )
        try:
            self._start(etcd)
            wait_until(lambda: _port_open(etcd_port), timeout, "etcd to listen", [etcd])
            self._start(apiserver)
            with Api(self.admin, timeout=5.0) as api:
                wait_until(
                    lambda: _ready(api), timeout, "kube-apiserver /readyz", [etcd, apiserver]
                )
                self._start(controller_manager)
                # The serviceaccount controller creating `default` proves the KCM is working.
                wait_until(
                    lambda: (
                        api.get_or_none("/api/v1/namespaces/default/serviceaccounts/default")
                        is not None
                    ),
                    timeout,
                    "kube-controller-manager to create the default ServiceAccount",
                    self.components,
                )
        except BaseException:
            self.stop()
            raise
        return self.admin

    def _start(self, component: Component) -> None:
        self.components.append(component)
        component.start(env=dict(os.environ))

    def _component(self, name: str) -> Component:
        for component in self.components:
            if component.name == name:
                return component
        raise ControlPlaneError(f"no running component {name}")

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver alone (SIGTERM, then SIGKILL): an API outage.

        etcd, the controller manager and the node agent keep running and retry, as they
        would against a real control plane whose API server is down.
        """
        self._component("kube-apiserver").stop()

    def start_apiserver(self, timeout: float = 60.0) -> None:
        """Start kube-apiserver again with the same arguments (same port, certificates and
        tokens, so every kubeconfig stays valid); return once ``/readyz`` answers 200."""
        assert self.admin is not None, "control plane not started"
        apiserver = self._component("kube-apiserver")
        if apiserver.proc is not None and apiserver.proc.poll() is None:
            return
        apiserver.start(env=dict(os.environ))
        etcd = self._component("etcd")
        with Api(self.admin, timeout=5.0) as api:
            wait_until(lambda: _ready(api), timeout, "kube-apiserver /readyz", [etcd, apiserver])

    def stop(self) -> None:
        """Stop in reverse order; safe to call twice."""
        for component in reversed(self.components):
            component.stop()
        self.components.clear()


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _ready(api: Api) -> bool:
    try:
        status, _ = api.text("/readyz")
    except httpx.HTTPError:  # connection refused while the server comes up
        return False
    return status == 200
