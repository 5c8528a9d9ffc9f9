"""Rate limiting: headers on every response, 429 with SendGrid's body, both Reset readings."""

from __future__ import annotations

import time

import httpx

from sendgrid_operator.emulator import AdminClient, ApiKey, Emulator, EmulatorConfig, RateLimitSpec


def test_headers_and_429_epoch_reset(api: httpx.Client, admin: AdminClient) -> None:
    admin.set_rate_limits({"list_all": (2, 60.0)}, reset_header="epoch")
    first = api.get("/v3/marketing/lists")
    assert (
        first.headers["X-RateLimit-Limit"] == "2" and first.headers["X-RateLimit-Remaining"] == "1"
    )
    assert api.get("/v3/marketing/lists").headers["X-RateLimit-Remaining"] == "0"
    limited = api.get("/v3/marketing/lists")
    assert limited.status_code == 429
    assert limited.json() == {"errors": [{"field": None, "message": "too many requests"}]}
    reset = int(limited.headers["X-RateLimit-Reset"])
    assert time.time() < reset <= time.time() + 61
    assert api.get("/v3/marketing/field_definitions").status_code == 200  # per endpoint


def test_seconds_reset_and_window_refresh(api: httpx.Client, admin: AdminClient) -> None:
    admin.set_rate_limits({"scopes": (1, 0.3)}, reset_header="seconds")
    assert api.get("/v3/scopes").status_code == 200
    limited = api.get("/v3/scopes")
    assert limited.status_code == 429 and limited.headers["X-RateLimit-Reset"] in ("0", "1")
    end = time.monotonic() + 5
    while api.get("/v3/scopes").status_code == 429:
        assert time.monotonic() < end, "window never refreshed"


def test_cli_style_specs() -> None:
    spec = RateLimitSpec.parse("upsert=10/1")
    assert (spec.selector, spec.limit, spec.window) == ("upsert", 10, 1.0)
    config = EmulatorConfig(
        rate_limits=[RateLimitSpec.parse("GET /v3/scopes=1/60")], api_keys=[ApiKey("SG.test-k")]
    )
    with Emulator(config).running_in_thread() as emu:
        headers = {"Authorization": "Bearer SG.test-k"}
        assert httpx.get(f"{emu.url}/v3/scopes", headers=headers).status_code == 200
        assert httpx.get(f"{emu.url}/v3/scopes", headers=headers).status_code == 429
