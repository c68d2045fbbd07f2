"""Analysts' decisions about alerts: acknowledge, unacknowledge, assign, next, resolve,
reopen and notes.

Every change is committed durably (synchronous=FULL) before the answer, lands in the audit
log, and goes out to every dashboard as an `alert_updated` event with its `seq`. They need
the `triage` permission (analysts and admins; never a viewer or an API key) and, for a
session, its CSRF token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import web

from server.auth import Principal
from server.learning import learn_stored_labels, withdraw_label
from server.state import LABEL_CHANGES, SCORECARD, SETTINGS, STATS, STORE, TRAINER
from server.store.base import (
    AlertConflict,
    AlertEvent,
    AlertNotFound,
    InvalidAssignee,
    Label,
    LabelValue,
)
from server.views.api import permitted
from server.views.bodies import json_object
from server.views.responses import json_error, json_response

MAX_NOTE_LENGTH = 2000
MAX_USER_NAME = 64


async def _analyst(request: web.Request) -> Principal | web.Response:
    # `triage` is never an API key's: a decision about an alert belongs to a person.
    return await permitted(
        request, "triage", "Only analysts and admins can change alerts", changes=True
    )


def _text(body: dict[str, Any], name: str, *, required: bool) -> str | web.Response | None:
    """An optional (or required) text field of at most MAX_NOTE_LENGTH characters."""
    value = body.get(name)
    if not required and (value is None or (isinstance(value, str) and not value.strip())):
        return None
    # Absent is missing_field, as for assign's owner and resolve's disposition.
    code = "missing_field" if value is None else "invalid_field"
    if not isinstance(value, str) or len(value) > MAX_NOTE_LENGTH or not value.strip():
        return json_error(
            400, code, f"'{name}' must be text of 1-{MAX_NOTE_LENGTH} characters, not blank", name
        )
    return value


def _not_found(alert_id: str) -> web.Response:
    return json_error(404, "not_found", f"No alert {alert_id}")


def _conflict(exc: AlertConflict) -> web.Response:
    # The winning state rides along, so the loser's screen can show who holds it at once.
    return json_error(409, "conflict", str(exc), owner=exc.alert.owner, alert=exc.alert)


async def _answer(request: web.Request, alert_id: str, event: AlertEvent | None) -> web.Response:
    """200 with the alert after the change (or as it is, for a no-op)."""
    if event is not None:
        return json_response({"alert": event.alert, "seq": event.seq})
    alert = await request.app[STORE].get_alert(alert_id)
    return json_response({"alert": alert, "seq": None})


async def _apply(
    request: web.Request, alert_id: str, change: Callable[[], Awaitable[AlertEvent | None]]
) -> web.Response:
    """Run one store change and answer it: 200 with the alert, 404, 409 with the winner."""
    try:
        event = await change()
    except InvalidAssignee as exc:
        return json_error(400, "invalid_field", str(exc), "owner")
    except AlertNotFound:
        return _not_found(alert_id)
    except AlertConflict as exc:
        return _conflict(exc)
    return await _answer(request, alert_id, event)


async def acknowledge(request: web.Request) -> web.Response:
    who = await _analyst(request)
    if isinstance(who, web.Response):
        return who
    alert_id = request.match_info["alert_id"]
    store = request.app[STORE]
    return await _apply(request, alert_id, lambda: store.acknowledge(alert_id, who.name))


async def unacknowledge(request: web.Request) -> web.Response:
    who = await _analyst(request)
    if isinstance(who, web.Response):
        return who
    alert_id = request.match_info["alert_id"]
    store, force = request.app[STORE], who.can("admin")
    return await _apply(
        request, alert_id, lambda: store.unacknowledge(alert_id, who.name, force=force)
    )


async def assign(request: web.Request) -> web.Response:
    who = await _analyst(request)
    if isinstance(who, web.Response):
        return who
    body = await json_object(request, ("owner",))
    if isinstance(body, web.Response):
        return body
    owner = body.get("owner")
    if not isinstance(owner, str) or not 1 <= len(owner) <= MAX_USER_NAME:
        return json_error(
            400,
            "missing_field" if owner is None else "invalid_field",
            "'owner' must be the name of an analyst",
            "owner",
        )
    alert_id = request.match_info["alert_id"]
    store, force = request.app[STORE], who.can("admin")
    return await _apply(
        request, alert_id, lambda: store.assign(alert_id, who.name, owner, force=force)
    )


async def claim_next(request: web.Request) -> web.Response:
    who = await _analyst(request)
    if isinstance(who, web.Response):
        return who
    event = await request.app[STORE].claim_next(who.name)
    if event is None:
        return json_response({"alert": None, "seq": None})
    return json_response({"alert": event.alert, "seq": event.seq})


async def resolve(request: web.Request) -> web.Response:
    who = await _analyst(request)
    if isinstance(who, web.Response):
        return who
    body = await json_object(request, ("disposition", "note"))
    if isinstance(body, web.Response):
        return body
    allowed = request.app[SETTINGS].disposition_names
    disposition = body.get("disposition")
    if not isinstance(disposition, str) or disposition not in allowed:
        listed = ", ".join(repr(d) for d in allowed)
        code = "missing_field" if disposition is None else "invalid_field"
        return json_error(400, code, f"'disposition' must be one of {listed}", "disposition")
    note = _text(body, "note", required=False)
    if isinstance(note, web.Response):
        return note
    alert_id = request.match_info["alert_id"]
    app = request.app

    async def change() -> AlertEvent:
        event, outcome = await app[STORE].resolve_labelled(alert_id, who.name, disposition, note)
        if outcome is not None and outcome.status in ("created", "updated"):
            # The store recorded it as the transaction's label, in the same commit: the
            # model and the scorecard learn it too, unless it was that label already (a
            # chargeback came first): a re-send, learnt once, as through the labels API.
            label = Label(
                transaction_id=event.alert.transaction_id,
                label=cast(LabelValue, disposition),
                source=f"analyst:{who.name}",
                labelled_at=event.alert.updated_at,
            )
            await learn_stored_labels(
                app[STORE],
                app.get(TRAINER),
                app[SCORECARD],
                app[LABEL_CHANGES],
                [label],
                app[STATS],
                {label.transaction_id: outcome.replaced} if outcome.replaced else None,
            )
        return event

    return await _apply(request, alert_id, change)


async def reopen(request: web.Request) -> web.Response:
    who = await _analyst(request)
    if isinstance(who, web.Response):
        return who
    body = await json_object(request, ("note",), allow_empty=True)
    if isinstance(body, web.Response):
        return body
    note = _text(body, "note", required=False)
    if isinstance(note, web.Response):
        return note
    alert_id = request.match_info["alert_id"]
    app = request.app

    async def change() -> AlertEvent:
        event, withdrawal = await app[STORE].reopen_labelled(alert_id, who.name, note)
        if withdrawal is not None:
            # The store took back the label the resolution gave, in the same commit: the
            # model, the scorecard and merchant risk take it back too (a mistaken "fraud"
            # undone must not go on teaching them).
            await withdraw_label(
                app[STORE],
                app.get(TRAINER),
                app[SCORECARD],
                app[LABEL_CHANGES],
                withdrawal,
                app[STATS],
            )
        return event

    return await _apply(request, alert_id, change)


async def add_note(request: web.Request) -> web.Response:
    who = await _analyst(request)
    if isinstance(who, web.Response):
        return who
    body = await json_object(request, ("text",))
    if isinstance(body, web.Response):
        return body
    text = _text(body, "text", required=True)
    if isinstance(text, web.Response):
        return text
    assert text is not None
    alert_id = request.match_info["alert_id"]
    try:
        note, event = await request.app[STORE].add_note(alert_id, who.name, text)
    except AlertNotFound:
        return _not_found(alert_id)
    return json_response({"note": note, "alert": event.alert, "seq": event.seq}, status=201)


def add_routes(app: web.Application) -> None:
    """Register the triage endpoints (`next` before the `{alert_id}` routes)."""
    app.router.add_post("/api/v1/alerts/next", claim_next)
    for action, handler in (
        ("ack", acknowledge),
        ("unack", unacknowledge),
        ("assign", assign),
        ("resolve", resolve),
        ("reopen", reopen),
        ("notes", add_note),
    ):
        app.router.add_post(f"/api/v1/alerts/{{alert_id}}/{action}", handler)
