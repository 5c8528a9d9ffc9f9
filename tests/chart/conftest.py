"""Finds a real helm binary for the chart tests; no cluster is needed.

Looked for, in order: $SGOP_HELM, $HELM, the control-plane tool cache that `make controlplane` fills
(${SGOP_CACHE:-${XDG_CACHE_HOME:-~/.cache}/sendgrid-operator}/*/bin/helm), /tmp/helmbin/helm,
and helm on PATH. The tests skip, saying why, only when none of them runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _cache_dir() -> Path:
    if os.environ.get("SGOP_CACHE"):
        return Path(os.environ["SGOP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sendgrid-operator"


def _candidates() -> Iterator[Path]:
    for variable in ("SGOP_HELM", "HELM"):
        if os.environ.get(variable):
            yield Path(os.environ[variable])
    cache = _cache_dir()
    yield from sorted(cache.glob("*/bin/helm"), reverse=True)
    yield from sorted(cache.glob("*/*/bin/helm"), reverse=True)
    yield Path("/tmp/helmbin/helm")
    on_path = shutil.which("helm")
    if on_path:
        yield Path(on_path)


def find_helm() -> Path | None:
    for candidate in _candidates():
        if not (candidate.is_file() and os.access(candidate, os.X_OK)):
            continue
        try:
            subprocess.run(
                [str(candidate), "version", "--short"], check=True, capture_output=True, timeout=30
            )
        except (OSError, subprocess.SubprocessError):
            continue
        return candidate
    return None


@pytest.fixture(scope="session")
def helm() -> Path:
    found = find_helm()
    if found is None:
        pytest.skip(
            "no helm binary found ($SGOP_HELM, $HELM, the sendgrid-operator tool cache, /tmp/helmbin, PATH): "
            "run `make controlplane` to fetch one"
        )
    return found
