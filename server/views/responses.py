"""The one error shape every API answer uses: {"error": {"code", "message", "field"}}."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from aiohttp import web

_encoder = msgspec.json.Encoder(decimal_format="number")


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encoder.encode(data), status=status, content_type="application/json")


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": field}}


def error_message(text: str) -> str:
    """What a client shows of an answer: the message of this error shape, or the start of
    whatever else was answered (aiohttp's own 413 is plain text)."""
    try:
        error = json.loads(text)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        error = None
    return error if isinstance(error, str) else text[:200]


# A client of the ingest API (`fraudwatch replay --target`, the simulator's client): until
# the server has answered a request (any HTTP status), a connection that cannot be made
# (refused, a host name that does not resolve) is tried FIRST_CONNECT_TRIES times,
# `first_connect_wait` apart, then the client stops: nothing listens there, and a long
# retry only puts the error off. A server that has answered and then refuses connections
# is restarting: it gets every try.
FIRST_CONNECT_TRIES = 3
FIRST_CONNECT_WAIT_S = 0.5
# A request's answer may take a while (a big batch, a busy server), its connection should
# not: without a connect timeout, each try to a host that drops packets (a firewall, a
# wrong address on a routed network) waited out the whole request's timeout. A connection
# not made within this is one that cannot be made, by the rule above.
CONNECT_TIMEOUT_S = 10.0


def first_connect_wait(failures: int) -> float:
    """Seconds to wait after the `failures`-th connection in a row not made: 0.5, then 1."""
    return FIRST_CONNECT_WAIT_S * 2.0 ** (failures - 1)


def cannot_connect(url: str, tries: int, error: object) -> str:
    """The error of a client that made no connection to `url` in `tries` tries, saying how
    far apart they were: `cannot connect to URL (3 tries, 0.5 and 1 s apart): ERROR`."""
    waits = [f"{first_connect_wait(n):g}" for n in range(1, tries)]
    if len(waits) > 1:
        waits[-2:] = [f"{waits[-2]} and {waits[-1]}"]
    return f"cannot connect to {url} ({tries} tries, {', '.join(waits)} s apart): {error}"


def json_error(
    status: int, code: str, message: str, field: str | None = None, **extra: Any
) -> web.Response:
    return json_response({**error_body(code, message, field), **extra}, status=status)


def unauthorized(request: web.Request) -> web.Response:
    """401, saying what was wrong with the credentials sent: a client sending a revoked key
    was told to send a key, which it was doing."""
    header = request.headers.get("Authorization", "").strip()
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        message = (
            "API key not accepted: unknown or revoked (`fraudwatch keys list` shows which); "
            "send a live key as 'Authorization: Bearer <api key>'"
        )
    elif header:
        # Named only when it reads as a scheme: a bare key sent without "Bearer " is not
        # echoed back into the answer (and a proxy's log).
        named = (
            f"{scheme!r} scheme"
            if token and scheme.isalpha() and len(scheme) <= 20
            else "no scheme"
        )
        message = (
            f"Authorization header not understood ({named}): send 'Authorization: Bearer <api key>'"
        )
    else:
        message = "Log in, or send 'Authorization: Bearer <api key>'"
    return json_error(401, "unauthorized", message)
