"""The Grafana dashboard (deploy/grafana): valid JSON, and only metrics the operator exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sendgrid_operator.controller.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "sendgrid-operator.json"

PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
    "and", "or", "unless", "le", "inf", "nan",
}  # fmt: skip


def exported_series() -> set[str]:
    """Sample names as Prometheus stores them (Counters as ``_total``, Histograms as
    ``_bucket``/``_count``/``_sum``)."""
    names: set[str] = set()
    for family in Metrics().registry.collect():
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names |= {family.name + s for s in ("_bucket", "_count", "_sum")}
        else:
            names.add(family.name)
    return names


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords,
    label names or Grafana variables."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\$\{?\w+\}?", "", text)  # $variables
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        name = match.group(0)
        after = text[match.end() :].lstrip()
        if after.startswith("(") or name.lower() in PROMQL_WORDS:
            continue
        names.add(name)
    return names


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    def walk(panels: list[dict[str, Any]]) -> Iterator[tuple[str, str]]:
        for panel in panels:
            for target in panel.get("targets", []):
                yield panel["title"], target["expr"]
            yield from walk(panel.get("panels", []))

    yield from walk(dashboard["panels"])
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((.*),\s*\w+\)", variable["query"]["query"])
            assert match, variable
            yield f"${variable['name']}", match.group(1)


def load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def test_metric_name_extraction() -> None:
    expr = 'histogram_quantile(0.95, sum by (le, controller) (rate(a_seconds_bucket{x=~"$ns"}[5m]))) or vector(0)'
    assert metric_names(expr) == {"a_seconds_bucket"}
    assert metric_names('time() - b_timestamp_seconds{name=~"$name"}') == {"b_timestamp_seconds"}


def test_dashboard_is_a_grafana_dashboard() -> None:
    dashboard = load()
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["uid"] == "sendgrid-operator"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert {"namespace", "name"} <= set(variables)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"], panel["title"]


def test_every_query_uses_only_exported_metrics() -> None:
    exported = exported_series()
    used: set[str] = set()
    for title, expr in queries(load()):
        names = metric_names(expr)
        assert names, (title, expr)
        assert names <= exported, (title, names - exported)
        used |= names
    # and every metric the operator exports is shown somewhere
    families = {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in exported}
    shown = {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in used}
    assert families == shown


def test_per_export_queries_honour_the_variables() -> None:
    per_export = (
        "sendgrid_operator_export_runs_total",
        "sendgrid_operator_profiles_total",
        "sendgrid_operator_contacts_total",
        "sendgrid_operator_export_last_success_timestamp_seconds",
    )
    for title, expr in queries(load()):
        for metric in per_export:
            for match in re.finditer(re.escape(metric) + r"(\{[^}]*\})?", expr):
                assert match.group(1) and "$namespace" in match.group(1), (title, expr)
                assert "$name" in match.group(1).replace("$namespace", ""), (title, expr)
