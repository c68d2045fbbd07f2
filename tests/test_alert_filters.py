"""GET /api/v1/alerts narrowed on the server: severity, rule, owner, q, event-time range,
pagination under a filter, and 400s that name the bad parameter."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from server.app import create_app
from tests.browser_support import impossible_travel, travel_at_night
from tests.conftest import AUTH, T0, Login, card_testing, make_settings, tx


async def alerts(client: TestClient, query: str) -> list[dict[str, Any]]:
    resp = await client.get(f"/api/v1/alerts?{query}", headers=AUTH)
    assert resp.status == 200, await resp.text()
    return (await resp.json())["alerts"]  # type: ignore[no-any-return]


async def ids(client: TestClient, query: str) -> set[str]:
    return {a["id"] for a in await alerts(client, query)}


async def raise_four(client: TestClient) -> dict[str, str]:
    """A high (travel, 14:10), a critical (night), two card-testing ones (15:00 on)."""
    made: dict[str, str] = {}
    for name, records in (
        ("travel", impossible_travel("acct-t", "Harrods")),
        ("night", travel_at_night("acct-n")),
        ("cards", card_testing("ct", "acct-c", n=4, at=T0 + dt.timedelta(hours=1))),
    ):
        resp = await client.post("/api/v1/transactions", json=records, headers=AUTH)
        found = [r["alert_id"] for r in (await resp.json())["results"] if r["alert_id"]]
        for i, alert_id in enumerate(found):
            made[f"{name}{i}" if len(found) > 1 else name] = alert_id
    return made


async def test_each_filter_narrows_on_the_server(client: TestClient, login: Login) -> None:
    csrf = await login("alice")
    made = await raise_four(client)
    assert set(made) == {"travel", "night", "cards0", "cards1"}
    everything = await ids(client, "")
    assert everything == set(made.values())

    assert await ids(client, "severity=critical") == {made["night"]}
    assert await ids(client, "severity=critical,high") >= {made["night"], made["travel"]}
    assert await ids(client, "rule=card_testing") == {made["cards0"], made["cards1"]}
    assert await ids(client, "rule=impossible_travel") >= {made["travel"]}
    # q: an account, a transaction or a merchant id, exactly.
    assert await ids(client, "q=acct-t") == {made["travel"]}
    assert await ids(client, "q=acct-t-2") == {made["travel"]}
    assert await ids(client, "q=m-elec") == {made["travel"]}
    assert await ids(client, "q=acct") == set()

    resp = await client.post(f"/api/v1/alerts/{made['night']}/ack", headers={"X-CSRF-Token": csrf})
    assert resp.status == 200
    assert await ids(client, "owner=alice") == {made["night"]}
    mine = await client.get("/api/v1/alerts?owner=me")  # alice's session
    assert {a["id"] for a in (await mine.json())["alerts"]} == {made["night"]}
    assert made["night"] not in await ids(client, "owner=unowned")
    assert len(await ids(client, "owner=unowned")) == 3
    assert await ids(client, "status=acknowledged&severity=critical") == {made["night"]}
    assert await ids(client, "status=open&severity=critical") == set()

    # Event time is the transaction's own: the card testing started at 15:00 UTC.
    late = await ids(client, "from=2026-03-02T15:00:00Z")
    assert late == {made["cards0"], made["cards1"]}
    early = await ids(client, "to=2026-03-02T14:30:00%2B00:00")
    assert made["travel"] in early and not early & late
    assert await ids(client, "from=2026-03-02T14:05:00Z&to=2026-03-02T14:15:00Z") == {
        made["travel"]
    }

    # Pagination keeps the filter: two pages of one, then nothing more.
    page = await (await client.get("/api/v1/alerts?rule=card_testing&limit=1", headers=AUTH)).json()
    assert len(page["alerts"]) == 1 and page["next_cursor"]
    rest = await (
        await client.get(
            f"/api/v1/alerts?rule=card_testing&limit=1&cursor={page['next_cursor']}", headers=AUTH
        )
    ).json()
    assert len(rest["alerts"]) == 1 and rest["next_cursor"] is None
    assert {page["alerts"][0]["id"], rest["alerts"][0]["id"]} == {made["cards0"], made["cards1"]}


async def test_bad_filters_are_400s_naming_the_parameter(client: TestClient) -> None:
    for query, field in (
        ("severity=urgent", "severity"),
        ("severity=,", "severity"),
        ("rule=<script>", "rule"),
        ("owner=" + "x" * 65, "owner"),
        ("q=" + "x" * 129, "q"),
        ("from=yesterday", "from"),
        ("from=2026-03-02T14:00:00", "from"),  # no offset: which 14:00?
        ("from=20260302T140000Z", "from"),  # ISO 8601, not RFC 3339, as for ingest
        ("to=2026-W10-1T14:00:00Z", "to"),
        ("to=2026-02-30T00:00:00Z", "to"),
        ("from=2026-03-03T00:00:00Z&to=2026-03-02T00:00:00Z", "from"),
        ("status=closed", "status"),
        ("limit=0", "limit"),
    ):
        resp = await client.get(f"/api/v1/alerts?{query}", headers=AUTH)
        assert resp.status == 400, query
        error = (await resp.json())["error"]
        assert (error["code"], error["field"]) == ("invalid_parameter", field), query
        assert error["message"]


async def test_a_date_that_does_not_exist_is_named_as_such(client: TestClient) -> None:
    # As ingest says of a timestamp: the form is right, the day is not.
    resp = await client.get("/api/v1/alerts?to=2026-02-30T00:00:00Z", headers=AUTH)
    assert resp.status == 400
    assert (await resp.json())["error"] == {
        "code": "invalid_parameter",
        "message": "'to': 2026-02-30 is not a date",
        "field": "to",
    }


async def test_an_unencoded_plus_in_an_offset_is_named_as_such(client: TestClient) -> None:
    # A '+' in a query string is a space (form encoding), so a client that forgot to
    # percent-encode `+01:00` sends `2026-03-02T15:00:00 01:00`. It was refused with the
    # generic "must be RFC 3339", which the sender, looking at a valid RFC 3339 date-time,
    # could not act on. It is still refused (the contract is strict), saying why and how.
    for name in ("from", "to"):
        resp = await client.get(f"/api/v1/alerts?{name}=2026-03-02T15:00:00+01:00", headers=AUTH)
        assert resp.status == 400, name
        error = (await resp.json())["error"]
        assert (error["code"], error["field"]) == ("invalid_parameter", name)
        assert error["message"] == (
            f"'{name}' (2026-03-02T15:00:00 01:00) has a space where its offset's '+' should "
            "be: a query string reads an unencoded '+' as a space; encode '+' as %2B "
            f"({name}=2026-03-02T15:00:00%2B01:00)"
        ), error["message"]
    # RFC 3339's space for the T too: still the offset's '+' that went missing.
    resp = await client.get("/api/v1/alerts?from=2026-03-02 15:00:00+01:00", headers=AUTH)
    assert (await resp.json())["error"]["message"].endswith("(from=2026-03-02%2015:00:00%2B01:00)")
    # Encoded, it is taken; a space that is not where a '+' was gets the usual message.
    assert (await client.get("/api/v1/alerts?from=2026-03-02T15:00:00%2B01:00", headers=AUTH)).ok
    resp = await client.get("/api/v1/alerts?from=2026-03-02T15:00:00 1:00", headers=AUTH)
    assert "%2B" not in (await resp.json())["error"]["message"]


LOW_RULES = """
[[rules]]
name = "low_but_strong"
score = 0.6
severity = "low"
all = [{ feature = "amount", op = ">=", value = 100 }]
reason = "Amount at or above {threshold:,.2f}"

[[rules]]
name = "low_and_sure"
score = 0.95
severity = "low"
all = [{ feature = "amount", op = ">=", value = 1000 }]
reason = "Amount at or above {threshold:,.2f}"
"""


async def test_no_alert_is_low_yet_a_low_filter_is_taken(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    # A pack may give its rules `low` (docs/rules.md), and alerts' reasons say so; but an
    # alert is raised at review or block, whose severities are medium and up (the money at
    # stake says which). `severity=low` stays a valid filter that matches nothing: the dashboard
    # passes one on from a link, and clients ask for "low,medium" or all four.
    (tmp_path / "rules.toml").write_text(LOW_RULES)
    settings = make_settings(tmp_path, rules_path=tmp_path / "rules.toml")
    client = await aiohttp_client(create_app(settings))
    records = [tx("r-1", amount="150.00"), tx("b-1", amount="5000.00", account_id="acct-b")]
    resp = await client.post("/api/v1/transactions", json=records, headers=AUTH)
    results = (await resp.json())["results"]
    assert [r["decision"] for r in results] == ["review", "block"]
    assert {r["severity"] for r in results[0]["reasons"]} == {"low"}
    assert {a["severity"] for a in await alerts(client, "")} == {"medium", "critical"}
    assert await alerts(client, "severity=low") == []
    assert {a["severity"] for a in await alerts(client, "severity=low,medium")} == {"medium"}
