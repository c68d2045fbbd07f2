"""The detector end to end: each rule, score arithmetic, decisions, determinism."""

from __future__ import annotations

import datetime as dt
import itertools
import random
import time
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import pytest

from server.detection import Detector, Scored
from server.detection.detector import AMOUNT_SPAN, amount_share
from server.detection.rules import compile_sources, default_pack, load_rules
from server.transactions import MAX_AMOUNT, Transaction

# The default pack's scores: tests check how they combine, not the calibration itself.
PACK = {rule.name: rule.score for rule in load_rules().rules}


def noisy_or(*names: str) -> float:
    miss = 1.0
    for name in names:
        miss *= 1 - PACK[name]
    return 1 - miss


def plus_amount(rules_score: float, amount: str) -> float:
    """The score of a transaction the rules scored `rules_score`, with no model: its amount
    orders the ties (detector.AMOUNT_SPAN)."""
    return round(round(rules_score, 4) + amount_share(float(amount)), 6)


T0 = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
NYC: dict[str, Any] = {"lat": 40.71, "lon": -74.01, "country": "US"}
LONDON: dict[str, Any] = {"lat": 51.51, "lon": -0.13, "country": "GB"}
_ids = itertools.count()


def make_tx(seconds: float = 0.0, *, amount: str = "40.00", **fields: Any) -> Transaction:
    values: dict[str, Any] = {
        "account_id": "acct-1",
        "merchant_id": "m-1",
        "currency": "USD",
        "device_id": "d-1",
    }
    values.update(fields)
    timestamp = values.pop("timestamp", T0 + dt.timedelta(seconds=seconds))
    return Transaction(id=f"tx-{next(_ids)}", timestamp=timestamp, amount=Decimal(amount), **values)


def history(det: Detector, n: int = 10, **fields: Any) -> None:
    """n ordinary purchases an hour apart ending an hour before T0, amounts 35/40/45."""
    for i in range(n):
        amount = ("35.00", "40.00", "45.00")[i % 3]
        scored = det.score(make_tx((i - n) * 3600.0, amount=amount, **(NYC | fields)))
        assert scored.decision == "allow", scored


def codes(scored: Scored) -> list[str]:
    return [r.code for r in scored.reasons]


def reason(scored: Scored, code: str) -> Any:
    matches = [r for r in scored.reasons if r.code == code]
    assert matches, f"{code} did not fire: {codes(scored)}"
    return matches[0]


# --- amount_outlier ----------------------------------------------------------------------


def test_amount_outlier_fires_with_ratio_and_threshold_in_message() -> None:
    det = Detector()
    history(det)
    scored = det.score(make_tx(amount="1250.00", **NYC))
    assert codes(scored) == ["amount_outlier"]
    r = reason(scored, "amount_outlier")
    mean = (4 * 35 + 3 * 40 + 3 * 45) / 10
    assert r.observed == pytest.approx(1250 / mean, abs=0.01)
    assert r.threshold == 5.0
    assert "1,250.00 USD" in r.message
    assert f"{1250 / mean:.1f}×" in r.message
    assert f"average of {mean:.2f}" in r.message
    assert "threshold 5×" in r.message
    # Most large purchases are genuine: alone, an outlier is weighed but not an alert.
    assert (scored.score, scored.decision, scored.severity) == (
        plus_amount(PACK["amount_outlier"], "1250.00"),
        "allow",
        "low",
    )


def test_amount_outlier_message_for_extreme_values() -> None:
    # QA: a ratio of 2531645569620.3 and "inf standard deviations" in the message.
    det = Detector()
    history(det)
    r = reason(det.score(make_tx(amount="99999999999999.99", **NYC)), "amount_outlier")
    assert r.message == (
        "Amount 99,999,999,999,999.99 USD is more than 1,000× this account's average of 39.50"
        " (threshold 5×), more than 1,000 standard deviations above it"
    )
    # An account whose amounts never varied: its z-score is infinite.
    det = Detector()
    for i in range(10):
        det.score(make_tx((i - 10) * 3600.0, amount="40.00", **NYC))
    r = reason(det.score(make_tx(amount="1250.00", **NYC)), "amount_outlier")
    assert r.message == (
        "Amount 1,250.00 USD is 31.2× this account's average of 40.00 (threshold 5×),"
        " more than 1,000 standard deviations above it"
    )


def test_amount_outlier_quiet_below_ratio() -> None:
    det = Detector()
    history(det)
    assert "amount_outlier" not in codes(det.score(make_tx(amount="190.00", **NYC)))


def test_amount_outlier_needs_history() -> None:
    det = Detector()
    history(det, n=4)
    assert "amount_outlier" not in codes(det.score(make_tx(amount="5000.00", **NYC)))


def test_amount_outlier_respects_an_erratic_account() -> None:
    det = Detector()
    for i in range(10):
        det.score(make_tx(i * 3600.0 - 40000, amount="1000.00" if i == 5 else "10.00"))
    # 600 is 5.5 times the mean of 109 but under two standard deviations (313) above it.
    assert "amount_outlier" not in codes(det.score(make_tx(amount="600.00")))


# --- velocity -----------------------------------------------------------------------------


def test_velocity_1m_fires_at_the_fifth_in_a_minute() -> None:
    det = Detector()
    results = [det.score(make_tx(s)) for s in (0, 10, 20, 30, 40)]
    assert all("velocity_1m" not in codes(s) for s in results[:4])
    r = reason(results[4], "velocity_1m")
    assert (r.observed, r.threshold) == (5, 5)
    assert r.message == "5 transactions in the last minute, this one included (threshold 5)"
    assert results[4].decision == "review"


def test_a_stream_of_dates_only_reads_no_time_of_day() -> None:
    """BankSim's step is a day: every payment of a day at 00:00, one instant. After
    DAY_ONLY_FROM such timestamps the detector stops reading a time of day it does not
    have: a customer's fifth payment of a day is not "5 in the last minute", a large one
    is not "at night", and two located payments that day are not 0 s apart."""
    midnight = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)

    def day(d: int, account: str, **fields: Any) -> Transaction:
        return make_tx(timestamp=midnight + dt.timedelta(days=d), account_id=account, **fields)

    det = Detector()
    for i in range(100):  # the stream's first payments, other customers
        det.score(day(0, f"c-{i}"))
    history_ = [det.score(day(d, "acct-1")) for d in range(1, 7)]
    same_day = [det.score(day(7, "acct-1")) for _ in range(5)]
    big = det.score(day(8, "acct-1", amount="400.00"))
    paris = det.score(day(9, "acct-1", lat=48.86, lon=2.35))
    rome = det.score(day(9, "acct-1", lat=41.90, lon=12.50))
    for scored in (*history_, *same_day, big, paris, rome):
        assert not {"velocity_1m", "night_high_amount", "impossible_travel"} & set(codes(scored))
    assert same_day[-1].decision == "allow"
    # The same with a time of day: each rule fires as before.
    det = Detector()
    noon = [det.score(make_tx(i * 86400.0 - 7 * 86400)) for i in range(6)]
    burst = [det.score(make_tx(s)) for s in (0, 10, 20, 30, 40)]
    assert "velocity_1m" in codes(burst[-1]) and noon[0].decision == "allow"


def test_a_stream_of_hours_only_reads_no_minute() -> None:
    """PaySim's step is an hour: every payment of an hour at one instant, on the hour. After
    DAY_ONLY_FROM such timestamps a customer's fifth payment of an hour is not "5 in the
    last minute" (the 1 min and 10 min windows are unknown), while the hour window and the
    time of day are kept."""
    start = dt.datetime(2026, 3, 2, 1, tzinfo=dt.UTC)

    def hour(h: int, account: str, **fields: Any) -> Transaction:
        return make_tx(timestamp=start + dt.timedelta(hours=h), account_id=account, **fields)

    det = Detector()
    for i in range(100):  # the stream's first payments, other customers
        det.score(hour(i % 5, f"c-{i}"))
    same_hour = [det.score(hour(6, "acct-1")) for _ in range(5)]
    assert not {"velocity_1m", "night_high_amount"} & set(codes(same_hour[-1]))
    assert same_hour[-1].decision == "allow"
    values = det.featurizer.values_one(hour(6, "acct-1"))
    assert values["account_count_1m"] is None and values["account_count_10m"] is None
    assert values["account_count_1h"] == 6 and values["local_hour"] == 7


def test_a_coarse_stream_gets_finer_and_never_coarser_again() -> None:
    """The timestamp's resolution only gets finer: a stream of dates whose first timestamp
    past midnight is on the hour reads hours from then on (the hour window and time of day
    known, the minute unknown); one with minutes or seconds reads every window again, and a
    later run of midnights does not make it coarse again."""
    midnight = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)

    def at(when: dt.datetime, account: str = "acct-1") -> Transaction:
        return make_tx(timestamp=when, account_id=account)

    det = Detector()
    for i in range(100):  # the stream's first payments, other customers: dates only
        det.score(at(midnight, f"c-{i}"))
    dated = det.featurizer.values_one(at(midnight + dt.timedelta(days=1)))
    assert dated["local_hour"] is None and dated["account_count_1h"] is None
    # A timestamp on the hour: hours from now on.
    det.score(at(midnight + dt.timedelta(days=2, hours=3), "c-x"))
    hourly = det.featurizer.values_one(at(midnight + dt.timedelta(days=2, hours=5)))
    assert hourly["local_hour"] == 5 and hourly["account_count_1h"] == 1
    assert hourly["account_count_1m"] is None
    # A timestamp with minutes: every window again, for good, even for payments at
    # midnight again (five at one instant are five in a minute).
    det.score(at(midnight + dt.timedelta(days=2, hours=6, minutes=7), "c-y"))
    again = midnight + dt.timedelta(days=4)
    burst = [det.score(at(again)) for _ in range(5)]
    assert "velocity_1m" in codes(burst[-1])
    fine = det.featurizer.values_one(at(again))
    assert fine["account_count_1m"] == 6 and fine["local_hour"] == 0


def test_velocity_1m_uses_event_time_window() -> None:
    det = Detector()
    for s in (0, 15, 30, 45):
        det.score(make_tx(s))
    # 61 s: the first has left the minute, so this is only the fourth in it.
    assert "velocity_1m" not in codes(det.score(make_tx(61)))


def test_velocity_1h_alone_stays_allow() -> None:
    det = Detector()
    results = [det.score(make_tx(i * 120.0)) for i in range(20)]
    assert all("velocity_1h" not in codes(s) for s in results[:19])
    last = results[19]
    r = reason(last, "velocity_1h")
    assert (r.observed, r.threshold) == (20, 20)
    assert "20 transactions in the last hour" in r.message
    assert "(threshold 20)" in r.message
    assert codes(last) == ["velocity_1h"]
    assert last.decision == "allow"


# --- impossible_travel --------------------------------------------------------------------


def test_impossible_travel_new_york_to_london_in_an_hour() -> None:
    det = Detector()
    det.score(make_tx(-3600, **NYC))
    scored = det.score(make_tx(0, **(LONDON | {"country": "US"})))
    r = reason(scored, "impossible_travel")
    assert r.observed == pytest.approx(5570, rel=0.01)
    assert r.threshold == 900.0
    assert "5,57" in r.message
    assert "in 1.0 h" in r.message
    assert "threshold 900 km/h" in r.message
    assert scored.score == plus_amount(0.7, "40.00")
    # A high rule on 40.00: the reason says high, the alert what is at stake (0.7 times 40).
    assert r.severity == "high"
    assert (scored.decision, scored.severity) == ("review", "medium")


def test_travel_at_airliner_speed_is_fine() -> None:
    det = Detector()
    det.score(make_tx(-8 * 3600, **NYC))
    assert "impossible_travel" not in codes(det.score(make_tx(0, **LONDON)))


def test_short_hops_never_count_as_travel() -> None:
    det = Detector()
    det.score(make_tx(-60, lat=40.71, lon=-74.01))
    # About 30 km in a minute: 1,800 km/h, but within geolocation noise.
    assert "impossible_travel" not in codes(det.score(make_tx(0, lat=40.98, lon=-74.01)))


def test_travel_skips_unlocated_transactions() -> None:
    det = Detector()
    det.score(make_tx(-7200, **NYC))
    det.score(make_tx(-3600))
    r = reason(det.score(make_tx(0, **LONDON)), "impossible_travel")
    assert "in 2.0 h" in r.message


# --- novelty ------------------------------------------------------------------------------


def test_new_country_fires_after_history() -> None:
    det = Detector()
    history(det)
    scored = det.score(make_tx(0, country="FR"))
    r = reason(scored, "new_country")
    assert r.observed == "FR"
    # 5 is the history the rule needs, not a threshold on the country: the message says it.
    assert r.threshold is None
    assert "country FR" in r.message
    assert "10 prior transactions" in r.message
    assert "from 5" in r.message
    assert scored.decision == "allow"
    assert "new_country" not in codes(det.score(make_tx(60, country="FR")))


def test_new_country_silent_for_a_new_account() -> None:
    det = Detector()
    history(det, n=4)
    assert "new_country" not in codes(det.score(make_tx(0, country="FR")))


def test_new_country_needs_a_known_country() -> None:
    det = Detector()
    for i in range(10):
        det.score(make_tx(i * 3600.0 - 40000))
    assert "new_country" not in codes(det.score(make_tx(0, country="FR")))


def test_new_merchant_alone_stays_allow() -> None:
    det = Detector()
    history(det)
    scored = det.score(make_tx(0, merchant_id="m-77", merchant_name="Corner Shop", **NYC))
    assert codes(scored) == ["new_merchant"]
    r = reason(scored, "new_merchant")
    assert (r.observed, r.threshold) == ("m-77", None)
    assert "Corner Shop" in r.message
    assert (scored.decision, scored.severity) == ("allow", "low")
    assert scored.score < 0.5
    assert codes(det.score(make_tx(60, merchant_id="m-77", **NYC))) == []


def test_new_merchant_silent_for_a_new_account() -> None:
    det = Detector()
    results = [det.score(make_tx(i * 3600.0, merchant_id=f"m-{i}")) for i in range(5)]
    assert all(codes(s) == [] for s in results)


def test_new_device_fires_once() -> None:
    det = Detector()
    history(det)
    r = reason(det.score(make_tx(0, device_id="d-9", **NYC)), "new_device")
    assert (r.observed, r.threshold) == ("d-9", None)
    assert "device d-9" in r.message
    assert "new_device" not in codes(det.score(make_tx(60, device_id="d-9", **NYC)))


def test_account_takeover_pattern_reaches_review() -> None:
    det = Detector()
    history(det)
    # New country, device and merchant with the usual spend: weighed, not an alert.
    novel = det.score(make_tx(0, merchant_id="m-9", device_id="d-9", country="FR"))
    assert codes(novel) == ["new_country", "new_device", "new_merchant"]
    assert novel.score == plus_amount(noisy_or(*codes(novel)), "40.00")
    assert novel.decision == "allow"
    # With a spend shift on top it is someone else spending the account's money.
    det = Detector()
    history(det)
    scored = det.score(
        make_tx(0, amount="200.00", merchant_id="m-9", device_id="d-9", country="FR")
    )
    assert codes(scored)[0] == "account_takeover"
    assert scored.decision != "allow"


# --- compromised_merchant ---------------------------------------------------------------


def test_compromised_merchant_stops_a_week_after_its_last_fraud_label() -> None:
    det = Detector()
    day = 86400.0
    t0 = T0.timestamp()
    fired = {}
    # Four chargebacks on m-skim's transactions learnt on day 0, then one genuine label a
    # day; a new card shops there at noon each day, in event time.
    for i in range(4):
        det.featurizer.learn_label("m-skim", t0 + i, True)
    for d in range(12):
        if d:
            det.featurizer.learn_label("m-skim", t0 + d * day, False)
        scored = det.score(make_tx(d * day + 3600, account_id=f"a-{d}", merchant_id="m-skim"))
        fired[d] = "compromised_merchant" in codes(scored)
    # Days 0-6: 4 frauds of 4-10 labels, one learnt this week. From day 7 no fraud label is
    # that recent: the compromise is over, though 4 of 11-15 labels in 30 d still say fraud.
    assert fired == {d: d < 7 for d in range(12)}


# --- card_testing -------------------------------------------------------------------------


def test_card_testing_fires_on_third_tiny_charge() -> None:
    det = Detector()
    first, second, third = (det.score(make_tx(s, amount="1.00")) for s in (0, 120, 240))
    assert "card_testing" not in codes(first) + codes(second)
    r = reason(third, "card_testing")
    assert (r.observed, r.threshold) == (3, 3)
    assert r.message == "3 transactions under 5.00 USD in the last 10 min (threshold 3)"
    assert third.score == plus_amount(0.65, "1.00")
    assert r.severity == "high"
    assert (third.decision, third.severity) == ("review", "medium")  # 1.00 at stake


def test_card_testing_flags_the_purchase_after_the_tests() -> None:
    det = Detector()
    for s in (0, 60, 120):
        det.score(make_tx(s, amount="0.99"))
    assert "card_testing" in codes(det.score(make_tx(180, amount="900.00")))


def test_card_testing_quiet_when_spread_out() -> None:
    det = Detector()
    det.score(make_tx(0, amount="1.00"))
    det.score(make_tx(300, amount="1.00"))
    assert "card_testing" not in codes(det.score(make_tx(601, amount="1.00")))


def test_card_testing_ignores_ordinary_small_purchases() -> None:
    det = Detector()
    for s in (0, 60, 120):
        assert "card_testing" not in codes(det.score(make_tx(s, amount="5.00")))


# --- night_high_amount --------------------------------------------------------------------


def tokyo(hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 3, 3, hour, minute, tzinfo=dt.timezone(dt.timedelta(hours=9)))


def test_night_amount_relative_to_norm_in_local_time() -> None:
    det = Detector()
    history(det)
    scored = det.score(make_tx(timestamp=tokyo(3, 12), amount="150.00", **NYC))
    r = reason(scored, "night_high_amount")
    mean = 39.5
    assert r.observed == pytest.approx(150 / mean, abs=0.01)
    assert r.threshold == 3.0
    assert "03:12 local time" in r.message
    assert "3.8×" in r.message
    assert "night threshold 3×" in r.message
    assert scored.decision == "allow"


def test_night_is_read_in_the_timestamps_own_offset() -> None:
    det = Detector()
    history(det)
    same_instant_in_utc = tokyo(3, 12).astimezone(dt.UTC)  # 18:12 UTC
    scored = det.score(make_tx(timestamp=same_instant_in_utc, amount="150.00", **NYC))
    assert "night_high_amount" not in codes(scored)


def test_night_absolute_limit_for_a_new_account() -> None:
    det = Detector()
    scored = det.score(make_tx(timestamp=tokyo(2), amount="1500.00"))
    assert "night_high_amount" not in codes(scored)
    r = reason(scored, "night_high_amount_new")
    assert (r.observed, r.threshold) == (1500.0, 1000.0)
    assert "1,500.00 USD at 02:00 local time" in r.message
    assert "night limit of 1,000.00 USD" in r.message


def test_night_ends_at_five() -> None:
    det = Detector()
    scored = det.score(make_tx(timestamp=tokyo(5), amount="1500.00"))
    assert "night_high_amount_new" not in codes(scored)
    assert not codes(det.score(make_tx(timestamp=tokyo(1), amount="20")))


def test_night_window_may_wrap_midnight() -> None:
    pack = default_pack().read_text().replace("value = [0, 1, 2, 3, 4]", "value = [22, 23, 0, 1]")
    det = Detector(rules=compile_sources([("night.toml", pack.encode())]))
    assert "night_high_amount_new" in codes(det.score(make_tx(timestamp=tokyo(23), amount="2000")))
    assert not codes(det.score(make_tx(timestamp=tokyo(21), amount="2000")))


# --- score, decision, severity ------------------------------------------------------------


def test_two_strong_signals_block() -> None:
    det = Detector()
    history(det)
    scored = det.score(make_tx(0, amount="1250.00", **LONDON))
    assert codes(scored) == [
        "impossible_travel",
        "account_takeover",
        "new_country",
        "amount_outlier",
    ]
    assert scored.score == plus_amount(noisy_or(*codes(scored)), "1250.00")
    assert (scored.decision, scored.severity) == ("block", "critical")


def test_reasons_are_ordered_by_weight() -> None:
    det = Detector()
    history(det)
    scored = det.score(make_tx(0, amount="1250.00", merchant_id="m-2", device_id="d-2", **LONDON))
    weights = [r.weight for r in scored.reasons]
    assert codes(scored) == sorted(codes(scored), key=lambda code: -PACK[code])
    assert set(codes(scored)) == {
        "impossible_travel",
        "account_takeover",
        "new_country",
        "amount_outlier",
        "new_device",
        "new_merchant",
    }
    assert weights == sorted(weights, reverse=True)
    assert scored.score == plus_amount(noisy_or(*codes(scored)), "1250.00")


def test_quiet_transaction_scores_only_its_amount() -> None:
    scored = Detector().score(make_tx())
    assert scored == Scored(plus_amount(0.0, "40.00"), "allow", "low", (), Detector().rules_version)
    assert 0.0 < scored.score < AMOUNT_SPAN


def test_without_a_model_the_amount_orders_the_rules_ties() -> None:
    det = Detector()
    small, large = (det.score(make_tx(s, account_id=a, amount=amount))
                    for s, a, amount in ((0, "a-1", "12.00"), (1, "a-2", "900.00")))  # fmt: skip
    assert small.reasons == large.reasons == ()
    assert 0.0 < small.score < large.score < AMOUNT_SPAN
    assert large.score == plus_amount(0.0, "900.00")
    assert Detector().score(make_tx(amount="0.00")).score == 0.0
    # The largest amount accepted adds the whole span, no more.
    assert amount_share(float(MAX_AMOUNT)) == pytest.approx(AMOUNT_SPAN)


@pytest.mark.parametrize(("weight", "review", "block"), [(0.4999, 0.5, 0.8), (0.7999, 0.5, 0.8)])
def test_the_amount_never_moves_a_transaction_across_a_threshold(
    weight: float, review: float, block: float
) -> None:
    pack = f"""
[[rules]]
name = "edge"
score = {weight}
severity = "low"
all = [{{ feature = "amount", op = ">=", value = 1 }}]
reason = "edge"
"""
    det = Detector(rules=compile_sources([("edge.toml", pack.encode())]),
                   review_threshold=review, block_threshold=block)  # fmt: skip
    scored = det.score(make_tx(amount="50000.00"))
    assert scored.decision == det.decide(weight)
    top = review if scored.decision == "allow" else block
    assert weight < scored.score < top  # ordered above its ties, still in its band


@pytest.mark.parametrize(
    ("score", "decision"),
    [(0.0, "allow"), (0.4999, "allow"), (0.5, "review"), (0.7999, "review"), (0.8, "block"),
     (1.0, "block")],
)  # fmt: skip
def test_decision_bands(score: float, decision: str) -> None:
    assert Detector().decide(score) == decision


def one_rule(weight: float, severity: str = "high", settings: str = "") -> Detector:
    """A detector whose one rule fires on every transaction with `weight` and `severity`;
    `settings`: the pack's [settings] lines."""
    pack = f"""
[settings]
{settings}

[[rules]]
name = "always"
score = {weight}
severity = "{severity}"
all = [{{ feature = "amount", op = ">=", value = 0 }}]
reason = "always"
"""
    return Detector(rules=compile_sources([("always.toml", pack.encode())]))


@pytest.mark.parametrize(
    ("weight", "amount", "decision", "severity"),
    [
        (0.9, "1.00", "block", "medium"),  # a card test: sure, and 0.90 at stake
        (0.9, "150.00", "block", "high"),  # 135 at stake
        (0.8, "624.99", "block", "high"),  # 499.99
        (0.8, "625.00", "block", "critical"),  # 500: likely fraud and money at stake
        (0.9, "3000.00", "block", "critical"),
        (0.6, "100.00", "review", "medium"),  # 60: the rule's high stays on its reason
        (0.6, "166.67", "review", "high"),  # 100.002
        (0.6, "5000.00", "review", "high"),  # a review is never critical: not sure enough
        (0.3, "5000.00", "allow", "low"),  # no alert
    ],
)
def test_an_alerts_severity_is_the_money_it_likely_loses(
    weight: float, amount: str, decision: str, severity: str
) -> None:
    scored = one_rule(weight).score(make_tx(amount=amount))
    assert (scored.decision, scored.severity) == (decision, severity)
    assert scored.reasons[0].severity == "high"


BUSINESS = "high_loss = 2000.0\ncritical_loss = 10000.0"
MICRO = "high_loss = 1.0\ncritical_loss = 5.0"


@pytest.mark.parametrize(
    ("settings", "weight", "amount", "decision", "severity"),
    [
        (BUSINESS, 0.9, "150.00", "block", "medium"),  # 135 at stake: high by default
        (BUSINESS, 0.9, "3000.00", "block", "high"),  # 2,700: critical by default
        (BUSINESS, 0.9, "11111.12", "block", "critical"),  # 10,000.008
        (BUSINESS, 0.6, "50000.00", "review", "high"),  # a review is never critical
        (MICRO, 0.9, "1.00", "block", "medium"),  # 0.90: medium by default too
        (MICRO, 0.9, "2.00", "block", "high"),  # 1.80: medium by default
        (MICRO, 0.9, "6.00", "block", "critical"),  # 5.40: medium by default
        (MICRO, 0.6, "100.00", "review", "high"),
        (MICRO, 0.3, "100.00", "allow", "low"),
    ],
)
def test_a_packs_loss_bands_set_the_severity(
    settings: str, weight: float, amount: str, decision: str, severity: str
) -> None:
    scored = one_rule(weight, settings=settings).score(make_tx(amount=amount))
    assert (scored.decision, scored.severity) == (decision, severity)


def test_a_critical_rule_makes_a_critical_alert_whatever_the_amount() -> None:
    scored = one_rule(0.6, "critical").score(make_tx(amount="1.00"))
    assert (scored.decision, scored.severity) == ("review", "critical")
    assert one_rule(0.3, "critical").score(make_tx(amount="1.00")).severity == "low"


def test_severity_weighs_the_amount_on_the_streams_scale() -> None:
    # A stream in yen: its typical amount is 6,000, a scale of 150 once 1,000 are seen. The
    # rule reads no scaled feature; the severity computes the scale all the same.
    det = one_rule(0.9)
    for n in range(1000):
        det.score(make_tx(n, account_id=f"a-{n % 50}", amount="6000.00"))
    assert det.featurizer.scale.scale == pytest.approx(150.0)
    severities = [
        det.score(make_tx(2000 + i, account_id=f"b-{i}", amount=amount)).severity
        for i, amount in enumerate(("600.00", "60000.00", "150000.00"))
    ]
    # 4, 400 and 1,000 on the scale: 3.6, 360 and 900 at stake, not 540, 54,000 and 135,000.
    assert severities == ["medium", "high", "critical"]


def test_thresholds_are_configurable() -> None:
    det = Detector(review_threshold=PACK["new_merchant"], block_threshold=0.6)
    history(det, merchant_id="m-1")
    scored = det.score(make_tx(0, merchant_id="m-2", **NYC))
    assert (scored.decision, scored.severity) == ("review", "medium")
    assert det.decide(0.6) == "block"


@pytest.mark.parametrize(("review", "block"), [(0.9, 0.5), (-0.1, 0.5), (0.5, 1.5)])
def test_bad_thresholds_are_refused(review: float, block: float) -> None:
    with pytest.raises(ValueError, match="Thresholds"):
        Detector(review_threshold=review, block_threshold=block)


def test_default_weights_are_calibrated() -> None:
    scores = {rule.name: rule.score for rule in load_rules().rules}
    strong = ["impossible_travel", "card_testing", "velocity_1m", "velocity_10m"]
    # Common among genuine transactions: alone, they must not alert.
    weak = ["amount_outlier", "new_merchant", "new_country", "new_device", "velocity_1h"]
    weak += ["night_high_amount"]
    assert all(scores[name] >= 0.5 for name in strong)
    assert all(
        1 - (1 - scores[a]) * (1 - scores[b]) >= 0.8 for a, b in itertools.combinations(strong, 2)
    )
    assert all(scores[name] < 0.5 for name in weak)


def test_rules_version_follows_the_files() -> None:
    det = Detector()
    assert det.rules_version.startswith("rules-3+")
    assert len(det.rules_version) == len("rules-3+") + 8
    assert Detector().rules_version == det.rules_version
    pack = default_pack().read_bytes()
    same = compile_sources([("default.toml", pack)])
    assert same.version == det.rules_version
    changed = Detector(rules=compile_sources([("default.toml", pack.replace(b"5.0", b"6.0"))]))
    assert changed.rules_version != det.rules_version
    assert changed.score(make_tx()).rules_version == changed.rules_version
    history(det)
    assert det.score(make_tx(amount="5000")).rules_version == det.rules_version


# --- event time ---------------------------------------------------------------------------


def stream(seed: int = 3, n: int = 600) -> list[Transaction]:
    rng = random.Random(seed)
    places: list[dict[str, Any]] = [NYC, LONDON, {"lat": 35.68, "lon": 139.69, "country": "JP"}, {}]
    out = []
    t = 0.0
    for _ in range(n):
        t += rng.choice((1.0, 20.0, 300.0))
        out.append(
            make_tx(
                t,
                amount=rng.choice(("0.50", "12.00", "40.00", "2500.00")),
                account_id=f"acct-{rng.randrange(6)}",
                merchant_id=f"m-{rng.randrange(12)}",
                device_id=rng.choice(("d-1", "d-2", None)),
                **rng.choice(places),
            )
        )
    return out


def score_all(txs: Iterable[Transaction]) -> dict[str, Scored]:
    det = Detector()
    return {tx.id: det.score(tx) for tx in txs}


def test_same_stream_same_verdicts() -> None:
    txs = stream()
    first = score_all(txs)
    assert first == score_all(txs)
    assert sum(1 for s in first.values() if s.reasons) > 50  # the stream exercises the rules


def test_replay_ignores_the_wall_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    txs = stream()
    live = score_all(txs)
    later = time.time() + 86400 * 400
    monkeypatch.setattr(time, "time", lambda: later)
    monkeypatch.setattr(time, "monotonic", lambda: later)
    det = Detector()
    replay = {}
    for i, tx in enumerate(txs):
        if i % 100 == 0:
            time.sleep(0.01)  # replayed slower than real time in places
        replay[tx.id] = det.score(tx)
    assert replay == live


def test_interleaving_accounts_differently_changes_nothing() -> None:
    txs = stream()
    by_account: dict[str, list[Transaction]] = {}
    for tx in txs:
        by_account.setdefault(tx.account_id, []).append(tx)
    one_account_at_a_time = [tx for group in by_account.values() for tx in group]
    assert one_account_at_a_time != txs
    assert score_all(one_account_at_a_time) == score_all(txs)


def test_out_of_order_events_are_scored_without_error() -> None:
    txs = stream(n=300)
    rng = random.Random(9)
    shuffled = txs[:]
    for i in range(0, len(shuffled) - 5, 5):  # swap neighbours: mildly out of order
        j = i + rng.randrange(1, 5)
        shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
    results = score_all(shuffled)
    assert len(results) == len(txs)
    assert all(0.0 <= s.score <= 1.0 for s in results.values())


# --- missing fields -----------------------------------------------------------------------


def test_bare_transactions_never_crash_and_location_rules_stay_quiet() -> None:
    det = Detector()
    for i in range(30):
        scored = det.score(make_tx(i * 3600.0, device_id=None))
        assert not {"impossible_travel", "new_country", "new_device"} & set(codes(scored))
    mixed = [
        make_tx(200000, **NYC),
        make_tx(200100, device_id=None),
        make_tx(200200, lat=51.5, lon=-0.1),  # located, no country
        make_tx(200300, country="FR"),  # country, no location
    ]
    for tx in mixed:
        det.score(tx)
