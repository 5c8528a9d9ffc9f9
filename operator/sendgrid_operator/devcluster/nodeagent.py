"""A node agent that plays kubelet and scheduler for Pods, running them as local processes.

Why it exists: the local control plane has no kubelet, container runtime or scheduler, yet the
operator's exports run as Jobs. This agent registers one Node (Ready, with status and Lease
heartbeats so the node lifecycle controller never evicts), binds pending Pods to it through
``pods/binding``, runs them with :mod:`podrunner`, reports ``pods/status``, and finishes Pod
deletions (kill, then delete with ``gracePeriodSeconds=0``) the way a kubelet confirms them.
It polls the API every ``interval`` seconds: simple, and robust against dropped watches.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from pathlib import Path
from typing import Any

from sendgrid_operator.devcluster.api import Api, ApiError, namespaced
from sendgrid_operator.devcluster.podrunner import PodRun, now

JSON = dict[str, Any]
log = logging.getLogger("sendgrid_operator.devcluster.nodeagent")

HEARTBEAT_SECONDS = 10.0
LEASE_SECONDS = 40


def micro_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class NodeAgent:
    """Registers ``node_name`` and runs every Pod scheduled (by it) onto that node."""

    def __init__(
        self,
        api: Api,
        work_dir: Path,
        node_name: str = "devcluster-node",
        default_entrypoint: tuple[str, ...] = ("sendgrid-operator",),
        bin_dirs: tuple[str, ...] = (),
        interval: float = 0.2,
    ) -> None:
        self.api = api
        self.pods_dir = work_dir / "pods"
        self.node_name = node_name
        self.default_entrypoint = list(default_entrypoint)
        self.bin_dirs = list(bin_dirs)
        self.interval = interval
        self.runs: dict[str, PodRun] = {}
        self.reported: dict[str, JSON] = {}
        self._last_heartbeat = 0.0
        self._deleted: dict[str, float] = {}  # uid -> when we last sent the final delete

    # -- node ----------------------------------------------------------------------------

    def node_status(self) -> JSON:
        stamp = now()
        conditions = [
            ("Ready", "True", "KubeletReady", "local node agent is ready"),
            ("MemoryPressure", "False", "KubeletHasSufficientMemory", ""),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure", ""),
            ("PIDPressure", "False", "KubeletHasSufficientPID", ""),
        ]
        capacity = {"cpu": "8", "memory": "32Gi", "pods": "250", "ephemeral-storage": "100Gi"}
        return {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [
                {
                    "type": kind,
                    "status": value,
                    "reason": reason,
                    "message": message or reason,
                    "lastHeartbeatTime": stamp,
                    "lastTransitionTime": stamp,
                }
                for kind, value, reason, message in conditions
            ],
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": self.node_name},
            ],
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "osImage": "local processes (sendgrid-operator devcluster)",
                "kernelVersion": "",
                "kubeletVersion": "devcluster",
                "kubeProxyVersion": "",
                "containerRuntimeVersion": "local://process",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        }

    def register(self) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node_name,
                "labels": {
                    "kubernetes.io/hostname": self.node_name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                },
            },
            "status": self.node_status(),
        }
        try:
            self.api.post("/api/v1/nodes", node)
        except ApiError as exc:
            if exc.status != 409:
                raise
        self.heartbeat()

    def heartbeat(self) -> None:
        """Refresh the Node's conditions and its Lease in kube-node-lease."""
        self.api.patch(f"/api/v1/nodes/{self.node_name}/status", {"status": self.node_status()})
        lease_path = namespaced(
            "kube-node-lease", "leases", self.node_name, api="apis/coordination.k8s.io/v1"
        )
        spec = {
            "holderIdentity": self.node_name,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": micro_now(),
        }
        try:
            self.api.patch(lease_path, {"spec": spec})
        except ApiError as exc:
            if exc.status != 404:
                raise
            node = self.api.get(f"/api/v1/nodes/{self.node_name}")
            owner = {"apiVersion": "v1", "kind": "Node", "name": self.node_name}
            owner["uid"] = node["metadata"]["uid"]
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.node_name, "ownerReferences": [owner]},
                "spec": spec,
            }
            self.api.post(lease_path.rsplit("/", 1)[0], lease)
        self._last_heartbeat = time.monotonic()

    # -- pods ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """The agent's loop until ``stop`` is set; API errors are logged and retried."""
        self.register()
        log.info("node %s registered; running pods from %s", self.node_name, self.pods_dir)
        while not stop.is_set():
            try:
                if time.monotonic() - self._last_heartbeat > HEARTBEAT_SECONDS:
                    self.heartbeat()
                self.sync()
            except Exception:
                log.exception("sync failed; retrying")
            stop.wait(self.interval)
        self.shutdown()

    def sync(self) -> None:
        pods = self.api.get("/api/v1/pods")["items"]
        seen: set[str] = set()
        for pod in pods:
            meta, spec = pod["metadata"], pod["spec"]
            uid = meta["uid"]
            if not spec.get("nodeName"):
                if spec.get("schedulerName", "default-scheduler") == "default-scheduler":
                    self.bind(pod)
                continue
            if spec["nodeName"] != self.node_name:
                continue
            seen.add(uid)
            self.sync_pod(pod)
        for uid in list(self.runs):
            if uid not in seen:  # deleted without us (force delete): stop its processes
                run = self.runs.pop(uid)
                run.terminate(0)
                self.reported.pop(uid, None)
        for uid in [u for u in self._deleted if u not in seen]:
            del self._deleted[uid]

    def bind(self, pod: JSON) -> None:
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            return
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        }
        try:
            self.api.post(namespaced(meta["namespace"], "pods", f"{meta['name']}/binding"), binding)
            log.info("bound pod %s/%s", meta["namespace"], meta["name"])
        except ApiError as exc:
            if exc.status not in (404, 409):
                raise

    def sync_pod(self, pod: JSON) -> None:
        meta = pod["metadata"]
        uid, phase = meta["uid"], pod.get("status", {}).get("phase", "Pending")
        run = self.runs.get(uid)
        if run is None:
            if meta.get("deletionTimestamp") or phase in ("Succeeded", "Failed"):
                if meta.get("deletionTimestamp"):
                    self.force_delete(pod)
                return
            if phase == "Running":  # started by an earlier agent: the process is gone
                self.fail_lost(pod)
                return
            pod_dir = self.pods_dir / meta["namespace"] / f"{meta['name']}-{uid[:8]}"
            pod_dir.mkdir(parents=True, exist_ok=True)
            run = self.runs[uid] = PodRun(pod, pod_dir)
            log.info("starting pod %s/%s in %s", meta["namespace"], meta["name"], pod_dir)
        run.pod = pod
        if meta.get("deletionTimestamp") and run.killing is None and not run.done:
            grace = meta.get("deletionGracePeriodSeconds")
            if grace is None:
                grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
            log.info("killing pod %s/%s (grace %ss)", meta["namespace"], meta["name"], grace)
            run.terminate(float(grace))
        run.step(self.api, self.default_entrypoint, self.bin_dirs)
        self.report(run)
        if meta.get("deletionTimestamp") and (run.done or run.killed):
            self.force_delete(pod)

    def report(self, run: PodRun) -> None:
        """Patch ``pods/status`` when the status changed."""
        status = run.status()
        if self.reported.get(run.uid) == status:
            return
        meta = run.pod["metadata"]
        path = namespaced(meta["namespace"], "pods", f"{meta['name']}/status")
        try:
            self.api.patch(path, {"metadata": {"uid": run.uid}, "status": status})
        except ApiError as exc:
            if exc.status not in (404, 409):
                raise
            return
        self.reported[run.uid] = status

    def force_delete(self, pod: JSON) -> None:
        """Confirm a deletion like a kubelet (finalizers, e.g. the Job's, may keep it longer)."""
        meta = pod["metadata"]
        if time.monotonic() - self._deleted.get(meta["uid"], -10.0) < 5.0:
            return
        self._deleted[meta["uid"]] = time.monotonic()
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}}
        try:
            self.api.delete(namespaced(meta["namespace"], "pods", meta["name"]), body)
        except ApiError as exc:
            if exc.status not in (404, 409):
                raise

    def fail_lost(self, pod: JSON) -> None:
        meta = pod["metadata"]
        status = {
            "phase": "Failed",
            "reason": "NodeAgentRestarted",
            "message": "the local node agent restarted and lost this pod's processes",
        }
        path = namespaced(meta["namespace"], "pods", f"{meta['name']}/status")
        self.api.patch(path, {"status": status})

    def shutdown(self) -> None:
        for run in self.runs.values():
            run.terminate(2.0)
        for run in self.runs.values():
            if run.killing is not None:
                run.killing.join()
