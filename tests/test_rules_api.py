"""Reloading rules over the API: admins only, and a bad file keeps the rules in use."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server import rules_reload
from server.app import create_app
from server.auth import create_user
from server.detection.rules import RuleSet, load_rules
from server.state import DETECTOR, STORE
from tests.conftest import AUTH, Login, make_settings, tx

BIG = """
[[rules]]
name = "big_amount"
score = 0.9
severity = "critical"
all = [{{ feature = "amount", op = ">=", value = {threshold} }}]
reason = "Amount {{amount:,.2f}} at or above {{threshold:,.2f}}"
"""


async def _app(
    aiohttp_client: Any, tmp_path: Path, sources: dict[str, str] | None = None
) -> tuple[TestClient, Path]:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "big.toml").write_text(BIG.format(threshold=1000))
    settings = make_settings(tmp_path, rules_path=rules)
    client = await aiohttp_client(create_app(settings, sources))
    return client, rules / "big.toml"


async def _verdict(client: TestClient, id: str, amount: str) -> dict[str, Any]:
    resp = await client.post("/api/v1/transactions", json=tx(id, amount=amount), headers=AUTH)
    assert resp.status == 200, await resp.text()
    return await resp.json()  # type: ignore[no-any-return]


async def test_admin_reloads_and_new_verdicts_carry_the_new_version(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client, path = await _app(aiohttp_client, tmp_path)
    # The configured file, not the default pack, scores from the first transaction.
    before = await _verdict(client, "t1", "500.00")
    assert before["decision"] == "allow"
    old_version = before["rules_version"]

    path.write_text(BIG.format(threshold=100))
    csrf = await _log_in(client, "root", "admin")
    resp = await client.post("/api/v1/rules/reload", headers={"X-CSRF-Token": csrf})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["previous_version"] == old_version
    assert body["rules_version"] != old_version
    assert [r["name"] for r in body["rules"]] == ["big_amount"]

    after = await _verdict(client, "t2", "500.00")
    assert after["rules_version"] == body["rules_version"]
    assert after["decision"] == "block"
    assert after["reasons"][0]["message"] == "Amount 500.00 at or above 100.00"
    listed = await (await client.get("/api/v1/rules", headers=AUTH)).json()
    assert listed["rules_version"] == body["rules_version"]


async def test_a_bad_file_answers_400_and_keeps_the_rules_in_use(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client, path = await _app(aiohttp_client, tmp_path)
    version = (await _verdict(client, "t1", "10.00"))["rules_version"]
    path.write_text(BIG.format(threshold=100).replace('"amount"', '"amonut"'))
    csrf = await _log_in(client, "root", "admin")
    resp = await client.post("/api/v1/rules/reload", headers={"X-CSRF-Token": csrf})
    assert resp.status == 400
    body = await resp.json()
    assert body["error"]["code"] == "invalid_rules"
    assert body["rules_version"] == version
    # Built without the settings' sources (as tests build it): the path, and no guess.
    assert body["error"]["message"] == (
        f"1 problem(s) in rules directory {path.parent} (rules_path from the settings); "
        f"the rules in use ({version}) are unchanged"
    )
    assert body["errors"] == [
        f"{path}: rule 'big_amount': unknown feature 'amonut' (see docs/rules.md for the list)"
    ]
    still = await _verdict(client, "t2", "5000.00")
    assert still["rules_version"] == version
    assert still["decision"] == "block"  # the old threshold of 1000 still applies


@pytest.mark.parametrize(
    "source", ["environment FRAUDWATCH_RULES_PATH", "config file /etc/fraudwatch.toml"]
)
async def test_a_refused_reload_names_where_rules_path_was_set(
    aiohttp_client: Any, tmp_path: Path, source: str
) -> None:
    # The admin who reloads may not be the operator who set rules_path: the refusal says
    # which file was read and where its path came from, as `serve` resolved it.
    client, path = await _app(aiohttp_client, tmp_path, {"rules_path": source})
    version = (await _verdict(client, "t1", "10.00"))["rules_version"]
    path.write_text(BIG.format(threshold=100).replace('"critical"', '"dire"'))
    csrf = await _log_in(client, "root", "admin")
    resp = await client.post("/api/v1/rules/reload", headers={"X-CSRF-Token": csrf})
    assert resp.status == 400
    assert (await resp.json())["error"]["message"] == (
        f"1 problem(s) in rules directory {path.parent} (rules_path from {source}); the rules "
        f"in use ({version}) are unchanged"
    )


async def test_only_admins_may_reload(
    client: TestClient, login: Login, aiohttp_client: Any
) -> None:
    anonymous = await client.post("/api/v1/rules/reload")
    assert anonymous.status == 401
    machine = await client.post("/api/v1/rules/reload", headers=AUTH)
    assert machine.status == 403
    csrf = await login("alice", role="analyst")
    analyst = await client.post("/api/v1/rules/reload", headers={"X-CSRF-Token": csrf})
    assert analyst.status == 403
    assert (await analyst.json())["error"]["code"] == "forbidden"
    admin_client: TestClient = await aiohttp_client(client.server)
    admin_csrf = await login("root", role="admin", session=admin_client)
    no_csrf = await admin_client.post("/api/v1/rules/reload")
    assert no_csrf.status == 403
    ok = await admin_client.post("/api/v1/rules/reload", headers={"X-CSRF-Token": admin_csrf})
    assert ok.status == 200
    assert (await ok.json())["rules_version"].startswith("rules-3+")


async def _log_in(client: TestClient, name: str, role: str) -> str:
    """The conftest `login` fixture, for a client built here with other settings."""
    await create_user(client.app[STORE], name, "correct horse battery", role)  # type: ignore[arg-type,index]
    resp = await client.post("/login", data={"username": name, "password": "correct horse battery"})
    assert resp.status == 200
    match = re.search(r'name="csrf-token" content="([^"]+)"', await resp.text())
    assert match
    return match.group(1)


async def test_the_list_gives_each_rule_the_unit_its_reasons_carry(client: TestClient) -> None:
    from tests.test_rules import DEFAULT_UNITS

    resp = await client.get("/api/v1/rules", headers=AUTH)
    assert resp.status == 200
    listed = {r["name"]: r for r in (await resp.json())["rules"]}
    # A reason gives an amount's unit as the transaction's currency; the list, which has no
    # transaction, as `currency`. A rule whose figures have none has no `unit`, as a reason.
    expected = {n: "currency" if u == "JPY" else u for n, u in DEFAULT_UNITS.items()}
    assert {n: r.get("unit") for n, r in listed.items()} == expected
    assert "unit" not in listed["new_country"]


async def test_a_files_own_unit_is_listed_and_survives_a_reload(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client, path = await _app(aiohttp_client, tmp_path)
    listed = (await (await client.get("/api/v1/rules", headers=AUTH)).json())["rules"]
    assert [(r["name"], r["unit"]) for r in listed] == [("big_amount", "currency")]

    path.write_text(BIG.format(threshold=100) + 'unit = "ratio"\n')
    csrf = await _log_in(client, "root", "admin")
    resp = await client.post("/api/v1/rules/reload", headers={"X-CSRF-Token": csrf})
    assert resp.status == 200, await resp.text()
    assert [r["unit"] for r in (await resp.json())["rules"]] == ["ratio"]
    after = await _verdict(client, "t1", "500.00")
    assert after["reasons"][0]["unit"] == "ratio"
    listed = (await (await client.get("/api/v1/rules", headers=AUTH)).json())["rules"]
    assert listed[0]["unit"] == "ratio"


SURE = """{settings}
[[rules]]
name = "sure"
score = 0.9
severity = "high"
all = [{{ feature = "amount", op = ">=", value = 0 }}]
reason = "always"
"""


async def _severity(client: TestClient, id: str, amount: str) -> str:
    verdict = await _verdict(client, id, amount)
    resp = await client.get(f"/api/v1/alerts/{verdict['alert_id']}", headers=AUTH)
    assert resp.status == 200, await resp.text()
    return (await resp.json())["alert"]["severity"]  # type: ignore[no-any-return]


async def test_a_reload_bands_severities_by_the_new_loss_settings(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client, path = await _app(aiohttp_client, tmp_path)
    path.write_text(SURE.format(settings=""))
    csrf = await _log_in(client, "root", "admin")
    assert (await client.post("/api/v1/rules/reload", headers={"X-CSRF-Token": csrf})).status == 200
    assert await _severity(client, "t1", "200.00") == "high"  # 180 at stake, from 100
    assert await _severity(client, "t2", "1000.00") == "critical"  # 900, from 500

    listed = await (await client.get("/api/v1/rules", headers=AUTH)).json()
    assert listed["settings"] == {"small_amount": 5.0, "high_loss": 100.0, "critical_loss": 500.0}

    path.write_text(SURE.format(settings="[settings]\nhigh_loss = 1000\ncritical_loss = 5000"))
    resp = await client.post("/api/v1/rules/reload", headers={"X-CSRF-Token": csrf})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["settings"]["high_loss"] == 1000
    listed = await (await client.get("/api/v1/rules", headers=AUTH)).json()
    assert listed["settings"] == {"small_amount": 5.0, "high_loss": 1000, "critical_loss": 5000}
    assert await _severity(client, "t3", "200.00") == "medium"
    assert await _severity(client, "t4", "1000.00") == "medium"
    assert await _severity(client, "t5", "2000.00") == "high"

    path.write_text(SURE.format(settings="[settings]\nhigh_loss = 1000\ncritical_loss = 0"))
    resp = await client.post("/api/v1/rules/reload", headers={"X-CSRF-Token": csrf})
    assert resp.status == 400
    assert (await resp.json())["errors"] == [
        f"{path}: [settings]: critical_loss must be a number > 0, got 0"
    ]
    assert await _severity(client, "t6", "2000.00") == "high"  # the bands in use stay
    listed = await (await client.get("/api/v1/rules", headers=AUTH)).json()
    assert listed["settings"]["critical_loss"] == 5000


async def test_overlapping_reloads_end_with_the_rules_read_last(
    aiohttp_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reload asked while another reads the files waits for it: each read its files in a
    thread, and the one to finish last won, which could be the earlier one, holding the
    older file. Here the first read is slow: it reads the old file, then stalls until the
    second reload has put the new one in use (a second at most, the time a waiting second
    reload never gets)."""
    client, path = await _app(aiohttp_client, tmp_path)
    app = client.server.app
    old = load_rules(path.parent)
    path.write_text(BIG.format(threshold=100))
    new = load_rules(path.parent)
    reads = iter([old, new])

    def load(rules_path: Any) -> RuleSet:
        ruleset = next(reads)
        if ruleset is old:
            deadline = time.monotonic() + 1.0
            while app[DETECTOR].rules_version != new.version and time.monotonic() < deadline:
                time.sleep(0.01)
        return ruleset

    monkeypatch.setattr(rules_reload, "load_rules", load)
    first = asyncio.create_task(rules_reload.reload_rules(app, "first"))
    await asyncio.sleep(0.05)  # the first is reading
    second = asyncio.create_task(rules_reload.reload_rules(app, "second"))
    assert await first is old and await second is new
    assert app[DETECTOR].rules_version == new.version != old.version
