"""The REST API: ingest, alerts, health and metrics."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, get_args

import msgspec
from aiohttp import web

from server.auth import Permission, Principal, csrf_ok
from server.detection.rules import SEVERITIES
from server.detection.verdict import Verdict
from server.pipeline import IntakeClosed, submit
from server.state import AUTH, HUB, QUEUE, SETTINGS, STATS, STORE
from server.store.base import AlertFilter, AlertStatus, InvalidCursor
from server.store.errors import StoredRowDamaged, StoreUnavailable
from server.transactions import (
    FieldError,
    InvalidTransaction,
    Transaction,
    no_such_moment,
    parse_rfc3339,
    parse_transaction,
    split_array,
)
from server.views.bodies import BOM, NDJSON_TYPES, unsupported_media_type
from server.views.responses import error_body, json_error, json_response, unauthorized
from server.wording import size_in_words

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SubmitFn = Callable[[web.Request, list[Transaction]], Awaitable[Sequence[Verdict | FieldError]]]
# The benchmark's naive baseline replaces the batched submit path through this key.
INGEST_OVERRIDE: web.AppKey[SubmitFn] = web.AppKey("ingest_override")
# Refusals other than 400, by error code. A damaged stored row is the server's fault and
# final: not a 503, which tells a client to retry.
_ERROR_STATUS = {"id_conflict": 409, "stored_row_damaged": 500}
_STATUSES = set(get_args(AlertStatus))


async def permitted(
    request: web.Request, permission: Permission, refusal: str, *, changes: bool = False
) -> Principal | web.Response:
    """The caller, if it may do `permission`; else a 401 (no one) or a 403 (not allowed).
    A request that `changes` state from a browser session must carry its CSRF token."""
    who = await request.app[AUTH].principal(request)
    if who is None:
        return unauthorized(request)
    if not who.can(permission):
        return json_error(403, "forbidden", refusal)
    if changes and not csrf_ok(request, who):
        return json_error(403, "csrf", "Missing or wrong X-CSRF-Token header")
    return who


NDJSON_HINT = (
    "; one JSON object per line is NDJSON: send it with Content-Type: application/x-ndjson"
)
ARRAY_HINT = "; a JSON array is not NDJSON: send it with Content-Type: application/json"
# `curl -d @file` drops a file's newlines, so NDJSON arrives as objects run together.
RUN_ON_HINT = (
    "; several JSON objects on one line: NDJSON takes one per line (curl -d drops a file's "
    "newlines: send the file with --data-binary @FILE)"
)
_RUN_ON = re.compile(rb"}\s*{")


def malformed_hint(content_type: str, text: bytes) -> str:
    """What to add to a `malformed_json` message about `text` (a body, or an NDJSON line)
    when the way it was sent, not its JSON, is the likely cause."""
    if content_type not in NDJSON_TYPES and looks_ndjson(text):
        return NDJSON_HINT
    if _RUN_ON.search(text):
        return RUN_ON_HINT
    return ""


def _split_body(body: bytes, content_type: str) -> tuple[list[bytes | msgspec.Raw], bool]:
    """The records of a request body, and whether it was a batch. Raises InvalidTransaction
    when a JSON array body cannot even be split into records."""
    if content_type in NDJSON_TYPES:
        return [line for line in body.split(b"\n") if line.strip()], True
    stripped = body.lstrip()
    if stripped.startswith(b"["):
        return split_array(body), True
    return [body], False


async def read_body(request: web.Request) -> bytes | None:
    """The request's body, or None once the server is shutting down (intake closed), whether
    or not all of it came: the caller answers `shutting_down`, as docs/guarantees.md says
    for any ingest or labels request that comes to read its body from then on (ingest's
    would be refused at the queue anyway). When shutdown starts aiohttp stops
    reading its connections, so a body still coming in then (a large batch on a slow link)
    never completes: the request waited for it until cancelled at the shutdown timeout,
    10 s on, and its client got no answer."""
    queue = request.app[QUEUE]
    if queue.closed:
        return None
    if request.content.is_eof():
        return await request.read()  # all of it is here: the usual case, no race to run
    reading = asyncio.ensure_future(request.read())
    closing = asyncio.ensure_future(queue.wait_closed())
    try:
        await asyncio.wait((reading, closing), return_when=asyncio.FIRST_COMPLETED)
    finally:
        closing.cancel()
        if not reading.done():
            reading.cancel()
    if not reading.done():
        return None  # cancelled above: the rest of the body is not coming
    return reading.result()  # or aiohttp's 413, over max_body_bytes


def shutting_down() -> web.Response:
    return json_error(503, "shutting_down", "The server is shutting down; retry shortly")


async def ingest(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    who = await permitted(request, "ingest", "Ingest needs an API key with the 'ingest' scope")
    if isinstance(who, web.Response):
        return who
    if (refused := unsupported_media_type(request, bulk=True)) is not None:
        return refused
    body = await read_body(request)
    if body is None:
        return shutting_down()
    if body.startswith(BOM):
        # Windows tools (PowerShell's UTF8 encoding, Notepad) start a file with one; JSON
        # parsers may ignore it (RFC 8259, 8.1), and the labels API and replay's reader do.
        body = body[len(BOM) :]
    if not body.strip():
        return json_error(400, "empty_body", "Send a JSON object, a JSON array or NDJSON")
    try:
        records, is_batch = _split_body(body, request.content_type)
    except InvalidTransaction as exc:
        return json_response({"error": exc.error.as_dict()}, status=400)
    if not records:
        # `[]`: as the labels API answers it. A batch of nothing is a client's bug (a buffer
        # flushed before it was filled) more often than a request meant to do nothing.
        return json_error(400, "empty_body", "Send at least one transaction")
    if len(records) > settings.max_batch_records:
        # Refused whole, before anything is parsed or queued: nothing of it is accepted.
        return too_many_records(
            len(records), settings.max_batch_records, "transactions", "max_batch_records"
        )

    results: list[Verdict | FieldError | None] = [None] * len(records)
    valid: list[tuple[int, Transaction]] = []
    now = dt.datetime.now(dt.UTC)
    for i, raw in enumerate(records):
        try:
            valid.append((i, parse_transaction(raw, settings.default_currency, now=now)))
        except InvalidTransaction as exc:
            results[i] = exc.error
    request.app[STATS].record_rejected(len(records) - len(valid))

    if valid:
        try:
            verdicts = await _submit(request, [tx for _, tx in valid])
        except IntakeClosed:
            return shutting_down()
        except StoreUnavailable as exc:
            # Whatever was queued is kept and stored once the store is back (guarantees.md).
            return store_unavailable(exc, "re-sending the same ids is safe")
        except Exception:
            # A bug, not the store (its failures and timeouts are StoreUnavailable above): a
            # retry would most likely fail the same way, so it is not a 503's "retry".
            log.exception("ingest of %d transactions failed", len(valid))
            return json_error(
                500,
                "internal_error",
                "Could not score or store the transactions: an internal error, logged on the "
                "server. Re-sending is safe once it is fixed: a stored id answers its verdict",
            )
        for (i, _), verdict in zip(valid, verdicts, strict=True):
            results[i] = verdict
        errors = [v.code for v in verdicts if isinstance(v, FieldError)]
        damaged = errors.count("stored_row_damaged")
        # Ids already taken by a different transaction: refused inputs. A damaged stored row
        # is the server's failure, counted apart.
        request.app[STATS].record_rejected(len(errors) - damaged)
        request.app[STATS].record_damaged(damaged)

    if request.content_type in NDJSON_TYPES and body.lstrip().startswith(b"["):
        # An array sent as NDJSON: each line is refused, and the reason is the content type.
        results = [
            FieldError(r.code, r.message + ARRAY_HINT, r.field)
            if isinstance(r, FieldError) and r.code in ("invalid_body", "malformed_json")
            else r
            for r in results
        ]
    else:
        for i, r in enumerate(results):
            if isinstance(r, FieldError) and r.code == "malformed_json":
                raw = records[i]
                text = raw if isinstance(raw, bytes) else bytes(raw)
                if hint := malformed_hint(request.content_type, text):
                    results[i] = FieldError(r.code, r.message + hint, r.field)
    if not is_batch:
        only = results[0]
        if isinstance(only, FieldError):
            status = _ERROR_STATUS.get(only.code, 400)
            return json_response({"error": only.as_dict()}, status=status)
        return json_response(only)
    return json_response(
        {"results": [{"error": r.as_dict()} if isinstance(r, FieldError) else r for r in results]}
    )


def too_many_records(count: int, limit: int, records: str, setting: str | None) -> web.Response:
    """413 for a bulk request over its limit of `records` ("transactions", "labels"): one
    status, code and shape for both bulk endpoints, so one client handles both. For ingest
    the limit (`max_batch_records`) keeps every accepted request well inside
    `ingest_timeout`: 10,000 were answered in 1.7 s under load where a full 8 MiB body
    (~72,000 records) took 8.8-9.6 s of the 10 s."""
    named = f" ({setting})" if setting else ""
    message = (
        f"{count:,} {records} in one request; at most {limit:,} are taken{named}: split the "
        f"batch into requests of {limit:,} or fewer. Nothing of this request was accepted."
    )
    error = {"code": "too_many_records", "message": message, "field": None, "limit": limit}
    return json_response({"error": error}, status=413)


def body_too_large(limit: int, records: str | None) -> web.Response:
    """413 for a body over `max_body_bytes`, which aiohttp refuses while reading it. Its own
    text ("Maximum request body size 8388608 exceeded.") names neither the setting nor what
    to do; `limit` is there for a client that sizes its requests by it. `records` names
    what a bulk endpoint takes ("transactions", "labels"); other endpoints take one thing."""
    advice = f"send fewer {records} per request" if records else "send a smaller body"
    message = (
        f"Request body over {size_in_words(limit)} (max_body_bytes): {advice}. "
        "Nothing of this request was accepted."
    )
    error = {"code": "body_too_large", "message": message, "field": None, "limit": limit}
    return json_response({"error": error}, status=413)


def looks_ndjson(body: bytes) -> bool:
    """Several JSON objects, one per line, sent without the NDJSON content type."""
    return b"\n{" in body.strip().replace(b"\r\n", b"\n")


async def _submit(
    request: web.Request, transactions: list[Transaction]
) -> Sequence[Verdict | FieldError]:
    override = request.app.get(INGEST_OVERRIDE)
    if override is not None:
        return await override(request, transactions)
    settings = request.app[SETTINGS]
    return await submit(
        request.app[QUEUE], transactions, chunk=settings.batch_max, within=settings.ingest_timeout
    )


def store_unavailable(exc: StoreUnavailable, advice: str = "nothing was changed") -> web.Response:
    response = json_error(
        503, "store_unavailable", f"The store is unavailable ({exc.cause}); retry shortly: {advice}"
    )
    response.headers["Retry-After"] = "1"
    return response


def stored_row_damaged(exc: StoredRowDamaged) -> web.Response:
    """A row asked for by itself is stored but cannot be read back: the server's fault,
    and final (a retry reads the same row), so a 500 without Retry-After, not a 503."""
    what = exc.what[:1].upper() + exc.what[1:]
    return json_error(
        500,
        "stored_row_damaged",
        f"{what} is stored but cannot be read back: its stored row is damaged. Retrying "
        "will not help; tell the server's operator, whose log says what is wrong with it",
    )


def _parse_statuses(raw: str | None) -> list[AlertStatus] | None:
    if not raw:
        return None
    statuses = [s.strip() for s in raw.split(",") if s.strip()]
    bad = [s for s in statuses if s not in _STATUSES]
    if bad:
        raise ValueError(f"Unknown status {bad[0]!r}; use open, acknowledged or resolved")
    return statuses  # type: ignore[return-value]


async def list_alerts(request: web.Request) -> web.Response:
    who = await permitted(request, "read", "Reading alerts needs the 'read' scope")
    if isinstance(who, web.Response):
        return who
    try:
        statuses = _parse_statuses(request.query.get("status"))
    except ValueError as exc:
        return json_error(400, "invalid_parameter", str(exc), "status")
    try:
        limit = int(request.query.get("limit", "100"))
        if not 1 <= limit <= 1000:
            raise ValueError
    except ValueError:
        return json_error(400, "invalid_parameter", "'limit' must be 1-1000", "limit")
    try:
        where = _alert_filter(request.query, who)
    except _BadParameter as exc:
        return json_error(400, "invalid_parameter", exc.message, exc.field)
    cursor = request.query.get("cursor") or None
    try:
        page = await request.app[STORE].list_alerts(statuses, limit, cursor, where)
    except InvalidCursor:
        return json_error(400, "invalid_parameter", "'cursor' is not one this API gave", "cursor")
    return json_response(page)


class _BadParameter(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


_SEVERITIES = frozenset(SEVERITIES)
_RULE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MAX_QUERY_LENGTH = 128


def _event_time_us(query: Mapping[str, str], name: str) -> int | None:
    raw = query.get(name)
    if not raw:
        return None
    when = parse_rfc3339(raw)  # as ingest reads the timestamps these filter on
    if when is None:
        raise _BadParameter(name, _not_rfc3339(name, raw))
    return (when - _EPOCH) // dt.timedelta(microseconds=1)


def _not_rfc3339(name: str, raw: str) -> str:
    """Why a query value is not a date-time. A query string reads '+' as a space, so
    `?from=2026-01-01T00:00:00+01:00` sent unencoded arrives as `... 01:00`: that is named,
    with the fix, rather than refused as if the sender's date-time were wrong. (It is not
    read as a '+': the contract is RFC 3339, and a space there is not one.)"""
    meant = f"{raw[:-6]}+{raw[-5:]}"
    if raw[-6:-5] == " " and parse_rfc3339(meant) is not None:
        return (
            f"'{name}' ({raw}) has a space where its offset's '+' should be: a query string "
            f"reads an unencoded '+' as a space; encode '+' as %2B "
            f"({name}={urllib.parse.quote(meant, safe=':')})"
        )
    return (
        no_such_moment(name, raw)
        or f"'{name}' must be an RFC 3339 date-time with an offset, e.g. 2026-03-02T14:00:00Z"
    )


def _alert_filter(query: Mapping[str, str], who: Principal) -> AlertFilter:
    """The filters of GET /api/v1/alerts beyond status; raises _BadParameter naming one."""
    severities = None
    if query.get("severity"):
        severities = frozenset(s.strip() for s in query["severity"].split(",") if s.strip())
        bad = sorted(severities - _SEVERITIES)
        if bad or not severities:
            raise _BadParameter(
                "severity",
                f"Unknown severity {bad[0] if bad else ''!r}; use low, medium, high or critical",
            )
    rule = query.get("rule") or None
    if rule is not None and not _RULE.fullmatch(rule):
        raise _BadParameter("rule", "'rule' must be a reason code such as 'card_testing'")
    owner = query.get("owner") or None
    unowned = owner == "unowned"
    if owner == "me":
        owner = who.name
    if owner is not None and len(owner) > 64:
        raise _BadParameter("owner", "'owner' must be a user name, 'me' or 'unowned'")
    q = (query.get("q") or "").strip() or None
    if q is not None and len(q) > MAX_QUERY_LENGTH:
        raise _BadParameter("q", f"'q' must be at most {MAX_QUERY_LENGTH} characters")
    start, end = _event_time_us(query, "from"), _event_time_us(query, "to")
    if start is not None and end is not None and start > end:
        raise _BadParameter("from", "'from' must not be after 'to'")
    return AlertFilter(
        severities=severities,
        rule=rule,
        owner=None if unowned else owner,
        unowned=unowned,
        query=q,
        event_from_us=start,
        event_to_us=end,
    )


async def account_transactions(request: web.Request) -> web.Response:
    """An account's recent transactions with their verdicts (the details drawer's history)."""
    who = await permitted(request, "read", "Reading transactions needs the 'read' scope")
    if isinstance(who, web.Response):
        return who
    try:
        limit = int(request.query.get("limit", "50"))
        if not 1 <= limit <= 500:
            raise ValueError
    except ValueError:
        return json_error(400, "invalid_parameter", "'limit' must be 1-500", "limit")
    account_id = request.match_info["account_id"]
    if not 1 <= len(account_id) <= 128:
        return json_error(400, "invalid_parameter", "Not an account id", "account_id")
    cursor = request.query.get("cursor") or None
    try:
        page = await request.app[STORE].account_transactions(account_id, limit, cursor)
    except InvalidCursor:
        return json_error(400, "invalid_parameter", "'cursor' is not one this API gave", "cursor")
    return json_response(page)


async def get_alert(request: web.Request) -> web.Response:
    who = await permitted(request, "read", "Reading alerts needs the 'read' scope")
    if isinstance(who, web.Response):
        return who
    store = request.app[STORE]
    alert_id = request.match_info["alert_id"]
    alert = await store.get_alert(alert_id)
    if alert is None:
        return json_error(404, "not_found", f"No alert {alert_id}")
    audit = await store.audit_log(alert_id)
    return json_response({"alert": alert, "audit": audit, "notes": await store.notes(alert_id)})


async def healthz(request: web.Request) -> web.Response:
    queue = request.app[QUEUE]
    body: dict[str, Any] = {"status": "ok", "queue_depth": queue.qsize()}
    if queue.closed:
        body["status"] = "shutting_down"
    elif queue.paused is not None:
        body.update(status="store_unavailable", reason=queue.paused.cause)
    return json_response(body, status=200 if body["status"] == "ok" else 503)


async def metrics(request: web.Request) -> web.Response:
    stats = request.app[STATS]
    last = stats.last
    lines = [
        (
            "fraudwatch_transactions_total",
            "counter",
            "Transactions scored.",
            stats.transactions_total,
        ),
        ("fraudwatch_alerts_total", "counter", "Alerts raised.", stats.alerts_total),
        ("fraudwatch_batches_total", "counter", "Detection batches.", stats.batches_total),
        ("fraudwatch_rejected_total", "counter", "Input records refused.", stats.rejected_total),
        (
            "fraudwatch_stored_rows_damaged_total",
            "counter",
            "Re-sent ids answered 500 stored_row_damaged: their stored row is unreadable.",
            stats.stored_rows_damaged,
        ),
        (
            "fraudwatch_ws_slow_disconnects_total",
            "counter",
            "Clients cut off for falling behind.",
            stats.ws_slow_disconnects,
        ),
        (
            "fraudwatch_ws_verdicts_dropped_total",
            "counter",
            "Verdict batches coalesced away.",
            stats.ws_verdicts_dropped,
        ),
        (
            "fraudwatch_labels_not_learnt_total",
            "counter",
            "Labels stored whose learning (model, scorecard, merchant risk) then failed.",
            stats.labels_not_learnt,
        ),
        (
            "fraudwatch_queue_depth",
            "gauge",
            "Transactions waiting for detection.",
            request.app[QUEUE].qsize(),
        ),
        ("fraudwatch_ws_clients", "gauge", "Connected WebSocket clients.", len(request.app[HUB])),
        (
            "fraudwatch_store_up",
            "gauge",
            "1 while the store takes writes, 0 while it fails and intake is paused.",
            int(request.app[QUEUE].paused is None),
        ),
        (
            "fraudwatch_store_failures_total",
            "counter",
            "Store reads and writes that failed and were retried.",
            request.app[QUEUE].store_failures,
        ),
        (
            "fraudwatch_tx_per_second",
            "gauge",
            "Transactions per second, last tick.",
            last["tx_per_s"],
        ),
    ]
    out: list[str] = []
    for name, kind, help_text, value in lines:
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {value}"]
    name = "fraudwatch_latency_ms"
    out += [f"# HELP {name} Receipt to durable verdict, last tick.", f"# TYPE {name} gauge"]
    for q, key in (("0.5", "p50"), ("0.99", "p99")):
        value = last["latency_ms"][key]
        out.append(f'{name}{{quantile="{q}"}} {"NaN" if value is None else value}')
    return web.Response(text="\n".join(out) + "\n", content_type="text/plain", charset="utf-8")


def error_for_status(status: int, reason: str) -> dict[str, Any]:
    codes = {404: "not_found", 405: "method_not_allowed"}
    return error_body(codes.get(status, "http_error"), reason)
