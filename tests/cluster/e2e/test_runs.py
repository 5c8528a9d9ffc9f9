"""The operator end to end: helm-installed, driven with kubectl, exporting into the emulator."""

from __future__ import annotations

import json

import pytest

from kube import Kube, wait_for
from sendgrid_operator.controller.jobs import requested_run_id
from sendgrid_operator.emulator import AdminClient, Emulator

from .conftest import API_KEY, OPERATOR_NAMESPACE, RELEASE, Operator
from .faults import setup_export
from .helpers import JSON, apply, condition, get, jobs_of, request_run, wait_condition, wait_run
from .manifests import CSV, CSV_MEMBERS, config_map, connection, dump, export, secret

pytestmark = pytest.mark.cluster


def test_operator_runs_with_exactly_the_charts_rights(operator: Operator, kube: Kube) -> None:
    pods = operator.pods()
    assert pods and pods[0]["spec"]["serviceAccountName"] == f"{RELEASE}-sendgrid-operator"
    sa = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{RELEASE}-sendgrid-operator"

    def can(*args: str) -> str:
        out = kube.kubectl("auth", "can-i", f"--as={sa}", *args, check=False)
        return out.strip().splitlines()[0]

    assert (
        can("patch", "segmentexports.sendgrid-operator.io", "--subresource=status", "-A") == "yes"
    )
    assert can("create", "jobs.batch", "-A") == "yes"
    assert can("list", "secrets", "-A") == "no"
    assert can("create", "deployments.apps", "-A") == "no"
    assert can("delete", "segmentexports.sendgrid-operator.io", "-A") == "no"


def test_creating_an_export_does_not_run_it(
    operator: Operator, kube: Kube, emulator: Emulator, admin: AdminClient
) -> None:
    setup_export(kube, emulator, admin)
    obj = wait_condition(kube, "segmentexports", "vip", "True", "WaitingForSchedule")
    assert "run-requested-at" in obj["status"]["conditions"][0]["message"]
    assert jobs_of(kube, "vip") == []


def test_on_demand_run_counts_equal_what_sendgrid_holds(
    operator: Operator, kube: Kube, emulator: Emulator, admin: AdminClient
) -> None:
    list_id = setup_export(kube, emulator, admin)
    run_id = request_run(kube, "vip")
    last = wait_run(kube, "vip", run_id)
    assert last["result"] == "Succeeded", last
    counts = last["counts"]
    assert admin.members(list_id) == CSV_MEMBERS
    assert counts["read"] == 5
    assert counts["invalid"] == 1 and counts["invalidByReason"] == {"invalid_email": 1}
    assert counts["duplicates"] == 1
    assert counts["created"] == len(CSV_MEMBERS) and counts["updated"] == 0
    assert last["invalidSamples"][0]["row"].endswith("vip.csv:4")
    status = get(kube, "segmentexports", "vip")["status"]
    assert status["contactsExported"] == len(admin.members(list_id))
    assert status.get("lastHandledRunRequest"), status
    # kstatus: Ready again, not reconciling, not stalled; kubectl wait agrees.
    kube.kubectl("wait", "--for=condition=Ready", "segmentexport/vip", "--timeout=30s")
    reasons = kube.kubectl(
        "get",
        "events",
        "--field-selector=involvedObject.name=vip",
        "-o",
        "jsonpath={.items[*].reason}",
    ).split()
    assert "RunStarted" in reasons and "RunSucceeded" in reasons
    # The same request is not run twice; a new one runs incrementally and sends nothing.
    second = wait_run(kube, "vip", request_run(kube, "vip"))
    assert second["counts"]["sent"] == 0 and second["counts"]["unchanged"] == len(CSV_MEMBERS)
    assert len(get(kube, "segmentexports", "vip")["status"]["history"]) == 2
    assert 'sendgrid_operator_export_runs_total{name="vip"' in operator.metrics()


def _objects(stream: str) -> list[JSON]:
    """The JSON objects ``kubectl get -o json --watch`` printed one after another."""
    decoder = json.JSONDecoder()
    found: list[JSON] = []
    at = 0
    while True:
        while at < len(stream) and stream[at].isspace():
            at += 1
        if at >= len(stream):
            return found
        obj, at = decoder.raw_decode(stream, at)
        found.append(obj)


def test_a_run_end_is_written_with_its_conditions_in_one_status_update(
    operator: Operator, kube: Kube, emulator: Emulator, admin: AdminClient
) -> None:
    """A watcher (kubectl, Argo CD, Flux) never sees a run recorded as over while the
    conditions still say it is in progress, nor the reverse."""
    setup_export(kube, emulator, admin)
    watch = kube.kubectl_watch("get", "segmentexport", "vip", "--watch", "--output=json")
    try:
        run_id = request_run(kube, "vip")
        wait_run(kube, "vip", run_id)
        wait_condition(kube, "segmentexports", "vip", "True")
    finally:
        watch.terminate()
        out, _ = watch.communicate(timeout=30)
    seen = _objects(out)
    in_progress = 0
    for obj in seen:
        status = obj.get("status") or {}
        ended = any(h.get("runId") == run_id for h in status.get("history") or [])
        ready = condition(obj)
        if status.get("active"):
            in_progress += 1
            assert ready.get("reason") == "Progressing", (ready, status.get("active"))
            assert not ended
        elif ended:
            assert ready.get("status") == "True", (ready, status.get("lastRun", {}).get("runId"))
    assert in_progress >= 1, [o.get("status") for o in seen]
    assert any(
        any(h.get("runId") == run_id for h in (o.get("status") or {}).get("history") or [])
        for o in seen
    )


def test_scheduled_runs_and_suspend(
    operator: Operator, kube: Kube, emulator: Emulator, admin: AdminClient
) -> None:
    setup_export(kube, emulator, admin, schedule="* * * * *")
    obj = wait_for(
        lambda: (get(kube, "segmentexports", "vip").get("status") or {}).get("nextScheduleTime"),
        30,
        "nextScheduleTime",
    )
    assert obj.endswith(":00Z")

    def scheduled_run() -> dict[str, object] | None:
        status = get(kube, "segmentexports", "vip").get("status") or {}
        last = status.get("lastRun") or {}
        return last if last.get("trigger") == "Schedule" and not status.get("active") else None

    last = wait_for(scheduled_run, 80, "a scheduled run")
    assert last["result"] == "Succeeded"
    assert get(kube, "segmentexports", "vip")["status"]["lastScheduleTime"]
    kube.kubectl("patch", "segmentexport/vip", "--type=merge", "-p", '{"spec":{"suspend":true}}')
    suspended = wait_condition(kube, "segmentexports", "vip", "True", "Suspended")
    assert not suspended["status"].get("nextScheduleTime")


def test_deleting_an_export_removes_its_jobs_and_state(
    operator: Operator, kube: Kube, emulator: Emulator, admin: AdminClient
) -> None:
    setup_export(kube, emulator, admin)
    wait_run(kube, "vip", request_run(kube, "vip"))
    assert jobs_of(kube, "vip")
    kube.kubectl("delete", "segmentexport/vip", "--wait=true")
    wait_for(lambda: not jobs_of(kube, "vip"), 60, "the export's Jobs to be garbage-collected")

    def state_gone() -> bool:
        cms = kube.api.get(
            kube.path("configmaps"), params={"labelSelector": "sendgrid-operator.io/export=vip"}
        )
        return not cms["items"]

    wait_for(state_gone, 60, "the export's state ConfigMaps to be garbage-collected")


def test_a_request_applied_with_its_connection_waits_for_the_check(
    operator: Operator, kube: Kube, emulator: Emulator, admin: AdminClient
) -> None:
    """GitOps applies everything at once: the request must not be refused because the
    connection had not been checked yet."""
    list_id = admin.create_list("vip")
    requested = export("vip", list_id)
    requested["metadata"]["annotations"] = {"sendgrid-operator.io/run-requested-at": "first"}
    apply(
        kube,
        dump(
            secret("sendgrid-api-key", API_KEY),
            connection("sendgrid", emulator.url),
            config_map("profiles", {"vip.csv": CSV}),
            requested,
        ),
    )
    last = wait_run(kube, "vip", requested_run_id("vip", "first"))
    assert last["result"] == "Succeeded", last
    assert admin.members(list_id) == CSV_MEMBERS
    events = kube.kubectl("get", "events", "-o", "jsonpath={.items[*].reason}").split()
    assert "RunRefused" not in events
