"""The REST contract: ingest verdicts, batch results, idempotency, alerts, ack races."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import json
import sqlite3
from typing import Any

import pytest
from aiohttp import FormData, web
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.config import Settings
from server.detection.verdict import Verdict
from server.state import STORE
from server.transactions import Transaction
from server.views.api import INGEST_OVERRIDE
from server.wording import size_in_words
from tests.conftest import AUTH, T0, Login, card_testing, make_settings, tx

VERDICT_FIELDS = {
    "transaction_id",
    "score",
    "decision",
    "reasons",
    "alert_id",
    "rules_version",
    "latency_ms",
}
ALERT_FIELDS = {
    "id",
    "status",
    "severity",
    "score",
    "reasons",
    "transaction",
    "owner",
    "disposition",
    "created_at",
    "updated_at",
}


async def post_batch(client: TestClient, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    resp = await client.post("/api/v1/transactions", json=records, headers=AUTH)
    assert resp.status == 200, await resp.text()
    return (await resp.json())["results"]  # type: ignore[no-any-return]


async def raise_alert(client: TestClient, prefix: str = "ct", account: str = "acct-ct") -> str:
    results = await post_batch(client, card_testing(prefix, account))
    alert_ids = [r["alert_id"] for r in results if r["alert_id"]]
    assert alert_ids, results
    return alert_ids[0]  # type: ignore[no-any-return]


async def test_single_transaction_gets_a_verdict(client: TestClient) -> None:
    resp = await client.post("/api/v1/transactions", json=tx("t-1"), headers=AUTH)
    assert resp.status == 200
    verdict = await resp.json()
    assert set(verdict) == VERDICT_FIELDS
    assert verdict["transaction_id"] == "t-1"
    assert verdict["decision"] == "allow"
    assert verdict["alert_id"] is None
    assert 0 <= verdict["score"] <= 1
    assert verdict["latency_ms"] >= 0


async def test_ingest_requires_the_api_key(client: TestClient) -> None:
    resp = await client.post("/api/v1/transactions", json=tx("t-1"))
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unauthorized"
    bad = await client.post(
        "/api/v1/transactions", json=tx("t-1"), headers={"Authorization": "Bearer nope"}
    )
    assert bad.status == 401


async def test_ndjson_run_together_or_uploaded_as_a_form_says_how_to_send_it(
    client: TestClient,
) -> None:
    # `curl -d @batch.ndjson` drops the file's newlines and `curl -F file=@…` wraps it in
    # multipart: both were answered "trailing characters" or told to send NDJSON, which
    # the sender believed it was doing.
    lines = [json.dumps(tx("r-1")), json.dumps(tx("r-2"))]
    ndjson = {**AUTH, "Content-Type": "application/x-ndjson"}
    resp = await client.post("/api/v1/transactions", data="".join(lines), headers=ndjson)
    assert resp.status == 200
    [entry] = (await resp.json())["results"]
    assert entry["error"]["code"] == "malformed_json"
    # msgspec's own "JSON is malformed: " is not repeated after ours.
    assert entry["error"]["message"].startswith("Malformed JSON: trailing characters (byte ")
    assert "several JSON objects on one line" in entry["error"]["message"]
    assert "--data-binary @FILE" in entry["error"]["message"]
    # curl -d's own content type: the whole request, one 400, the same advice.
    form = {**AUTH, "Content-Type": "application/x-www-form-urlencoded"}
    resp = await client.post("/api/v1/transactions", data=" ".join(lines), headers=form)
    assert resp.status == 400
    assert "--data-binary @FILE" in (await resp.json())["error"]["message"]

    upload = FormData()
    upload.add_field("file", "\n".join(lines) + "\n", filename="batch.ndjson")
    resp = await client.post("/api/v1/transactions", data=upload, headers=AUTH)
    # Not a body of a type the API reads (it was a 400 malformed_json until 415s came).
    assert resp.status == 415
    error = (await resp.json())["error"]
    assert error["code"] == "unsupported_media_type"
    assert "multipart/form-data upload (curl -F) is not taken" in error["message"]
    assert "Content-Type: application/x-ndjson" not in error["message"]
    # Nothing was half taken: sent properly, both are new.
    resp = await client.post("/api/v1/transactions", data="\n".join(lines), headers=ndjson)
    assert [r["transaction_id"] for r in (await resp.json())["results"]] == ["r-1", "r-2"]


async def test_a_body_of_a_type_not_taken_is_refused_415_saying_what_is(
    client: TestClient,
) -> None:
    # text/plain was read as JSON (and answered 200), application/xml answered "Malformed
    # JSON: invalid character (byte 0)": an integrator wants the status that says "wrong
    # type", with what was received and what is taken.
    record = json.dumps(tx("mt-1")).encode()
    accepted = [
        "application/json",
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonl",
        "application/x-jsonlines",
        "application/x-www-form-urlencoded",
    ]
    for path in ("/api/v1/transactions", "/api/v1/labels"):
        for content_type, body in (
            ("text/plain", record),
            ("application/xml", b"<transaction id='mt-1'/>"),
            ("text/csv; charset=utf-8", b"id,amount\nmt-1,5\n"),
        ):
            headers = {**AUTH, "Content-Type": content_type}
            resp = await client.post(path, data=body, headers=headers)
            assert resp.status == 415, (path, content_type, await resp.text())
            error = (await resp.json())["error"]
            received = content_type.split(";")[0]
            assert error == {
                "code": "unsupported_media_type",
                "message": f"Content-Type {received} is not taken: send JSON as "
                "application/json, or NDJSON as application/x-ndjson. Nothing of this "
                "request was accepted.",
                "field": None,
                "content_type": received,
                "accepted": accepted,
            }
        # curl -F: a form upload, with what to send instead.
        upload = FormData()
        upload.add_field("file", record, filename="batch.json")
        resp = await client.post(path, data=upload, headers=AUTH)
        assert resp.status == 415
        error = (await resp.json())["error"]
        assert error["content_type"] == "multipart/form-data"
        assert "(curl -F) is not taken: send the file itself as the body" in error["message"]
    # Nothing of them was taken: the transaction is new when sent as JSON.
    resp = await client.post("/api/v1/transactions", data=record, headers={**AUTH})
    assert resp.status == 200 and (await resp.json())["transaction_id"] == "mt-1"


@pytest.mark.parametrize(
    "content_type",
    [
        None,  # no Content-Type at all (urllib, requests with bytes)
        "application/octet-stream",  # what some clients send for bytes of no stated type
        "application/x-www-form-urlencoded",  # curl -d, as the README posts
        "application/json; charset=utf-8",
        "application/vnd.acme.transaction+json",  # RFC 6839: JSON by its suffix
    ],
)
async def test_json_is_taken_under_the_types_clients_send_it_with(
    client: TestClient, content_type: str | None
) -> None:
    record = json.dumps(tx(f"ct-{content_type}")).encode()
    if content_type is None:
        resp = await client.post(
            "/api/v1/transactions",
            data=record,
            headers=AUTH,
            skip_auto_headers=["Content-Type"],
        )
    else:
        headers = {**AUTH, "Content-Type": content_type}
        resp = await client.post("/api/v1/transactions", data=record, headers=headers)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["transaction_id"] == f"ct-{content_type}"


async def test_batch_answers_each_record_in_order(client: TestClient) -> None:
    records: list[Any] = [tx("b-1"), {**tx("b-2"), "amount": -5}, tx("b-3"), {"id": "b-4"}]
    results = await post_batch(client, records)
    assert [r.get("transaction_id") for r in results] == ["b-1", None, "b-3", None]
    assert results[1]["error"]["field"] == "amount"
    assert results[3]["error"]["code"] == "missing_field"


async def test_ndjson_batch(client: TestClient) -> None:
    body = "\n".join(json.dumps(tx(f"n-{i}")) for i in range(5)) + "\n{not json}\n"
    resp = await client.post(
        "/api/v1/transactions",
        data=body,
        headers={**AUTH, "Content-Type": "application/x-ndjson"},
    )
    assert resp.status == 200
    results = (await resp.json())["results"]
    assert [r.get("transaction_id") for r in results[:5]] == [f"n-{i}" for i in range(5)]
    assert results[5]["error"]["code"] == "malformed_json"


@pytest.mark.parametrize("content_type", ["application/jsonl", "application/ndjson"])
async def test_ndjson_under_its_other_names(client: TestClient, content_type: str) -> None:
    body = "\n".join(json.dumps(tx(f"{content_type[-5:]}-{i}")) for i in range(3))
    resp = await client.post(
        "/api/v1/transactions", data=body, headers={**AUTH, "Content-Type": content_type}
    )
    assert resp.status == 200
    assert len((await resp.json())["results"]) == 3


async def test_ndjson_sent_as_json_is_refused_with_a_hint(client: TestClient) -> None:
    body = "\n".join(json.dumps(tx(f"h-{i}")) for i in range(3))
    resp = await client.post(
        "/api/v1/transactions", data=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["code"] == "malformed_json"
    assert "Content-Type: application/x-ndjson" in error["message"]


async def test_a_byte_order_mark_before_the_body_is_ignored(client: TestClient) -> None:
    # What PowerShell's `-Encoding UTF8` and Notepad write at the start of a file.
    bom = b"\xef\xbb\xbf"
    one = bom + json.dumps(tx("bom-1")).encode()
    resp = await client.post("/api/v1/transactions", data=one, headers=AUTH)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["transaction_id"] == "bom-1"
    batch = bom + json.dumps([tx("bom-2"), tx("bom-3")]).encode()
    resp = await client.post("/api/v1/transactions", data=batch, headers=AUTH)
    assert [r["transaction_id"] for r in (await resp.json())["results"]] == ["bom-2", "bom-3"]
    lines = bom + b"\n".join(json.dumps(tx(f"bom-{i}")).encode() for i in (4, 5))
    resp = await client.post(
        "/api/v1/transactions",
        data=lines,
        headers={**AUTH, "Content-Type": "application/x-ndjson"},
    )
    assert [r["transaction_id"] for r in (await resp.json())["results"]] == ["bom-4", "bom-5"]
    # Only at the start: one anywhere else is not JSON.
    resp = await client.post("/api/v1/transactions", data=b" " + one, headers=AUTH)
    assert (await resp.json())["error"]["code"] == "malformed_json"


async def test_invalid_single_record_is_a_400_naming_the_field(client: TestClient) -> None:
    resp = await client.post("/api/v1/transactions", json={**tx("x"), "amount": True}, headers=AUTH)
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["field"] == "amount"
    assert error["message"]


async def test_malformed_json_and_oversized_body(aiohttp_client: Any, tmp_path: Any) -> None:
    client = await aiohttp_client(create_app(make_settings(tmp_path, max_body_bytes=2000)))
    resp = await client.post(
        "/api/v1/transactions", data=b"{oops", headers={**AUTH, "Content-Type": "application/json"}
    )
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "malformed_json"
    big = json.dumps([tx(f"big-{i}") for i in range(50)])
    resp = await client.post(
        "/api/v1/transactions", data=big, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert resp.status == 413
    error = (await resp.json())["error"]
    # The limit in the project's words, the setting that raises it and what to do instead
    # (aiohttp's own text was "Maximum request body size 2000 exceeded.").
    assert error == {
        "code": "body_too_large",
        "message": "Request body over 2,000 bytes (max_body_bytes): send fewer transactions "
        "per request. Nothing of this request was accepted.",
        "field": None,
        "limit": 2000,
    }


async def test_the_default_body_limit_is_named_in_mib(client: TestClient) -> None:
    # What a sender of a batch too big meets first: the 8 MiB default, said as 8 MiB.
    body = io.BytesIO(b"[" + b" " * (8 * 1024 * 1024) + b"]")
    resp = await client.post(
        "/api/v1/transactions", data=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert resp.status == 413
    error = (await resp.json())["error"]
    assert error["message"].startswith("Request body over 8 MiB (max_body_bytes): "), error
    assert error["limit"] == 8 * 1024 * 1024


@pytest.mark.parametrize(
    ("size", "words"),
    [
        (8 * 1024**2, "8 MiB"),
        (1024, "1 KiB"),
        (3 * 1024**3, "3 GiB"),
        (1500, "1,500 bytes"),
        (1, "1 byte"),
        (5 * 1024**2 + 1, "5,242,881 bytes"),
    ],
)
def test_sizes_are_said_in_the_largest_exact_unit(size: int, words: str) -> None:
    assert size_in_words(size) == words


async def test_a_batch_over_max_batch_records_is_refused_whole_with_the_limit(
    aiohttp_client: Any, tmp_path: Any
) -> None:
    client = await aiohttp_client(create_app(make_settings(tmp_path, max_batch_records=5)))
    ndjson = {**AUTH, "Content-Type": "application/x-ndjson"}
    six = [tx(f"many-{i}") for i in range(6)]
    for body, headers in (
        (json.dumps(six), {**AUTH, "Content-Type": "application/json"}),
        ("\n".join(json.dumps(r) for r in six), ndjson),
    ):
        resp = await client.post("/api/v1/transactions", data=body, headers=headers)
        assert resp.status == 413
        error = (await resp.json())["error"]
        assert error["code"] == "too_many_records"
        assert error["field"] is None
        assert error["limit"] == 5
        assert "6 transactions in one request; at most 5" in error["message"]
        assert "split the batch into requests of 5 or fewer" in error["message"]
    # Nothing of a refused batch was accepted; at the limit, all of it is.
    store = client.app[STORE]  # type: ignore[index]
    assert await store.known_verdicts([r["id"] for r in six]) == {}
    assert len(await post_batch(client, six[:5])) == 5


async def test_the_default_batch_limit_is_ten_thousand(client: TestClient) -> None:
    body = "\n".join(json.dumps(tx(f"d-{i}", f"acct-{i % 100}")) for i in range(10_001))
    headers = {**AUTH, "Content-Type": "application/x-ndjson"}
    # Over 1 MiB: aiohttp wants a stream for a body that large.
    resp = await client.post(
        "/api/v1/transactions", data=io.BytesIO(body.encode()), headers=headers
    )
    assert resp.status == 413
    assert (await resp.json())["error"]["limit"] == 10_000


async def test_resending_an_id_returns_the_original_verdict(client: TestClient) -> None:
    first = await post_batch(client, card_testing("dup", "acct-dup"))
    again = await post_batch(client, card_testing("dup", "acct-dup"))
    assert again == first
    alerts = (await (await client.get("/api/v1/alerts", headers=AUTH)).json())["alerts"]
    assert len(alerts) == sum(1 for r in first if r["alert_id"])
    # Duplicates inside one batch are answered once and scored once.
    results = await post_batch(client, [tx("same"), tx("same")])
    assert results[0] == results[1]


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        ("'{}'", "verdict_json unreadable"),
        # Bytes that are not UTF-8 (another tool's write): sqlite3 raised reading them,
        # and the whole request was a 500 internal_error.
        ("CAST(x'7bff7d' AS TEXT)", "verdict_json not UTF-8"),
    ],
)
async def test_resending_an_id_whose_stored_row_is_damaged_is_not_scored_again(
    client: TestClient,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
    damage: str,
    problem: str,
) -> None:
    # The labels path reads past a damaged row; ingest must not: the stored verdict is what
    # a re-send gets back, and scoring it again would answer something else, and count the
    # payment twice in the account's history.
    await post_batch(client, [tx("hurt")])
    with contextlib.closing(sqlite3.connect(settings.db_path)) as conn, conn:
        conn.execute(f"UPDATE transactions SET verdict_json = {damage} WHERE id = 'hurt'")
        (stored,) = conn.execute("SELECT hex(verdict_json) FROM transactions").fetchone()
    resp = await client.post("/api/v1/transactions", json=tx("hurt"), headers=AUTH)
    # Not a 503 "retry": the row stays damaged whatever the client does. A server-side
    # error, final, that names the id and sends the operator to the log.
    assert resp.status == 500, await resp.text()
    assert "Retry-After" not in resp.headers
    error = (await resp.json())["error"]
    assert error["code"] == "stored_row_damaged" and error["field"] == "id", error
    assert "'hurt'" in error["message"] and "log" in error["message"], error
    assert f"hurt: {problem}" in caplog.text  # the log names the row
    # In a batch it is that record's answer alone: its neighbours are scored and stored,
    # so a client re-sending what it was not answered for does not loop on them.
    later = T0 + dt.timedelta(minutes=1)
    results = await post_batch(client, [tx("hurt"), tx("next", at=later)])
    assert results[0]["error"]["code"] == "stored_row_damaged", results
    assert results[1]["transaction_id"] == "next" and "decision" in results[1], results
    with contextlib.closing(sqlite3.connect(settings.db_path)) as conn:
        rows = dict(conn.execute("SELECT id, hex(verdict_json) FROM transactions").fetchall())
    # Never scored again: the damaged row is as it was, the only one for its id.
    assert rows.keys() == {"hurt", "next"} and rows["hurt"] == stored
    # The operator's alarm, not the integrator's: counted apart from refused inputs.
    metrics = await (await client.get("/metrics")).text()
    assert "fraudwatch_stored_rows_damaged_total 2" in metrics, metrics
    assert "fraudwatch_rejected_total 0" in metrics, metrics


async def test_an_alert_gives_the_reasons_its_verdict_gave_number_for_number(
    client: TestClient,
) -> None:
    # A count observed by a rule was `3` in the verdict and `3.0` once the alert was read
    # back: a client comparing the two, or one typed on integers, saw them differ.
    results = await post_batch(client, card_testing("same", "acct-same", n=3))
    verdict = results[-1]
    assert verdict["alert_id"], verdict
    resp = await client.get(f"/api/v1/alerts/{verdict['alert_id']}", headers=AUTH)
    raw = await resp.text()
    alert = json.loads(raw)["alert"]
    # json.dumps, not ==: in Python 3 == 3.0.
    assert json.dumps(alert["reasons"]) == json.dumps(verdict["reasons"]), raw
    assert alert["reasons"][0]["observed"] == 3, raw


async def test_a_reason_says_what_its_figures_measure(client: TestClient) -> None:
    # London, then New York ten minutes later: impossible travel, observed in km/h.
    results = await post_batch(
        client,
        [
            tx("trip-0", "acct-trip", lat=51.5, lon=-0.1),
            tx("trip-1", "acct-trip", at=T0 + dt.timedelta(minutes=10), lat=40.7, lon=-74.0),
        ],
    )
    verdict = results[-1]
    travel = next(r for r in verdict["reasons"] if r["code"] == "impossible_travel")
    assert (travel["unit"], travel["threshold"]) == ("km/h", 900), travel
    alert = (
        await (await client.get(f"/api/v1/alerts/{verdict['alert_id']}", headers=AUTH)).json()
    )["alert"]
    assert alert["reasons"] == verdict["reasons"]


async def test_alert_contract_and_listing(client: TestClient) -> None:
    alert_id = await raise_alert(client)
    resp = await client.get(f"/api/v1/alerts/{alert_id}", headers=AUTH)
    assert resp.status == 200
    alert = (await resp.json())["alert"]
    assert set(alert) >= ALERT_FIELDS
    assert alert["status"] == "open"
    assert alert["owner"] is None
    assert alert["transaction"]["account_id"] == "acct-ct"
    assert alert["reasons"][0]["code"] == "card_testing"
    page = await (await client.get("/api/v1/alerts?status=open&limit=1", headers=AUTH)).json()
    assert len(page["alerts"]) == 1
    assert page["seq"] >= 1
    bad = await client.get("/api/v1/alerts?status=nope", headers=AUTH)
    assert bad.status == 400
    assert (await bad.json())["error"]["field"] == "status"
    missing = await client.get("/api/v1/alerts/does-not-exist", headers=AUTH)
    assert missing.status == 404


async def test_pagination_visits_every_alert_once(client: TestClient) -> None:
    for i in range(4):
        await post_batch(client, card_testing(f"p{i}", f"acct-p{i}", n=5))
    seen: list[str] = []
    cursor = None
    while True:
        url = "/api/v1/alerts?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = await (await client.get(url, headers=AUTH)).json()
        seen += [a["id"] for a in page["alerts"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) >= 8


async def test_ack_then_resolve_with_audit(client: TestClient, login: Login) -> None:
    csrf = await login("alice")
    alert_id = await raise_alert(client)
    resp = await client.post(f"/api/v1/alerts/{alert_id}/ack", headers={"X-CSRF-Token": csrf})
    assert resp.status == 200
    alert = (await resp.json())["alert"]
    assert (alert["status"], alert["owner"]) == ("acknowledged", "alice")
    resp = await client.post(
        f"/api/v1/alerts/{alert_id}/resolve",
        json={"disposition": "fraud", "note": "confirmed with cardholder"},
        headers={"X-CSRF-Token": csrf},
    )
    assert resp.status == 200
    alert = (await resp.json())["alert"]
    assert (alert["status"], alert["disposition"]) == ("resolved", "fraud")
    detail = await (await client.get(f"/api/v1/alerts/{alert_id}")).json()
    assert [e["action"] for e in detail["audit"]] == ["acknowledge", "resolve"]
    assert all(e["actor"] == "alice" for e in detail["audit"])


async def test_state_changes_need_csrf_and_an_analyst(client: TestClient, login: Login) -> None:
    alert_id = await raise_alert(client)
    # The API key reads but cannot triage: a person owns every decision.
    resp = await client.post(f"/api/v1/alerts/{alert_id}/ack", headers=AUTH)
    assert resp.status == 403
    await login("alice")
    resp = await client.post(f"/api/v1/alerts/{alert_id}/ack")
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "csrf"


async def test_resolve_validates_its_body(client: TestClient, login: Login) -> None:
    csrf = await login("alice")
    alert_id = await raise_alert(client)
    headers = {"X-CSRF-Token": csrf}
    for body, field in (
        ({"disposition": "maybe"}, "disposition"),
        ({"disposition": "fraud", "note": 5}, "note"),
    ):
        resp = await client.post(f"/api/v1/alerts/{alert_id}/resolve", json=body, headers=headers)
        assert resp.status == 400
        assert (await resp.json())["error"]["field"] == field


async def test_second_analyst_gets_409_naming_the_owner(
    client: TestClient, login: Login, aiohttp_client: Any
) -> None:
    bob_client: TestClient = await aiohttp_client(client.server)
    alice = await login("alice")
    bob = await login("bob", session=bob_client)
    alert_id = await raise_alert(client)
    first, second = await asyncio.gather(
        client.post(f"/api/v1/alerts/{alert_id}/ack", headers={"X-CSRF-Token": alice}),
        bob_client.post(f"/api/v1/alerts/{alert_id}/ack", headers={"X-CSRF-Token": bob}),
    )
    statuses = sorted([first.status, second.status])
    assert statuses == [200, 409]
    loser = second if second.status == 409 else first
    winner = "alice" if loser is second else "bob"
    body = await loser.json()
    assert body["owner"] == winner
    assert winner in body["error"]["message"]
    # The loser cannot resolve what the winner holds either.
    loser_client, loser_csrf = (bob_client, bob) if loser is second else (client, alice)
    resp = await loser_client.post(
        f"/api/v1/alerts/{alert_id}/resolve",
        json={"disposition": "legitimate"},
        headers={"X-CSRF-Token": loser_csrf},
    )
    assert resp.status == 409


async def test_everything_survives_a_restart(aiohttp_client: Any, tmp_path: Any) -> None:
    settings = make_settings(tmp_path)
    first = await aiohttp_client(create_app(settings))
    results = await post_batch(first, card_testing("r", "acct-r", n=5))
    alert_ids = [r["alert_id"] for r in results if r["alert_id"]]
    await first.close()

    second = await aiohttp_client(create_app(settings))
    again = await post_batch(second, card_testing("r", "acct-r", n=5))
    assert again == results
    page = await (await second.get("/api/v1/alerts", headers=AUTH)).json()
    assert sorted(a["id"] for a in page["alerts"]) == sorted(alert_ids)


async def test_health_and_metrics(client: TestClient) -> None:
    await post_batch(client, [tx("h-1"), tx("h-2")])
    health = await client.get("/healthz")
    assert health.status == 200
    assert (await health.json())["status"] == "ok"
    text = await (await client.get("/metrics")).text()
    assert "fraudwatch_transactions_total 2" in text
    assert "# TYPE fraudwatch_queue_depth gauge" in text


async def test_api_errors_are_json(client: TestClient) -> None:
    resp = await client.get("/api/v1/nothing-here")
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"
    resp = await client.delete("/api/v1/transactions")
    assert resp.status == 405
    assert (await resp.json())["error"]["code"] == "method_not_allowed"
    # RFC 9110 (15.5.6): a 405 lists the methods the resource takes; a client cannot guess.
    assert resp.headers["Allow"] == "POST"


async def test_a_wrong_method_is_answered_in_the_error_shape_saying_what_the_path_takes(
    client: TestClient,
) -> None:
    # The 405's message was aiohttp's reason alone, "Method Not Allowed", and /healthz, a
    # JSON endpoint load balancers and scripts call, answered it as text.
    for method, path, allow in (
        ("GET", "/api/v1/transactions", "POST"),
        ("PUT", "/api/v1/labels", "POST"),
        ("DELETE", "/api/v1/alerts", "GET,HEAD"),
        ("POST", "/healthz", "GET,HEAD"),
    ):
        resp = await client.request(method, path, headers=AUTH)
        assert resp.status == 405
        assert resp.headers["Allow"] == allow
        assert resp.content_type == "application/json", (path, await resp.text())
        error = (await resp.json())["error"]
        assert error["code"] == "method_not_allowed"
        assert error["message"] == (
            f"{method} is not allowed on {path}: it takes {allow.replace(',', ', ')}"
        )
    # Pages keep aiohttp's own answer: a person's browser never sends these.
    page = await client.request("PUT", "/login")
    assert (page.status, page.content_type) == (405, "text/plain")


async def test_an_unknown_api_path_is_answered_in_the_error_shape_naming_the_path(
    client: TestClient,
) -> None:
    # The 404 said aiohttp's reason alone, "Not Found", and `/api` (no slash) answered it
    # as text: an integrator with a typo or another version in the URL had to guess which.
    for method, path, hint in (
        ("GET", "/api/v1/transaction/x", "docs/api.md lists the endpoints"),
        ("POST", "/api/v2/transactions", "the API's paths start /api/v1/"),
        ("GET", "/api/v1/alerts/", "did you mean /api/v1/alerts (no trailing slash)?"),
        ("POST", "/api/v1/transactions/", "did you mean /api/v1/transactions"),
        ("GET", "/api", "the API's paths start /api/v1/"),
    ):
        resp = await client.request(method, path, headers=AUTH)
        assert resp.status == 404, path
        assert resp.content_type == "application/json", (path, await resp.text())
        error = (await resp.json())["error"]
        assert error["code"] == "not_found"
        assert error["message"].startswith(f"No API endpoint at {path}: "), error
        assert hint in error["message"], error
    # A page keeps aiohttp's own answer, a person's browser reading it.
    page = await client.get("/no-such-page")
    assert (page.status, page.content_type) == (404, "text/plain")


async def test_a_missing_static_file_is_a_short_404_naming_the_path(
    client: TestClient,
) -> None:
    # It was a 404 with an empty application/octet-stream body (aiohttp's FileResponse
    # finding no file): a browser's console or curl showed nothing to go on.
    for path, hint in (
        ("/static/nope.js", ""),
        ("/static/js/nope.js", ""),
        ("/static/app.js", ": did you mean /static/js/app.js?"),
        ("/static/css/app.js", ": did you mean /static/js/app.js?"),
    ):
        for method in ("GET", "HEAD"):
            resp = await client.request(method, path)
            assert (resp.status, resp.content_type) == (404, "text/plain"), (method, path)
            assert resp.charset == "utf-8"
            # Security headers as on any answer; a 404 is never cached as the file.
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
            assert resp.headers["Cache-Control"] == "no-cache"
        assert await (await client.get(path)).text() == f"No file at {path}{hint}\n"
    # A directory is no file either (aiohttp answered 403 Forbidden).
    resp = await client.get("/static/js")
    assert (resp.status, await resp.text()) == (404, "No file at /static/js\n")
    # The files that are there are served as before.
    script = await client.get("/static/js/app.js")
    assert (script.status, script.content_type) == (200, "application/javascript")


async def test_pages_carry_security_headers_and_static_revalidates(client: TestClient) -> None:
    login = await client.get("/login")
    assert login.status == 200
    csp = login.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert login.headers["X-Content-Type-Options"] == "nosniff"
    script = await client.get("/static/js/app.js")
    assert script.status == 200
    assert script.headers["Cache-Control"] == "no-cache"


async def test_dashboard_redirects_to_login(client: TestClient) -> None:
    resp = await client.get("/", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/login"


async def test_naive_baseline_answers_and_delivers(aiohttp_client: Any, tmp_path: Any) -> None:
    # The benchmark compares against this design, so it must work behind the same endpoints.
    # Its verdicts may differ from the batched ones: concurrent per-transaction tasks can score
    # one account's transactions out of order (one more reason it is only a baseline).
    naive = await aiohttp_client(create_app(make_settings(tmp_path, pipeline="naive")))
    records = [*card_testing("nv", "acct-nv", n=8), tx("nv-plain", "acct-other")]
    async with naive.ws_connect("/ws", headers=AUTH) as ws:
        await ws.send_json({"type": "subscribe", "verdicts": True})
        got = await post_batch(naive, records)
        assert [r["transaction_id"] for r in got] == [r["id"] for r in records]
        assert any(r["alert_id"] for r in got)
        kinds: set[str] = set()
        async with asyncio.timeout(5):
            while not {"verdicts", "alert"} <= kinds:
                kinds.add((await ws.receive_json())["type"])


async def test_an_unexpected_failure_is_still_a_json_error(
    client: TestClient, settings: Settings, login: Login
) -> None:
    # A user stored with text that is not UTF-8 (edited by hand, or written by another
    # tool): the users list still fails whole on it, a failure nothing expects. (A damaged
    # alert is stored_row_damaged; an account's history leaves a damaged row out.)
    await login("root", "admin")
    await client.app[STORE].add_user("alice", "hash", "analyst")
    with contextlib.closing(sqlite3.connect(settings.db_path)) as conn, conn:
        conn.execute("UPDATE users SET created_at = CAST(x'7bff7d' AS TEXT) WHERE name = 'alice'")
    resp = await client.get("/api/v1/users")
    assert resp.status == 500, await resp.text()
    assert resp.content_type == "application/json"
    assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
    body = await resp.json()
    assert body["error"]["code"] == "internal_error"
    assert body["error"]["field"] is None


async def test_a_row_that_cannot_be_read_is_not_blamed_on_the_cursor(
    client: TestClient, settings: Settings
) -> None:
    await post_batch(client, [tx("ok-1", "acct-d"), tx("broken", "acct-d")])
    with contextlib.closing(sqlite3.connect(settings.db_path)) as conn, conn:
        conn.execute("UPDATE transactions SET verdict_json = '{}' WHERE id = 'broken'")
    # No cursor was sent: a 400 naming it would send the client to fix what is not broken.
    # The damaged row is left out (docs/operations.md#damaged-rows), the rest answered.
    resp = await client.get("/api/v1/accounts/acct-d/transactions", headers=AUTH)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert [t["transaction"]["id"] for t in body["transactions"]] == ["ok-1"]
    # A cursor that is not one the API gave is still the caller's 400.
    for path in ("/api/v1/accounts/acct-d/transactions", "/api/v1/alerts"):
        resp = await client.get(path, params={"cursor": "bm90IGEgY3Vyc29y"}, headers=AUTH)
        assert resp.status == 400, path
        assert (await resp.json())["error"]["field"] == "cursor"


async def test_a_bug_while_scoring_is_a_500_not_a_retry(
    aiohttp_client: Any, settings: Settings
) -> None:
    # The store's failures and timeouts are 503 with Retry-After; anything else is a bug a
    # retry would meet again, so it must not tell the integrator's loop to retry.
    app = create_app(settings)

    async def broken(request: web.Request, transactions: list[Transaction]) -> list[Verdict]:
        raise RuntimeError("a bug in scoring")

    app[INGEST_OVERRIDE] = broken
    client = await aiohttp_client(app)
    resp = await client.post("/api/v1/transactions", json=tx("bug-1", "acct-b"), headers=AUTH)
    assert resp.status == 500, await resp.text()
    assert "Retry-After" not in resp.headers
    error = (await resp.json())["error"]
    assert error["code"] == "internal_error" and "retry" not in error["message"].lower()
