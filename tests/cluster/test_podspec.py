"""Unit tests of the node agent's Pod-to-process translation (no cluster needed)."""

from __future__ import annotations

import pytest

from sendgrid_operator.devcluster.podspec import ConfigError, expand, field_value, rewrite

POD = {
    "metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "labels": {"app": "x"}},
    "spec": {"nodeName": "n", "serviceAccountName": "sa"},
}


def test_expand_follows_kubernetes_rules() -> None:
    env = {"A": "1", "B": "two"}
    assert expand("$(A)-$(B)", env) == "1-two"
    assert expand("$(MISSING)", env) == "$(MISSING)"
    assert expand("$$(A) $$", env) == "$(A) $"


def test_rewrite_prefers_the_longest_mount_path() -> None:
    mounts = [("/etc/app", "/tmp/p/app"), ("/etc/app/certs", "/tmp/p/certs")]
    assert rewrite("--config=/etc/app/c.yaml --ca=/etc/app/certs/ca", mounts) == (
        "--config=/tmp/p/app/c.yaml --ca=/tmp/p/certs/ca"
    )


def test_field_value() -> None:
    assert field_value(POD, "metadata.namespace") == "ns"
    assert field_value(POD, "metadata.uid") == "u-1"
    assert field_value(POD, "metadata.labels['app']") == "x"
    assert field_value(POD, "spec.serviceAccountName") == "sa"
    with pytest.raises(ConfigError):
        field_value(POD, "spec.containers")


def test_rewrite_does_not_rewrite_its_own_output() -> None:
    mounts = [("/tmp", "/tmp/pods/p/volumes/tmp"), ("/data", "/tmp/pods/p/volumes/data")]
    assert rewrite("/data/x /tmp/y", mounts) == (
        "/tmp/pods/p/volumes/data/x /tmp/pods/p/volumes/tmp/y"
    )
