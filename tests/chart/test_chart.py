"""The Helm chart: lint, render, security defaults, RBAC as documented, schema, CRD copies."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "sendgrid-operator"
SECURITY_DOC = ROOT / "docs" / "security.md"

#: The ClusterRole's rules as the brief and docs/security.md list them: (group, resource) -> verbs.
EXPECTED_RULES: dict[tuple[str, str], frozenset[str]] = {
    ("sendgrid-operator.io", "sendgridconnections"): frozenset({"get", "list", "watch"}),
    ("sendgrid-operator.io", "segmentexports"): frozenset({"get", "list", "watch"}),
    ("sendgrid-operator.io", "sendgridconnections/status"): frozenset({"patch"}),
    ("sendgrid-operator.io", "segmentexports/status"): frozenset({"patch"}),
    ("", "secrets"): frozenset({"get", "create", "delete"}),
    ("", "configmaps"): frozenset({"list", "create", "update", "delete"}),
    ("", "namespaces"): frozenset({"get", "list", "watch"}),
    ("", "pods"): frozenset({"list"}),
    ("", "events"): frozenset({"create"}),
    ("batch", "jobs"): frozenset({"get", "list", "watch", "create", "delete"}),
}
PEERING_RULE: dict[tuple[str, str], frozenset[str]] = {
    ("kopf.dev", "clusterkopfpeerings"): frozenset({"get", "list", "watch", "patch"}),
}


def run_helm(helm: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), *args], capture_output=True, text=True, timeout=120, check=check
    )


def render(helm: Path, *sets: str) -> list[dict[str, Any]]:
    args = ["template", "sgop", str(CHART), "--namespace", "ops"]
    for s in sets:
        args += ["--set", s]
    out = run_helm(helm, *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def only(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def kinds(docs: list[dict[str, Any]]) -> set[str]:
    return {d["kind"] for d in docs}


def rules_of(docs: list[dict[str, Any]]) -> dict[tuple[str, str], frozenset[str]]:
    role = only(docs, "ClusterRole")
    rules: dict[tuple[str, str], frozenset[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                key = (group, resource)
                assert key not in rules, f"{key} granted twice"
                rules[key] = frozenset(rule["verbs"])
    return rules


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_helm_lint_is_clean(helm: Path) -> None:
    result = run_helm(helm, "lint", "--strict", str(CHART), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


def test_defaults_render_one_operator(helm: Path) -> None:
    docs = render(helm)
    assert kinds(docs) == {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Service",
        "Deployment",
    }
    deployment = only(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["sendgrid-operator", "operator"]
    assert container["image"] == "sendgrid-operator:0.1.0"
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["resources"] == {
        "requests": {"cpu": "50m", "memory": "128Mi"},
        "limits": {"cpu": "500m", "memory": "256Mi"},
    }
    assert pod["serviceAccountName"] == "sgop-sendgrid-operator"

    env = env_of(deployment)
    assert env["SGOP_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["SGOP_JOB_IMAGE"] == container["image"]
    assert env["SGOP_JOB_IMAGE_PULL_POLICY"] == "IfNotPresent"
    assert env["SGOP_REPORT_URL"] == "http://sgop-sendgrid-operator.ops.svc:8080"
    assert env["SGOP_HTTP_PORT"] == "8080"
    assert env["SGOP_LOG_FORMAT"] == "text"
    assert env["SGOP_LOG_LEVEL"] == "INFO"
    assert env["SGOP_WATCH_NAMESPACES"] == ""
    assert "SGOP_PEERING" not in env

    service = only(docs, "Service")
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    binding = only(docs, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "sgop-sendgrid-operator", "namespace": "ops"}
    ]
    assert binding["roleRef"]["name"] == only(docs, "ClusterRole")["metadata"]["name"]


def test_every_object_has_the_standard_labels(helm: Path) -> None:
    docs = render(
        helm, "replicas=2", "serviceMonitor.enabled=true", "podDisruptionBudget.enabled=true"
    )
    for doc in docs:
        labels = doc["metadata"]["labels"]
        assert labels["helm.sh/chart"] == "sendgrid-operator-0.1.0", doc["kind"]
        assert labels["app.kubernetes.io/name"] == "sendgrid-operator", doc["kind"]
        assert labels["app.kubernetes.io/instance"] == "sgop", doc["kind"]
        assert labels["app.kubernetes.io/version"] == "0.1.0", doc["kind"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm", doc["kind"]


def test_pod_has_the_restricted_security_context(helm: Path) -> None:
    pod = only(render(helm), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    (tmp,) = [v for v in pod["volumes"] if v["name"] == "tmp"]
    assert "emptyDir" in tmp


def test_replicas_serviceMonitor_and_pdb(helm: Path) -> None:
    docs = render(
        helm,
        "replicas=2",
        "serviceMonitor.enabled=true",
        "serviceMonitor.labels.release=kps",
        "podDisruptionBudget.enabled=true",
        "watchNamespaces={marketing,platform}",
    )
    deployment = only(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    env = env_of(deployment)
    assert env["SGOP_PEERING"] == "sgop-sendgrid-operator"
    assert env["SGOP_WATCH_NAMESPACES"] == "marketing,platform"

    peering = only(docs, "ClusterKopfPeering")
    assert peering["apiVersion"] == "kopf.dev/v1"
    assert peering["metadata"]["name"] == env["SGOP_PEERING"]

    monitor = only(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert monitor["spec"]["endpoints"] == [
        {"port": "http", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    ]
    assert (
        monitor["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    )

    pdb = only(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in pdb["spec"]
    pdb = only(
        render(helm, "podDisruptionBudget.enabled=true", "podDisruptionBudget.minAvailable=1"),
        "PodDisruptionBudget",
    )
    assert pdb["spec"]["minAvailable"] == 1
    assert "maxUnavailable" not in pdb["spec"]


def test_peering_can_be_forced_on_with_one_replica(helm: Path) -> None:
    docs = render(helm, "peering.enabled=true")
    assert env_of(only(docs, "Deployment"))["SGOP_PEERING"] == "sgop-sendgrid-operator"
    assert "ClusterKopfPeering" in kinds(docs)


def test_values_are_wired(helm: Path) -> None:
    docs = render(
        helm,
        "image.repository=registry.example/team/sgop",
        "image.tag=1.2.3",
        "image.pullPolicy=Always",
        "operator.logFormat=json",
        "operator.logLevel=DEBUG",
        "service.port=9090",
        "extraEnv[0].name=SGOP_CONNECTION_POLL_SECONDS",
        "extraEnv[0].value=30",
        "serviceAccount.create=false",
        "serviceAccount.name=custom",
        "rbac.create=false",
        "priorityClassName=high",
        "nodeSelector.disk=ssd",
        "podLabels.team=crm",
        "podAnnotations.note=x",
        "imagePullSecrets[0].name=regcred",
        "operator.reportURL=http://10.0.0.7:8080",
    )
    assert "ClusterRole" not in kinds(docs) and "ServiceAccount" not in kinds(docs)
    deployment = only(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = env_of(deployment)
    assert container["image"] == env["SGOP_JOB_IMAGE"] == "registry.example/team/sgop:1.2.3"
    assert container["imagePullPolicy"] == env["SGOP_JOB_IMAGE_PULL_POLICY"] == "Always"
    assert env["SGOP_LOG_FORMAT"] == "json" and env["SGOP_LOG_LEVEL"] == "DEBUG"
    assert env["SGOP_REPORT_URL"] == "http://10.0.0.7:8080"
    assert env["SGOP_CONNECTION_POLL_SECONDS"] == "30"
    assert pod["serviceAccountName"] == "custom"
    assert pod["priorityClassName"] == "high"
    assert pod["nodeSelector"] == {"disk": "ssd"}
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    meta = deployment["spec"]["template"]["metadata"]
    assert meta["labels"]["team"] == "crm" and meta["annotations"] == {"note": "x"}


def test_operator_settings_accept_the_rendered_env(helm: Path) -> None:
    from sendgrid_operator.controller.settings import Settings

    env = env_of(only(render(helm, "replicas=2", "watchNamespaces={a,b}"), "Deployment"))
    plain = {k: v for k, v in env.items() if isinstance(v, str)}
    settings = Settings.from_env(plain)
    assert settings.watch_namespaces == ("a", "b")
    assert settings.http_port == 8080
    assert settings.peering == "sgop-sendgrid-operator"
    assert settings.report_url == "http://sgop-sendgrid-operator.ops.svc:8080"


def _documented_rules() -> dict[tuple[str, str], frozenset[str]]:
    """The table in docs/security.md: | API group | resources | verbs | why |."""
    rules: dict[tuple[str, str], frozenset[str]] = {}
    row = re.compile(r"^\|\s*`([^`]*)`\s*\|\s*([^|]+?)\s*\|\s*([^|]+?)\s*\|")
    for line in SECURITY_DOC.read_text().splitlines():
        match = row.match(line)
        if not match:
            continue
        group = match.group(1).strip('"')
        resources = re.findall(r"`([^`]+)`", match.group(2))
        verbs = frozenset(re.findall(r"`([^`]+)`", match.group(3)))
        for resource in resources:
            rules[(group, resource)] = verbs
    return rules


def test_cluster_role_is_exactly_the_documented_list(helm: Path) -> None:
    documented = _documented_rules()
    assert documented == EXPECTED_RULES | PEERING_RULE
    assert rules_of(render(helm)) == EXPECTED_RULES
    assert rules_of(render(helm, "replicas=2")) == EXPECTED_RULES | PEERING_RULE


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("replicas=two", "replicas"),
        ("operator.logLevel=TRACE", "logLevel"),
        ("operator.logFormat=xml", "logFormat"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("replicaCount=2", "replicaCount"),
        ("watchNamespaces[0]=Not_A_Namespace", "watchNamespaces"),
        ("operator.reportURL=ftp://x", "reportURL"),
    ],
)
def test_schema_rejects_bad_values(helm: Path, value: str, complaint: str) -> None:
    result = run_helm(helm, "template", "sgop", str(CHART), "--set", value, check=False)
    assert result.returncode != 0
    assert complaint in result.stderr, result.stderr


def test_schema_and_values_name_the_same_keys() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["additionalProperties"] is False
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) == set(schema["properties"]) - {"global"}


def test_every_value_is_commented() -> None:
    """Each leaf key of values.yaml has a comment on the line(s) just above it, or its
    parent has one (for short groups such as resources.requests)."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    key = re.compile(r"^(\s*)([A-Za-z][A-Za-z0-9]*):(.*)$")
    uncommented = []
    for i, line in enumerate(lines):
        match = key.match(line)
        if not match or match.group(1):
            continue
        # a top-level key: it, or each of its direct children, must carry a comment
        previous = lines[i - 1].strip() if i else ""
        if previous.startswith("#"):
            continue
        children = []
        for child in lines[i + 1 :]:
            if child and not child.startswith(" "):
                break
            children.append(child)
        child_keys = [j for j, c in enumerate(children) if re.match(r"^  [A-Za-z]", c)]
        if not child_keys or any(not children[j - 1].strip().startswith("#") for j in child_keys):
            uncommented.append(match.group(2))
    assert uncommented == []


def test_chart_crds_are_byte_identical_to_crds() -> None:
    repo_crds = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    chart_crds = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert {"segmentexports.yaml", "sendgridconnections.yaml", "kopf-peering.yaml"} <= set(
        repo_crds
    )
    assert chart_crds == repo_crds


def test_generated_crds_are_up_to_date() -> None:
    venv_python = ROOT / ".venv" / "bin" / "python"
    python = str(venv_python) if venv_python.exists() else sys.executable
    result = subprocess.run(
        [python, str(ROOT / "hack" / "gen_crds.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_kopf_peering_crd_is_cluster_scoped_and_open() -> None:
    crd = yaml.safe_load((ROOT / "crds" / "kopf-peering.yaml").read_text())
    assert crd["metadata"]["name"] == "clusterkopfpeerings.kopf.dev"
    assert crd["spec"]["scope"] == "Cluster"
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1"
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert status["x-kubernetes-preserve-unknown-fields"] is True
