"""Fixtures for the alerting tests (helpers live in alerts_fixtures.py)."""

from __future__ import annotations

import os
import sys

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

sys.path.insert(0, os.path.dirname(__file__))
from alerts_fixtures import Receiver, finding  # noqa: E402


@pytest.fixture
def make_finding():
    return finding


@pytest.fixture
async def receiver():
    rec = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handle)
    rec.server = TestServer(app, host="127.0.0.1", port=0)
    await rec.server.start_server()
    try:
        yield rec
    finally:
        await rec.server.close()
