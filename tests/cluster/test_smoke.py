"""Smoke tests of the local control plane: CRDs, CEL, status subresource, Jobs, GC.

They check what the operator relies on, against the real API server and controller manager,
with Pods run by the devcluster node agent.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import pytest

from kube import Kube, job_manifest, terminated, wait_for
from sendgrid_operator import __version__
from sendgrid_operator.devcluster import ApiError
from sendgrid_operator.devcluster.binaries import read_versions

pytestmark = pytest.mark.cluster
JSON = dict[str, Any]


def connection(name: str, **spec: Any) -> JSON:
    return {
        "apiVersion": "sendgrid-operator.io/v1alpha1",
        "kind": "SendGridConnection",
        "metadata": {"name": name},
        "spec": {"apiKeySecretRef": {"name": "sendgrid"}, **spec},
    }


def pid_of(pod: JSON) -> int:
    container_id: str = pod["status"]["containerStatuses"][0]["containerID"]
    assert container_id.startswith("local://"), container_id
    return int(container_id.removeprefix("local://"))


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def running_pod(kube: Kube, job: str) -> JSON | None:
    for pod in kube.job_pods(job):
        statuses = pod.get("status", {}).get("containerStatuses") or []
        if statuses and "running" in statuses[0]["state"]:
            return pod
    return None


def test_tools_report_real_versions(kube: Kube) -> None:
    versions = read_versions()
    server = json.loads(kube.kubectl("version", "--output=json"))["serverVersion"]
    assert server["gitVersion"] == versions["KUBERNETES_VERSION"]
    assert kube.helm("version", "--short").startswith("v4.")
    assert kube.helm("list", "--output=json").strip() == "[]"


def test_connection_status_subresource(kube: Kube, crds: list[str]) -> None:
    assert "sendgridconnections.sendgrid-operator.io" in crds
    created = kube.api.post(kube.custom("sendgridconnections"), connection("main"))
    assert created["spec"]["baseURL"] == "https://api.sendgrid.com"  # schema default
    assert created["metadata"]["generation"] == 1
    path = kube.custom("sendgridconnections", "main")

    # The main resource ignores status ...
    ignored = {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "X"}]}}
    assert "status" not in kube.api.patch(path, ignored)

    # ... and /status takes it, without touching spec or generation.
    condition = {
        "type": "Ready",
        "status": "False",
        "reason": "SecretNotFound",
        "message": "secret sendgrid not found",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
        "observedGeneration": 1,
    }
    kube.api.patch(
        f"{path}/status", {"status": {"observedGeneration": 1, "conditions": [condition]}}
    )
    current = kube.api.get(path)
    assert current["status"]["conditions"] == [condition]
    assert current["metadata"]["generation"] == 1
    ready = kube.kubectl(
        "get", "sendgridconnection", "main", "-o", "jsonpath={.status.conditions[0].reason}"
    )
    assert ready == "SecretNotFound"

    kube.api.patch(path, {"spec": {"displayName": "Marketing"}})
    assert kube.api.get(path)["metadata"]["generation"] == 2


def test_cel_rule_refuses_plain_http(kube: Kube, crds: list[str]) -> None:
    with pytest.raises(ApiError) as refused:
        kube.api.post(
            kube.custom("sendgridconnections"), connection("bad", baseURL="http://example.com")
        )
    assert refused.value.status == 422
    assert "baseURL must use https://" in refused.value.message

    manifest = json.dumps(connection("bad2", baseURL="http://sendgrid.example.com"))
    out = kube.kubectl("apply", "-f", "-", stdin=manifest, check=False)
    assert "baseURL must use https://" in out

    kube.api.post(
        kube.custom("sendgridconnections"), connection("local", baseURL="http://127.0.0.1:3000")
    )
    assert kube.api.get_or_none(kube.custom("sendgridconnections", "bad")) is None


SCRIPT = """
import json, os, sys
print("config:", open(sys.argv[1]).read())
names = ["API_KEY", "GREETING", "CM_greeting", "POD_NAMESPACE", "POD_NAME", "EXPANDED"]
print("env:", json.dumps({k: os.environ.get(k) for k in names}, sort_keys=True))
print("kubeconfig:", os.path.isfile(os.environ["KUBECONFIG"]))
with open(os.path.join(os.environ["SCRATCH"], "out.txt"), "w") as fh:
    fh.write("scratch works")
with open(os.environ["MESSAGE_PATH"], "w") as fh:
    fh.write("all done")
"""


def test_job_runs_to_completion_with_env_and_volumes(kube: Kube) -> None:
    kube.create(
        "secrets",
        {"metadata": {"name": "creds"}, "data": {"apiKey": base64.b64encode(b"s3cret").decode()}},
    )
    kube.create(
        "configmaps",
        {
            "metadata": {"name": "settings"},
            "data": {"greeting": "hello", "config.yaml": "mode: test"},
        },
    )
    container = {
        "command": ["python", "-c", SCRIPT, "/etc/settings/config.yaml"],
        "env": [
            {"name": "API_KEY", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "apiKey"}}},
            {
                "name": "GREETING",
                "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "greeting"}},
            },
            {
                "name": "POD_NAMESPACE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            },
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "EXPANDED", "value": "$(GREETING)-world"},
            {"name": "SCRATCH", "value": "/scratch"},
            {"name": "MESSAGE_PATH", "value": "/dev/termination-log"},
        ],
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CM_"}],
        "volumeMounts": [
            {"name": "settings", "mountPath": "/etc/settings"},
            {"name": "scratch", "mountPath": "/scratch"},
        ],
    }
    volumes = [
        {"name": "settings", "configMap": {"name": "settings"}},
        {"name": "scratch", "emptyDir": {}},
    ]
    kube.create_job(job_manifest("ok", container, volumes=volumes))

    wait_for(lambda: kube.job_condition("ok", "Complete"), 60, "job ok to complete")
    (pod,) = kube.job_pods("ok")
    state = terminated(pod)
    assert state is not None
    assert (state["exitCode"], state["reason"], state.get("message")) == (
        0,
        "Completed",
        "all done",
    )
    assert pod["status"]["phase"] == "Succeeded"

    log = kube.pod_log(pod["metadata"]["name"])
    assert "config: mode: test" in log
    env = json.loads(log.split("env: ", 1)[1].splitlines()[0])
    assert env == {
        "API_KEY": "s3cret",
        "CM_greeting": "hello",
        "EXPANDED": "hello-world",
        "GREETING": "hello",
        "POD_NAME": pod["metadata"]["name"],
        "POD_NAMESPACE": kube.namespace,
    }
    assert "kubeconfig: True" in log


def test_default_entrypoint_is_the_project_command(kube: Kube) -> None:
    kube.create_job(job_manifest("version", {"args": ["--version"]}))
    wait_for(lambda: kube.job_condition("version", "Complete"), 60, "job version to complete")
    (pod,) = kube.job_pods("version")
    assert f"sendgrid-operator {__version__}" in kube.pod_log(pod["metadata"]["name"])


def test_failing_job_honours_backoff_limit(kube: Kube) -> None:
    container = {
        "command": ["python", "-c", "import sys; print('failing on purpose'); sys.exit(3)"]
    }
    kube.create_job(job_manifest("fails", container, backoff_limit=1))

    failed = wait_for(lambda: kube.job_condition("fails", "Failed"), 90, "job fails to fail")
    assert failed["reason"] == "BackoffLimitExceeded"
    pods = kube.job_pods("fails")
    assert len(pods) == 2  # the first try and one retry
    for pod in pods:
        assert pod["status"]["phase"] == "Failed"
        state = terminated(pod)
        assert state is not None and (state["exitCode"], state["reason"]) == (3, "Error")
        assert "failing on purpose" in kube.pod_log(pod["metadata"]["name"])
    assert kube.job("fails")["status"]["failed"] == 2  # type: ignore[index]


SLEEP = ["python", "-c", "import time; print('started', flush=True); time.sleep(600)"]


def test_owner_deletion_collects_job_and_pod(kube: Kube, crds: list[str]) -> None:
    owner = kube.api.post(kube.custom("sendgridconnections"), connection("owner"))
    job = job_manifest("owned", {"command": SLEEP})
    job["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "sendgrid-operator.io/v1alpha1",
            "kind": "SendGridConnection",
            "name": "owner",
            "uid": owner["metadata"]["uid"],
        }
    ]
    kube.create_job(job)
    pod = wait_for(lambda: running_pod(kube, "owned"), 60, "pod of job owned to run")
    pid = pid_of(pod)
    assert not process_gone(pid)

    kube.api.delete(
        kube.custom("sendgridconnections", "owner"), {"propagationPolicy": "Background"}
    )
    wait_for(lambda: kube.job("owned") is None, 60, "job owned to be collected")
    wait_for(lambda: not kube.job_pods("owned"), 60, "pod of job owned to be collected")
    wait_for(lambda: process_gone(pid), 30, f"process {pid} to be killed")


def test_active_deadline_kills_the_pod(kube: Kube) -> None:
    kube.create_job(job_manifest("deadline", {"command": SLEEP}, activeDeadlineSeconds=3))
    pod = wait_for(lambda: running_pod(kube, "deadline"), 60, "pod of job deadline to run")
    pid = pid_of(pod)
    failed = wait_for(lambda: kube.job_condition("deadline", "Failed"), 60, "job deadline to fail")
    assert failed["reason"] == "DeadlineExceeded"
    wait_for(lambda: process_gone(pid), 30, f"process {pid} to be killed")
    wait_for(lambda: not kube.job_pods("deadline"), 60, "pod of job deadline to be deleted")


def test_ttl_after_finished_deletes_the_job(kube: Kube) -> None:
    job = job_manifest(
        "ttl", {"command": ["python", "-c", "print('ran')"]}, ttlSecondsAfterFinished=0
    )
    uid = kube.create_job(job)["metadata"]["uid"]
    wait_for(lambda: kube.job("ttl") is None, 60, "job ttl to be deleted after it finished")
    # It did run (and finish) before it went away: its pod's output is on disk.
    logs = (kube.cluster.dir / "pods" / kube.namespace).glob("ttl-*/main.log")
    assert [p.read_text() for p in logs] == ["ran\n"], uid
