"""Fault injection: make the emulator misbehave on purpose, exactly when a test says so.

A fault is ``SELECTOR:KIND[:key=value,...]`` on the command line, or the same fields as JSON
through ``POST /_emulator/faults``. Faults are deterministic by default (the next ``count``
matching requests, after skipping ``after`` of them); ``probability`` with a seed makes
them random but repeatable.

Request faults act before authentication: ``429``, ``500``, ``503``, ``delay`` (then the
request proceeds normally), ``drop`` (close the socket without a response). Job faults act
on the job a request creates (``upsert`` or ``list_remove``): ``reject_rows`` rejects every
``every``-th row or rows whose email matches ``pattern``; ``fail_job`` ends it ``failed``.
"""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from sendgrid_operator.emulator.endpoints import check_selector, matches

REQUEST_KINDS = frozenset({"429", "500", "503", "delay", "drop"})
JOB_KINDS = frozenset({"reject_rows", "fail_job"})
KINDS = REQUEST_KINDS | JOB_KINDS
INJECTED_ROW_ERROR = "rejected by an injected emulator fault"


@dataclass(frozen=True)
class FaultSpec:
    """What to break, where, and how often.

    ``count``: how many matching requests/jobs fire (``None``: every one). ``after``: how
    many matching ones to let through first. ``probability``: fire each time with this
    chance instead of always. ``seconds``: the delay for ``delay``. ``every`` / ``pattern``:
    which rows ``reject_rows`` rejects (every k-th row, 1-based; or email regex).
    """

    selector: str
    kind: str
    count: int | None = 1
    after: int = 0
    probability: float | None = None
    seconds: float = 1.0
    every: int | None = None
    pattern: str | None = None

    def __post_init__(self) -> None:
        check_selector(self.selector)
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; use one of {sorted(KINDS)}")
        if self.kind == "reject_rows" and self.every is None and self.pattern is None:
            raise ValueError("reject_rows needs every=K or pattern=REGEX")
        if self.every is not None and self.every < 1:
            raise ValueError("every must be >= 1")
        if self.pattern is not None:
            re.compile(self.pattern)

    @classmethod
    def parse(cls, text: str) -> FaultSpec:
        """Parse ``SELECTOR:KIND[:key=value,...]``, e.g. ``upsert:503:count=2``."""
        parts = text.split(":", 2)
        if len(parts) < 2:
            raise ValueError(f"fault {text!r} is not SELECTOR:KIND[:key=value,...]")
        params: dict[str, str] = {}
        if len(parts) == 3 and parts[2]:
            for item in parts[2].split(","):
                key, sep, value = item.partition("=")
                if not sep:
                    raise ValueError(f"fault parameter {item!r} is not key=value")
                params[key.strip()] = value.strip()
        return cls.from_dict({"selector": parts[0], "kind": parts[1], **params})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultSpec:
        """Build from JSON/CLI values (strings are converted)."""
        known = {"selector", "kind", "count", "after", "probability", "seconds", "every", "pattern"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault parameters {sorted(unknown)}")
        count = data.get("count", 1)
        if count in ("*", "inf", "all", None):
            count = None
        return cls(
            selector=str(data["selector"]),
            kind=str(data["kind"]),
            count=None if count is None else int(count),
            after=int(data.get("after", 0)),
            probability=None if data.get("probability") is None else float(data["probability"]),
            seconds=float(data.get("seconds", 1.0)),
            every=None if data.get("every") is None else int(data["every"]),
            pattern=None if data.get("pattern") is None else str(data["pattern"]),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Active:
    spec: FaultSpec
    seen: int = 0
    fired: int = 0
    compiled: re.Pattern[str] | None = field(default=None)

    def exhausted(self) -> bool:
        return self.spec.count is not None and self.fired >= self.spec.count


class FaultInjector:
    """Holds the active faults and decides, request by request, which one fires."""

    def __init__(self, specs: list[FaultSpec], seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self._active: list[_Active] = []
        for spec in specs:
            self.add(spec)

    def add(self, spec: FaultSpec) -> None:
        compiled = re.compile(spec.pattern) if spec.pattern else None
        self._active.append(_Active(spec, compiled=compiled))

    def clear(self) -> None:
        self._active.clear()

    def describe(self) -> list[dict[str, Any]]:
        return [{**a.spec.to_dict(), "fired": a.fired} for a in self._active]

    def _take(
        self, kinds: frozenset[str], endpoint: str, method: str, path: str
    ) -> list[FaultSpec]:
        fired: list[FaultSpec] = []
        for active in self._active:
            spec = active.spec
            if spec.kind not in kinds or active.exhausted():
                continue
            if not matches(spec.selector, endpoint, method, path):
                continue
            active.seen += 1
            if active.seen <= spec.after:
                continue
            if spec.probability is not None and self._rng.random() >= spec.probability:
                continue
            active.fired += 1
            fired.append(spec)
        return fired

    def request_faults(self, endpoint: str, method: str, path: str) -> list[FaultSpec]:
        """Every request fault that fires for this request (delays first, then one outcome)."""
        if not self._active:
            return []
        fired = self._take(REQUEST_KINDS, endpoint, method, path)
        delays = [f for f in fired if f.kind == "delay"]
        outcome = [f for f in fired if f.kind != "delay"][:1]
        return delays + outcome

    def job_faults(self, endpoint: str, method: str, path: str) -> list[FaultSpec]:
        """The job faults that apply to the job this request creates."""
        if not self._active:
            return []
        return self._take(JOB_KINDS, endpoint, method, path)


def row_rejected(spec: FaultSpec, index: int, email: str | None) -> bool:
    """Whether ``reject_rows`` rejects row ``index`` (0-based) with this email."""
    if spec.every is not None and (index + 1) % spec.every == 0:
        return True
    return (
        spec.pattern is not None
        and email is not None
        and re.search(spec.pattern, email) is not None
    )
