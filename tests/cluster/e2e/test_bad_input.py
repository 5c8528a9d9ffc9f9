"""Bad input end to end: what a user sees in the export's status when a source is broken or
a referenced object is missing, and that SendGrid is not written to.

(The engine-level corpus of malformed files and SQL errors is tests/engine/test_bad_input.py;
malformed manifests refused at apply time are test_invalid_manifests.py.)
"""

from __future__ import annotations

import pytest

from kube import Kube
from sendgrid_operator.emulator import AdminClient, Emulator

from .conftest import Operator
from .faults import assert_rerun_converges, run, setup_export, writes
from .helpers import apply, condition, jobs_of, request_run, wait_condition, wait_run
from .manifests import CSV, config_map, dump

pytestmark = pytest.mark.cluster

ONE_POD = {"backoffLimit": 0}


@pytest.mark.parametrize(
    ("csv", "reason", "needle"),
    [
        ("email;first_name\na@example.com;A\n", "InvalidMapping", "'email'"),
        ("mail,first_name\na@example.com,A\n", "InvalidMapping", "'email'"),
        ("", "SourceError", "empty"),
        (
            "email,first_name,last_name,city\na@example.com," + "x" * 200_000 + ",L,C\n",
            "SourceError",
            "field larger than field limit",
        ),
    ],
    ids=["wrong-delimiter", "no-email-column", "empty-file", "huge-field"],
)
def test_bad_source_files_are_refused_with_a_reason_and_write_nothing(
    csv: str,
    reason: str,
    needle: str,
    operator: Operator,
    kube: Kube,
    emulator: Emulator,
    admin: AdminClient,
) -> None:
    list_id = setup_export(kube, emulator, admin, csv=csv, job=ONE_POD)
    last = run(kube)
    assert (last["result"], last["reason"]) == ("Refused", reason), last
    assert needle in last["message"], last["message"]
    obj = wait_condition(kube, "segmentexports", "vip", "False", "RunRefused", timeout=10)
    assert condition(obj, "Stalled")["status"] == "True"
    assert writes(admin) == [] and admin.members(list_id) == set()
    # Fixed by the user: the next run converges.
    apply(kube, dump(config_map("profiles", {"vip.csv": CSV})))
    assert_rerun_converges(kube, admin, list_id)


def test_bad_encoding_is_refused(
    operator: Operator, kube: Kube, emulator: Emulator, admin: AdminClient
) -> None:
    """A Latin-1 file read as UTF-8 (the binaryData of a ConfigMap keeps the bytes)."""
    import base64

    raw = "email,first_name\nzoe@example.com,Zoë\n".encode("latin-1")
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "profiles"},
        "binaryData": {"vip.csv": base64.b64encode(raw).decode()},
    }
    list_id = setup_export(kube, emulator, admin, job=ONE_POD)
    kube.kubectl("delete", "configmap", "profiles")
    apply(kube, dump(cm))
    last = run(kube)
    assert (last["result"], last["reason"]) == ("Refused", "SourceError"), last
    assert "utf-8" in last["message"], last["message"]
    assert writes(admin) == [] and admin.members(list_id) == set()


def test_unknown_list_id_fails_and_writes_nothing(
    operator: Operator, kube: Kube, emulator: Emulator, admin: AdminClient
) -> None:
    setup_export(kube, emulator, admin, job=ONE_POD)
    unknown = "11111111-2222-4333-8444-555555555555"
    kube.kubectl(
        "patch",
        "segmentexport/vip",
        "--type=merge",
        "-p",
        f'{{"spec":{{"listIds":["{unknown}"]}}}}',
    )
    last = run(kube)
    assert (last["result"], last["reason"]) == ("Failed", "ListNotFound"), last
    assert unknown in last["message"]
    assert writes(admin) == [] and admin.contact_count() == 0


def test_revoked_key_fails_the_run_before_any_write(
    operator: Operator, kube: Kube, emulator: Emulator, admin: AdminClient
) -> None:
    list_id = setup_export(kube, emulator, admin, job=ONE_POD)
    admin.set_keys({"SG.someone-else": ["marketing.read"]})  # the key is revoked in SendGrid
    last = run(kube)
    assert (last["result"], last["reason"]) == ("Failed", "KeyRejected"), last
    assert writes(admin) == [] and admin.members(list_id) == set()
    # The connection notices too, by its own periodic check or the next Secret change.


def test_a_missing_configmap_or_secret_refuses_the_run_before_any_job(
    operator: Operator, kube: Kube, emulator: Emulator, admin: AdminClient
) -> None:
    """A run's Pod cannot start without its ConfigMap volume or secretKeyRef (a kubelet
    waits until the deadline), so the operator checks them first and refuses the run, with
    no Job and nothing written; once the object exists, the next request runs."""
    list_id = setup_export(kube, emulator, admin)
    kube.kubectl("delete", "configmap", "profiles")
    last = wait_run(kube, "vip", request_run(kube, "vip"), timeout=30)
    assert (last["result"], last["reason"]) == ("Refused", "SourceNotFound"), last
    assert "ConfigMap" in last["message"] and "profiles" in last["message"], last["message"]
    assert jobs_of(kube, "vip") == []
    obj = wait_condition(kube, "segmentexports", "vip", "False", "RunRefused", timeout=10)
    assert condition(obj, "Stalled")["status"] == "True"
    assert writes(admin) == [] and admin.members(list_id) == set()
    apply(kube, dump(config_map("profiles", {"vip.csv": CSV})))
    assert_rerun_converges(kube, admin, list_id)


def test_a_refused_run_is_not_retried_by_the_job_controller(
    operator: Operator, kube: Kube, emulator: Emulator, admin: AdminClient
) -> None:
    """Exit codes 2 (bad input) and 3 (a guard) fail the Job at once (podFailurePolicy):
    the same answer would come on every try."""
    setup_export(
        kube, emulator, admin, csv="mail,first_name\na@example.com,A\n", job={"backoffLimit": 2}
    )
    last = run(kube)
    assert (last["result"], last["reason"]) == ("Refused", "InvalidMapping"), last
    job = jobs_of(kube, "vip")[0]
    assert job["status"].get("failed") == 1, job["status"]
