"""The scorecard: pure counting of verdicts against known labels, per scenario."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.scorecard import EPISODE_GAP_S, NORMAL, UNSPECIFIED, Scorecard, _Frauds
from server.state import TRAINER
from tests.conftest import AUTH, make_settings
from tests.test_api import post_batch
from tests.test_ws import receive

H = 3600.0


def by_name(snapshot: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["scenario"]: s for s in snapshot["scenarios"]}


def test_nothing_to_show_until_a_labelled_transaction_has_a_verdict() -> None:
    card = Scorecard()
    assert card.snapshot() is None
    card.add_verdict("t1", 0.0, "a", True)
    assert card.snapshot() is None
    card.add_truth("t2", True, "card_testing")
    assert card.snapshot() is None


def test_precision_recall_and_alerts_per_hour_per_scenario() -> None:
    card = Scorecard()
    # Over two hours of event time: a card-testing episode alerted from its third try,
    # ordinary purchases with one false alert, and a trip abroad alerted once.
    for i in range(4):
        card.add_truth(f"ct{i}", True, "card_testing")  # truth first (the simulator)
        card.add_verdict(f"ct{i}", 1000.0 + 20 * i, "victim", i >= 2)
    for i in range(10):
        card.add_verdict(f"ok{i}", i * 0.2 * H, f"c{i}", i == 3)  # verdict first (an API label)
        card.add_truth(f"ok{i}", False, None)
    card.add_verdict("trip1", 2 * H, "traveller", True)
    card.add_truth("trip1", False, "legit_travel")
    card.add_verdict("trip2", 2 * H, "traveller", False)
    card.add_truth("trip2", False, "legit_travel")

    snap = card.snapshot()
    assert snap is not None
    assert snap["labelled"] == 16
    assert snap["hours"] == 2.0
    overall = snap["overall"]
    assert (overall["transactions"], overall["frauds"], overall["alerts"]) == (16, 4, 4)
    assert overall["alerted_frauds"] == 2
    assert overall["precision"] == 0.5 and overall["recall"] == 0.5
    assert overall["alerts_per_hour"] == 2.0
    scenarios = by_name(snap)
    assert set(scenarios) == {"card_testing", NORMAL, "legit_travel"}
    ct = scenarios["card_testing"]
    assert ct["kind"] == "fraud"
    assert (ct["precision"], ct["recall"], ct["alerts_per_hour"]) == (1.0, 0.5, 1.0)
    assert (ct["episodes"], ct["episodes_detected"]) == (1, 1)
    assert ct["detection_delay_s"] == {"median": 40.0, "p90": 40.0}  # third try, 40 s in
    normal = scenarios[NORMAL]
    assert normal["kind"] == "legitimate"
    assert (normal["precision"], normal["recall"], normal["alerts"]) == (0.0, None, 1)
    assert scenarios["legit_travel"]["alerts_per_hour"] == 0.5


def test_detection_delay_per_episode_and_missed_episodes() -> None:
    card = Scorecard()
    # Three takeover episodes: caught at once, caught 10 min in, never caught.
    plan = {"a1": [True], "a2": [False, False, True], "a3": [False, False]}
    for account, alerts in plan.items():
        for i, alerted in enumerate(alerts):
            tx_id = f"{account}-{i}"
            card.add_truth(tx_id, True, "account_takeover")
            card.add_verdict(tx_id, 5 * H + 300.0 * i, account, alerted)
    # The same account and scenario a day and more later is a new episode.
    card.add_truth("a1-later", True, "account_takeover")
    card.add_verdict("a1-later", 5 * H + 2 * 86_400.0, "a1", False)
    ato = by_name(card.snapshot() or {})["account_takeover"]
    assert (ato["episodes"], ato["episodes_detected"]) == (4, 2)
    assert ato["detection_delay_s"]["median"] in (0.0, 600.0)
    assert ato["detection_delay_s"]["p90"] == 600.0
    assert ato["recall"] == pytest.approx(2 / 7, abs=1e-4)


def test_labels_without_a_scenario_and_out_of_order_delays() -> None:
    card = Scorecard()
    # A chargeback for a transaction counted before an earlier one of the same episode.
    card.add_verdict("late", 1000.0, "acct", True)
    card.add_truth("late", True)
    card.add_verdict("early", 400.0, "acct", False)
    card.add_truth("early", True)
    unspecified = by_name(card.snapshot() or {})[UNSPECIFIED]
    assert unspecified["episodes"] == 1
    assert unspecified["detection_delay_s"]["median"] == 600.0


def test_waiting_halves_are_bounded() -> None:
    card = Scorecard(max_waiting=3)
    for i in range(10):
        card.add_verdict(f"v{i}", float(i), "a", False)
        card.add_truth(f"t{i}", True, None)
    assert len(card._verdicts) == 3 and len(card._truths) == 3
    card.add_truth("v9", False, None)  # the newest verdict still waits for its label
    assert card.snapshot() is not None
    card.add_truth("v0", False, None)  # the oldest was given up: it waits in turn
    assert card.counted == 1


# --- in the server --------------------------------------------------------------------------


async def test_scorecard_endpoint_and_stats_message(aiohttp_client: Any, tmp_path: Path) -> None:
    client: TestClient = await aiohttp_client(create_app(make_settings(tmp_path)))
    resp = await client.get("/api/v1/scorecard", headers=AUTH)
    assert resp.status == 200
    body = await resp.json()
    assert body["scorecard"] is None
    assert body["model"]["active"] is False
    assert (await client.get("/api/v1/scorecard")).status == 401

    t0 = dt.datetime(2026, 3, 2, 14, 0, tzinfo=dt.UTC)
    records = [
        {"id": f"s-{i}", "timestamp": (t0 + dt.timedelta(seconds=20 * i)).isoformat(),
         "account_id": "victim", "merchant_id": f"m-{i}", "amount": "1.00", "currency": "USD"}
        for i in range(4)
    ]  # fmt: skip
    verdicts = await post_batch(client, records)
    labels = [{"transaction_id": f"s-{i}", "label": "fraud"} for i in range(4)]
    assert (await client.post("/api/v1/labels", json=labels, headers=AUTH)).status == 200
    body = await (await client.get("/api/v1/scorecard", headers=AUTH)).json()
    card = body["scorecard"]
    alerted = sum(v["alert_id"] is not None for v in verdicts)
    assert alerted >= 1
    assert card["overall"]["frauds"] == 4
    assert card["overall"]["alerted_frauds"] == alerted
    [unspecified] = card["scenarios"]
    assert unspecified["scenario"] == UNSPECIFIED and unspecified["episodes_detected"] == 1

    await client.app[TRAINER].idle.wait()  # type: ignore[index]
    async with client.ws_connect("/ws", headers=AUTH) as ws:
        stats = await asyncio.wait_for(receive(ws, "stats"), 5)
    assert stats["scorecard"] == card
    assert stats["model"]["labels_learnt"] == 4


def test_a_transaction_labelled_twice_is_counted_once() -> None:
    card = Scorecard()
    card.add_truth("t-1", False)
    card.add_verdict("t-1", 1_000.0, "a-1", False)
    card.add_truth("t-1", True)  # a chargeback overturns the analyst's "legitimate"
    card.add_verdict("t-1", 1_000.0, "a-1", False)  # and its verdict read from the store again
    snapshot = card.snapshot()
    assert snapshot is not None
    assert snapshot["labelled"] == 1
    assert card.waiting == 0


def test_a_correction_counts_as_if_only_the_new_label_had_come() -> None:
    # An episode of four frauds alerted from the third; then the chargebacks of the first
    # and the third are reversed, and a legitimate purchase turns out a fraud after all.
    def verdicts(card: Scorecard) -> None:
        for i in range(4):
            card.add_verdict(f"ct{i}", 1000.0 + 20 * i, "victim", i >= 2)
        card.add_verdict("ok", 3 * H, "victim", False)

    live = Scorecard()
    verdicts(live)
    for i in range(4):
        live.add_truth(f"ct{i}", True, "card_testing")
    live.add_truth("ok", False)
    live.add_truth("ct0", False)
    live.add_truth("ct2", False)
    live.add_truth("ok", True)

    fresh = Scorecard()  # the latest labels alone, counted in another order: a rebuild
    for tx_id, is_fraud, scenario in [("ok", True, None), ("ct3", True, "card_testing"),
                                      ("ct2", False, None), ("ct1", True, "card_testing"),
                                      ("ct0", False, None)]:  # fmt: skip
        fresh.add_truth(tx_id, is_fraud, scenario)
    verdicts(fresh)
    snapshot = live.snapshot()
    assert snapshot == fresh.snapshot()
    assert snapshot is not None and snapshot["labelled"] == 5
    scenarios = by_name(snapshot)
    ct = scenarios["card_testing"]
    assert (ct["transactions"], ct["frauds"], ct["alerted_frauds"]) == (2, 2, 1)
    # The episode now begins at ct1 (1020 s) and is first alerted at ct3 (1060 s).
    assert ct["episodes"] == 1 and ct["detection_delay_s"]["median"] == 40.0
    assert scenarios[NORMAL]["alerts"] == 1  # ct2's alert, a false one now
    assert scenarios[UNSPECIFIED]["frauds"] == 1


def test_a_correction_that_empties_a_scenario_removes_its_row() -> None:
    card = Scorecard()
    card.add_verdict("t-1", 1_000.0, "a-1", True)
    card.add_truth("t-1", True, "account_takeover")
    card.add_truth("t-1", False)  # the takeover was the owner after all
    snapshot = card.snapshot()
    assert snapshot is not None
    assert [s["scenario"] for s in snapshot["scenarios"]] == [NORMAL]
    assert snapshot["overall"]["frauds"] == 0 and snapshot["overall"]["alerts"] == 1


@pytest.mark.parametrize("seed", range(40))
def test_an_accounts_episodes_are_the_same_whatever_order_frauds_come_and_go(seed: int) -> None:
    # In-order frauds take a shortcut rather than regrouping all of the account's frauds
    # (quadratic for a long card-testing run); it must give what regrouping from scratch
    # gives, with frauds arriving late and corrections taking some out.
    rng = random.Random(seed)
    frauds, episodes, detected = _Frauds(), 0, 0
    for _ in range(rng.randint(1, 40)):
        late = rng.uniform(0, 5 * EPISODE_GAP_S)
        t = frauds.times[-1][0] + rng.uniform(0, 2 * EPISODE_GAP_S) if frauds.times else late
        step = frauds.put(late if rng.random() < 0.3 else t, rng.random() < 0.3)
        episodes, detected = episodes + step[0], detected + step[1]
        if rng.random() < 0.2:
            step = frauds.take(*rng.choice(frauds.times))
            episodes, detected = episodes + step[0], detected + step[1]
    fresh = _Frauds(times=list(frauds.times))
    fresh._regroup()
    assert [(e.start, e.detected_at) for e in frauds.episodes] == [
        (e.start, e.detected_at) for e in fresh.episodes
    ]
    assert (episodes, detected) == (len(fresh.episodes), fresh.detected)
