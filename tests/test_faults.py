"""Faults that lose nothing: a store that stops taking writes, and WebSocket clients that stop
reading. Real SQLite files under real conditions (a lock held by another process, a full
disk, files the kernel refuses to write), real sockets."""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import itertools
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import WSCloseCode, WSMsgType
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.config import Settings
from server.pipeline import Submission, TxQueue
from server.state import HUB, QUEUE, STATS, STORE
from server.transactions import Transaction, parse_transaction
from tests.conftest import AUTH, Login, card_testing, make_settings, tx
from tests.live_server import BASE
from tests.test_api import post_batch

INGEST = "/api/v1/transactions"
# Quick to give up on a lock and on a request, so that each case takes seconds.
FAULTS: dict[str, Any] = {"store_busy_timeout": 0.2, "ingest_timeout": 1.0}

# ---------------------------------------------------------------------------------------------
# The store stops taking writes


async def test_a_locked_database_pauses_intake_and_recovers_losing_nothing(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, queue_max=50, **FAULTS)
    client: TestClient = await aiohttp_client(create_app(settings))
    queue = client.app[QUEUE]
    await post_batch(client, [tx("warm-up", at=BASE)])
    # Two tiny payments on one account: one short of the card-testing rule (3 in 10 min).
    held = [tx(f"held-{i}", at=BASE) for i in range(8)]
    held += card_testing("held-ct", "acct-held", n=2, at=BASE)
    feed = [tx(f"feed-{i}", f"acct-f{i % 3}", at=BASE) for i in range(60)]

    async with lock_held_by_another_process(settings.db_path):
        resp = await client.post(INGEST, json=held, headers=AUTH)
        await expect_store_unavailable(resp, "database is locked")
        await expect_unhealthy(client, "database is locked")
        # While it lasts, the API refuses at once rather than queue what it cannot store.
        refused = await client.post(INGEST, json=[tx("refused", at=BASE)], headers=AUTH)
        await expect_store_unavailable(refused, "database is locked")
        # An in-process feed is not refused: it waits for room (backpressure); the loop
        # takes no batch while the store fails, so the queue fills and stays full.
        feeding = asyncio.create_task(put_all(queue, feed, settings))
        await asyncio.sleep(0.3)
        assert not feeding.done()
        assert queue.qsize() == queue.maxsize
    await until_healthy(client)  # by itself, once the lock is released
    await asyncio.wait_for(feeding, 5)

    # The batch answered 503 was kept and stored, without being sent again; so was the feed.
    ids = [r["id"] for r in held + feed]
    stored = await until_stored(client, ids)
    # Re-sending it is safe: the original verdicts come back.
    again = await post_batch(client, held)
    assert again == [msgspec.to_builtins(stored[r["id"]]) for r in held]
    assert (await client.post(INGEST, json=tx("refused", at=BASE), headers=AUTH)).status == 200
    # Scored once, though written twice: the next tiny payment is the account's third, not
    # its fifth.
    third = await client.post(
        INGEST, json=card_testing("held-ct", "acct-held", n=3, at=BASE)[2], headers=AUTH
    )
    reasons = {r["code"]: r for r in (await third.json())["reasons"]}
    assert reasons["card_testing"]["observed"] == 3
    metrics = await (await client.get("/metrics")).text()
    assert "fraudwatch_store_up 1" in metrics
    assert client.app[QUEUE].store_failures > 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs: a disk that really fills up (and, emptied of the ballast, has room for
    the held batch's WAL and its checkpoint)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3M", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        # CI runs as root; a disk-full test that skipped would prove nothing.
        pytest.fail(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        if subprocess.run(["umount", str(disk)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(disk)], check=True)


async def test_a_full_disk_pauses_intake_and_recovers_losing_nothing(
    small_disk: Path, aiohttp_client: Any
) -> None:
    settings = make_settings(small_disk / "data", **FAULTS)
    client: TestClient = await aiohttp_client(create_app(settings))
    await post_batch(client, [tx("warm-up", at=BASE)])
    # Bigger than anything written so far, so the WAL must grow into the full disk.
    held = [tx(f"full-{i}", f"acct-{i % 9}", at=BASE, merchant_name="x" * 200) for i in range(400)]
    ballast = fill(small_disk)
    try:
        resp = await client.post(INGEST, json=held, headers=AUTH)
        await expect_store_unavailable(resp, "database or disk is full")
        await expect_unhealthy(client, "database or disk is full")
    finally:
        ballast.unlink()
    await until_healthy(client)
    stored = await until_stored(client, [r["id"] for r in held])
    again = await post_batch(client, held)
    assert again == [msgspec.to_builtins(stored[r["id"]]) for r in held]
    await client.close()  # before the disk is unmounted


async def test_files_the_kernel_will_not_write_pause_intake_and_recover(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    # Root ignores file modes and a read-only remount is refused while the database is open,
    # so the files are made immutable: every write to them fails (EPERM), as on a disk gone
    # read-only under a running process. SQLite reports it as an I/O error.
    settings = make_settings(tmp_path, **FAULTS)
    client: TestClient = await aiohttp_client(create_app(settings))
    await post_batch(client, [tx("warm-up", at=BASE)])
    held = [tx(f"ro-{i}", at=BASE) for i in range(20)]
    files = [settings.db_path, settings.db_path.with_name(settings.db_path.name + "-wal")]
    with immutable(files):
        resp = await client.post(INGEST, json=held, headers=AUTH)
        await expect_store_unavailable(resp, "disk I/O error")
        await expect_unhealthy(client, "disk I/O error")
    await until_healthy(client)
    stored = await until_stored(client, [r["id"] for r in held])
    assert await post_batch(client, held) == [msgspec.to_builtins(stored[r["id"]]) for r in held]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """For `client` and `login`: the quick fault settings."""
    return make_settings(tmp_path, **FAULTS)


async def test_an_acknowledgement_while_the_store_is_locked_gets_a_503(
    client: TestClient, settings: Settings, login: Login
) -> None:
    csrf = await login("alice")
    results = await post_batch(client, card_testing("ack", "acct-ack", n=3, at=BASE))
    alert_id = next(r["alert_id"] for r in results if r["alert_id"])
    ack = f"/api/v1/alerts/{alert_id}/ack"
    async with lock_held_by_another_process(settings.db_path):
        # Reads go on under WAL: analysts can still look at alerts.
        assert (await client.get("/api/v1/alerts")).status == 200
        refused = await client.post(ack, headers={"X-CSRF-Token": csrf})
        await expect_store_unavailable(refused, "database is locked")
    # Nothing was changed: the same request, once the lock is gone, succeeds.
    resp = await client.post(ack, headers={"X-CSRF-Token": csrf})
    assert resp.status == 200
    assert (await resp.json())["alert"]["owner"] == "alice"


async def test_a_login_while_the_store_is_locked_gets_a_503_page(
    client: TestClient, settings: Settings, login: Login
) -> None:
    await login("alice")  # creates alice; this client is now logged in
    async with lock_held_by_another_process(settings.db_path):
        # A login writes its session: refused with a page saying why, not a 500.
        other = await client.post(
            "/login", data={"username": "alice", "password": "correct horse battery"}
        )
        assert other.status == 503
        assert other.headers["Retry-After"] == "1"
        assert "database is locked" in await other.text()
    again = await client.post(
        "/login", data={"username": "alice", "password": "correct horse battery"}
    )
    assert again.status == 200


# ---------------------------------------------------------------------------------------------
# WebSocket clients that stop reading


def small_window(addr_info: Any) -> socket.socket:
    """A client socket with a tiny receive buffer, so that a client that stops reading
    soon stops the server's sends too (as a stalled phone or a frozen tab does)."""
    family, kind, proto, _, _ = addr_info
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return sock


async def test_a_stalled_client_is_cut_off_and_slows_no_one(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, ws_queue_max=100, ws_stall_seconds=0.3)
    client: TestClient = await aiohttp_client(create_app(settings))
    stats = client.app[STATS]
    connector = aiohttp.TCPConnector(socket_factory=small_window)
    async with aiohttp.ClientSession(headers=AUTH, connector=connector) as slow_http:
        # Connects, then never reads: its socket buffers fill and the server's sends block.
        stalled = await slow_http.ws_connect(client.make_url("/ws"))
        healthy = AlertReader(await client.ws_connect("/ws", headers=AUTH))

        expected: list[str] = []
        for n in range(200):
            # Every ingest completes while the stalled client holds on: detection never
            # waits for a socket.
            results = await post_batch(client, alert_run(f"s{n}"))
            expected += [r["alert_id"] for r in results if r["alert_id"]]
            if stats.ws_slow_disconnects:
                break
        assert stats.ws_slow_disconnects == 1
        assert len(client.app[HUB]) == 1

        # The healthy client got every alert, in seq order, with no gap.
        got = await healthy.first(len(expected))
        assert [alert for _, alert in got] == expected
        assert [seq for seq, _ in got] == list(range(1, len(expected) + 1))
        await healthy.close()

        # Reading at last, the stalled client finds what was buffered, then 1013...
        seen = await AlertReader(stalled).all()
        assert stalled.close_code == WSCloseCode.TRY_AGAIN_LATER
        assert seen == got[: len(seen)]
        # ...and resuming from the last seq it saw gives it all the rest.
        last = seen[-1][0] if seen else 0
        resumed = AlertReader(await slow_http.ws_connect(client.make_url(f"/ws?since={last}")))
        assert seen + await resumed.first(len(got) - len(seen)) == got
        await resumed.close()


async def test_a_flooding_client_is_cut_off_and_slows_no_one(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    # The per-connection rate limit lives in views/ws.py (tests/test_auth.py checks its
    # replies); here: while one client floods, ingest and the other clients go on.
    settings = make_settings(tmp_path, ws_rate_limit=5.0, ws_rate_burst=10)
    client: TestClient = await aiohttp_client(create_app(settings))
    healthy = AlertReader(await client.ws_connect("/ws", headers=AUTH))
    async with client.ws_connect("/ws", headers=AUTH) as flood:

        async def flooding() -> None:
            with contextlib.suppress(ConnectionError):
                for _ in range(1000):  # five times what closes the socket
                    await flood.send_str('{"type": "ping"}')

        sender = asyncio.create_task(flooding())
        expected: list[str] = []
        for n in range(5):
            results = await post_batch(client, alert_run(f"f{n}"))
            expected += [r["alert_id"] for r in results if r["alert_id"]]
        await sender
        async with asyncio.timeout(10):
            async for _ in flood:
                pass
        # Cut off. Closing a connection with unread input makes TCP reset it, so a client
        # still sending may see the reset (1006) rather than the 1008 close frame.
        assert flood.close_code in (WSCloseCode.POLICY_VIOLATION, WSCloseCode.ABNORMAL_CLOSURE)
        assert len(client.app[HUB]) == 1
    got = await healthy.first(len(expected))
    assert [alert for _, alert in got] == expected
    await healthy.close()


def alert_run(prefix: str) -> list[dict[str, Any]]:
    """100 tiny payments on two accounts: 96 alerts."""
    return card_testing(f"{prefix}-a", f"{prefix}-a", n=50, at=BASE) + card_testing(
        f"{prefix}-b", f"{prefix}-b", n=50, at=BASE
    )


class AlertReader:
    """Reads a socket in the background, keeping (seq, alert id) of every alert message."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.got: list[tuple[int, str]] = []
        self._more = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type != WSMsgType.TEXT:
                    break
                data = msg.json()
                if data["type"] in ("alert", "alert_updated"):
                    self.got.append((data["seq"], data["alert"]["id"]))
                    self._more.set()
        finally:
            self._more.set()

    async def first(self, n: int) -> list[tuple[int, str]]:
        async with asyncio.timeout(10):
            while len(self.got) < n and not self._task.done():
                self._more.clear()
                await self._more.wait()
        return self.got[:n]

    async def all(self) -> list[tuple[int, str]]:
        """Everything until the server closes the socket."""
        await asyncio.wait_for(self._task, 10)
        return self.got

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.wait_for(self._task, 10)


# ---------------------------------------------------------------------------------------------
# Helpers


LOCK_HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
"""


@contextlib.asynccontextmanager
async def lock_held_by_another_process(db: Path) -> AsyncIterator[None]:
    """Another process holds the database's write lock until the block ends."""
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        LOCK_HOLDER,
        str(db),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert holder.stdout is not None
    try:
        assert await asyncio.wait_for(holder.stdout.readline(), 10) == b"locked\n"
        yield
    finally:
        await asyncio.wait_for(holder.communicate(b"\n"), 10)
    assert holder.returncode == 0


FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_IMMUTABLE_FL = 0x10


def _set_immutable(path: Path, on: bool) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, flags, True)
        flags[0] = flags[0] | FS_IMMUTABLE_FL if on else flags[0] & ~FS_IMMUTABLE_FL
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, flags)
    finally:
        os.close(fd)


@contextlib.contextmanager
def immutable(paths: list[Path]) -> Iterator[None]:
    """chattr +i for the block: the kernel refuses every write, even on open files."""
    done: list[Path] = []
    try:
        for path in paths:
            _set_immutable(path, True)
            done.append(path)
        yield
    finally:
        for path in done:
            _set_immutable(path, False)


def fill(disk: Path) -> Path:
    """Write a file until the disk is full; delete it to free the space."""
    ballast = disk / "ballast"
    # Unbuffered: a buffered file would keep the part of its last block that did not fit and
    # fail again at close, depending on how full the disk was to start with.
    with ballast.open("wb", buffering=0) as out:
        try:
            while out.write(b"\0" * 65536):
                pass
        except OSError:
            pass
    return ballast


async def put_all(queue: TxQueue, records: list[dict[str, Any]], settings: Settings) -> None:
    """What an in-process feed does: put validated transactions, 10 at a time."""
    txs: list[Transaction] = [
        parse_transaction(msgspec.json.encode(r), settings.default_currency) for r in records
    ]
    for start in range(0, len(txs), 10):
        await queue.put(Submission(txs[start : start + 10]))


async def expect_store_unavailable(resp: aiohttp.ClientResponse, cause: str) -> None:
    assert resp.status == 503, await resp.text()
    error = (await resp.json())["error"]
    assert error["code"] == "store_unavailable"
    assert cause in error["message"]
    assert resp.headers["Retry-After"] == "1"


async def expect_unhealthy(client: TestClient, cause: str) -> None:
    health = await client.get("/healthz")
    assert health.status == 503
    body = await health.json()
    assert body["status"] == "store_unavailable"
    assert cause in body["reason"]
    assert "fraudwatch_store_up 0" in await (await client.get("/metrics")).text()


async def until_healthy(client: TestClient) -> None:
    # Polled: a store coming back has no event to wait on.
    async with asyncio.timeout(10):
        for _ in itertools.count():
            if (await client.get("/healthz")).status == 200:
                return
            await asyncio.sleep(0.05)


async def until_stored(client: TestClient, ids: list[str]) -> dict[str, Any]:
    store = client.app[STORE]
    async with asyncio.timeout(10):
        for _ in itertools.count():
            if len(stored := await store.known_verdicts(ids)) == len(ids):
                break
            await asyncio.sleep(0.05)
    return stored
