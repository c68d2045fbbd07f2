"""The labels API (`POST /api/v1/labels`) and the scorecard (`GET /api/v1/scorecard`)."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

import msgspec
from aiohttp import web

from server.learning import apply_labels
from server.state import LABEL_CHANGES, SCORECARD, STATS, STORE, TRAINER
from server.store.base import LABELS, Label, LabelValue, Store
from server.transactions import (
    MAX_DEPTH,
    MAX_ID_LENGTH,
    no_such_moment,
    out_of_range,
    parse_rfc3339,
    text_problem,
    too_far_ahead,
)
from server.views.api import (
    ARRAY_HINT,
    malformed_hint,
    permitted,
    read_body,
    shutting_down,
    too_many_records,
)
from server.views.bodies import (
    BOM,
    NDJSON_TYPES,
    DuplicateKey,
    loads,
    malformed,
    too_deep,
    unsupported_media_type,
)
from server.views.responses import error_body, json_error, json_response

MAX_LABELS = 10_000
MAX_SOURCE_LENGTH = 100
FIELDS = frozenset({"transaction_id", "label", "source", "labelled_at"})
_NOT_A_LINE = frozenset({"invalid_body", "malformed_json"})  # ingest's, for an array as NDJSON


class LabelError(ValueError):
    def __init__(self, code: str, message: str, field: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.body = error_body(code, message, field)
        self.body["error"].update(extra)


class _Unparsed:
    """An NDJSON line that is not JSON: refused as its own label's entry, as ingest refuses
    such a line, the request's other labels taken."""

    def __init__(self, message: str) -> None:
        self.message = message


def _ndjson(raw: bytes, content_type: str) -> list[Any]:
    """One item per line that is not blank, as ingest splits NDJSON."""
    items: list[Any] = []
    for line in raw.split(b"\n"):
        if line.strip():
            try:
                items.append(loads(line))
            except ValueError as exc:
                items.append(_Unparsed(malformed(exc, line) + malformed_hint(content_type, line)))
    return items


def _utc_text(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _within(name: str, text: str, limit: int) -> None:
    # Ingest's code and words for text over its limit, so a client has one case for it.
    if len(text) > limit:
        raise LabelError("too_long", f"'{name}' is longer than {limit} characters", name)


def parse_label(item: Any, default_source: str, now: dt.datetime) -> Label:
    """One label from its JSON; raises LabelError naming the field at fault."""
    if isinstance(item, _Unparsed):
        raise LabelError("malformed_json", item.message)
    if isinstance(item, DuplicateKey):
        raise LabelError("duplicate_key", f"Key {item.key!r} appears more than once", item.key)
    if not isinstance(item, dict):
        raise LabelError("invalid_body", "Each label must be a JSON object")
    unknown = sorted(set(item) - FIELDS)
    if unknown:
        raise LabelError(
            "unknown_field",
            f"Unknown field {unknown[0]!r}; fields are {', '.join(sorted(FIELDS))}",
            unknown[0],
        )
    missing = [name for name in ("transaction_id", "label") if item.get(name) is None]
    if missing:
        # Ingest's words and shape: every missing field at once, in `fields`.
        listed = ", ".join(f"'{name}'" for name in missing)
        plural = "s" if len(missing) > 1 else ""
        raise LabelError(
            "missing_field",
            f"Missing required field{plural}: {listed}",
            missing[0],
            fields=missing,
        )
    tx_id = item.get("transaction_id")
    if not isinstance(tx_id, str) or not tx_id.strip():  # blank: no transaction has it
        raise LabelError(
            "invalid_field",
            f"'transaction_id' must be a non-empty string of at most {MAX_ID_LENGTH} characters",
            "transaction_id",
        )
    _within("transaction_id", tx_id, MAX_ID_LENGTH)
    label = item.get("label")
    if not isinstance(label, str) or label not in LABELS:  # a list or dict is unhashable
        raise LabelError("invalid_field", "'label' must be 'fraud' or 'legitimate'", "label")
    source = item.get("source", default_source)
    if not isinstance(source, str) or not source:
        raise LabelError(
            "invalid_field",
            f"'source' must be a non-empty string of at most {MAX_SOURCE_LENGTH} characters",
            "source",
        )
    _within("source", source, MAX_SOURCE_LENGTH)
    for name, text in (("transaction_id", tx_id), ("source", source)):
        problem = text_problem(name, text)
        if problem is not None:
            raise LabelError("invalid_text", problem, name)
    labelled_at = item.get("labelled_at")
    # The grammar ingest reads timestamps with: fromisoformat took week dates, basic format
    # (20260309T100000Z) and minutes without seconds, which other systems read differently.
    at = now if labelled_at is None else parse_rfc3339(labelled_at)
    if at is None:
        named = isinstance(labelled_at, str) and no_such_moment("labelled_at", labelled_at)
        raise LabelError(
            "invalid_field",
            named
            or "'labelled_at' must be an RFC 3339 date-time with an offset (Z or ±hh:mm), "
            "e.g. 2026-03-02T09:00:00Z",
            "labelled_at",
        )
    if (wrong := out_of_range("labelled_at", at)) is not None:
        raise LabelError("invalid_field", wrong, "labelled_at")
    ahead = too_far_ahead("labelled_at", at, now)
    if ahead is not None:
        message = f"{ahead}: a label cannot be known before it is sent"
        raise LabelError("invalid_field", message, "labelled_at")
    return Label(
        transaction_id=tx_id,
        label=cast(LabelValue, label),
        source=source,
        labelled_at=_utc_text(at),
    )


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


async def _not_before_transactions(
    store: Store, valid: list[tuple[int, Label]], items: list[Any], results: list[Any]
) -> list[tuple[int, Label]]:
    """The labels whose `labelled_at` is not before their transaction's timestamp; the
    others get their error in `results`. Merchant risk counts a label from its labelled_at:
    one from before the payment (a 1970 default, the transaction's date mistaken for the
    day) would be filed under a day long gone and count for nothing, silently. A default
    `labelled_at` (the server's now) behind a sender whose clock runs ahead, which ingest
    allows by MAX_FUTURE_SKEW, is moved up to the transaction's timestamp instead."""
    times = await store.event_times({label.transaction_id for _, label in valid})
    kept: list[tuple[int, Label]] = []
    for i, label in valid:
        time_us = times.get(label.transaction_id)
        if time_us is None:  # not_found, from the store
            kept.append((i, label))
            continue
        try:
            happened = _EPOCH + dt.timedelta(microseconds=time_us)
        except OverflowError:
            # Stored before ingest refused the year 0001: before any labelled_at there is.
            kept.append((i, label))
            continue
        if dt.datetime.fromisoformat(label.labelled_at) >= happened:
            kept.append((i, label))
        elif items[i].get("labelled_at") is None:
            kept.append((i, msgspec.structs.replace(label, labelled_at=_utc_text(happened))))
        else:
            results[i] = error_body(
                "invalid_field",
                f"'labelled_at' ({items[i]['labelled_at']}) is before the transaction's "
                f"timestamp ({_utc_text(happened)}): send when its outcome became known, "
                "or leave labelled_at out for now",
                "labelled_at",
            )
    return kept


async def post_labels(request: web.Request) -> web.Response:
    who = await permitted(request, "labels", "Sending labels needs an API key with 'labels'")
    if isinstance(who, web.Response):
        return who
    if (refused := unsupported_media_type(request, bulk=True)) is not None:
        return refused  # as ingest refuses it: one client sends both
    raw = await read_body(request)
    if raw is None:
        return shutting_down()
    if raw.startswith(BOM):
        raw = raw[len(BOM) :]  # as ingest: PowerShell and Notepad start a file with one
    if not raw.strip():
        return json_error(400, "empty_body", "Send a JSON object, a JSON array or NDJSON")
    if too_deep(raw):
        # Ingest's code and limit. A label has no nested values, so this is the request's
        # fault as a whole; json would otherwise answer past ~1,000 levels only.
        return json_error(400, "too_deep", f"JSON nested deeper than {MAX_DEPTH} levels")
    ndjson = request.content_type in NDJSON_TYPES
    if ndjson:
        # As ingest takes a batch: one client sends both the same way.
        items, is_batch = _ndjson(raw, request.content_type), True
    else:
        try:
            body: Any = loads(raw)
        except ValueError as exc:
            # NDJSON sent under another content type: said so, as ingest says it.
            hint = malformed_hint(request.content_type, raw)
            return json_error(400, "malformed_json", malformed(exc, raw) + hint)
        is_batch = isinstance(body, list)
        items = body if is_batch else [body]
    if not items:
        return json_error(400, "empty_body", "Send at least one label")
    if len(items) > MAX_LABELS:
        # As ingest refuses a batch over max_batch_records: one case for a client of both.
        return too_many_records(len(items), MAX_LABELS, "labels", None)

    now = dt.datetime.now(dt.UTC)
    source = f"api:{who.name}"
    results: list[dict[str, Any] | None] = [None] * len(items)
    valid: list[tuple[int, Label]] = []
    for i, item in enumerate(items):
        try:
            valid.append((i, parse_label(item, source, now)))
        except LabelError as exc:
            if ndjson and raw.lstrip().startswith(b"[") and exc.code in _NOT_A_LINE:
                # An array sent as NDJSON: its lines are refused, for the content type.
                exc.body["error"]["message"] += ARRAY_HINT
            results[i] = exc.body
    app = request.app
    if valid:
        valid = await _not_before_transactions(app[STORE], valid, items, results)
    if valid:
        outcomes = await apply_labels(
            app[STORE],
            app.get(TRAINER),
            app[SCORECARD],
            [label for _, label in valid],
            app[LABEL_CHANGES],
            app[STATS],
        )
        for (i, label), outcome in zip(valid, outcomes, strict=True):
            if outcome.status == "not_found":
                results[i] = error_body(
                    "not_found", f"No transaction {label.transaction_id}", "transaction_id"
                )
            else:
                results[i] = {
                    "transaction_id": label.transaction_id,
                    "label": label.label,
                    "status": outcome.status,
                }
    if is_batch:
        return json_response({"results": results})
    only = results[0]
    assert only is not None
    if "error" in only:
        return json_response(only, status=404 if only["error"]["code"] == "not_found" else 400)
    return json_response(only)


async def get_scorecard(request: web.Request) -> web.Response:
    who = await permitted(request, "read", "Reading the scorecard needs the 'read' scope")
    if isinstance(who, web.Response):
        return who
    trainer = request.app.get(TRAINER)
    return json_response(
        {
            "scorecard": request.app[SCORECARD].snapshot(),
            "model": None if trainer is None else trainer.snapshot(),
        }
    )
