"""GET /ws: the live feed. Replays from the store after `?since=SEQ`, then goes live.

Before the upgrade: the Origin is checked (403), then the caller (401) and its `read`
permission (403). After it: every client message is rate limited, validated and checked
against the permission its type needs; the socket closes when its credentials end. A
`since` past the last seq the log has given is closed at once (4409): the client must reload.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from aiohttp import WSCloseCode, WSMsgType, web

from server import messages
from server.auth import Authenticator, Permission, Principal
from server.hub import Hub, Subscriber
from server.ratelimit import TokenBucket
from server.state import AUTH, HUB, SETTINGS, STORE
from server.views.responses import json_error, unauthorized

log = logging.getLogger(__name__)
REPLAY_PAGE = 500
# Messages refused for the rate limit before the socket is closed (1008). One refusal is
# answered with a `rate_limited` error; a client that keeps going anyway is flooding.
FLOOD_LIMIT = 200
# How often a socket checks that its key or session is still live (and the same role): the
# API key cache's TTL, and never more often than this.
MIN_KEY_RECHECK_S = 1.0
# Alert ids are the server's own (hex); anything else in `viewing` is refused before it can be
# broadcast to every dashboard.
ALERT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True, slots=True)
class Command:
    """A client message type: the permission it needs, and what it does."""

    needs: Permission
    run: Callable[[Hub, Subscriber, Principal, dict[str, Any]], None]


async def websocket(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    auth = request.app[AUTH]
    store = request.app[STORE]
    # A cross-site page could otherwise ride the analyst's cookie (CSWSH): refused before
    # anything else is looked at.
    if not auth.origin_allowed(request):
        return json_error(403, "bad_origin", "WebSocket origin not allowed")
    who = await auth.principal(request)
    if who is None:
        return unauthorized(request)
    if not who.can("read"):
        return json_error(403, "forbidden", "The live feed needs the 'read' scope")
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
    hub = request.app[HUB]
    # A seq this log never gave (see CLOSE_SINCE_AHEAD). The hub's seq can trail the store's
    # for a moment after a commit, so only the store's own says so.
    ahead = since is not None and since > hub.last_seq and since > await store.last_seq()
    await ws.prepare(request)
    transport = request.transport
    if transport is None:  # the peer left during the handshake
        return ws
    if ahead:
        # Refused after the upgrade, not with a 4xx before it: a browser sees only close codes.
        await ws.close(
            code=messages.CLOSE_SINCE_AHEAD, message=b"since ahead of the server; reload"
        )
        return ws
    sub = hub.subscribe(ws, transport, who.name, who.session)
    guard = asyncio.create_task(_guard(auth, hub, sub, who), name=f"ws-guard-{who.name}")
    bucket = TokenBucket(settings.ws_rate_limit, settings.ws_rate_burst)
    refused = 0
    limited = False  # one `rate_limited` error per run of refused messages, not one each
    try:
        hub.send(
            sub,
            messages.hello(
                hub.last_seq,
                who.name,
                settings.simulator,
                False,
                settings.disposition_names,
                hub.recent_stats,
                hub.latest_stats,
            ),
        )
        if since is None:
            sub.last_seq = hub.last_seq
        else:
            await _replay(request, hub, sub, since)
        hub.go_live(sub)
        hub.send_presence(sub)
        async for msg in ws:
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            if not bucket.take():
                refused += 1
                if refused > FLOOD_LIMIT:
                    log.warning("closing %s's socket: message flood", who.name)
                    hub.disconnect(sub, WSCloseCode.POLICY_VIOLATION, b"message flood")
                    break
                if not limited:
                    hub.send(sub, messages.error(messages.RATE_LIMITED, "Too many messages"))
                limited = True
                continue
            limited = False
            if msg.type == WSMsgType.TEXT:
                _handle(hub, sub, who, msg.data)
            else:
                hub.send(sub, messages.error(messages.BAD_MESSAGE, "Send JSON text messages"))
    finally:
        guard.cancel()
        await hub.unsubscribe(sub)
        # wait() rather than await: our own cancellation must still propagate.
        await asyncio.wait([guard])
    return ws


async def _guard(auth: Authenticator, hub: Hub, sub: Subscriber, who: Principal) -> None:
    """Close the socket when its credentials end or change: the session expires, is ended
    elsewhere (another process, `fraudwatch users add` giving another role, the user being
    removed), or the key is revoked. A logout or an admin's change through this process
    closes the sockets at once, through the hub; this catches the rest within a recheck."""
    recheck = max(auth.keys.ttl, MIN_KEY_RECHECK_S)
    if who.session is not None:
        await _guard_session(auth, hub, sub, who, who.session, recheck)
        return
    if who.key_hash is None:
        return  # the bootstrap key lives as long as the process
    while True:
        await asyncio.sleep(recheck)
        try:
            live = await auth.keys.check(who.key_hash) is not None
        except Exception:
            # The store is having trouble: keep the socket, look again next time.
            log.warning("could not re-check %s's API key", who.name, exc_info=True)
            continue
        if not live:
            hub.disconnect(sub, messages.CLOSE_UNAUTHORIZED, b"api key revoked")
            return


async def _guard_session(
    auth: Authenticator, hub: Hub, sub: Subscriber, who: Principal, digest: str, recheck: float
) -> None:
    expires_at = who.expires_at if who.expires_at is not None else float("inf")
    while True:
        left = expires_at - time.time()
        if left <= 0:
            hub.disconnect(sub, messages.CLOSE_UNAUTHORIZED, b"session expired")
            return
        await asyncio.sleep(min(left, recheck))
        try:
            record = await auth.store.get_session(digest)
        except Exception:
            log.warning("could not re-check %s's session", who.name, exc_info=True)
            continue
        if record is None or record.revoked:
            hub.disconnect(sub, messages.CLOSE_UNAUTHORIZED, b"session ended")
            return
        if record.role != who.role:
            hub.disconnect(sub, messages.CLOSE_UNAUTHORIZED, b"role changed")
            return


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


def _handle(hub: Hub, sub: Subscriber, who: Principal, data: str) -> None:
    try:
        message = msgspec.json.decode(data)
    except msgspec.DecodeError:
        hub.send(sub, messages.error(messages.BAD_MESSAGE, "Messages must be JSON objects"))
        return
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        hub.send(sub, messages.error(messages.BAD_MESSAGE, "Messages need a string 'type'"))
        return
    kind = message["type"]
    command = COMMANDS.get(kind)
    if command is None:
        hub.send(sub, messages.error(messages.UNKNOWN_TYPE, f"Unknown message type {kind!r}"))
    elif not who.can(command.needs):
        text = f"{kind!r} needs the {command.needs!r} permission, which {who.name} lacks"
        hub.send(sub, messages.error(messages.FORBIDDEN, text))
    else:
        command.run(hub, sub, who, message)


def _ping(hub: Hub, sub: Subscriber, who: Principal, message: dict[str, Any]) -> None:
    hub.send(sub, messages.pong())


def _subscribe(hub: Hub, sub: Subscriber, who: Principal, message: dict[str, Any]) -> None:
    wanted = message.get("verdicts", False)
    if not isinstance(wanted, bool):
        hub.send(sub, messages.error(messages.BAD_MESSAGE, "'verdicts' must be true or false"))
        return
    sub.wants_verdicts = wanted
    hub.send(sub, messages.subscribed(wanted))


def _viewing(hub: Hub, sub: Subscriber, who: Principal, message: dict[str, Any]) -> None:
    if who.is_machine:
        # Presence is about people: a machine client has nobody to show.
        hub.send(sub, messages.error(messages.FORBIDDEN, "'viewing' is for analysts' sessions"))
        return
    alert_id = message.get("alert_id")
    if alert_id is not None and not (isinstance(alert_id, str) and ALERT_ID.fullmatch(alert_id)):
        hub.send(
            sub, messages.error(messages.BAD_MESSAGE, "'alert_id' must be an alert id or null")
        )
        return
    hub.set_viewing(sub, alert_id)


# Every client message type, with the permission it needs. A type that changes state (say,
# acknowledging over the socket) must need `triage`, so a viewer's socket cannot send it.
COMMANDS: dict[str, Command] = {
    "ping": Command("read", _ping),
    "subscribe": Command("read", _subscribe),
    "viewing": Command("read", _viewing),
}
