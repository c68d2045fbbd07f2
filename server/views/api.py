"""The REST API: ingest, alerts, health and metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast, get_args

import msgspec
from aiohttp import web

from server.auth import Principal, csrf_ok, principal
from server.detection.verdict import Verdict
from server.pipeline import IntakeClosed, Submission
from server.state import HUB, QUEUE, SETTINGS, STATS, STORE
from server.store.base import AlertConflict, AlertNotFound, AlertStatus, Disposition
from server.transactions import FieldError, InvalidTransaction, Transaction, parse_transaction
from server.views.responses import error_body, json_error, json_response

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SubmitFn = Callable[[web.Request, list[Transaction]], Awaitable[list[Verdict]]]
# The benchmark's naive baseline replaces the batched submit path through this key.
INGEST_OVERRIDE: web.AppKey[SubmitFn] = web.AppKey("ingest_override")
MAX_NOTE_LENGTH = 2000
_raw_list = msgspec.json.Decoder(list[msgspec.Raw])
_STATUSES = set(get_args(AlertStatus))
_DISPOSITIONS = set(get_args(Disposition))


async def _caller(request: web.Request) -> Principal | None:
    settings = request.app[SETTINGS]
    return await principal(request, settings.api_key, settings.session_max_age)


def _unauthorized() -> web.Response:
    return json_error(401, "unauthorized", "Log in, or send 'Authorization: Bearer <api key>'")


def _split_body(body: bytes, content_type: str) -> tuple[list[bytes | msgspec.Raw], bool]:
    """The records of a request body, and whether it was a batch."""
    if content_type == "application/x-ndjson":
        return [line for line in body.split(b"\n") if line.strip()], True
    stripped = body.lstrip()
    if stripped.startswith(b"["):
        return list(_raw_list.decode(body)), True
    return [body], False


async def ingest(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    who = await _caller(request)
    if who is None or not who.is_machine:
        return json_error(401, "unauthorized", "Send 'Authorization: Bearer <api key>'")
    body = await request.read()
    if not body.strip():
        return json_error(400, "empty_body", "Send a JSON object, a JSON array or NDJSON")
    try:
        records, is_batch = _split_body(body, request.content_type)
    except msgspec.DecodeError as exc:
        return json_error(400, "malformed_json", f"Malformed JSON: {exc}")

    results: list[Verdict | FieldError | None] = [None] * len(records)
    valid: list[tuple[int, Transaction]] = []
    for i, raw in enumerate(records):
        try:
            valid.append((i, parse_transaction(raw, settings.default_currency)))
        except InvalidTransaction as exc:
            results[i] = exc.error
    request.app[STATS].record_rejected(len(records) - len(valid))

    if valid:
        try:
            verdicts = await _submit(request, [tx for _, tx in valid])
        except IntakeClosed:
            return json_error(503, "shutting_down", "The server is shutting down; retry shortly")
        except Exception:
            log.exception("ingest of %d transactions failed", len(valid))
            return json_error(503, "store_unavailable", "Could not persist the transactions; retry")
        for (i, _), verdict in zip(valid, verdicts, strict=True):
            results[i] = verdict

    if not is_batch:
        only = results[0]
        if isinstance(only, FieldError):
            return json_response({"error": only.as_dict()}, status=400)
        return json_response(only)
    return json_response(
        {"results": [{"error": r.as_dict()} if isinstance(r, FieldError) else r for r in results]}
    )


async def _submit(request: web.Request, transactions: list[Transaction]) -> list[Verdict]:
    override = request.app.get(INGEST_OVERRIDE)
    if override is not None:
        return await override(request, transactions)
    settings = request.app[SETTINGS]
    queue = request.app[QUEUE]
    loop = asyncio.get_running_loop()
    chunk = settings.batch_max
    waiters: list[asyncio.Future[list[Verdict]]] = []
    # Chunks keep one huge request from holding the whole queue; order is kept per chunk.
    for start in range(0, len(transactions), chunk):
        waiter: asyncio.Future[list[Verdict]] = loop.create_future()
        await queue.put(Submission(transactions[start : start + chunk], waiter=waiter))
        waiters.append(waiter)
    verdicts: list[Verdict] = []
    for part in await asyncio.gather(*waiters):
        verdicts.extend(part)
    return verdicts


def _parse_statuses(raw: str | None) -> list[AlertStatus] | None:
    if not raw:
        return None
    statuses = [s.strip() for s in raw.split(",") if s.strip()]
    bad = [s for s in statuses if s not in _STATUSES]
    if bad:
        raise ValueError(f"Unknown status {bad[0]!r}; use open, acknowledged or resolved")
    return statuses  # type: ignore[return-value]


async def list_alerts(request: web.Request) -> web.Response:
    if await _caller(request) is None:
        return _unauthorized()
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
    cursor = request.query.get("cursor") or None
    try:
        page = await request.app[STORE].list_alerts(statuses, limit, cursor)
    except ValueError:
        return json_error(400, "invalid_parameter", "'cursor' is not one this API gave", "cursor")
    return json_response(page)


async def get_alert(request: web.Request) -> web.Response:
    if await _caller(request) is None:
        return _unauthorized()
    store = request.app[STORE]
    alert_id = request.match_info["alert_id"]
    alert = await store.get_alert(alert_id)
    if alert is None:
        return json_error(404, "not_found", f"No alert {alert_id}")
    return json_response({"alert": alert, "audit": await store.audit_log(alert_id)})


async def _analyst(request: web.Request) -> Principal | web.Response:
    who = await _caller(request)
    if who is None:
        return _unauthorized()
    if who.is_machine or who.role not in ("analyst", "admin"):
        return json_error(403, "forbidden", "Only analysts can change alerts")
    if not csrf_ok(request, who):
        return json_error(403, "csrf", "Missing or wrong X-CSRF-Token header")
    return who


async def acknowledge(request: web.Request) -> web.Response:
    who = await _analyst(request)
    if isinstance(who, web.Response):
        return who
    store = request.app[STORE]
    alert_id = request.match_info["alert_id"]
    try:
        await store.acknowledge(alert_id, who.name)
    except AlertNotFound:
        return json_error(404, "not_found", f"No alert {alert_id}")
    except AlertConflict as exc:
        return json_error(409, "conflict", str(exc), owner=exc.alert.owner, alert=exc.alert)
    return json_response({"alert": await store.get_alert(alert_id)})


async def resolve(request: web.Request) -> web.Response:
    who = await _analyst(request)
    if isinstance(who, web.Response):
        return who
    try:
        body: Any = await request.json(loads=msgspec.json.decode)
    except (msgspec.DecodeError, ValueError):
        return json_error(400, "malformed_json", "Send a JSON object")
    if not isinstance(body, dict):
        return json_error(400, "invalid_body", "Send a JSON object")
    disposition = body.get("disposition")
    if not isinstance(disposition, str) or disposition not in _DISPOSITIONS:
        return json_error(
            400, "invalid_field", "'disposition' must be 'fraud' or 'legitimate'", "disposition"
        )
    note = body.get("note")
    if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE_LENGTH):
        return json_error(
            400, "invalid_field", f"'note' must be text of at most {MAX_NOTE_LENGTH} chars", "note"
        )
    store = request.app[STORE]
    alert_id = request.match_info["alert_id"]
    try:
        event = await store.resolve(
            alert_id, who.name, cast(Disposition, disposition), note or None
        )
    except AlertNotFound:
        return json_error(404, "not_found", f"No alert {alert_id}")
    except AlertConflict as exc:
        return json_error(409, "conflict", str(exc), owner=exc.alert.owner, alert=exc.alert)
    return json_response({"alert": event.alert})


async def healthz(request: web.Request) -> web.Response:
    queue = request.app[QUEUE]
    ok = not queue.closed
    return json_response(
        {"status": "ok" if ok else "shutting_down", "queue_depth": queue.qsize()},
        status=200 if ok else 503,
    )


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
            "fraudwatch_queue_depth",
            "gauge",
            "Transactions waiting for detection.",
            request.app[QUEUE].qsize(),
        ),
        ("fraudwatch_ws_clients", "gauge", "Connected WebSocket clients.", len(request.app[HUB])),
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
    codes = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
    return error_body(codes.get(status, "http_error"), reason)
