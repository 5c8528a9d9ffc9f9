"""The one SendGrid HTTP client: every request the project makes to SendGrid goes through here.

Why one client: retries, rate limits, error translation, request counting and key hygiene
are done once, at this boundary, so the engine deals only in typed results and in the
errors of :mod:`sendgrid_operator.sendgrid.errors`.

It is one of the few modules over 400 lines, for that reason: the request loop (retries,
rate-limit windows, streaming of large bodies) and one small method per endpoint belong
together; the typed results live in ``results`` and the error tree in ``errors``.

Key hygiene: the API key is held in a private attribute, sent only as the ``Authorization``
header of requests to the configured base URL (never to the file URLs SendGrid hands out,
which point at other hosts), and appears in no repr, log line or exception message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from sendgrid_operator.sendgrid.errors import (
    AuthenticationError,
    NotFound,
    PermissionDenied,
    RateLimited,
    RequestRejected,
    SendGridError,
    Unavailable,
    parse_errors,
)
from sendgrid_operator.sendgrid.files import iter_file_rows
from sendgrid_operator.sendgrid.results import (
    ExportStatus,
    FieldDefinition,
    ImportStatus,
    ListInfo,
    as_int,
)
from sendgrid_operator.sendgrid.retry import (
    RetryPolicy,
    exhausted_window_wait,
    rate_limit_wait,
)

__all__ = [
    "MARKETING_SCOPE",
    "ExportStatus",
    "FieldDefinition",
    "ImportStatus",
    "ListInfo",
    "SendGridClient",
    "parse_errors",
]

log = logging.getLogger(__name__)

#: Contact IDs per list-removal request: 100 IDs of 36 characters keep the URL near 4 KB.
REMOVE_IDS_PER_REQUEST = 100
#: Emails per search request (facts §5: "up to 100 contacts").
SEARCH_EMAILS_PER_REQUEST = 100
MARKETING_SCOPE = "marketing.read"
#: Bodies larger than this are sent in pieces of this size (with their Content-Length):
#: given whole, the event loop's transport copies what the socket does not take at once,
#: nearly a second copy of a 6 MB upsert per connection.
STREAM_CHUNK = 1 << 18
_MAX_MESSAGE = 300


class SendGridClient:
    """Async client for the Marketing Campaigns endpoints the export engine uses.

    ``requests`` counts every response (and transport failure) as ``"endpoint status"``
    (``"upsert 202"``, ``"upsert 429"``, ``"upsert error"``) for the run report.
    """

    def __init__(
        self,
        api_key: str,
        base_url: str,
        *,
        policy: RetryPolicy | None = None,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.policy = policy or RetryPolicy()
        self.requests: Counter[str] = Counter()
        self._auth = {"Authorization": f"Bearer {api_key}"}
        self._origin = _origin(self.base_url)
        self._rng = rng or random.Random()
        self._not_before: dict[str, float] = {}
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
            follow_redirects=False,
            headers={"User-Agent": "sendgrid-operator"},
        )

    def __repr__(self) -> str:
        return f"SendGridClient(base_url={self.base_url!r})"

    async def __aenter__(self) -> SendGridClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- the request loop ---------------------------------------------------------------
    async def _send(
        self,
        endpoint: str,
        method: str,
        url: str,
        *,
        content: bytes | None = None,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        not_found: str | None = None,
    ) -> httpx.Response:
        """One logical request with retries; returns a 2xx response or raises."""
        full = url if url.startswith(("http://", "https://")) else self.base_url + url
        headers: dict[str, str] = {}
        if _origin(full) == self._origin:
            headers.update(self._auth)
        if json_body is not None:
            content = json.dumps(json_body).encode()
        if content is not None:
            headers["Content-Type"] = "application/json"
            if len(content) > STREAM_CHUNK:
                headers["Content-Length"] = str(len(content))
        policy = self.policy
        started = time.monotonic()
        failures = 0
        limited = 0
        while True:
            await self._respect_window(endpoint)
            try:
                response = await self._http.request(
                    method,
                    full,
                    content=_chunks(content)
                    if content is not None and len(content) > STREAM_CHUNK
                    else content,
                    params=params,
                    headers=headers,
                )
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                self.requests[f"{endpoint} error"] += 1
                failures += 1
                if failures >= policy.max_attempts or self._out_of_time(started):
                    raise Unavailable(
                        f"SendGrid did not answer {endpoint} after {failures} attempts "
                        f"({type(exc).__name__}); check the network and baseURL {self.base_url}",
                        endpoint=endpoint,
                    ) from exc
                await asyncio.sleep(policy.backoff(failures - 1, self._rng))
                continue
            status = response.status_code
            self.requests[f"{endpoint} {status}"] += 1
            wait = exhausted_window_wait(response.headers, policy)
            if wait:
                self._not_before[endpoint] = time.monotonic() + wait
            if status < 300:
                return response
            body = response.content
            if status == 429:
                limited += 1
                if limited >= policy.max_rate_limited or self._out_of_time(started):
                    raise RateLimited(
                        f"SendGrid kept answering {endpoint} with 429 (too many requests) "
                        f"after {limited} attempts",
                        endpoint=endpoint,
                        status=status,
                    )
                delay = rate_limit_wait(response.headers, policy)
                log.info("sendgrid %s: 429, waiting %.2fs", endpoint, delay)
                await asyncio.sleep(delay)
                continue
            if status >= 500:
                failures += 1
                if failures >= policy.max_attempts or self._out_of_time(started):
                    raise Unavailable(
                        f"SendGrid answered {endpoint} with {status} after {failures} attempts",
                        endpoint=endpoint,
                        status=status,
                        errors=parse_errors(body),
                    )
                await asyncio.sleep(policy.backoff(failures - 1, self._rng))
                continue
            raise self._translate(endpoint, status, body, not_found)

    def _out_of_time(self, started: float) -> bool:
        return time.monotonic() - started >= self.policy.total_seconds

    async def _respect_window(self, endpoint: str) -> None:
        until = self._not_before.get(endpoint)
        if until is not None:
            delay = until - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._not_before.pop(endpoint, None)

    def _translate(
        self, endpoint: str, status: int, body: bytes, not_found: str | None
    ) -> SendGridError:
        errors = parse_errors(body)
        detail = "; ".join(e.message for e in errors if e.message)
        if status == 401:
            return AuthenticationError(
                "SendGrid rejected the API key (401): check the Secret named by the "
                "connection's apiKeySecretRef",
                endpoint=endpoint,
                status=status,
                errors=errors,
            )
        if status == 403:
            return PermissionDenied(
                f"the API key may not call {endpoint} (403): it needs the {MARKETING_SCOPE} scope",
                endpoint=endpoint,
                status=status,
                errors=errors,
            )
        if status == 404:
            return NotFound(
                not_found or f"SendGrid found nothing for {endpoint} (404)",
                endpoint=endpoint,
                status=status,
                errors=errors,
            )
        return RequestRejected(
            f"SendGrid rejected the {endpoint} request ({status})"
            + (f": {detail}" if detail else ""),
            endpoint=endpoint,
            status=status,
            errors=errors,
        )

    async def _json(self, endpoint: str, method: str, url: str, **kw: Any) -> Any:
        response = await self._send(endpoint, method, url, **kw)
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError as exc:
            raise Unavailable(
                f"SendGrid answered {endpoint} with a body that is not JSON", endpoint=endpoint
            ) from exc

    # -- account and lists --------------------------------------------------------------
    async def scopes(self) -> list[str]:
        data = await self._json("scopes", "GET", "/v3/scopes")
        return [str(s) for s in data.get("scopes", [])]

    async def field_definitions(self) -> list[FieldDefinition]:
        data = await self._json("field_definitions", "GET", "/v3/marketing/field_definitions")
        out: list[FieldDefinition] = []
        for key, reserved in (("custom_fields", False), ("reserved_fields", True)):
            for item in data.get(key) or []:
                out.append(
                    FieldDefinition(
                        str(item.get("id", "")),
                        str(item.get("name", "")),
                        str(item.get("field_type", "Text")),
                        reserved,
                    )
                )
        return out

    async def get_list(self, list_id: str) -> ListInfo:
        data = await self._json(
            "list_get",
            "GET",
            f"/v3/marketing/lists/{list_id}",
            not_found=f"list {list_id} does not exist in this SendGrid account: check spec.listIds",
        )
        return ListInfo(
            str(data.get("id", list_id)),
            str(data.get("name", "")),
            as_int(data.get("contact_count")),
        )

    async def list_count(self, list_id: str) -> int:
        data = await self._json(
            "list_count",
            "GET",
            f"/v3/marketing/lists/{list_id}/contacts/count",
            not_found=f"list {list_id} does not exist in this SendGrid account",
        )
        return as_int(data.get("contact_count"))

    # -- contacts -----------------------------------------------------------------------
    async def upsert(self, body: bytes) -> str:
        """``PUT /v3/marketing/contacts`` with a pre-encoded body; returns the job ID."""
        data = await self._json(
            "upsert",
            "PUT",
            "/v3/marketing/contacts",
            content=body,
            not_found="one of spec.listIds does not exist in this SendGrid account",
        )
        job_id = data.get("job_id")
        if not job_id:
            raise Unavailable("SendGrid accepted an upsert without a job_id", endpoint="upsert")
        return str(job_id)

    async def import_status(self, job_id: str) -> ImportStatus:
        data = await self._json(
            "import_status",
            "GET",
            f"/v3/marketing/contacts/imports/{job_id}",
            not_found=f"SendGrid has no record of job {job_id}",
        )
        results = data.get("results") or {}
        return ImportStatus(
            id=str(data.get("id", job_id)),
            status=str(data.get("status", "pending")),
            requested=as_int(results.get("requested_count")),
            created=as_int(results.get("created_count")),
            updated=as_int(results.get("updated_count")),
            deleted=as_int(results.get("deleted_count")),
            errored=as_int(results.get("errored_count")),
            errors_url=results.get("errors_url") or None,
        )

    async def download_errors(self, url: str) -> list[dict[str, str]]:
        """The rows of a job's ``errors_url`` file (CSV or JSON), keys lower-cased."""
        response = await self._send("errors_download", "GET", url)
        return list(iter_file_rows(response.content))

    async def search_emails(self, emails: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Contacts by email (at most 100 per request; more are split). Missing ones are absent."""
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(emails), SEARCH_EMAILS_PER_REQUEST):
            chunk = list(emails[start : start + SEARCH_EMAILS_PER_REQUEST])
            try:
                data = await self._json(
                    "search_emails",
                    "POST",
                    "/v3/marketing/contacts/search/emails",
                    json_body={"emails": chunk},
                )
            except NotFound:
                continue  # nothing matched
            for email, item in (data.get("result") or {}).items():
                if isinstance(item, dict) and isinstance(item.get("contact"), dict):
                    found[str(email).lower()] = item["contact"]
        return found

    async def remove_from_list(self, list_id: str, contact_ids: Iterable[str]) -> list[str]:
        """Remove list membership (never the contacts), chunked; returns the job IDs."""
        ids = list(contact_ids)
        jobs: list[str] = []
        for start in range(0, len(ids), REMOVE_IDS_PER_REQUEST):
            chunk = ids[start : start + REMOVE_IDS_PER_REQUEST]
            data = await self._json(
                "list_remove",
                "DELETE",
                f"/v3/marketing/lists/{list_id}/contacts",
                params={"contact_ids": ",".join(chunk)},
                not_found=f"list {list_id} or one of the contacts to remove no longer exists",
            )
            if data.get("job_id"):
                jobs.append(str(data["job_id"]))
        return jobs

    # -- exports ------------------------------------------------------------------------
    async def start_export(self, list_ids: Sequence[str] | None, file_type: str = "csv") -> str:
        body: dict[str, Any] = {"file_type": file_type}
        if list_ids:
            body["list_ids"] = list(list_ids)
        data = await self._json(
            "export",
            "POST",
            "/v3/marketing/contacts/exports",
            json_body=body,
            not_found="a list to export does not exist in this SendGrid account",
        )
        return str(data["id"])

    async def export_status(self, export_id: str) -> ExportStatus:
        data = await self._json(
            "export_status", "GET", f"/v3/marketing/contacts/exports/{export_id}"
        )
        return ExportStatus(
            id=str(data.get("id", export_id)),
            status=str(data.get("status", "pending")),
            urls=tuple(str(u) for u in data.get("urls") or ()),
            contact_count=data.get("contact_count"),
            message=data.get("message"),
        )

    async def wait_export(
        self, export_id: str, *, timeout: float, initial: float = 0.2, maximum: float = 5.0
    ) -> ExportStatus:
        deadline = time.monotonic() + timeout
        delay = initial
        while True:
            status = await self.export_status(export_id)
            if status.status == "ready":
                return status
            if status.status == "failure":
                raise Unavailable(
                    f"SendGrid could not export the contacts: {status.message or 'failure'}",
                    endpoint="export_status",
                )
            if time.monotonic() + delay > deadline:
                raise Unavailable(
                    f"SendGrid's contacts export {export_id} was not ready within {timeout:.0f}s",
                    endpoint="export_status",
                )
            await asyncio.sleep(delay)
            delay = min(maximum, delay * 1.5)

    async def iter_export(
        self,
        list_ids: Sequence[str] | None,
        *,
        timeout: float = 1800.0,
        poll_initial: float = 0.2,
        poll_max: float = 5.0,
    ) -> AsyncIterator[dict[str, str]]:
        """Export the contacts of ``list_ids`` (or all contacts) and yield their rows.

        Files are streamed to a temporary file, then parsed as CSV or JSON Lines; keys are
        lower-cased (``contact_id``, ``email``, ...). Memory stays flat at any size.
        """
        export_id = await self.start_export(list_ids)
        status = await self.wait_export(
            export_id, timeout=timeout, initial=poll_initial, maximum=poll_max
        )
        for url in status.urls:
            async for row in self._download_rows(url):
                yield row

    async def _download_rows(self, url: str) -> AsyncIterator[dict[str, str]]:
        import tempfile

        headers = dict(self._auth) if _origin(url) == self._origin else {}
        with tempfile.TemporaryFile() as tmp:
            attempts = 0
            while True:
                try:
                    tmp.seek(0)
                    tmp.truncate()
                    async with self._http.stream("GET", url, headers=headers) as response:
                        self.requests[f"export_download {response.status_code}"] += 1
                        if response.status_code >= 400:
                            body = await response.aread()
                            if response.status_code >= 500:
                                raise httpx.NetworkError("server error")
                            raise self._translate(
                                "export_download", response.status_code, body, None
                            )
                        async for chunk in response.aiter_bytes(1 << 16):
                            tmp.write(chunk)
                    break
                except (
                    httpx.TimeoutException,
                    httpx.NetworkError,
                    httpx.RemoteProtocolError,
                ) as exc:
                    self.requests["export_download error"] += 1
                    attempts += 1
                    if attempts >= self.policy.max_attempts:
                        raise Unavailable(
                            "could not download SendGrid's export file", endpoint="export_download"
                        ) from exc
                    await asyncio.sleep(self.policy.backoff(attempts - 1, self._rng))
            tmp.seek(0)
            for row in iter_file_rows(tmp):
                yield row


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    """``data`` in pieces of ``STREAM_CHUNK`` bytes (a fresh iterator for each attempt)."""
    for start in range(0, len(data), STREAM_CHUNK):
        yield data[start : start + STREAM_CHUNK]


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()
