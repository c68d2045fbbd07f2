"""Retention: a server with `retention_days` deletes old transactions that raised no alert,
at start and then hourly; alerts and their transactions stay."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.config import ConfigError
from server.state import STORE
from tests.conftest import AUTH, make_settings, tx
from tests.test_api import post_batch, raise_alert


async def test_a_restarted_server_deletes_what_is_past_retention(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, retention_days=30)
    first: TestClient = await aiohttp_client(create_app(settings))
    await post_batch(first, [tx(f"old-{i}", account=f"acct-{i}") for i in range(6)])
    alert_id = await raise_alert(first, prefix="ct-old")
    await first.close()
    # Received long before the 30 days, as far as the store can tell.
    with closing(sqlite3.connect(settings.db_path, isolation_level=None)) as conn:
        conn.execute("UPDATE transactions SET received_at = '2000-01-01T00:00:00.000Z'")
        alerted = {
            i for (i,) in conn.execute("SELECT id FROM transactions WHERE alert_id IS NOT NULL")
        }
    assert alerted

    again: TestClient = await aiohttp_client(create_app(settings))
    await post_batch(again, [tx("new-1")])
    store = again.app[STORE]  # type: ignore[index]
    ids = [f"old-{i}" for i in range(6)]
    for _ in range(200):  # the first round runs at start, beside the detection loop
        if not await store.known_verdicts(ids):
            break
        await asyncio.sleep(0.05)
    assert await store.known_verdicts(ids) == {}
    assert set(await store.known_verdicts([*alerted, "new-1"])) == {*alerted, "new-1"}
    resp = await again.get(f"/api/v1/alerts/{alert_id}", headers=AUTH)
    assert resp.status == 200
    # A label for a deleted transaction is refused as for any unknown one.
    resp = await again.post(
        "/api/v1/labels", json={"transaction_id": "old-0", "label": "fraud"}, headers=AUTH
    )
    assert resp.status == 404


async def test_without_retention_nothing_is_deleted(aiohttp_client: Any, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    first: TestClient = await aiohttp_client(create_app(settings))
    await post_batch(first, [tx("kept-1")])
    await first.close()
    with closing(sqlite3.connect(settings.db_path, isolation_level=None)) as conn:
        conn.execute("UPDATE transactions SET received_at = '2000-01-01T00:00:00.000Z'")
    again: TestClient = await aiohttp_client(create_app(settings))
    await asyncio.sleep(0.2)
    assert set(await again.app[STORE].known_verdicts(["kept-1"])) == {"kept-1"}  # type: ignore[index]


@pytest.mark.parametrize("days", [0.5, -1])
def test_retention_shorter_than_a_day_is_refused(tmp_path: Path, days: float) -> None:
    with pytest.raises(ConfigError, match="retention_days"):
        make_settings(tmp_path, retention_days=days)
