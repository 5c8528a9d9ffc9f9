"""A process can act as a ServiceAccount, with exactly the RBAC rights given to it.

The operator's Helm chart grants its ServiceAccount a narrow Role; these tests show the local
control plane enforces such a Role both for a TokenRequest token used directly and for a Pod
run by the node agent under ``serviceAccountName``.
"""

from __future__ import annotations

import json

import pytest

from kube import Kube, job_manifest, terminated, wait_for
from sendgrid_operator.devcluster import Api, ApiError, KubeConfig

pytestmark = pytest.mark.cluster


def grant_configmap_reader(kube: Kube, sa: str) -> None:
    kube.create("serviceaccounts", {"metadata": {"name": sa}})
    rbac = "apis/rbac.authorization.k8s.io/v1"
    role = {
        "metadata": {"name": "configmap-reader"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
    }
    kube.create("roles", role, api=rbac)
    binding = {
        "metadata": {"name": "configmap-reader"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "configmap-reader",
        },
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": kube.namespace}],
    }
    kube.create("rolebindings", binding, api=rbac)


def test_token_has_exactly_the_roles_rights(kube: Kube) -> None:
    grant_configmap_reader(kube, "exporter")
    request = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": 600},
    }
    token = kube.api.post(kube.path("serviceaccounts", "exporter/token"), request)["status"][
        "token"
    ]
    admin = kube.api.config
    config = KubeConfig(
        server=admin.server, ca_pem=admin.ca_pem, token=token, namespace=kube.namespace
    )

    with Api(config) as sa_api:
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        who = sa_api.post("/apis/authentication.k8s.io/v1/selfsubjectreviews", review)
        assert (
            who["status"]["userInfo"]["username"]
            == f"system:serviceaccount:{kube.namespace}:exporter"
        )
        assert sa_api.get(kube.path("configmaps"))["kind"] == "ConfigMapList"
        for forbidden in (kube.path("secrets"), "/api/v1/namespaces/default/configmaps"):
            with pytest.raises(ApiError) as denied:
                sa_api.get(forbidden)
            assert denied.value.status == 403
        with pytest.raises(ApiError) as denied:
            sa_api.post(kube.path("configmaps"), {"metadata": {"name": "x"}})
        assert denied.value.status == 403

    can_i = kube.kubectl(
        "auth",
        "can-i",
        "list",
        "secrets",
        f"--as=system:serviceaccount:{kube.namespace}:exporter",
        check=False,
    )
    assert can_i.strip().startswith("no")


POD_SCRIPT = """
import json
from kubernetes import client, config
from kubernetes.client.rest import ApiException
config.load_kube_config()
v1 = client.CoreV1Api()
ns = config.list_kube_config_contexts()[1]["context"]["namespace"]
result = {"configmaps": len(v1.list_namespaced_config_map(ns).items)}
try:
    v1.list_namespaced_secret(ns)
    result["secrets"] = 200
except ApiException as exc:
    result["secrets"] = exc.status
print(json.dumps(result))
"""


def test_pod_runs_as_its_service_account(kube: Kube) -> None:
    grant_configmap_reader(kube, "exporter")
    job = job_manifest("as-sa", {"command": ["python", "-c", POD_SCRIPT]})
    job["spec"]["template"]["spec"]["serviceAccountName"] = "exporter"
    kube.create_job(job)

    wait_for(lambda: kube.job_condition("as-sa", "Complete"), 60, "job as-sa to complete")
    (pod,) = kube.job_pods("as-sa")
    assert (terminated(pod) or {}).get("exitCode") == 0
    result = json.loads(kube.pod_log(pod["metadata"]["name"]).strip().splitlines()[-1])
    # kube-root-ca.crt is published in every namespace, so the SA sees at least one ConfigMap.
    assert result["configmaps"] >= 1
    assert result["secrets"] == 403
