"""The SendGrid client: retries, rate-limit headers, error translation, key hygiene."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import httpx
import pytest

from sendgrid_operator.sendgrid import (
    AuthenticationError,
    NotFound,
    PermissionDenied,
    RateLimited,
    RequestRejected,
    RetryPolicy,
    SendGridClient,
    Unavailable,
)
from sendgrid_operator.sendgrid import client as client_module
from sendgrid_operator.sendgrid.files import iter_file_rows
from sendgrid_operator.sendgrid.retry import exhausted_window_wait, rate_limit_wait

KEY = "SG.test-key-hygiene"
POLICY = RetryPolicy(
    max_attempts=4, max_rate_limited=5, base_delay=0.01, max_delay=30.0, total_seconds=60
)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the client's waits instead of waiting."""
    waits: list[float] = []

    async def fake_sleep(delay: float) -> None:
        waits.append(delay)

    monkeypatch.setattr(client_module.asyncio, "sleep", fake_sleep)
    return waits


def client_for(
    handler: Callable[[httpx.Request], httpx.Response], policy: RetryPolicy = POLICY
) -> SendGridClient:
    return SendGridClient(
        KEY, "https://sg.test", policy=policy, transport=httpx.MockTransport(handler)
    )


def scripted(*responses: httpx.Response | Exception) -> Callable[[httpx.Request], httpx.Response]:
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return handler


def test_reset_header_both_readings() -> None:
    now = 1_700_000_000.0
    assert rate_limit_wait({"x-ratelimit-reset": str(now + 7)}, POLICY, now=now) == pytest.approx(7)
    assert rate_limit_wait({"x-ratelimit-reset": "7"}, POLICY, now=now) == 7
    assert rate_limit_wait({"retry-after": "2", "x-ratelimit-reset": "9"}, POLICY, now=now) == 2
    assert rate_limit_wait({}, POLICY, now=now) == POLICY.default_rate_limit_wait
    assert (
        rate_limit_wait({"x-ratelimit-reset": str(now + 3600)}, POLICY, now=now) == POLICY.max_delay
    )
    assert (
        exhausted_window_wait({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "3"}, POLICY) == 3
    )
    assert (
        exhausted_window_wait({"x-ratelimit-remaining": "5", "x-ratelimit-reset": "3"}, POLICY)
        is None
    )


async def test_429_honours_headers(sleeps: list[float]) -> None:
    reset = str(int(time.time()) + 5)
    handler = scripted(
        httpx.Response(
            429, headers={"Retry-After": "2"}, json={"errors": [{"message": "too many requests"}]}
        ),
        httpx.Response(429, headers={"X-RateLimit-Reset": reset}),
        httpx.Response(429, headers={"X-RateLimit-Reset": "3"}),
        httpx.Response(200, json={"scopes": ["marketing.read"]}),
    )
    async with client_for(handler) as c:
        assert await c.scopes() == ["marketing.read"]
        assert c.requests == {"scopes 429": 3, "scopes 200": 1}
    assert sleeps[0] == 2 and 3 <= sleeps[1] <= 5 and sleeps[2] == 3


async def test_proactive_slow_down_when_remaining_is_zero(sleeps: list[float]) -> None:
    handler = scripted(
        httpx.Response(
            200,
            headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "4"},
            json={"scopes": []},
        ),
        httpx.Response(200, json={"scopes": []}),
    )
    async with client_for(handler) as c:
        await c.scopes()
        assert sleeps == []
        await c.scopes()
    assert len(sleeps) == 1 and 3 < sleeps[0] <= 4


async def test_5xx_timeouts_and_drops_retried_with_jitter_then_unavailable(
    sleeps: list[float],
) -> None:
    handler = scripted(
        httpx.Response(503),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("dropped"),
        httpx.Response(200, json={"job_id": "j1"}),
    )
    async with client_for(handler) as c:
        assert await c.upsert(b"{}") == "j1"
        assert dict(c.requests) == {"upsert 503": 1, "upsert error": 2, "upsert 200": 1}
    assert len(sleeps) == 3 and all(0 <= s <= 0.01 * 2**i for i, s in enumerate(sleeps))
    async with client_for(lambda r: httpx.Response(500)) as c:
        with pytest.raises(Unavailable, match="after 4 attempts"):
            await c.scopes()
    async with client_for(lambda r: httpx.Response(429)) as c:
        with pytest.raises(RateLimited):
            await c.scopes()


async def test_errors_translated_with_messages(sleeps: list[float]) -> None:
    cases = [
        (401, AuthenticationError, "check the Secret"),
        (403, PermissionDenied, "marketing.read"),
        (404, NotFound, "does not exist in this SendGrid account"),
        (400, RequestRejected, "list_ids is invalid"),
    ]
    for status, error, text in cases:
        body = {"errors": [{"field": "list_ids", "message": "list_ids is invalid"}]}
        async with client_for(lambda r, s=status, b=body: httpx.Response(s, json=b)) as c:
            with pytest.raises(error, match=text) as info:
                await c.get_list("abc")
            assert KEY not in str(info.value) and KEY not in repr(info.value)


async def test_key_only_sent_to_the_base_url() -> None:
    seen: dict[str, str | None] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen[request.url.host] = request.headers.get("authorization")
        return httpx.Response(200, text="row,email,error\n0,a@example.com,bad\n")

    async with client_for(handler) as c:
        rows = await c.download_errors("https://s3.example.net/errors.csv")
        await c.download_errors("https://sg.test/files/errors.csv")
        assert KEY not in repr(c)
    assert rows == [{"row": "0", "email": "a@example.com", "error": "bad"}]
    assert seen == {"s3.example.net": None, "sg.test": f"Bearer {KEY}"}


async def test_no_key_in_debug_logs(caplog: pytest.LogCaptureFixture, sleeps: list[float]) -> None:
    caplog.set_level(logging.DEBUG)
    handler = scripted(
        httpx.Response(429),
        httpx.Response(401, json={"errors": [{"message": "authorization required"}]}),
    )
    async with client_for(handler) as c:
        with pytest.raises(AuthenticationError):
            await c.scopes()
    assert caplog.records and KEY not in caplog.text


def test_file_rows_csv_jsonl_gzip() -> None:
    import gzip

    csv_bytes = b"CONTACT_ID,EMAIL\n1,a@example.com\n2,b@example.com\n"
    assert list(iter_file_rows(csv_bytes)) == [
        {"contact_id": "1", "email": "a@example.com"},
        {"contact_id": "2", "email": "b@example.com"},
    ]
    assert list(iter_file_rows(gzip.compress(csv_bytes)))[1]["email"] == "b@example.com"
    jsonl = b'{"CONTACT_ID": "1", "EMAIL": "a@example.com"}\n{"CONTACT_ID": "2", "EMAIL": "b@example.com"}\n'
    assert [r["contact_id"] for r in iter_file_rows(jsonl)] == ["1", "2"]
    assert list(iter_file_rows(b"")) == []
