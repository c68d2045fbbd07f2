"""A crash (SIGKILL mid-stream) loses nothing answered, dashboards resume by seq, and the
detector's state is rebuilt from its last snapshot and what the store holds after it."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import WSMsgType

from tests.conftest import AUTH, card_testing, tx
from tests.live_server import (
    BASE,
    LiveServer,
    Loader,
    alert_ids,
    events,
    post_transactions,
    start_live,
    stored_verdicts,
)


async def test_sigkill_loses_no_answered_transaction_and_dashboards_resume_by_seq(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    # (seq, alert id) as two dashboards received them: one connected until the crash, one
    # that went away early (a closed laptop) while alerts kept coming.
    live: list[tuple[int, str]] = []
    early: list[tuple[int, str]] = []
    with contextlib.ExitStack() as stack:
        server = await start_live(data, stack)
        async with aiohttp.ClientSession(headers=AUTH) as http:
            watchers = [
                asyncio.create_task(_watch(http, server.url, live)),
                asyncio.create_task(_watch(http, server.url, early, leave_after=100)),
            ]
            async with Loader(server.url) as loader:
                await loader.until(answered=1500)
                server.proc.kill()
                await asyncio.to_thread(server.proc.wait, 30)
            await asyncio.wait_for(asyncio.gather(*watchers), 10)  # the sockets dropped
    assert set(loader.outcomes) == {"200", "no answer"}, loader.outcomes

    with contextlib.ExitStack() as stack:
        server = await start_live(data, stack)
        # Every transaction answered 200 is stored with the verdict it was answered with,
        # and every alert it raised is there.
        assert stored_verdicts(server.db, list(loader.verdicts)) == loader.verdicts
        raised = {v["alert_id"] for v in loader.verdicts.values() if v["alert_id"]}
        assert raised and raised <= alert_ids(server.db)
        log = events(server.db)
        assert [seq for seq, _ in log] == list(range(1, len(log) + 1))
        # What the dashboard saw live was the log's beginning, in order, without a gap.
        async with aiohttp.ClientSession(headers=AUTH) as http:
            for seen in (live, early):
                assert seen and seen == log[: len(seen)]
                # Reconnecting from the last seq it applied: the rest of the log, in order.
                last = seen[-1][0]
                async with http.ws_connect(f"{server.url}/ws?since={last}") as ws:
                    hello = await ws.receive_json()
                    assert hello["type"] == "hello" and hello["seq"] == log[-1][0]
                    resumed = await _collect(ws, hello["seq"] - last)
                assert resumed == log[len(seen) :]
            assert len(early) == 100 < len(log) - 500
            # A feed re-sending what it had been answered for changes nothing.
            await _resend_all(http, server.url, loader)
        assert events(server.db) == log
        assert server.stop() == 0


async def _watch(
    http: aiohttp.ClientSession, url: str, seen: list[tuple[int, str]], leave_after: int = 0
) -> None:
    async with http.ws_connect(f"{url}/ws?since=0") as ws:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                break
            data: dict[str, Any] = msg.json()
            if data["type"] in ("alert", "alert_updated"):
                seen.append((data["seq"], data["alert"]["id"]))
                if len(seen) == leave_after:
                    return


async def _collect(ws: aiohttp.ClientWebSocketResponse, n: int) -> list[tuple[int, str]]:
    got: list[tuple[int, str]] = []
    async with asyncio.timeout(10):
        while len(got) < n:
            data = await ws.receive_json()
            if data["type"] in ("alert", "alert_updated"):
                got.append((data["seq"], data["alert"]["id"]))
    return got


async def _resend_all(http: aiohttp.ClientSession, url: str, loader: Loader) -> None:
    ids = list(loader.accepted)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        records = [loader.accepted[tx_id] for tx_id in chunk]
        async with http.post(f"{url}/api/v1/transactions", json=records) as resp:
            assert resp.status == 200, await resp.text()
            results = (await resp.json())["results"]
        assert results == [loader.verdicts[tx_id] for tx_id in chunk]


# No periodic snapshot in a test's lifetime: after a SIGKILL, only what was on disk before.
INTERVAL = {"state_snapshot_interval": 300}


async def _snapshot(server: LiveServer) -> None:
    async with (
        aiohttp.ClientSession(headers=AUTH) as http,
        http.post(f"{server.url}/api/v1/admin/snapshot") as resp,
    ):
        assert resp.status == 200, await resp.text()


async def _labelled(server: LiveServer, ids: list[str]) -> dict[str, Any]:
    """Label `ids` fraud and wait for the trainer: the scorecard's `model`."""
    labels = [{"transaction_id": tx_id, "label": "fraud"} for tx_id in ids]
    async with aiohttp.ClientSession(headers=AUTH) as http:
        async with http.post(f"{server.url}/api/v1/labels", json=labels) as resp:
            assert resp.status == 200, await resp.text()
        for _ in range(100):  # the trainer learns on its own thread
            async with http.get(f"{server.url}/api/v1/scorecard") as resp:
                model: dict[str, Any] = (await resp.json())["model"]
            if model["labels_learnt"] + model["labels_without_inputs"] >= len(ids):
                break
            await asyncio.sleep(0.1)
    return model


def _kill(server: LiveServer) -> None:
    server.proc.kill()
    server.proc.wait(timeout=30)


def _codes(verdict: dict[str, Any]) -> list[str]:
    return [reason["code"] for reason in verdict["reasons"]]


async def test_after_sigkill_what_was_scored_after_the_snapshot_is_replayed(
    tmp_path: Path,
) -> None:
    """A snapshot, two tiny charges, a crash: the third is the third, and card testing
    fires (it counted as the first, the snapshot's state alone)."""
    data = tmp_path / "data"
    probes = card_testing("ct", "acct-crash", n=3, at=BASE)
    with contextlib.ExitStack() as stack:
        server = await start_live(data, stack, **INTERVAL)
        await post_transactions(server.url, [tx("before", "acct-other", at=BASE)])
        await _snapshot(server)
        assert not any(_codes(v) for v in await post_transactions(server.url, probes[:2]))
        _kill(server)
        server = await start_live(data, stack, **INTERVAL)
        verdict = (await post_transactions(server.url, probes[2:]))[0]
        # Their labels are learnt from the inputs stored with their verdicts: the model's
        # memory of them died with the process, and the replay does not recompute it.
        model = await _labelled(server, ["ct-0", "ct-1"])
        assert server.stop() == 0
    assert _codes(verdict) == ["card_testing"], verdict
    assert verdict["reasons"][0]["observed"] == 3
    assert "detector state: replayed 2 stored transactions" in server.output()
    assert model["labels_from_store"] == 2 and model["labels_without_inputs"] == 0, model


async def test_after_sigkill_with_no_snapshot_yet_the_state_is_rebuilt(tmp_path: Path) -> None:
    """Killed in its first `state_snapshot_interval`: no snapshot on disk at all."""
    data = tmp_path / "data"
    probes = card_testing("ct", "acct-first", n=3, at=BASE)
    with contextlib.ExitStack() as stack:
        server = await start_live(data, stack, **INTERVAL)
        await post_transactions(server.url, probes[:2])
        _kill(server)
        assert not (data / "detector-state.msgpack").exists()
        server = await start_live(data, stack, **INTERVAL)
        verdict = (await post_transactions(server.url, probes[2:]))[0]
        assert server.stop() == 0
    assert _codes(verdict) == ["card_testing"], verdict
    assert "detector state: rebuilt from 2 stored transactions" in server.output()


MERCHANT_RULES = """
[[rules]]
name = "merchant_burst"
description = "Many payments at one merchant in ten minutes, whoever makes them."
score = 0.6
severity = "high"
all = [{ feature = "merchant_count_10m", op = ">=", value = 4 }]
reason = "{merchant_count_10m} payments at this merchant in 10 min"
"""


async def test_after_sigkill_a_merchant_shared_by_accounts_counts_each_of_their_payments(
    tmp_path: Path,
) -> None:
    """A merchant's window is one key for every account: two accounts' payments there
    after the snapshot, a crash, then a third account's: the fourth there in ten minutes."""
    data, rules = tmp_path / "data", tmp_path / "merchant.toml"
    rules.write_text(MERCHANT_RULES)
    at = [BASE + dt.timedelta(seconds=30 * i) for i in range(3)]
    payments = [tx(f"shop-{i}", f"acct-shop-{i}", at=at[i], merchant="m-shared") for i in range(3)]
    with contextlib.ExitStack() as stack:
        server = await start_live(data, stack, rules_path=rules, **INTERVAL)
        await post_transactions(
            server.url, [tx("before", "acct-other", at=BASE, merchant="m-shared")]
        )
        await _snapshot(server)
        assert not any(_codes(v) for v in await post_transactions(server.url, payments[:2]))
        _kill(server)
        server = await start_live(data, stack, rules_path=rules, **INTERVAL)
        verdict = (await post_transactions(server.url, payments[2:]))[0]
        assert server.stop() == 0
    assert _codes(verdict) == ["merchant_burst"], verdict
    assert verdict["reasons"][0]["observed"] == 4  # the one before the snapshot, and three


async def test_after_a_clean_shutdown_nothing_is_replayed(tmp_path: Path) -> None:
    """The shutdown snapshot is written after the loop drains: it holds everything stored,
    and a replay would count it twice."""
    data = tmp_path / "data"
    probes = card_testing("ct", "acct-clean", n=3, at=BASE)
    with contextlib.ExitStack() as stack:
        server = await start_live(data, stack, **INTERVAL)
        await post_transactions(server.url, probes[:2])
        assert server.stop() == 0
        server = await start_live(data, stack, **INTERVAL)
        verdict = (await post_transactions(server.url, probes[2:]))[0]
        assert server.stop() == 0
    assert _codes(verdict) == ["card_testing"], verdict
    assert verdict["reasons"][0]["observed"] == 3
    assert "detector state restored" in server.output()
    assert "detector state: replayed" not in server.output()


MERCHANT_RISK_RULES = """
[[rules]]
name = "merchant_risk"
description = "Every payment: what merchant risk and the amount's fraud rate say of it."
score = 0.01
severity = "low"
all = [{ feature = "merchant_labels_30d", op = ">=", value = 0 }]
reason = "{merchant_frauds_7d} of {merchant_labels_7d} in 7 d, {merchant_frauds_30d} of \
{merchant_labels_30d} in 30 d, {merchant_frauds_2d} of {merchant_labels_2d} in 2 d, run \
{merchant_fraud_run}; amount {amount_fraud_rate:.17g}"
"""
RISK_AT = BASE - dt.timedelta(days=4)


def _stamp(days: float) -> str:
    return (BASE - dt.timedelta(days=days)).isoformat()


# r-0..r-5 at one merchant and one amount. Before the snapshot: two frauds and a legitimate.
RISK_BEFORE = [[("r-0", "fraud", 3.0), ("r-1", "fraud", 2.9), ("r-2", "legitimate", 2.8)]]
# After it: two more frauds; then r-0's fraud (from before the snapshot) and r-3's (from
# after it) corrected to legitimate; then a last fraud, days later (the rate decays).
RISK_AFTER = [
    [("r-3", "fraud", 2.0), ("r-4", "fraud", 1.0)],
    [("r-0", "legitimate", 0.9), ("r-3", "legitimate", 0.5)],
    [("r-5", "fraud", 0.1)],
]


async def _label_requests(server: LiveServer, requests: list[list[tuple[str, str, float]]]) -> None:
    async with aiohttp.ClientSession(headers=AUTH) as http:
        for request in requests:
            labels = [
                {"transaction_id": tx_id, "label": label, "labelled_at": _stamp(days)}
                for tx_id, label, days in request
            ]
            async with http.post(f"{server.url}/api/v1/labels", json=labels) as resp:
                assert resp.status == 200, await resp.text()
                results = (await resp.json())["results"]
            assert all(r["status"] in ("created", "updated") for r in results), results


async def _merchant_risk(server: LiveServer) -> str:
    """What merchant risk and the amount's rate say of a new payment at r-*'s merchant."""
    probe = tx("r-probe", "acct-r-probe", "250.00", at=BASE, merchant="m-risk")
    (verdict,) = await post_transactions(server.url, [probe])
    (reason,) = [r for r in verdict["reasons"] if r["code"] == "merchant_risk"]
    message: str = reason["message"]
    return message


async def _labelled_merchant(
    data: Path, stack: contextlib.ExitStack, rules: Path, *, snapshot: bool = False
) -> LiveServer:
    """A server with r-0..r-5 stored and RISK_BEFORE's labels; with `snapshot`, written
    after those labels."""
    rules.write_text(MERCHANT_RISK_RULES)
    server = await start_live(data, stack, rules_path=rules, **INTERVAL)
    payments = [
        tx(f"r-{i}", f"acct-r-{i}", "250.00", RISK_AT + dt.timedelta(minutes=i), merchant="m-risk")
        for i in range(6)
    ]
    await post_transactions(server.url, payments)
    await _label_requests(server, RISK_BEFORE)
    if snapshot:
        await _snapshot(server)
    return server


async def test_after_sigkill_labels_after_the_snapshot_count_in_merchant_risk(
    tmp_path: Path,
) -> None:
    """Labels and corrections after the snapshot, a crash: merchant risk and the amount's
    fraud rate are those of a server that never stopped (they lacked every one of them)."""
    rules = tmp_path / "risk.toml"
    with contextlib.ExitStack() as stack:
        steady = await _labelled_merchant(tmp_path / "steady", stack, rules)
        await _label_requests(steady, RISK_AFTER)
        expected = await _merchant_risk(steady)
        assert steady.stop() == 0

        server = await _labelled_merchant(tmp_path / "data", stack, rules, snapshot=True)
        await _label_requests(server, RISK_AFTER)
        _kill(server)
        server = await start_live(tmp_path / "data", stack, rules_path=rules, **INTERVAL)
        found = await _merchant_risk(server)
        assert server.stop() == 0
    # r-1, r-4 and r-5 are frauds; r-0, r-2 and r-3 legitimate.
    assert expected.startswith("3 of 6 in 7 d, 3 of 6 in 30 d"), expected
    assert found == expected
    assert "merchant risk: replayed 5 label changes" in server.output()


async def test_after_a_clean_shutdown_no_label_is_taken_in_twice(tmp_path: Path) -> None:
    """The shutdown snapshot holds every label change: none is replayed."""
    rules = tmp_path / "risk.toml"
    with contextlib.ExitStack() as stack:
        steady = await _labelled_merchant(tmp_path / "steady", stack, rules)
        await _label_requests(steady, RISK_AFTER)
        expected = await _merchant_risk(steady)
        assert steady.stop() == 0

        server = await _labelled_merchant(tmp_path / "data", stack, rules, snapshot=True)
        await _label_requests(server, RISK_AFTER)
        assert server.stop() == 0
        server = await start_live(tmp_path / "data", stack, rules_path=rules, **INTERVAL)
        found = await _merchant_risk(server)
        assert server.stop() == 0
    assert found == expected
    assert "merchant risk: replayed" not in server.output()
