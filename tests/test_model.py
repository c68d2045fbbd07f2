"""The online model: its inputs, learning, explanations, persistence, and the detector with it."""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import math
import random
import re
import struct
from decimal import Decimal
from itertools import compress
from pathlib import Path
from typing import Any

import pytest

from server.detection import Detector
from server.detection import model as model_module
from server.detection.features import Featurizer
from server.detection.model import (
    FEATURE_LABELS,
    FEATURE_NAMES,
    FEATURE_SET,
    MIN_SLOPE,
    MODEL_FEATURES,
    RAW_LAYOUT,
    ModelSlot,
    NegativeSampler,
    OnlineLogit,
    Predictor,
    _shown,
    active_inputs,
    amount_scaled,
    capture,
    explain,
    inputs,
    named_features,
    scored_logit,
    sigmoid,
)
from server.detection.rules import RuleSet, compile_sources
from server.detection.verdict import Reason, Scored
from server.learning import load_learner
from server.metrics_offline import roc_auc
from server.transactions import Transaction

T0 = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
TINY = FEATURE_NAMES.index("log_tiny_recent")
AMOUNT = FEATURE_NAMES.index("log_amount")


OLD_ORDER = ("amount", "local_hour", "history", "mean", "std", "account_count_1m",
             "account_count_1h", "account_small_scaled_count_10m", "distance_km", "elapsed_s",
             "is_new_merchant", "is_new_country", "is_new_device")  # fmt: skip


def feats(*values: Any) -> dict[str, Any]:
    """The detector's named features for the model, in the first detector's order."""
    return dict(zip(OLD_ORDER, values, strict=True))


def make_tx(n: int, *, amount: str = "40.00", **fields: Any) -> Transaction:
    return Transaction(
        id=f"tx-{n}",
        timestamp=T0 + dt.timedelta(minutes=n),
        account_id=fields.pop("account_id", "acct-1"),
        merchant_id="m-1",
        amount=Decimal(amount),
        currency="USD",
        **fields,
    )


NOISY = 41
"""Inputs the toy examples fill with noise (the rest stay 0): as many as the model had when
these tests were written, so the toy data does not change each time an input is added.
(Dense noise in many more inputs is not the model's real data, which is mostly zeros.)"""


def toy_example(rng: random.Random, fraud: bool) -> list[float]:
    """Noise in NOISY inputs; frauds have many tiny recent amounts and small amounts."""
    x = [rng.gauss(0.0, 1.0) for _ in range(NOISY)] + [0.0] * (len(FEATURE_NAMES) - NOISY)
    x[TINY] = rng.gauss(2.5 if fraud else 0.0, 0.4)
    x[AMOUNT] = rng.gauss(0.5 if fraud else 3.5, 0.5)
    return x


def toy_stream(n: int, seed: int, fraud_rate: float = 0.1) -> list[tuple[list[float], bool]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        fraud = rng.random() < fraud_rate
        out.append((toy_example(rng, fraud), fraud))
    return out


def test_named_features_are_in_the_declared_order_and_flag_unknowns() -> None:
    f = feats(40.0, 13, 0, 0.0, 0.0, 1, 1, 0, None, None, None, None, None)
    named = named_features(f, make_tx(1), (), 0.0)
    assert tuple(named) == FEATURE_NAMES
    assert all(isinstance(v, float) and math.isfinite(v) for v in named.values())
    assert named["no_history"] == 1.0 and named["no_location"] == 1.0
    assert named["log_ratio"] == 0.0 and named["log_speed"] == 0.0
    assert named["new_country"] == named["new_device"] == 0.0  # unknown is not "new"


_SCALED_INPUTS = ("tiny_amount", "log_tiny_recent", "round_amount",
                  *(f"amount_band_{i}" for i in range(13)))  # fmt: skip


def _amount_inputs(amounts: list[Decimal]) -> list[dict[str, float]]:
    """The amount's inputs of each transaction of a stream of these amounts (a few accounts,
    a minute apart), as the detector makes them."""
    fz = Featurizer(MODEL_FEATURES)
    out = []
    for i, amount in enumerate(amounts):
        tx = make_tx(i, amount=str(amount), account_id=f"acct-{i % 7}")
        named = named_features(fz.values_one(tx), tx, (), 0.0)
        out.append({name: named[name] for name in _SCALED_INPUTS})
    return out


@pytest.mark.parametrize("k", [Decimal(150), Decimal(7)])
def test_an_amount_times_k_has_the_same_inputs_once_the_scale_is_learnt(k: Decimal) -> None:
    # Amounts with cents, tiny ones in bursts (card tests) and round ones (multiples of 20,
    # round in yen too: x150 is a multiple of 100; a 25 would be 3,750 yen, not round there).
    rng = random.Random(7)
    amounts = []
    for _ in range(3000):
        pick = rng.random()
        if pick < 0.1:
            amounts.append(Decimal(rng.randrange(20, 1000, 20)))
        elif pick < 0.2:
            amounts.append(Decimal(rng.randrange(10, 500)) / 100)
        else:  # with cents: a whole 57 is round in dollars, 8,550 yen is not
            # Typical amounts above 40 (the scale's floor is 1), so the scale moves with k.
            amount = Decimal(f"{math.exp(rng.gauss(4.2, 1.3)):.2f}")
            amounts.append(amount + Decimal("0.01") if amount == int(amount) else amount)
    base = _amount_inputs(amounts)
    scaled = _amount_inputs([a * k for a in amounts])
    known = 1000  # AMOUNT_SCALE_FROM: from the 1,001st the scale is known
    assert scaled[known:] == base[known:]
    # Which says something on this stream: the three flags and most bands.
    later = base[known:]
    for name in ("tiny_amount", "log_tiny_recent", "round_amount"):
        assert 0 < sum(x[name] > 0 for x in later) < len(later), name
    assert sum(any(x[f"amount_band_{i}"] for x in later) for i in range(13)) >= 9
    # Before, amounts are taken as they are: fewer are tiny (in yen none) and more are in
    # the top band.
    early = scaled[:known]
    assert sum(x["tiny_amount"] for x in early) < sum(x["tiny_amount"] for x in base[:known])
    if k == 150:
        assert not any(x["tiny_amount"] for x in early)
    assert sum(x["amount_band_12"] for x in early) > sum(x["amount_band_12"] for x in base[:known])


def test_smaller_amounts_than_dollars_are_taken_as_they_are() -> None:
    # A stream of amounts a hundredth of dollars' (or a stream that began with card tests at
    # 1.00) is not a currency worth a hundred dollars: the scale stays 1, so 1.00 is still
    # tiny, where a scale of 0.01 would have made only amounts under 0.05 tiny.
    rng = random.Random(7)
    amounts = [Decimal(f"{math.exp(rng.gauss(3.7, 1.3)) / 100:.2f}") + Decimal("0.01")
               for _ in range(3000)]  # fmt: skip
    seen = _amount_inputs(amounts)
    later = seen[1000:]
    tiny = [a < 5 for a in amounts[1000:]]
    assert [x["tiny_amount"] > 0 for x in later] == tiny
    assert sum(tiny) > 0.9 * len(tiny)


def test_time_since_previous_merchant_risk_and_the_amount_band() -> None:
    f = {
        **feats(250.0, 13, 10, 40.0, 5.0, 1, 1, 0, None, None, False, None, None),
        "since_prev_s": 3600.0,
        # 3 frauds among 11 labels learnt in 7 days, 3 of 29 in 30, 1 of 1 in the last two.
        "merchant_frauds_7d": 3,
        "merchant_labels_7d": 11,
        "merchant_frauds_30d": 3,
        "merchant_labels_30d": 29,
        "merchant_frauds_2d": 1,
        "merchant_labels_2d": 1,
    }
    named = named_features(f, make_tx(1), (), 0.0)
    assert named["log_since_prev"] == pytest.approx(math.log1p(3600.0))
    # Shrunk by one pseudo-label: one fraud out of one label is not certainty.
    assert named["merchant_fraud_7d"] == pytest.approx(0.25)
    assert named["merchant_fraud_30d"] == pytest.approx(0.1)
    assert named["merchant_fraud_2d"] == pytest.approx(0.5)
    assert [n for n in named if n.startswith("amount_band_") and named[n]] == ["amount_band_8"]
    assert FEATURE_LABELS["amount_band_8"] == (
        "amount 200 to 500 on a scale where the typical amount is 40"
    )
    # A band's lower edge belongs to it; the first and last bands are open.
    for amount, band in ((200.0, 8), (0.5, 0), (9_999.0, 12)):
        named = named_features({**f, "amount": amount}, make_tx(1), (), 0.0)
        assert named[f"amount_band_{band}"] == 1.0
        assert sum(named[f"amount_band_{i}"] for i in range(13)) == 1.0
    # Unknown: no previous transaction, no labels at the merchant yet.
    unknown = {**f, "since_prev_s": None, "merchant_frauds_7d": 0, "merchant_labels_7d": 0}
    named = named_features(unknown, make_tx(1), (), 0.0)
    assert named["log_since_prev"] == named["merchant_fraud_7d"] == 0.0


def _bands(named: dict[str, float], name: str) -> list[str]:
    return [n for n in named if n.startswith(f"{name}_band_") and named[n]]


def test_ratio_zscore_and_counts_come_in_bands_and_unknown_is_no_band() -> None:
    # 250 against an average of 40 (6.25x) and a spread of 5 (z = 42); 2 others in the
    # hour, none in the minute.
    f = feats(250.0, 13, 10, 40.0, 5.0, 1, 3, 0, None, None, None, None, None)
    named = named_features(f, make_tx(1), (), 0.0)
    assert _bands(named, "ratio") == ["ratio_band_6"]
    assert FEATURE_LABELS["ratio_band_6"] == "amount 5× to 10× the account's average"
    assert _bands(named, "zscore") == ["zscore_band_6"]
    assert _bands(named, "tx_1h") == ["tx_1h_band_2"]
    assert FEATURE_LABELS["tx_1h_band_2"] == "other transactions in the last hour: 2-3"
    assert _bands(named, "tx_1m") == ["tx_1m_band_0"]
    assert FEATURE_LABELS["tx_1m_band_0"] == "other transactions in the last minute: none"
    # A lower edge belongs to its band: exactly the average is "0.8x to 1.25x", z = 0.
    named = named_features({**f, "amount": 40.0}, make_tx(1), (), 0.0)
    assert _bands(named, "ratio") == ["ratio_band_2"] and _bands(named, "zscore") == [
        "zscore_band_2"
    ]
    # No history, no spread: neither the ratio nor the z-score is known, so no band is set
    # (a band would claim a value the account does not have).
    named = named_features(feats(250.0, 13, 0, 0.0, 0.0, 1, 1, 0, *[None] * 5), make_tx(1), (), 0.0)
    assert _bands(named, "ratio") == _bands(named, "zscore") == []


def test_bands_let_the_model_learn_a_middle_range() -> None:
    """Fraud at 3-10x the account's average, but not beyond (a big one-off purchase): one
    weight on the log ratio can only rank by the ratio; the bands rank the middle first."""
    rng = random.Random(3)
    learner = OnlineLogit()
    for _ in range(6_000):
        ratio = math.exp(rng.uniform(math.log(0.3), math.log(40.0)))
        mean = rng.uniform(20.0, 400.0)
        f = feats(ratio * mean, 13, 30, mean, 0.0, 1, 1, 0, *[None] * 5)
        is_fraud = 3.0 <= ratio < 10.0 and rng.random() < 0.5
        learner.learn_one(named_vector(f), is_fraud)
    model = learner.freeze()

    def p(ratio: float) -> float:
        return model.predict_proba(
            named_vector(feats(ratio * 100.0, 13, 30, 100.0, 0.0, 1, 1, 0, *[None] * 5))
        )

    assert p(5.0) > 2 * p(20.0) and p(5.0) > 2 * p(1.0)


def test_a_few_labels_on_a_rare_input_do_not_swing_the_model() -> None:
    """AdaGrad's first step on a weight is the whole learning rate whatever the error; with
    the sums of squared gradients starting at GRADIENT_PRIOR it is about half the rate times
    the gradient. Three frauds on an input seen six times in 3,000 labels (without the
    prior: 0.014 -> 0.50)."""
    rng = random.Random(1)
    learner = OnlineLogit()
    rare = [0.0] * len(FEATURE_NAMES)
    rare[5] = 1.0

    def example(with_rare: bool) -> list[float]:
        x = list(rare) if with_rare else [0.0] * len(FEATURE_NAMES)
        x[0] = rng.gauss(0.0, 1.0)
        return x

    for i in range(3_000):
        learner.learn_one(example(i % 500 == 0), rng.random() < 0.02)
    for _ in range(3):
        learner.learn_one(example(True), True)
    assert learner.freeze().predict_proba(rare) < 0.3


def named_vector(f: dict[str, Any]) -> list[float]:
    return list(named_features(f, make_tx(1), (), 0.0).values())


def test_named_features_show_what_fired_and_the_travel() -> None:
    f = feats(600.0, 2, 20, 40.0, 5.0, 3, 9, 4, 5000.0, 1800.0, True, True, False)
    reasons = (Reason("card_testing", "…", weight=0.65), Reason("velocity_1m", "…", weight=0.5))
    named = named_features(f, make_tx(1, channel="ecom"), reasons, 0.82)
    assert named["rule_card_testing"] == named["rule_velocity_1m"] == 1.0
    assert named["rule_amount_outlier"] == 0.0
    assert named["log_ratio"] == pytest.approx(math.log(15.0))
    assert named["log_speed"] == pytest.approx(math.log1p(10_000.0))
    assert named["night"] == 1.0 and named["night_ratio"] == pytest.approx(math.log(15.0))
    assert named["new_country_ratio"] == pytest.approx(math.log(15.0))
    assert named["new_device_ratio"] == 0.0
    assert named["ecom"] == 1.0 and named["atm"] == 0.0
    assert named["rules_logit"] == pytest.approx(math.log(0.82 / 0.18))
    assert named["log_tx_1m"] == pytest.approx(math.log(3.0))


def test_learns_a_separable_stream_and_ranks_held_out_data() -> None:
    model = OnlineLogit()
    model.learn_many(toy_stream(4000, seed=1))
    predictor = model.freeze()
    held_out = toy_stream(1000, seed=2)
    scores = [predictor.predict_proba(x) for x, _ in held_out]
    labels = [int(y) for _, y in held_out]
    assert roc_auc(scores, labels) > 0.99
    frauds = [s for s, y in zip(scores, labels, strict=True) if y]
    legit = [s for s, y in zip(scores, labels, strict=True) if not y]
    assert sum(frauds) / len(frauds) > 0.8
    assert sum(legit) / len(legit) < 0.05
    assert predictor.labels_seen == 4000
    assert predictor.frauds_seen == sum(labels for _, labels in toy_stream(4000, seed=1))


def test_probabilities_are_calibrated_on_held_out_data() -> None:
    # Overlapping classes at a 10 % base rate: the mean predicted probability in each band
    # must match the observed fraud rate there, and overall.
    model = OnlineLogit()
    rng = random.Random(5)
    train = []
    for _ in range(20_000):
        fraud = rng.random() < 0.1
        x = [0.0] * len(FEATURE_NAMES)
        x[TINY] = rng.gauss(1.0 if fraud else 0.0, 1.0)
        train.append((x, fraud))
    model.learn_many(train)
    predictor = model.freeze()
    held: list[tuple[float, bool]] = []
    for _ in range(20_000):
        fraud = rng.random() < 0.1
        x = [0.0] * len(FEATURE_NAMES)
        x[TINY] = rng.gauss(1.0 if fraud else 0.0, 1.0)
        held.append((predictor.predict_proba(x), fraud))
    mean_p = sum(p for p, _ in held) / len(held)
    rate = sum(y for _, y in held) / len(held)
    assert mean_p == pytest.approx(rate, abs=0.01)
    for lo, hi in ((0.0, 0.1), (0.1, 0.3), (0.3, 1.0)):
        band = [(p, y) for p, y in held if lo <= p < hi]
        assert len(band) > 200
        predicted = sum(p for p, _ in band) / len(band)
        observed = sum(y for _, y in band) / len(band)
        assert predicted == pytest.approx(observed, abs=0.04), (lo, hi)


def calibration_stream(n: int, rng: random.Random) -> list[tuple[list[float], bool]]:
    """Overlapping classes at a 2 % base rate (one informative input)."""
    out = []
    for _ in range(n):
        fraud = rng.random() < 0.02
        x = [0.0] * len(FEATURE_NAMES)
        x[TINY] = rng.gauss(2.0 if fraud else 0.0, 1.0)
        out.append((x, fraud))
    return out


def test_downsampled_legitimate_labels_keep_the_model_calibrated() -> None:
    # Learning ~1 in 5 legitimate labels, each weighted by what it stands for, must give the
    # probabilities of learning them all: without the weights the mean prediction would be
    # several times the base rate.
    rng = random.Random(11)
    train = calibration_stream(60_000, rng)
    held = calibration_stream(40_000, rng)
    rate = sum(y for _, y in held) / len(held)

    def fit(sampler: NegativeSampler, weighted: bool = True) -> list[float]:
        model = OnlineLogit()
        for n, (x, fraud) in enumerate(train):
            if weight := sampler.weight(f"tx-{n}", fraud):
                model.learn_one(x, fraud, weight if weighted else 1.0)
        predictor = model.freeze()
        return [predictor.predict_proba(x) for x, _ in held]

    sampler = NegativeSampler(ratio=10.0, floor=2_000)
    sampled = fit(sampler)
    assert sampler.skipped > 40_000  # most legitimate labels were left out
    everything = fit(NegativeSampler(ratio=0))
    for scores in (sampled, everything):
        assert sum(scores) / len(scores) == pytest.approx(rate, abs=0.006)
    # Where the model is confident, the sample says what learning everything says.
    high = [i for i, p in enumerate(everything) if p >= 0.1]
    assert len(high) > 200
    mean_high = sum(everything[i] for i in high) / len(high)
    assert sum(sampled[i] for i in high) / len(high) == pytest.approx(mean_high, abs=0.03)
    assert roc_auc(sampled, [int(y) for _, y in held]) > 0.9
    # The weights are what keeps it calibrated.
    unweighted = fit(NegativeSampler(ratio=10.0, floor=2_000), weighted=False)
    assert sum(unweighted) / len(unweighted) > 2.5 * rate


def test_a_weighted_label_is_learnt_as_that_many_presentations() -> None:
    # A legitimate label kept 1 in 13 by the sampler stands for 13: one step of 13 times the
    # gradient overshoots; 13 steps, each from where the last left the margin, do not.
    rng = random.Random(3)
    warm = toy_stream(500, seed=4)
    x = toy_example(rng, False)
    weighted, repeated = OnlineLogit(rescale_every=10**9), OnlineLogit(rescale_every=10**9)
    for model in (weighted, repeated):
        model.learn_many(warm)
    weighted.learn_one(x, False, 3.0)
    for _ in range(3):
        repeated.learn_one(x, False, 1.0)
    # Identical steps; the statistics differ only in how many examples were counted.
    assert weighted.w == pytest.approx(repeated.w, rel=1e-12)
    assert weighted.b == pytest.approx(repeated.b, rel=1e-12)
    assert weighted.sums == pytest.approx(repeated.sums, rel=1e-12)
    # A fraction is a last, partial step: 2.5 lies between 2 and 3 presentations.
    half = OnlineLogit(rescale_every=10**9)
    half.learn_many(warm)
    half.learn_one(x, False, 2.5)
    two = OnlineLogit(rescale_every=10**9)
    two.learn_many(warm)
    two.learn_one(x, False, 2.0)
    assert repeated.b < half.b < two.b


def test_a_corrected_label_leaves_the_counters_as_if_it_had_been_given_right() -> None:
    # An analyst's mis-click (fraud) corrected to legitimate: the model must not go on
    # counting a fraud, nor the transaction twice in the statistics its scaling is made of.
    rng = random.Random(8)
    warm = toy_stream(500, seed=9)
    x = toy_example(rng, False)
    corrected, right = OnlineLogit(rescale_every=10**9), OnlineLogit(rescale_every=10**9)
    for model in (corrected, right):
        model.learn_many(warm)
    right.learn_one(x, False)
    corrected.learn_one(x, True)
    assert corrected.frauds == right.frauds + 1
    learnt = (list(corrected.w), corrected.b, list(corrected.g2), corrected.g2b)
    corrected.take_back(x, True)
    # Taken out of what it counts; the weights keep what learning has made of them.
    assert (list(corrected.w), corrected.b, list(corrected.g2), corrected.g2b) == learnt
    corrected.learn_one(x, False)
    assert (corrected.count, corrected.frauds) == (right.count, right.frauds) == (501, 57)
    assert corrected.weight_sum == pytest.approx(right.weight_sum, rel=1e-12)
    assert corrected.sums == pytest.approx(right.sums, rel=1e-9, abs=1e-9)
    assert corrected.squares == pytest.approx(right.squares, rel=1e-9, abs=1e-9)
    assert corrected.freeze().frauds_seen == right.freeze().frauds_seen
    # A label kept by the sampler for 3 comes out as 3.
    heavy = OnlineLogit()
    heavy.learn_many(warm)
    before = (heavy.count, heavy.frauds, heavy.weight_sum, list(heavy.sums))
    heavy.learn_one(x, False, 3.0)
    heavy.take_back(x, False, 3.0)
    assert (heavy.count, heavy.frauds) == before[:2]
    assert heavy.weight_sum == pytest.approx(before[2], rel=1e-12)
    assert heavy.sums == pytest.approx(before[3], rel=1e-9, abs=1e-9)
    # Nothing left: exact zeros, never a negative count.
    alone = OnlineLogit()
    alone.learn_one(x, True)
    alone.take_back(x, True)
    assert (alone.count, alone.frauds, alone.weight_sum) == (0, 0, 0.0)
    assert not any(alone.sums) and not any(alone.squares)


def test_a_correction_takes_back_only_what_the_sampler_kept() -> None:
    # Legitimate labels kept 1 in k with weight k: a label left out was never counted, so
    # there is nothing to take back; one kept comes out with the weight it went in with.
    sampler = NegativeSampler(ratio=2.0, floor=20)
    given = {f"tx-{n}": sampler.weight(f"tx-{n}", n % 50 == 0) for n in range(1_000)}
    # The last ones, given at about today's rate (it falls while legitimate labels pile up
    # faster than ratio x frauds, then holds where the mix does).
    left_out = [t for t, w in given.items() if w == 0.0][-2:]
    kept = [t for t, w in given.items() if w > 1.0][-2:]
    assert len(left_out) == len(kept) == 2
    frauds, legitimate = sampler.frauds, sampler.legitimate
    # The same hash at about the same rate decides the same way.
    assert sampler.taken_back(left_out[0], False) == 0.0
    assert sampler.taken_back(kept[0], False) == pytest.approx(given[kept[0]], rel=0.05)
    assert sampler.taken_back("tx-0", True) == 1.0  # a fraud: always learnt, weight 1
    assert (sampler.frauds, sampler.legitimate) == (frauds - 1, legitimate - 2)

    # Through the slot: the correction of a left-out label is learnt alone; that of a kept
    # one comes after its take-back (a negative weight), the same inputs.
    slot = ModelSlot(memory=10, learner=OnlineLogit())
    slot.sampler = sampler
    stored = {t: (RAW_LAYOUT, b"") for t in (left_out[1], kept[1], "tx-50")}
    raw = {t: capture_of(n) for n, t in enumerate(stored)}
    stored = {t: (RAW_LAYOUT, raw[t]) for t in stored}
    labels = [(left_out[1], True), (kept[1], True), ("tx-50", True)]
    examples, without = slot.stored_examples(
        labels, stored, {left_out[1]: False, kept[1]: False, "tx-50": True}
    )
    assert without == 0
    assert [(x, y, w if w > 0 else -1.0) for x, y, w in examples] == [
        (raw[left_out[1]], True, 1.0),
        (raw[kept[1]], False, -1.0),
        (raw[kept[1]], True, 1.0),
        (raw["tx-50"], True, 1.0),  # the same label again: nothing to take back
    ]
    assert -examples[1][2] == pytest.approx(given[kept[1]], rel=0.05)
    # Inputs still in memory go the same way.
    memory = ModelSlot(memory=10, learner=OnlineLogit())
    Detector(model=memory).score(make_tx(7))
    x = memory.kept("tx-7")
    examples, missing = memory.pop_examples([("tx-7", True)], {"tx-7": False})
    assert (examples, missing) == ([(x, False, -1.0), (x, True, 1.0)], [])


def test_a_correction_takes_back_nothing_of_a_label_the_model_never_learnt() -> None:
    # Two ways a label reaches the model without being learnt: the sampler leaves it out,
    # or its inputs are nowhere (memory let go, the store without them or unreadable). Its
    # correction must take nothing back, whatever the sampler's rate is by then.
    slot = ModelSlot(memory=100, learner=OnlineLogit())
    slot.sampler = NegativeSampler(ratio=1.0, floor=1)
    raw = {f"tx-{n}": capture_of(n) for n in range(40)}
    stored = {t: (RAW_LAYOUT, x) for t, x in raw.items()}
    legit = [(f"tx-{n}", False) for n in range(1, 30)]
    examples, _ = slot.stored_examples([("tx-0", True), *legit], stored)
    learnt = {x for x, _, _ in examples}
    left_out = next(t for t, _ in legit if raw[t] not in learnt)
    # Frauds pile up: the sampler's rule, at today's rate, would say every label was kept.
    for n in range(100):
        slot.sampler.weight(f"fraud-{n}", True)
    assert copy.copy(slot.sampler).taken_back(left_out, False) == 1.0
    # Never learnt: stored without inputs (tx-35), or left out (`left_out`).
    _, without = slot.stored_examples([("tx-35", True)], {})
    assert without == 1
    legitimate, frauds = slot.sampler.legitimate, slot.sampler.frauds
    examples, without = slot.stored_examples(
        [(left_out, True), ("tx-35", False)], stored, {left_out: False, "tx-35": True}
    )
    assert without == 0
    assert examples == [(raw[left_out], True, 1.0), (raw["tx-35"], False, 1.0)]
    # The sampler's counts: the left-out label was counted (and so uncounted), tx-35's not.
    assert (slot.sampler.legitimate, slot.sampler.frauds) == (legitimate, frauds + 1)
    # Learnt, then corrected: taken back with the weight it was learnt with.
    examples, _ = slot.stored_examples([("tx-35", True)], stored, {"tx-35": False})
    assert examples == [(raw["tx-35"], False, -1.0), (raw["tx-35"], True, 1.0)]


def test_without_a_memory_limit_the_note_of_what_was_given_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A backtest's slot has no `memory` limit and never corrects a label: noting every label
    # of a file of millions would grow without end. It keeps the last GIVEN_MAX.
    monkeypatch.setattr(model_module, "GIVEN_MAX", 5)
    slot = ModelSlot(memory=None, learner=OnlineLogit())
    raw = {f"tx-{n}": capture_of(n) for n in range(8)}
    stored = {t: (RAW_LAYOUT, x) for t, x in raw.items()}
    slot.stored_examples([(t, True) for t in raw], stored)
    assert list(slot.given) == [f"tx-{n}" for n in range(3, 8)]
    # With a limit, the limit: as many as the inputs it remembers.
    assert ModelSlot(memory=3).given_max == 3


def capture_of(n: int) -> bytes:
    """The packed inputs of a scored transaction, as the store keeps them."""
    slot = ModelSlot(memory=10)
    Detector(model=slot).score(make_tx(n, amount=f"{10 + n}.00"))
    raw = slot.kept(f"tx-{n}")
    assert raw is not None
    return raw


def test_an_input_that_hardly_varies_far_from_zero_is_not_blown_up() -> None:
    # The rules' logit where rules seldom fire: -9.2 on all but a few transactions. Divided
    # by its spread (~0.3) it would reach ~30 and every step on it would swing the model.
    model = OnlineLogit()
    logit = FEATURE_NAMES.index("rules_logit")
    rng = random.Random(6)
    for n in range(5_000):
        x = [0.0] * len(FEATURE_NAMES)
        x[logit] = -1.0 if n % 1000 == 0 else -9.2
        model.learn_one(x, rng.random() < 0.01)
    assert abs(-9.2 * model.scale[logit]) < 10.1  # its spread counts for a tenth of its size
    # An input that does vary is divided by its spread as before.
    model = OnlineLogit()
    for _ in range(5_000):
        x = [0.0] * len(FEATURE_NAMES)
        x[logit] = rng.gauss(-5.0, 2.0)
        model.learn_one(x, False)
    assert 1.0 / model.scale[logit] == pytest.approx(2.0, rel=0.05)


def test_the_sampler_keeps_scarce_legitimate_labels_and_decides_by_id() -> None:
    # Analysts' resolutions: as many legitimate labels as frauds; every one is learnt.
    scarce = NegativeSampler(ratio=10.0, floor=100)
    assert all(scarce.weight(f"tx-{n}", n % 2 == 0) == 1.0 for n in range(5_000))
    assert scarce.skipped == 0
    # Abundant: past the floor, about ratio x frauds are kept, each weighing 1/rate.
    a, b = NegativeSampler(ratio=10.0, floor=100), NegativeSampler(ratio=10.0, floor=100)
    ids = [(f"tx-{n}", n % 100 == 0) for n in range(20_000)]
    weights_a = [a.weight(tx_id, fraud) for tx_id, fraud in ids]
    weights_b = [b.weight(tx_id, fraud) for tx_id, fraud in ids]
    assert weights_a == weights_b  # the same labels in the same order: the same choice
    kept = [w for w in weights_a if w]
    assert a.skipped == len(ids) - len(kept)
    assert 2_000 < len(kept) < 3_000  # 200 frauds + ~10 legitimate per fraud
    assert sum(kept) == pytest.approx(len(ids), rel=0.1)  # the weights stand for the rest
    assert NegativeSampler(ratio=0).weight("tx-1", False) == 1.0
    with pytest.raises(ValueError):
        NegativeSampler(ratio=-1)


def test_a_slot_learns_inline_with_the_sampler() -> None:
    slot = ModelSlot(memory=10_000, learner=OnlineLogit(), negative_ratio=1.0)
    slot.sampler.floor = 10
    detector = Detector(model=slot)
    for n in range(300):
        detector.score(make_tx(n))
    for n in range(300):
        assert slot.learn_label(f"tx-{n}", n % 30 == 0)
    assert slot.learner is not None
    assert slot.learner.frauds == 10
    assert slot.learner.count == 300 - slot.sampler.skipped
    assert 10 < slot.learner.count < 60  # 10 frauds + about one legitimate label each
    assert slot.remembered == {}  # learnt or left out, every labelled input is forgotten


def test_contributions_add_up_to_the_calibrated_logit() -> None:
    model = OnlineLogit()
    model.learn_many(toy_stream(2000, seed=3))
    model.cal_a, model.cal_b = 0.8, 0.6
    predictor = model.freeze()
    rng = random.Random(4)
    for fraud in (True, False):
        x = toy_example(rng, fraud)
        contributions = predictor.contributions(x)
        assert set(contributions) == set(FEATURE_NAMES)
        total = predictor.intercept() + sum(contributions.values())
        assert total == pytest.approx(0.8 * predictor.logit(x) + 0.6, abs=1e-9)
        assert sigmoid(total) == pytest.approx(predictor.predict_proba(x))
    fraud_like = toy_example(rng, True)
    top = max(predictor.contributions(fraud_like).items(), key=lambda item: item[1])
    assert top[0] in ("log_tiny_recent", "log_amount")


def test_rescaling_does_not_change_predictions() -> None:
    model = OnlineLogit(rescale_every=10**9)  # only the first 64 examples rescale
    model.learn_many(toy_stream(500, seed=6))
    x = toy_example(random.Random(7), True)
    before = model.freeze().logit(x)
    model._rescale()
    assert model.freeze().logit(x) == pytest.approx(before, rel=1e-9)


def test_persistence_round_trip() -> None:
    model = OnlineLogit()
    model.learn_many(toy_stream(1500, seed=8))
    data = json.loads(json.dumps(model.to_dict()))
    again = OnlineLogit.from_dict(data)
    x = toy_example(random.Random(9), True)
    assert again.freeze().logit(x) == model.freeze().logit(x)
    # It goes on learning exactly as the original would.
    more = toy_stream(300, seed=10)
    model.learn_many(more)
    again.learn_many(more)
    assert again.to_dict() == model.to_dict()


def test_a_model_saved_with_averages_loads_as_sums() -> None:
    # Saved before the learner kept sums: each input's average and squared deviations.
    model = OnlineLogit()
    model.learn_many(toy_stream(1500, seed=8))
    data = json.loads(json.dumps(model.to_dict()))
    total = model.weight_sum
    data["mean"] = [s / total for s in model.sums]
    data["m2"] = [q - s * s / total for s, q in zip(model.sums, model.squares, strict=True)]
    del data["sums"], data["squares"]
    again = OnlineLogit.from_dict(data)
    x = toy_example(random.Random(9), True)
    assert again.freeze().logit(x) == pytest.approx(model.freeze().logit(x), rel=1e-9)
    assert again.squares == pytest.approx(model.squares, rel=1e-9)
    more = toy_stream(300, seed=10)
    model.learn_many(more)
    again.learn_many(more)
    assert again.freeze().logit(x) == pytest.approx(model.freeze().logit(x), rel=1e-6)


def test_calibration_learns_what_a_late_model_gets_wrong() -> None:
    # Scores that under-predict fraud two-fold in the middle, as the simulator's did: the
    # truth is sigmoid(logit + 0.8). The map learns the offset and keeps the slope near 1.
    model = OnlineLogit()
    rng = random.Random(11)
    for _ in range(60_000):
        z = rng.gauss(-4.0, 2.5)
        model.calibrate(z, rng.random() < sigmoid(z + 0.8))
    assert model.cal_b == pytest.approx(0.8, abs=0.25)
    assert model.cal_a == pytest.approx(1.0, abs=0.1)
    predictor = model.freeze()
    x = toy_example(random.Random(12), True)
    assert predictor.predict_proba(x) == pytest.approx(
        sigmoid(model.cal_a * predictor.logit(x) + model.cal_b)
    )
    # Weighted labels count as that many: one of weight 4 moves it as four of weight 1.
    one, four = OnlineLogit(), OnlineLogit()
    one.calibrate(-3.0, False, 4.0)
    for _ in range(4):
        four.calibrate(-3.0, False, 1.0)
    assert one.cal_b == pytest.approx(four.cal_b, rel=1e-3)


def test_calibration_never_reverses_the_ranking() -> None:
    model = OnlineLogit()
    model.learn_many(toy_stream(2000, seed=13))
    rng = random.Random(13)
    for _ in range(20_000):  # labels against the scores: the higher, the less fraud
        z = rng.gauss(0.0, 3.0)
        model.calibrate(z, rng.random() < sigmoid(-z))
    assert model.cal_a == MIN_SLOPE  # it wanted to go below: held at the floor
    predictor = model.freeze()
    rng = random.Random(14)
    examples = [toy_example(rng, n % 2 == 0) for n in range(50)]
    by_logit = sorted(examples, key=predictor.logit)
    assert len({predictor.logit(x) for x in examples}) == 50
    probabilities = [predictor.predict_proba(x) for x in by_logit]
    assert probabilities == sorted(probabilities)


def test_a_scored_transaction_keeps_its_logit_and_its_label_calibrates() -> None:
    learner = OnlineLogit()
    learner.learn_many(toy_stream(2000, seed=14))
    slot = ModelSlot(learner=learner, min_labels=10, min_frauds=1)
    detector = Detector(model=slot)
    detector.score(make_tx(0))  # no model yet: nothing to calibrate from
    assert scored_logit(slot.remembered["tx-0"]) is None
    slot.predictor = predictor = learner.freeze(learner.count)
    verdict = detector.score(make_tx(1, amount="1.00"))
    raw = slot.remembered["tx-1"]
    logit = scored_logit(raw)
    assert logit == predictor.logit(inputs(raw))
    assert verdict.score == round(predictor.predict_proba(inputs(raw)), 4)
    before = (learner.cal_a, learner.cal_b)
    assert slot.learn_label("tx-0", True)
    assert (learner.cal_a, learner.cal_b) == before
    assert slot.learn_label("tx-1", True)
    assert learner.cal_b > before[1]  # a fraud it scored below certainty: the offset rises
    # The next snapshot scores with the calibration learnt.
    slot.predictor = learner.freeze(learner.count)
    assert (slot.predictor.cal_a, slot.predictor.cal_b) == (learner.cal_a, learner.cal_b)


def test_a_label_is_learnt_from_the_inputs_it_was_scored_on_not_made_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Learning inline, a scored transaction's inputs are made once: its label is learnt
    from what was kept of them, to the same weights as from inputs made again."""
    learner = OnlineLogit()
    learner.learn_many(toy_stream(300, seed=16))
    reference = copy.deepcopy(learner)
    slot = ModelSlot(learner=learner, min_labels=10, min_frauds=1)
    slot.predictor = learner.freeze(learner.count)
    detector = Detector(model=slot)
    calls = 0
    made = model_module.active_inputs

    def counted(raw: bytes) -> tuple[list[int], list[float]]:
        nonlocal calls
        calls += 1
        return made(raw)

    monkeypatch.setattr(model_module, "active_inputs", counted)
    for n in range(40):
        tx = make_tx(n, amount="1.00" if n % 4 == 0 else f"{20 + n}.50", device_id=f"d-{n % 3}")
        detector.score(tx)
        model_module.learn_example(reference, slot.remembered[tx.id], n % 4 == 0, 1.0)
        before = calls
        assert slot.learn_label(tx.id, n % 4 == 0)
        assert calls == before  # not made again
    assert not slot.scored_inputs
    assert learner.to_dict() == reference.to_dict()  # every weight and statistic, to the bit


def test_a_model_saved_before_calibration_loads_uncalibrated() -> None:
    model = OnlineLogit()
    model.learn_many(toy_stream(500, seed=15))
    model.calibrate(-2.0, True)
    data = json.loads(json.dumps(model.to_dict()))
    assert OnlineLogit.from_dict(data).cal_b == model.cal_b
    del data["calibration"]
    again = OnlineLogit.from_dict(data)
    assert (again.cal_a, again.cal_b) == (1.0, 0.0)
    data["calibration"] = [1.0, math.nan]
    with pytest.raises(ValueError, match="calibration"):
        OnlineLogit.from_dict(data)


def test_a_saved_model_of_other_unnamed_inputs_or_damaged_is_refused() -> None:
    data = OnlineLogit().to_dict()
    other = {**data, "feature_set": "m0+00000000"}
    del other["features"]
    with pytest.raises(ValueError, match="feature set"):
        OnlineLogit.from_dict(other)
    with pytest.raises(ValueError, match="feature set"):
        OnlineLogit.from_dict({**other, "features": [1, 2]})
    with pytest.raises(ValueError, match="damaged"):
        OnlineLogit.from_dict({**data, "w": data["w"][:-1]})
    with pytest.raises(ValueError, match="damaged"):
        OnlineLogit.from_dict({**data, "w": [float("nan")] * len(FEATURE_NAMES)})
    assert data["feature_set"] == FEATURE_SET


def test_until_ready_the_score_is_the_rules_score() -> None:
    slot = ModelSlot(learner=OnlineLogit(), min_labels=50, min_frauds=5)
    with_model = Detector(model=slot)
    rules_only = Detector()
    for n in range(30):
        tx = make_tx(n, amount="1.00" if n % 10 > 6 else "40.00")
        assert with_model.score(tx) == rules_only.score(tx)
        with_model.learn_label(tx.id, tx.account_id, n % 10 > 6, tx.timestamp)
    assert slot.predictor is None
    assert slot.learner is not None and slot.learner.count == 30
    assert not slot.ready(30, 9) and not slot.ready(60, 4) and slot.ready(60, 5)


def test_memory_is_bounded_and_each_label_is_learnt_once() -> None:
    slot = ModelSlot(memory=5, learner=OnlineLogit())
    detector = Detector(model=slot)
    for n in range(8):
        detector.score(make_tx(n))
    assert list(slot.remembered) == [f"tx-{n}" for n in range(3, 8)]
    examples, missing = slot.pop_examples([("tx-1", True), ("tx-4", False), ("tx-4", False)])
    assert [(len(inputs(x)), y, w) for x, y, w in examples] == [(len(FEATURE_NAMES), False, 1.0)]
    # tx-1 is for the store to answer (`stored_examples`); tx-4's repeat is learnt no more.
    assert missing == [("tx-1", True)]
    assert not slot.learn_label("tx-0", True)
    assert slot.learn_label("tx-5", True)
    assert slot.learner is not None and slot.learner.count == 1


def test_a_ready_model_scores_and_explains_itself() -> None:
    # Accounts testing cards (tiny amounts in a burst) are fraud; steady shoppers are not.
    slot = ModelSlot(learner=OnlineLogit(), min_labels=100, min_frauds=10)
    detector = Detector(model=slot)
    n = 0
    for round_ in range(40):
        for _ in range(4):
            tx = make_tx(n, account_id=f"ct-{round_}", amount="1.00")
            n += 1
            detector.score(tx)
            detector.learn_label(tx.id, tx.account_id, True, tx.timestamp)
        for k in range(6):
            tx = make_tx(n, account_id=f"ok-{k}", amount=f"{30 + k}.00")
            n += 1
            detector.score(tx)
            detector.learn_label(tx.id, tx.account_id, False, tx.timestamp)
    assert slot.predictor is not None
    scored = [detector.score(make_tx(n + i, account_id="ct-new", amount="1.00")) for i in range(4)]
    last = scored[-1]
    assert 0.0 <= last.score <= 1.0
    assert last.decision != "allow"
    model_reasons = [r for r in last.reasons if r.code == "model"]
    assert len(model_reasons) == 1
    message = model_reasons[0].message
    assert message.startswith("Model: fraud probability")
    assert "top factors:" in message and "(+" in message
    assert "log " not in message  # inputs are shown on their own scale, not as logs
    assert "card_testing" in {r.code for r in last.reasons}  # the rules that fired stay
    ordinary = detector.score(make_tx(n + 10, account_id="ok-1", amount="31.00"))
    assert ordinary.decision == "allow"
    assert ordinary.score < 0.5
    assert all(r.code != "model" for r in ordinary.reasons)


def sure_model(bias: float, rules: RuleSet | None = None) -> Detector:
    """A detector whose ready model gives every transaction sigmoid(bias)."""
    zeros = (0.0,) * len(FEATURE_NAMES)
    slot = ModelSlot(predictor=Predictor(zeros, bias, zeros, 1000, 100, 1))
    return Detector(model=slot, rules=rules)


@pytest.mark.parametrize(
    ("bias", "amount", "decision", "severity"),
    [
        (3.0, "1.00", "block", "medium"),  # p = 0.95: sure, and 0.95 at stake
        (3.0, "400.00", "block", "high"),  # 381
        (3.0, "1000.00", "block", "critical"),  # 953
        (0.2, "5000.00", "review", "high"),  # p = 0.55: a review is never critical
        (0.2, "100.00", "review", "medium"),  # 55
        (-3.0, "5000.00", "allow", "low"),
    ],
)
def test_a_models_alert_is_as_severe_as_the_money_it_likely_loses(
    bias: float, amount: str, decision: str, severity: str
) -> None:
    scored = sure_model(bias).score(make_tx(1, amount=amount))
    assert (scored.decision, scored.severity) == (decision, severity)


@pytest.mark.parametrize(
    ("settings", "amount", "severity"),
    [
        ("high_loss = 2000.0\ncritical_loss = 10000.0", "400.00", "medium"),  # 381: high by default
        ("high_loss = 2000.0\ncritical_loss = 10000.0", "3000.00", "high"),  # 2,858: critical
        ("high_loss = 2000.0\ncritical_loss = 10000.0", "20000.00", "critical"),
        ("high_loss = 0.5\ncritical_loss = 2.0", "1.00", "high"),  # 0.95: medium by default
        ("high_loss = 0.5\ncritical_loss = 2.0", "3.00", "critical"),  # 2.86: medium by default
    ],
)  # fmt: skip
def test_a_models_alert_is_banded_by_the_packs_loss_settings(
    settings: str, amount: str, severity: str
) -> None:
    pack = compile_sources([("pack.toml", f"[settings]\n{settings}\n".encode())])
    scored = sure_model(3.0, pack).score(make_tx(1, amount=amount))  # p = 0.95
    assert (scored.decision, scored.severity) == ("block", severity)
    assert scored.reasons[0].code == "model"


def test_the_amount_at_stake_is_read_on_the_streams_scale_from_the_kept_inputs() -> None:
    tx = make_tx(1, amount="60000.00")
    known = capture({"amount": 60000.0, "amount_scale": 150.0}, tx, (), 0.0)
    assert amount_scaled(known) == pytest.approx(400.0)
    assert amount_scaled(capture({"amount": 60000.0, "amount_scale": None}, tx, (), 0.0)) == 60000.0


def test_no_time_of_day_is_no_night_and_unknown_counts_are_a_lone_transaction() -> None:
    # A stream of dates only (features.DAY_ONLY_FROM): the hour and the account's minute and
    # hour counts are unknown. Read as 0 they were "night" and log(0) other transactions.
    tx = make_tx(1)
    v = {"amount": 40.0, "history": 6, "mean": 40.0, "local_hour": None,
         "account_count_1m": None, "account_count_1h": None}  # fmt: skip
    x = dict(zip(FEATURE_NAMES, inputs(capture(v, tx, (), 0.0)), strict=True))
    assert (x["night"], x["log_tx_1m"], x["log_tx_1h"]) == (0.0, 0.0, 0.0)
    lone = v | {"local_hour": 12, "account_count_1m": 1, "account_count_1h": 1}
    assert inputs(capture(lone, tx, (), 0.0)) == list(x.values())
    midnight = dict(
        zip(FEATURE_NAMES, inputs(capture(v | {"local_hour": 0}, tx, (), 0.0)), strict=True)
    )
    assert midnight["night"] == 1.0


def test_what_is_kept_gives_the_same_inputs_as_scoring_saw() -> None:
    f = feats(600.0, 2, 20, 40.0, 5.0, 3, 9, 4, 5000.0, 1800.0, True, None, None)
    reasons = (Reason("card_testing", "…", weight=0.65),)
    tx = make_tx(1, channel="atm", device_id="d-1")
    raw = capture(f, tx, reasons, 0.82, (0.7, 1200.0, 2))
    assert len(raw) < 2 * len(FEATURE_NAMES)  # ~106 bytes for 57 inputs (456 as doubles)
    named = named_features(f, tx, reasons, 0.82, (0.7, 1200.0, 2))
    assert inputs(raw) == list(named.values())
    assert named["first_device"] == 1.0 and named["new_device"] == 0.0  # a first device
    assert named["atm"] == 1.0 and named["flagged_1h"] == 1.0
    assert named["log_flags_24h"] == pytest.approx(math.log1p(2))


def random_raw(rng: random.Random) -> bytes:
    """Raw values as `capture` packs them, drawn to reach every branch of `inputs()`: zeros,
    tiny and huge values, no location (NaN), no scale, rules and flags."""

    def pick(*choices: float) -> float:
        return rng.choice(choices) if rng.random() < 0.5 else rng.uniform(0.0, choices[-1])

    located = rng.random() < 0.7
    return model_module._RAW.pack(
        rng.choice([0, 1, 4, 5, 30]),  # history
        pick(0.0, 1e-9, 1.0, 19.99, 20.0, 100.0, 3000.0, 2e5),  # amount
        pick(0.0, 1.0, 40.0, 500.0),  # mean
        pick(0.0, 0.5, 20.0, 300.0),  # std
        pick(0.0, 12.0, 5e3) if located else math.nan,  # distance
        pick(0.0, 0.5, 60.0, 86400.0) if located else math.nan,  # elapsed
        rng.randrange(24),
        *(rng.random() < 0.3 for _ in range(4)),  # new merchant, country, device; first device
        rng.randrange(1, 8), rng.randrange(1, 30), rng.choice([0, 0, 1, 5]),  # counts
        rng.choice([0, 1, 2]),  # channel
        rng.choice([0, 0, 1, 5, (1 << 13) - 1]),  # rules that fired
        rng.choice([0.0, 0.0, 0.5, 0.05, 0.65, 0.9999]),  # rules' score
        rng.choice([0.0, 0.0, 0.7]), pick(0.0, 100.0, 7200.0), rng.choice([0, 0, 2]),  # flags
        rng.choice([-1.0, 0.0, 3.5, 7200.0]),  # since the previous transaction
        *(pick(0.0, 0.0, 0.25, 1.0) for _ in range(4)),  # merchant rates, amount's rate
        rng.choice([0.0, 0.0, 2.0]),  # merchant's run
        pick(0.0, 0.1), pick(0.0, 0.0, 2.5, 10.0), pick(0.0, 0.0, 900.0),  # hour, MCC, inflow
        rng.choice([0.0, 1.0]),  # new payee
        rng.choice([0.0, 0.0, 1.0, 150.0]),  # the stream's scale
    )  # fmt: skip


def test_the_active_inputs_are_inputs_that_are_not_zero_to_the_bit() -> None:
    """`active_inputs` (predicting and learning) makes exactly `inputs()`'s values that are
    not 0, in order; the logit and a step learnt from them are the dense ones to the bit."""
    rng = random.Random(21)
    raws = [random_raw(rng) for _ in range(4000)]
    learner = OnlineLogit()
    learner.learn_many(toy_stream(800, seed=22))
    predictor = learner.freeze()
    seen: set[int] = set()
    for raw in raws:
        x = inputs(raw)
        index, values = active_inputs(raw)
        assert index == list(compress(range(len(x)), x))
        dense = list(compress(x, x))
        assert struct.pack(f"{len(dense)}d", *dense) == struct.pack(f"{len(values)}d", *values)
        logit = predictor.logit_active(index, values)
        assert struct.pack("<d", logit) == struct.pack("<d", predictor.logit(x))
        seen.update(index)
    assert seen == set(range(len(FEATURE_NAMES)))  # every input was not 0 at least once
    dense_learner, active_learner = copy.deepcopy(learner), copy.deepcopy(learner)
    for n, raw in enumerate(raws[:500]):
        dense_learner.learn_one(inputs(raw), n % 7 == 0, 1.0 + n % 3 / 2)
        active_learner.learn_active(*active_inputs(raw), n % 7 == 0, 1.0 + n % 3 / 2)
    assert active_learner.to_dict() == dense_learner.to_dict()


def test_a_label_of_weight_one_adds_its_inputs_to_the_scaling_sums_as_any_weight() -> None:
    """Weight 1.0 (every label, unsampled) takes a shorter path in `learn_active`: its sums
    and squares are still the running sums of weight * v and weight * v * v, to the bit."""
    rng = random.Random(23)
    learner = OnlineLogit()
    n = len(FEATURE_NAMES)
    sums, squares = [0.0] * n, [0.0] * n
    for k in range(600):  # past the first 64 and two refreshes of the scales (every 256)
        index, values = active_inputs(random_raw(rng))
        weight = 1.0 if k % 4 else 2.5
        learner.learn_active(index, values, k % 9 == 0, weight)
        for i, v in zip(index, values, strict=True):
            wv = weight * v
            sums[i] += wv
            squares[i] += wv * v
    assert struct.pack(f"{n}d", *learner.sums) == struct.pack(f"{n}d", *sums)
    assert struct.pack(f"{n}d", *learner.squares) == struct.pack(f"{n}d", *squares)


def test_the_account_flags_filled_in_are_those_capture_packs() -> None:
    f = feats(600.0, 2, 20, 40.0, 5.0, 3, 9, 4, 5000.0, 1800.0, True, None, None)
    reasons = (Reason("card_testing", "…", weight=0.65),)
    slot = ModelSlot()
    t0 = T0.timestamp()

    def flagged(tx: Transaction, score: float, t: float) -> bytes:
        rules = Scored(score, "review", "medium", reasons, "v1")
        return slot.flag(tx.account_id, slot.observe(tx, f, rules), score, t)

    first = make_tx(1)
    assert flagged(first, 0.82, t0) == capture(f, first, reasons, 0.82)  # nothing before
    flagged(make_tx(2), 0.3, t0 + 600.0)
    later = make_tx(3)
    assert flagged(later, 0.0, t0 + 1800.0) == capture(f, later, reasons, 0.0, (0.82, 1200.0, 2))
    other = make_tx(4, account_id="acct-2")  # never flagged
    assert flagged(other, 0.0, t0 + 1800.0) == capture(f, other, reasons, 0.0)
    a_day_on = make_tx(5)  # the flags are over a day old
    assert flagged(a_day_on, 0.0, t0 + 90_000.0) == capture(f, a_day_on, reasons, 0.0)


def test_the_explanation_names_only_inputs_the_transaction_has() -> None:
    model = OnlineLogit()
    model.learn_many(toy_stream(2000, seed=11))
    predictor = model.freeze()
    x = [0.0] * len(FEATURE_NAMES)
    x[TINY] = math.log1p(4.0)
    x[AMOUNT] = math.log1p(2.0)
    reason = explain(predictor, x, predictor.predict_proba(x), 0.5)
    assert reason.code == "model"
    factors = reason.message.split("top factors: ")[1]
    # Most inputs are 0 here, and many of those push the score up by being below their mean;
    # only the two the transaction has may be named, on their own scale.
    named = factors.split("; ")
    assert 1 <= len(named) <= 2
    assert all(
        part.startswith(("tiny amounts in the last 10 min: 4 (+", "amount: 2.00 (+"))
        for part in named
    ), factors


def test_a_value_and_its_band_are_one_factor() -> None:
    # The demo read "other transactions in the last minute: 1 (+0.9)" and "... in the last
    # hour: 1 (+0.9)" among the top three twice over: the log count and its band, ranked
    # apart. One factor now, with their shares added; and a band that takes back what its
    # value gave (an amount far under the average) leaves the factor its net share.
    index = {name: i for i, name in enumerate(FEATURE_NAMES)}
    weights = [0.0] * len(FEATURE_NAMES)
    weights[index["log_tx_1m"]], weights[index["tx_1m_band_1"]] = 1.0, 0.5
    weights[index["log_ratio"]], weights[index["ratio_band_0"]] = -2.0, -2.5
    weights[index["night"]] = 1.0
    means = (0.0,) * len(FEATURE_NAMES)
    predictor = Predictor(tuple(weights), 0.0, means, 1000, 100, 1)
    x = [0.0] * len(FEATURE_NAMES)
    x[index["log_tx_1m"]], x[index["tx_1m_band_1"]] = math.log1p(1), 1.0
    x[index["log_ratio"]], x[index["ratio_band_0"]] = math.log(0.1), 1.0  # +4.6 - 2.5
    x[index["night"]] = 1.0
    reason = explain(predictor, x, predictor.predict_proba(x), 0.5)
    factors = reason.message.split("top factors: ")[1].split("; ")
    assert factors == [
        "amount 0.1× the account's average (+2.1)",
        "other transactions in the last minute: 1 (+1.2)",
        "between 00:00 and 05:00 local time (+1.0)",
    ]


def test_a_small_ratio_to_the_average_is_not_shown_as_zero() -> None:
    # The demo showed "amount 0.0x the account's average" for $34 on a big spender's card.
    shown = {r: _shown("log_ratio", math.log(r)) for r in (0.034, 0.5, 2.46, 37.2)}
    assert [text.split()[1] for text in shown.values()] == ["0.034×", "0.5×", "2.5×", "37×"]
    # A huge one is capped as the rules' reasons cap it, not printed to thirteen digits.
    assert _shown("log_ratio", math.log(2.5e12)) == "amount more than 1,000× the account's average"
    assert _shown("log_ratio", math.log(1000)) == "amount 1,000× the account's average"


def test_a_factor_below_the_average_reads_below_not_a_negative_above() -> None:
    # The demo read "standard deviations above the account's average: -5.00" for a small
    # purchase on a big spender's card, and "night-time log amount over average: -0.69".
    assert _shown("zscore", -1.5) == "amount 1.50 standard deviations below the account's average"
    assert _shown("zscore", 2.5) == "amount 2.50 standard deviations above the account's average"
    assert _shown("zscore", 1.0) == "amount 1.00 standard deviations above the account's average"
    assert _shown("zscore", 0.0) == "amount at the account's average"
    # The input is clipped to [-5, 10]: at either end the real value may be far past it.
    assert (
        _shown("zscore", -5.0) == "amount 5 or more standard deviations below the account's average"
    )
    assert (
        _shown("zscore", 10.0)
        == "amount 10 or more standard deviations above the account's average"
    )
    # The crosses with the log ratio read as the ratio itself, on either side of 1.
    assert _shown("night_ratio", math.log(0.5)) == "night-time amount 0.5× the account's average"
    assert _shown("night_ratio", math.log(4.0)) == "night-time amount 4.0× the account's average"
    assert (
        _shown("new_country_ratio", math.log(0.25))
        == "new country with an amount 0.25× the account's average"
    )
    assert _shown("new_device_ratio", 1.0) == "new device with an amount 2.7× the account's average"
    # The ratio is floored at 0.001 (an amount of 0): that floor is not a measured 0.001.
    assert _shown("log_ratio", math.log(1e-3)) == "amount at most 0.001× the account's average"
    # A card test's amount is not 0: to the cent, as the rules' reasons write amounts.
    assert _shown("log_amount", math.log1p(0.4)) == "amount: 0.40"
    assert _shown("log_amount", math.log1p(1234.56)) == "amount: 1,234.56"
    # The inputs that can be negative (the rest are logs of counts, flags or rates) read
    # without a minus sign.
    for name in ("zscore", "log_ratio", "night_ratio", "new_country_ratio",
                 "new_device_ratio", "rules_logit"):  # fmt: skip
        assert not re.search(r"-\d", _shown(name, -1.0)), name


def test_the_explanation_of_an_amount_under_the_average_says_below() -> None:
    # A model that learnt small amounts on big spenders' cards as risky: the factor it names
    # is the z-score with its bands, and it must say which side of the average it is on.
    index = {name: i for i, name in enumerate(FEATURE_NAMES)}
    weights = [0.0] * len(FEATURE_NAMES)
    weights[index["zscore"]], weights[index["zscore_band_0"]] = -0.8, 1.0
    predictor = Predictor(tuple(weights), 0.0, (0.0,) * len(FEATURE_NAMES), 1000, 100, 1)
    x = [0.0] * len(FEATURE_NAMES)
    x[index["zscore"]], x[index["zscore_band_0"]] = -5.0, 1.0
    reason = explain(predictor, x, predictor.predict_proba(x), 0.5)
    factors = reason.message.split("top factors: ")[1]
    assert factors == "amount 5 or more standard deviations below the account's average (+5.0)"
    assert FEATURE_LABELS["zscore_band_0"] == (
        "amount's standard deviations from the account's average: under -1"
    )


def test_a_detector_that_does_not_explain_gives_the_same_verdicts_without_messages() -> None:
    # Backtests read reason codes only: the same scores, decisions and codes, no messages.
    def run(explain: bool) -> list[Any]:
        learner = OnlineLogit()
        learner.learn_many(toy_stream(2000, seed=16))
        slot = ModelSlot(learner=learner, predictor=learner.freeze(1))
        detector = Detector(model=slot, explain=explain)
        return [
            detector.score(make_tx(n, account_id=f"a-{n % 3}", amount="1.00" if n % 4 else "900"))
            for n in range(40)
        ]

    explained, bare = run(True), run(False)
    assert [(s.score, s.decision, s.severity) for s in bare] == [
        (s.score, s.decision, s.severity) for s in explained
    ]
    assert [[(r.code, r.observed, r.weight) for r in s.reasons] for s in bare] == [
        [(r.code, r.observed, r.weight) for r in s.reasons] for s in explained
    ]
    codes = {r.code for s in bare for r in s.reasons}
    assert "model" in codes and len(codes) > 1  # the model and at least one rule fired
    assert all(r.message == "" for s in bare for r in s.reasons)
    assert all(r.message for s in explained for r in s.reasons)


def test_inputs_the_memory_let_go_are_learnt_from_the_stored_copy() -> None:
    slot = ModelSlot(memory=2, learner=OnlineLogit())
    detector = Detector(model=slot)
    stored: dict[str, tuple[str, bytes]] = {}
    for n in range(5):
        tx = make_tx(n)
        detector.score(tx)
        kept = detector.kept_inputs(tx.id)
        assert kept is not None and kept[0] == RAW_LAYOUT
        stored[tx.id] = kept  # what the pipeline hands the store
    assert list(slot.remembered) == ["tx-3", "tx-4"]
    labels = [("tx-0", True), ("tx-1", False), ("tx-4", True), ("tx-0", True)]
    examples, missing = slot.pop_examples(labels)
    assert [(x, y) for x, y, _ in examples] == [(stored["tx-4"][1], True)]
    assert missing == [("tx-0", True), ("tx-1", False), ("tx-0", True)]
    stored["tx-1"] = ("m0+00000000/<d", b"\x00" * 8)  # a layout this model cannot read
    from_store, without = slot.stored_examples(missing, stored)
    assert [(x, y, w) for x, y, w in from_store] == [(stored["tx-0"][1], True, 1.0)]
    assert without == 1
    assert len(inputs(from_store[0][0])) == len(FEATURE_NAMES)


def test_a_detector_without_a_model_keeps_no_inputs() -> None:
    detector = Detector()
    detector.score(make_tx(0))
    assert detector.kept_inputs("tx-0") is None


def test_a_round_amount_of_20_or_more_is_an_input() -> None:
    slot = ModelSlot(learner=OnlineLogit())
    detector = Detector(model=slot)
    at = FEATURE_NAMES.index("round_amount")
    seen: dict[str, float] = {}
    for n, amount in enumerate(["500", "500.00", "499.99", "19", "20", "1000000"]):
        tx = make_tx(n, amount=amount)
        detector.score(tx)
        seen[amount] = inputs(slot.remembered[tx.id])[at]
    assert seen == {"500": 1.0, "500.00": 1.0, "499.99": 0.0, "19": 0.0, "20": 1.0, "1000000": 1.0}


def _saved_without(data: dict[str, Any], gone: str, retired: dict[str, float]) -> dict[str, Any]:
    """`data` as an earlier version would have saved it: without input `gone` (added since)
    and with input `retired`'s fields (dropped since) before the third one."""
    names = list(data["features"])
    at = names.index(gone)
    earlier = {**data, "feature_set": "m1+earlier0"}
    for field in ("w", "g2", "scale", "sums", "squares"):
        values = [v for i, v in enumerate(data[field]) if i != at]
        earlier[field] = [*values[:2], retired[field], *values[2:]]
    names.remove(gone)
    earlier["features"] = [*names[:2], "retired_input", *names[2:]]
    return earlier


def test_a_model_saved_by_a_version_with_other_inputs_loads_by_their_names(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # An upgrade that adds an input changes the feature set. The saved model was refused
    # then, and the server went back to the rules alone until it had learnt 500 labels again
    # (a week and more with chargebacks). It now keeps what it learnt for every input the
    # two versions share; the new one starts at 0, as in a fresh model.
    model = OnlineLogit()
    model.learn_many(toy_stream(2000, seed=21))
    model.calibrate(-1.0, True)
    data = json.loads(json.dumps(model.to_dict()))
    new = FEATURE_NAMES[-1]
    retired = {"w": 5.0, "g2": 9.0, "scale": 2.0, "sums": 3.0, "squares": 7.0}
    earlier = _saved_without(data, new, retired)
    path = tmp_path / "model.json"
    path.write_text(json.dumps(earlier))
    with caplog.at_level(logging.INFO, logger="server.learning"):
        loaded = load_learner(path)
    assert loaded is not None
    k = FEATURE_NAMES.index(new)
    for field in ("w", "g2", "scale", "sums", "squares"):
        ours, theirs = getattr(loaded, field), getattr(model, field)
        assert ours[:k] + ours[k + 1 :] == theirs[:k] + theirs[k + 1 :], field
    assert (loaded.w[k], loaded.g2[k], loaded.scale[k]) == (0.0, OnlineLogit().g2[k], 1.0)
    assert (loaded.sums[k], loaded.squares[k]) == (0.0, 0.0)
    assert (loaded.count, loaded.frauds, loaded.b, loaded.cal_a, loaded.cal_b) == (
        model.count, model.frauds, model.b, model.cal_a, model.cal_b,
    )  # fmt: skip
    # It scores as the earlier model did on every transaction without the new input.
    rng = random.Random(4)
    for fraud in (True, False) * 20:
        x = toy_example(rng, fraud)
        x[k] = 0.0
        assert loaded.freeze().logit(x) == pytest.approx(
            model.freeze().logit(x) - model.w[k] * model.scale[k] * x[k], abs=1e-12
        )
    assert (
        f"model file {path} was saved by another version (feature set m1+earlier0): loaded "
        f"by input name; inputs new to it, starting at 0: 1 ({new}); inputs it had that are "
        "no longer used: 1 (retired_input)"
    ) in caplog.text
    # And it goes on learning, the new input too.
    x = toy_example(rng, True)
    x[k] = 1.0
    loaded.learn_one(x, True)
    assert loaded.w[k] != 0.0 and loaded.count == model.count + 1


def test_a_payees_first_payment_in_30_days_is_an_input() -> None:
    # A mule's account, a merchant set up for fraud: a payee nobody has paid in 30 days
    # (the featurizer's is_new_payee), whoever pays it, this transaction's own not counted.
    slot = ModelSlot(learner=OnlineLogit())
    detector = Detector(model=slot)
    at = FEATURE_NAMES.index("new_payee")

    def new(n: int, days: float, payer: str, payee: str) -> float:
        tx = Transaction(id=f"tx-{n}", timestamp=T0 + dt.timedelta(days=days), account_id=payer,
                         merchant_id=payee, amount=Decimal("500.00"), currency="USD")  # fmt: skip
        detector.score(tx)
        return inputs(slot.remembered[tx.id])[at]

    assert new(0, 0, "victim-1", "mule") == 1.0
    assert new(1, 0.1, "victim-2", "mule") == 0.0
    assert new(2, 0.2, "victim-2", "shop") == 1.0
    assert new(3, 29, "victim-3", "mule") == 0.0
    assert new(4, 59, "victim-4", "mule") == 1.0
    assert _shown("new_payee", 1.0) == "first payment to this payee in 30 days"
    # Among the top factors it reads as the flag it is.
    weights = [0.0] * len(FEATURE_NAMES)
    weights[at] = 2.0
    predictor = Predictor(tuple(weights), 0.0, (0.0,) * len(FEATURE_NAMES), 1000, 100, 1)
    x = [0.0] * len(FEATURE_NAMES)
    x[at] = 1.0
    reason = explain(predictor, x, predictor.predict_proba(x), 0.5)
    assert reason.message.endswith("top factors: first payment to this payee in 30 days (+2.0)")
