"""Run the emulator: in-process for tests (async or in a thread) and for the CLI.

``async with Emulator(config) as emu: emu.url`` serves on a free loopback port inside the
test's event loop; ``with Emulator(config).running_in_thread() as emu:`` does the same in a
background thread for synchronous tests and the official ``sendgrid`` library.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from sendgrid_operator.emulator import admin_api
from sendgrid_operator.emulator import handlers_contacts as hc
from sendgrid_operator.emulator import handlers_fields as hf
from sendgrid_operator.emulator import handlers_lists as hl
from sendgrid_operator.emulator.config import EmulatorConfig
from sendgrid_operator.emulator.context import CTX, Context
from sendgrid_operator.emulator.endpoints import BY_NAME
from sendgrid_operator.emulator.middleware import emulator_middleware
from sendgrid_operator.emulator.persist import Persistence
from sendgrid_operator.emulator.summary import summary_text

CLIENT_MAX_SIZE = 64 * 1024 * 1024  # read oversized upserts fully, then answer our own 400

HANDLERS: dict[str, Any] = {
    "upsert": hc.upsert,
    "import_status": hc.import_status,
    "contact_count": hc.contact_count,
    "search_emails": hc.search_emails,
    "search_identifiers": hc.search_identifiers,
    "contacts_batch": hc.contacts_batch,
    "export": hf.export_create,
    "export_status": hf.export_status,
    "contact_get": hc.contact_get,
    "list_create": hl.list_create,
    "list_all": hl.list_all,
    "list_get": hl.list_get,
    "list_update": hl.list_update,
    "list_delete": hl.list_delete,
    "list_remove": hl.list_remove,
    "list_count": hl.list_count,
    "fields_get": hf.fields_get,
    "field_create": hf.field_create,
    "field_update": hf.field_update,
    "field_delete": hf.field_delete,
    "scopes": hf.scopes,
    "export_download": hf.export_download,
    "errors_download": hc.errors_file,
}


def build_app(ctx: Context) -> web.Application:
    app = web.Application(middlewares=[emulator_middleware], client_max_size=CLIENT_MAX_SIZE)
    app[CTX] = ctx
    for name, endpoint in BY_NAME.items():
        app.router.add_route(endpoint.method, endpoint.path, HANDLERS[name], name=name)
    app.router.add_routes(admin_api.routes)
    return app


class Emulator:
    """A SendGrid Marketing API emulator bound to a loopback port."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.ctx = Context(self.config)
        self._runner: web.AppRunner | None = None
        self._persist: Persistence | None = None
        self._port = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:PORT`` (pass it as the SendGrid host)."""
        return f"http://{self.config.host}:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def api_key(self) -> str:
        """The first configured API key."""
        return self.config.api_keys[0].key

    async def start(self) -> None:
        if self.config.state_file:
            self._persist = Persistence(self.config.state_file, self.ctx, self.config.save_interval)
            self._persist.load()
        self._runner = web.AppRunner(build_app(self.ctx), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port, reuse_address=True)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        self._port = server.sockets[0].getsockname()[1]
        self.ctx.base_url = self.url
        self.ctx.runner.start()
        if self._persist is not None:
            self._persist.start()

    async def stop(self) -> None:
        await self.ctx.runner.stop(flush=True)
        if self._persist is not None:
            await self._persist.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.config.print_summary:
            print(summary_text(self.ctx), flush=True)

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @contextlib.contextmanager
    def running_in_thread(self, timeout: float = 10.0) -> Iterator[Emulator]:
        """Serve from a background thread with its own event loop, for synchronous code."""
        started = threading.Event()
        stopping: list[asyncio.Event] = []
        errors: list[BaseException] = []

        async def main() -> None:
            stop = asyncio.Event()
            stopping.append(stop)
            try:
                await self.start()
            except BaseException as exc:
                errors.append(exc)
                started.set()
                raise
            started.set()
            await stop.wait()
            await self.stop()

        def target() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(main())
            except BaseException:  # reported through `errors`
                pass
            finally:
                loop.close()

        self._thread = threading.Thread(target=target, name="sendgrid-emulator", daemon=True)
        self._thread.start()
        if not started.wait(timeout) or errors:
            raise RuntimeError(f"emulator did not start: {errors[:1]}")
        try:
            yield self
        finally:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(stopping[0].set)
            self._thread.join(timeout)
