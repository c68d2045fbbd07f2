"""Backtest: metrics against hand-computed values, label delay, report files, the command."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import functools
import gzip
import html
import io
import json
import math
import random
from decimal import Decimal
from html.parser import HTMLParser
from itertools import compress
from pathlib import Path
from typing import Any

import pytest

from server import backtest
from server.backtest import (
    DECISIONS,
    day_function,
    in_event_time,
    label_hook,
    parse_duration,
    run_backtest,
)
from server.backtest_report import build_report, rule_notes
from server.cli import main
from server.detection.detector import Detector
from server.detection.model import ModelSlot, OnlineLogit, active_inputs
from server.detection.verdict import Scored
from server.metrics_offline import (
    average_precision,
    average_precision_of_groups,
    card_precision_at_k,
    mean,
    pr_curve,
    pr_curve_of_groups,
    precision_at_k,
    precision_at_k_of_groups,
    roc_auc,
    roc_auc_of_groups,
    score_groups,
)
from server.replay_source import Row, Source, SourceError, SourceOptions
from server.transactions import Transaction
from simulator import Simulator

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


def txn(id: str, at: dt.datetime, account: str = "a-1", amount: str = "20.00") -> Transaction:
    return Transaction(
        id=id, timestamp=at, account_id=account, merchant_id="m-1", amount=Decimal(amount),
        currency="USD",
    )  # fmt: skip


# --- metrics ------------------------------------------------------------------------------------


def test_roc_auc_by_hand() -> None:
    # scikit-learn's documented example: 3 of the 4 fraud/legit pairs are ordered right.
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert roc_auc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0


def test_roc_auc_averages_ties() -> None:
    # Fraud at 0.9 beats both legit (2 pairs); fraud at 0.5 ties both (2 * 1/2).
    assert roc_auc([0.5, 0.5, 0.5, 0.9], [1, 0, 0, 1]) == pytest.approx(0.75)
    assert roc_auc([0.3, 0.3, 0.3], [1, 0, 1]) == pytest.approx(0.5)


def test_metrics_undefined_with_one_class() -> None:
    assert roc_auc([0.1, 0.2], [0, 0]) is None
    assert roc_auc([0.1, 0.2], [1, 1]) is None
    assert average_precision([0.1, 0.2], [0, 0]) is None
    assert average_precision([], []) is None


def test_average_precision_by_hand() -> None:
    # Thresholds 0.8, 0.4, 0.35, 0.1 → (P, R) = (1, ½), (½, ½), (⅔, 1), (½, 1):
    # AP = ½·1 + 0·½ + ½·⅔ + 0·½ = 5/6 (scikit-learn's example gives 0.8333).
    assert average_precision([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(5 / 6)
    # A tie is one threshold: (1, ½) at 0.9, then (½, 1) at 0.5 → ½ + ½·½.
    assert average_precision([0.5, 0.5, 0.5, 0.9], [1, 0, 0, 1]) == pytest.approx(0.75)
    assert average_precision([0.9, 0.1], [1, 0]) == 1.0


def test_pr_curve_points() -> None:
    points = pr_curve([0.5, 0.5, 0.5, 0.9], [1, 0, 0, 1])
    assert [(p.threshold, p.flagged, p.precision, p.recall) for p in points] == [
        (0.9, 1, 1.0, 0.5),
        (0.5, 4, 0.5, 1.0),
    ]


def _auc_by_pairs(scores: list[float], labels: list[int]) -> float:
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def _ap_by_definition(scores: list[float], labels: list[int]) -> float:
    total, previous = 0.0, 0.0
    for threshold in sorted(set(scores), reverse=True):
        flagged = [y for s, y in zip(scores, labels, strict=True) if s >= threshold]
        recall = sum(flagged) / sum(labels)
        total += (recall - previous) * sum(flagged) / len(flagged)
        previous = recall
    return total


@pytest.mark.parametrize("seed", range(5))
def test_metrics_match_their_definitions_on_random_ties(seed: int) -> None:
    rng = random.Random(seed)
    scores = [rng.choice([0.0, 0.15, 0.5, 0.65, 0.8, rng.random()]) for _ in range(300)]
    labels = [int(rng.random() < 0.1 + 0.5 * s) for s in scores]
    assert roc_auc(scores, labels) == pytest.approx(_auc_by_pairs(scores, labels))
    assert average_precision(scores, labels) == pytest.approx(_ap_by_definition(scores, labels))


@pytest.mark.parametrize("seed", range(5))
def test_score_groups_count_each_distinct_score(seed: int) -> None:
    rng = random.Random(seed)
    scores = [rng.choice([0.0, 0.15, 0.5, 0.65, 0.8, rng.random()]) for _ in range(300)]
    labels = [int(rng.random() < 0.1 + 0.5 * s) for s in scores]
    pairs = list(zip(scores, labels, strict=True))
    distinct = sorted(set(scores), reverse=True)
    expected = [(t, pairs.count((t, 1)), pairs.count((t, 0))) for t in distinct]
    assert score_groups(scores, labels) == expected
    assert score_groups([], []) == []
    with pytest.raises(ValueError):
        score_groups([0.1, 0.2], [1])


@pytest.mark.parametrize("seed", range(5))
def test_metrics_of_groups_agree_exactly_with_the_sequence_forms(seed: int) -> None:
    rng = random.Random(seed)
    scores = [rng.choice([0.0, 0.15, 0.5, 0.65, 0.8, rng.random()]) for _ in range(300)]
    labels = [int(rng.random() < 0.1 + 0.5 * s) for s in scores]
    groups = score_groups(scores, labels)
    curve = pr_curve(scores, labels)
    assert pr_curve_of_groups(groups) == curve
    assert roc_auc_of_groups(groups) == roc_auc(scores, labels)
    # Walking the groups gives the very float that summing over the curve's points does.
    total, previous = 0.0, 0.0
    for point in curve:
        total += (point.recall - previous) * point.precision
        previous = point.recall
    assert average_precision_of_groups(groups) == average_precision(scores, labels) == total
    for none in ([], score_groups([0.3, 0.2], [0, 0])):
        assert average_precision_of_groups(none) is None
        assert roc_auc_of_groups(none) is None
    # Every k: inside a tied group, at its edge, beyond the number of transactions.
    for k in range(1, len(scores) + 3):
        expected = precision_at_k(scores, labels, k)
        assert precision_at_k_of_groups(groups, scores, labels, k) == expected


def test_precision_at_k_of_groups_takes_the_earliest_of_a_tie() -> None:
    scores, labels = [1, 0.5, 1.0, 1, 0.5], [0, 1, 1, 1, 0]  # 1 and 1.0 are one score
    groups = score_groups(scores, labels)
    for k in range(1, 7):
        expected = precision_at_k(scores, labels, k)
        assert precision_at_k_of_groups(groups, scores, labels, k) == expected


def test_precision_at_k_divides_by_k_and_keeps_order_in_ties() -> None:
    scores = [0.2, 0.9, 0.5, 0.5, 0.1]
    labels = [1, 1, 0, 1, 0]
    # Top 2: 0.9 (fraud), then the first 0.5 (legit): ties go to the earlier transaction.
    assert precision_at_k(scores, labels, 2) == 0.5
    assert precision_at_k(scores, labels, 3) == pytest.approx(2 / 3)
    # Fewer transactions than k: still divided by k.
    assert precision_at_k(scores, labels, 10) == pytest.approx(3 / 10)


def test_card_precision_at_k_on_a_crafted_example() -> None:
    # (day, account, score, label); k = 2.
    rows = [
        # Day 1: top 2 accounts by max score are A (0.9, fraud) and B (0.8, legit).
        (1, "A", 0.9, 1),
        (1, "B", 0.8, 0),
        (1, "C", 0.3, 1),
        (1, "C", 0.7, 1),
        (1, "D", 0.1, 1),
        # Day 2: A was detected on day 1 and is left out despite scoring highest;
        # D's max score (0.55) and max label (fraud) come from different transactions;
        # E ties D at 0.55 but reached it later, so D ranks first.
        (2, "A", 0.95, 1),
        (2, "C", 0.6, 1),
        (2, "D", 0.55, 0),
        (2, "E", 0.55, 0),
        (2, "D", 0.1, 1),
        (2, "B", 0.2, 0),
    ]
    ids = {name: i for i, name in enumerate("ABCDE")}
    result = card_precision_at_k(
        [r[0] for r in rows],
        [ids[r[1]] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        2,
    )
    assert [(d.day, d.cards, d.compromised, d.detected, d.precision) for d in result] == [
        (1, 4, 3, 1, 0.5),  # A, C, D compromised (C at 0.7 is third): only A in the top 2
        (2, 4, 2, 2, 1.0),  # without A: C (0.6) and D (0.55, fraud) — both fraudulent
    ]


def test_card_precision_at_k_keeps_undetected_fraud_cards() -> None:
    # C was fraudulent on day 1 but not in the top 1: it is not "detected" and stays in day 2.
    days, accounts = [1, 1, 2], [0, 1, 1]
    result = card_precision_at_k(days, accounts, [0.9, 0.5, 0.4], [0, 1, 1], 1)
    assert [d.precision for d in result] == [0.0, 1.0]


def _card_days_by_definition(
    days: list[int], accounts: list[int], scores: list[float], labels: list[int], k: int
) -> list[tuple[int, int, int, int]]:
    """(day, cards, compromised, detected) straight from card_precision_at_k's docstring."""
    detected: set[int] = set()
    out = []
    for day in sorted(set(days)):
        rows = [i for i in range(len(days)) if days[i] == day and accounts[i] not in detected]
        cards = {accounts[i] for i in rows}
        best = {a: max(scores[i] for i in rows if accounts[i] == a) for a in cards}
        first = {
            a: min(i for i in rows if accounts[i] == a and scores[i] == best[a]) for a in cards
        }
        fraud = {a for a in cards if max(labels[i] for i in rows if accounts[i] == a)}
        top = sorted(cards, key=lambda a: (-best[a], first[a]))[:k]
        hits = [a for a in top if a in fraud]
        detected.update(hits)
        out.append((day, len(cards), len(fraud), len(hits)))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_card_precision_at_k_matches_its_definition_on_random_ties(seed: int) -> None:
    rng = random.Random(seed)
    n = 400
    days = [rng.randrange(4) for _ in range(n)]
    if seed % 2:  # in event-time order, as a backtest gives them
        days.sort()
    accounts = [rng.randrange(30) for _ in range(n)]
    scores = [rng.choice([0.0, 0.15, 0.5, 0.65, 0.8]) for _ in range(n)]
    labels = [int(rng.random() < 0.05 + 0.3 * s) for s in scores]
    k = rng.choice([1, 3, 10, 50])
    result = card_precision_at_k(days, accounts, scores, labels, k)
    expected = _card_days_by_definition(days, accounts, scores, labels, k)
    assert [(d.day, d.cards, d.compromised, d.detected) for d in result] == expected
    assert [d.precision for d in result] == [detected / k for *_, detected in expected]
    with pytest.raises(ValueError):
        card_precision_at_k(days, accounts, scores, labels[:-1], k)


# --- event time and label delay ------------------------------------------------------------


class Recorder:
    """A detector stand-in that logs what it is shown, in order."""

    review_threshold = 0.5
    block_threshold = 0.8
    rules_version = "test"

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dt.datetime]] = []
        self.seen: list[Transaction] = []

    def score(self, tx: Transaction) -> Scored:
        self.events.append(("score", tx.id, tx.timestamp))
        self.seen.append(tx)
        return Scored(0.1, "allow", "low", (), self.rules_version)

    def learn_label(self, tx_id: str, account_id: str, is_fraud: bool, at: dt.datetime) -> None:
        self.events.append(("label", tx_id, at))


def _rows(times: list[dt.datetime]) -> list[Row]:
    return [Row(i + 2, txn(f"t{i}", at), i % 3 == 0) for i, at in enumerate(times)]


def test_labels_are_revealed_after_the_delay_and_never_before() -> None:
    delay = 3 * HOUR
    # Irregular times, mixed offsets, and one transaction exactly when t0's label is due.
    east = dt.timezone(dt.timedelta(hours=5))
    times = [
        T0,
        T0 + 0.5 * HOUR,
        (T0 + 2.99 * HOUR).astimezone(east),
        T0 + delay,  # exactly due: t0's label is known by then
        T0 + 3.2 * HOUR,
        (T0 + 9 * HOUR).astimezone(east),
        T0 + 9.5 * HOUR,
    ]
    rows = _rows(times)
    recorder = Recorder()
    outcome = run_backtest(
        rows,
        recorder,
        label_delay=delay,
        on_label=label_hook(recorder),
        day_of=day_function(dt.UTC),
    )
    events = recorder.events
    scored_at = {tx_id: at for kind, tx_id, at in events if kind == "score"}
    labels = [(i, tx_id, at) for i, (kind, tx_id, at) in enumerate(events) if kind == "label"]
    assert labels, "no label was revealed"
    for position, tx_id, at in labels:
        assert at == scored_at[tx_id] + delay
        before = [t for kind, _, t in events[:position] if kind == "score"]
        after = [t for kind, _, t in events[position + 1 :] if kind == "score"]
        assert all(t >= at for t in after), "a label was revealed before its delay had passed"
        assert all(t < at for t in before[before.index(scored_at[tx_id]) + 1 :]), "revealed late"
    # Every labelled row is revealed or still pending; t0's label comes right before t3.
    assert [e[:2] for e in events[3:5]] == [("label", "t0"), ("score", "t3")]
    assert outcome.labels_revealed + outcome.labels_pending == sum(
        r.label is not None for r in rows
    )
    # Due at +3 h, +3.5 h, +5.99 h, +6 h, +6.2 h, +12 h, +12.5 h; the stream ends at +9.5 h.
    assert outcome.labels_revealed == 5


def test_zero_delay_reveals_a_label_only_after_its_transaction() -> None:
    recorder = Recorder()
    rows = _rows([T0, T0, T0 + HOUR])
    run_backtest(
        rows,
        recorder,
        label_delay=dt.timedelta(0),
        on_label=label_hook(recorder),
        day_of=day_function(dt.UTC),
    )
    assert [e[:2] for e in recorder.events] == [
        ("score", "t0"),
        ("label", "t0"),  # due at T0: known before the next transaction at T0
        ("score", "t1"),
        ("label", "t1"),
        ("score", "t2"),
    ]


def test_a_detector_without_a_model_ignores_labels() -> None:
    detector = Detector()
    assert not detector.learns_labels
    hook = label_hook(detector)
    hook(txn("x", T0), True, T0)  # nothing learns, nothing raised
    outcome = run_backtest(
        _rows([T0, T0 + 2 * HOUR]),
        detector,
        label_delay=HOUR,
        on_label=hook,
        day_of=day_function(dt.UTC),
    )
    assert outcome.labels_revealed == 1


def test_revealed_labels_train_the_model_once_each() -> None:
    slot = ModelSlot(learner=OnlineLogit(), min_labels=1, min_frauds=0)
    detector = Detector(model=slot)
    assert detector.learns_labels
    rows = _rows([T0 + i * 0.25 * HOUR for i in range(12)])
    outcome = run_backtest(
        rows, detector, label_delay=HOUR, on_label=label_hook(detector),
        day_of=day_function(dt.UTC),
    )  # fmt: skip
    assert slot.learner is not None
    assert outcome.labels_revealed > 0
    assert slot.learner.count == outcome.labels_revealed
    # Learnt inputs are forgotten; the rest wait for labels that were not yet due.
    assert len(slot.remembered) == len(rows) - outcome.labels_revealed


def test_unlabelled_rows_are_not_kept_for_the_model_and_labelled_ones_are_until_due() -> None:
    # No limit on the model's memory (the backtest's default): it keeps a labelled row's
    # inputs until the label is learnt, and lets go of an unlabelled row's at once.
    slot = ModelSlot(memory=None, learner=OnlineLogit(), min_labels=1, min_frauds=0)
    detector = Detector(model=slot)
    rows = [row._replace(label=None) if i % 2 else row for i, row in enumerate(
        _rows([T0 + i * 0.25 * HOUR for i in range(40)]))]  # fmt: skip
    outcome = run_backtest(
        rows, detector, label_delay=2 * HOUR, on_label=label_hook(detector),
        day_of=day_function(dt.UTC),
    )  # fmt: skip
    labelled = [row for row in rows if row.label is not None]
    assert slot.learner is not None
    assert slot.learner.count == outcome.labels_revealed == len(labelled) - outcome.labels_pending
    assert list(slot.remembered) == [
        row.transaction.id for row in labelled[-outcome.labels_pending :]
    ]
    assert slot.evicted == 0
    # A label of a row 15 minutes apart from the next comes 8 rows after its own.
    assert outcome.longest_wait_rows == 8


def test_a_model_memory_too_small_for_the_label_delay_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Labels a day late over ~3,000 rows a day: 1,000 remembered inputs are let go of
    # before their labels are due, and the model would silently learn nothing.
    stream = Simulator(seed=3, rate=1 / 30, start=T0, accounts=300).generate(4000)
    data = tmp_path / "sim.csv"
    with data.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "timestamp", "account_id", "merchant_id", "amount", "is_fraud"])
        for item in stream:
            tx = item.transaction
            writer.writerow([tx.id, tx.timestamp.isoformat(), tx.account_id, tx.merchant_id,
                             tx.amount, int(item.is_fraud)])  # fmt: skip
    args = ["backtest", str(data), "--label", "is_fraud", "--label-delay", "1d"]
    small, unlimited = tmp_path / "small.json", tmp_path / "unlimited.json"
    assert main([*args, "--model-memory", "1000", "--report", str(small)]) == 0
    out = capsys.readouterr().out
    meta = json.loads(small.read_text())["meta"]
    assert meta["labels_revealed"] > 0
    assert meta["inputs_let_go"] == len(stream) - 1000
    wait = meta["longest_label_wait_rows"]
    assert 2000 < wait < 4000
    assert (
        f"WARNING: the model let go of the inputs of {len(stream) - 1000:,} labelled "
        f"transactions before their label was due (--model-memory 1,000)"
    ) in out
    assert f"run again with --model-memory {wait + 1:,} or more, or without it" in out

    assert main([*args, "--report", str(unlimited)]) == 0
    assert "WARNING" not in capsys.readouterr().out
    meta = json.loads(unlimited.read_text())["meta"]
    assert meta["inputs_let_go"] == 0
    assert meta["model_memory"] is None
    assert main([*args, "--model-memory", str(wait + 1), "--report", str(small)]) == 0
    assert json.loads(small.read_text())["meta"]["inputs_let_go"] == 0


class _InputsScored(ModelSlot):
    """A model slot that records the inputs of each transaction it scores, in order."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scored: list[tuple[str, tuple[tuple[int, ...], tuple[float, ...]]]] = []

    def rescore(self, tx_id: str, raw: bytes, *args: Any, **kwargs: Any) -> Scored | None:
        index, values = active_inputs(raw)
        self.scored.append((tx_id, (tuple(index), tuple(values))))
        return super().rescore(tx_id, raw, *args, **kwargs)


class _LabelsLearnt(OnlineLogit):
    """A learner that records the inputs and label of each example it learns."""

    def __init__(self) -> None:
        super().__init__()
        self.learnt: list[tuple[tuple[tuple[int, ...], tuple[float, ...]], bool]] = []

    def learn_active(self, index: Any, values: Any, is_fraud: bool, weight: float = 1.0) -> None:
        self.learnt.append(((tuple(index), tuple(values)), is_fraud))
        super().learn_active(index, values, is_fraud, weight)


@pytest.mark.parametrize("ready", [False, True], ids=["rules-only", "model-scoring"])
def test_a_repeated_id_has_its_label_learnt_from_its_latest_row_only(ready: bool) -> None:
    # "dup" three times, each while the label of the one before is still to come (1 h):
    # every later row replaces the inputs kept under that id, so an earlier row's label
    # must not be learnt from them (it was: the later row's inputs, the earlier's label).
    minute = dt.timedelta(minutes=1)
    plan = [("a", 0, True), ("dup", 10, True), ("dup", 20, False), ("b", 30, False),
            ("c", 75, True), ("dup", 78, True), ("d", 180, False), ("e", 300, False)]  # fmt: skip
    rows = [
        Row(i + 2, txn(tx_id, T0 + at * minute, amount=f"{20 + 7 * i}.00"), label)
        for i, (tx_id, at, label) in enumerate(plan)
    ]
    learner = _LabelsLearnt()
    slot = _InputsScored(
        memory=None, learner=learner, min_labels=10_000,
        predictor=OnlineLogit().freeze() if ready else None,
    )  # fmt: skip
    detector = Detector(model=slot)
    outcome = run_backtest(
        rows, detector, label_delay=HOUR, on_label=label_hook(detector),
        day_of=day_function(dt.UTC),
    )  # fmt: skip
    inputs = [x for _, x in slot.scored]
    assert [tx_id for tx_id, _ in slot.scored] == [tx_id for tx_id, _, _ in plan]
    assert len(set(inputs)) == len(inputs)  # each row's own: told apart below
    # The last "dup" (row 5) is learnt from its own inputs; rows 1 and 2 are not learnt.
    assert learner.learnt == [(inputs[i], rows[i].label) for i in (0, 3, 4, 5, 6)]
    assert outcome.labels_revealed == 7
    assert (slot.repeated, slot.repeated_example, slot.superseded) == (2, "dup", {})
    assert slot.remembered.keys() == {"e"}


def test_rows_out_of_order_are_refused_by_the_engine() -> None:
    rows = _rows([T0, T0 + HOUR, T0 + 0.5 * HOUR])
    with pytest.raises(backtest.OutOfOrder) as caught:
        run_backtest(
            rows, Recorder(), label_delay=HOUR, on_label=lambda *_: None,
            day_of=day_function(dt.UTC),
        )  # fmt: skip
    assert caught.value.line == rows[2].line


def test_out_of_order_rows_are_sorted_by_instant() -> None:
    west = dt.timezone(dt.timedelta(hours=-8))
    rows = _rows([T0 + HOUR, (T0 + 0.5 * HOUR).astimezone(west), T0 + 2 * HOUR, T0])
    ordered, late = in_event_time(rows)
    assert late == 2
    assert [r.transaction.id for r in ordered] == ["t3", "t1", "t0", "t2"]
    assert in_event_time(ordered) == (ordered, 0)


def test_days_are_calendar_days_in_the_chosen_zone() -> None:
    us = round((T0.replace(hour=23, minute=30)).timestamp() * 1e6)  # 23:30 UTC
    assert day_function(dt.UTC)(us) == dt.date(2026, 3, 2).toordinal()
    plus2 = dt.timezone(dt.timedelta(hours=2))
    assert day_function(plus2)(us) == dt.date(2026, 3, 3).toordinal()
    from zoneinfo import ZoneInfo

    assert day_function(ZoneInfo("America/New_York"))(us) == dt.date(2026, 3, 2).toordinal()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", dt.timedelta(days=7)),
        ("36h", dt.timedelta(hours=36)),
        ("1d12h", dt.timedelta(days=1, hours=12)),
        ("90m", dt.timedelta(minutes=90)),
        ("2w", dt.timedelta(weeks=2)),
        ("0", dt.timedelta(0)),
    ],
)
def test_parse_duration(text: str, expected: dt.timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "7", "7x", "d", "-1d", "1d 2x"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(SourceError):
        parse_duration(text)


# --- files in, files out -----------------------------------------------------------------------


def _labelled_csv(path: Path, n_days: int = 3) -> Path:
    """Card testing on some accounts each day (fraud), steady shopping elsewhere (legit)."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "TX_ID",
                "TX_DATETIME",
                "CUSTOMER_ID",
                "TERMINAL_ID",
                "TX_AMOUNT",
                "TX_FRAUD",
                "TX_FRAUD_SCENARIO",
            ]
        )
        n = 0
        for day in range(n_days):
            base = T0.replace(tzinfo=None) + dt.timedelta(days=day)
            for a in range(8):
                for j in range(6):
                    at = base + dt.timedelta(minutes=37 * j + a)
                    w.writerow(
                        [
                            f"ok-{n}",
                            at.strftime("%Y-%m-%d %H:%M:%S"),
                            f"c{a}",
                            f"t{j}",
                            f"{20 + a + j}.00",
                            0,
                            0,
                        ]
                    )
                    n += 1
            victim = f"v{day}"
            for j in range(5):
                at = base + dt.timedelta(hours=5, seconds=20 * j)
                w.writerow(
                    [f"ct-{n}", at.strftime("%Y-%m-%d %H:%M:%S"), victim, f"s{j}", "1.00", 1, 2]
                )
                n += 1
        w.writerow(["bad-1", "not a time", "c1", "t1", "5.00", 0, 0])
        w.writerow(["bad-2", T0.strftime("%Y-%m-%d %H:%M:%S"), "c1", "t1", "-5.00", 0, 0])
    return path


MAP = ["--map", "id=TX_ID", "--map", "timestamp=TX_DATETIME", "--map", "account_id=CUSTOMER_ID",
       "--map", "merchant_id=TERMINAL_ID", "--map", "amount=TX_AMOUNT"]  # fmt: skip


def test_backtest_command_writes_scores_and_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _labelled_csv(tmp_path / "tx.csv")
    scores, as_json, as_html = tmp_path / "s.csv", tmp_path / "r.json", tmp_path / "r.html"
    code = main(
        ["backtest", str(data), "--label", "TX_FRAUD", "--label-delay", "1d", "--k", "3", *MAP,
         "--scores-out", str(scores), "--report", str(as_json), "--report", str(as_html)]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2 invalid rows" in out and "line " in out
    assert "ROC AUC" in out and "tx/s" in out

    with scores.open(newline="") as f:
        written = list(csv.reader(f))
    assert written[0] == ["transaction_id", "score", "decision"]
    assert len(written) == 1 + 3 * (48 + 5)
    assert all(
        0.0 <= float(s) <= 1.0 and d in ("allow", "review", "block") for _, s, d in written[1:]
    )
    by_id = {row[0]: row for row in written[1:]}
    assert by_id["ct-48"][2] == "allow"
    assert by_id["ct-50"][2] != "allow"  # the third tiny amount in minutes: card testing
    assert "bad-1" not in by_id

    report = json.loads(as_json.read_text())
    assert report["meta"]["detector_learns_labels"] is True  # the model is on by default
    assert report["meta"]["days"] == 3 and report["meta"]["invalid_rows"] == 2
    # The file interleaves accounts out of time order: it was sorted, then scored once
    # (the scores file above has each transaction exactly once).
    assert report["meta"]["out_of_order_rows"] > 0
    assert report["overall"]["transactions"] == 3 * 53
    assert report["overall"]["frauds"] == 15
    assert 0.0 <= report["overall"]["average_precision"] <= 1.0
    assert [d["day"] for d in report["per_day"]] == ["2026-03-02", "2026-03-03", "2026-03-04"]
    assert {"card_testing"} <= {r["code"] for r in report["rules"]}
    assert report["pr_curve"][-1]["recall"] == 1.0
    _assert_well_formed_html(as_html.read_text(), min_charts=5)


def test_backtest_of_a_simulated_stream_gives_the_detectors_own_verdicts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = Simulator(seed=3, rate=1.0, start=T0, accounts=300).generate(3000)
    data = tmp_path / "sim.csv.gz"
    fields = list(Transaction.__struct_fields__)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([*fields, "is_fraud", "scenario"])
    for item in stream:
        cells = [getattr(item.transaction, name) for name in fields]
        cells[1] = item.transaction.timestamp.isoformat()
        writer.writerow(
            ["" if c is None else c for c in cells] + [int(item.is_fraud), item.scenario]
        )
    data.write_bytes(gzip.compress(buffer.getvalue().encode()))
    scores, as_json = tmp_path / "s.csv", tmp_path / "r.json"
    args = ["backtest", str(data), "--label", "is_fraud", "--label-delay", "1h", "--model", "off"]
    assert main([*args, "--scores-out", str(scores), "--report", str(as_json)]) == 0
    captured = capsys.readouterr()
    assert "sorting" not in captured.err  # in order: streamed, read once

    detector = Detector()
    expected = [(item.transaction.id, detector.score(item.transaction)) for item in stream]
    with scores.open(newline="") as f:
        written = list(csv.reader(f))[1:]
    assert written == [[tx_id, str(s.score), s.decision] for tx_id, s in expected]
    report = json.loads(as_json.read_text())
    assert report["meta"]["out_of_order_rows"] == 0
    assert report["meta"]["detector_learns_labels"] is False
    assert report["overall"]["frauds"] == sum(item.is_fraud for item in stream)
    assert report["overall"]["alerts"] == sum(s.decision != "allow" for _, s in expected)


def test_report_escapes_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _labelled_csv(tmp_path / 'x<b>&"y.csv', n_days=1)
    page = tmp_path / "r.html"
    assert main(["backtest", str(data), "--label", "TX_FRAUD", *MAP, "--report", str(page)]) == 0
    text = page.read_text()
    assert "x<b>" not in text
    assert "x&lt;b&gt;&amp;&quot;y.csv" in text
    _assert_well_formed_html(text, min_charts=5)


def test_backtest_refuses_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _labelled_csv(tmp_path / "tx.csv", n_days=1)
    base = ["backtest", str(data), "--label", "TX_FRAUD", *MAP]
    assert main([*base, "--report", str(tmp_path / "r.txt")]) == 2
    assert "must end in .json or .html" in capsys.readouterr().err
    assert main([*base, "--label-delay", "soon"]) == 2
    assert main([*base, "--k", "0"]) == 2
    assert main(["backtest", str(data), "--label", "NOPE", *MAP]) == 2
    assert "label column 'NOPE' is not in" in capsys.readouterr().err
    # A label column that would also be read as a transaction field is refused outright.
    assert main(["backtest", str(data), "--label", "TX_AMOUNT", *MAP]) == 2
    assert "must never see the label" in capsys.readouterr().err


def test_the_detector_never_sees_the_label_or_other_columns(tmp_path: Path) -> None:
    data = _labelled_csv(tmp_path / "tx.csv", n_days=1)
    options = SourceOptions(
        mapping={"id": "TX_ID", "timestamp": "TX_DATETIME", "account_id": "CUSTOMER_ID",
                 "merchant_id": "TERMINAL_ID", "amount": "TX_AMOUNT"},
        label="TX_FRAUD",
    )  # fmt: skip
    with Source(data, options) as source:
        rows, _ = in_event_time([r for r in source if isinstance(r, Row)])
    recorder = Recorder()
    run_backtest(
        rows, recorder, label_delay=HOUR, on_label=label_hook(recorder), day_of=day_function(dt.UTC)
    )
    assert len(recorder.seen) == 53
    for tx in recorder.seen:
        # Only the five mapped columns reach the transaction (currency is the default).
        assert {k for k in Transaction.__struct_fields__ if getattr(tx, k) not in (None, "")} == {
            "id", "timestamp", "account_id", "merchant_id", "amount", "currency",
        }  # fmt: skip


def test_report_rules_count_sole_reasons() -> None:
    outcome = backtest.Outcome()
    # The last transaction has no label: it counts nowhere.
    reasons = [
        ("card_testing",),
        ("card_testing", "new_merchant"),
        ("new_merchant",),
        (),
        ("card_testing",),
    ]
    for i, (codes, label, decision) in enumerate(
        zip(reasons, [1, 1, 0, 0, -1], [1, 2, 0, 0, 1], strict=True)
    ):
        outcome.scores.append([0.65, 0.7, 0.15, 0.0, 0.65][i])
        outcome.labels.append(label)
        outcome.days.append(1)
        outcome.accounts.append(i)
        outcome.decisions.append(decision)
        if codes:
            outcome.reasons[i] = codes
    report = build_report(outcome, k=2, review_threshold=0.5, block_threshold=0.8, meta={})
    rules = {r["code"]: r for r in report["rules"]}
    assert rules["card_testing"] == {
        "code": "card_testing", "fired": 2, "precision": 1.0, "alerts": 2,
        "alert_precision": 1.0, "frauds_flagged": 2, "sole_reason_frauds": 1,
    }  # fmt: skip
    assert rules["new_merchant"]["precision"] == 0.5
    assert rules["new_merchant"]["sole_reason_frauds"] == 0
    assert [r["code"] for r in report["rules"]] == ["card_testing", "new_merchant"]
    assert report["overall"]["transactions"] == 4
    assert report["overall"]["alerts"] == 2


def _random_outcome(seed: int, in_day_order: bool = True, n: int = 600) -> backtest.Outcome:
    """Rule-like tied scores over five days, some unlabelled, a day without fraud."""
    rng = random.Random(seed)
    outcome = backtest.Outcome()
    days = [rng.randrange(5) for _ in range(n)]
    for day in sorted(days) if in_day_order else days:
        score = rng.choice([0.0, 0.15, 0.5, 0.65, 0.8, 0.9])
        fraud = day != 2 and rng.random() < 0.05 + 0.5 * score
        outcome.scores.append(score)
        outcome.labels.append(-1 if rng.random() < 0.1 else int(fraud))
        outcome.days.append(739_000 + day)
        outcome.accounts.append(rng.randrange(40))
        outcome.decisions.append(2 if score >= 0.8 else 1 if score >= 0.5 else 0)
    return outcome


def test_a_report_of_every_row_labelled_is_that_of_the_labelled_rows_among_others() -> None:
    # A file where every row is labelled takes the columns as they are; the unlabelled rows
    # of another are left out: the same report from the same labelled rows.
    mixed = _random_outcome(3)
    for i in range(0, len(mixed.labels), 7):
        mixed.reasons[i] = ("card_testing",) if i % 2 else ("new_merchant", "card_testing")
    keep = [label >= 0 for label in mixed.labels]
    assert not all(keep)
    labelled = backtest.Outcome()
    for name in ("scores", "labels", "days", "accounts", "decisions"):
        getattr(labelled, name).extend(compress(getattr(mixed, name), keep))
    at = list(compress(range(len(keep)), keep))
    labelled.reasons = {at.index(i): codes for i, codes in mixed.reasons.items() if keep[i]}
    report = functools.partial(build_report, k=5, review_threshold=0.65, block_threshold=0.8)
    assert report(labelled, meta={}) == report(mixed, meta={})


@pytest.mark.parametrize(("seed", "in_day_order"), [(0, True), (1, True), (2, False)])
def test_report_per_day_and_thresholds_count_what_they_say(seed: int, in_day_order: bool) -> None:
    outcome = _random_outcome(seed, in_day_order)
    report = build_report(outcome, k=5, review_threshold=0.65, block_threshold=0.8, meta={})
    rows = [
        (day, score, label, decision)
        for day, score, label, decision in zip(
            outcome.days, outcome.scores, outcome.labels, outcome.decisions, strict=True
        )
        if label >= 0
    ]
    assert [d["day"] for d in report["per_day"]] == [
        dt.date.fromordinal(day).isoformat() for day in sorted({r[0] for r in rows})
    ]
    for entry in report["per_day"]:
        day = dt.date.fromisoformat(entry["day"]).toordinal()
        s = [score for d, score, _, _ in rows if d == day]
        y = [label for d, _, label, _ in rows if d == day]
        alerted = [label for d, _, label, decision in rows if d == day and decision >= 1]
        assert entry["transactions"] == len(s) and entry["frauds"] == sum(y)
        assert entry["alerts"] == len(alerted) and entry["true_alerts"] == sum(alerted)
        auc, ap = roc_auc(s, y), average_precision(s, y)
        assert entry["roc_auc"] == (None if auc is None else round(auc, 4))
        assert entry["average_precision"] == (None if ap is None else round(ap, 4))
        assert entry["precision_at_k"] == round(precision_at_k(s, y, 5), 4)
        # The most a perfect ranking could score that day: its compromised cards not yet
        # detected, over k; the ranking's own card precision never exceeds it.
        best = entry["card_precision_at_k_ceiling"]
        assert best == round(min(entry["compromised_cards"], 5) / 5, 4)
        assert entry["card_precision_at_k"] <= best
    assert report["per_day"][2]["frauds"] == 0 and report["per_day"][2]["roc_auc"] is None
    ceilings = [d["card_precision_at_k_ceiling"] for d in report["per_day"]]
    assert report["overall"]["card_precision_at_k_ceiling"] == round(mean(ceilings), 4)
    frauds = sum(r[2] for r in rows)
    sweep = {t["threshold"]: t for t in report["thresholds"]}
    assert list(sweep) == sorted({0.3, 0.4, 0.5, 0.6, 0.65, 0.7, 0.8, 0.9})
    assert sweep[0.65]["role"] == "review" and sweep[0.8]["role"] == "block"
    for threshold, entry in sweep.items():
        flagged = [r[2] for r in rows if r[1] >= threshold]  # ties at the threshold flag
        assert entry["flagged"] == len(flagged)
        assert entry["precision"] == (round(sum(flagged) / len(flagged), 4) if flagged else None)
        assert entry["recall"] == round(sum(flagged) / frauds, 4)


def test_scores_out_quotes_awkward_ids() -> None:
    buffer = io.StringIO()
    rows = [Row(2, txn('id,with "quotes"', T0), False)]
    run_backtest(
        rows, Recorder(), label_delay=HOUR, on_label=lambda *_: None,
        day_of=day_function(dt.UTC), scores_out=buffer,
    )  # fmt: skip
    assert list(csv.reader(io.StringIO(buffer.getvalue()))) == [
        ["transaction_id", "score", "decision"],
        ['id,with "quotes"', "0.1", "allow"],
    ]


class _Scores(Recorder):
    """Scores a row by its position: awkward floats and every decision."""

    SCORES = (0.1, 1e-05, 0.30000000000000004, 1.0, 0.0, 0.123456, 0.9999)

    def score(self, tx: Transaction) -> Scored:
        n = len(self.seen)
        super().score(tx)
        return Scored(self.SCORES[n % 7], DECISIONS[n % 3], "low", (), self.rules_version)


def test_scores_out_is_what_csv_writer_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    # Lines are formatted by hand and written in batches (shrunk here to cross a few): byte
    # for byte what csv.writer writes, quoting included.
    monkeypatch.setattr(backtest, "_SCORES_BATCH", 4)
    ids = ["t-1", "a,b", 'say "hi"', "line\nbreak", "cr\rhere", " lead", "é-ü", "", "x" * 40]
    rows = [Row(i + 2, txn(tx_id, T0 + i * HOUR / 60), False) for i, tx_id in enumerate(ids * 2)]
    buffer = io.StringIO()
    run_backtest(
        rows, _Scores(), label_delay=HOUR, on_label=lambda *_: None,
        day_of=day_function(dt.UTC), scores_out=buffer,
    )  # fmt: skip
    expected = io.StringIO()
    writer = csv.writer(expected, lineterminator="\n")
    writer.writerow(("transaction_id", "score", "decision"))
    for n, row in enumerate(rows):
        writer.writerow((row.transaction.id, _Scores.SCORES[n % 7], DECISIONS[n % 3]))
    assert buffer.getvalue() == expected.getvalue()


# --- helpers ---------------------------------------------------------------------------------

_VOID = {"meta", "br", "hr", "img", "input", "link", "col", "area", "base", "wbr", "source"}
_SVG_LEAVES = {"line", "rect", "circle", "polyline", "path"}


class _Checker(HTMLParser):
    """Checks that tags nest properly and counts what the page holds."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.counts: dict[str, int] = {}
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.counts[tag] = self.counts.get(tag, 0) + 1
        if tag not in _VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.counts[tag] = self.counts.get(tag, 0) + 1

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
        else:
            self.stack.pop()


def _assert_well_formed_html(text: str, min_charts: int) -> Any:
    checker = _Checker()
    checker.feed(text)
    checker.close()
    assert not checker.errors, checker.errors[:5]
    assert not checker.stack, checker.stack
    assert text.startswith("<!doctype html>")
    assert "script" not in checker.counts
    assert "<script" not in text.lower()
    assert checker.counts.get("svg", 0) >= min_charts
    assert checker.counts.get("table", 0) >= 3
    assert checker.counts.get("style", 0) == 1
    assert "http://" not in text and "https://" not in text  # self-contained
    return checker


def test_report_leaves_top_k_blank_on_a_day_without_fraud(tmp_path: Path) -> None:
    # A last, partial day with no fraud has precision@k 0 by definition (0 in the mean), but
    # drawn as 0 it reads as a collapse of the ranking: the chart and table leave it blank.
    from server.backtest_html import render

    data = _labelled_csv(tmp_path / "tx.csv", n_days=3)
    as_json = tmp_path / "r.json"
    assert main(["backtest", str(data), "--label", "TX_FRAUD", *MAP, "--report", str(as_json)]) == 0
    report = json.loads(as_json.read_text())
    quiet, busy = report["per_day"][-1], report["per_day"][0]
    assert busy["frauds"] > 0
    quiet.update(
        frauds=0,
        true_alerts=0,
        precision_at_k=0.0,
        card_precision_at_k=0.0,
        card_precision_at_k_ceiling=0.0,
    )
    text = render(report)

    def row(day: str) -> list[str]:
        start = text.index(f"<td>{day}</td>")
        cells = text[start : text.index("</tr>", start)]
        return [c.split("</td>")[0] for c in cells.split("<td>")[1:]]

    assert row(quiet["day"])[6:9] == ["–", "–", "–"]
    assert row(busy["day"])[6:9] == [
        f"{busy['precision_at_k']:.3f}",
        f"{busy['card_precision_at_k']:.3f}",
        f"{busy['card_precision_at_k_ceiling']:.3f}",
    ]
    # The metrics-per-day chart draws no point for it: hover titles name only the other days.
    assert f"{quiet['day']} card precision@" not in text
    assert f"{busy['day']} card precision@" in text
    # The ceiling is drawn dashed beside card precision, and named so in the legend.
    assert f"{busy['day']} best possible card precision@" in text
    assert 'stroke-dasharray="5 4"><title>best possible card precision@' in text
    assert '<i class="dash"' in text


def test_a_backtest_scores_without_rendering_messages() -> None:
    # Its report reads reason codes only (docs/backtest.md): messages would be wasted work.
    args = argparse.Namespace(
        review_threshold=0.5, block_threshold=0.8, rules=None, model="on", model_memory=10
    )
    detector = backtest.backtest_detector(args)
    assert detector.explain is False
    assert detector.model is not None


def test_zero_amounts_are_scored_like_any_other(tmp_path: Path) -> None:
    # Zero-value authorizations are real (card checks, card testing) and public datasets
    # hold them: each such row gets a score, on accounts with a history and on one whose
    # every amount is zero (mean 0, spread 0), with the model learning from them too.
    stream = Simulator(seed=5, rate=2.0, start=T0, accounts=200).generate(4000)
    data = tmp_path / "zeros.csv"
    zeros: set[str] = set()
    with data.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "timestamp", "account_id", "merchant_id", "amount", "is_fraud"])
        for n, item in enumerate(stream):
            tx = item.transaction
            amount = "0.00" if n % 7 == 0 else str(tx.amount)
            account = "only-zeros" if n % 50 == 0 else tx.account_id
            if amount == "0.00" or account == "only-zeros":
                amount = "0.00"
                zeros.add(tx.id)
            w.writerow([tx.id, tx.timestamp.isoformat(), account, tx.merchant_id, amount,
                        int(item.is_fraud)])  # fmt: skip
    scores, as_json = tmp_path / "s.csv", tmp_path / "r.json"
    args = ["backtest", str(data), "--label", "is_fraud", "--label-delay", "10m"]
    assert main([*args, "--scores-out", str(scores), "--report", str(as_json)]) == 0

    report = json.loads(as_json.read_text())
    assert report["meta"]["invalid_rows"] == 0
    with scores.open(newline="") as f:
        written = {tx_id: float(score) for tx_id, score, _ in list(csv.reader(f))[1:]}
    assert len(written) == len(stream) and zeros <= written.keys()
    assert all(0.0 <= written[tx_id] <= 1.0 for tx_id in zeros)


def test_the_model_learns_and_scores_zero_amounts() -> None:
    slot = ModelSlot(learner=OnlineLogit(), min_labels=1, min_frauds=0)
    detector = Detector(model=slot)
    rows = [
        Row(i + 2, txn(f"z{i}", T0 + i * 0.05 * HOUR, account=f"a{i % 5}",
                       amount="0.00" if i % 2 else "20.00"), i % 3 == 0)
        for i in range(300)
    ]  # fmt: skip
    outcome = run_backtest(
        rows, detector, label_delay=HOUR, on_label=label_hook(detector),
        day_of=day_function(dt.UTC),
    )  # fmt: skip
    assert slot.learner is not None and slot.learner.count == outcome.labels_revealed > 0
    assert slot.predictor is not None, "the model never became ready"  # 100 labels at least
    assert all(math.isfinite(w) for w in slot.predictor.weights)
    assert len(outcome.scores) == len(rows) and all(0.0 <= s <= 1.0 for s in outcome.scores)


def _travelling_csv(path: Path, jump: bool) -> Path:
    """12 accounts shopping every 20 min for 2 days, one fraud in 40; with `jump`, each
    purchase is located alternately in Paris and New York (what a column that is not the
    purchase's location can look like), else always in Paris."""
    places = [(48.86, 2.35), (40.71, -74.01)] if jump else [(48.86, 2.35)]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ref", "when", "card", "shop", "amt", "where_lat", "where_lon", "fraud"])
        for j in range(144):
            for a in range(12):
                at = T0.replace(tzinfo=None) + dt.timedelta(minutes=20 * j, seconds=a)
                lat, lon = places[j % len(places)]
                w.writerow(
                    [f"t{j}-{a}", at.strftime("%Y-%m-%d %H:%M:%S"), f"c{a}", f"m{j % 3}",
                     f"{30 + (j * 7 + a) % 11}.00", lat, lon, int((j * 12 + a) % 40 == 7)]
                )  # fmt: skip
    return path


TRAVEL_MAP = ["--map", "id=ref", "--map", "timestamp=when", "--map", "account_id=card",
              "--map", "merchant_id=shop", "--map", "amount=amt", "--map", "lat=where_lat",
              "--map", "lon=where_lon"]  # fmt: skip


@pytest.mark.parametrize("jump", [True, False])
def test_a_rule_that_floods_the_file_gets_a_note_naming_its_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], jump: bool
) -> None:
    data = _travelling_csv(tmp_path / "tx.csv", jump)
    as_json, as_html = tmp_path / "r.json", tmp_path / "r.html"
    args = ["backtest", str(data), "--label", "fraud", "--label-delay", "1h", *TRAVEL_MAP]
    assert main([*args, "--report", str(as_json), "--report", str(as_html)]) == 0
    out = capsys.readouterr().out
    report = json.loads(as_json.read_text())
    page = as_html.read_text()
    travel = {r["code"]: r for r in report["rules"]}.get("impossible_travel")
    if not jump:
        assert travel is None
        assert report["notes"] == []
        assert "note:" not in out and "Rules to check" not in page
        return
    assert travel is not None and travel["fired"] > 0.9 * report["overall"]["transactions"]
    assert [n["code"] for n in report["notes"]] == ["impossible_travel"]
    note = report["notes"][0]
    assert note["fields"] == ["lat", "lon", "account_id", "timestamp"]
    assert note["fired"] == travel["fired"] and note["score"] == 0.7
    assert note["precision"] == travel["precision"] < 0.35
    text = note["text"]
    assert text.startswith(f"impossible_travel fired on {note['share']:.1%} of transactions")
    assert (
        "reads lat (column where_lat), lon (column where_lon), besides account_id, timestamp;"
        in text
    )
    assert "docs/backtest.md#rules-that-flood" in text
    assert f"  note: {text}" in out.splitlines()
    assert "Rules to check" in page and html.escape(text, quote=True) in page
    _assert_well_formed_html(page, min_charts=5)


def test_rule_notes_thresholds() -> None:
    overall = {"transactions": 10_000, "fraud_rate": 0.01}

    def row(fired: int, precision: float, score: float | None = 0.5) -> dict[str, Any]:
        facts = {} if score is None else {"score": score, "fields": ["lat", "lon"]}
        return {"code": "r", "fired": fired, "precision": precision, **facts}

    def noted(*rows: dict[str, Any]) -> int:
        return len(rule_notes(rows, overall, {}))

    assert noted(row(100, 0.24)) == 1  # 1 % of the file, right under half its score
    assert noted(row(99, 0.01)) == 0  # a small share
    assert noted(row(5000, 0.25)) == 0  # right half as often as its score says: not under
    assert noted(row(5000, 0.0, score=None)) == 0  # no declared score: the model
    assert noted(row(5000, 0.004, score=0.01)) == 1  # a weak rule right once in 250


@pytest.mark.parametrize("parallel", ["off", "on"])
def test_a_row_in_the_first_or_last_year_is_an_invalid_row_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], parallel: str
) -> None:
    # 0001-01-01T00:00:00+01:00 is in the year 0 in UTC: its day had no date, and the
    # report's per-day metrics failed with "ValueError: ordinal must be >= 1".
    data = tmp_path / "edges.csv"
    data.write_text(
        "id,timestamp,account_id,merchant_id,amount,is_fraud\n"
        "t1,0001-01-01T00:00:00+01:00,a1,m,1.00,0\n"
        "t2,9999-12-31T23:59:59-23:59,a1,m,1.00,1\n"
        "t3,2026-03-01T10:00:00Z,a1,m,1.00,1\n"
    )
    code = main(["backtest", str(data), "--label", "is_fraud", "--parallel", parallel])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "line 2: 'timestamp': the year 0001 is out of range; send one from 0002 to 9998" in out
    assert "line 3: 'timestamp': the year 9999 is out of range" in out
    assert "1 labelled transaction over 1 day" in out


@pytest.mark.parametrize("parallel", ["off", "on"])
def test_ids_the_file_repeats_are_noted_with_a_count_and_an_example(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], parallel: str
) -> None:
    # 40 simulated rows a few minutes apart, the first five's ids used again at rows 21-25:
    # all well within the label delay. The run said nothing of it.
    stream = Simulator(seed=5, rate=1 / 30, start=T0, accounts=20).generate(40)
    ids = [f"dup{i % 5}" if i < 5 or 20 <= i < 25 else f"t{i}" for i in range(len(stream))]
    data, scores, report = tmp_path / "dups.csv", tmp_path / "s.csv", tmp_path / "r.json"
    with data.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "timestamp", "account_id", "merchant_id", "amount", "is_fraud"])
        for tx_id, item in zip(ids, stream, strict=True):
            tx = item.transaction
            writer.writerow([tx_id, tx.timestamp.isoformat(), tx.account_id, tx.merchant_id,
                             tx.amount, int(item.is_fraud)])  # fmt: skip
    args = ["backtest", str(data), "--label", "is_fraud", "--parallel", parallel]
    code = main([*args, "--scores-out", str(scores), "--report", str(report)])
    out = capsys.readouterr().out
    assert code == 0, out
    note = (
        "5 rows repeated the id of an earlier row whose label was not yet known (first: "
        "'dup0'): the model learnt each such id's label from its latest row only, and "
        "--scores-out has the id more than once"
    )
    assert note in out
    notes = json.loads(report.read_text())["meta"]["notes"]
    printed = [line for line in out.splitlines() if note in line]
    assert [n for n in notes if note in n] == printed and len(printed) == 1
    with scores.open(newline="") as f:
        assert [row[0] for row in csv.reader(f)][1:] == ids  # every row scored, as documented

    # Labels known at once (no delay): each is learnt before its id comes again, from its
    # own row, so there is nothing to say (the limit docs/backtest.md states).
    assert main([*args, "--label-delay", "0"]) == 0
    assert "repeated the id" not in capsys.readouterr().out
