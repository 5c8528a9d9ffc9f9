"""Small steps the end-to-end tests repeat: apply, request a run, wait for its end."""

from __future__ import annotations

import secrets
from typing import Any

from kube import Kube, wait_for
from sendgrid_operator.controller.jobs import requested_run_id

JSON = dict[str, Any]
RUN_ANNOTATION = "sendgrid-operator.io/run-requested-at"


def apply(kube: Kube, text: str) -> str:
    return kube.kubectl("apply", "-f", "-", stdin=text)


def get(kube: Kube, plural: str, name: str) -> JSON:
    obj: JSON = kube.api.get(kube.custom(plural, name))
    return obj


def condition(obj: JSON, ctype: str = "Ready") -> JSON:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == ctype:
            return dict(cond)
    return {}


def wait_condition(
    kube: Kube, plural: str, name: str, status: str, reason: str | None = None, timeout: float = 60
) -> JSON:
    def check() -> JSON | None:
        obj = get(kube, plural, name)
        cond = condition(obj)
        if cond.get("status") == status and (reason is None or cond.get("reason") == reason):
            return obj
        return None

    return wait_for(check, timeout, f"{plural}/{name} Ready={status} reason={reason}")


def request_run(kube: Kube, name: str) -> str:
    """Annotate the export with a new token; return the run ID it will get."""
    token = secrets.token_hex(6)
    kube.kubectl("annotate", "--overwrite", f"segmentexport/{name}", f"{RUN_ANNOTATION}={token}")
    return requested_run_id(name, token)


def wait_run(kube: Kube, name: str, run_id: str, timeout: float = 90) -> JSON:
    """Wait until the run has ended and been recorded; return status.lastRun."""

    def done() -> JSON | None:
        status = get(kube, "segmentexports", name).get("status") or {}
        last = status.get("lastRun") or {}
        history = status.get("history") or []
        if (
            last.get("runId") == run_id
            and not status.get("active")
            and history
            and history[0]["runId"] == run_id
        ):
            return dict(last)
        return None

    try:
        return wait_for(done, timeout, f"run {run_id} of {name} to finish")
    except AssertionError as exc:
        status = get(kube, "segmentexports", name).get("status")
        raise AssertionError(f"{exc}\nstatus of {name}: {status}") from None


def jobs_of(kube: Kube, name: str) -> list[JSON]:
    items: list[JSON] = kube.api.get(
        kube.path("jobs", api="apis/batch/v1"),
        params={"labelSelector": f"sendgrid-operator.io/export={name}"},
    )["items"]
    return items


def wait_history(kube: Kube, name: str, run_ids: list[str], timeout: float = 90) -> dict[str, JSON]:
    """Wait until every run in ``run_ids`` is recorded in status.history; return them by ID."""

    def done() -> dict[str, JSON] | None:
        status = get(kube, "segmentexports", name).get("status") or {}
        history = {h["runId"]: h for h in status.get("history") or []}
        if status.get("active") or not all(r in history for r in run_ids):
            return None
        return history

    return wait_for(done, timeout, f"runs {run_ids} of {name} to be recorded")
