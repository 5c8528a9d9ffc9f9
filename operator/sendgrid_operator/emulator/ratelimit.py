"""Per-endpoint fixed-window rate limits with SendGrid's ``X-RateLimit-*`` headers.

SendGrid publishes no per-endpoint numbers for the Marketing API (facts §8), so every
endpoint gets a generous default window that tests never hit; ``--rate-limit`` tightens
one. ``X-RateLimit-Reset`` is epoch seconds (the docs' example) or seconds remaining (the
newest spec's wording), chosen with ``--reset-header``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from sendgrid_operator.emulator.endpoints import check_selector, matches

DEFAULT_LIMIT = 100_000
DEFAULT_WINDOW = 60.0
TOO_MANY_REQUESTS = "too many requests"


@dataclass(frozen=True)
class RateLimitSpec:
    """``limit`` requests per ``window`` seconds for the endpoints ``selector`` picks."""

    selector: str
    limit: int
    window: float = 60.0

    def __post_init__(self) -> None:
        check_selector(self.selector)
        if self.limit < 0 or self.window <= 0:
            raise ValueError("rate limit needs limit >= 0 and window > 0")

    @classmethod
    def parse(cls, text: str) -> RateLimitSpec:
        """``SELECTOR=LIMIT[/SECONDS]``, e.g. ``upsert=10/1`` or ``lists=100``."""
        selector, sep, rest = text.rpartition("=")
        if not sep:
            raise ValueError(f"rate limit {text!r} is not SELECTOR=LIMIT[/SECONDS]")
        limit, _, window = rest.partition("/")
        return cls(selector, int(limit), float(window) if window else DEFAULT_WINDOW)


@dataclass
class Decision:
    """The outcome for one request: allowed or not, and the header values."""

    allowed: bool
    limit: int
    remaining: int
    reset_epoch: float

    def headers(self, mode: str, now: float | None = None) -> dict[str, str]:
        if mode == "seconds":
            left = self.reset_epoch - (time.time() if now is None else now)
            reset = str(max(0, math.ceil(left)))
        else:
            reset = str(math.ceil(self.reset_epoch))
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": reset,
        }


class RateLimiter:
    """One fixed window per endpoint name; the last matching spec wins."""

    def __init__(self, specs: list[RateLimitSpec]) -> None:
        self.specs = list(specs)
        self._windows: dict[str, tuple[float, int]] = {}  # endpoint -> (window start, used)

    def set(self, specs: list[RateLimitSpec]) -> None:
        self.specs = list(specs)
        self._windows.clear()

    def _spec_for(self, endpoint: str, method: str, path: str) -> tuple[int, float]:
        for spec in reversed(self.specs):
            if matches(spec.selector, endpoint, method, path):
                return spec.limit, spec.window
        return DEFAULT_LIMIT, DEFAULT_WINDOW

    def check(self, endpoint: str, method: str, path: str, now: float | None = None) -> Decision:
        """Count this request against its window and say whether it may proceed."""
        now = time.time() if now is None else now
        limit, window = self._spec_for(endpoint, method, path)
        start, used = self._windows.get(endpoint, (now, 0))
        if now >= start + window:
            start, used = now, 0
        allowed = used < limit
        if allowed:
            used += 1
        self._windows[endpoint] = (start, used)
        return Decision(allowed, limit, max(0, limit - used), start + window)

    def exhaust(self, endpoint: str, method: str, path: str, now: float | None = None) -> Decision:
        """The headers of an injected 429: the window looks used up."""
        now = time.time() if now is None else now
        limit, window = self._spec_for(endpoint, method, path)
        start, _ = self._windows.get(endpoint, (now, 0))
        if now >= start + window:
            start = now
        return Decision(False, limit, 0, start + window)
