"""The Job of one export run: its name, its Pod, and what it may reach.

Run names are deterministic (from the schedule slot, or from the on-demand token), so an
operator that restarts mid-run finds the Job it started instead of starting a second one:
creating the same run twice answers AlreadyExists. The Pod gets no Kubernetes API token;
it reads its source, talks to SendGrid and reports to the operator, nothing else.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sendgrid_operator.api.common import GROUP
from sendgrid_operator.api.export import SegmentExportSpec
from sendgrid_operator.api.report import RunTrigger
from sendgrid_operator.controller.settings import Settings
from sendgrid_operator.exitcodes import EXIT_BAD_INPUT, EXIT_REFUSED

JSON = dict[str, Any]

MANAGED_BY = "sendgrid-operator"
LABEL_EXPORT = f"{GROUP}/export"
LABEL_RUN = f"{GROUP}/run"
ANNOTATION_TRIGGER = f"{GROUP}/trigger"
ANNOTATION_SLOT = f"{GROUP}/scheduled-time"
ANNOTATION_REQUEST = f"{GROUP}/run-request"
ANNOTATION_TOKEN_HASH = f"{GROUP}/report-token-sha256"

SECRET_KEY_API_KEY = "api-key"
SECRET_KEY_REPORT_TOKEN = "report-token"
STATE_DIR = "/var/run/sendgrid-operator/state"
CONFIGMAP_DIR = "/var/run/sendgrid-operator/configmaps"
RUNTIME_UID = 65532
MAX_NAME = 63


def base_labels(export_name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "sendgrid-operator",
        "app.kubernetes.io/component": "export-run",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        LABEL_EXPORT: export_name[:MAX_NAME],
    }


def scheduled_run_id(export_name: str, slot: datetime) -> str:
    """Like CronJob: the export's name and the slot in minutes since the epoch."""
    return f"{export_name[:50]}-{int(slot.timestamp()) // 60}"


def requested_run_id(export_name: str, token: str) -> str:
    digest = hashlib.sha256(token.encode()).hexdigest()[:8]
    return f"{export_name[:50]}-r{digest}"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def owner_reference(obj: JSON, *, controller: bool = True) -> JSON:
    meta = obj["metadata"]
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }


@dataclass(frozen=True)
class RunPlan:
    """Everything the Job builder needs beyond the export itself."""

    run_id: str
    trigger: RunTrigger
    base_url: str
    api_key_secret: tuple[str, str]
    """(Secret name, key) in the export's namespace holding the API key."""
    report_token_hash: str
    state_shards: tuple[str, ...] = ()
    state_sha256: str | None = None
    scheduled_time: str | None = None
    request_token: str | None = None


def _secret_env(name: str, secret: str, key: str) -> JSON:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def secret_env_name(index: int) -> str:
    return f"SGOP_SECRET_{index}"


def secret_refs(spec: SegmentExportSpec) -> dict[str, str]:
    """'secret/key' -> environment variable, for every Secret value the sources need."""
    refs: dict[str, str] = {}
    for segment in spec.segments:
        if segment.source.sql is not None:
            ref = segment.source.sql.database_url_secret_ref
            refs.setdefault(f"{ref.name}/{ref.key}", secret_env_name(len(refs)))
    return refs


def config_map_keys(spec: SegmentExportSpec) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for segment in spec.segments:
        file = segment.source.file
        if file is not None and file.config_map is not None:
            out.setdefault(file.config_map.name, set()).add(file.config_map.key)
    return out


def build_job(export: JSON, spec: SegmentExportSpec, plan: RunPlan, settings: Settings) -> JSON:
    meta = export["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    labels = {**base_labels(name), LABEL_RUN: plan.run_id}
    annotations = {
        ANNOTATION_TRIGGER: str(plan.trigger),
        ANNOTATION_TOKEN_HASH: plan.report_token_hash,
    }
    if plan.scheduled_time:
        annotations[ANNOTATION_SLOT] = plan.scheduled_time
    if plan.request_token is not None:
        annotations[ANNOTATION_REQUEST] = plan.request_token[:256]

    refs = secret_refs(spec)
    run_spec = {
        "spec": spec.to_wire(),
        "baseURL": plan.base_url,
        "trigger": str(plan.trigger),
        "secretEnv": refs,
    }
    env: list[JSON] = [
        {"name": "SGOP_RUN_ID", "value": plan.run_id},
        {"name": "SGOP_EXPORT_NAMESPACE", "value": namespace},
        {"name": "SGOP_EXPORT_NAME", "value": name},
        {"name": "SGOP_REPORT_URL", "value": settings.report_url},
        {"name": "SGOP_RUN_SPEC", "value": json.dumps(run_spec, separators=(",", ":"))},
        {"name": "SGOP_STATE_DIR", "value": STATE_DIR},
        {"name": "SGOP_CONFIGMAP_DIR", "value": CONFIGMAP_DIR},
        {"name": "SGOP_STATE_SHA256", "value": plan.state_sha256 or ""},
        {"name": "HOME", "value": "/tmp"},
        _secret_env("SGOP_API_KEY", *plan.api_key_secret),
        _secret_env("SGOP_REPORT_TOKEN", plan.run_id, SECRET_KEY_REPORT_TOKEN),
    ]
    for ref, var in refs.items():
        secret, key = ref.split("/", 1)
        env.append(_secret_env(var, secret, key))

    volumes: list[JSON] = [{"name": "tmp", "emptyDir": {}}]
    mounts: list[JSON] = [{"name": "tmp", "mountPath": "/tmp"}]
    cms = config_map_keys(spec)
    if cms:
        sources = [
            {
                "configMap": {
                    "name": cm,
                    "items": [{"key": k, "path": f"{cm}/{k}"} for k in sorted(keys)],
                }
            }
            for cm, keys in sorted(cms.items())
        ]
        volumes.append({"name": "sources", "projected": {"sources": sources}})
        mounts.append({"name": "sources", "mountPath": CONFIGMAP_DIR, "readOnly": True})
    if plan.state_shards:
        state_sources: list[JSON] = [
            {
                "configMap": {
                    "name": shard,
                    "optional": True,
                    "items": [{"key": "state", "path": str(i)}],
                }
            }
            for i, shard in enumerate(plan.state_shards)
        ]
        volumes.append({"name": "state", "projected": {"sources": state_sources}})
        mounts.append({"name": "state", "mountPath": STATE_DIR, "readOnly": True})
    job_settings = spec.job
    volumes += job_settings.volumes or []
    mounts += job_settings.volume_mounts or []

    resources = (
        job_settings.resources.to_wire()
        if job_settings.resources
        else {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}
    )
    pod_spec: JSON = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUNTIME_UID,
            "runAsGroup": RUNTIME_UID,
            "fsGroup": RUNTIME_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumes": volumes,
        "containers": [
            {
                "name": "export",
                "image": settings.job_image,
                "imagePullPolicy": settings.job_image_pull_policy,
                "command": list(settings.job_command),
                "env": env,
                "volumeMounts": mounts,
                "resources": resources,
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
            }
        ],
    }
    if job_settings.service_account_name:
        pod_spec["serviceAccountName"] = job_settings.service_account_name
    if job_settings.node_selector:
        pod_spec["nodeSelector"] = job_settings.node_selector
    if job_settings.tolerations:
        pod_spec["tolerations"] = [t.to_wire() for t in job_settings.tolerations]

    job_spec: JSON = {
        "backoffLimit": job_settings.backoff_limit,
        # Bad input (2) and a safety guard (3) give the same answer on every try: fail the
        # Job at once. SendGrid failures (4) and crashes (1) may be transient: retried.
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": "export",
                        "operator": "In",
                        "values": [EXIT_BAD_INPUT, EXIT_REFUSED],
                    },
                }
            ]
        },
        "activeDeadlineSeconds": job_settings.active_deadline_seconds,
        "template": {"metadata": {"labels": labels}, "spec": pod_spec},
    }
    if job_settings.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = job_settings.ttl_seconds_after_finished
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": plan.run_id,
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner_reference(export)],
        },
        "spec": job_spec,
    }


def build_run_secret(export: JSON, plan: RunPlan, token: str, api_key: str | None) -> JSON:
    """The per-run Secret: the report token, and the API key when it had to be copied."""
    data = {SECRET_KEY_REPORT_TOKEN: token}
    if api_key is not None:
        data[SECRET_KEY_API_KEY] = api_key
    meta = export["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": plan.run_id,
            "namespace": meta["namespace"],
            "labels": {**base_labels(meta["name"]), LABEL_RUN: plan.run_id},
            "ownerReferences": [owner_reference(export, controller=False)],
        },
        "stringData": data,
    }


def job_finished(job: JSON) -> str | None:
    """'Complete' or 'Failed' once the Job controller has decided, else None."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return str(cond["type"])
    return None
