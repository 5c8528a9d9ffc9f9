"""Which namespaces may use a connection (spec.allowedNamespaces)."""

from __future__ import annotations

from sendgrid_operator.api.connection import AllowedNamespaces, LabelSelector
from sendgrid_operator.controller.access import describe, is_allowed, needs_namespace_labels


def test_own_namespace_always_allowed_others_not_by_default() -> None:
    assert is_allowed("platform", None, "platform", None)
    assert not is_allowed("platform", None, "marketing", {})


def test_by_name_and_by_label() -> None:
    allowed = AllowedNamespaces(
        names=["marketing"],
        selector=LabelSelector(match_labels={"sendgrid-operator.io/allowed": "true"}),
    )
    assert is_allowed("platform", allowed, "marketing", None)
    assert is_allowed("platform", allowed, "data", {"sendgrid-operator.io/allowed": "true"})
    assert not is_allowed("platform", allowed, "data", {"sendgrid-operator.io/allowed": "no"})
    assert needs_namespace_labels(allowed, "data")
    assert not needs_namespace_labels(allowed, "marketing")


def test_match_expressions() -> None:
    allowed = AllowedNamespaces(
        selector=LabelSelector(
            match_expressions=[
                {"key": "team", "operator": "In", "values": ["crm", "growth"]},
                {"key": "frozen", "operator": "DoesNotExist"},
            ]
        )
    )
    assert is_allowed("p", allowed, "a", {"team": "crm"})
    assert not is_allowed("p", allowed, "a", {"team": "crm", "frozen": "1"})
    assert not is_allowed("p", allowed, "a", {"team": "ops"})


def test_empty_selector_allows_every_namespace() -> None:
    allowed = AllowedNamespaces(selector=LabelSelector())
    assert is_allowed("p", allowed, "anything", {})
    assert "matching" in describe("p", allowed)
