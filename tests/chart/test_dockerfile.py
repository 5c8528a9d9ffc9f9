"""The image's Dockerfile, checked by reading it (no Docker engine is needed or available)."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make ", "python3-dev", "libpq-dev", "cargo")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Instructions per stage, with continuation lines joined and comments dropped."""
    logical: list[str] = []
    buffer = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buffer and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        logical.append(" ".join((buffer + line).split()))
        buffer = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, arg = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", arg.strip(), flags=re.IGNORECASE)
            assert match, line
            stages.append(Stage(base=match.group(1), name=match.group(2)))
        elif not stages and keyword == "ARG":
            name, _, default = arg.partition("=")
            global_args[name.strip()] = default.strip()
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, arg.strip()))
    return global_args, stages


def load() -> tuple[dict[str, str], list[Stage]]:
    return parse((ROOT / "Dockerfile").read_text())


def test_parser_joins_continuations_and_splits_stages() -> None:
    args, stages = parse("ARG A=1\nFROM a AS one\nRUN x \\\n  && y\n# note\nFROM one\nUSER 1\n")
    assert args == {"A": "1"}
    assert [(s.base, s.name) for s in stages] == [("a", "one"), ("one", None)]
    assert stages[0].all("RUN") == ["x && y"]


def test_multi_stage_on_python_311_slim() -> None:
    args, stages = load()
    assert args["PYTHON_IMAGE"] == "python:3.11-slim"
    assert len(stages) >= 2
    assert all(stage.base == "${PYTHON_IMAGE}" for stage in stages)
    assert stages[0].name is not None
    final = stages[-1]
    assert final.name is None


def test_final_stage_runs_as_non_root_65532() -> None:
    _, stages = load()
    final = stages[-1]
    assert final.all("USER") == ["65532:65532"]
    # USER comes after every RUN of the final stage, so nothing in it runs as root later
    keywords = [kw for kw, _ in final.instructions]
    assert max(i for i, kw in enumerate(keywords) if kw == "RUN") < keywords.index("USER")
    created = " ".join(final.all("RUN"))
    assert "--uid 65532" in created and "--gid 65532" in created


def test_entrypoint_and_default_command() -> None:
    _, stages = load()
    final = stages[-1]
    assert [json.loads(a) for a in final.all("ENTRYPOINT")] == [["sendgrid-operator"]]
    assert [json.loads(a) for a in final.all("CMD")] == [["operator"]]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "sendgrid-operator" in scripts


def test_wheel_is_built_and_installed_no_build_tools_in_final_stage() -> None:
    _, stages = load()
    build_runs = " ".join(r for s in stages[:-1] for r in s.all("RUN"))
    assert "pip wheel" in build_runs
    assert ".whl" in build_runs
    final = stages[-1]
    final_text = " ".join(arg for _, arg in final.instructions)
    for tool in BUILD_TOOLS:
        assert tool not in final_text, tool
    assert "apt-get install" not in final_text
    assert "pip install" not in final_text
    copies = final.all("COPY")
    assert copies and all(c.startswith("--from=") for c in copies), copies


def test_oci_labels() -> None:
    _, stages = load()
    labels = " ".join(stages[-1].all("LABEL"))
    for key in ("title", "description", "version", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels, key


def test_no_registry_host_in_image_names() -> None:
    args, stages = load()
    for ref in [args["PYTHON_IMAGE"], *(s.base for s in stages)]:
        if "/" in ref:
            host = ref.split("/")[0]
            assert "." not in host and ":" not in host and host != "localhost", ref


def test_dockerignore_keeps_the_context_small() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "operator"}
    _, stages = load()
    copied = {
        src.rstrip("/")
        for stage in stages
        for c in stage.all("COPY")
        if not c.startswith("--from=")
        for src in c.split()[:-1]
    }
    assert copied <= allowed
