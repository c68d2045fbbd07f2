"""GET /ws: the live feed. Replays from the store after `?since=SEQ`, then goes live."""

from __future__ import annotations

import logging

import msgspec
from aiohttp import WSMsgType, web

from server import messages
from server.auth import principal
from server.hub import Hub, Subscriber
from server.state import HUB, SETTINGS, STORE
from server.views.responses import json_error

log = logging.getLogger(__name__)
REPLAY_PAGE = 500


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser: cookies are not ambient there
    return origin == f"{request.scheme}://{request.host}"


async def websocket(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    who = await principal(request, settings.api_key, settings.session_max_age)
    if who is None:
        return json_error(401, "unauthorized", "Log in, or send 'Authorization: Bearer <api key>'")
    # A cross-site page could otherwise ride the analyst's cookie (CSWSH).
    if not who.is_machine and not _same_origin(request):
        return json_error(403, "bad_origin", "WebSocket origin not allowed")
    since: int | None = None
    if "since" in request.query:
        try:
            since = int(request.query["since"])
            if since < 0:
                raise ValueError
        except ValueError:
            return json_error(400, "invalid_parameter", "'since' must be a seq >= 0", "since")

    ws = web.WebSocketResponse(
        heartbeat=settings.ws_heartbeat, max_msg_size=settings.ws_max_msg_size, compress=False
    )
    await ws.prepare(request)
    hub = request.app[HUB]
    sub = hub.subscribe(ws, who.name)
    try:
        hub.send(sub, messages.hello(hub.last_seq, who.name, settings.simulator, False))
        if since is None:
            sub.last_seq = hub.last_seq
        else:
            await _replay(request, hub, sub, since)
        hub.go_live(sub)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                _handle(hub, sub, msg.data)
            elif msg.type == WSMsgType.BINARY:
                hub.send(sub, messages.error(messages.BAD_MESSAGE, "Send JSON text messages"))
    finally:
        await hub.unsubscribe(sub)
    return ws


async def _replay(request: web.Request, hub: Hub, sub: Subscriber, since: int) -> None:
    store = request.app[STORE]
    sub.last_seq = since
    while True:
        events = await store.events_since(sub.last_seq, REPLAY_PAGE)
        hub.replay(sub, events)
        # Wait for the writer so a long replay never piles up in memory.
        await sub.drained()
        if len(events) < REPLAY_PAGE or sub.closing:
            return


def _handle(hub: Hub, sub: Subscriber, data: str) -> None:
    try:
        message = msgspec.json.decode(data)
    except msgspec.DecodeError:
        hub.send(sub, messages.error(messages.BAD_MESSAGE, "Messages must be JSON objects"))
        return
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        hub.send(sub, messages.error(messages.BAD_MESSAGE, "Messages need a string 'type'"))
        return
    kind = message["type"]
    if kind == "ping":
        hub.send(sub, messages.pong())
    elif kind == "subscribe":
        sub.wants_verdicts = bool(message.get("verdicts", False))
        hub.send(sub, messages.subscribed(sub.wants_verdicts))
    else:
        hub.send(sub, messages.error(messages.UNKNOWN_TYPE, f"Unknown message type {kind!r}"))
