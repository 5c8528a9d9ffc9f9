"""Prometheus metrics of the operator, on a registry of its own (never the global one).

Names follow controller-runtime (``controller_runtime_reconcile_*``) so existing dashboards
and alerts apply, and the product's own series are prefixed ``sendgrid_operator_``.

Label cardinality is bounded: ``controller`` has two values; ``result``, ``outcome`` and
``operation`` are fixed sets; ``endpoint`` is one of the SendGrid operations the engine
uses (unknown ones are folded into ``other``); ``code`` is an HTTP status class or one of
a fixed set of codes; ``namespace``/``name`` appear only on per-object series, which grow
with the number of SendGridConnections and SegmentExports (one series each per fixed label
value) and are removed when the object is deleted.
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

CONTROLLERS = ("sendgridconnection", "segmentexport")
RUN_RESULTS = ("Succeeded", "Failed", "Refused")
PROFILE_OUTCOMES = ("read", "invalid", "duplicate", "unchanged", "sent")
CONTACT_OPERATIONS = ("created", "updated", "removed", "rejected")
ENDPOINTS = (
    "scopes",
    "field_definitions",
    "list_get",
    "list_count",
    "upsert",
    "import_status",
    "errors_download",
    "search_emails",
    "list_remove",
    "export",
    "export_status",
    "export_download",
    "other",
)
KNOWN_CODES = frozenset({"200", "201", "202", "204", "400", "401", "403", "404", "413", "429"})


def code_label(code: str) -> str:
    """Fold an HTTP status (or an error word) into the bounded set used as a label."""
    if code in KNOWN_CODES:
        return code
    if code.isdigit() and len(code) == 3:
        return f"{code[0]}xx"
    return "error"


def endpoint_label(endpoint: str) -> str:
    return endpoint if endpoint in ENDPOINTS else "other"


class Metrics:
    """Every metric the operator exports. One instance per process, built at start-up."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.reconcile_total = Counter(
            "controller_runtime_reconcile_total",
            "Total number of reconciliations per controller.",
            ["controller", "result"],
            registry=r,
        )
        self.reconcile_errors_total = Counter(
            "controller_runtime_reconcile_errors_total",
            "Total number of reconciliation errors per controller.",
            ["controller"],
            registry=r,
        )
        self.reconcile_time_seconds = Histogram(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller.",
            ["controller"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.runs_total = Counter(
            "sendgrid_operator_export_runs_total",
            "Export runs that ended, by result.",
            ["namespace", "name", "result"],
            registry=r,
        )
        self.run_duration_seconds = Histogram(
            "sendgrid_operator_export_run_duration_seconds",
            "Duration of finished export runs, by result.",
            ["result"],
            buckets=(1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
            registry=r,
        )
        self.runs_in_progress = Gauge(
            "sendgrid_operator_export_runs_in_progress",
            "Export runs whose Job is active.",
            registry=r,
        )
        self.profiles_total = Counter(
            "sendgrid_operator_profiles_total",
            "Profiles handled by export runs, by outcome.",
            ["namespace", "name", "outcome"],
            registry=r,
        )
        self.contacts_total = Counter(
            "sendgrid_operator_contacts_total",
            "Contacts changed in SendGrid by export runs, by operation (from SendGrid's results).",
            ["namespace", "name", "operation"],
            registry=r,
        )
        self.sendgrid_requests_total = Counter(
            "sendgrid_operator_sendgrid_requests_total",
            "Requests to SendGrid, by endpoint and HTTP status code.",
            ["endpoint", "code"],
            registry=r,
        )
        self.sendgrid_rate_limited_total = Counter(
            "sendgrid_operator_sendgrid_rate_limited_total",
            "Requests SendGrid answered with 429, by endpoint.",
            ["endpoint"],
            registry=r,
        )
        self.last_success_timestamp = Gauge(
            "sendgrid_operator_export_last_success_timestamp_seconds",
            "Unix time of the export's last successful run.",
            ["namespace", "name"],
            registry=r,
        )
        self.export_suspended = Gauge(
            "sendgrid_operator_export_suspended",
            "1 when the export's schedule is suspended.",
            ["namespace", "name"],
            registry=r,
        )
        self.connection_ready = Gauge(
            "sendgrid_operator_connection_ready",
            "1 when the SendGridConnection is Ready, else 0.",
            ["namespace", "name"],
            registry=r,
        )

    def forget_export(self, namespace: str, name: str) -> None:
        """Drop an export's series when it is deleted, so cardinality follows live objects."""
        for metric, values in (
            (self.runs_total, RUN_RESULTS),
            (self.profiles_total, PROFILE_OUTCOMES),
            (self.contacts_total, CONTACT_OPERATIONS),
        ):
            for value in values:
                with contextlib.suppress(KeyError):
                    metric.remove(namespace, name, value)
        for gauge in (self.last_success_timestamp, self.export_suspended):
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, name)

    def forget_connection(self, namespace: str, name: str) -> None:
        with contextlib.suppress(KeyError):
            self.connection_ready.remove(namespace, name)
