"""The one error shape every API answer uses: {"error": {"code", "message", "field"}}."""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

import msgspec
from aiohttp import web

_encoder = msgspec.json.Encoder(decimal_format="number")


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encoder.encode(data), status=status, content_type="application/json")


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": field}}


async def json_object(
    request: web.Request, fields: Collection[str], *, allow_empty: bool = False
) -> dict[str, Any] | web.Response:
    """The request's body as a JSON object of `fields` only, or the 400 to answer instead.
    With `allow_empty`, an empty body is `{}`. Another field is refused (`unknown_field`),
    as a label's is: a misspelt `note` or `password` would otherwise be dropped, and the
    action done without it, answered 200."""
    if allow_empty:
        raw = await request.read()
        if not raw.strip():
            return {}
    try:
        body: Any = await request.json(loads=msgspec.json.decode)
    except (msgspec.DecodeError, ValueError):
        return json_error(400, "malformed_json", "Send a JSON object")
    if not isinstance(body, dict):
        return json_error(400, "invalid_body", "Send a JSON object")
    unknown = sorted(set(body).difference(fields))
    if unknown:
        names = ", ".join(repr(name) for name in sorted(fields))
        message = f"Unknown field {unknown[0]!r}; fields are {names}"
        return json_error(400, "unknown_field", message, unknown[0])
    return body


def error_message(text: str) -> str:
    """What a client shows of an answer: the message of this error shape, or the start of
    whatever else was answered (aiohttp's own 413 is plain text)."""
    try:
        error = json.loads(text)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        error = None
    return error if isinstance(error, str) else text[:200]


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
