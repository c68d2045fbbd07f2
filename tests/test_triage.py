"""Triage over the API, against the real app and a real SQLite file: unacknowledge, assign,
next, reopen, notes, the audit timeline, dispositions, and who may do what."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.auth import create_user
from server.config import Settings
from server.state import STORE
from server.store.base import StoredRecord
from server.store.sqlite import SqliteStore
from tests.browser_support import impossible_travel, travel_at_night
from tests.conftest import AUTH, T0, Login, card_testing, make_settings


async def post(client: TestClient, records: list[dict[str, Any]]) -> list[str]:
    resp = await client.post("/api/v1/transactions", json=records, headers=AUTH)
    assert resp.status == 200, await resp.text()
    return [r["alert_id"] for r in (await resp.json())["results"] if r["alert_id"]]


async def one_alert(client: TestClient, account: str = "acct-ct") -> str:
    return (await post(client, card_testing(account, account, n=3)))[0]


async def act(
    client: TestClient, csrf: str, alert_id: str, action: str, body: Any = None
) -> tuple[int, dict[str, Any]]:
    resp = await client.post(
        f"/api/v1/alerts/{alert_id}/{action}",
        json=body,
        headers={"X-CSRF-Token": csrf},
    )
    return resp.status, await resp.json()


async def test_every_change_is_an_event_and_one_timeline(
    client: TestClient, login: Login, aiohttp_client: Any
) -> None:
    bob_client: TestClient = await aiohttp_client(client.server)
    alice = await login("alice")
    bob = await login("bob", session=bob_client)
    alert_id = await one_alert(client)

    seqs = []
    status, body = await act(client, alice, alert_id, "ack")
    assert status == 200 and body["alert"]["owner"] == "alice"
    seqs.append(body["seq"])
    # Alice hands it to Bob; Bob gives it back to the queue.
    status, body = await act(client, alice, alert_id, "assign", {"owner": "bob"})
    assert status == 200, body
    assert (body["alert"]["status"], body["alert"]["owner"]) == ("acknowledged", "bob")
    seqs.append(body["seq"])
    status, body = await act(bob_client, bob, alert_id, "unack")
    assert status == 200, body
    assert (body["alert"]["status"], body["alert"]["owner"]) == ("open", None)
    seqs.append(body["seq"])
    # Unacknowledging an open alert changes nothing, and says so with no seq.
    status, body = await act(bob_client, bob, alert_id, "unack")
    assert (status, body["seq"]) == (200, None)

    status, body = await act(client, alice, alert_id, "notes", {"text": "Called the <b>bank</b>"})
    assert status == 201, body
    assert (body["note"]["author"], body["note"]["text"]) == ("alice", "Called the <b>bank</b>")
    seqs.append(body["seq"])
    status, body = await act(
        client, alice, alert_id, "resolve", {"disposition": "duplicate", "note": "same as #12"}
    )
    assert status == 200, body
    assert (body["alert"]["status"], body["alert"]["disposition"]) == ("resolved", "duplicate")
    seqs.append(body["seq"])
    status, body = await act(bob_client, bob, alert_id, "reopen", {"note": "not a duplicate"})
    assert status == 200, body
    reopened = body["alert"]
    assert (reopened["status"], reopened["owner"], reopened["disposition"]) == ("open", None, None)
    seqs.append(body["seq"])
    assert seqs == sorted(seqs) and len(set(seqs)) == 6

    detail = await (await client.get(f"/api/v1/alerts/{alert_id}")).json()
    timeline = [(e["actor"], e["action"]) for e in detail["audit"]]
    assert timeline == [
        ("alice", "acknowledge"),
        ("alice", "assign"),
        ("bob", "unacknowledge"),
        ("alice", "note"),
        ("alice", "resolve"),
        ("bob", "reopen"),
    ]
    assert detail["audit"][1]["detail"] == {"from": "alice", "to": "bob"}
    assert detail["audit"][5]["detail"]["disposition"] == "duplicate"
    assert [n["text"] for n in detail["notes"]] == ["Called the <b>bank</b>"]

    # A dashboard resuming from before the first change gets every one of them, in order.
    async with client.ws_connect(f"/ws?since={seqs[0] - 1}", headers=AUTH) as ws:
        hello = await ws.receive_json(timeout=5)
        assert hello["type"] == "hello"
        replayed = [await ws.receive_json(timeout=5) for _ in seqs]
    assert [m["seq"] for m in replayed] == seqs
    assert {m["type"] for m in replayed} == {"alert_updated"}
    assert [m["alert"]["status"] for m in replayed] == [
        "acknowledged",
        "acknowledged",
        "open",
        "open",
        "resolved",
        "open",
    ]


async def test_who_may_do_what(client: TestClient, login: Login, aiohttp_client: Any) -> None:
    bob_client: TestClient = await aiohttp_client(client.server)
    viewer_client: TestClient = await aiohttp_client(client.server)
    admin_client: TestClient = await aiohttp_client(client.server)
    alice = await login("alice")
    bob = await login("bob", session=bob_client)
    viewer = await login("vera", role="viewer", session=viewer_client)
    admin = await login("ada", role="admin", session=admin_client)
    alert_id = await one_alert(client)

    # A viewer reads but changes nothing; an API key neither.
    for action, body in (
        ("ack", None),
        ("unack", None),
        ("assign", {"owner": "vera"}),
        ("reopen", None),
        ("notes", {"text": "hi"}),
        ("resolve", {"disposition": "fraud"}),
    ):
        status, answer = await act(viewer_client, viewer, alert_id, action, body)
        assert (status, answer["error"]["code"]) == (403, "forbidden"), action
        resp = await client.post(f"/api/v1/alerts/{alert_id}/{action}", json=body, headers=AUTH)
        assert resp.status in (401, 403), action
    resp = await viewer_client.post("/api/v1/alerts/next", headers={"X-CSRF-Token": viewer})
    assert resp.status == 403

    assert (await act(client, alice, alert_id, "ack"))[0] == 200
    # Bob can neither give back nor take what Alice holds; the 409 names her.
    for action, body in (("unack", None), ("assign", {"owner": "bob"})):
        status, answer = await act(bob_client, bob, alert_id, action, body)
        assert status == 409, action
        assert answer["owner"] == "alice" and "alice" in answer["error"]["message"]
        assert answer["alert"]["owner"] == "alice"
    # Only analysts and admins can hold an alert.
    for owner, code in (
        ("vera", "invalid_field"),
        ("nobody", "invalid_field"),
        (None, "missing_field"),
    ):
        status, answer = await act(client, alice, alert_id, "assign", {"owner": owner})
        assert (status, answer["error"]["code"], answer["error"]["field"]) == (400, code, "owner")
    # An admin may reassign what someone else holds.
    status, answer = await act(admin_client, admin, alert_id, "assign", {"owner": "bob"})
    assert (status, answer["alert"]["owner"]) == (200, "bob")

    # Reopen needs a resolved alert; notes need text; bodies must be JSON objects.
    status, answer = await act(client, alice, alert_id, "reopen")
    assert (status, answer["owner"]) == (409, "bob")
    # Absent is missing_field, as for assign's owner and resolve's disposition.
    for body, code in (
        ({"text": ""}, "invalid_field"),
        ({"text": "x" * 2001}, "invalid_field"),
        ({}, "missing_field"),
    ):
        status, answer = await act(client, alice, alert_id, "notes", body)
        assert (status, answer["error"]["code"], answer["error"]["field"]) == (400, code, "text")
        assert "required text" not in answer["error"]["message"]
    resp = await client.post(
        f"/api/v1/alerts/{alert_id}/notes",
        data="{not json",
        headers={"X-CSRF-Token": alice, "Content-Type": "application/json"},
    )
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "malformed_json"
    status, answer = await act(client, alice, alert_id, "notes", ["text"])
    assert (status, answer["error"]["code"]) == (400, "invalid_body")
    for action, body in (
        ("unack", None),
        ("reopen", None),
        ("notes", {"text": "x"}),
        ("assign", {"owner": "bob"}),
    ):
        status, answer = await act(client, alice, "no-such-alert", action, body)
        assert (status, answer["error"]["code"]) == (404, "not_found"), action
    # A field an action does not take is refused, not dropped: a misspelt note would be
    # lost and the alert resolved without it, answered 200.
    for action, body, field in (
        ("resolve", {"disposition": "fraud", "notes": "same ring as #12"}, "notes"),
        ("reopen", {"note": "wrong call", "reason": "x"}, "reason"),
        ("notes", {"text": "x", "pinned": True}, "pinned"),
        ("assign", {"owner": "bob", "text": "x"}, "text"),
    ):
        status, answer = await act(client, alice, alert_id, action, body)
        error = answer["error"]
        assert (status, error["code"], error["field"]) == (400, "unknown_field", field), action
        assert f"Unknown field {field!r}" in error["message"], error
    # CSRF is checked on every one of them.
    resp = await client.post(f"/api/v1/alerts/{alert_id}/unack")
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "csrf"


async def test_every_json_body_is_read_as_ingest_reads_one(
    client: TestClient, login: Login
) -> None:
    # The triage and user endpoints read any body as JSON whatever its Content-Type said
    # (a note sent as text/plain was taken) and answered every bad body "Send a JSON
    # object". Now they refuse a type as ingest and labels do, and say what was wrong.
    admin = await login("ada", role="admin")
    alert_id = await one_alert(client)
    endpoints: list[tuple[str, str, dict[str, Any], str]] = [
        ("POST", f"/api/v1/alerts/{alert_id}/assign", {"owner": "ada"}, "'owner'"),
        (
            "POST",
            f"/api/v1/alerts/{alert_id}/resolve",
            {"disposition": "fraud"},
            "'disposition', 'note'",
        ),
        ("POST", f"/api/v1/alerts/{alert_id}/reopen", {"note": "x"}, "'note'"),
        ("POST", f"/api/v1/alerts/{alert_id}/notes", {"text": "x"}, "'text'"),
        (
            "PUT",
            "/api/v1/users/bob",
            {"role": "analyst", "password": "long enough pw"},
            "'password', 'role'",
        ),
    ]

    async def send(
        method: str, path: str, data: Any, content_type: str | None
    ) -> tuple[int, dict[str, Any]]:
        headers = {"X-CSRF-Token": admin}
        if content_type is not None:
            headers["Content-Type"] = content_type
        resp = await client.request(method, path, data=data, headers=headers)
        return resp.status, await resp.json()

    ingest = await client.post(
        "/api/v1/transactions",
        data=b'{"id": "t", oops}',
        headers={**AUTH, "Content-Type": "application/json"},
    )
    ingests_words = (await ingest.json())["error"]["message"]
    assert ingests_words.startswith("Malformed JSON: "), ingests_words
    for method, path, body, fields in endpoints:
        for content_type in ("text/plain", "application/xml", "text/csv"):
            status, answer = await send(method, path, json.dumps(body), content_type)
            error = answer["error"]
            assert (status, error["code"]) == (415, "unsupported_media_type"), (path, answer)
            assert error["content_type"] == content_type
            assert error["accepted"] == ["application/json", "application/x-www-form-urlencoded"]
            assert error["message"] == (
                f"Content-Type {content_type} is not taken: send a JSON object as "
                "application/json. Nothing was changed."
            )
        upload = FormData()
        upload.add_field("file", json.dumps(body), filename="body.json")
        status, answer = await send(method, path, upload, None)
        assert (status, answer["error"]["code"]) == (415, "unsupported_media_type"), path
        assert "(curl -F) is not taken" in answer["error"]["message"]
        # Bad bodies, each named: in ingest's words where it is not JSON.
        status, answer = await send(method, path, b'{"id": "t", oops}', "application/json")
        assert (status, answer["error"]) == (
            400,
            {"code": "malformed_json", "message": ingests_words, "field": None},
        ), path
        status, answer = await send(method, path, json.dumps([body]), "application/json")
        assert (status, answer["error"]) == (
            400,
            {
                "code": "invalid_body",
                "message": f"The body is a JSON array: send a JSON object (fields: {fields})",
                "field": None,
            },
        ), path
        name = next(iter(body))
        twice = f'{{"{name}": "a", "{name}": "b"}}'
        status, answer = await send(method, path, twice, "application/json")
        assert (status, answer["error"]) == (
            400,
            {
                "code": "duplicate_key",
                "message": f"Key {name!r} appears more than once",
                "field": name,
            },
        ), path
    status, answer = await send("POST", endpoints[3][1], b"", "application/json")
    assert (status, answer["error"]) == (
        400,
        {
            "code": "empty_body",
            "message": "The body is empty: send a JSON object (fields: 'text')",
            "field": None,
        },
    )
    # Nothing of the above changed anything.
    resp = await client.get(f"/api/v1/alerts/{alert_id}", headers={"X-CSRF-Token": admin})
    alert = (await resp.json())["alert"]
    assert (alert["status"], alert["owner"]) == ("open", None)
    assert (await client.get("/api/v1/users")).status == 200
    users = (await (await client.get("/api/v1/users")).json())["users"]
    assert "bob" not in [user["name"] for user in users]

    # Taken as JSON, as ingest takes it: curl -d's form type, no type, the generic bytes
    # type, application/json and any application/...+json (with a byte order mark too).
    path = endpoints[3][1]
    for i, content_type in enumerate(
        (
            "application/x-www-form-urlencoded",
            None,
            "application/octet-stream",
            "application/json; charset=utf-8",
            "application/vnd.fraudwatch+json",
        )
    ):
        data = ("\ufeff" if i == 3 else "") + json.dumps({"text": f"note {i}"})
        resp = await client.post(
            path,
            data=data.encode(),
            headers={"X-CSRF-Token": admin}
            | ({} if content_type is None else {"Content-Type": content_type}),
            skip_auto_headers=["Content-Type"] if content_type is None else (),
        )
        assert resp.status == 201, (content_type, await resp.text())


async def test_next_takes_the_most_urgent_unowned_alert_once(
    client: TestClient, login: Login, aiohttp_client: Any
) -> None:
    bob_client: TestClient = await aiohttp_client(client.server)
    alice = await login("alice")
    bob = await login("bob", session=bob_client)
    [high_old] = await post(client, impossible_travel("acct-old", "Old Ltd"))
    [critical] = await post(client, travel_at_night("acct-night"))
    [high_new] = await post(
        client, impossible_travel("acct-new", "New Ltd", T0 + dt.timedelta(hours=1))
    )
    [medium] = await post(
        client, card_testing("acct-ct", "acct-ct", n=3, at=T0 + dt.timedelta(hours=5))
    )
    severities = {}
    for alert_id in (high_old, critical, high_new, medium):
        severities[alert_id] = (await (await client.get(f"/api/v1/alerts/{alert_id}")).json())[
            "alert"
        ]["severity"]
    assert severities[critical] == "critical" and severities[high_old] == "high"
    # The newer high one is already held: next skips it.
    assert (await act(bob_client, bob, high_new, "ack"))[0] == 200

    first, second = await asyncio.gather(
        client.post("/api/v1/alerts/next", headers={"X-CSRF-Token": alice}),
        bob_client.post("/api/v1/alerts/next", headers={"X-CSRF-Token": bob}),
    )
    assert (first.status, second.status) == (200, 200)
    got = {
        (await first.json())["alert"]["id"]: "alice",
        (await second.json())["alert"]["id"]: "bob",
    }
    # Two analysts asking at once never get the same alert: critical first, then the older high.
    assert set(got) == {critical, high_old}
    for alert_id, who in got.items():
        alert = (await (await client.get(f"/api/v1/alerts/{alert_id}")).json())["alert"]
        assert (alert["status"], alert["owner"]) == ("acknowledged", who)

    resp = await client.post("/api/v1/alerts/next", headers={"X-CSRF-Token": alice})
    taken = (await resp.json())["alert"]
    assert taken["id"] == medium and taken["owner"] == "alice"
    resp = await client.post("/api/v1/alerts/next", headers={"X-CSRF-Token": alice})
    assert resp.status == 200 and (await resp.json()) == {"alert": None, "seq": None}


async def test_dispositions_come_from_the_setting_and_the_hello(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, dispositions="fraud,chargeback")
    client: TestClient = await aiohttp_client(create_app(settings))
    await create_user(client.app[STORE], "alice", "correct horse battery", "analyst")
    resp = await client.post(
        "/login", data={"username": "alice", "password": "correct horse battery"}
    )
    csrf = (await resp.text()).split('name="csrf-token" content="')[1].split('"')[0]
    first, second = (await post(client, card_testing("acct-d", "acct-d", n=4)))[:2]

    status, answer = await act(client, csrf, first, "resolve", {"disposition": "legitimate"})
    assert (status, answer["error"]["field"]) == (400, "disposition")
    assert "'fraud', 'chargeback'" in answer["error"]["message"]
    status, answer = await act(client, csrf, first, "resolve", {})
    assert (status, answer["error"]["code"]) == (400, "missing_field")
    status, answer = await act(client, csrf, second, "resolve", {"disposition": "chargeback"})
    assert (status, answer["alert"]["disposition"]) == (200, "chargeback")

    async with client.ws_connect("/ws") as ws:
        hello = await ws.receive_json(timeout=5)
    assert hello["dispositions"] == ["fraud", "chargeback"]


def test_default_dispositions() -> None:
    assert Settings().disposition_names == ("fraud", "legitimate", "duplicate")


async def test_notes_and_timeline_survive_a_restart(tmp_path: Path) -> None:
    from tests.test_store import make_batch

    path = tmp_path / "fw.db"
    store = SqliteStore(path)
    await store.start(lambda events: None)
    records: list[StoredRecord] = make_batch(0, 3, alert_every=1)
    events = await store.write_batch(records)
    alert_id = events[0].alert.id
    await store.acknowledge(alert_id, "alice")
    await store.add_note(alert_id, "alice", "first note")
    await store.resolve(alert_id, "alice", "duplicate", None)
    await store.reopen(alert_id, "bob", "wrong call")
    await store.close()

    again = SqliteStore(path)
    await again.start(lambda events: None)
    try:
        assert [n.text for n in await again.notes(alert_id)] == ["first note"]
        actions = [a.action for a in await again.audit_log(alert_id)]
        assert actions == ["acknowledge", "note", "resolve", "reopen"]
        alert = await again.get_alert(alert_id)
        assert alert is not None and alert.status == "open"
        summary = await again.open_summary()
        assert sum(summary["by_severity"].values()) == 3  # type: ignore[attr-defined]
        assert summary["oldest_open_created_at"] == alert.created_at
        assert json.loads(json.dumps(summary))  # plain JSON for the stats message
    finally:
        await again.close()


async def test_the_drawer_reads_past_damaged_rows_of_an_alert_s_history(
    client: TestClient, login: Login, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # A damaged audit detail answered the drawer's read of its alert 500 internal_error, a
    # damaged verdict the account's whole history; a note stored as bytes showed as base64.
    csrf = await login("alice")
    alert_id = await one_alert(client, "acct-a")  # acct-a-0 .. acct-a-2, the alert on -2
    assert (await act(client, csrf, alert_id, "ack"))[0] == 200
    for text in ("called the customer", "card blocked"):
        assert (await act(client, csrf, alert_id, "notes", {"text": text}))[0] == 201
    with contextlib.closing(sqlite3.connect(settings.db_path)) as conn, conn:
        conn.execute(
            "UPDATE audit SET detail_json = '[]' WHERE alert_id = ? AND action = 'acknowledge'",
            (alert_id,),
        )
        conn.execute(
            "UPDATE notes SET text = CAST(text AS BLOB) WHERE text = 'called the customer'"
        )
        conn.execute(
            "UPDATE transactions SET verdict_json = substr(verdict_json, 1, 6) "
            "WHERE id = 'acct-a-1'"
        )
    resp = await client.get(f"/api/v1/alerts/{alert_id}", headers=AUTH)
    assert resp.status == 200, await resp.text()
    drawer = await resp.json()
    assert [(a["action"], a["actor"]) for a in drawer["audit"]] == [
        ("acknowledge", "alice"),
        ("note", "alice"),
        ("note", "alice"),
    ]
    assert drawer["audit"][0]["detail"] is None
    assert [n["text"] for n in drawer["notes"]] == ["card blocked"]
    # One a page: the damaged one's page is empty, and leads on.
    pages, cursor = [], ""
    while cursor is not None:
        url = f"/api/v1/accounts/acct-a/transactions?limit=1&cursor={cursor}"
        resp = await client.get(url, headers=AUTH)
        assert resp.status == 200, await resp.text()
        page = await resp.json()
        pages.append([t["transaction"]["id"] for t in page["transactions"]])
        cursor = page["next_cursor"]
    assert pages == [["acct-a-2"], [], ["acct-a-0"]]
    for logged in (
        "damaged row shown without its detail: audit id ",
        "damaged row left out: notes id ",
        "damaged row left out: transactions acct-a-1: verdict_json unreadable: ",
    ):
        assert logged in caplog.text, logged


async def test_an_alert_whose_row_is_damaged_is_answered_stored_row_damaged(
    client: TestClient, login: Login, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # The drawer's read and every change to a damaged alert were a bare 500 internal_error
    # ("a bug"). The alert exists but cannot be read: the server's fault, and final.
    csrf = await login("alice")
    damaged, kept = await one_alert(client, "acct-a"), await one_alert(client, "acct-b")
    with contextlib.closing(sqlite3.connect(settings.db_path)) as conn, conn:
        sql = "UPDATE alerts SET alert_json = substr(alert_json, 1, 40) WHERE id = ?"
        conn.execute(sql, (damaged,))
    message = (
        f"Alert {damaged} is stored but cannot be read back: its stored row is damaged. "
        "Retrying will not help; tell the server's operator, whose log says what is wrong "
        "with it"
    )
    resp = await client.get(f"/api/v1/alerts/{damaged}", headers=AUTH)
    assert resp.status == 500 and "Retry-After" not in resp.headers
    error = (await resp.json())["error"]
    assert error == {"code": "stored_row_damaged", "message": message, "field": None}
    for action, body in (
        ("ack", None),
        ("unack", None),
        ("assign", {"owner": "alice"}),
        ("resolve", {"disposition": "fraud"}),
        ("notes", {"text": "called the customer"}),
        ("reopen", None),
    ):
        status, answer = await act(client, csrf, damaged, action, body)
        assert (status, answer["error"]["code"]) == (500, "stored_row_damaged"), action
    log = f"stored_row_damaged: alert {damaged}: alert_json unreadable: Input data was truncated"
    assert log in caplog.text
    # Its neighbours are read and changed as usual, and the list leaves it out.
    assert (await act(client, csrf, kept, "ack"))[0] == 200
    listed = await (await client.get("/api/v1/alerts", headers=AUTH)).json()
    assert [a["id"] for a in listed["alerts"]] == [kept]
