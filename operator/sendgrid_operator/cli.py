"""The ``sendgrid-operator`` command: one entry point, one subcommand per job.

Each subcommand lives next to the code it drives and is imported only when chosen, so
``sendgrid-operator emulator`` never pays for kopf and the export Job never imports the
emulator. A subcommand module exposes two functions:

- ``configure(parser: argparse.ArgumentParser) -> None`` adds its arguments;
- ``run(args: argparse.Namespace) -> int`` does the work and returns the exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from sendgrid_operator import __version__

# name -> (module, one-line help). Modules are imported lazily.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "emulator": (
        "sendgrid_operator.emulator.cli",
        "run the local SendGrid Marketing API emulator",
    ),
    "export": (
        "sendgrid_operator.engine.cli",
        "run one export from manifests on this machine, without a cluster",
    ),
    "operator": (
        "sendgrid_operator.controller.cli",
        "run the Kubernetes operator (reconciles connections and exports)",
    ),
    "job": (
        "sendgrid_operator.controller.jobcli",
        "run one export inside its Kubernetes Job (used by the operator)",
    ),
}


def _build_parser(argv: Sequence[str]) -> tuple[argparse.ArgumentParser, str | None]:
    parser = argparse.ArgumentParser(
        prog="sendgrid-operator",
        description="Export customer segments into SendGrid Marketing contact lists.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.configure(sp)
    return parser, chosen if chosen in SUBCOMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser, chosen = _build_parser(args_list)
    args = parser.parse_args(args_list)
    if chosen is None:
        parser.print_help()
        return 2
    module = importlib.import_module(SUBCOMMANDS[chosen][0])
    result: int = module.run(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
