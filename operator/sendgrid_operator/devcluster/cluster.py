"""A whole local cluster in one directory: control plane plus node agent.

Why it exists: the pytest fixtures and ``python -m sendgrid_operator.devcluster up`` need the
same thing: start everything, hand out an admin kubeconfig and an env file, and stop
everything again (also after a failure). The node agent runs as a child process with its own
log, so a crash in a Pod's process handling never takes the test session down with it.
"""

from __future__ import annotations

import shlex
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sendgrid_operator
from sendgrid_operator.devcluster.api import Api, KubeConfig
from sendgrid_operator.devcluster.binaries import Binaries, ensure_binaries
from sendgrid_operator.devcluster.controlplane import Component, ControlPlane, wait_until
from sendgrid_operator.devcluster.logs import all_logs, pod_log

# Per-run state inside DIR that `start` wipes (DIR itself may hold other files).
STATE = ("etcd", "pki", "apiserver-certs", "pods", "logs", "kubeconfig", "env")
NODE_NAME = "devcluster-node"


class DevCluster:
    """Start with :meth:`start`, stop with :meth:`stop` (idempotent)."""

    def __init__(self, directory: Path, binaries: Binaries | None = None) -> None:
        self.dir = directory.resolve()
        self.binaries = binaries or ensure_binaries()
        self.control_plane = ControlPlane(self.dir, self.binaries)
        self.agent: Component | None = None
        self.admin: KubeConfig | None = None
        self.startup_seconds = 0.0

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    @property
    def env_file(self) -> Path:
        return self.dir / "env"

    def api(self) -> Api:
        """A new admin client (close it, or use it as a context manager)."""
        assert self.admin is not None, "cluster not started"
        return Api(self.admin)

    def start(self, timeout: float = 60.0) -> None:
        began = time.monotonic()
        self.dir.mkdir(parents=True, exist_ok=True)
        for name in STATE:
            path = self.dir / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        try:
            self.admin = self.control_plane.start(timeout)
            self._start_agent(timeout)
        except BaseException:
            self.stop()
            raise
        self._write_env()
        self.startup_seconds = time.monotonic() - began

    def _start_agent(self, timeout: float) -> None:
        source_root = Path(sendgrid_operator.__file__).resolve().parent.parent
        env = {
            "PATH": str(Path(sys.executable).parent) + ":/usr/local/bin:/usr/bin:/bin",
            "PYTHONPATH": str(source_root),
            "PYTHONUNBUFFERED": "1",
            "LANG": "C.UTF-8",
        }
        self.agent = Component(
            "node-agent",
            [
                sys.executable,
                "-m",
                "sendgrid_operator.devcluster",
                "nodeagent",
                "--dir",
                str(self.dir),
                "--node-name",
                NODE_NAME,
            ],
            self.dir / "logs" / "node-agent.log",
        )
        self.agent.start(env=env)
        with self.api() as api:
            wait_until(
                lambda: _node_ready(api, NODE_NAME),
                timeout,
                f"the node agent to register a Ready node {NODE_NAME}",
                [self.agent, *self.control_plane.components],
            )

    def _write_env(self) -> None:
        assert self.admin is not None
        values = {
            "KUBECONFIG": str(self.kubeconfig),
            "SGOP_DEVCLUSTER_DIR": str(self.dir),
            "SGOP_API_SERVER": self.admin.server,
            "SGOP_KUBECTL": str(self.binaries.kubectl),
            "SGOP_HELM": str(self.binaries.helm),
            "SGOP_NODE_NAME": NODE_NAME,
        }
        lines = [f"export {k}={shlex.quote(v)}" for k, v in values.items()]
        self.env_file.write_text("\n".join(lines) + "\n")

    def check_alive(self) -> None:
        """Raise if a component has exited."""
        for component in [*self.control_plane.components, *([self.agent] if self.agent else [])]:
            component.check_alive()

    def stop(self) -> None:
        if self.agent is not None:
            self.agent.stop(grace=15.0)  # it kills its Pods' processes first
            self.agent = None
        self.control_plane.stop()

    @contextmanager
    def apiserver_stopped(self, timeout: float = 60.0) -> Iterator[None]:
        """An API server outage for the duration of the ``with`` block.

        Only kube-apiserver stops; etcd (so all objects), the controller manager, the node
        agent and the Pods' processes keep running. On exit it starts again on the same port
        with the same certificates, and the block returns once ``/readyz`` answers.
        """
        self.control_plane.stop_apiserver()
        try:
            yield
        finally:
            self.control_plane.start_apiserver(timeout)

    def pod_log(self, namespace: str, name: str, container: str | None = None) -> str:
        return pod_log(self.dir, namespace, name, container)

    def logs(self) -> dict[str, Path]:
        return all_logs(self.dir)


def _node_ready(api: Api, name: str) -> bool:
    node = api.get_or_none(f"/api/v1/nodes/{name}")
    if node is None:
        return False
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
