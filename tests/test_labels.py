"""The labels API: scopes, validation, per-item results, idempotency, resolutions as labels,
and the model learning them off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import json
import sqlite3
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.config import Settings
from server.detection.features import amount_bucket
from server.detection.model import OnlineLogit
from server.learning import load_learner
from server.state import AUTH, DETECTOR, SCORECARD, STORE, TRAINER
from tests.conftest import AUTH as BOOTSTRAP
from tests.conftest import Login, make_settings, tx
from tests.test_api import post_batch, raise_alert


async def key(client: TestClient, name: str, scopes: list[str]) -> dict[str, str]:
    secret = await client.app[AUTH].keys.create(name, scopes)  # type: ignore[index]
    return {"Authorization": f"Bearer {secret}"}


async def post_labels(client: TestClient, body: Any, headers: dict[str, str] = BOOTSTRAP) -> Any:
    resp = await client.post("/api/v1/labels", json=body, headers=headers)
    return resp.status, await resp.json()


async def test_labels_need_the_labels_scope(client: TestClient, login: Login) -> None:
    await post_batch(client, [tx("t-1")])
    body = {"transaction_id": "t-1", "label": "fraud"}
    assert (await post_labels(client, body, {}))[0] == 401
    for scopes in (["ingest"], ["read"], ["ingest", "read"]):
        status, answer = await post_labels(
            client, body, await key(client, "-".join(scopes), scopes)
        )
        assert status == 403 and answer["error"]["code"] == "forbidden", scopes
    status, answer = await post_labels(client, body, await key(client, "labeller", ["labels"]))
    assert status == 200, answer
    assert answer == {"transaction_id": "t-1", "label": "fraud", "status": "created"}
    # An analyst's session is not a labels client either: analysts label by resolving.
    csrf = await login("alice")
    resp = await client.post("/api/v1/labels", json=body, headers={"X-CSRF-Token": csrf})
    assert resp.status == 403


async def test_a_batch_answers_each_label_in_order(client: TestClient) -> None:
    await post_batch(client, [tx("a"), tx("b"), tx("c")])
    body = [
        {"transaction_id": "a", "label": "fraud", "source": "chargeback"},
        {"transaction_id": "nope", "label": "fraud"},
        {"transaction_id": "b", "label": "maybe"},
        {"transaction_id": "c", "label": "legitimate", "labelled_at": "2026-03-09T10:00:00+02:00"},
        {"transaction_id": "c", "label": "legitimate", "colour": "red"},
        {"transaction_id": "", "label": "fraud"},
        {"transaction_id": "b", "label": "fraud", "labelled_at": "yesterday"},
        {"transaction_id": "b", "label": "fraud", "labelled_at": "2026-03-09T10:00:00"},
        "fraud",
        {"label": "fraud"},
        {"transaction_id": "b", "label": "fraud", "labelled_at": "2099-01-01T00:00:00Z"},
        {"transaction_id": "b" * 129, "label": "fraud"},
        {"transaction_id": "b", "label": "fraud", "source": "a\u0007"},
    ]
    status, answer = await post_labels(client, body)
    assert status == 200
    results = answer["results"]
    assert len(results) == len(body)
    assert results[0] == {"transaction_id": "a", "label": "fraud", "status": "created"}
    assert results[1]["error"] == {
        "code": "not_found",
        "message": "No transaction nope",
        "field": "transaction_id",
    }
    assert results[2]["error"]["field"] == "label"
    assert results[3]["status"] == "created"
    assert results[4]["error"]["code"] == "unknown_field"
    assert results[4]["error"]["field"] == "colour"
    assert results[5]["error"]["field"] == "transaction_id"
    assert results[6]["error"]["field"] == "labelled_at"
    assert results[7]["error"]["field"] == "labelled_at"  # no offset: refused, not guessed
    assert results[8]["error"]["code"] == "invalid_body"
    assert results[9]["error"] == {
        "code": "missing_field",
        "message": "Missing required field: 'transaction_id'",
        "field": "transaction_id",
        "fields": ["transaction_id"],
    }
    assert results[10]["error"]["field"] == "labelled_at"  # known before it was sent: no
    assert "ahead of the server clock" in results[10]["error"]["message"]
    assert results[11]["error"]["code"] == "too_long"  # as ingest's ids
    assert results[12]["error"] == {
        "code": "invalid_text",
        "message": "'source' contains U+0007: control, bidi and surrogate characters are not "
        "allowed",
        "field": "source",
    }
    stored = await client.app[STORE].get_labels(["a", "b", "c"])  # type: ignore[index]
    assert set(stored) == {"a", "c"}
    assert stored["a"].source == "chargeback"
    assert stored["c"].labelled_at == "2026-03-09T08:00:00Z"
    assert stored["c"].source == "api:api"  # the bootstrap key's name


async def test_labelled_at_is_rfc_3339_as_a_timestamp_is(client: TestClient) -> None:
    # The ISO 8601 forms fromisoformat reads and RFC 3339 does not: refused, naming the field.
    await post_batch(client, [tx("iso")])
    others = ["20260309T100000Z", "2026-W10-1T10:00:00Z", "2026-03-09T10:00Z",
              "2026-03-09T10:00:00+0100", "2026-03-09T10:00:00,5Z"]  # fmt: skip
    status, answer = await post_labels(
        client, [{"transaction_id": "iso", "label": "fraud", "labelled_at": at} for at in others]
    )
    assert status == 200
    for at, result in zip(others, answer["results"], strict=True):
        assert result["error"]["code"] == "invalid_field", at
        assert result["error"]["field"] == "labelled_at", at
        assert "RFC 3339" in result["error"]["message"] and "±hh:mm" in result["error"]["message"]
    # RFC 3339's form, but no such day: said so, as for a transaction's timestamp.
    status, answer = await post_labels(
        client, {"transaction_id": "iso", "label": "fraud", "labelled_at": "2026-02-30T10:00:00Z"}
    )
    assert (status, answer["error"]) == (
        400,
        {
            "code": "invalid_field",
            "message": "'labelled_at': 2026-02-30 is not a date",
            "field": "labelled_at",
        },
    )
    status, answer = await post_labels(
        client,
        {"transaction_id": "iso", "label": "fraud", "labelled_at": "2026-03-09t11:00:00+01:00"},
    )
    assert (status, answer["status"]) == (200, "created")
    stored = await client.app[STORE].get_labels(["iso"])  # type: ignore[index]
    assert stored["iso"].labelled_at == "2026-03-09T10:00:00Z"


async def test_a_label_known_before_its_transaction_is_refused(client: TestClient) -> None:
    # Merchant risk files a label under the day of its labelled_at: one from before the
    # payment (a zero date, the transaction's own date mixed up) counted for nothing.
    await post_batch(client, [tx("early"), tx("same")])
    status, answer = await post_labels(
        client, {"transaction_id": "early", "label": "fraud", "labelled_at": "1970-01-01T00:00:00Z"}
    )
    assert status == 400, answer
    error = answer["error"]
    assert (error["code"], error["field"]) == ("invalid_field", "labelled_at")
    assert "1970-01-01T00:00:00Z" in error["message"]
    assert "before the transaction's timestamp (2026-03-02T14:00:00Z)" in error["message"]
    status, answer = await post_labels(
        client,
        [
            {
                "transaction_id": "early",
                "label": "fraud",
                "labelled_at": "2026-03-02T14:59:59+01:00",
            },
            {
                "transaction_id": "same",
                "label": "fraud",
                "labelled_at": "2026-03-02T15:00:00+01:00",
            },
        ],
    )
    assert answer["results"][0]["error"]["field"] == "labelled_at"  # a second early
    assert answer["results"][1]["status"] == "created"  # the payment's own instant is fine
    stored = await client.app[STORE].get_labels(["early", "same"])  # type: ignore[index]
    assert set(stored) == {"same"}


async def test_a_default_labelled_at_is_never_before_the_transaction(client: TestClient) -> None:
    # Ingest takes a timestamp up to 5 minutes ahead of the server's clock (a sender's clock
    # running fast); "now", the default labelled_at, is then before it: the transaction's
    # timestamp is taken instead of refusing a label that named no time.
    ahead = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(minutes=3)
    await post_batch(client, [tx("fast", at=ahead)])
    status, answer = await post_labels(client, {"transaction_id": "fast", "label": "fraud"})
    assert (status, answer["status"]) == (200, "created")
    stored = await client.app[STORE].get_labels(["fast"])  # type: ignore[index]
    assert stored["fast"].labelled_at == ahead.isoformat().replace("+00:00", "Z")


async def test_labels_run_together_or_uploaded_as_a_form_say_how_to_send_them(
    client: TestClient,
) -> None:
    await post_batch(client, [tx("t-1"), tx("t-2")])
    lines = [
        json.dumps({"transaction_id": "t-1", "label": "fraud"}),
        json.dumps({"transaction_id": "t-2", "label": "fraud"}),
    ]
    ndjson = {**BOOTSTRAP, "Content-Type": "application/x-ndjson"}
    resp = await client.post("/api/v1/labels", data="".join(lines), headers=ndjson)
    [entry] = (await resp.json())["results"]
    assert entry["error"]["code"] == "malformed_json"
    assert "--data-binary @FILE" in entry["error"]["message"]
    upload = FormData()
    upload.add_field("file", "\n".join(lines) + "\n", filename="labels.ndjson")
    resp = await client.post("/api/v1/labels", data=upload, headers=BOOTSTRAP)
    assert resp.status == 415
    assert "(curl -F) is not taken" in (await resp.json())["error"]["message"]


async def test_single_label_errors_have_their_status(client: TestClient) -> None:
    status, answer = await post_labels(client, {"transaction_id": "ghost", "label": "fraud"})
    assert status == 404 and answer["error"]["code"] == "not_found"
    status, answer = await post_labels(client, {"transaction_id": "ghost"})
    assert status == 400 and answer["error"]["field"] == "label"
    assert answer["error"]["code"] == "missing_field"
    resp = await client.post(
        "/api/v1/labels", data=b"{oops", headers={**BOOTSTRAP, "Content-Type": "application/json"}
    )
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "malformed_json"
    # The message says where it broke, and names NDJSON sent as JSON, as ingest's does.
    message = (await resp.json())["error"]["message"]
    assert message == "Malformed JSON: object keys must be strings (byte 1)", message
    ndjson = b'{"transaction_id": "a", "label": "fraud"}\n{"transaction_id": "b", "label": "fraud"}'
    resp = await client.post(
        "/api/v1/labels", data=ndjson, headers={**BOOTSTRAP, "Content-Type": "application/json"}
    )
    error = (await resp.json())["error"]
    assert (resp.status, error["code"]) == (400, "malformed_json")
    assert error["message"].endswith(
        "; one JSON object per line is NDJSON: send it with Content-Type: application/x-ndjson"
    ), error
    assert (await post_labels(client, []))[0] == 400
    resp = await client.post("/api/v1/labels", data=b"", headers=BOOTSTRAP)
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "empty_body"


async def test_json_that_is_only_pythons_is_malformed_and_a_blank_id_invalid(
    client: TestClient,
) -> None:
    """NaN, Infinity and a number past Python's digit limit are refused as malformed JSON,
    as ingest refuses them, in words that are not Python's; an id of blanks is an invalid
    field, not a transaction the store looks for."""
    headers = {**BOOTSTRAP, "Content-Type": "application/json"}
    for body, words in (
        (b'{"transaction_id": "a", "label": NaN}', "invalid character (byte 33)"),
        (b'{"transaction_id": "a", "label": -Infinity}', "invalid character (byte 34)"),
        (b'{"transaction_id": "a", "label": ' + b"7" * 5000 + b"}", "a number of 5,000 digits"),
    ):
        resp = await client.post("/api/v1/labels", data=body, headers=headers)
        error = (await resp.json())["error"]
        assert (resp.status, error["code"]) == (400, "malformed_json"), error
        assert words in error["message"] and "sys." not in error["message"], error
    status, answer = await post_labels(client, {"transaction_id": " ", "label": "fraud"})
    assert (status, answer["error"]["code"]) == (400, "invalid_field"), answer
    assert answer["error"]["field"] == "transaction_id"


async def _both_answers(
    client: TestClient, transactions: bytes, labels: bytes
) -> list[tuple[int, dict[str, Any]]]:
    answers = []
    for path, body in (("/api/v1/transactions", transactions), ("/api/v1/labels", labels)):
        resp = await client.post(path, data=io.BytesIO(body), headers=BOOTSTRAP)
        answers.append((resp.status, (await resp.json())["error"]))
    return answers


async def test_the_bulk_endpoints_answer_a_problem_alike(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    # Integrators post transactions and labels with one client: the same problem gets the
    # same status, code and error keys from both, in words naming what was sent.
    client = await aiohttp_client(
        create_app(make_settings(tmp_path, max_batch_records=2, max_body_bytes=1024 * 1024))
    )
    label = b'{"transaction_id": "t", "label": "fraud"}'
    deep = b'{"x": ' + b"[" * 40 + b"]" * 40 + b"}"
    padded = b"[" + b" " * (1024 * 1024) + b"]"
    problems = {
        "too many": (
            json.dumps([tx(f"m-{i}") for i in range(3)]).encode(),
            b"[" + b",".join([label] * 10_001) + b"]",
        ),
        "body too large": (padded, padded),
        "missing fields": (b"{}", b"{}"),
        "too deep": (deep, deep),
        "not UTF-8": (b'{"id": "\xff"}', b'{"transaction_id": "\xff"}'),
    }
    seen = {}
    for problem, (transactions, labels) in problems.items():
        (t_status, t_error), (l_status, l_error) = await _both_answers(client, transactions, labels)
        assert (t_status, t_error["code"], set(t_error)) == (
            l_status,
            l_error["code"],
            set(l_error),
        ), (problem, t_error, l_error)
        seen[problem] = (t_status, t_error, l_error)
    status, t_error, l_error = seen["too many"]
    assert (status, t_error["code"], t_error["limit"], l_error["limit"]) == (
        413,
        "too_many_records",
        2,
        10_000,
    )
    assert t_error["message"].startswith("3 transactions in one request; at most 2 are taken")
    assert l_error["message"] == (
        "10,001 labels in one request; at most 10,000 are taken: split the batch into "
        "requests of 10,000 or fewer. Nothing of this request was accepted."
    )
    status, t_error, l_error = seen["body too large"]
    assert (status, t_error["limit"], l_error["limit"]) == (413, 1024 * 1024, 1024 * 1024)
    assert "send fewer transactions per request" in t_error["message"]
    assert "send fewer labels per request" in l_error["message"]
    assert seen["missing fields"][2]["fields"] == ["transaction_id", "label"]
    assert seen["too deep"][2]["message"] == "JSON nested deeper than 32 levels"
    assert seen["not UTF-8"][2]["message"].startswith("Malformed JSON: not UTF-8")


async def test_malformed_json_is_said_in_ingests_words(client: TestClient) -> None:
    # One client posts both: labels said "Expecting ',' delimiter: line 1 column 61 (char
    # 60)" (Python's json) where ingest says "invalid character (byte 60)".
    headers = {**BOOTSTRAP, "Content-Type": "application/json"}
    for body in (
        b"{oops",
        b'{"transaction_id": "t-1", "label": "fraud"} and more',
        b'{"transaction_id": "t-1", "label": NaN}',
        b'[{"transaction_id": "t-1", "label": "fraud"},]',
    ):
        answers = []
        for path in ("/api/v1/transactions", "/api/v1/labels"):
            resp = await client.post(path, data=body, headers=headers)
            answers.append((resp.status, (await resp.json())["error"]))
        [(t_status, t_error), (l_status, l_error)] = answers
        assert t_error["code"] == "malformed_json", t_error
        assert (l_status, l_error) == (t_status, t_error), body
    # And a line of NDJSON that is not JSON, in its entry.
    ndjson = {**BOOTSTRAP, "Content-Type": "application/x-ndjson"}
    entries = []
    for path in ("/api/v1/transactions", "/api/v1/labels"):
        resp = await client.post(path, data=b'{"id": "x"}\n{"label": fraud}\n', headers=ndjson)
        entries.append((await resp.json())["results"][1])
    assert entries[0]["error"]["code"] == "malformed_json", entries
    assert entries[1] == entries[0]


async def test_labels_take_ndjson_as_ingest_does(client: TestClient) -> None:
    # A client that posts its transactions as NDJSON posts its labels the same way: each
    # line a label, a line that is not JSON refused as its own entry, the others taken.
    await post_batch(client, [tx("nd-1"), tx("nd-2")])
    ndjson = {**BOOTSTRAP, "Content-Type": "application/x-ndjson"}
    body = (b'{"transaction_id": "nd-1", "label": "fraud"}\r\n'
            b'{"transaction_id": "nd-2", "label": \n'
            b"\n"
            b'{"transaction_id": "nd-2", "label": "legitimate"}\n')  # fmt: skip
    resp = await client.post("/api/v1/labels", data=body, headers=ndjson)
    assert resp.status == 200
    first, broken, last = (await resp.json())["results"]
    assert first == {"transaction_id": "nd-1", "label": "fraud", "status": "created"}
    assert broken["error"]["code"] == "malformed_json", broken
    assert broken["error"]["message"] == "Malformed JSON: Input data was truncated", broken
    assert last == {"transaction_id": "nd-2", "label": "legitimate", "status": "created"}
    # A JSON array sent as NDJSON: refused line by line, saying what to send, as ingest does.
    for path, record in (("/api/v1/transactions", tx("nd-3")), ("/api/v1/labels", first)):
        resp = await client.post(path, data=json.dumps([record]).encode(), headers=ndjson)
        assert resp.status == 200
        (entry,) = (await resp.json())["results"]
        assert entry["error"]["code"] == "invalid_body", (path, entry)
        assert entry["error"]["message"].endswith(
            "; a JSON array is not NDJSON: send it with Content-Type: application/json"
        ), (path, entry)
    stored = await client.app[STORE].get_labels(["nd-1", "nd-2"])  # type: ignore[index]
    assert {k: v.label for k, v in stored.items()} == {"nd-1": "fraud", "nd-2": "legitimate"}


async def test_a_label_naming_a_key_twice_is_refused(client: TestClient) -> None:
    # As a transaction is: which of the two a parser keeps is not something to rely on.
    await post_batch(client, [tx("d-1"), tx("d-2")])
    body = (b'[{"transaction_id": "d-1", "label": "fraud", "transaction_id": "d-2"},'
            b' {"transaction_id": "d-2", "label": "legitimate"}]')  # fmt: skip
    resp = await client.post("/api/v1/labels", data=body, headers=BOOTSTRAP)
    assert resp.status == 200
    first, second = (await resp.json())["results"]
    assert first["error"] == {
        "code": "duplicate_key",
        "message": "Key 'transaction_id' appears more than once",
        "field": "transaction_id",
    }
    assert second["status"] == "created"
    stored = await client.app[STORE].get_labels(["d-1", "d-2"])  # type: ignore[index]
    assert {k: v.label for k, v in stored.items()} == {"d-2": "legitimate"}


async def test_re_sending_labels_is_idempotent(client: TestClient) -> None:
    await post_batch(client, [tx("r-1"), tx("r-2")])
    body = [
        {"transaction_id": "r-1", "label": "fraud"},
        {"transaction_id": "r-2", "label": "legitimate"},
    ]
    first = await post_labels(client, body)
    again = await post_labels(client, body)
    assert [r["status"] for r in first[1]["results"]] == ["created", "created"]
    assert [r["status"] for r in again[1]["results"]] == ["unchanged", "unchanged"]
    trainer = client.app[TRAINER]  # type: ignore[index]
    await trainer.idle.wait()
    # Each transaction's inputs were learnt once, on the first label: a re-send adds nothing.
    assert trainer.status.labels_learnt == 2
    changed = await post_labels(client, {"transaction_id": "r-2", "label": "fraud"})
    assert changed[1]["status"] == "updated"
    # A changed label is a correction (a chargeback after "legitimate"): learnt too, from
    # the inputs the store kept, since the memory let go of them at the first label.
    await trainer.idle.wait()
    assert trainer.status.labels_learnt == 3
    assert trainer.status.labels_from_store == 1


async def test_an_analysts_resolution_becomes_a_label_the_model_learns(
    client: TestClient, login: Login
) -> None:
    csrf = await login("alice")
    alert_id = await raise_alert(client)
    alert = (await (await client.get(f"/api/v1/alerts/{alert_id}", headers=BOOTSTRAP)).json())[
        "alert"
    ]
    resp = await client.post(
        f"/api/v1/alerts/{alert_id}/resolve",
        json={"disposition": "fraud"},
        headers={"X-CSRF-Token": csrf},
    )
    assert resp.status == 200
    tx_id = alert["transaction_id"]
    stored = await client.app[STORE].get_labels([tx_id])  # type: ignore[index]
    assert stored[tx_id].label == "fraud" and stored[tx_id].source == "analyst:alice"
    trainer = client.app[TRAINER]  # type: ignore[index]
    await trainer.idle.wait()
    assert trainer.status.labels_learnt == 1
    # The API sending the same label afterwards is a re-send.
    status, answer = await post_labels(client, {"transaction_id": tx_id, "label": "fraud"})
    assert (status, answer["status"]) == (200, "unchanged")


async def test_a_resolution_agreeing_with_an_earlier_label_is_not_learnt_twice(
    client: TestClient, login: Login
) -> None:
    csrf = await login("alice")
    alert_id = await raise_alert(client)
    resp = await client.get(f"/api/v1/alerts/{alert_id}", headers=BOOTSTRAP)
    alert = (await resp.json())["alert"]
    tx_id, merchant = alert["transaction_id"], alert["transaction"]["merchant_id"]
    # The chargeback came first; then the analyst, agreeing, resolves the alert as fraud.
    status, answer = await post_labels(client, {"transaction_id": tx_id, "label": "fraud"})
    assert (status, answer["status"]) == (200, "created")
    trainer = client.app[TRAINER]  # type: ignore[index]
    await trainer.idle.wait()
    resp = await client.post(
        f"/api/v1/alerts/{alert_id}/resolve",
        json={"disposition": "fraud"},
        headers={"X-CSRF-Token": csrf},
    )
    assert resp.status == 200
    await trainer.idle.wait()
    # The same label again, only from someone else: a re-send, as it is through the API.
    assert trainer.status.labels_learnt == 1
    assert trainer.status.labels_from_store == 0
    buckets = client.app[DETECTOR].featurizer.merchants[merchant].labels  # type: ignore[index]
    assert (sum(buckets[1::3]), sum(buckets[2::3])) == (1.0, 1.0)


class GatedLogit(OnlineLogit):
    """A real learner that waits at its first example until the test lets it go, and
    records which thread learnt."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()
        self.threads: set[int] = set()

    def learn_active(self, index: Any, values: Any, is_fraud: bool, weight: float = 1.0) -> None:
        # Every label is learnt here (`learn_one` too calls it).
        self.threads.add(threading.get_ident())
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(30), "the test never released the learner"
        super().learn_active(index, values, is_fraud, weight)


async def test_training_runs_off_the_event_loop_which_keeps_answering(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, model_min_labels=10, model_min_frauds=2)
    app = create_app(settings)
    learner = GatedLogit()
    app[TRAINER].learner = learner
    client: TestClient = await aiohttp_client(app)
    records = [tx(f"g-{i}", account=f"acct-{i % 7}", amount=1.0 + i) for i in range(2000)]
    for start in range(0, len(records), 500):
        await post_batch(client, records[start : start + 500])
    labels = [{"transaction_id": r["id"], "label": "fraud" if i % 5 == 0 else "legitimate"}
              for i, r in enumerate(records)]  # fmt: skip
    status, _ = await post_labels(client, labels)
    assert status == 200
    trainer = app[TRAINER]
    assert await asyncio.to_thread(learner.entered.wait, 30)

    # The learner is stopped mid-batch on its thread; the loop still scores and answers.
    assert not trainer.idle.is_set()
    verdicts = await post_batch(client, [tx("during-1"), tx("during-2")])
    assert [v["transaction_id"] for v in verdicts] == ["during-1", "during-2"]
    assert (await client.get("/healthz")).status == 200
    assert app[DETECTOR].model.predictor is None  # nothing swapped in half-trained
    assert trainer.status.labels_learnt == 0

    learner.release.set()
    await trainer.idle.wait()
    assert learner.threads and threading.get_ident() not in learner.threads
    assert trainer.status.last_round_thread in learner.threads
    assert trainer.status.labels_learnt == 2000
    predictor = app[DETECTOR].model.predictor
    assert predictor is not None and predictor.labels_seen == 2000
    # Scored by the model from now on: still a verdict in [0, 1].
    [after] = await post_batch(client, [tx("after", account="acct-1", amount=3.0)])
    assert 0.0 <= after["score"] <= 1.0


async def test_the_model_survives_a_restart(aiohttp_client: Any, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, model_min_labels=10, model_min_frauds=2)
    client: TestClient = await aiohttp_client(create_app(settings))
    records = [tx(f"p-{i}", account=f"acct-{i % 5}", amount=2.0 + i) for i in range(60)]
    await post_batch(client, records)
    labels = [{"transaction_id": r["id"], "label": "fraud" if i % 4 == 0 else "legitimate"}
              for i, r in enumerate(records)]  # fmt: skip
    await post_labels(client, labels)
    trainer = client.app[TRAINER]  # type: ignore[index]
    await trainer.idle.wait()
    before = client.app[DETECTOR].model.predictor  # type: ignore[index]
    assert before is not None
    await client.close()

    saved = load_learner(tmp_path / "model.json")
    assert saved is not None and saved.count == 60
    again: TestClient = await aiohttp_client(create_app(settings))
    after = again.app[DETECTOR].model.predictor  # type: ignore[index]
    assert after == before
    assert (await again.get("/api/v1/scorecard", headers=BOOTSTRAP)).status == 200


async def test_labels_of_transactions_the_model_scored_calibrate_it(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    # The trainer's path: the logit a transaction was scored with is kept with its inputs,
    # and its label moves the calibration before the model learns it.
    settings = make_settings(tmp_path, model_min_labels=10, model_min_frauds=2)
    client: TestClient = await aiohttp_client(create_app(settings))
    first = [tx(f"c-{i}", account=f"acct-{i % 5}", amount=2.0 + i) for i in range(60)]
    await post_batch(client, first)
    await post_labels(
        client,
        [
            {"transaction_id": r["id"], "label": "fraud" if i % 4 == 0 else "legitimate"}
            for i, r in enumerate(first)
        ],
    )
    trainer = client.app[TRAINER]  # type: ignore[index]
    await trainer.idle.wait()
    model = client.app[DETECTOR].model  # type: ignore[index]
    assert model.predictor is not None
    assert (model.predictor.cal_a, model.predictor.cal_b) == (1.0, 0.0)  # none scored by it
    scored = [tx(f"s-{i}", account=f"acct-{i % 5}", amount=3.0 + i) for i in range(40)]
    await post_batch(client, scored)
    await post_labels(client, [{"transaction_id": r["id"], "label": "fraud"} for r in scored])
    await trainer.idle.wait()
    predictor = model.predictor
    assert predictor.cal_b > 0.0  # frauds it scored below certainty: the offset rose
    resp = await client.get("/api/v1/scorecard", headers=BOOTSTRAP)
    calibration = (await resp.json())["model"]["calibration"]
    assert calibration == {"slope": round(predictor.cal_a, 4), "offset": round(predictor.cal_b, 4)}


async def test_without_the_model_setting_labels_are_still_stored(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client: TestClient = await aiohttp_client(create_app(make_settings(tmp_path, model=False)))
    await post_batch(client, [tx("n-1")])
    assert TRAINER not in client.app
    status, answer = await post_labels(client, {"transaction_id": "n-1", "label": "fraud"})
    assert (status, answer["status"]) == (200, "created")
    assert not (tmp_path / "model.json").exists()


async def _until(condition: Any, polls: int = 300) -> None:
    """Poll a condition the server reaches by itself (the simulator runs on wall time)."""
    for _ in range(polls):
        if await condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the condition was never met")


async def test_simulator_ground_truth_becomes_labels_only_when_enabled(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    from server.app import SIMULATOR_FEED

    on = make_settings(
        tmp_path / "on", simulator=True, rate=200.0, simulator_labels=True,
        simulator_label_delay=0.2, fraud_rate=0.2,
    )  # fmt: skip
    client: TestClient = await aiohttp_client(create_app(on))
    app = client.app
    feed = app[SIMULATOR_FEED]  # type: ignore[index]
    trainer = app[TRAINER]  # type: ignore[index]

    async def learnt() -> bool:
        return bool(trainer.status.labels_learnt > 0)

    await _until(learnt)
    ids = [f"{feed.simulator.id_prefix}{n}" for n in range(1, feed.produced + 1)]
    stored = await app[STORE].get_labels(ids)  # type: ignore[index]
    assert stored
    assert {label.source for label in stored.values()} == {"simulator"}
    assert any(label.scenario for label in stored.values() if label.label == "fraud")
    await client.close()

    off = make_settings(tmp_path / "off", simulator=True, rate=200.0, fraud_rate=0.2)
    client = await aiohttp_client(create_app(off))
    app = client.app
    card = app[SCORECARD]  # type: ignore[index]

    async def counted() -> bool:
        return bool(card.counted > 50)

    # The scorecard gets the ground truth either way; the model never does.
    await _until(counted)
    feed = app[SIMULATOR_FEED]  # type: ignore[index]
    ids = [f"{feed.simulator.id_prefix}{n}" for n in range(1, feed.produced + 1)]
    assert await app[STORE].get_labels(ids) == {}  # type: ignore[index]
    assert app[TRAINER].status.labels_learnt == 0  # type: ignore[index]
    assert not feed.pending_labels


async def test_a_fresh_simulated_server_learns_its_recent_past_as_it_happened(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    # The demo's warm-up: the stream's last seconds scored first, each label learnt at the
    # event time it became due (30 s after its transaction), not all at once when the
    # warm-up got to the end: the model then is the one a server running all along would
    # have, and it is in use when the stream goes live.
    from server.app import SIMULATOR_FEED

    settings = make_settings(
        tmp_path, simulator=True, rate=50.0, fraud_rate=0.2, simulator_labels=True,
        simulator_history=60.0, model_min_labels=100, model_min_frauds=5,
    )  # fmt: skip
    started = dt.datetime.now(dt.UTC)
    client: TestClient = await aiohttp_client(create_app(settings))
    app = client.app
    feed = app[SIMULATOR_FEED]  # type: ignore[index]
    await asyncio.wait_for(feed.live.wait(), 120)
    assert app[TRAINER].slot.predictor is not None  # type: ignore[index]
    store = app[STORE]  # type: ignore[index]
    labels = await store.recent_labels(100_000)
    assert labels and {label.source for label in labels} == {"simulator"}
    times = await store.event_times([label.transaction_id for label in labels])
    known = {
        label.transaction_id: dt.datetime.fromisoformat(label.labelled_at).timestamp()
        for label in labels
    }
    late = [at - times[tx_id] / 1e6 for tx_id, at in known.items()]
    # Due 30 s after the transaction, handed out at the end of its 10 s step.
    assert all(30 <= delay <= 30 + 10 + 1e-3 for delay in late), (min(late), max(late))
    # The past: transactions from before the server started, labelled back then.
    assert min(times.values()) / 1e6 < started.timestamp() - 50
    assert min(known.values()) < started.timestamp() - 10
    await client.close()


async def test_a_warm_up_whose_labels_fail_still_goes_live(
    aiohttp_client: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The warm-up is the demo's nicety: a store that refuses the labels (here a trigger on
    # the real file) costs the labels, logged, and the stream still goes live.
    from server.app import SIMULATOR_FEED
    from server.store.sqlite import SqliteStore

    settings = make_settings(
        tmp_path, simulator=True, rate=50.0, simulator_labels=True, simulator_history=30.0
    )
    store = SqliteStore(settings.db_path)
    await store.start(lambda _events: None)
    await store.close()
    with contextlib.closing(sqlite3.connect(settings.db_path)) as db:
        db.execute(
            "CREATE TRIGGER no_labels BEFORE INSERT ON labels "
            "BEGIN SELECT RAISE(ABORT, 'labels refused'); END"
        )
        db.commit()
    client: TestClient = await aiohttp_client(create_app(settings))
    feed = client.app[SIMULATOR_FEED]  # type: ignore[index]
    await asyncio.wait_for(feed.live.wait(), 120)
    produced = feed.produced

    async def live() -> bool:
        return bool(feed.produced > produced)

    await _until(live, polls=100)
    assert "simulator labels failed" in caplog.text or "simulator labels not stored" in caplog.text
    await client.close()


async def test_labels_teach_the_live_detector_which_merchants_are_compromised(
    client: TestClient,
) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    skimmed = [
        tx(f"sk-{i}", f"acct-sk-{i}", 40.0, now - dt.timedelta(hours=2, minutes=i), "m-skim")
        for i in range(4)
    ]
    await post_batch(client, skimmed)

    def probe(n: int) -> dict[str, Any]:
        return tx(f"probe-{n}", f"acct-new-{n}", 35.0, now, "m-skim")

    before = (await post_batch(client, [probe(1)]))[0]
    assert "compromised_merchant" not in {r["code"] for r in before["reasons"]}
    # Chargebacks arrive: every card used at m-skim turned out stolen.
    labels = [{"transaction_id": t["id"], "label": "fraud"} for t in skimmed]
    status, answer = await post_labels(client, labels)
    assert status == 200 and all(r["status"] == "created" for r in answer["results"])
    after = (await post_batch(client, [probe(2)]))[0]
    fired = {r["code"]: r for r in after["reasons"]}
    assert "compromised_merchant" in fired, after
    assert "m-skim" in fired["compromised_merchant"]["message"]
    # And the amount's fraud rate (a model input): four frauds at 40.00, none known before.
    amounts = client.app[DETECTOR].featurizer.amounts  # type: ignore[index]
    assert amounts[amount_bucket(40.0)][:2] == pytest.approx([4.0, 4.0])
    # And the hour's: each fraud at the hour of day it was made (timestamps in UTC here).
    hours = client.app[DETECTOR].featurizer.hours  # type: ignore[index]
    made = Counter(dt.datetime.fromisoformat(t["timestamp"]).hour for t in skimmed)
    assert {h: c[:2] for h, c in hours.items()} == {h: [n, n] for h, n in made.items()}


async def test_a_label_overturned_later_no_longer_counts_against_the_merchant(
    client: TestClient,
) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    sales = [
        tx(f"cb-{i}", f"acct-cb-{i}", 40.0, now - dt.timedelta(hours=2, minutes=i), "m-cb")
        for i in range(4)
    ]
    await post_batch(client, sales)
    chargebacks = [{"transaction_id": t["id"], "label": "fraud"} for t in sales]
    await post_labels(client, chargebacks)
    flagged = (await post_batch(client, [tx("cb-p1", "acct-p1", 35.0, now, "m-cb")]))[0]
    assert "compromised_merchant" in {r["code"] for r in flagged["reasons"]}
    # The merchant won every dispute: the chargebacks were wrong, and are corrected.
    reversed_ = [{"transaction_id": t["id"], "label": "legitimate"} for t in sales]
    status, answer = await post_labels(client, reversed_)
    assert status == 200 and {r["status"] for r in answer["results"]} == {"updated"}
    after = (await post_batch(client, [tx("cb-p2", "acct-p2", 35.0, now, "m-cb")]))[0]
    # It said "Merchant m-cb had 4 confirmed frauds in 30 d, 50.0% of its (labelled) transactions".
    assert "compromised_merchant" not in {r["code"] for r in after["reasons"]}, after
    featurizer = client.app[DETECTOR].featurizer  # type: ignore[index]
    buckets = featurizer.merchants["m-cb"].labels
    assert (sum(buckets[1::3]), sum(buckets[2::3])) == (4.0, 0.0)  # four labels, no fraud
    assert featurizer.amounts[amount_bucket(40.0)][:2] == pytest.approx([4.0, 0.0], abs=1e-6)
    assert sum(c[0] for c in featurizer.hours.values()) == pytest.approx(4.0, abs=1e-6)
    assert sum(c[1] for c in featurizer.hours.values()) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    ("sent", "counted"),
    [
        (["fraud", "legitimate"], (1, 0)),
        (["fraud", "legitimate", "fraud"], (1, 1)),
        (["legitimate", "fraud", "fraud"], (1, 1)),
    ],
)
async def test_labels_for_one_transaction_in_one_request_count_as_the_last(
    client: TestClient, sent: list[str], counted: tuple[int, int]
) -> None:
    # The store keeps the last label a request gives a transaction, but the model learnt
    # the first one (and dropped the rest), and merchant risk took back, for every one of
    # them, the label only the last had replaced: [fraud, legitimate, fraud] left the
    # merchant with two frauds out of one label and the model with whatever came first.
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    await post_batch(client, [tx("twice", "acct-twice", 40.0, now - dt.timedelta(hours=1), "m-tw")])
    status, answer = await post_labels(
        client, [{"transaction_id": "twice", "label": label} for label in sent]
    )
    assert status == 200, answer
    trainer = client.app[TRAINER]  # type: ignore[index]
    await trainer.idle.wait()
    learner = trainer.learner
    assert (learner.count, learner.frauds) == counted
    store = client.app[STORE]  # type: ignore[index]
    stored = await store.get_labels(["twice"])
    assert stored["twice"].label == sent[-1]
    buckets = client.app[DETECTOR].featurizer.merchants["m-tw"].labels  # type: ignore[index]
    assert (sum(buckets[1::3]), sum(buckets[2::3])) == (1.0, float(counted[1]))


def test_net_changes_takes_back_what_the_transaction_had_before_the_request() -> None:
    from server.learning import net_changes
    from server.store.base import Label, LabelOutcome

    def lab(tx_id: str, value: str, at: str) -> Label:
        return Label(transaction_id=tx_id, label=value, source="api", labelled_at=at)  # type: ignore[arg-type]

    labels = [
        lab("a", "fraud", "t1"),  # a was fraud since t0: a re-send
        lab("b", "fraud", "t1"),  # b was legitimate since t0
        lab("a", "legitimate", "t2"),
        lab("b", "legitimate", "t2"),  # and back: nothing changed
        lab("gone", "fraud", "t1"),
    ]
    outcomes = [
        LabelOutcome("unchanged", "acct"),
        LabelOutcome("updated", "acct", ("legitimate", "t0")),
        LabelOutcome("updated", "acct", ("fraud", "t0")),
        LabelOutcome("updated", "acct", ("fraud", "t1")),
        LabelOutcome("not_found", None),
    ]
    new, replaced = net_changes(labels, outcomes)
    assert [(x.transaction_id, x.label, x.labelled_at) for x in new] == [("a", "legitimate", "t2")]
    assert replaced == {"a": ("fraud", "t0")}


async def test_a_restarted_simulator_feed_is_stored_at_once(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    # A restart used to number the simulator's ids from 1 again: each one was refused as a
    # conflict with the previous run's, and the demo stayed silent for as long as it had run.
    from server.app import SIMULATOR_FEED

    settings = make_settings(tmp_path, simulator=True, rate=200.0)

    async def first_50_stored() -> set[str]:
        client: TestClient = await aiohttp_client(create_app(settings))
        app = client.app
        feed = app[SIMULATOR_FEED]  # type: ignore[index]

        async def produced() -> bool:
            return bool(feed.produced >= 50)

        await _until(produced)
        ids = [f"{feed.simulator.id_prefix}{n}" for n in range(1, 51)]

        async def stored() -> bool:
            found = await app[STORE].known_transactions(ids)  # type: ignore[index]
            return len(found.rows) == len(ids)

        await _until(stored)
        await client.close()
        return set(ids)

    first, second = await first_50_stored(), await first_50_stored()
    assert not first & second


async def test_the_scorecard_survives_a_restart(aiohttp_client: Any, tmp_path: Path) -> None:
    # It lived in memory only: after a restart precision and recall were gone until new
    # labels came. Now it is rebuilt from the stored labels and verdicts.
    from tests.conftest import card_testing

    settings = make_settings(tmp_path, model=False)
    client: TestClient = await aiohttp_client(create_app(settings))
    records = card_testing("ct", "acct-victim") + [
        tx(f"ok-{i}", account="acct-ok") for i in range(6)
    ]
    verdicts = await post_batch(client, records)
    alerted_frauds = sum(v["decision"] != "allow" for v in verdicts[:4])
    labels = [{"transaction_id": r["id"], "label": "fraud" if r["id"].startswith("ct") else
               "legitimate"} for r in records]  # fmt: skip
    await post_labels(client, labels)
    before = client.app[SCORECARD].snapshot()  # type: ignore[index]
    assert before is not None and before["labelled"] == len(records)
    assert before["overall"]["alerted_frauds"] == alerted_frauds > 0
    await client.close()

    again: TestClient = await aiohttp_client(create_app(settings))
    after = again.app[SCORECARD].snapshot()  # type: ignore[index]
    assert after == before
    # New labels count on top of the rebuilt ones, and a re-sent one is not counted twice.
    await post_labels(again, labels[:1])
    assert again.app[SCORECARD].snapshot() == before  # type: ignore[index]


async def test_a_corrected_label_moves_the_live_scorecard_as_a_restart_would(
    aiohttp_client: Any, client: TestClient, settings: Settings, login: Login
) -> None:
    # A label replaced by another (a chargeback reversed, an analyst overruled) went on
    # counting in the live scorecard as it first was, until a restart rebuilt it from the
    # stored (latest) labels. Now the correction moves it at once, to what a restart finds.
    from tests.conftest import T0, card_testing

    csrf = await login("alice")
    records = [
        *card_testing("ct", "acct-victim"),
        *card_testing("cu", "acct-other", at=T0 + dt.timedelta(hours=1)),
        *(tx(f"ok-{i}", account="acct-ok") for i in range(6)),
    ]
    verdicts = {v["transaction_id"]: v for v in await post_batch(client, records)}
    assert verdicts["ct-2"]["alert_id"] and verdicts["cu-2"]["alert_id"]
    assert not verdicts["ct-0"]["alert_id"]
    labels = [{"transaction_id": r["id"], "label": "legitimate" if r["id"].startswith("ok")
               else "fraud"} for r in records if r["id"] != "cu-2"]  # fmt: skip
    status, _ = await post_labels(client, labels)
    assert status == 200
    resp = await client.post(
        f"/api/v1/alerts/{verdicts['cu-2']['alert_id']}/resolve",
        json={"disposition": "fraud"},
        headers={"X-CSRF-Token": csrf},
    )
    assert resp.status == 200
    before = client.app[SCORECARD].snapshot()  # type: ignore[index]
    assert before is not None and before["overall"]["frauds"] == 8

    corrections = [
        {"transaction_id": "ct-0", "label": "legitimate"},  # its episode's first fraud
        {"transaction_id": "cu-2", "label": "legitimate"},  # the analyst's, overruled
        {"transaction_id": "ok-0", "label": "fraud"},  # a chargeback after all
    ]
    status, answer = await post_labels(client, corrections)
    assert [r["status"] for r in answer["results"]] == ["updated"] * 3, answer
    resp = await client.get("/api/v1/scorecard", headers=BOOTSTRAP)
    live = (await resp.json())["scorecard"]
    assert live["labelled"] == len(records)
    assert live["overall"]["frauds"] == 7
    await client.close()

    again: TestClient = await aiohttp_client(create_app(settings))
    resp = await again.get("/api/v1/scorecard", headers=BOOTSTRAP)
    assert (await resp.json())["scorecard"] == live


async def test_a_corrected_fraud_label_stops_counting_in_the_model(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    # An analyst's mis-click reached the model as a fraud; corrected to legitimate, the
    # model kept counting it as one (and the transaction twice in its statistics). Its
    # `frauds` is what readiness (`model_min_frauds`) and "learned from" go by.
    settings = make_settings(tmp_path, model_min_labels=10, model_min_frauds=2)
    client: TestClient = await aiohttp_client(create_app(settings))
    records = [tx(f"fix-{i}", account=f"acct-{i % 5}", amount=2.0 + i) for i in range(40)]
    await post_batch(client, records)
    labels = [{"transaction_id": r["id"], "label": "fraud" if i % 4 == 0 else "legitimate"}
              for i, r in enumerate(records)]  # fmt: skip
    await post_labels(client, labels)
    trainer = client.app[TRAINER]  # type: ignore[index]
    await trainer.idle.wait()
    learner = trainer.learner
    assert (learner.count, learner.frauds) == (40, 10)
    assert trainer.status.model_version == 40
    sums = list(learner.sums)

    status, answer = await post_labels(client, {"transaction_id": "fix-0", "label": "legitimate"})
    assert (status, answer["status"]) == (200, "updated")
    await trainer.idle.wait()
    assert (learner.count, learner.frauds) == (40, 9)
    assert learner.sums == pytest.approx(sums, rel=1e-9)  # the transaction counted once
    predictor = client.app[DETECTOR].model.predictor  # type: ignore[index]
    assert predictor is not None and (predictor.labels_seen, predictor.frauds_seen) == (40, 9)
    resp = await client.get("/api/v1/scorecard", headers=BOOTSTRAP)
    model = (await resp.json())["model"]
    assert (model["labels_learnt"], model["labels_taken_back"]) == (41, 1)
    # Another model is in use, though it counts as many labels: its version moves.
    assert model["model_version"] == 41 and predictor.version == 41

    # Sent again: unchanged, so neither learnt nor taken back a second time.
    status, answer = await post_labels(client, {"transaction_id": "fix-0", "label": "legitimate"})
    assert answer["status"] == "unchanged"
    await trainer.idle.wait()
    assert (learner.count, learner.frauds, trainer.status.labels_taken_back) == (40, 9, 1)
    await client.close()
    saved = load_learner(tmp_path / "model.json")
    assert saved is not None and (saved.count, saved.frauds) == (40, 9)


async def test_an_analyst_overruling_a_label_replaces_it_in_the_model(
    client: TestClient, login: Login
) -> None:
    # The other way in: a resolution that replaces the label the labels API gave.
    from tests.conftest import card_testing

    csrf = await login("alice")
    verdicts = await post_batch(client, card_testing("ov", "acct-ov"))
    alerted = next(v for v in verdicts if v["alert_id"])
    status, _ = await post_labels(
        client, {"transaction_id": alerted["transaction_id"], "label": "legitimate"}
    )
    assert status == 200
    trainer = client.app[TRAINER]  # type: ignore[index]
    await trainer.idle.wait()
    learner = trainer.learner
    count, frauds = learner.count, learner.frauds
    resp = await client.post(
        f"/api/v1/alerts/{alerted['alert_id']}/resolve",
        json={"disposition": "fraud"},
        headers={"X-CSRF-Token": csrf},
    )
    assert resp.status == 200
    await trainer.idle.wait()
    assert (learner.count, learner.frauds) == (count, frauds + 1)
    assert trainer.status.labels_taken_back == 1


async def test_a_label_after_the_memory_let_go_is_learnt_from_the_store(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    # A chargeback weeks later: the detector keeps the inputs of only the last 5
    # transactions (model_memory), the store keeps everyone's.
    settings = make_settings(tmp_path, model_memory=5)
    client: TestClient = await aiohttp_client(create_app(settings))
    records = [tx(f"late-{i}", account=f"acct-{i % 3}", amount=5.0 + i) for i in range(30)]
    await post_batch(client, records)
    trainer = client.app[TRAINER]  # type: ignore[index]
    learner = trainer.learner
    assert learner is not None and learner.count == 0
    labels = [{"transaction_id": f"late-{i}", "label": "fraud" if i % 2 else "legitimate"}
              for i in range(20)]  # fmt: skip
    status, body = await post_labels(client, labels)
    assert status == 200, body
    await trainer.idle.wait()
    assert trainer.status.labels_from_store == 20
    assert trainer.status.labels_without_inputs == 0
    assert trainer.status.labels_learnt == learner.count == 20
    resp = await client.get("/api/v1/scorecard", headers=BOOTSTRAP)
    model = (await resp.json())["model"]
    assert (model["labels_from_store"], model["labels_without_inputs"]) == (20, 0)


async def test_a_restarted_server_without_its_snapshot_learns_earlier_labels(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    # Another process scored these (or this one, before losing its state): the store's copy
    # of the inputs is all there is, and it is what the model learns.
    settings = make_settings(tmp_path)
    first: TestClient = await aiohttp_client(create_app(settings))
    records = [tx(f"gone-{i}", account=f"acct-{i % 4}", amount=3.0 + i) for i in range(12)]
    await post_batch(first, records)
    kept = {r["id"]: first.app[DETECTOR].kept_inputs(r["id"]) for r in records}  # type: ignore[index]
    await first.close()
    for state in tmp_path.glob("detector-state*"):
        state.unlink()

    again: TestClient = await aiohttp_client(create_app(settings))
    assert not again.app[DETECTOR].model.remembered  # type: ignore[index]
    labels = [{"transaction_id": r["id"], "label": "fraud" if i < 4 else "legitimate"}
              for i, r in enumerate(records)]  # fmt: skip
    await post_labels(again, labels)
    trainer = again.app[TRAINER]  # type: ignore[index]
    await trainer.idle.wait()
    assert trainer.status.labels_from_store == 12
    assert trainer.status.labels_without_inputs == 0
    assert trainer.learner.count == 12
    # What was learnt is the transactions as they were scored, bytes for bytes.
    stored = await again.app[STORE].model_inputs(list(kept))  # type: ignore[index]
    assert stored.rows == kept and not stored.damaged


# ---------------------------------------------------------------------------------------------
# Once labels are committed, nothing after the commit fails the request. The failures are
# real: a row of the real SQLite file that this code cannot read back (edited by hand, or
# written by a build with a bug), which is what "any other exception" looks like from here.


def damage(db: Path, tx_id: str, column: str, value: object) -> None:
    """Overwrite one column of a stored transaction, from another connection."""
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        changed = conn.execute(f"UPDATE transactions SET {column} = ? WHERE id = ?", (value, tx_id))
        assert changed.rowcount == 1


async def metric(client: TestClient, name: str) -> str:
    text = await (await client.get("/metrics")).text()
    return next(line for line in text.splitlines() if line.startswith(f"{name} "))


async def test_labels_stored_are_answered_even_when_learning_them_fails(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path)
    client: TestClient = await aiohttp_client(create_app(settings))
    await post_batch(client, [tx("fine-1"), tx("fine-2"), tx("broken")])
    # The stored verdict cannot be read back: merchant risk and the scorecard, which read
    # it after the commit, fail.
    damage(settings.db_path, "broken", "verdict_json", '{"transaction_id": "broken"}')

    body = [
        {"transaction_id": "fine-1", "label": "fraud"},
        {"transaction_id": "broken", "label": "fraud"},
    ]
    status, answer = await post_labels(client, body)
    assert status == 200, answer
    assert [r["status"] for r in answer["results"]] == ["created", "created"]
    status, single = await post_labels(client, {"transaction_id": "fine-2", "label": "legitimate"})
    assert (status, single["status"]) == (200, "created")
    # What was stored is what was answered, and the steps that could run did: the model
    # learnt all three from the inputs it remembered, merchant risk and the scorecard the
    # two whose rows could be read.
    stored = await client.app[STORE].get_labels(["fine-1", "broken", "fine-2"])  # type: ignore[index]
    assert {k: v.label for k, v in stored.items()} == {
        "fine-1": "fraud",
        "broken": "fraud",
        "fine-2": "legitimate",
    }
    trainer = client.app[TRAINER]  # type: ignore[index]
    await trainer.idle.wait()
    assert trainer.status.labels_learnt == 3
    assert client.app[SCORECARD].snapshot()["labelled"] == 2  # type: ignore[index]
    # The loss is counted for the operator: the damaged row's label, not its request's
    # others (it counted both of that request's labels when one row failed the read).
    assert await metric(client, "fraudwatch_labels_not_learnt_total") == (
        "fraudwatch_labels_not_learnt_total 1"
    )
    # And the server still starts on this file: the scorecard's rebuild reads the same rows.
    await client.close()
    again: TestClient = await aiohttp_client(create_app(settings))
    status, answer = await post_labels(again, body)
    assert status == 200 and [r["status"] for r in answer["results"]] == ["unchanged"] * 2


async def test_a_resolution_is_answered_even_when_learning_its_label_fails(
    client: TestClient, settings: Settings, login: Login
) -> None:
    csrf = await login("alice")
    alert_id = await raise_alert(client)
    resp = await client.get(f"/api/v1/alerts/{alert_id}", headers=BOOTSTRAP)
    tx_id = (await resp.json())["alert"]["transaction_id"]
    damage(settings.db_path, tx_id, "verdict_json", "{}")
    resp = await client.post(
        f"/api/v1/alerts/{alert_id}/resolve",
        json={"disposition": "fraud"},
        headers={"X-CSRF-Token": csrf},
    )
    # Committed with its label: the analyst sees it resolved, not an error to retry into a 409.
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["alert"]["status"] == "resolved"
    stored = await client.app[STORE].get_labels([tx_id])  # type: ignore[index]
    assert stored[tx_id].label == "fraud"
    assert await metric(client, "fraudwatch_labels_not_learnt_total") == (
        "fraudwatch_labels_not_learnt_total 1"
    )


async def test_labels_whose_stored_inputs_are_unreadable_do_not_cost_the_others(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    # The detector remembers the inputs of the last 5 transactions only: the first ones'
    # are read back from the store, where one row's are damaged.
    settings = make_settings(tmp_path, model_memory=5)
    client: TestClient = await aiohttp_client(create_app(settings))
    await post_batch(
        client, [tx(f"in-{i}", account=f"acct-{i}", amount=5.0 + i) for i in range(10)]
    )
    damage(settings.db_path, "in-0", "model_inputs", "not bytes")
    body = [
        {"transaction_id": "in-0", "label": "fraud"},
        {"transaction_id": "in-1", "label": "legitimate"},
        {"transaction_id": "in-9", "label": "fraud"},
    ]
    status, answer = await post_labels(client, body)
    assert status == 200, answer
    assert [r["status"] for r in answer["results"]] == ["created"] * 3
    # in-0 and in-1 are read from the store in one query, where in-0's row is damaged:
    # in-0 alone is not learnt (logged; it cost in-1 too when the read failed whole).
    # in-9's inputs were in memory, taken out for this call: learnt.
    trainer = client.app[TRAINER]  # type: ignore[index]
    await trainer.idle.wait()
    assert trainer.status.labels_learnt == 2
    assert (trainer.status.labels_from_store, trainer.status.labels_without_inputs) == (1, 1)


async def test_a_damaged_row_costs_only_its_own_label(
    aiohttp_client: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # One row that could not be read back failed the whole read of a request's stored
    # transactions (or of their model inputs): every label in the request missed merchant
    # risk and the scorecard (or the model). Now the damaged rows' labels alone do, each
    # logged with its transaction id and counted.
    settings = make_settings(tmp_path, model_memory=2)  # the last two scored are remembered
    client: TestClient = await aiohttp_client(create_app(settings))
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    sales = [
        tx(f"dm-{i}", f"acct-dm-{i}", 40.0, now - dt.timedelta(hours=2, minutes=i), "m-dm")
        for i in range(6)
    ]
    await post_batch(client, sales)
    damage(settings.db_path, "dm-0", "verdict_json", '{"transaction_id": "dm-0"}')
    damage(settings.db_path, "dm-1", "model_inputs", "not bytes")
    damage(settings.db_path, "dm-2", "transaction_json", '{"id": "dm-2"}')

    status, answer = await post_labels(
        client, [{"transaction_id": t["id"], "label": "fraud"} for t in sales]
    )
    assert status == 200 and [r["status"] for r in answer["results"]] == ["created"] * 6
    trainer = client.app[TRAINER]  # type: ignore[index]
    await trainer.idle.wait()
    # The model: all but dm-1, whose inputs are damaged (dm-4 and dm-5 from memory).
    assert trainer.status.labels_learnt == 5
    assert (trainer.status.labels_from_store, trainer.status.labels_without_inputs) == (3, 1)
    # Merchant risk: all but dm-2, whose transaction cannot be read (it needs no verdict).
    # The scorecard: all but dm-0 and dm-2, whose rows cannot be read.
    buckets = client.app[DETECTOR].featurizer.merchants["m-dm"].labels  # type: ignore[index]
    assert (sum(buckets[1::3]), sum(buckets[2::3])) == (5.0, 5.0)
    card = client.app[SCORECARD].snapshot()  # type: ignore[index]
    assert card is not None and card["overall"]["frauds"] == 4
    assert await metric(client, "fraudwatch_labels_not_learnt_total") == (
        "fraudwatch_labels_not_learnt_total 2"
    )
    logged = [
        r.getMessage()
        for r in caplog.records
        if r.name in ("server.learning", "server.label_changes")
    ]
    for tx_id, column in (("dm-0", "verdict_json"), ("dm-1", "model_inputs"),
                          ("dm-2", "transaction_json")):  # fmt: skip
        assert any(f"label of {tx_id} not" in m and column in m for m in logged), logged
    await client.close()

    # A restart's rebuild reads the same rows, and counts the same four.
    again: TestClient = await aiohttp_client(create_app(settings))
    rebuilt = again.app[SCORECARD].snapshot()  # type: ignore[index]
    assert rebuilt is not None and rebuilt["overall"]["frauds"] == 4


async def test_text_over_its_limit_is_too_long_as_in_ingest(client: TestClient) -> None:
    # The same problem, the same code and words as a transaction's over-long field: one
    # branch in a client for "shorten it", whichever endpoint refused it.
    await post_batch(client, [tx("long-1")])
    body = [
        {"transaction_id": "long-1", "label": "fraud", "source": "s" * 101},
        {"transaction_id": "t" * 129, "label": "fraud"},
        {"transaction_id": "long-1", "label": "fraud", "source": "s" * 100},
        {"transaction_id": "long-1", "label": "fraud", "source": ""},
    ]
    status, answer = await post_labels(client, body)
    assert status == 200
    errors = [result.get("error") for result in answer["results"]]
    assert errors[0] == {
        "code": "too_long",
        "message": "'source' is longer than 100 characters",
        "field": "source",
    }
    assert errors[1] == {
        "code": "too_long",
        "message": "'transaction_id' is longer than 128 characters",
        "field": "transaction_id",
    }
    assert errors[2] is None  # at the limit is within it
    assert errors[3] is not None and errors[3]["code"] == "invalid_field"  # empty: not length
    status, answer = await post_labels(
        client, {"transaction_id": "long-1", "label": "fraud", "source": "s" * 101}
    )
    assert (status, answer["error"]["code"]) == (400, "too_long")


async def test_a_label_of_another_json_type_is_refused_naming_it(client: TestClient) -> None:
    # An array or object is no label either: refused as the field's problem, not a 500 (a
    # list or dict cannot be looked up in a set of strings).
    await post_batch(client, [tx("typed")])
    for value in (["fraud"], {"is": "fraud"}, True, 1, None):
        status, answer = await post_labels(client, {"transaction_id": "typed", "label": value})
        assert status == 400, (value, answer)
        assert answer["error"]["field"] == "label", value
    status, answer = await post_labels(
        client,
        [
            {"transaction_id": "typed", "label": ["fraud"]},
            {"transaction_id": "typed", "label": "fraud"},
        ],
    )
    assert status == 200
    assert answer["results"][0]["error"]["code"] == "invalid_field"
    assert answer["results"][1] == {
        "transaction_id": "typed",
        "label": "fraud",
        "status": "created",
    }


async def test_a_labelled_at_in_the_first_year_is_refused_naming_it(client: TestClient) -> None:
    # Read in UTC it would be the year 0, which a datetime cannot hold: it answered 500.
    await post_batch(client, [tx("year")])
    label = {"transaction_id": "year", "label": "fraud", "labelled_at": "0001-01-01T00:00:00+01:00"}
    status, answer = await post_labels(client, label)
    assert status == 400
    assert answer["error"] == {
        "code": "invalid_field",
        "message": "'labelled_at': the year 0001 is out of range; send one from 0002 to 9998",
        "field": "labelled_at",
    }


async def test_a_stored_transaction_of_the_year_0_in_utc_takes_its_label(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    # Ingest took 0001-01-01T00:00:00+01:00 until it refused the year 0001: a database kept
    # from then holds its event time, before the first moment a datetime has, and a label
    # for it answered 500 (OverflowError) whatever its labelled_at.
    settings = make_settings(tmp_path)
    client: TestClient = await aiohttp_client(create_app(settings))
    await post_batch(client, [tx("y0")])
    old = '{"id": "y0", "timestamp": "0001-01-01T00:00:00+01:00", "account_id": "a", ' + (
        '"merchant_id": "m", "amount": 1.00, "currency": "USD"}'
    )
    damage(settings.db_path, "y0", "transaction_json", old)
    damage(settings.db_path, "y0", "event_time_us", -62_135_600_400 * 10**6)
    status, answer = await post_labels(client, {"transaction_id": "y0", "label": "fraud"})
    assert (status, answer) == (
        200,
        {"transaction_id": "y0", "label": "fraud", "status": "created"},
    )
    await client.close()
