"""Graceful shutdown: intake stops, the queue drains, every 200 is stored, sockets say 1001."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSCloseCode, WSMsgType
from aiohttp.test_utils import TestClient

from server.pipeline import IntakeClosed, Submission, TxQueue
from tests.conftest import API_KEY, AUTH, tx
from tests.live_server import (
    BASE,
    Loader,
    alert_ids,
    post_transactions,
    start_live,
    stored_verdicts,
)
from tests.test_cli import free_port
from tests.test_faults import alert_run, small_window
from tests.test_pipeline import txs


async def test_sigterm_stores_every_answered_transaction_and_exits_cleanly(
    tmp_path: Path,
) -> None:
    with contextlib.ExitStack() as stack:
        # The big request below is over the default max_batch_records (10,000) on purpose.
        server = await start_live(tmp_path / "data", stack, max_batch_records=20_000)
        async with aiohttp.ClientSession(headers=AUTH) as http:
            ws = await http.ws_connect(f"{server.url}/ws")
            assert (await ws.receive_json())["type"] == "hello"
            async with Loader(server.url) as loader:
                await loader.until(answered=1500)
                # One big request, surely in flight when the signal comes: its 19 000
                # transactions are all queued (accepted) once the queue holds over 1000,
                # which the six small clients alone (20 each) never reach. 19 000 leaves
                # room in the 20 000-transaction queue for theirs: with 20 000, a chunk of
                # it could still be waiting for room at the signal, and the whole request
                # was then refused as shutting down (its queued part stored, as documented).
                big = [tx(f"big-{i}", f"acct-{i % 50}", at=BASE) for i in range(19_000)]
                posting = asyncio.create_task(_post(http, server.url, big))
                await _until_queued(http, server.url, more_than=1000)
                server.proc.send_signal(signal.SIGTERM)
                close = await _until_closed(ws)
                status, answer = await posting
                code = await asyncio.to_thread(server.proc.wait, 30)
    output = server.output()
    assert code == 0, output
    assert "Traceback" not in output, output
    assert close == WSCloseCode.GOING_AWAY
    # The request in flight at the signal was answered, in full.
    assert status == 200, answer
    assert [r["transaction_id"] for r in answer["results"]] == [r["id"] for r in big]
    # Every other request was answered 200 or refused as shutting down, or never got in.
    assert set(loader.outcomes) <= {"200", "503 shutting_down", "no answer"}, loader.outcomes
    answered = {**loader.verdicts, **{r["transaction_id"]: r for r in answer["results"]}}
    assert stored_verdicts(server.db, list(answered)) == answered
    raised = {v["alert_id"] for v in answered.values() if v["alert_id"]}
    assert raised and raised <= alert_ids(server.db)


async def test_sigint_while_starting_closes_what_start_up_had_opened(tmp_path: Path) -> None:
    # aiohttp's run_app starts the app (its cleanup contexts: the store, the model, the
    # detector's state) before the try whose `finally` cleans up: a Ctrl-C while the
    # detector's state was rebuilt from a large store exited 0 without a word, the store
    # never closed (its WAL and shared-memory files left beside the database).
    data = tmp_path / "data"
    with contextlib.ExitStack() as stack:
        server = await start_live(data, stack)
        records = [
            tx(f"s-{i}", f"acct-{i % 500}", at=BASE + dt.timedelta(seconds=i % 3000))
            for i in range(20_000)
        ]
        for start in range(0, len(records), 5000):
            await post_transactions(server.url, records[start : start + 5000])
        assert await asyncio.to_thread(server.stop) == 0
    # Without its snapshot the next start rebuilds the state from the 20,000: seconds.
    (data / "detector-state.msgpack").unlink()
    log = tmp_path / "restart.log"
    env = {**os.environ, "FRAUDWATCH_API_KEY": API_KEY}
    command = [sys.executable, "-m", "server", "serve", "--port", str(free_port())]
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *command, "--data-dir", str(data), stdout=out, stderr=subprocess.STDOUT, env=env
        )
    try:
        deadline = time.monotonic() + 60
        while "detector state: rebuilding from the store" not in log.read_text():
            assert proc.returncode is None and time.monotonic() < deadline, log.read_text()
            await asyncio.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    output = log.read_text()
    assert code == 0, output
    assert "Traceback" not in output, output
    # The store was closed as at any stop: its WAL checkpointed into the database and
    # removed, and the server's address file with it.
    assert sorted(p.name for p in data.iterdir() if p.name.startswith("fraudwatch.db")) == [
        "fraudwatch.db"
    ], output
    assert not (data / "server.json").exists()
    assert "stopped while starting: closing what start-up had opened" in output, output


async def test_a_stalled_dashboard_does_not_hold_up_shutdown(tmp_path: Path) -> None:
    # A client that stopped reading never takes the close frame, and aiohttp would wait for
    # it until its handler is cancelled (2 x shutdown_timeout, ~20 s). The kernel drops it.
    with contextlib.ExitStack() as stack:
        server = await start_live(
            tmp_path / "data", stack, ws_queue_max=100_000, ws_stall_seconds=600
        )
        connector = aiohttp.TCPConnector(socket_factory=small_window)
        async with (
            aiohttp.ClientSession(headers=AUTH, connector=connector) as slow_http,
            aiohttp.ClientSession(headers=AUTH) as http,
        ):
            stalled = await slow_http.ws_connect(f"{server.url}/ws")
            for n in range(60):  # ~5 MB of alerts: more than the socket buffers hold
                status, _ = await _post(http, server.url, alert_run(f"s{n}"))
                assert status == 200
            server.proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(server.proc.wait, 8)
            await stalled.close()
    assert code == 0, server.output()


@pytest.mark.parametrize("path", ["/api/v1/transactions", "/api/v1/labels"])
async def test_a_request_still_sending_its_body_at_sigterm_is_answered_503(
    tmp_path: Path, path: str
) -> None:
    # A request whose body was still coming in (a large batch on a slow link) got no answer:
    # aiohttp stops reading a connection once shutdown starts, so the handler waited for
    # the rest of the body until it was cancelled at the 10 s shutdown timeout, and the
    # connection closed without a word. It is not accepted: it hears so, as others do.
    with contextlib.ExitStack() as stack:
        server = await start_live(tmp_path / "data", stack)
        host, port = server.url.removeprefix("http://").split(":")
        records: list[dict[str, Any]] = [tx(f"slow-{i}", at=BASE) for i in range(50)]
        if path == "/api/v1/labels":
            records = [{"transaction_id": r["id"], "label": "fraud"} for r in records]
        body = json.dumps(records).encode()
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            f"POST {path} HTTP/1.1\r\n".encode()
            + f"Host: {host}\r\nAuthorization: {AUTH['Authorization']}\r\n".encode()
            + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n".encode()
            + b"Expect: 100-continue\r\n\r\n"
        )
        # The 100 comes once the request is routed: it is in the server's hands.
        async with asyncio.timeout(10):
            assert await reader.readline() == b"HTTP/1.1 100 Continue\r\n"
            assert await reader.readline() == b"\r\n"
        writer.write(body[: len(body) // 2])
        await writer.drain()
        server.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            answer = await reader.read()
        writer.close()
        code = await asyncio.to_thread(server.proc.wait, 30)
    assert code == 0, server.output()
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 "), answer
    assert json.loads(payload)["error"]["code"] == "shutting_down", answer
    # Nothing of it was stored.
    assert stored_verdicts(server.db, [f"slow-{i}" for i in range(50)]) == {}


async def _post(
    http: aiohttp.ClientSession, url: str, records: list[dict[str, Any]]
) -> tuple[int, Any]:
    # A large body goes as a stream: aiohttp warns against sending it as one bytes object.
    body = io.BytesIO(json.dumps(records).encode())
    headers = {"Content-Type": "application/json"}
    async with http.post(f"{url}/api/v1/transactions", data=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def _until_queued(http: aiohttp.ClientSession, url: str, more_than: int) -> None:
    async with asyncio.timeout(30):
        for _ in itertools.count():
            async with http.get(f"{url}/metrics") as resp:
                metrics = await resp.text()
            depth = next(
                float(line.split()[1])
                for line in metrics.splitlines()
                if line.startswith("fraudwatch_queue_depth ")
            )
            if depth > more_than:
                return
            await asyncio.sleep(0.005)


async def _until_closed(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    async with asyncio.timeout(20):
        while (await ws.receive()).type not in (WSMsgType.CLOSE, WSMsgType.CLOSED):
            pass
    return ws.close_code


async def test_after_shutdown_starts_ingest_and_health_say_shutting_down(
    client: TestClient,
) -> None:
    # The window a real process shows only for a moment: the listener is closed but a
    # connection already open sends one more request.
    assert (await client.get("/healthz")).status == 200
    await client.app.shutdown()
    health = await client.get("/healthz")
    assert health.status == 503
    assert (await health.json())["status"] == "shutting_down"
    resp = await client.post("/api/v1/transactions", json=tx("late", at=BASE), headers=AUTH)
    assert resp.status == 503
    assert (await resp.json())["error"]["code"] == "shutting_down"


async def test_closing_intake_answers_feeds_waiting_for_room_at_once() -> None:
    # A feed blocked on a full queue was not accepted yet: it hears "shutting down" at once,
    # not when the loop next frees room (it may be busy retrying a failing store).
    queue = TxQueue(maxsize=10)
    await queue.put(Submission(txs(8)))
    blocked = asyncio.create_task(queue.put(Submission(txs(5, "late"))))
    await asyncio.sleep(0.05)
    assert not blocked.done()
    queue.close()
    with pytest.raises(IntakeClosed):
        await asyncio.wait_for(blocked, 1)
    assert queue.qsize() == 8  # what was accepted is still handed out
