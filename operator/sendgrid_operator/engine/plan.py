"""What one run needs: the resolved export (:class:`ExportPlan`) and the engine's knobs.

The plan is the seam between the engine and whoever starts it. The local command builds it
from manifests; the cluster Job builds it from mounted Secrets and ConfigMaps. Both pass a
:class:`Resolver` so that sources can read Secret and ConfigMap values without the engine
knowing where they live.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sendgrid_operator.api.common import KeySelector
from sendgrid_operator.api.export import SegmentExportSpec
from sendgrid_operator.api.report import RunTrigger
from sendgrid_operator.sendgrid.retry import RetryPolicy

#: SendGrid's ceilings per upsert (facts §2): 30,000 contacts or 6 MB. "MB" is not defined,
#: so the body limit keeps a margin below 6,000,000 bytes.
MAX_CONTACTS_PER_UPSERT = 30_000
MAX_UPSERT_BYTES = 5_900_000


class Resolver(Protocol):
    """Reads Secret and ConfigMap values in the export's namespace."""

    def secret(self, ref: KeySelector) -> str:
        """The text of a Secret key; raises KeyError with a clear message if missing."""
        ...

    def config_map(self, ref: KeySelector) -> bytes:
        """The bytes of a ConfigMap key (data or binaryData); raises KeyError if missing."""
        ...


@dataclass(frozen=True)
class ExportPlan:
    """One export, resolved: the spec, where SendGrid is, and how to read secrets."""

    namespace: str
    name: str
    spec: SegmentExportSpec
    api_key: str = field(repr=False)
    base_url: str
    resolver: Resolver = field(repr=False)
    run_id: str = ""
    trigger: RunTrigger | None = None


@dataclass(frozen=True)
class EngineSettings:
    """Tuning of one run. The defaults suit the real SendGrid; tests shrink the waits."""

    upload_concurrency: int = 3
    """Upsert requests in flight at once (their jobs are polled meanwhile)."""
    max_contacts_per_upsert: int = MAX_CONTACTS_PER_UPSERT
    max_upsert_bytes: int = MAX_UPSERT_BYTES
    poll_initial: float = 0.25
    """First wait before polling a job; it grows by 1.5x up to ``poll_max``. Short,
    because a small job is often done within a second and the run's end waits for the
    last one; a long job soon polls every ``poll_max`` seconds (8 polls in its first
    12.5 s, 7 in 15 s when this was 0.5)."""
    poll_max: float = 5.0
    poll_last: float = 0.05
    """Once every body is accepted, the run only waits for its jobs: the newest one is
    then polled after at most this long, growing by 1.5x (a few more requests a run),
    and the older ones at once when it is seen finished."""
    job_timeout: float = 1800.0
    """A job still pending this long after its upsert fails the run."""
    export_timeout: float = 1800.0
    """How long a contacts export (mirror's membership read) may take."""
    progress_interval: float = 0.25
    """Minimum seconds between progress callbacks (phase changes always report)."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    early_upload: bool = True
    """Send during the first pass when nothing can refuse the run any more
    (:mod:`.early`); off: every write waits until the whole segment is read."""
    spool_dir: Path | None = None
    """Where the run's temporary spool file goes (default: the system temp dir)."""
    timeout: float = 60.0
    """Per-request HTTP timeout."""
