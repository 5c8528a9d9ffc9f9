"""Emulator configuration: the knobs a test or the CLI turns, in one typed place.

Everything the emulator can be told at start-up lives here (keys, delay, faults, rate limits,
persistence). The parsers for the CLI's string forms live next to the types they build, so
the CLI and the admin API accept exactly the same spellings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sendgrid_operator.emulator.faults import FaultSpec
from sendgrid_operator.emulator.ratelimit import RateLimitSpec

DEFAULT_API_KEY = "SG.test-emulator-key"
# marketing.read grants read *and* write on the Marketing API (facts §7); the others are
# what a typical full-ish key also carries, so /v3/scopes answers something realistic.
DEFAULT_SCOPES: tuple[str, ...] = (
    "marketing.read",
    "mail.send",
    "api_keys.read",
    "scopes.read",
)

# SendGrid's documented ceilings (facts §2, §4, §6).
MAX_CONTACTS_PER_UPSERT = 30_000
# "6 MB" is not defined upstream; we choose the smaller reading, 6,000,000 bytes (docs/emulator.md).
MAX_UPSERT_BODY_BYTES = 6_000_000
MAX_LISTS = 1000
MAX_CUSTOM_FIELDS = 500
MAX_LISTS_PER_CONTACT = 250
MAX_SEARCH_EMAILS = 100
MAX_BATCH_IDS = 100

ResetMode = Literal["epoch", "seconds"]


@dataclass(frozen=True)
class ApiKey:
    """An API key and the scopes ``GET /v3/scopes`` reports for it."""

    key: str
    scopes: tuple[str, ...] = DEFAULT_SCOPES

    @classmethod
    def parse(cls, text: str) -> ApiKey:
        """``KEY`` or ``KEY:scope,scope`` (an empty scope list gives a key with no scopes)."""
        key, sep, scopes = text.partition(":")
        if not key:
            raise ValueError(f"empty API key in {text!r}")
        if not sep:
            return cls(key)
        return cls(key, tuple(s.strip() for s in scopes.split(",") if s.strip()))


@dataclass
class EmulatorConfig:
    """How an :class:`~sendgrid_operator.emulator.server.Emulator` behaves."""

    host: str = "127.0.0.1"
    port: int = 0  # 0: pick a free port
    api_keys: list[ApiKey] = field(default_factory=lambda: [ApiKey(DEFAULT_API_KEY)])
    apply_delay: float = 0.2  # seconds between a job's 202 and its contacts being applied
    faults: list[FaultSpec] = field(default_factory=list)
    rate_limits: list[RateLimitSpec] = field(default_factory=list)
    reset_header: ResetMode = "epoch"
    state_file: str | None = None  # SQLite file; None keeps everything in memory
    save_interval: float = 1.0  # seconds between saves of changed state (with state_file)
    fault_seed: int | None = None  # seed for probability-based faults
    print_summary: bool = False  # print the human summary at shutdown
    freeze_gc: bool = False  # gc.freeze() after each batch (the CLI sets it; see hotpath.py)
