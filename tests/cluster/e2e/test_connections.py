"""SendGridConnection readiness, with a reason a person understands, and who may use it."""

from __future__ import annotations

import base64
import secrets

import pytest

from kube import Kube, wait_for
from sendgrid_operator.devcluster import Api
from sendgrid_operator.emulator import AdminClient, Emulator

from .conftest import API_KEY, NO_SCOPE_KEY, Operator
from .helpers import apply, condition, get, jobs_of, request_run, wait_condition, wait_run
from .manifests import CSV, CSV_MEMBERS, config_map, connection, dump, export, secret

pytestmark = pytest.mark.cluster


def set_key(kube: Kube, key: str) -> None:
    data = {"apiKey": base64.b64encode(key.encode()).decode()}
    kube.api.patch(kube.path("secrets", "sendgrid-api-key"), {"data": data})


def test_each_problem_has_its_reason_and_the_secret_is_watched(
    operator: Operator, kube: Kube, emulator: Emulator
) -> None:
    apply(kube, dump(connection("sendgrid", emulator.url, consent=False)))
    obj = wait_condition(kube, "sendgridconnections", "sendgrid", "False", "SecretNotFound")
    assert condition(obj, "Stalled")["status"] == "True"
    assert "sendgrid-api-key" in condition(obj)["message"]

    apply(kube, dump(secret("sendgrid-api-key", "SG.revoked-key")))
    wait_condition(kube, "sendgridconnections", "sendgrid", "False", "KeyRejected")
    set_key(kube, NO_SCOPE_KEY)
    obj = wait_condition(kube, "sendgridconnections", "sendgrid", "False", "ScopeMissing")
    assert "marketing.read" in condition(obj)["message"]
    set_key(kube, API_KEY)
    obj = wait_condition(kube, "sendgridconnections", "sendgrid", "False", "ConsentNotGiven")
    assert "personalData" in condition(obj)["message"]
    kube.kubectl(
        "patch",
        "sendgridconnection/sendgrid",
        "--type=merge",
        "-p",
        '{"spec":{"consent":{"personalData":true}}}',
    )
    obj = wait_condition(kube, "sendgridconnections", "sendgrid", "True", "Succeeded")
    assert obj["status"]["scopes"] == ["marketing.read"]
    assert condition(obj, "Stalled")["status"] == "False"
    kube.kubectl("wait", "--for=condition=Ready", "sendgridconnection/sendgrid", "--timeout=10s")
    # The key is nowhere in the object or its events.
    text = kube.kubectl("get", "sendgridconnection/sendgrid", "-o", "yaml") + kube.kubectl(
        "get", "events", "-o", "yaml"
    )
    assert API_KEY not in text and NO_SCOPE_KEY not in text


def test_sendgrid_unreachable(operator: Operator, kube: Kube) -> None:
    apply(
        kube,
        dump(secret("sendgrid-api-key", API_KEY), connection("sendgrid", "http://127.0.0.1:9")),
    )
    obj = wait_condition(kube, "sendgridconnections", "sendgrid", "False", "SendGridUnreachable")
    assert condition(obj, "Stalled")["status"] == "False"  # it retries by itself


def _other_namespace(admin_api: Api, kube: Kube, labels: dict[str, str] | None = None) -> Kube:
    name = f"{kube.namespace[:40]}-b{secrets.token_hex(2)}"
    admin_api.post("/api/v1/namespaces", {"metadata": {"name": name, "labels": labels or {}}})
    wait_for(
        lambda: admin_api.get_or_none(f"/api/v1/namespaces/{name}/serviceaccounts/default"),
        30,
        "default SA",
    )
    return Kube(kube.cluster, admin_api, name)


def test_a_namespace_the_connection_does_not_allow_gets_a_condition_and_no_job(
    operator: Operator, kube: Kube, admin_api: Api, emulator: Emulator, admin: AdminClient
) -> None:
    platform = kube
    marketing = _other_namespace(admin_api, kube, labels={"team": "growth"})
    try:
        list_id = admin.create_list("shared")
        apply(
            platform,
            dump(secret("sendgrid-api-key", API_KEY), connection("sendgrid", emulator.url)),
        )
        wait_condition(platform, "sendgridconnections", "sendgrid", "True")
        apply(
            marketing,
            dump(
                config_map("profiles", {"vip.csv": CSV}),
                export("vip", list_id, connection_namespace=platform.namespace),
            ),
        )
        obj = wait_condition(marketing, "segmentexports", "vip", "False", "NamespaceNotAllowed")
        assert marketing.namespace in condition(obj)["message"]
        assert condition(obj, "Stalled")["status"] == "True"
        request_run(marketing, "vip")
        wait_for(
            lambda: (get(marketing, "segmentexports", "vip").get("status") or {}).get(
                "lastHandledRunRequest"
            ),
            30,
            "the refused request to be handled",
        )
        assert jobs_of(marketing, "vip") == []
        reasons = marketing.kubectl("get", "events", "-o", "jsonpath={.items[*].reason}").split()
        assert "RunRefused" in reasons
        assert admin.members(list_id) == set()

        # The connection's owner allows the namespace by label: the export may now run,
        # with a per-run copy of the key in its own namespace, removed after the run.
        platform.kubectl(
            "patch",
            "sendgridconnection/sendgrid",
            "--type=merge",
            "-p",
            '{"spec":{"allowedNamespaces":{"selector":{"matchLabels":{"team":"growth"}}}}}',
        )
        wait_condition(marketing, "segmentexports", "vip", "True")
        last = wait_run(marketing, "vip", request_run(marketing, "vip"))
        assert last["result"] == "Succeeded", last
        assert admin.members(list_id) == CSV_MEMBERS

        def run_secrets_gone() -> bool:
            items = marketing.api.get(
                marketing.path("secrets"),
                params={"labelSelector": "sendgrid-operator.io/export=vip"},
            )
            return not items["items"]

        wait_for(run_secrets_gone, 30, "the run's copy of the API key to be deleted")
    finally:
        admin_api.delete(
            f"/api/v1/namespaces/{marketing.namespace}", {"propagationPolicy": "Background"}
        )
