"""Every server→client WebSocket message and error code, built and encoded in one place.

Messages are encoded once to bytes and the same bytes go to every subscriber.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from server.detection.verdict import Verdict
from server.store.base import AlertEvent, utc_stamp

# Error codes sent as {"type": "error", "code": ..., "message": ...}.
BAD_MESSAGE = "bad_message"
UNKNOWN_TYPE = "unknown_type"
RATE_LIMITED = "rate_limited"
FORBIDDEN = "forbidden"

# Close code for a socket whose credentials ended: its session was logged out or expired, or
# its API key was revoked. 4000-4999 are the application's (RFC 6455); 4401 echoes HTTP 401
# so a client knows to log in again rather than just reconnect.
CLOSE_UNAUTHORIZED = 4401
# Close code for `/ws?since=N` with N past the last seq this server's log has given: the
# client's numbers are from another history (a restart on a fresh store), so nothing can be
# replayed to it and, worse, live events up to N would look like ones it has. It must reload
# a snapshot and resume from that seq. 4409 echoes HTTP 409 (its state conflicts with ours).
CLOSE_SINCE_AHEAD = 4409

_encoder = msgspec.json.Encoder(decimal_format="number")


class _Verdicts(msgspec.Struct):
    type: str
    items: Sequence[Verdict]


def encode(message: dict[str, Any]) -> bytes:
    return _encoder.encode(message)


def server_time() -> str:
    # The form of every other time the server gives (alerts' created_at, ...): one parser
    # and text comparison serve them all.
    return utc_stamp()


def hello(
    seq: int,
    user: str,
    simulated: bool,
    subscribed_verdicts: bool,
    dispositions: Sequence[str] = (),
    recent_stats: Sequence[dict[str, Any]] = (),
    latest_stats: dict[str, Any] | None = None,
) -> bytes:
    return encode(
        {
            "type": "hello",
            "seq": seq,
            "user": user,
            "simulated": simulated,
            "verdicts": subscribed_verdicts,
            # What resolve accepts here (the `dispositions` setting), in the order to offer.
            "dispositions": list(dispositions),
            # The stats ticks published before this socket, oldest first (`stats_tick`): a
            # page shows the last minutes' rates at once instead of counting up from zero.
            "recent_stats": list(recent_stats),
            # The newest of those ticks in full (`stats_body`), or None before the first: the
            # page's counters show its figures at once instead of a dash until the next tick.
            # Its `alerts` is the last of recent_stats', so a page must count it only once.
            "stats": latest_stats,
            "server_time": server_time(),
        }
    )


def stats_tick(body: dict[str, Any]) -> dict[str, Any]:
    """One published `stats` message (`stats_body`) as hello's `recent_stats` keeps it:
    when, and the figures the header's sparklines draw."""
    return {
        "server_time": body["server_time"],
        "tx_per_s": body.get("tx_per_s"),
        "alerts": body.get("alerts"),
    }


def alert_event(event: AlertEvent) -> bytes:
    # {"seq", "type", "alert"}: type is "alert" for a new alert, "alert_updated" after.
    return _encoder.encode(event)


def verdicts(items: Sequence[Verdict]) -> bytes:
    return _encoder.encode(_Verdicts("verdicts", items))


def stats_body(snapshot: dict[str, Any]) -> dict[str, Any]:
    """A `stats` message's fields without its `type`, stamped now: what `stats` sends and
    hello's `stats` carries."""
    # server_time lets a page refine its idea of the server's clock every second.
    return {**snapshot, "server_time": server_time()}


def stats(body: dict[str, Any]) -> bytes:
    """The `stats` message of a `stats_body`."""
    return encode({"type": "stats", **body})


def presence(alert_id: str, users: Sequence[str]) -> bytes:
    # Ephemeral (no seq): who has the alert open right now; an empty list means nobody.
    return encode({"type": "presence", "alert_id": alert_id, "users": list(users)})


def subscribed(verdicts: bool) -> bytes:
    return encode({"type": "subscribed", "verdicts": verdicts})


def pong() -> bytes:
    return b'{"type":"pong"}'


def error(code: str, message: str) -> bytes:
    return encode({"type": "error", "code": code, "message": message})
