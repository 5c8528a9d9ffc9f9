"""``sendgrid-operator emulator``: run the SendGrid emulator until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from sendgrid_operator.emulator.config import ApiKey, EmulatorConfig
from sendgrid_operator.emulator.faults import FaultSpec
from sendgrid_operator.emulator.ratelimit import RateLimitSpec
from sendgrid_operator.emulator.server import Emulator


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port", type=int, default=3000, help="port to listen on (0: any free port)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--api-key",
        action="append",
        type=ApiKey.parse,
        metavar="KEY[:scope,scope]",
        help="an accepted API key and its scopes (repeatable; default SG.test-emulator-key "
        "with marketing.read and a few others)",
    )
    parser.add_argument("--state", metavar="FILE", help="persist state in this SQLite file")
    parser.add_argument(
        "--apply-delay",
        type=float,
        default=0.2,
        metavar="SECONDS",
        help="delay before a job is applied",
    )
    parser.add_argument(
        "--fault",
        action="append",
        type=FaultSpec.parse,
        default=[],
        metavar="SPEC",
        help="SELECTOR:KIND[:key=value,...], e.g. upsert:503:count=2 (repeatable)",
    )
    parser.add_argument("--fault-seed", type=int, help="seed for probability-based faults")
    parser.add_argument(
        "--rate-limit",
        action="append",
        type=RateLimitSpec.parse,
        default=[],
        metavar="SELECTOR=LIMIT[/SECONDS]",
        help="a fixed-window rate limit, e.g. upsert=10/1 (repeatable)",
    )
    parser.add_argument(
        "--reset-header",
        choices=("epoch", "seconds"),
        default="epoch",
        help="X-RateLimit-Reset as epoch seconds or seconds remaining",
    )
    parser.add_argument("--quiet", action="store_true", help="no summary at shutdown")


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    config = EmulatorConfig(
        host=args.host,
        port=args.port,
        apply_delay=args.apply_delay,
        faults=list(args.fault),
        rate_limits=list(args.rate_limit),
        reset_header=args.reset_header,
        state_file=args.state,
        fault_seed=args.fault_seed,
        print_summary=not args.quiet,
        freeze_gc=True,
    )
    if args.api_key:
        config.api_keys = list(args.api_key)
    return config


async def serve(config: EmulatorConfig) -> None:
    emulator = Emulator(config)
    await emulator.start()
    keys = ", ".join(k.key for k in config.api_keys)
    print(f"SendGrid emulator listening on {emulator.url} (API keys: {keys})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await emulator.stop()


def run(args: argparse.Namespace) -> int:
    asyncio.run(serve(config_from_args(args)))
    return 0
