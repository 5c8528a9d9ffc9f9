"""A tiny in-memory SendGrid for fast engine properties (httpx.MockTransport).

It answers only what the upsert path needs and records every contact sent, so
hypothesis can run many examples without a server. Faithful behaviour is the emulator's
job; these fakes only make properties cheap.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx

LIST_ID = "00000000-0000-4000-8000-000000000001"


class FakeSendGrid:
    def __init__(
        self,
        reject: Callable[[dict[str, Any]], str | None] | None = None,
        name_fields: bool = False,
    ) -> None:
        self.sent: list[str] = []
        self.bodies: list[int] = []
        self.requests: list[tuple[str, str]] = []
        self.jobs: dict[str, int] = {}
        self.reject = reject
        self.name_fields = name_fields
        self.pending_polls: dict[str, int] = {}  # job -> how many polls answer "pending"
        self.polls: list[tuple[float, str, str]] = []  # (monotonic time, job, status)
        self.accepted_at: dict[str, float] = {}  # job -> monotonic time of its 202

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.requests.append((request.method, path))
        if path == "/v3/scopes":
            return httpx.Response(200, json={"scopes": ["marketing.read"]})
        if path == "/v3/marketing/field_definitions":
            return httpx.Response(200, json={"custom_fields": [], "reserved_fields": []})
        if path.startswith("/v3/marketing/lists/") and request.method == "GET":
            return httpx.Response(200, json={"id": LIST_ID, "name": "l", "contact_count": 0})
        if path == "/v3/marketing/contacts" and request.method == "PUT":
            body = json.loads(request.content)
            contacts = body["contacts"]
            if self.reject is not None:
                errors = []
                for i, c in enumerate(contacts):
                    why = self.reject(c)
                    if why:
                        item: dict[str, Any] = {"message": why}
                        if self.name_fields:
                            item["field"] = f"contacts[{i}].email"
                        errors.append(item)
                if errors:
                    return httpx.Response(400, json={"errors": errors})
            self.bodies.append(len(request.content))
            self.sent.extend(c["email"] for c in contacts)
            job = f"job-{len(self.jobs)}"
            self.jobs[job] = len(contacts)
            self.accepted_at[job] = time.monotonic()
            return httpx.Response(202, json={"job_id": job})
        if path.startswith("/v3/marketing/contacts/imports/"):
            job = path.rsplit("/", 1)[-1]
            n = self.jobs[job]
            status = "completed"
            if self.pending_polls.get(job, 0) > 0:
                self.pending_polls[job] -= 1
                status = "pending"
            self.polls.append((time.monotonic(), job, status))
            return httpx.Response(
                200,
                json={
                    "id": job,
                    "status": status,
                    "results": {
                        "requested_count": n,
                        "created_count": n,
                        "updated_count": 0,
                        "errored_count": 0,
                    },
                },
            )
        return httpx.Response(404, json={"errors": [{"message": "not found"}]})
