"""Helpers for tests against the local control plane (``tests/cluster``).

Why it exists: cluster tests must wait on conditions with timeouts (never sleep), run the real
``kubectl`` and ``helm`` with the admin kubeconfig, and read Pod output without a kubelet.
These helpers keep each test down to the behaviour it checks.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sendgrid_operator.devcluster import Api, ApiError, DevCluster
from sendgrid_operator.devcluster.api import namespaced

T = TypeVar("T")
JSON = dict[str, Any]

GROUP = "sendgrid-operator.io"
VERSION = "v1alpha1"


def wait_for(
    predicate: Callable[[], T | None], timeout: float, message: str, interval: float = 0.1
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that.

    Fails with ``message``, the last value and the last exception after ``timeout`` seconds.
    API errors inside the predicate count as "not yet".
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
        except ApiError as exc:
            value, last = None, exc
        else:
            last = value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s: {message} (last: {last!r})")
        time.sleep(interval)  # the poll interval, not a wait for something to happen


@dataclass
class Kube:
    """One test's view of the cluster: admin API, its namespace and the CLI tools."""

    cluster: DevCluster
    api: Api
    namespace: str

    # -- CLI tools -----------------------------------------------------------------------

    def _run(self, binary: Path, args: tuple[str, ...], stdin: str | None, check: bool) -> str:
        env = {**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig)}
        proc = subprocess.run(
            [str(binary), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{binary.name} {' '.join(args)} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc.stdout if check else proc.stdout + proc.stderr

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        """Run the real kubectl as admin in this test's namespace; returns stdout.

        With ``check=False`` it returns stdout and stderr together and never raises.
        """
        ns_args = ("--namespace", self.namespace)
        return self._run(self.cluster.binaries.kubectl, (*ns_args, *args), stdin, check)

    def kubectl_watch(self, *args: str) -> subprocess.Popen[str]:
        """Start ``kubectl ... --watch`` (stdout piped); the caller terminates it."""
        env = {**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig)}
        cmd = [str(self.cluster.binaries.kubectl), "--namespace", self.namespace, *args]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)

    def helm(self, *args: str, check: bool = True) -> str:
        """Run the real helm as admin in this test's namespace; returns stdout."""
        ns_args = ("--namespace", self.namespace)
        return self._run(self.cluster.binaries.helm, (*ns_args, *args), None, check)

    # -- API shortcuts -------------------------------------------------------------------

    def path(self, resource: str, name: str = "", api: str = "api/v1") -> str:
        return namespaced(self.namespace, resource, name, api)

    def custom(self, plural: str, name: str = "") -> str:
        return self.path(plural, name, api=f"apis/{GROUP}/{VERSION}")

    def create(self, resource: str, body: JSON, api: str = "api/v1") -> JSON:
        return self.api.post(self.path(resource, api=api), body)

    def create_job(self, body: JSON) -> JSON:
        return self.create("jobs", body, api="apis/batch/v1")

    def job(self, name: str) -> JSON | None:
        return self.api.get_or_none(self.path("jobs", name, api="apis/batch/v1"))

    def pods(self, label_selector: str) -> list[JSON]:
        items: list[JSON] = self.api.get(
            self.path("pods"), params={"labelSelector": label_selector}
        )["items"]
        return items

    def job_pods(self, job_name: str) -> list[JSON]:
        return self.pods(f"batch.kubernetes.io/job-name={job_name}")

    def job_condition(self, name: str, kind: str) -> JSON | None:
        """The Job's condition of that type when it is True, else None."""
        job = self.job(name)
        for cond in ((job or {}).get("status") or {}).get("conditions") or []:
            if cond["type"] == kind and cond["status"] == "True":
                return dict(cond)
        return None

    def pod_log(self, name: str, container: str | None = None) -> str:
        return self.cluster.pod_log(self.namespace, name, container)


def terminated(pod: JSON) -> JSON | None:
    """The first container's terminated state, if it has one."""
    statuses = pod.get("status", {}).get("containerStatuses") or []
    if not statuses:
        return None
    state = statuses[0].get("state", {}).get("terminated")
    return dict(state) if state else None


def job_manifest(
    name: str,
    container: JSON,
    *,
    backoff_limit: int = 0,
    volumes: list[JSON] | None = None,
    **spec: Any,
) -> JSON:
    """A batch/v1 Job running ``container`` once (``restartPolicy: Never``)."""
    pod_spec: JSON = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 5,
        "containers": [{"name": "main", "image": "sendgrid-operator:dev", **container}],
    }
    if volumes:
        pod_spec["volumes"] = volumes
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": backoff_limit, "template": {"spec": pod_spec}, **spec},
    }
