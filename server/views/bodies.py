"""Reading a request's JSON body, one way for every endpoint that takes one: the types
taken (a 415 for the others), and each problem of the body named in the same words, the
ingest API's where the body is not JSON."""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from aiohttp import web

from server.transactions import MAX_DEPTH, nests_deeper_than, why_not_json
from server.views.responses import error_body, json_error, json_response

BOM = b"\xef\xbb\xbf"  # the UTF-8 byte order mark
# In the order a 415 lists them (`accepted`): the one to use first.
NDJSON_TYPES = (
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
    "application/x-jsonlines",
)
# Read as JSON (an object, or for the bulk endpoints an array), besides any
# `application/*+json` (RFC 6839) and, for the bulk endpoints, the NDJSON types. curl -d
# sends the form type, and the README's first example is such a command; the generic type
# is what some clients send for bytes with no stated type, and aiohttp's reading of a
# request without Content-Type.
JSON_TYPES = frozenset(
    {"application/json", "application/x-www-form-urlencoded", "application/octet-stream"}
)
# What a 415 lists as taken (`accepted`): all but the generic type, which says nothing.
OBJECT_TYPES = ("application/json", "application/x-www-form-urlencoded")
BULK_TYPES = ("application/json", *NDJSON_TYPES, "application/x-www-form-urlencoded")
_SEND_BULK = "JSON as application/json, or NDJSON as application/x-ndjson"
_SEND_OBJECT = "a JSON object as application/json"

MAX_INT_DIGITS = 100
"""No field of a label or of a triage body is a number: one longer than this is refused as
malformed JSON."""


def unsupported_media_type(request: web.Request, *, bulk: bool = False) -> web.Response | None:
    """The 415 for a body whose Content-Type is not read as JSON (text/plain, XML, a form
    upload), or None. `bulk`: the ingest and labels APIs, which take NDJSON too and accept
    records; the others take one JSON object and change something. A body sent as XML was
    answered "Malformed JSON: invalid character (byte 0)", and one sent as text/plain was
    read as JSON and taken."""
    content_type = request.content_type
    if (
        content_type in JSON_TYPES
        or (bulk and content_type in NDJSON_TYPES)
        or (content_type.startswith("application/") and content_type.endswith("+json"))
    ):
        return None
    shown = content_type[:100]
    send = _SEND_BULK if bulk else _SEND_OBJECT
    if content_type.startswith("multipart/"):
        what = "the file itself as the body" if bulk else "the JSON object itself as the body"
        message = (
            f"A multipart/form-data upload (curl -F) is not taken: send {what}, with "
            f"--data-binary @FILE and its Content-Type ({send})."
        )
    else:
        message = f"Content-Type {shown} is not taken: send {send}."
    outcome = "Nothing of this request was accepted." if bulk else "Nothing was changed."
    body = error_body("unsupported_media_type", f"{message} {outcome}")
    body["error"].update(content_type=shown, accepted=list(BULK_TYPES if bulk else OBJECT_TYPES))
    return json_response(body, status=415)


class DuplicateKey(dict[str, Any]):
    """An object that named `key` twice: refused, as ingest refuses such a transaction
    (parsers disagree on which one wins)."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key


def _keys_once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            return DuplicateKey(key)
        seen[key] = value
    return seen


def _no_constant(name: str) -> Any:
    # NaN, Infinity and -Infinity are Python's, not JSON's: ingest refuses them as malformed.
    raise ValueError(f"{name} is not a JSON value")


def _int(text: str) -> int:
    # Python's own limit (4,300 digits) would answer "use sys.set_int_max_str_digits()".
    if len(text) > MAX_INT_DIGITS:
        raise ValueError(f"a number of {len(text):,} digits")
    return int(text)


def loads(data: bytes) -> Any:
    """`data` as JSON; an object naming a key twice becomes a DuplicateKey. Raises
    ValueError for what is not JSON (`malformed` words it). The json module, for its pairs
    hook: these bodies are small, and not the hot path (ingest's is msgspec's)."""
    return json.loads(
        data, object_pairs_hook=_keys_once, parse_constant=_no_constant, parse_int=_int
    )


def malformed(exc: ValueError, data: bytes) -> str:
    """The `malformed_json` message for `data`, which `loads` refused with `exc`: ingest's
    words for where it broke ("invalid character (byte 60)"), not json's ("Expecting ','
    delimiter: line 1 column 61 (char 60)"), as one client posts to both. json's only for
    what ingest's parser takes and this one refuses (a number of 5,000 digits)."""
    return why_not_json(data) or f"Malformed JSON: {exc}"


def too_deep(data: bytes) -> bool:
    """Whether `data` nests deeper than ingest's MAX_DEPTH: refused as a whole (`too_deep`),
    before json, which would answer past ~1,000 levels only."""
    return data.count(b"{") + data.count(b"[") > MAX_DEPTH and nests_deeper_than(data, MAX_DEPTH)


_KINDS = {
    list: "a JSON array",
    str: "a JSON string",
    bool: "JSON true or false",
    type(None): "JSON null",
}


async def json_object(
    request: web.Request, fields: Collection[str], *, allow_empty: bool = False
) -> dict[str, Any] | web.Response:
    """The request's body as a JSON object of `fields` only, or the error to answer
    instead: 415 for a type not read as JSON (before the body is read), else a 400 naming
    the problem (`empty_body`, `too_deep`, `malformed_json` in ingest's words,
    `invalid_body`, `duplicate_key` and `unknown_field` naming the field). With
    `allow_empty`, no body at all is `{}`, whatever its type. Another field is refused: a
    misspelt `note` or `password` would otherwise be dropped, and the action done without
    it, answered 200."""
    listed = ", ".join(repr(name) for name in sorted(fields))
    if allow_empty and not request.body_exists:
        return {}
    if (refused := unsupported_media_type(request)) is not None:
        return refused
    raw = await request.read()
    if raw.startswith(BOM):
        raw = raw[len(BOM) :]  # as ingest and labels: PowerShell and Notepad write one
    if not raw.strip():
        if allow_empty:
            return {}
        message = f"The body is empty: send a JSON object (fields: {listed})"
        return json_error(400, "empty_body", message)
    if too_deep(raw):
        return json_error(400, "too_deep", f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        body: Any = loads(raw)
    except ValueError as exc:
        return json_error(400, "malformed_json", malformed(exc, raw))
    if isinstance(body, DuplicateKey):
        return json_error(
            400, "duplicate_key", f"Key {body.key!r} appears more than once", body.key
        )
    if not isinstance(body, dict):
        kind = _KINDS.get(type(body), "a JSON number")
        message = f"The body is {kind}: send a JSON object (fields: {listed})"
        return json_error(400, "invalid_body", message)
    unknown = sorted(set(body).difference(fields))
    if unknown:
        message = f"Unknown field {unknown[0]!r}; fields are {listed}"
        return json_error(400, "unknown_field", message, unknown[0])
    return body
