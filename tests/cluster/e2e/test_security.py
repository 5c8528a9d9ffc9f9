"""Security end to end: the API key appears nowhere it should not; a namespace the
connection does not allow, or a connection without consent, makes no write to SendGrid;
the operator's ServiceAccount lacks every right docs/security.md says it lacks."""

from __future__ import annotations

import base64
import json
import secrets

import pytest

from kube import Kube, wait_for
from sendgrid_operator.devcluster import Api
from sendgrid_operator.emulator import AdminClient, Emulator

from .conftest import API_KEY, OPERATOR_NAMESPACE, RELEASE, Operator
from .faults import run, setup_export, writes
from .helpers import apply, get, jobs_of, request_run, wait_condition
from .manifests import CSV, CSV_MEMBERS, config_map, connection, dump, export, secret
from .test_connections import _other_namespace

pytestmark = pytest.mark.cluster


def _handled(kube: Kube, name: str = "vip") -> object:
    return (get(kube, "segmentexports", name).get("status") or {}).get("lastHandledRunRequest")


def test_the_api_key_appears_nowhere_after_full_runs(
    operator: Operator, kube: Kube, admin_api: Api, emulator: Emulator, admin: AdminClient
) -> None:
    """Runs in the connection's namespace and from another one (the per-run key copy), a
    mirror run, and a failed run with SendGrid errors; then every log, event, status, Job
    spec, Pod spec and the metrics are searched for the key and its base64 form."""
    db_password = "db-pw-" + secrets.token_hex(4)
    list_id = setup_export(kube, emulator, admin, mode="mirror", maxRemovalPercent=100)
    assert run(kube)["result"] == "Succeeded"
    apply(kube, dump(config_map("profiles", {"vip.csv": CSV.replace("alan", "alan2")})))
    assert run(kube)["counts"]["removed"] == 1
    admin.add_fault("upsert", "500", count="*")
    apply(kube, dump(config_map("profiles", {"vip.csv": CSV})))
    kube.kubectl(
        "patch", "segmentexport/vip", "--type=merge", "-p", '{"spec":{"job":{"backoffLimit":0}}}'
    )
    assert run(kube, timeout=120)["reason"] == "SendGridUnreachable"
    admin.clear_faults()

    other = _other_namespace(admin_api, kube)
    try:
        kube.kubectl(
            "patch",
            "sendgridconnection/sendgrid",
            "--type=merge",
            "-p",
            json.dumps({"spec": {"allowedNamespaces": {"names": [other.namespace]}}}),
        )
        sql_export = export("crm", list_id, connection_namespace=kube.namespace)
        sql_export["spec"]["segments"] = [
            {
                "name": "crm",
                "source": {
                    "sql": {
                        "query": "SELECT email FROM people",
                        "databaseURLSecretRef": {"name": "crm-db", "key": "url"},
                    }
                },
            }
        ]
        sql_export["spec"]["fieldMapping"] = {"email": "email"}
        sql_export["spec"]["job"] = {"backoffLimit": 0}
        apply(
            other,
            dump(
                config_map("profiles", {"vip.csv": CSV}),
                export("vip", list_id, connection_namespace=kube.namespace),
                secret("crm-db", f"postgresql://app:{db_password}@127.0.0.1:9/crm", field="url"),
                sql_export,
            ),
        )
        wait_condition(other, "segmentexports", "vip", "True")
        assert run(other)["result"] == "Succeeded"
        assert run(other, "crm")["reason"] == "SourceError"  # unreachable database

        needles = {
            API_KEY: "the API key",
            base64.b64encode(API_KEY.encode()).decode(): "the API key in base64",
            db_password: "the database password",
        }
        places: dict[str, str] = {}
        for name, path in kube.cluster.logs().items():
            if name.startswith("pod "):  # the operator's and every export Job's output
                places[f"log {name}"] = path.read_text(errors="replace")
        places["operator metrics"] = operator.metrics()
        for ns in (kube, other, operator.kube):
            for what in (
                "events",
                "segmentexports",
                "sendgridconnections",
                "jobs",
                "pods",
                "configmaps",
            ):
                places[f"{ns.namespace} {what}"] = ns.kubectl("get", what, "-o", "json")
        assert sum(1 for k in places if k.startswith("log pod")) >= 5
        leaks = [
            f"{label} in {place}"
            for place, text in places.items()
            for needle, label in needles.items()
            if needle in text
        ]
        assert leaks == []
        # The key reaches Jobs only by reference: a secretKeyRef, never a value.
        for job in jobs_of(other, "vip") + jobs_of(kube, "vip"):
            env = job["spec"]["template"]["spec"]["containers"][0]["env"]
            key_env = next(e for e in env if e["name"] == "SGOP_API_KEY")
            assert set(key_env) == {"name", "valueFrom"}, key_env
            assert job["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    finally:
        admin_api.delete(
            f"/api/v1/namespaces/{other.namespace}", {"propagationPolicy": "Background"}
        )


def test_a_namespace_the_connection_does_not_allow_makes_no_request_to_sendgrid(
    operator: Operator, kube: Kube, admin_api: Api, emulator: Emulator, admin: AdminClient
) -> None:
    marketing = _other_namespace(admin_api, kube)
    try:
        list_id = admin.create_list("shared")
        apply(kube, dump(secret("sendgrid-api-key", API_KEY), connection("sendgrid", emulator.url)))
        wait_condition(kube, "sendgridconnections", "sendgrid", "True")
        admin.clear_request_log()
        apply(
            marketing,
            dump(
                config_map("profiles", {"vip.csv": CSV}),
                export("vip", list_id, connection_namespace=kube.namespace, schedule="* * * * *"),
            ),
        )
        wait_condition(marketing, "segmentexports", "vip", "False", "NamespaceNotAllowed")
        request_run(marketing, "vip")
        wait_for(lambda: _handled(marketing), 30, "the refused request to be handled")
        assert jobs_of(marketing, "vip") == []
        # Only the connection's own key check reaches SendGrid; no list read, no write.
        endpoints = {r.endpoint for r in admin.request_log()}
        assert endpoints <= {"scopes"}, endpoints
        assert writes(admin) == [] and admin.members(list_id) == set()
    finally:
        admin_api.delete(
            f"/api/v1/namespaces/{marketing.namespace}", {"propagationPolicy": "Background"}
        )


def test_without_consent_nothing_is_sent(
    operator: Operator, kube: Kube, emulator: Emulator, admin: AdminClient
) -> None:
    list_id = admin.create_list("consent")
    admin.clear_request_log()
    apply(
        kube,
        dump(
            secret("sendgrid-api-key", API_KEY),
            connection("sendgrid", emulator.url, consent=False),
            config_map("profiles", {"vip.csv": CSV}),
            export("vip", list_id, schedule="* * * * *"),
        ),
    )
    wait_condition(kube, "sendgridconnections", "sendgrid", "False", "ConsentNotGiven")
    wait_condition(kube, "segmentexports", "vip", "False", "ConsentNotGiven")
    request_run(kube, "vip")
    wait_for(lambda: _handled(kube), 30, "the refused request to be handled")
    assert jobs_of(kube, "vip") == []
    endpoints = {r.endpoint for r in admin.request_log()}
    assert endpoints <= {"scopes"}, endpoints  # the key check only: no contact data
    assert writes(admin) == [] and admin.members(list_id) == set()
    # Consent given: the export may now run.
    kube.kubectl(
        "patch",
        "sendgridconnection/sendgrid",
        "--type=merge",
        "-p",
        '{"spec":{"consent":{"personalData":true}}}',
    )
    wait_condition(kube, "segmentexports", "vip", "True")
    assert run(kube)["result"] == "Succeeded"
    assert admin.members(list_id) == CSV_MEMBERS


SA = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{RELEASE}-sendgrid-operator"
NOT_GRANTED = [
    ("list", "secrets"),
    ("watch", "secrets"),
    ("update", "secrets"),
    ("patch", "secrets"),
    ("create", "segmentexports.sendgrid-operator.io"),
    ("update", "segmentexports.sendgrid-operator.io"),
    ("patch", "sendgridconnections.sendgrid-operator.io"),
    ("create", "deployments.apps"),
    ("create", "services"),
    ("create", "roles.rbac.authorization.k8s.io"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("get", "nodes"),
    ("create", "pods"),
    ("create", "pods/exec"),
    ("get", "pods/log"),
    ("update", "jobs.batch"),
    ("patch", "configmaps"),
]


def test_the_operator_lacks_every_right_the_docs_say_it_lacks(
    operator: Operator, kube: Kube
) -> None:
    denied = []
    for verb, resource in NOT_GRANTED:
        out = kube.kubectl("auth", "can-i", f"--as={SA}", verb, resource, "-A", check=False)
        if out.strip().splitlines()[0] != "no":
            denied.append(f"{verb} {resource}: {out.strip()}")
    assert denied == []
