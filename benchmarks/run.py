"""Run the benchmarks: ``python -m benchmarks.run [NAME ...] [--quick]``.

Each ``benchmarks/bench_<name>.py`` exposes ``main(quick: bool) -> dict`` and returns its
figures; this runner writes them to ``benchmarks/results/<name>.json``. Figures are compared
against a baseline measured in the same run (this machine is small and noisy), so a result
carries its own ratio rather than an absolute promise.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import platform
import sys
import time
from pathlib import Path

import benchmarks

RESULTS = Path(__file__).parent / "results"


def discover() -> list[str]:
    return sorted(
        m.name.removeprefix("bench_")
        for m in pkgutil.iter_modules(benchmarks.__path__)
        if m.name.startswith("bench_")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run")
    parser.add_argument(
        "names", nargs="*", help=f"benchmarks to run (default: all of {discover()})"
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args(argv)
    names = args.names or discover()
    RESULTS.mkdir(exist_ok=True)
    for name in names:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        print(f"== {name}", flush=True)
        started = time.time()
        figures = module.main(quick=args.quick)
        record = {
            "benchmark": name,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "quick": args.quick,
            "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
            "figures": figures,
        }
        out = RESULTS / f"{name}.json"
        out.write_text(json.dumps(record, indent=2) + "\n")
        print(json.dumps(figures, indent=2))
        print(f"-> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
