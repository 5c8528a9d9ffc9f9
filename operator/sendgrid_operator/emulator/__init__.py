"""A local SendGrid Marketing API emulator held to SendGrid's official API documents.

Public surface: :class:`Emulator` (the server), :class:`EmulatorConfig`, :class:`ApiKey`,
:class:`FaultSpec`, :class:`RateLimitSpec`, and :class:`AdminClient` (typed client for the
``/_emulator/`` admin API). See docs/emulator.md.
"""

from __future__ import annotations

from sendgrid_operator.emulator.admin import AdminClient
from sendgrid_operator.emulator.config import DEFAULT_API_KEY, ApiKey, EmulatorConfig
from sendgrid_operator.emulator.context import RequestRecord
from sendgrid_operator.emulator.faults import FaultSpec
from sendgrid_operator.emulator.ratelimit import RateLimitSpec
from sendgrid_operator.emulator.server import Emulator

__all__ = [
    "DEFAULT_API_KEY",
    "AdminClient",
    "ApiKey",
    "Emulator",
    "EmulatorConfig",
    "FaultSpec",
    "RateLimitSpec",
    "RequestRecord",
]
