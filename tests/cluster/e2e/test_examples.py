"""Every file in ``examples/`` applies cleanly and runs: the e2e tests drive each one with
kubectl against the helm-installed operator, pointed at the test's emulator (and, for the
SQL example, at a real PostgreSQL server holding the tables its query reads)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from kube import Kube, wait_for
from pg import postgres_server
from sendgrid_operator.devcluster import Api
from sendgrid_operator.emulator import AdminClient, Emulator, EmulatorConfig
from sendgrid_operator.emulator.config import ApiKey

from .conftest import Operator
from .helpers import get, request_run, wait_condition, wait_run

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]
EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
EXAMPLE_KEY = "SG.example-api-key"
CRM_SQL = """
CREATE TABLE customers (id serial PRIMARY KEY, email text, first_name text, last_name text,
                        country_code text, marketing_opt_in boolean);
CREATE TABLE loyalty_accounts (customer_id int REFERENCES customers(id), tier text,
                               lifetime_value numeric, status text);
INSERT INTO customers (email, first_name, last_name, country_code, marketing_opt_in) VALUES
  ('ada@example.com', 'Ada', 'Lovelace', 'GB', true),
  ('grace@example.com', 'Grace', 'Hopper', 'US', true),
  ('alan@example.com', 'Alan', 'Turing', 'GB', false),
  ('Hedy@Example.com ', 'Hédy', 'Lamarr', 'AT', true);
INSERT INTO loyalty_accounts VALUES (1, 'gold', 1234.5, 'active'), (2, 'silver', 99, 'active'),
  (3, 'gold', 10, 'active'), (4, 'bronze', 0, 'closed');
"""


@pytest.fixture(scope="module")
def crm_url() -> Iterator[str]:
    with postgres_server() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE crm")
        crm = url.rsplit("/", 1)[0] + "/crm"
        with psycopg.connect(crm, autocommit=True) as conn:
            conn.execute(CRM_SQL)
        yield crm


@pytest.fixture
def example_emulator() -> Iterator[Emulator]:
    with Emulator(
        EmulatorConfig(apply_delay=0.05, api_keys=[ApiKey(EXAMPLE_KEY)])
    ).running_in_thread() as emu:
        yield emu


def load(name: str, base_url: str, crm_url: str | None = None) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]
    for doc in docs:
        if doc["kind"] == "SendGridConnection":
            doc["spec"]["baseURL"] = base_url
        if doc["kind"] == "Secret" and "url" in doc.get("stringData", {}) and crm_url:
            doc["stringData"]["url"] = crm_url
    return docs


def list_ids(docs: list[dict[str, Any]]) -> list[str]:
    return [i for d in docs if d["kind"] == "SegmentExport" for i in d["spec"]["listIds"]]


def run_example(kube: Kube, name: str) -> dict[str, Any]:
    last = wait_run(kube, name, request_run(kube, name))
    assert last["result"] == "Succeeded", last
    return last


def test_every_example_is_exercised() -> None:
    names = {p.name for p in EXAMPLES.glob("*.yaml")}
    assert names == {
        "minimal-file-export.yaml",
        "postgres-custom-fields.yaml",
        "mirror-export.yaml",
        "shared-connection.yaml",
    }, "a new example needs a test here"


def test_minimal_and_mirror_examples(
    operator: Operator, kube: Kube, example_emulator: Emulator
) -> None:
    with AdminClient(example_emulator.url) as admin:
        docs = load("minimal-file-export.yaml", example_emulator.url) + load(
            "mirror-export.yaml", example_emulator.url
        )
        for list_id in list_ids(docs):
            admin.create_list("example", list_id)
        kube.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
        kube.kubectl(
            "wait", "--for=condition=Ready", "sendgridconnection/sendgrid", "--timeout=60s"
        )
        for export in ("newsletter", "vip-mirror"):
            last = run_example(kube, export)
            members = admin.members(get(kube, "segmentexports", export)["spec"]["listIds"][0])
            assert len(members) == last["counts"]["profiles"] - last["counts"]["rejected"]
            assert (
                last["counts"]["invalid"]
                + last["counts"]["duplicates"]
                + last["counts"]["profiles"]
                == last["counts"]["read"]
            )


def test_postgres_example_with_custom_fields(
    operator: Operator, kube: Kube, example_emulator: Emulator, crm_url: str
) -> None:
    with AdminClient(example_emulator.url) as admin:
        docs = load("postgres-custom-fields.yaml", example_emulator.url, crm_url)
        for list_id in list_ids(docs):
            admin.create_list("loyalty", list_id)
        admin.create_field("loyalty_tier", "Text")
        admin.create_field("lifetime_value", "Number")
        kube.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
        kube.kubectl(
            "wait", "--for=condition=Ready", "sendgridconnection/sendgrid", "--timeout=60s"
        )
        status = wait_for(
            lambda: (get(kube, "segmentexports", "loyalty-members").get("status") or {}).get(
                "nextScheduleTime"
            ),
            30,
            "the schedule",
        )
        assert status.endswith(("00:30:00Z", "01:30:00Z"))  # 02:30 in Europe/Berlin
        last = run_example(kube, "loyalty-members")
        assert admin.members(list_ids(docs)[0]) == {"ada@example.com", "grace@example.com"}
        ada = admin.contact("ada@example.com")
        assert ada is not None
        assert ada["custom_fields"] == {"loyalty_tier": "gold", "lifetime_value": 1234.5}
        assert last["counts"]["read"] == 2


def test_shared_connection_example(
    operator: Operator, kube: Kube, admin_api: Api, example_emulator: Emulator
) -> None:
    docs = load("shared-connection.yaml", example_emulator.url)
    namespaces = [d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"]
    try:
        with AdminClient(example_emulator.url) as admin:
            for list_id in list_ids(docs):
                admin.create_list("spring", list_id)
            # The example names its own namespaces: apply it without a default namespace.
            kube._run(
                kube.cluster.binaries.kubectl, ("apply", "-f", "-"), yaml.safe_dump_all(docs), True
            )
            marketing = Kube(kube.cluster, admin_api, "marketing")
            wait_condition(
                Kube(kube.cluster, admin_api, "platform"),
                "sendgridconnections",
                "shared-sendgrid",
                "True",
            )
            wait_for(
                lambda: admin_api.get_or_none(
                    "/api/v1/namespaces/marketing/serviceaccounts/default"
                ),
                30,
                "SA",
            )
            last = run_example(marketing, "spring-campaign")
            assert len(admin.members(list_ids(docs)[0])) == last["counts"]["profiles"]
    finally:
        for ns in namespaces:
            with contextlib.suppress(Exception):
                admin_api.delete(f"/api/v1/namespaces/{ns}", {"propagationPolicy": "Background"})
