"""The operator's API client under a burst: callers queue in Kube, not in httpx's pool."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from sendgrid_operator.controller.kube import Kube


@pytest.fixture
async def slow_server() -> AsyncIterator[str]:
    async def handler(_: web.Request) -> web.Response:
        await asyncio.sleep(0.01)
        return web.json_response({"items": []})

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/ns/configmaps", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_a_burst_longer_than_the_pool_timeout_leaves_the_client_usable(
    slow_server: str,
) -> None:
    # 200 requests of 10 ms on 4 connections take ~0.5 s, far beyond the 0.1 s pool timeout:
    # had they waited in httpcore's pool, most would fail with PoolTimeout, and the pool could
    # keep connections that never connect (encode/httpcore#1093) so that later requests fail.
    http = httpx.AsyncClient(
        base_url=slow_server,
        limits=httpx.Limits(max_connections=4),
        timeout=httpx.Timeout(10.0, pool=0.1),
    )
    kube = Kube(http, max_in_flight=4)
    try:
        results = await asyncio.gather(*(kube.list("configmaps", "ns") for _ in range(200)))
        assert results == [[]] * 200
        assert await kube.list("configmaps", "ns") == []
    finally:
        await kube.aclose()


def test_sniffio_is_installed() -> None:
    """httpcore imports sniffio several times per request; a missing one was searched for on
    sys.path each time (a fifth of the operator's CPU). It is a declared dependency."""
    import importlib.util

    assert importlib.util.find_spec("sniffio") is not None
