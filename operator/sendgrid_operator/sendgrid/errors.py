"""The SendGrid client's errors: every HTTP and transport failure is translated here, once.

The tree::

    SendGridError                 anything SendGrid (or the way to it) did wrong
    ├── AuthenticationError       401: the API key was rejected
    ├── PermissionDenied          403: the key lacks a scope (marketing.read)
    ├── NotFound                  404: a list, job or file does not exist
    ├── RequestRejected           400 and other 4xx: SendGrid refused the request's content
    └── Unavailable               5xx, timeouts, dropped connections after the retry budget
        └── RateLimited           429 after the retry budget

Messages say what to fix and never carry the API key or request headers: they are built
from the endpoint name, the status and SendGrid's own error messages only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorItem:
    """One entry of SendGrid's ``{"errors": [...]}`` body."""

    message: str
    field: str | None = None


class SendGridError(Exception):
    """Base of every error the client raises."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str = "",
        status: int | None = None,
        errors: tuple[ErrorItem, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.endpoint = endpoint
        self.status = status
        self.errors = errors

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, endpoint={self.endpoint!r}, status={self.status})"


class AuthenticationError(SendGridError):
    """401: the API key was rejected."""


class PermissionDenied(SendGridError):
    """403: the key lacks the scope the operation needs."""


class NotFound(SendGridError):
    """404: the object named in the request does not exist in this account."""


class RequestRejected(SendGridError):
    """400 (or another 4xx): SendGrid refused the request; ``errors`` holds its reasons."""


class Unavailable(SendGridError):
    """5xx, timeouts or dropped connections, still failing after the retry budget."""


class RateLimited(Unavailable):
    """429, still failing after the retry budget."""


_MAX_MESSAGE = 300


def parse_errors(body: bytes) -> tuple[ErrorItem, ...]:
    """SendGrid's error bodies, in all the shapes its documents declare (facts §2, §4)."""
    try:
        data = json.loads(body)
    except ValueError:
        text = body[:_MAX_MESSAGE].decode("utf-8", "replace").strip()
        return (ErrorItem(text),) if text else ()
    if isinstance(data, dict) and "errors" in data:
        data = data["errors"]
    if isinstance(data, dict):
        data = [data]
    items: list[ErrorItem] = []
    if isinstance(data, list):
        for item in data[:100]:
            if isinstance(item, dict):
                field = item.get("field")
                items.append(
                    ErrorItem(
                        str(item.get("message", ""))[:_MAX_MESSAGE],
                        str(field) if field is not None else None,
                    )
                )
    return tuple(items)
