"""``sendgrid-operator export`` end to end, as a subprocess: exit codes, output, key hygiene."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

from sendgrid_operator.emulator import AdminClient, Emulator
from sendgrid_operator.engine import EXIT_BAD_INPUT, EXIT_OK, EXIT_REFUSED, EXIT_SENDGRID

ROOT = Path(__file__).resolve().parents[2]
KEY = "SG.test-cli-key-0123456789"

MANIFESTS = """
apiVersion: v1
kind: Secret
metadata: {{name: sendgrid-key, namespace: marketing}}
data:
  apiKey: {key_b64}
---
apiVersion: sendgrid-operator.io/v1alpha1
kind: SendGridConnection
metadata: {{name: sendgrid, namespace: marketing}}
spec:
  apiKeySecretRef: {{name: sendgrid-key}}
  consent: {{personalData: {consent}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: segments, namespace: marketing}}
data:
  vip.csv: |
    email,first
    a@example.com,Ann
    B@Example.com ,Ben
    broken,X
---
apiVersion: sendgrid-operator.io/v1alpha1
kind: SegmentExport
metadata: {{name: vip, namespace: marketing}}
spec:
  connectionRef: {{name: sendgrid}}
  listIds: ["{list_id}"]
  segments:
    - name: vip
      source: {{file: {{configMap: {{name: segments, key: vip.csv}}}}}}
  fieldMapping: {{email: {email_column}, firstName: first}}
  maxProfiles: {max_profiles}
"""


def write(
    tmp_path: Path,
    list_id: str,
    key: str = KEY,
    consent: str = "true",
    email_column: str = "email",
    max_profiles: int = 1000,
) -> Path:
    path = tmp_path / "export.yaml"
    path.write_text(
        MANIFESTS.format(
            key_b64=base64.b64encode(key.encode()).decode(),
            consent=consent,
            list_id=list_id,
            email_column=email_column,
            max_profiles=max_profiles,
        )
    )
    return path


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "operator")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "sendgrid_operator",
            "export",
            *args,
            "--state-dir",
            str(tmp_path / "state"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )


def test_cli_end_to_end(tmp_path: Path, emu: Emulator, admin: AdminClient, list_id: str) -> None:
    admin.set_keys({KEY: ["marketing.read"]})
    manifest = write(tmp_path, list_id)
    outputs: list[str] = []

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        result = cli(tmp_path, "-f", str(manifest), "--sendgrid-url", emu.url, *args)
        outputs.extend([result.stdout, result.stderr])
        return result

    dry = run("--dry-run")
    assert dry.returncode == EXIT_OK, dry.stderr
    assert "DryRunSucceeded" in dry.stdout and admin.members(list_id) == set()
    done = run("--output", "json")
    assert done.returncode == EXIT_OK, done.stderr
    report = json.loads(done.stdout)
    assert report["result"] == "Succeeded"
    assert report["counts"]["created"] == 2 and report["counts"]["invalid"] == 1
    assert report["sendgridRequests"]["upsert 202"] == 1
    assert admin.members(list_id) == {"a@example.com", "b@example.com"}
    assert "Uploading" in done.stderr  # plain progress lines when stderr is not a TTY
    assert list((tmp_path / "state").glob("marketing_vip.state"))
    again = run()
    assert again.returncode == EXIT_OK and "sent 0 (2 unchanged)" in again.stdout

    # exit codes
    refused = run("--full")
    assert refused.returncode == EXIT_OK
    write(tmp_path, list_id, max_profiles=1)
    assert run().returncode == EXIT_REFUSED
    write(tmp_path, list_id, consent="false")
    result = run()
    assert result.returncode == EXIT_REFUSED and "consent.personalData" in result.stderr
    write(tmp_path, list_id, email_column="mail")
    result = run()
    assert result.returncode == EXIT_BAD_INPUT and "'mail'" in result.stdout
    manifest.write_text(manifest.read_text().replace("listIds:", "lists:"))
    result = run()
    assert result.returncode == EXIT_BAD_INPUT and "document 4 (SegmentExport vip)" in result.stderr
    write(tmp_path, list_id, key="SG.test-wrong-key-987654321")
    result = run()
    assert result.returncode == EXIT_SENDGRID and "check the Secret" in result.stdout
    # the key never appears in any output
    wrong = "SG.test-wrong-key-987654321"
    assert all(KEY not in out and wrong not in out for out in outputs)


def test_cli_unreachable_sendgrid(tmp_path: Path, list_id: str) -> None:
    manifest = write(tmp_path, "11111111-2222-4333-8444-555555555555")
    env_url = "http://127.0.0.1:9"  # discard port: nothing listens
    result = cli(tmp_path, "-f", str(manifest), "--sendgrid-url", env_url)
    assert result.returncode == EXIT_SENDGRID, result.stdout + result.stderr
    assert "SendGridUnreachable" in result.stdout
    assert KEY not in result.stdout + result.stderr
