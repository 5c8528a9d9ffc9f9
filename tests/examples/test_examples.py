"""Every example in examples/ parses, validates with the API models, is self-consistent, and
holds no real-looking SendGrid API key."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from sendgrid_operator.api import SegmentExport, SendGridConnection

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
README = (ROOT / "examples" / "README.md").read_text()
#: The shape of a real SendGrid API key: SG.<22 characters>.<43 characters>.
REAL_KEY = re.compile(r"SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}")
PLACEHOLDER_KEY = "SG.example-api-key"


def documents(path: Path) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert all(isinstance(d, dict) for d in docs)
    return docs


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def key(doc: dict[str, Any], namespace: str | None = None) -> tuple[str, str]:
    meta = doc["metadata"]
    return (meta.get("namespace") or namespace or "default", meta["name"])


def test_the_four_examples_exist() -> None:
    assert [p.name for p in EXAMPLES] == [
        "minimal-file-export.yaml",
        "mirror-export.yaml",
        "postgres-custom-fields.yaml",
        "shared-connection.yaml",
    ]
    for path in EXAMPLES:
        assert f"`{path.name}`" in README


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates_with_the_api_models(path: Path) -> None:
    docs = documents(path)
    assert all({"apiVersion", "kind", "metadata"} <= set(d) for d in docs)
    connections = of_kind(docs, "SendGridConnection")
    exports = of_kind(docs, "SegmentExport")
    assert connections and exports
    for doc in connections:
        SendGridConnection.model_validate(doc)
    for doc in exports:
        SegmentExport.model_validate(doc)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_holds_every_object_it_refers_to(path: Path) -> None:
    docs = documents(path)
    secrets = {
        key(d): {**(d.get("data") or {}), **(d.get("stringData") or {})}
        for d in of_kind(docs, "Secret")
    }
    config_maps = {key(d): d.get("data") or {} for d in of_kind(docs, "ConfigMap")}
    namespaces = {d["metadata"]["name"] for d in of_kind(docs, "Namespace")}
    connections = {
        key(d): SendGridConnection.model_validate(d) for d in of_kind(docs, "SendGridConnection")
    }
    for (ns, _), _conn in connections.items():
        assert ns == "default" or ns in namespaces, f"namespace {ns} is not created"
    for (ns, name), conn in connections.items():
        ref = conn.spec.api_key_secret_ref
        assert ref.key in secrets[(ns, ref.name)], f"{name}: Secret {ref.name} lacks {ref.key}"
    for doc in of_kind(docs, "SegmentExport"):
        export = SegmentExport.model_validate(doc)
        ns, name = key(doc)
        assert ns == "default" or ns in namespaces
        conn_ref = export.spec.connection_ref
        assert (conn_ref.namespace or ns, conn_ref.name) in connections, name
        for list_id in export.spec.list_ids:
            assert f"`{list_id}`" in README, f"list {list_id} is not listed in examples/README.md"
        for segment in export.spec.segments:
            file, sql = segment.source.file, segment.source.sql
            if file is not None and file.config_map is not None:
                assert file.config_map.key in config_maps[(ns, file.config_map.name)]
            if sql is not None:
                db = sql.database_url_secret_ref
                assert db.key in secrets[(ns, db.name)]


def test_list_ids_are_distinct_across_examples() -> None:
    ids = [
        list_id
        for path in EXAMPLES
        for doc in of_kind(documents(path), "SegmentExport")
        for list_id in doc["spec"]["listIds"]
    ]
    assert len(ids) == len(set(ids)) == 4


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_no_real_looking_api_key(path: Path) -> None:
    text = path.read_text()
    assert not REAL_KEY.search(text)
    for secret in of_kind(documents(path), "Secret"):
        assert "data" not in secret, "examples keep secrets readable in stringData"
        assert secret["stringData"], secret["metadata"]["name"]
    api_keys = [
        value
        for secret in of_kind(documents(path), "Secret")
        for value in secret["stringData"].values()
        if str(value).startswith("SG.")
    ]
    assert api_keys and set(api_keys) == {PLACEHOLDER_KEY}


def test_the_detector_finds_a_real_key_shape() -> None:
    assert REAL_KEY.search("apiKey: SG." + "a" * 22 + "." + "B" * 43)
    assert not REAL_KEY.search(f"apiKey: {PLACEHOLDER_KEY}")


def test_minimal_csv_has_an_invalid_email_and_a_case_duplicate() -> None:
    docs = documents(ROOT / "examples" / "minimal-file-export.yaml")
    (cm,) = of_kind(docs, "ConfigMap")
    rows = list(csv.DictReader(io.StringIO(cm["data"]["subscribers.csv"])))
    assert 10 <= len(rows) <= 20
    emails = [r["email"] for r in rows]
    invalid = [e for e in emails if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", e)]
    assert len(invalid) == 1
    lowered = [e.lower() for e in emails]
    duplicates = {e for e in lowered if lowered.count(e) > 1}
    assert len(duplicates) == 1
    assert len({e for e in emails if e.lower() in duplicates}) == 2  # differ in case only
    (export,) = of_kind(docs, "SegmentExport")
    assert "schedule" not in export["spec"], "the minimal export runs on demand"
    (conn,) = of_kind(docs, "SendGridConnection")
    assert conn["spec"]["consent"]["personalData"] is True


def test_postgres_example_has_two_custom_fields_and_a_zoned_schedule() -> None:
    (export,) = of_kind(
        documents(ROOT / "examples" / "postgres-custom-fields.yaml"), "SegmentExport"
    )
    spec = SegmentExport.model_validate(export).spec
    assert spec.field_mapping.custom_fields is not None
    assert [c.name for c in spec.field_mapping.custom_fields] == ["loyalty_tier", "lifetime_value"]
    assert spec.schedule and spec.time_zone == "Europe/Berlin"
    assert spec.segments[0].source.sql is not None


def test_mirror_and_shared_examples() -> None:
    (mirror,) = of_kind(documents(ROOT / "examples" / "mirror-export.yaml"), "SegmentExport")
    spec = SegmentExport.model_validate(mirror).spec
    assert spec.mode == "mirror" and spec.incremental and spec.max_removal_percent == 20
    docs = documents(ROOT / "examples" / "shared-connection.yaml")
    (conn,) = of_kind(docs, "SendGridConnection")
    allowed = SendGridConnection.model_validate(conn).spec.allowed_namespaces
    assert conn["metadata"]["namespace"] == "platform"
    assert allowed is not None and allowed.names == ["marketing"]
    assert allowed.selector is not None
    assert allowed.selector.match_labels == {"sendgrid-operator.io/allowed": "true"}
    (export,) = of_kind(docs, "SegmentExport")
    assert export["metadata"]["namespace"] == "marketing"
    assert export["spec"]["connectionRef"] == {"name": "shared-sendgrid", "namespace": "platform"}
