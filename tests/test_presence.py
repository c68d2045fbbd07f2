"""Presence over the WebSocket: who has which alert open, live, cleared on disconnect."""

from __future__ import annotations

from typing import Any

from aiohttp import ClientWebSocketResponse
from aiohttp.test_utils import TestClient

from tests.conftest import AUTH, Login


async def next_of(ws: ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    """The next message of that type (stats and the like may come in between)."""
    while True:
        message: dict[str, Any] = await ws.receive_json(timeout=5)
        if message["type"] == kind:
            return message


async def test_presence_is_broadcast_snapshotted_and_cleared(
    client: TestClient, login: Login, aiohttp_client: Any
) -> None:
    bob_client: TestClient = await aiohttp_client(client.server)
    carol_client: TestClient = await aiohttp_client(client.server)
    await login("alice")
    await login("bob", session=bob_client)
    await login("carol", role="viewer", session=carol_client)

    async with client.ws_connect("/ws") as alice, bob_client.ws_connect("/ws") as bob:
        await next_of(alice, "hello")
        await next_of(bob, "hello")
        await alice.send_json({"type": "viewing", "alert_id": "a1"})
        assert await next_of(bob, "presence") == {
            "type": "presence",
            "alert_id": "a1",
            "users": ["alice"],
        }
        assert (await next_of(alice, "presence"))["users"] == ["alice"]

        # A viewer may be seen too; a newcomer gets who is looking at what on connect.
        async with carol_client.ws_connect("/ws") as carol:
            await next_of(carol, "hello")
            assert (await next_of(carol, "presence"))["users"] == ["alice"]
            await carol.send_json({"type": "viewing", "alert_id": "a1"})
            assert (await next_of(bob, "presence"))["users"] == ["alice", "carol"]
        # Carol's socket closed: she is no longer there.
        assert (await next_of(bob, "presence"))["users"] == ["alice"]

        # Moving to another alert clears the first one and announces the second.
        await alice.send_json({"type": "viewing", "alert_id": "a2"})
        moved = [await next_of(bob, "presence"), await next_of(bob, "presence")]
        assert {(m["alert_id"], tuple(m["users"])) for m in moved} == {
            ("a1", ()),
            ("a2", ("alice",)),
        }
        await alice.send_json({"type": "viewing", "alert_id": None})
        assert await next_of(bob, "presence") == {
            "type": "presence",
            "alert_id": "a2",
            "users": [],
        }

        # Bad values are refused with an error, and the socket stays open.
        for bad in (5, "", "<img src=x>", "x" * 65, ["a1"]):
            await alice.send_json({"type": "viewing", "alert_id": bad})
            error = await next_of(alice, "error")
            assert error["code"] == "bad_message", bad
        await alice.send_json({"type": "ping"})
        await next_of(alice, "pong")

        await alice.send_json({"type": "viewing", "alert_id": "a3"})
        assert (await next_of(bob, "presence"))["users"] == ["alice"]
    # Both closed; a new connection sees nobody anywhere.
    async with bob_client.ws_connect("/ws") as again:
        await next_of(again, "hello")
        await again.send_json({"type": "ping"})
        # Up to the pong, no presence: none is left over from the closed sockets.
        seen = []
        while not seen or seen[-1] != "pong":
            seen.append((await again.receive_json(timeout=5))["type"])
        assert "presence" not in seen, seen


async def test_machines_have_no_presence(client: TestClient) -> None:
    async with client.ws_connect("/ws", headers=AUTH) as ws:
        await next_of(ws, "hello")
        await ws.send_json({"type": "viewing", "alert_id": "a1"})
        error = await next_of(ws, "error")
        assert error["code"] == "forbidden"
