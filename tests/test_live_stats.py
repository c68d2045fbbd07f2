"""The `stats` message's server-wide counts, and the ingest time on alerts, end to end."""

from __future__ import annotations

from typing import Any

from aiohttp import ClientWebSocketResponse
from aiohttp.test_utils import TestClient

from tests.browser_support import impossible_travel, travel_at_night
from tests.conftest import AUTH, Login, card_testing
from tests.test_api import post_batch


async def stats_where(ws: ClientWebSocketResponse, ok: Any) -> dict[str, Any]:
    """The first stats message for which ok(message) holds (one comes about every second)."""
    for _ in range(20):
        message: dict[str, Any] = await ws.receive_json(timeout=5)
        if message["type"] == "stats" and ok(message):
            return message
    raise AssertionError("no such stats message")


async def test_stats_count_open_by_severity_oldest_open_and_rejected(
    client: TestClient, login: Login
) -> None:
    csrf = await login("alice")
    async with client.ws_connect("/ws", headers=AUTH) as ws:
        body = [*impossible_travel("acct-h", "High Ltd"), {"id": "bad"}]
        resp = await client.post("/api/v1/transactions", json=body, headers=AUTH)
        results = (await resp.json())["results"]
        assert "error" in results[-1]
        [high] = [r["alert_id"] for r in results[:-1] if r.get("alert_id")]
        alert_message = None
        while alert_message is None:
            message = await ws.receive_json(timeout=5)
            if message["type"] == "alert":
                alert_message = message
        # The server's receipt time rides on the alert: ingest -> screen is measurable.
        alert = alert_message["alert"]
        assert alert["received_at"] is not None
        assert alert["received_at"] <= alert["created_at"]
        resp = await client.post(
            "/api/v1/transactions", json=travel_at_night("acct-c"), headers=AUTH
        )
        assert resp.status == 200

        stats = await stats_where(ws, lambda m: m["open_alerts"] == 2)
        assert stats["open_by_severity"] == {"critical": 1, "high": 1}
        assert stats["oldest_open_created_at"] == alert["created_at"]
        assert stats["rejected_total"] == 1
        assert isinstance(stats["alerts"], int)

        # Acknowledged is no longer "unacknowledged": the oldest open is now the other one.
        ack = await client.post(f"/api/v1/alerts/{high}/ack", headers={"X-CSRF-Token": csrf})
        assert ack.status == 200
        stats = await stats_where(ws, lambda m: m["oldest_open_created_at"] != alert["created_at"])
        assert stats["open_alerts"] == 2
        assert stats["oldest_open_created_at"] > alert["created_at"]


async def test_a_new_client_gets_the_recent_per_second_counts(client: TestClient) -> None:
    # Alerts raised before a dashboard connects are in its hello, tick by tick, so its
    # "Alerts / min" starts from the last minute's real count rather than from zero.
    async with client.ws_connect("/ws", headers=AUTH) as first:
        results = await post_batch(client, card_testing("recent", "acct-recent", n=6))
        raised = sum(1 for r in results if r["alert_id"])
        assert raised >= 2
        counted = 0
        while counted < raised:  # the ticks that count them have been published
            counted += (await stats_where(first, lambda m: True))["alerts"]
        assert counted == raised

    async with client.ws_connect("/ws", headers=AUTH) as ws:
        hello = await ws.receive_json(timeout=5)
        assert hello["type"] == "hello"
        ticks = hello["recent_stats"]
        # The app is seconds old: every tick since it started, oldest first.
        assert sum(t["alerts"] for t in ticks) == raised
        assert all(isinstance(t["alerts"], int) and t["tx_per_s"] >= 0 for t in ticks)
        times = [t["server_time"] for t in ticks]
        assert times == sorted(times)
        assert times[-1] <= hello["server_time"]
        # Live ticks follow the history without repeating any of it.
        after = await stats_where(ws, lambda m: True)
        assert after["server_time"] > times[-1]
        assert after["alerts"] == 0


async def test_a_new_client_gets_the_latest_stats_in_its_hello(client: TestClient) -> None:
    # A dashboard shows open alerts, the oldest unacknowledged and the latency from its
    # hello, rather than a dash until the next tick a second later.
    async with client.ws_connect("/ws", headers=AUTH) as first:
        await post_batch(client, impossible_travel("acct-hello", "Hello Ltd"))
        published = await stats_where(first, lambda m: m["open_alerts"] == 1)

    async with client.ws_connect("/ws", headers=AUTH) as ws:
        hello = await ws.receive_json(timeout=5)
        assert hello["type"] == "hello"
        latest = hello["stats"]
        assert "type" not in latest
        assert latest["open_alerts"] == 1
        assert latest["open_by_severity"] == {"high": 1}
        assert latest["oldest_open_created_at"] == published["oldest_open_created_at"]
        assert latest["latency_ms"].keys() == {"p50", "p99"}
        # It is the newest tick of recent_stats, in full: the same tick, not one more.
        assert latest["server_time"] == hello["recent_stats"][-1]["server_time"]
        assert latest["alerts"] == hello["recent_stats"][-1]["alerts"]
        after = await stats_where(ws, lambda m: True)
        assert after["server_time"] > latest["server_time"]
