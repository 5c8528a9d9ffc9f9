"""End-to-end fixtures: the operator installed with the real ``helm`` on the local control
plane, running as the chart's ServiceAccount (the node agent gives its Pod a TokenRequest
token for that account), and a SendGrid emulator on loopback for the export Jobs.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import pytest

from kube import Kube, wait_for
from sendgrid_operator.devcluster import Api, DevCluster
from sendgrid_operator.devcluster.binaries import repo_root
from sendgrid_operator.emulator import AdminClient, Emulator, EmulatorConfig
from sendgrid_operator.emulator.config import ApiKey

OPERATOR_NAMESPACE = "sendgrid-operator-e2e"
RELEASE = "sgop"
API_KEY = "SG.e2e-test-key-not-real"
NO_SCOPE_KEY = "SG.e2e-mail-only-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Operator:
    """The installed release: where its HTTP endpoint is, and how to find its Pod."""

    def __init__(self, kube: Kube, port: int) -> None:
        self.kube = kube
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def pods(self) -> list[dict[str, object]]:
        return self.kube.pods("app.kubernetes.io/instance=" + RELEASE)

    def ready(self) -> bool:
        try:
            return httpx.get(self.url + "/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def metrics(self) -> str:
        return httpx.get(self.url + "/metrics", timeout=5).text


@pytest.fixture(scope="package")
def operator(devcluster: DevCluster, admin_api: Api, crds: list[str]) -> Iterator[Operator]:
    """``helm install`` of charts/sendgrid-operator, waited for until it serves /readyz.

    Package-scoped: the operator watches every namespace, so it must be gone (its Pod too,
    not only the release) before tests outside ``e2e/`` write status of their own.
    """
    if admin_api.get_or_none(f"/api/v1/namespaces/{OPERATOR_NAMESPACE}") is None:
        admin_api.post("/api/v1/namespaces", {"metadata": {"name": OPERATOR_NAMESPACE}})
    kube = Kube(devcluster, admin_api, OPERATOR_NAMESPACE)
    wait_for(
        lambda: admin_api.get_or_none(
            f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/serviceaccounts/default"
        ),
        30,
        "the operator namespace's default ServiceAccount",
    )
    port = free_port()
    values = {
        "image": {"repository": "sendgrid-operator", "tag": "dev"},
        # No cluster DNS here: the Jobs (local processes) reach the operator on loopback.
        "operator": {"httpPort": port, "logLevel": "INFO", "reportURL": f"http://127.0.0.1:{port}"},
        "extraEnv": [
            {"name": "SGOP_HTTP_HOST", "value": "127.0.0.1"},
            {"name": "SGOP_SCHEDULE_TICK_SECONDS", "value": "1"},
            {"name": "SGOP_CONNECTION_POLL_SECONDS", "value": "2"},
        ],
    }
    values_file = devcluster.dir / "e2e-values.json"
    values_file.write_text(json.dumps(values))
    chart = repo_root() / "charts" / "sendgrid-operator"
    kube.helm("install", RELEASE, str(chart), "--values", str(values_file), "--wait=hookOnly")
    op = Operator(kube, port)
    wait_for(op.ready, 90, "the operator to serve /readyz")
    yield op
    kube.helm("uninstall", RELEASE, "--wait", check=False)
    wait_for(lambda: not op.pods(), 60, "the operator's Pod to be gone after helm uninstall")


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    config = EmulatorConfig(
        apply_delay=0.05,
        api_keys=[
            ApiKey(API_KEY, ("marketing.read", "scopes.read")),
            ApiKey(NO_SCOPE_KEY, ("mail.send",)),
        ],
    )
    with Emulator(config).running_in_thread() as emu:
        yield emu


@pytest.fixture
def admin(emulator: Emulator) -> Iterator[AdminClient]:
    with AdminClient(emulator.url) as client:
        yield client
