"""Fixtures for the export engine's tests: manifests, an emulator with a list, PostgreSQL."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pg import postgres_server
from sendgrid_operator.api.common import KeySelector
from sendgrid_operator.api.export import SegmentExportSpec
from sendgrid_operator.emulator import AdminClient, Emulator
from sendgrid_operator.engine import EngineSettings, ExportPlan
from sendgrid_operator.sendgrid import RetryPolicy

FAST = EngineSettings(
    poll_initial=0.02,
    poll_max=0.1,
    job_timeout=30.0,
    export_timeout=30.0,
    progress_interval=0.0,
    retry=RetryPolicy(max_attempts=6, base_delay=0.005, max_delay=0.05, total_seconds=20.0),
)


class DictResolver:
    """Secrets and ConfigMaps from dicts, keyed by (name, key)."""

    def __init__(
        self,
        secrets: dict[tuple[str, str], str] | None = None,
        config_maps: dict[tuple[str, str], bytes] | None = None,
    ) -> None:
        self.secrets = secrets or {}
        self.config_maps = config_maps or {}

    def secret(self, ref: KeySelector) -> str:
        try:
            return self.secrets[(ref.name, ref.key)]
        except KeyError:
            raise KeyError(f"Secret {ref.name} has no key {ref.key!r}") from None

    def config_map(self, ref: KeySelector) -> bytes:
        try:
            return self.config_maps[(ref.name, ref.key)]
        except KeyError:
            raise KeyError(f"ConfigMap {ref.name} has no key {ref.key!r}") from None


def make_spec(
    list_ids: list[str], segments: list[dict[str, Any]], **extra: Any
) -> SegmentExportSpec:
    body: dict[str, Any] = {
        "connectionRef": {"name": "sendgrid"},
        "listIds": list_ids,
        "segments": segments,
        "fieldMapping": extra.pop("fieldMapping", {"email": "email"}),
    }
    body.update(extra)
    return SegmentExportSpec.model_validate(body)


def make_plan(
    emu: Emulator, spec: SegmentExportSpec, resolver: DictResolver | None = None, name: str = "vip"
) -> ExportPlan:
    return ExportPlan(
        namespace="default",
        name=name,
        spec=spec,
        api_key=emu.api_key,
        base_url=emu.url,
        resolver=resolver or DictResolver(),
    )


def offline_plan(spec: SegmentExportSpec) -> ExportPlan:
    """A plan for the in-memory SendGrid of ``fakes.py`` (its client's transport)."""
    return ExportPlan(
        namespace="d",
        name="p",
        spec=spec,
        api_key="SG.test-key",
        base_url="https://sg.test",
        resolver=DictResolver(),
    )


def file_segment(name: str, path: Path | str, **file: Any) -> dict[str, Any]:
    return {"name": name, "source": {"file": {"path": str(path), **file}}}


@pytest.fixture
def list_id(admin: AdminClient) -> str:
    return admin.create_list("engine-test")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url
