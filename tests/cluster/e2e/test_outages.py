"""Outages around a run: the Kubernetes API server down for a while, and the source
database restarted mid-read. The run ends successful with exact counts or failed with a
clear reason, and a rerun converges.

The API-server test stops the session's shared kube-apiserver (same port and certificates
on restart); it waits until the API is ready again before it returns.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kube import Kube, wait_for
from pg import PostgresServer, postgres_instance
from sendgrid_operator.emulator import AdminClient, Emulator

from .conftest import Operator
from .faults import active_run, assert_exact, assert_rerun_converges, progress, run, setup_export
from .helpers import request_run, wait_run
from .manifests import CSV_MEMBERS, secret

pytestmark = pytest.mark.cluster


def test_apiserver_down_mid_run(
    operator: Operator, kube: Kube, emulator: Emulator, admin: AdminClient
) -> None:
    list_id = setup_export(kube, emulator, admin)
    admin.add_fault("upsert", "delay", seconds=3, count=1)
    run_id = request_run(kube, "vip")
    wait_for(lambda: active_run(kube) == run_id, 30, "the run to be active")
    wait_for(lambda: progress(kube).get("phase") == "Uploading", 30, "the upload phase")
    with kube.cluster.apiserver_stopped():
        # The Job needs no Kubernetes API: it finishes its work in SendGrid meanwhile,
        # and keeps retrying its state and report to the operator (which answers 503).
        wait_for(lambda: admin.members(list_id) == CSV_MEMBERS, 30, "the contacts in the list")
        admin.settle()
    kube.cluster.check_alive()
    last = wait_run(kube, "vip", run_id, timeout=120)
    assert_exact(last)
    assert operator.ready()
    again = assert_rerun_converges(kube, admin, list_id)
    assert again["counts"]["sent"] == 0, again  # the state reached the operator


@pytest.fixture(scope="module")
def database() -> Iterator[PostgresServer]:
    with postgres_instance() as server:
        yield server


ROWS = 100_000
# Rows stream from a server-side cursor (fetchSize 10,000); the query sleeps 0.3 s every
# 5,000 rows, so reading takes about 6 s and the restart lands in the middle of it.
SLOW_QUERY = (
    "SELECT 'db' || i || '@example.com' AS email FROM generate_series(1, {n}) AS i "
    # a per-row CASE (an uncorrelated sub-select would be an InitPlan: one sleep in all)
    "WHERE CASE WHEN i % 5000 = 0 THEN pg_sleep(0.3)::text = '' ELSE true END"
)


def test_database_restarted_mid_read(
    operator: Operator,
    kube: Kube,
    emulator: Emulator,
    admin: AdminClient,
    database: PostgresServer,
) -> None:
    url = database.url.replace("postgres@", "postgres:db-secret-pw@")
    segments = [
        {
            "name": "crm",
            "source": {
                "sql": {
                    "query": SLOW_QUERY.format(n=ROWS),
                    "databaseURLSecretRef": {"name": "crm-db", "key": "url"},
                }
            },
        }
    ]
    list_id = setup_export(
        kube,
        emulator,
        admin,
        segments=segments,
        fieldMapping={"email": "email"},
        job={"backoffLimit": 0},
        extra=(secret("crm-db", url, field="url"),),
    )
    run_id = request_run(kube, "vip")
    wait_for(lambda: progress(kube).get("read", 0) >= 10_000, 60, "the read to be under way")
    database.restart("fast")  # sessions are terminated, as in a maintenance restart
    last = wait_run(kube, "vip", run_id, timeout=90)
    assert (last["result"], last["reason"]) == ("Refused", "SourceError"), last
    assert "terminat" in last["message"] or "connection" in last["message"], last["message"]
    assert "db-secret-pw" not in str(last)
    assert admin.members(list_id) == set()
    assert not [r for r in admin.request_log() if r.endpoint == "upsert"]
    # With the database back, a rerun reads everything and sends it exactly once.
    again = run(kube, timeout=120)
    assert again["result"] == "Succeeded", again
    c = again["counts"]
    assert c["read"] == c["profiles"] == c["sent"] == c["created"] == ROWS, c
    members = admin.members(list_id)
    assert len(members) == ROWS and "db1@example.com" in members
