"""concurrencyPolicy and restart safety: one run at a time, never a second Job for a run."""

from __future__ import annotations

import pytest

from kube import Kube, wait_for
from sendgrid_operator.emulator import AdminClient, Emulator

from .conftest import RELEASE, Operator
from .helpers import get, jobs_of, request_run, wait_history, wait_run
from .manifests import CSV_MEMBERS
from .test_runs import setup_export

pytestmark = pytest.mark.cluster


def active_run(kube: Kube, name: str) -> str | None:
    active = (get(kube, "segmentexports", name).get("status") or {}).get("active") or {}
    run = active.get("runId")
    return str(run) if run else None


def test_forbid_holds_a_request_until_the_active_run_ends(
    operator: Operator, kube: Kube, emulator: Emulator, admin: AdminClient
) -> None:
    setup_export(kube, emulator, admin)
    admin.add_fault("upsert", "delay", seconds=6, count=1)
    first = request_run(kube, "vip")
    wait_for(lambda: active_run(kube, "vip") == first, 30, "the first run to be active")
    second = request_run(kube, "vip")
    wait_for(lambda: len(jobs_of(kube, "vip")) >= 1, 10, "the first Job")
    assert [j["metadata"]["name"] for j in jobs_of(kube, "vip")] == [first]
    history = wait_history(kube, "vip", [first, second])
    assert history[first]["result"] == history[second]["result"] == "Succeeded"
    first_job = next(j for j in jobs_of(kube, "vip") if j["metadata"]["name"] == first)
    second_job = next(j for j in jobs_of(kube, "vip") if j["metadata"]["name"] == second)
    assert second_job["metadata"]["creationTimestamp"] >= first_job["status"]["completionTime"]


def test_replace_stops_the_active_run(
    operator: Operator, kube: Kube, emulator: Emulator, admin: AdminClient
) -> None:
    setup_export(kube, emulator, admin, concurrencyPolicy="Replace")
    admin.add_fault("upsert", "delay", seconds=20, count=1)
    first = request_run(kube, "vip")
    wait_for(lambda: active_run(kube, "vip") == first, 30, "the first run to be active")
    second = request_run(kube, "vip")
    last = wait_run(kube, "vip", second)
    assert last["result"] == "Succeeded"
    history = {h["runId"]: h for h in get(kube, "segmentexports", "vip")["status"]["history"]}
    assert history[first]["result"] == "Failed" and history[first]["reason"] == "Replaced"
    assert admin.members(admin_list(admin, kube)) == CSV_MEMBERS


def admin_list(admin: AdminClient, kube: Kube) -> str:
    return str(get(kube, "segmentexports", "vip")["spec"]["listIds"][0])


def test_operator_restart_mid_run_adopts_the_job(
    operator: Operator, kube: Kube, emulator: Emulator, admin: AdminClient
) -> None:
    setup_export(kube, emulator, admin)
    admin.add_fault("upsert", "delay", seconds=8, count=1)
    run = request_run(kube, "vip")
    wait_for(lambda: active_run(kube, "vip") == run, 30, "the run to be active")
    old = {p["metadata"]["name"] for p in operator.pods()}
    operator.kube.kubectl(
        "delete", "pod", "-l", f"app.kubernetes.io/instance={RELEASE}", "--wait=false"
    )

    def replaced() -> bool:
        pods = [p for p in operator.pods() if p["metadata"]["name"] not in old]
        return bool(pods) and operator.ready()

    wait_for(replaced, 60, "a new operator Pod serving /readyz")
    last = wait_run(kube, "vip", run, timeout=120)
    assert last["result"] == "Succeeded", last
    assert [j["metadata"]["name"] for j in jobs_of(kube, "vip")] == [run]
    status = get(kube, "segmentexports", "vip")["status"]
    assert [h["runId"] for h in status["history"]] == [run]
    assert admin.members(admin_list(admin, kube)) == CSV_MEMBERS
