"""How long to wait before retrying, and for how long to keep trying.

Two separate concerns live here because both need careful reading of SendGrid's headers:

- **Rate limits.** A 429 says when to come back through ``Retry-After`` (not documented
  for SendGrid, honoured when present) or ``X-RateLimit-Reset``, whose meaning differs
  between SendGrid's own documents: epoch seconds in the docs' example, seconds to wait in
  the newest spec (facts §8). A value above ~1e9 can only be a timestamp, so both readings
  are accepted. ``X-RateLimit-Remaining: 0`` on a success asks the next request to the
  same endpoint to wait for the window to reset (a proactive slow-down).
- **Transient failures.** 5xx, timeouts and dropped connections are retried with
  exponential backoff and full jitter (AWS architecture blog, "Exponential Backoff And
  Jitter") inside a bounded budget: a number of attempts and a total time.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

#: A reset value above this is a Unix timestamp; below, seconds to wait.
EPOCH_THRESHOLD = 1e9


@dataclass(frozen=True)
class RetryPolicy:
    """The retry budget. Tests use tiny delays; the defaults suit the real SendGrid."""

    max_attempts: int = 6
    """Attempts per request for 5xx, timeouts and dropped connections (1 = no retry)."""
    max_rate_limited: int = 20
    """Attempts per request that may be answered 429 before giving up."""
    total_seconds: float = 300.0
    """No retry starts after this long since the request's first attempt."""
    base_delay: float = 0.5
    """Backoff base: attempt n waits uniform(0, min(max_delay, base_delay * 2**n))."""
    max_delay: float = 30.0
    """Backoff ceiling, and the longest single wait a rate-limit header may ask for."""
    default_rate_limit_wait: float = 1.0
    """The wait after a 429 that carries no usable header."""

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full jitter: a uniform wait up to the exponential ceiling for ``attempt`` (0-based)."""
        ceiling = min(self.max_delay, self.base_delay * (2**attempt))
        return (rng or random).uniform(0.0, ceiling)


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value.strip())
    except ValueError:
        return None


def seconds_until(value: float, now: float | None = None) -> float:
    """A reset value as seconds to wait: epoch seconds when > 1e9, else seconds already."""
    if value > EPOCH_THRESHOLD:
        return max(0.0, value - (time.time() if now is None else now))
    return max(0.0, value)


def rate_limit_wait(
    headers: Mapping[str, str], policy: RetryPolicy, now: float | None = None
) -> float:
    """How long a 429 asks to wait: Retry-After first, then X-RateLimit-Reset, capped."""
    for name in ("retry-after", "x-ratelimit-reset"):
        value = _number(headers.get(name))
        if value is not None:
            return min(policy.max_delay, seconds_until(value, now))
    return min(policy.max_delay, policy.default_rate_limit_wait)


def exhausted_window_wait(
    headers: Mapping[str, str], policy: RetryPolicy, now: float | None = None
) -> float | None:
    """If ``X-RateLimit-Remaining`` is 0, how long to wait before the next request."""
    remaining = _number(headers.get("x-ratelimit-remaining"))
    if remaining is None or remaining > 0:
        return None
    reset = _number(headers.get("x-ratelimit-reset"))
    if reset is None:
        return min(policy.max_delay, policy.default_rate_limit_wait)
    return min(policy.max_delay, seconds_until(reset, now))
