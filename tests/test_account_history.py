"""GET /api/v1/accounts/{id}/transactions: an account's history with verdicts, from SQLite."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import Settings
from tests.conftest import AUTH, T0, Login, card_testing, tx


async def test_history_is_newest_first_with_verdicts_and_pages(client: TestClient) -> None:
    records = [
        tx("a-1", "acct-h", 12.5, T0),
        *card_testing("h", "acct-h", n=3, at=T0 + dt.timedelta(hours=1)),
        tx("other-1", "acct-other", 99.0, T0 + dt.timedelta(hours=2)),
    ]
    resp = await client.post("/api/v1/transactions", json=records, headers=AUTH)
    assert resp.status == 200

    url = "/api/v1/accounts/acct-h/transactions"
    page: dict[str, Any] = await (await client.get(url, headers=AUTH)).json()
    assert page["account_id"] == "acct-h"
    got = [item["transaction"]["id"] for item in page["transactions"]]
    assert got == ["h-2", "h-1", "h-0", "a-1"]  # newest event time first; no other account
    newest = page["transactions"][0]
    assert float(newest["transaction"]["amount"]) == 1.0
    assert newest["verdict"]["alert_id"] is not None  # card testing fired on the third
    assert newest["verdict"]["decision"] in ("review", "block")
    assert page["transactions"][-1]["verdict"]["alert_id"] is None
    assert page["next_cursor"] is None

    first = await (await client.get(f"{url}?limit=3", headers=AUTH)).json()
    assert [i["transaction"]["id"] for i in first["transactions"]] == ["h-2", "h-1", "h-0"]
    rest = await (
        await client.get(f"{url}?limit=3&cursor={first['next_cursor']}", headers=AUTH)
    ).json()
    assert [i["transaction"]["id"] for i in rest["transactions"]] == ["a-1"]
    assert rest["next_cursor"] is None

    empty = await (await client.get("/api/v1/accounts/nobody/transactions", headers=AUTH)).json()
    assert empty["transactions"] == []


async def test_history_checks_caller_and_parameters(client: TestClient, login: Login) -> None:
    url = "/api/v1/accounts/acct-h/transactions"
    assert (await client.get(url)).status == 401
    for query, field in (("limit=0", "limit"), ("limit=x", "limit"), ("cursor=%%%", "cursor")):
        resp = await client.get(f"{url}?{query}", headers=AUTH)
        assert resp.status == 400, query
        assert (await resp.json())["error"]["field"] == field
    await login("vera", role="viewer")
    assert (await client.get(url)).status == 200  # reading is every role's


async def test_a_transaction_whose_stored_json_is_not_json_is_left_out_of_the_history(
    client: TestClient, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # The transaction's JSON is sent as stored: one cut short made the whole answer
    # invalid JSON (the drawer's history failed to parse), and a BLOB failed the read. Now
    # each is left out and logged, as a damaged verdict is, and paging leads on past them.
    records = [tx(f"j-{n}", "acct-j", 10.0 + n, T0 + dt.timedelta(minutes=n)) for n in range(5)]
    assert (await client.post("/api/v1/transactions", json=records, headers=AUTH)).status == 200
    with contextlib.closing(sqlite3.connect(settings.db_path)) as conn, conn:
        conn.execute(
            "UPDATE transactions SET transaction_json = substr(transaction_json, 1, 9) "
            "WHERE id = 'j-3'"
        )
        conn.execute(
            "UPDATE transactions SET transaction_json = CAST(transaction_json AS BLOB) "
            "WHERE id = 'j-1'"
        )
    url = "/api/v1/accounts/acct-j/transactions"
    resp = await client.get(url, headers=AUTH)
    assert resp.status == 200
    page = json.loads(await resp.text())
    assert [item["transaction"]["id"] for item in page["transactions"]] == ["j-4", "j-2", "j-0"]
    for logged in (
        "j-3: transaction_json unreadable: Input data was truncated",
        "j-1: transaction_json unreadable: bytes, not text",
    ):
        assert f"damaged row left out: transactions {logged}" in caplog.text, logged
    pages, cursor = [], ""
    while True:
        part = await (await client.get(f"{url}?limit=2{cursor}", headers=AUTH)).json()
        pages.append([item["transaction"]["id"] for item in part["transactions"]])
        if part["next_cursor"] is None:
            break
        cursor = f"&cursor={part['next_cursor']}"
    assert pages == [["j-4"], ["j-2"], ["j-0"]]
