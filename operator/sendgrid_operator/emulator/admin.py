"""Typed client for the emulator's admin API (``/_emulator/``), for other tests.

admin = AdminClient(emu.url)
list_id = admin.create_list("vip")
...
assert admin.members(list_id) == {"a@example.com"}
admin.add_fault("upsert", "503", count=2)
"""

from __future__ import annotations

from typing import Any

import httpx

from sendgrid_operator.emulator.context import RequestRecord


class AdminClient:
    """Synchronous admin client; also usable as a context manager."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self._http = httpx.Client(base_url=base_url.rstrip("/") + "/_emulator", timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ok(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise RuntimeError(
                f"emulator admin {response.request.url}: {response.status_code} {response.text}"
            )
        return response.json() if response.content else None

    # -- inspection -------------------------------------------------------------
    def members(self, list_id: str) -> set[str]:
        """Emails (lower-case) of the list's members."""
        return set(self._ok(self._http.get(f"/lists/{list_id}/members"))["emails"])

    def member_ids(self, list_id: str) -> set[str]:
        return set(self._ok(self._http.get(f"/lists/{list_id}/members"))["contact_ids"])

    def contact(self, email: str) -> dict[str, Any] | None:
        """The stored contact (SendGrid's ContactDetails3 shape) or None."""
        found: list[dict[str, Any]] = self._ok(
            self._http.get("/contacts", params={"email": email})
        )["contacts"]
        return found[0] if found else None

    def contact_count(self) -> int:
        return int(self._ok(self._http.get("/contacts", params={"limit": 0}))["count"])

    def request_log(self) -> list[RequestRecord]:
        return [RequestRecord(**r) for r in self._ok(self._http.get("/requests"))["requests"]]

    def clear_request_log(self) -> None:
        self._ok(self._http.delete("/requests"))

    def summary(self) -> str:
        response = self._http.get("/summary")
        if response.status_code >= 400:
            raise RuntimeError(f"emulator admin /summary: {response.status_code}")
        return response.text

    # -- steering ---------------------------------------------------------------
    def reset(self) -> None:
        """Forget all contacts, lists, fields, jobs, the request log and faults."""
        self._ok(self._http.post("/reset"))

    def create_list(self, name: str, list_id: str | None = None) -> str:
        """Create a list directly (no auth, faults or limits); returns its ID. With
        ``list_id`` the list gets that ID (idempotent: an existing list of that ID and name
        is returned), so examples and demos can name fixed list IDs."""
        body = {"name": name} if list_id is None else {"name": name, "id": list_id}
        return str(self._ok(self._http.post("/lists", json=body))["id"])

    def create_field(self, name: str, field_type: str = "Text") -> str:
        """Create a custom field (Text, Number or Date); returns its ID."""
        return str(
            self._ok(self._http.post("/fields", json={"name": name, "field_type": field_type}))[
                "id"
            ]
        )

    def add_fault(self, selector: str, kind: str, **params: Any) -> dict[str, Any]:
        """E.g. ``add_fault("upsert", "503", count=2)``, ``add_fault("upsert", "reject_rows", every=10)``."""
        result: dict[str, Any] = self._ok(
            self._http.post("/faults", json={"selector": selector, "kind": kind, **params})
        )
        return result

    def add_fault_spec(self, spec: str) -> dict[str, Any]:
        """The CLI spelling, e.g. ``"upsert:429:count=3"``."""
        result: dict[str, Any] = self._ok(self._http.post("/faults", json={"spec": spec}))
        return result

    def faults(self) -> list[dict[str, Any]]:
        return list(self._ok(self._http.get("/faults"))["faults"])

    def clear_faults(self) -> None:
        self._ok(self._http.delete("/faults"))

    def set_rate_limits(
        self, limits: dict[str, tuple[int, float]], reset_header: str | None = None
    ) -> None:
        """``{"upsert": (10, 1.0)}``: 10 requests per 1-second window."""
        body: dict[str, Any] = {
            "limits": [{"selector": s, "limit": n, "window": w} for s, (n, w) in limits.items()]
        }
        if reset_header is not None:
            body["reset_header"] = reset_header
        self._ok(self._http.put("/rate-limits", json=body))

    def set_keys(self, keys: dict[str, list[str]]) -> None:
        """Replace the API keys: ``{"SG.test-key": ["marketing.read"]}``."""
        self._ok(
            self._http.put(
                "/keys", json={"keys": [{"key": k, "scopes": s} for k, s in keys.items()]}
            )
        )

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until every queued job and export has been applied."""
        left = self._ok(self._http.post("/settle", params={"timeout": timeout}))["pending"]
        if left:
            raise TimeoutError(f"{left} emulator jobs still pending after {timeout}s")
