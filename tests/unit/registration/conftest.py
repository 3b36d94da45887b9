"""Fixtures: an in-memory registration service behind the real aiohttp handlers."""

from __future__ import annotations

import copy

import pytest
from aiohttp.test_utils import TestClient, TestServer

from detector.registration.service import InMemoryRegistrationService
from regtest_helpers import VALID, make_app, reading


@pytest.fixture
def valid() -> dict:
    return copy.deepcopy(VALID)


@pytest.fixture
def service() -> InMemoryRegistrationService:
    return InMemoryRegistrationService(clock=lambda: 1_700_000_000.0)


@pytest.fixture
async def client(service):
    async with TestClient(TestServer(make_app(service))) as c:
        yield reading(c)
