"""``sendgrid-operator operator``: load and validate the settings, then run the operator."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from sendgrid_operator.controller.settings import Settings, SettingsError


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = "Settings come from SGOP_* environment variables; see docs/install.md."


def run(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"sendgrid-operator: {exc}", file=sys.stderr)
        return 2
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=settings.log_level, handlers=[handler], force=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # kopf logs every handler and timer call at INFO; failures still show at WARNING+.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    logging.getLogger("kopf.activities").setLevel(logging.WARNING)
    from sendgrid_operator.controller.handlers import run as run_operator

    run_operator(settings)
    return 0
