"""Shared fixtures: the real app over a real SQLite file in tmp_path, clients, analysts."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.auth import create_user
from server.config import Settings
from server.state import STORE

# The browser tests' fixtures (the app on a real port, Chromium, an ingesting client) live in
# browser_support.py with the helpers they use; importing them here makes them fixtures for
# every test module, so no module has to copy or re-bind them.
from tests.browser_support import browser, http, ingest, server  # noqa: F401

API_KEY = "test-api-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
T0 = dt.datetime(2026, 3, 2, 14, 0, tzinfo=dt.UTC)


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    # No warm-up for the built-in simulator unless a test asks: its tests are about the feed.
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "api_key": API_KEY,
        "batch_wait_ms": 2.0,
        "simulator_history": 0.0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings) -> TestClient:
    return await aiohttp_client(create_app(settings))  # type: ignore[no-any-return]


def tx(
    id: str,
    account: str = "acct-1",
    amount: float | str = 25.0,
    at: dt.datetime = T0,
    merchant: str = "m-1",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": id,
        "timestamp": at.isoformat(),
        "account_id": account,
        "merchant_id": merchant,
        "amount": amount,
        "currency": "USD",
        **extra,
    }


def card_testing(
    prefix: str, account: str, n: int = 4, at: dt.datetime = T0
) -> list[dict[str, Any]]:
    """Tiny amounts seconds apart: the card-testing rule fires from the third on."""
    return [
        tx(
            f"{prefix}-{i}",
            account,
            "1.00",
            at + dt.timedelta(seconds=20 * i),
            merchant=f"shop-{i}",
        )
        for i in range(n)
    ]


Login = Callable[..., Awaitable[str]]


@pytest.fixture
def login(client: TestClient) -> Login:
    """Create an analyst and log `session` in; returns the CSRF token of the session."""

    async def _login(
        name: str = "alice", role: str = "analyst", session: TestClient | None = None
    ) -> str:
        c = session or client
        await create_user(client.app[STORE], name, "correct horse battery", role)  # type: ignore[arg-type,index]
        resp = await c.post("/login", data={"username": name, "password": "correct horse battery"})
        assert resp.status == 200, await resp.text()
        page = await resp.text()
        match = re.search(r'name="csrf-token" content="([^"]+)"', page)
        assert match, "dashboard has no csrf token"
        return match.group(1)

    return _login
