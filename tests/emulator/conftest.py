"""Fixtures for the emulator's tests: a threaded emulator and a spec-validating client."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sg_oai import Specs, ValidatingTransport, Validator

from sendgrid_operator.emulator import Emulator


@pytest.fixture(scope="session")
def specs() -> Specs:
    return Specs()


@pytest.fixture
def validator(specs: Specs) -> Validator:
    return Validator(specs)


@pytest.fixture
def api(emu: Emulator, validator: Validator) -> Iterator[httpx.Client]:
    """An authenticated client whose every exchange is checked against the documents;
    the test fails at teardown if any exchange violated them."""
    transport = ValidatingTransport(validator)
    headers = {"Authorization": f"Bearer {emu.api_key}"}
    with httpx.Client(base_url=emu.url, headers=headers, transport=transport, timeout=30) as client:
        yield client
    assert not validator.violations, "\n".join(validator.violations)
