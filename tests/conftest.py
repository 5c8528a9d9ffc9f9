"""Shared fixtures for the whole test suite."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from sendgrid_operator.emulator import AdminClient, Emulator, EmulatorConfig


@pytest.fixture
async def sendgrid_emulator() -> AsyncIterator[Emulator]:
    """A fresh SendGrid emulator in the test's event loop (``emu.url``, ``emu.api_key``)."""
    async with Emulator(EmulatorConfig(apply_delay=0.05)) as emu:
        yield emu


@pytest.fixture
def sendgrid_emulator_thread() -> Iterator[Emulator]:
    """A fresh SendGrid emulator served from a background thread, for synchronous tests."""
    with Emulator(EmulatorConfig(apply_delay=0.05)).running_in_thread() as emu:
        yield emu


@pytest.fixture
def emulator_admin(sendgrid_emulator_thread: Emulator) -> Iterator[AdminClient]:
    """The admin client of ``sendgrid_emulator_thread``."""
    with AdminClient(sendgrid_emulator_thread.url) as admin:
        yield admin


@pytest.fixture
def emu() -> Iterator[Emulator]:
    """A fresh emulator in a background thread, applying jobs quickly (20 ms)."""
    with Emulator(EmulatorConfig(apply_delay=0.02)).running_in_thread() as emulator:
        yield emulator


@pytest.fixture
def admin(emu: Emulator) -> Iterator[AdminClient]:
    """The admin client of ``emu``."""
    with AdminClient(emu.url) as client:
        yield client
