"""A crash (SIGKILL mid-stream) loses nothing answered, and dashboards resume by seq."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import WSMsgType

from tests.conftest import AUTH
from tests.live_server import Loader, alert_ids, events, start_live, stored_verdicts


async def test_sigkill_loses_no_answered_transaction_and_dashboards_resume_by_seq(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    # (seq, alert id) as two dashboards received them: one connected until the crash, one
    # that went away early (a closed laptop) while alerts kept coming.
    live: list[tuple[int, str]] = []
    early: list[tuple[int, str]] = []
    with contextlib.ExitStack() as stack:
        server = await start_live(data, stack)
        async with aiohttp.ClientSession(headers=AUTH) as http:
            watchers = [
                asyncio.create_task(_watch(http, server.url, live)),
                asyncio.create_task(_watch(http, server.url, early, leave_after=100)),
            ]
            async with Loader(server.url) as loader:
                await loader.until(answered=1500)
                server.proc.kill()
                await asyncio.to_thread(server.proc.wait, 30)
            await asyncio.wait_for(asyncio.gather(*watchers), 10)  # the sockets dropped
    assert set(loader.outcomes) == {"200", "no answer"}, loader.outcomes

    with contextlib.ExitStack() as stack:
        server = await start_live(data, stack)
        # Every transaction answered 200 is stored with the verdict it was answered with,
        # and every alert it raised is there.
        assert stored_verdicts(server.db, list(loader.verdicts)) == loader.verdicts
        raised = {v["alert_id"] for v in loader.verdicts.values() if v["alert_id"]}
        assert raised and raised <= alert_ids(server.db)
        log = events(server.db)
        assert [seq for seq, _ in log] == list(range(1, len(log) + 1))
        # What the dashboard saw live was the log's beginning, in order, without a gap.
        async with aiohttp.ClientSession(headers=AUTH) as http:
            for seen in (live, early):
                assert seen and seen == log[: len(seen)]
                # Reconnecting from the last seq it applied: the rest of the log, in order.
                last = seen[-1][0]
                async with http.ws_connect(f"{server.url}/ws?since={last}") as ws:
                    hello = await ws.receive_json()
                    assert hello["type"] == "hello" and hello["seq"] == log[-1][0]
                    resumed = await _collect(ws, hello["seq"] - last)
                assert resumed == log[len(seen) :]
            assert len(early) == 100 < len(log) - 500
            # A feed re-sending what it had been answered for changes nothing.
            await _resend_all(http, server.url, loader)
        assert events(server.db) == log
        assert server.stop() == 0


async def _watch(
    http: aiohttp.ClientSession, url: str, seen: list[tuple[int, str]], leave_after: int = 0
) -> None:
    async with http.ws_connect(f"{url}/ws?since=0") as ws:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                break
            data: dict[str, Any] = msg.json()
            if data["type"] in ("alert", "alert_updated"):
                seen.append((data["seq"], data["alert"]["id"]))
                if len(seen) == leave_after:
                    return


async def _collect(ws: aiohttp.ClientWebSocketResponse, n: int) -> list[tuple[int, str]]:
    got: list[tuple[int, str]] = []
    async with asyncio.timeout(10):
        while len(got) < n:
            data = await ws.receive_json()
            if data["type"] in ("alert", "alert_updated"):
                got.append((data["seq"], data["alert"]["id"]))
    return got


async def _resend_all(http: aiohttp.ClientSession, url: str, loader: Loader) -> None:
    ids = list(loader.accepted)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        records = [loader.accepted[tx_id] for tx_id in chunk]
        async with http.post(f"{url}/api/v1/transactions", json=records) as resp:
            assert resp.status == 200, await resp.text()
            results = (await resp.json())["results"]
        assert results == [loader.verdicts[tx_id] for tx_id in chunk]
