"""Argo CD health checks and actions (deploy/argocd), run in a Lua 5.1 like Argo CD's.

Argo CD runs these scripts in gopher-lua (Lua 5.1) with only the base, table and package
libraries and a "safe" os (time, date, clock, difftime): no string or math library. The
runner below gives the scripts exactly that, so a script that would fail in Argo CD fails
here. It reads Argo CD's own test layout: ``health_test.yaml`` next to ``health.lua`` and
``actions/action_test.yaml`` next to the actions, each pointing at ``testdata/*.yaml``.
"""

from __future__ import annotations

import calendar
import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

lupa51 = pytest.importorskip("lupa.lua51", reason="lupa (a dev dependency) provides Lua 5.1")

ROOT = Path(__file__).resolve().parents[2]
ARGOCD = ROOT / "deploy" / "argocd"
KINDS = sorted(p.parent for p in ARGOCD.glob("*/*/health.lua"))
HEALTH_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}
#: Action tests run with the clock frozen here (the value run-now writes is then known).
FROZEN_NOW = calendar.timegm((2026, 11, 28, 12, 0, 0, 0, 0, 0))

_SANDBOX = """
local real_os = os
return function(script, obj, now)
  local safe_os = {
    time = real_os.time,
    clock = real_os.clock,
    difftime = real_os.difftime,
    date = function(fmt, t) return real_os.date(fmt, t or now) end,
  }
  local env = {
    obj = obj, ipairs = ipairs, pairs = pairs, next = next, type = type,
    tostring = tostring, tonumber = tonumber, error = error, pcall = pcall,
    select = select, unpack = unpack, assert = assert, rawget = rawget, rawset = rawset,
    setmetatable = setmetatable, getmetatable = getmetatable,
    table = table, os = safe_os,
  }
  env.require = function(name)
    if name == "os" then return safe_os end
    error("module '" .. name .. "' is not available in Argo CD's Lua")
  end
  local chunk = assert(loadstring(script))
  setfenv(chunk, env)
  return chunk()
end
"""


class ArgoLua:
    """A Lua 5.1 runtime restricted to what Argo CD's resource customizations get."""

    def __init__(self) -> None:
        self.lua = lupa51.LuaRuntime(unpack_returned_tuples=True)
        # gopher-lua without its string library has no string methods ("x"):sub(1)
        self.lua.execute('getmetatable("").__index = nil')
        self.lua.execute("string = nil; math = nil; io = nil; debug = nil")
        self._run = self.lua.execute(_SANDBOX)

    def to_lua(self, value: Any) -> Any:
        if isinstance(value, dict):
            return self.lua.table_from({k: self.to_lua(v) for k, v in value.items()})
        if isinstance(value, list):
            return self.lua.table_from([self.to_lua(v) for v in value])
        return value

    def to_python(self, value: Any) -> Any:
        if lupa51.lua_type(value) != "table":
            return value
        items = {k: self.to_python(v) for k, v in value.items()}
        if items and all(isinstance(k, int) for k in items):
            assert sorted(items) == list(range(1, len(items) + 1)), items
            return [items[i] for i in range(1, len(items) + 1)]
        return items

    def run(self, script: Path, obj: dict[str, Any], now: int | None = None) -> Any:
        return self.to_python(self._run(script.read_text(), self.to_lua(obj), now))


@pytest.fixture(scope="module")
def argo() -> ArgoLua:
    return ArgoLua()


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _health_cases() -> list[Any]:
    cases = []
    for kind in KINDS:
        for test in load(kind / "health_test.yaml")["tests"]:
            cases.append(pytest.param(kind, test, id=f"{kind.name}-{test['inputPath']}"))
    return cases


def _action_files() -> list[Path]:
    return sorted(ARGOCD.glob("*/*/actions/action_test.yaml"))


def _discovery_cases() -> list[Any]:
    return [
        pytest.param(f.parent, t, id=f"{f.parent.parent.name}-{t['inputPath']}")
        for f in _action_files()
        for t in load(f)["discoveryTests"]
    ]


def _action_cases() -> list[Any]:
    return [
        pytest.param(f.parent, t, id=f"{f.parent.parent.name}-{t['action']}-{t['inputPath']}")
        for f in _action_files()
        for t in load(f)["actionTests"]
    ]


def test_both_kinds_have_health_checks() -> None:
    assert [k.name for k in KINDS] == ["SegmentExport", "SendGridConnection"]
    assert all(k.parent.name == "sendgrid-operator.io" for k in KINDS)
    assert _action_files() == [
        ARGOCD / "sendgrid-operator.io/SegmentExport/actions/action_test.yaml"
    ]


@pytest.mark.parametrize(("kind", "test"), _health_cases())
def test_health(argo: ArgoLua, kind: Path, test: dict[str, Any]) -> None:
    obj = load(kind / test["inputPath"])
    assert obj["kind"] == kind.name
    result = argo.run(kind / "health.lua", obj)
    assert result["status"] in HEALTH_STATUSES
    assert result == test["healthStatus"]


@pytest.mark.parametrize(("actions", "test"), _discovery_cases())
def test_action_discovery(argo: ArgoLua, actions: Path, test: dict[str, Any]) -> None:
    result = argo.run(actions / "discovery.lua", load(actions / test["inputPath"]))
    expected = {a["name"]: {"disabled": a["disabled"]} for a in test["result"]}
    assert result == expected
    for name in result:
        assert (actions / name / "action.lua").is_file(), name


@pytest.mark.parametrize(("actions", "test"), _action_cases())
def test_action(argo: ArgoLua, actions: Path, test: dict[str, Any]) -> None:
    obj = load(actions / test["inputPath"])
    result = argo.run(actions / test["action"] / "action.lua", obj, now=FROZEN_NOW)
    assert result == load(actions / test["expectedOutputPath"])


def test_run_now_with_the_real_clock_sets_a_new_utc_timestamp(argo: ArgoLua) -> None:
    actions = ARGOCD / "sendgrid-operator.io/SegmentExport/actions"
    obj = load(actions / "testdata/run-requested-before.yaml")
    result = argo.run(actions / "run-now/action.lua", obj)
    value = result["metadata"]["annotations"]["sendgrid-operator.io/run-requested-at"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", value)
    assert value != obj["metadata"]["annotations"]["sendgrid-operator.io/run-requested-at"]
    assert result["metadata"]["annotations"]["team"] == "crm"


def test_every_testdata_file_is_used() -> None:
    for folder in ARGOCD.glob("*/*"):
        used = {t["inputPath"] for t in load(folder / "health_test.yaml")["tests"]}
        assert used == {f"testdata/{p.name}" for p in (folder / "testdata").glob("*.yaml")}
    for test_file in _action_files():
        spec = load(test_file)
        used = {t["inputPath"] for t in spec["discoveryTests"]}
        used |= {t[k] for t in spec["actionTests"] for k in ("inputPath", "expectedOutputPath")}
        assert used == {
            f"testdata/{p.name}" for p in (test_file.parent / "testdata").glob("*.yaml")
        }


def test_the_sandbox_refuses_what_argo_cd_refuses(argo: ArgoLua, tmp_path: Path) -> None:
    for body in (
        'return string.sub("abc", 1, 1)',
        'return ("abc"):sub(1, 1)',
        "return math.floor(1.5)",
        'return require("io")',
    ):
        script = tmp_path / "bad.lua"
        script.write_text(body)
        with pytest.raises(lupa51.LuaError):
            argo.run(script, {})


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("gen_argocd_cm", ARGOCD / "gen_argocd_cm.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_argocd_cm_patch_is_up_to_date() -> None:
    assert (ARGOCD / "argocd-cm-patch.yaml").read_text() == _generator().render(), (
        "run: python deploy/argocd/gen_argocd_cm.py"
    )


def test_argocd_cm_patch_carries_the_scripts() -> None:
    patch = load(ARGOCD / "argocd-cm-patch.yaml")
    assert patch["kind"] == "ConfigMap" and patch["metadata"] == {"name": "argocd-cm"}
    data = patch["data"]
    export = ARGOCD / "sendgrid-operator.io/SegmentExport"
    connection = ARGOCD / "sendgrid-operator.io/SendGridConnection"
    key = "resource.customizations.{}.sendgrid-operator.io_{}"
    assert data[key.format("health", "SegmentExport")] == (export / "health.lua").read_text()
    assert (
        data[key.format("health", "SendGridConnection")] == (connection / "health.lua").read_text()
    )
    actions = yaml.safe_load(data[key.format("actions", "SegmentExport")])
    assert actions["discovery.lua"] == (export / "actions/discovery.lua").read_text()
    assert {d["name"]: d["action.lua"] for d in actions["definitions"]} == {
        name: (export / "actions" / name / "action.lua").read_text()
        for name in ("run-now", "suspend", "resume")
    }
