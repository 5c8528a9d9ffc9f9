"""The run's Job: deterministic names, restricted pod security, only what the run needs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sendgrid_operator.api.export import SegmentExportSpec
from sendgrid_operator.api.report import RunTrigger
from sendgrid_operator.controller import jobs
from sendgrid_operator.controller.settings import Settings

EXPORT: dict[str, Any] = {
    "apiVersion": "sendgrid-operator.io/v1alpha1",
    "kind": "SegmentExport",
    "metadata": {"name": "vip", "namespace": "marketing", "uid": "u-1"},
}
SPEC = SegmentExportSpec.model_validate(
    {
        "connectionRef": {"name": "sg"},
        "listIds": ["0b4f9d8e-5c1a-4d2b-9e3f-1a2b3c4d5e6f"],
        "segments": [
            {
                "name": "a",
                "source": {"file": {"configMap": {"name": "vip-data", "key": "vip.csv"}}},
            },
            {
                "name": "b",
                "source": {
                    "sql": {
                        "query": "select 1",
                        "databaseURLSecretRef": {"name": "db", "key": "url"},
                    }
                },
            },
        ],
        "fieldMapping": {"email": "email"},
    }
)


def plan(**kw: Any) -> jobs.RunPlan:
    return jobs.RunPlan(
        run_id="vip-123",
        trigger=RunTrigger.SCHEDULE,
        base_url="https://api.sendgrid.com",
        api_key_secret=("sg-key", "apiKey"),
        report_token_hash="abc",
        **kw,
    )


def test_run_ids_are_deterministic() -> None:
    slot = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
    assert jobs.scheduled_run_id("vip", slot) == jobs.scheduled_run_id("vip", slot)
    assert jobs.requested_run_id("vip", "t1") == jobs.requested_run_id("vip", "t1")
    assert jobs.requested_run_id("vip", "t1") != jobs.requested_run_id("vip", "t2")
    assert len(jobs.scheduled_run_id("x" * 200, slot)) <= 63


def test_pod_is_restricted_and_has_no_api_token() -> None:
    job = jobs.build_job(EXPORT, SPEC, plan(), Settings())
    pod = job["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = pod["containers"][0]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert job["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert pod["restartPolicy"] == "Never"


def test_secrets_reach_the_pod_only_by_reference() -> None:
    job = jobs.build_job(EXPORT, SPEC, plan(), Settings())
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SGOP_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "sg-key", "key": "apiKey"}
    assert env["SGOP_SECRET_0"]["valueFrom"]["secretKeyRef"] == {"name": "db", "key": "url"}
    run_spec = json.loads(env["SGOP_RUN_SPEC"]["value"])
    assert run_spec["secretEnv"] == {"db/url": "SGOP_SECRET_0"}
    assert "value" not in env["SGOP_API_KEY"]


def test_config_map_sources_and_state_are_mounted() -> None:
    job = jobs.build_job(
        EXPORT,
        SPEC,
        plan(state_shards=("vip-state-0", "vip-state-1"), state_sha256="f00"),
        Settings(),
    )
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    items = volumes["sources"]["projected"]["sources"][0]["configMap"]["items"]
    assert items == [{"key": "vip.csv", "path": "vip-data/vip.csv"}]
    state = volumes["state"]["projected"]["sources"]
    assert [s["configMap"]["name"] for s in state] == ["vip-state-0", "vip-state-1"]


def test_job_finished() -> None:
    assert jobs.job_finished({"status": {}}) is None
    assert (
        jobs.job_finished({"status": {"conditions": [{"type": "Failed", "status": "True"}]}})
        == "Failed"
    )
