"""The WebSocket protocol: hello, live alerts in seq order, resume by seq, verdicts, errors."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
from aiohttp import WSCloseCode, WSMsgType
from aiohttp.test_utils import TestClient

from server.app import create_app
from tests.conftest import AUTH, Login, card_testing, make_settings, tx
from tests.test_api import post_batch


async def receive(
    ws: aiohttp.ClientWebSocketResponse, kind: str, within: float = 5
) -> dict[str, Any]:
    """The next message of `kind`, skipping stats ticks and other kinds."""
    async with asyncio.timeout(within):
        while True:
            msg = await ws.receive()
            assert msg.type == WSMsgType.TEXT, msg
            data: dict[str, Any] = msg.json()
            if data["type"] == kind:
                return data


async def collect_alerts(ws: aiohttp.ClientWebSocketResponse, n: int) -> list[dict[str, Any]]:
    out = []
    async with asyncio.timeout(5):
        while len(out) < n:
            data = (await ws.receive()).json()
            if data["type"] in ("alert", "alert_updated"):
                out.append(data)
    return out


async def test_hello_then_live_alerts_in_seq_order(client: TestClient) -> None:
    async with client.ws_connect("/ws", headers=AUTH) as ws:
        hello = await receive(ws, "hello")
        assert hello["user"] == "api"
        assert hello["seq"] == 0
        results = await post_batch(client, card_testing("a", "acct-a", n=6))
        expected = [r["alert_id"] for r in results if r["alert_id"]]
        events = await collect_alerts(ws, len(expected))
        assert [e["alert"]["id"] for e in events] == expected
        seqs = [e["seq"] for e in events]
        assert seqs == sorted(set(seqs))
        assert all(e["type"] == "alert" for e in events)


async def test_an_alerts_reasons_carry_their_unit(client: TestClient) -> None:
    async with client.ws_connect("/ws", headers=AUTH) as ws:
        await receive(ws, "hello")
        await ws.send_json({"type": "subscribe", "verdicts": True})
        await receive(ws, "subscribed")
        await post_batch(client, card_testing("u", "acct-u", n=3))
        (event,) = await collect_alerts(ws, 1)
        (reason,) = event["alert"]["reasons"]
        assert (reason["code"], reason["unit"]) == ("card_testing", "count"), reason
        items: list[dict[str, Any]] = []
        while len(items) < 3:
            items += (await receive(ws, "verdicts"))["items"]
        assert items[-1]["reasons"] == [reason]


async def test_ws_requires_auth_and_same_origin(client: TestClient, login: Login) -> None:
    resp = await client.get("/ws")
    assert resp.status == 401
    await login("alice")
    resp = await client.get(
        "/ws",
        headers={
            "Origin": "https://evil.example",
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
    )
    assert resp.status == 403
    async with client.ws_connect("/ws") as ws:  # same origin, session cookie
        assert (await receive(ws, "hello"))["user"] == "alice"


async def test_resume_since_seq_misses_nothing(client: TestClient, login: Login) -> None:
    csrf = await login("alice")
    async with client.ws_connect("/ws", headers=AUTH) as ws:
        await receive(ws, "hello")
        first = await post_batch(client, card_testing("r1", "acct-r1"))
        events = await collect_alerts(ws, sum(1 for r in first if r["alert_id"]))
        last_seq = events[-1]["seq"]
    # While this dashboard is away: new alerts and an acknowledgement.
    offline = await post_batch(client, card_testing("r2", "acct-r2"))
    missed = [r["alert_id"] for r in offline if r["alert_id"]]
    resp = await client.post(f"/api/v1/alerts/{missed[0]}/ack", headers={"X-CSRF-Token": csrf})
    assert resp.status == 200
    async with client.ws_connect(f"/ws?since={last_seq}", headers=AUTH) as ws:
        await receive(ws, "hello")
        replayed = await collect_alerts(ws, len(missed) + 1)
        assert [e["alert"]["id"] for e in replayed[:-1]] == missed
        assert replayed[-1]["type"] == "alert_updated"
        assert replayed[-1]["alert"]["owner"] == "alice"
        seqs = [e["seq"] for e in replayed]
        assert seqs == list(range(last_seq + 1, last_seq + 1 + len(seqs)))
        # Then it is live, continuing the same sequence.
        more = await post_batch(client, card_testing("r3", "acct-r3"))
        live = await collect_alerts(ws, sum(1 for r in more if r["alert_id"]))
        assert live[0]["seq"] == seqs[-1] + 1


async def test_since_zero_replays_history(client: TestClient) -> None:
    results = await post_batch(client, card_testing("h", "acct-h"))
    expected = [r["alert_id"] for r in results if r["alert_id"]]
    async with client.ws_connect("/ws?since=0", headers=AUTH) as ws:
        events = await collect_alerts(ws, len(expected))
        assert [e["alert"]["id"] for e in events] == expected
    resp = await client.get("/ws?since=-3", headers=AUTH)
    assert resp.status == 400


async def test_since_ahead_of_the_log_is_refused_with_4409(client: TestClient) -> None:
    results = await post_batch(client, card_testing("a", "acct-a"))
    assert any(r["alert_id"] for r in results)
    resp = await client.get("/api/v1/alerts", headers=AUTH)
    last = (await resp.json())["seq"]
    assert last > 0
    # A seq this log never gave (the client's is from before a restart on a fresh store):
    # closed before the hello, so the client reloads rather than believing it is caught up.
    async with client.ws_connect(f"/ws?since={last + 100}", headers=AUTH) as ws:
        async with asyncio.timeout(5):
            msg = await ws.receive()
        assert msg.type == WSMsgType.CLOSE, msg
        assert ws.close_code == 4409
        assert msg.extra == "since ahead of the server; reload"
    # The log's own last seq resumes as ever, and live events follow it.
    async with client.ws_connect(f"/ws?since={last}", headers=AUTH) as ws:
        assert (await receive(ws, "hello"))["seq"] == last
        more = await post_batch(client, card_testing("b", "acct-b"))
        live = await collect_alerts(ws, sum(1 for r in more if r["alert_id"]))
        assert live[0]["seq"] == last + 1


async def test_verdicts_only_for_subscribers(client: TestClient) -> None:
    async with (
        client.ws_connect("/ws", headers=AUTH) as listener,
        client.ws_connect("/ws", headers=AUTH) as bystander,
    ):
        await receive(listener, "hello")
        await receive(bystander, "hello")
        await listener.send_json({"type": "subscribe", "verdicts": True})
        assert (await receive(listener, "subscribed"))["verdicts"] is True
        await post_batch(client, [tx(f"v-{i}") for i in range(3)])
        got: list[str] = []
        while len(got) < 3:
            got += [v["transaction_id"] for v in (await receive(listener, "verdicts"))["items"]]
        assert got == ["v-0", "v-1", "v-2"]
        # The bystander answers a ping but has been sent no verdicts.
        await bystander.send_json({"type": "ping"})
        async with asyncio.timeout(5):
            while True:
                data = (await bystander.receive()).json()
                assert data["type"] != "verdicts"
                if data["type"] == "pong":
                    break


async def test_bad_client_messages_get_errors_not_a_closed_socket(client: TestClient) -> None:
    async with client.ws_connect("/ws", headers=AUTH) as ws:
        await receive(ws, "hello")
        await ws.send_str("not json")
        assert (await receive(ws, "error"))["code"] == "bad_message"
        await ws.send_json({"type": "launch_rockets"})
        assert (await receive(ws, "error"))["code"] == "unknown_type"
        await ws.send_json({"type": "ping"})
        assert (await receive(ws, "pong"))["type"] == "pong"


async def test_oversized_client_message_closes_the_socket(
    aiohttp_client: Any, tmp_path: Any
) -> None:
    client = await aiohttp_client(create_app(make_settings(tmp_path, ws_max_msg_size=1024)))
    async with client.ws_connect("/ws", headers=AUTH) as ws:
        await receive(ws, "hello")
        await ws.send_str("x" * 5000)
        async with asyncio.timeout(5):
            while (await ws.receive()).type == WSMsgType.TEXT:
                pass
        assert ws.close_code == WSCloseCode.MESSAGE_TOO_BIG


async def test_stats_tick_reaches_clients(client: TestClient) -> None:
    async with client.ws_connect("/ws", headers=AUTH) as ws:
        await post_batch(client, [tx("s-1")])
        stats = await receive(ws, "stats", within=5)
        assert {"tx_per_s", "alerts_per_s", "latency_ms", "open_alerts", "clients"} <= set(stats)
        assert stats["clients"] == 1


async def test_shutdown_closes_sockets_going_away(aiohttp_client: Any, tmp_path: Any) -> None:
    client = await aiohttp_client(create_app(make_settings(tmp_path)))
    ws = await client.ws_connect("/ws", headers=AUTH)
    await receive(ws, "hello")
    closing = asyncio.create_task(client.server.close())
    async with asyncio.timeout(10):
        while (await ws.receive()).type not in (
            WSMsgType.CLOSE,
            WSMsgType.CLOSED,
            WSMsgType.CLOSING,
        ):
            pass
    assert ws.close_code == WSCloseCode.GOING_AWAY
    await ws.close()
    await closing


async def test_server_time_has_the_form_of_every_other_time(client: TestClient) -> None:
    # One format for every time the server gives (the alerts' created_at): RFC 3339 UTC,
    # milliseconds, `Z`; fixed width, so a client may compare them as text.
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    async with client.ws_connect("/ws", headers=AUTH) as ws:
        hello = await receive(ws, "hello")
        assert re.fullmatch(stamp, hello["server_time"]), hello["server_time"]
        results = await post_batch(client, card_testing("st", "acct-st", n=6))
        assert any(r["alert_id"] for r in results)
        alert = (await receive(ws, "alert"))["alert"]
        assert re.fullmatch(stamp, alert["created_at"]), alert["created_at"]
        tick = await receive(ws, "stats")
        assert re.fullmatch(stamp, tick["server_time"]), tick["server_time"]
