"""The export engine: stream segments from their sources into SendGrid lists, verified.

Public surface (used by the local command and by the cluster's export Job):

- :func:`run_export` with :class:`ExportPlan`, :class:`EngineSettings` and a
  :class:`StateStore` (:class:`FileStateStore` locally);
- the progress callback type :data:`ProgressCallback` (``(Progress) -> None``);
- :class:`Reason`, :func:`exit_code` and the ``EXIT_*`` codes.

See docs/export-engine.md for sources, mapping, validation reasons, batching and modes.
"""

from sendgrid_operator.engine.outcomes import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_SENDGRID,
    EXIT_UNEXPECTED,
    Reason,
    exit_code,
)
from sendgrid_operator.engine.plan import EngineSettings, ExportPlan, Resolver
from sendgrid_operator.engine.progress import ProgressCallback
from sendgrid_operator.engine.run import run_export
from sendgrid_operator.engine.state import FileStateStore, MemoryStateStore, StateStore

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_SENDGRID",
    "EXIT_UNEXPECTED",
    "EngineSettings",
    "ExportPlan",
    "FileStateStore",
    "MemoryStateStore",
    "ProgressCallback",
    "Reason",
    "Resolver",
    "StateStore",
    "exit_code",
    "run_export",
]
