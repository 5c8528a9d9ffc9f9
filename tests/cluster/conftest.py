"""Fixtures for tests against a real local control plane.

One cluster per test session (etcd, kube-apiserver, kube-controller-manager and the node agent
from ``sendgrid_operator.devcluster``), stopped at the end also after a failure or Ctrl-C; a
fresh namespace per test; the project's CRDs applied once. A failing test's report gets every
component's log and the logs of the Pods in its namespace.
"""

from __future__ import annotations

import atexit
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from kube import Kube, wait_for
from sendgrid_operator.devcluster import Api, DevCluster, ensure_binaries
from sendgrid_operator.devcluster.binaries import repo_root

LOG_TAIL_LINES = 200
_namespace_key = pytest.StashKey[str]()
_cluster: DevCluster | None = None
_startup: float | None = None


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build missing binaries before any test runs, outside the per-test timeout."""
    if any(item.get_closest_marker("cluster") for item in session.items):
        ensure_binaries(build=True)


@pytest.fixture(scope="session")
def devcluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    """The session's cluster; builds the binaries first if they are missing."""
    global _cluster, _startup
    directory = Path(os.environ.get("SGOP_TEST_CLUSTER_DIR") or tmp_path_factory.mktemp("dc"))
    cluster = DevCluster(directory, ensure_binaries(build=True))
    atexit.register(cluster.stop)  # also on KeyboardInterrupt; stop() is idempotent
    try:
        cluster.start()
        _cluster, _startup = cluster, cluster.startup_seconds
        yield cluster
    finally:
        _cluster = None
        cluster.stop()


@pytest.fixture(scope="session")
def admin_api(devcluster: DevCluster) -> Iterator[Api]:
    with devcluster.api() as api:
        yield api


@pytest.fixture(scope="session")
def crds(devcluster: DevCluster, admin_api: Api) -> list[str]:
    """Apply every CRD in ``crds/`` and wait until each is Established; returns their names."""
    files = sorted((repo_root() / "crds").glob("*.yaml"))
    assert files, "no CRDs in crds/"
    kube = Kube(devcluster, admin_api, "default")
    out = kube.kubectl("apply", "--server-side", "-o", "name", *[f"--filename={f}" for f in files])
    names = [line.split("/", 1)[1] for line in out.split()]

    def established(name: str) -> bool:
        crd = admin_api.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        conditions = (crd.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    for name in names:
        wait_for(lambda n=name: established(n), 30, f"CRD {name} to be Established")  # type: ignore[misc]
    return names


@pytest.fixture
def namespace(
    request: pytest.FixtureRequest, devcluster: DevCluster, admin_api: Api
) -> Iterator[str]:
    """A fresh namespace, deleted after the test (its deletion is not awaited)."""
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{stem}-{secrets.token_hex(3)}"
    admin_api.post("/api/v1/namespaces", {"metadata": {"name": name}})
    request.node.stash[_namespace_key] = name
    # Pods need the namespace's `default` ServiceAccount (ServiceAccount admission) and the
    # `kube-root-ca.crt` ConfigMap (their projected token volume).
    for what in ("serviceaccounts/default", "configmaps/kube-root-ca.crt"):
        wait_for(
            lambda w=what: admin_api.get_or_none(f"/api/v1/namespaces/{name}/{w}"),  # type: ignore[misc]
            30,
            f"{what} in namespace {name}",
        )
    yield name
    admin_api.delete(f"/api/v1/namespaces/{name}", {"propagationPolicy": "Background"})


@pytest.fixture
def kube(devcluster: DevCluster, admin_api: Api, namespace: str) -> Kube:
    return Kube(devcluster, admin_api, namespace)


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"(unreadable: {exc})"
    cut = len(lines) - LOG_TAIL_LINES
    head = [f"... {cut} earlier lines in {path}"] if cut > 0 else []
    return "\n".join(head + lines[-LOG_TAIL_LINES:])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Attach the cluster's logs to a failing cluster test's report."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if (
        not report.failed
        or _cluster is None
        or "devcluster" not in getattr(item, "fixturenames", ())
    ):
        return
    namespace = item.stash.get(_namespace_key, None)
    for name, path in _cluster.logs().items():
        if name.startswith("pod ") and not name.startswith(f"pod {namespace}/"):
            continue
        report.sections.append((f"devcluster {name} ({path})", _tail(path)))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _startup is not None:
        terminalreporter.write_line(f"devcluster: control plane started in {_startup:.1f}s")
