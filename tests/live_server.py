"""Real `python -m server serve` processes and a client that keeps posting to one.

For the fault tests that are about processes (SIGTERM, SIGKILL): the server runs as users run
it, in its own process on a real port, and the test looks at its SQLite file afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from server.store.sqlite_rows import decode_verdict
from tests.conftest import API_KEY, AUTH, card_testing, tx
from tests.test_cli import free_port

# Event times an hour back: inside every validity window, whatever the clock says.
BASE = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)


@dataclass
class LiveServer:
    proc: subprocess.Popen[bytes]
    url: str
    data_dir: Path
    log: Path

    @property
    def db(self) -> Path:
        return self.data_dir / "fraudwatch.db"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as resp:
            return resp.status == 200
    except (OSError, urllib.error.HTTPError):
        return False


@contextlib.contextmanager
def live_server(
    data_dir: Path, *, port: int | None = None, **settings: Any
) -> Iterator[LiveServer]:
    """`fraudwatch serve` on `port` (default: a free one) with FRAUDWATCH_* `settings`,
    healthy on entry. Killed on exit if the test left it running."""
    port = port or free_port()
    env = {**os.environ, "FRAUDWATCH_API_KEY": API_KEY}
    env.update({f"FRAUDWATCH_{name.upper()}": str(value) for name, value in settings.items()})
    log = data_dir.parent / f"server-{port}.log"
    command = [sys.executable, "-m", "server", "serve", "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*command, "--data-dir", str(data_dir)], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    server = LiveServer(proc, f"http://127.0.0.1:{port}", data_dir, log)
    try:
        deadline = time.monotonic() + 30
        while not _healthy(server.url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"server did not start:\n{server.output()}")
            time.sleep(0.05)
        yield server
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


async def start_live(
    data_dir: Path, stack: contextlib.ExitStack, *, port: int | None = None, **settings: Any
) -> LiveServer:
    """live_server() from async code: starting takes a second of blocking polls."""
    return await asyncio.to_thread(
        stack.enter_context, live_server(data_dir, port=port, **settings)
    )


async def post_transactions(url: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Post `records` to the live server at `url`; its per-record results (the post must
    be a 200)."""
    async with (
        aiohttp.ClientSession(headers=AUTH) as http,
        http.post(f"{url}/api/v1/transactions", json=records) as resp,
    ):
        assert resp.status == 200, await resp.text()
        results: list[dict[str, Any]] = (await resp.json())["results"]
        return results


def batch(prefix: str) -> list[dict[str, Any]]:
    """20 transactions: a card-testing run on a fresh account (3 alerts) and 15 plain ones."""
    records = card_testing(f"{prefix}-ct", f"{prefix}-acct", n=5, at=BASE)
    records += [
        tx(f"{prefix}-{i}", f"acct-{i % 5}", "25.00", BASE + dt.timedelta(seconds=i))
        for i in range(15)
    ]
    return records


@dataclass
class Loader:
    """Clients posting batches back to back until stopped, recording what each answer said."""

    url: str
    clients: int = 6
    verdicts: dict[str, dict[str, Any]] = field(default_factory=dict)
    # What was sent for each transaction answered 200, to send it again.
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _progress: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def __aenter__(self) -> Loader:
        # No keep-alive: each request has its own connection, so a refused connection is
        # a request the server never took, and an answer is an answer.
        self._session = aiohttp.ClientSession(
            headers=AUTH, connector=aiohttp.TCPConnector(force_close=True)
        )
        self._tasks = [asyncio.create_task(self._post(n)) for n in range(self.clients)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        await self._session.close()

    async def until(self, answered: int, within: float = 30) -> None:
        async with asyncio.timeout(within):
            while len(self.verdicts) < answered:
                self._progress.clear()
                await self._progress.wait()

    async def _post(self, client: int) -> None:
        sent = 0
        while not self._stop.is_set():
            records = batch(f"c{client}-{sent}")
            sent += 1
            try:
                async with self._session.post(
                    f"{self.url}/api/v1/transactions", json=records
                ) as resp:
                    body = await resp.json()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError):
                self.outcomes["no answer"] += 1
                await asyncio.sleep(0.02)
                continue
            if status != 200:
                self.outcomes[f"{status} {body['error']['code']}"] += 1
                continue
            self.outcomes["200"] += 1
            for record, result in zip(records, body["results"], strict=True):
                self.verdicts[record["id"]] = result
                self.accepted[record["id"]] = record
            self._progress.set()


def stored_verdicts(db: Path, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The stored verdicts of those `ids` that are in the database file, as the API shows
    them (the row keeps the ids in their own columns: sqlite_rows.decode_verdict)."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT id, alert_id, verdict_json FROM transactions "
            "WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(ids),),
        ).fetchall()
    return {
        tx_id: json.loads(msgspec.json.encode(decode_verdict(tx_id, alert_id, verdict)))
        for tx_id, alert_id, verdict in rows
    }


def alert_ids(db: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM alerts")}


def events(db: Path) -> list[tuple[int, str]]:
    """(seq, alert id) of every alert event, in seq order."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute("SELECT seq, alert_id FROM events ORDER BY seq").fetchall()
