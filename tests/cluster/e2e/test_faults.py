"""The fault matrix on the real control plane: SendGrid faults in each phase of a run, import
jobs that error or fail, the export Job's Pod killed mid-upload, the operator killed
mid-run. Each run ends either successful with exact counts or failed with a clear reason;
a rerun converges; and the emulator's list equals the expected set.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from kube import Kube, wait_for
from sendgrid_operator.emulator import AdminClient, Emulator

from .conftest import RELEASE, Operator
from .faults import (
    active_run,
    assert_exact,
    assert_rerun_converges,
    big_csv,
    faults_fired,
    progress,
    run,
    serve_files,
    setup_export,
    wait_upserts,
)
from .helpers import condition, get, jobs_of, request_run, wait_condition, wait_run
from .manifests import CSV_MEMBERS

pytestmark = pytest.mark.cluster

# (selector, kind, params): every phase of a run. Preflight reads the list and the field
# definitions; upload sends upserts; verification polls import jobs. Faults are bounded, so
# the client's retries (backoff, rate-limit headers) must see the run through.
TRANSIENT = {
    "preflight-list-503": ("list_get", "503", {"count": 3}),
    "preflight-list-drop": ("list_get", "drop", {"count": 2}),
    "upload-429-storm": ("upsert", "429", {"count": 6}),
    "upload-500": ("upsert", "500", {"count": 3}),
    "upload-drop": ("upsert", "drop", {"count": 2}),
    "upload-slow": ("upsert", "delay", {"seconds": 4}),
    "verify-503": ("import_status", "503", {"count": 4}),
    "verify-429-storm": ("import_status", "429", {"count": 6}),
    "verify-drop": ("import_status", "drop", {"count": 2}),
}


@pytest.mark.parametrize("case", list(TRANSIENT), ids=list(TRANSIENT))
def test_transient_sendgrid_faults_end_with_exact_counts(
    case: str, operator: Operator, kube: Kube, emulator: Emulator, admin: AdminClient
) -> None:
    selector, kind, params = TRANSIENT[case]
    list_id = setup_export(kube, emulator, admin)
    admin.clear_request_log()
    if kind == "429":
        # An injected 429 exhausts the endpoint's window and its X-RateLimit-Reset says when
        # the window ends; the client waits for it (up to 30 s a time). A 1-second window
        # keeps the storm short; the waits themselves are honoured either way.
        admin.set_rate_limits({selector: (10_000, 1.0)})
    admin.add_fault(selector, kind, **params)
    last = run(kube)
    assert_exact(last)
    assert admin.members(list_id) == CSV_MEMBERS
    if kind == "delay":  # a delay answers normally, only later
        slow = [r for r in admin.request_log() if r.endpoint == selector]
        assert any(r.duration >= params["seconds"] * 0.9 for r in slow), slow
    else:
        assert len(faults_fired(admin, selector)) == params["count"]
    if kind in ("429", "500", "503"):
        assert last["sendgridRequests"].get(f"{selector} {kind}", 0) >= 1, last
    again = assert_rerun_converges(kube, admin, list_id)
    assert again["counts"]["sent"] == 0 and again["counts"]["unchanged"] == 3


# Faults that outlast the retry budget, or that SendGrid reports in the import job.
PERSISTENT: dict[str, tuple[str, str, dict[str, Any], str]] = {
    "upload-503-forever": ("upsert", "503", {"count": "*"}, "SendGridUnreachable"),
    "upload-drop-forever": ("upsert", "drop", {"count": "*"}, "SendGridUnreachable"),
    "verify-500-forever": ("import_status", "500", {"count": "*"}, "SendGridUnreachable"),
    "import-job-failed": ("upsert", "fail_job", {"count": 1}, "JobsFailed"),
}


@pytest.mark.parametrize("case", list(PERSISTENT), ids=list(PERSISTENT))
def test_persistent_faults_fail_with_a_reason_and_a_rerun_converges(
    case: str, operator: Operator, kube: Kube, emulator: Emulator, admin: AdminClient
) -> None:
    selector, kind, params, reason = PERSISTENT[case]
    # backoffLimit 0: one Pod per run (the Job's own Pod retries are shown elsewhere).
    list_id = setup_export(kube, emulator, admin, job={"backoffLimit": 0})
    admin.add_fault(selector, kind, **params)
    last = run(kube, timeout=120)
    assert last["result"] == "Failed" and last["reason"] == reason, last
    assert last["message"], last
    if selector == "upsert" and kind != "fail_job":
        assert admin.members(list_id) == set()  # nothing was accepted
    # The conditions follow the run's record in a second status patch (see reliability.md).
    obj = wait_condition(kube, "segmentexports", "vip", "False", "RunFailed", timeout=10)
    assert last["runId"] in condition(obj)["message"] or condition(obj)["message"], obj
    admin.clear_faults()
    again = assert_rerun_converges(kube, admin, list_id)
    assert again["counts"]["sent"] == 3, again  # nothing was recorded as sent


def test_rows_sendgrid_rejects_are_counted_and_resent_after_the_fault(
    operator: Operator, kube: Kube, emulator: Emulator, admin: AdminClient
) -> None:
    list_id = setup_export(kube, emulator, admin)
    admin.add_fault("upsert", "reject_rows", pattern="^alan@", count=1)
    last = run(kube)
    assert last["result"] == "Succeeded", last
    assert last["counts"]["rejected"] == 1 and last["counts"]["created"] == 2, last
    # The sample names the row (alan is line 6 of the CSV) and SendGrid's message.
    assert [(r["row"], r["reason"]) for r in last["rejectedSamples"]] == [
        ("vip:profiles/vip.csv:6", "rejected")
    ]
    assert admin.members(list_id) == CSV_MEMBERS - {"alan@example.com"}
    assert get(kube, "segmentexports", "vip")["status"]["contactsExported"] == 2
    again = assert_rerun_converges(kube, admin, list_id)
    # Only the rejected contact is sent again: the state holds what SendGrid applied.
    assert again["counts"]["sent"] == 1 and again["counts"]["created"] == 1, again


def test_export_pod_killed_mid_upload_is_rerun_by_the_job_and_converges(
    operator: Operator, kube: Kube, emulator: Emulator, admin: AdminClient
) -> None:
    n = 70_000  # three upserts (30,000 + 30,000 + 10,000)
    with serve_files({"big.csv": big_csv(n)}) as base:
        segments = [{"name": "big", "source": {"file": {"url": f"{base}/big.csv"}}}]
        list_id = setup_export(
            kube,
            emulator,
            admin,
            segments=segments,
            fieldMapping={"email": "email", "firstName": "first_name", "lastName": "last_name"},
        )
        # The first upsert goes through; the next two hang until the Pod is gone.
        admin.add_fault("upsert", "delay", seconds=30, after=1, count=2)
        run_id = request_run(kube, "vip")
        wait_upserts(admin, 1, timeout=60)
        admin.settle()
        applied_before = len(admin.members(list_id))
        assert 0 < applied_before < n
        pods = kube.job_pods(run_id)
        assert len(pods) == 1
        killed = pods[0]["metadata"]["name"]
        kube.kubectl("delete", "pod", killed, "--wait=false")
        last = wait_run(kube, "vip", run_id, timeout=150)
    assert last["result"] == "Succeeded", last
    c = last["counts"]
    assert c["read"] == c["profiles"] == c["sent"] == n and c.get("rejected", 0) == 0, c
    assert c["created"] + c["updated"] == n and c["updated"] >= applied_before, c
    # The Job ran a second Pod for the same run (the killed one is gone).
    assert [p["metadata"]["name"] for p in kube.job_pods(run_id)] != [killed]
    job = kube.job(run_id)
    assert job is not None and job["status"].get("succeeded") == 1, job
    assert [j["metadata"]["name"] for j in jobs_of(kube, "vip")] == [run_id]
    members = admin.members(list_id)
    assert len(members) == n and admin.contact_count() == n
    assert members == {f"p{i:07d}@example.com" for i in range(n)}


def _operator_pid(operator: Operator) -> int:
    """The operator container's process (the node agent runs Pods as local processes)."""
    names = {p["metadata"]["name"] for p in operator.pods()}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        host = next((e[9:].decode() for e in env if e.startswith(b"HOSTNAME=")), None)
        if host in names and any(e.startswith(b"SGOP_") for e in env):
            return int(entry)
    raise AssertionError(f"no process for operator pods {names}")


def test_operator_crash_mid_upload_adopts_the_run(
    operator: Operator, kube: Kube, emulator: Emulator, admin: AdminClient
) -> None:
    """SIGKILL, not a graceful delete: the container restarts and finds its Job."""
    list_id = setup_export(kube, emulator, admin)
    admin.add_fault("upsert", "delay", seconds=6, count=1)
    run_id = request_run(kube, "vip")
    wait_for(lambda: active_run(kube) == run_id, 30, "the run to be active")
    wait_for(lambda: progress(kube).get("phase") == "Uploading", 30, "the upload phase")
    pid = _operator_pid(operator)
    os.kill(pid, signal.SIGKILL)

    def restarted() -> bool:
        try:
            return _operator_pid(operator) != pid and operator.ready()
        except AssertionError:
            return False

    wait_for(restarted, 60, "the operator container to restart and serve /readyz")
    last = wait_run(kube, "vip", run_id, timeout=90)
    assert_exact(last)
    assert [j["metadata"]["name"] for j in jobs_of(kube, "vip")] == [run_id]
    assert [h["runId"] for h in get(kube, "segmentexports", "vip")["status"]["history"]] == [run_id]
    assert admin.members(list_id) == CSV_MEMBERS
    pods = operator.pods()
    assert pods[0]["status"]["containerStatuses"][0]["restartCount"] >= 1
    again = assert_rerun_converges(kube, admin, list_id)
    assert again["counts"]["sent"] == 0  # the state reached the restarted operator


def test_operator_down_while_the_run_ends(
    operator: Operator, kube: Kube, emulator: Emulator, admin: AdminClient
) -> None:
    """No operator at all while the Job uploads, verifies and reports: the Job retries its
    state and report until the operator is back, and nothing is lost."""
    deployment = f"deployment/{RELEASE}-sendgrid-operator"
    list_id = setup_export(kube, emulator, admin)
    admin.add_fault("upsert", "delay", seconds=3, count=1)
    run_id = request_run(kube, "vip")
    wait_for(lambda: active_run(kube) == run_id, 30, "the run to be active")
    operator.kube.kubectl("scale", deployment, "--replicas=0")
    try:
        wait_for(lambda: not operator.ready(), 30, "the operator to be gone")
        # The Job finishes its work in SendGrid without the operator.
        wait_for(lambda: admin.members(list_id) == CSV_MEMBERS, 60, "the contacts in the list")
    finally:
        operator.kube.kubectl("scale", deployment, "--replicas=1")
        wait_for(operator.ready, 60, "the operator to serve /readyz again")
    last = wait_run(kube, "vip", run_id, timeout=90)
    assert_exact(last)
    again = assert_rerun_converges(kube, admin, list_id)
    assert again["counts"]["sent"] == 0, again
