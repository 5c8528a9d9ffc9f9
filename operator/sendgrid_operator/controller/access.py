"""May an export in a given namespace use a connection? (SendGridConnection.spec.allowedNamespaces)

The connection's own namespace always may. Others may when named, or when their labels
match the selector, in the manner of External Secrets' ClusterSecretStore conditions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sendgrid_operator.api.connection import AllowedNamespaces, LabelSelector


def selector_matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics; an empty selector matches everything."""
    for key, value in (selector.match_labels or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.match_expressions or []:
        key = str(expr.get("key", ""))
        op = str(expr.get("operator", ""))
        values = [str(v) for v in expr.get("values") or []]
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False
    return True


def needs_namespace_labels(allowed: AllowedNamespaces | None, namespace: str) -> bool:
    """True when deciding requires the namespace's labels (saves an API call otherwise)."""
    if allowed is None or namespace in (allowed.names or []):
        return False
    return allowed.selector is not None


def is_allowed(
    connection_namespace: str,
    allowed: AllowedNamespaces | None,
    namespace: str,
    namespace_labels: Mapping[str, str] | None,
) -> bool:
    if namespace == connection_namespace:
        return True
    if allowed is None:
        return False
    if namespace in (allowed.names or []):
        return True
    if allowed.selector is not None:
        return selector_matches(allowed.selector, namespace_labels or {})
    return False


def describe(connection_namespace: str, allowed: AllowedNamespaces | None) -> str:
    """Who may use the connection, for a condition message."""
    parts = [f"namespace {connection_namespace}"]
    if allowed is not None:
        if allowed.names:
            parts.append("namespaces " + ", ".join(allowed.names))
        if allowed.selector is not None:
            sel: dict[str, Any] = allowed.selector.to_wire()
            parts.append(f"namespaces matching {sel or 'any labels'}")
    return " or ".join(parts)
