"""Retention: a server with `retention_days` deletes old transactions that raised no alert,
at start and then hourly; alerts and their transactions stay."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.config import ConfigError
from server.retention import prune_once
from server.state import STORE
from server.store.migrations import migrate
from server.store.sqlite import SqliteStore
from server.store.sqlite_reads import prunable_rowids
from tests.conftest import AUTH, make_settings, tx
from tests.test_api import post_batch, raise_alert
from tests.test_store import Recorder, make_batch


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


# --- giving the space back ------------------------------------------------------------------


def _pages(db_path: Path) -> tuple[int, int]:
    """The file's pages, and how many of them are free."""
    with closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
        (count,) = conn.execute("PRAGMA page_count").fetchone()
        (free,) = conn.execute("PRAGMA freelist_count").fetchone()
    return int(count), int(free)


def _size(db_path: Path) -> int:
    return db_path.stat().st_size


async def _fill_and_age(store: SqliteStore, db_path: Path, n: int) -> None:
    """`n` transactions (every 50th with an alert), all received long before any retention."""
    for first in range(0, n, 1000):
        await store.write_batch(make_batch(first, min(1000, n - first), alert_every=50))
    with closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
        conn.execute("UPDATE transactions SET received_at = '2000-01-01T00:00:00.000Z'")


async def test_retention_gives_the_pages_it_frees_back_to_the_file_system(
    tmp_path: Path,
) -> None:
    db_path = tmp_path / "fraudwatch.db"
    store = SqliteStore(db_path)
    await store.start(Recorder())
    try:
        await _fill_and_age(store, db_path, 8000)
        pages_before, _ = _pages(db_path)
        assert await prune_once(store, days=30) == 8000 - 8000 // 50
        assert _pages(db_path)[1] == 0  # no page left free inside the file
    finally:
        await store.close()  # its last checkpoint copies the WAL in and cuts the file
    pages_after, _ = _pages(db_path)
    # The alerts' transactions and everything else are a small part of what was there.
    assert pages_after < pages_before / 4, (pages_before, pages_after)
    assert await asyncio.to_thread(_size, db_path) == pages_after * 4096


async def test_a_file_without_auto_vacuum_keeps_working_and_the_log_says_how_to_convert_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A database made by a fraudwatch that did not set auto_vacuum: WAL, migrated, and so
    # with tables already when the store opens it.
    db_path = tmp_path / "fraudwatch.db"
    with closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        migrate(conn)
    store = SqliteStore(db_path)
    await store.start(Recorder())
    try:
        await _fill_and_age(store, db_path, 3000)
        pages_before, _ = _pages(db_path)
        with caplog.at_level(logging.WARNING, logger="server.retention"):
            assert await prune_once(store, days=30) == 3000 - 3000 // 50
        assert await store.release_free_pages() is None
    finally:
        await store.close()
    pages, free = _pages(db_path)
    assert pages == pages_before and free > pages / 2  # pruned, kept for reuse
    assert "PRAGMA auto_vacuum = INCREMENTAL; VACUUM;" in caplog.text

    # The conversion the log and docs/operations.md give, with the server stopped.
    with closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("VACUUM")
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert _pages(db_path)[0] < pages_before / 4
    store = SqliteStore(db_path)
    await store.start(Recorder())
    try:
        await store.write_batch(make_batch(5000, 1000, alert_every=50))
        with closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
            conn.execute("UPDATE transactions SET received_at = '2000-01-01T00:00:00.000Z'")
        assert await prune_once(store, days=30) > 0
        assert _pages(db_path)[1] == 0  # the freed pages went back at once
    finally:
        await store.close()


async def test_finding_what_to_prune_searches_the_table_rather_than_scanning_it(
    tmp_path: Path,
) -> None:
    # Retention runs at start and hourly on a database that may hold months of
    # transactions: finding the range to delete must cost a few index lookups, not a pass
    # over every row. Counted in SQLite's virtual-machine steps, which do not depend on
    # the machine's speed: 5,000 rows scanned cost tens of thousands.
    db_path = tmp_path / "fraudwatch.db"
    store = SqliteStore(db_path)
    await store.start(Recorder())
    for first in range(0, 5000, 500):
        await store.write_batch(make_batch(first, 500))
    await store.close()
    with closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
        steps = 0

        def count() -> int:
            nonlocal steps
            steps += 1
            return 0

        conn.set_progress_handler(count, 1)
        first, end = prunable_rowids(conn, "2999-01-01T00:00:00.000Z")
        conn.set_progress_handler(None, 1)
    assert (first, end) == (1, 5001)
    assert steps < 3000, steps  # 412 here; 35,386 when both ends came from one SELECT
