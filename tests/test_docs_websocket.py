"""docs/websocket.md's table of server messages names exactly the fields a real socket gets:
a client is written from that table, so a field added, renamed or dropped fails here until the
table says so. Also the shapes the prose gives: `hello.recent_stats` entries, `hello.stats`."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from tests.conftest import AUTH, card_testing
from tests.test_api import post_batch

DOC = (Path(__file__).resolve().parent.parent / "docs" / "websocket.md").read_text("utf-8")

# Documented as conditional: `scorecard` "once labels are known", `model` "when the model is
# on"; a fresh server has neither labels nor, by the table's word, a promise of them.
OPTIONAL = {"stats": {"scorecard", "model"}}


def _without_parentheses(text: str) -> str:
    while True:
        stripped = re.sub(r"\([^()]*\)", "", text)
        if stripped == text:
            return text
        text = stripped


def documented_fields() -> dict[str, set[str]]:
    """The `Server → client` table: message type -> the fields its row names."""
    section = DOC.split("## Server → client", 1)[1].split("\n## ", 1)[0]
    table: dict[str, set[str]] = {}
    for row in re.findall(r"^\| `(\w+)` \|([^|]*)\|", section, re.MULTILINE):
        kind, fields = row
        # Asides in parentheses mention other names (`open`, `GET /api/v1/scorecard`).
        names = re.findall(r"`(\w+)", _without_parentheses(fields))
        table[kind] = set(names)
    return table


async def _next(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(5):
        while True:
            msg = await ws.receive()
            assert msg.type == WSMsgType.TEXT, msg
            data: dict[str, Any] = msg.json()
            if data["type"] == kind:
                return data


def _check(kind: str, message: dict[str, Any], table: dict[str, set[str]]) -> list[str]:
    real = set(message) - {"type"}
    shown = table[kind]
    problems = []
    if real - shown:
        problems.append(f"`{kind}` has {sorted(real - shown)}, which the table does not name")
    if missing := shown - OPTIONAL.get(kind, set()) - real:
        problems.append(f"`{kind}` lacks {sorted(missing)}, which the table names")
    return problems


def test_the_table_is_read() -> None:
    table = documented_fields()
    assert {"hello", "alert", "alert_updated", "verdicts", "stats", "error"} <= set(table)
    assert {"seq", "dispositions", "recent_stats", "stats"} <= table["hello"]
    assert "latency_ms" in table["stats"] and "open" not in table["stats"]


async def test_server_messages_carry_the_documented_fields(client: TestClient) -> None:
    table = documented_fields()
    seen: dict[str, dict[str, Any]] = {}
    async with client.ws_connect("/ws", headers=AUTH) as ws:
        seen["hello"] = await _next(ws, "hello")
        await ws.send_json({"type": "ping"})
        seen["pong"] = await _next(ws, "pong")
        await ws.send_json({"type": "subscribe", "verdicts": True})
        seen["subscribed"] = await _next(ws, "subscribed")
        await ws.send_json({"type": "no-such-type"})
        seen["error"] = await _next(ws, "error")
        await post_batch(client, card_testing("doc", "acct-doc"))
        # A batch's alert and its verdicts come in either order, the next tick with them.
        async with asyncio.timeout(5):
            while not {"verdicts", "alert", "stats"} <= set(seen):
                data = (await ws.receive()).json()
                seen.setdefault(data["type"], data)
    # A socket opened after a tick gets that tick in its hello.
    async with client.ws_connect("/ws", headers=AUTH) as ws:
        later_hello = await _next(ws, "hello")

    problems = [p for kind, message in seen.items() for p in _check(kind, message, table)]
    assert not problems, "docs/websocket.md's table and the server disagree:\n" + "\n".join(
        problems
    )
    # "`hello.stats` is the newest of those ticks in full: every field of that `stats`
    # message but `type`", and each `recent_stats` entry is the shape the prose gives.
    assert later_hello["stats"] is not None
    assert set(later_hello["stats"]) == set(seen["stats"]) - {"type"}
    entry = re.search(r"each\s+`\{([^`]*)\}`", DOC)
    assert entry, "docs/websocket.md no longer gives the shape of a recent_stats entry"
    shown_entry = set(re.findall(r'"(\w+)"', entry.group(1)))
    assert later_hello["recent_stats"], "no tick before the second socket"
    assert all(set(e) == shown_entry for e in later_hello["recent_stats"])
