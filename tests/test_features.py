"""Per-account state and features: event-time windows, bounds, late events, missing fields."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import random
import statistics
import zlib
from decimal import Decimal
from typing import Any

import pytest

from server.detection.features import (
    AMOUNT_SCALE_FROM,
    FEATURE_FIELDS,
    FEATURES,
    MAX_DEVICES,
    MAX_MERCHANTS,
    MAX_RECENT,
    AccountState,
    Featurizer,
    Value,
    haversine_km,
    stable_hash,
)
from server.transactions import Transaction
from tests.feature_support import process_one

T0 = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
_ids = itertools.count()


def make_tx(seconds: float = 0.0, **fields: Any) -> Transaction:
    values: dict[str, Any] = {
        "account_id": "acct-1",
        "merchant_id": "m-1",
        "amount": Decimal("40.00"),
        "currency": "USD",
    }
    values.update(fields)
    return Transaction(
        id=f"tx-{next(_ids)}", timestamp=T0 + dt.timedelta(seconds=seconds), **values
    )


def test_a_spree_of_big_amounts_does_not_become_the_accounts_norm() -> None:
    """From the 6th transaction on, an amount counts in the norm at most 3 standard
    deviations above it: a stolen card's third big purchase still stands out (z 64), where
    the plain running mean had taken the first two in (mean 240, z 1.9)."""
    fz = Featurizer()
    usual = ["40.00", "50.00", "60.00", "45.00", "55.00", "50.00", "40.00", "60.00"]
    for i, amount in enumerate(usual):
        process_one(fz, make_tx(i * 3600, amount=Decimal(amount)))
    before = process_one(fz, make_tx(9 * 3600, amount=Decimal("1000.00")))
    assert before.amount_z == pytest.approx((1000 - 50) / before.std)
    spree = [process_one(fz, make_tx(9 * 3600 + 60 * k, amount=Decimal("1000.00"))) for k in (1, 2)]
    assert all(f.amount_z is not None and f.amount_z > 20 for f in spree)
    assert spree[-1].mean < 60  # 1,000 twice, counted as about 70 and 80
    # A lasting rise in spending still moves the norm: twenty purchases of 100 later, 100 is
    # within one standard deviation of it.
    for k in range(20):
        process_one(fz, make_tx(86_400 + k * 3600, amount=Decimal("100.00")))
    later = process_one(fz, make_tx(200_000, amount=Decimal("100.00")))
    assert later.amount_z is not None and abs(later.amount_z) < 1.0


def test_haversine_new_york_to_london() -> None:
    assert haversine_km(40.71, -74.01, 51.51, -0.13) == pytest.approx(5570, rel=0.01)
    assert haversine_km(10.0, 20.0, 10.0, 20.0) == 0.0


def test_features_describe_the_account_before_the_transaction() -> None:
    fz = Featurizer()
    for i, amount in enumerate(["30.00", "40.00", "50.00"]):
        process_one(fz, make_tx(i * 10, amount=Decimal(amount)))
    f = process_one(fz, make_tx(30, amount=Decimal("400.00")))
    assert f.history == 3
    assert f.mean == pytest.approx(40.0)
    assert f.std == pytest.approx(10.0)
    assert f.amount == 400.0
    assert f.tx_1m == 4  # three earlier ones plus this one
    state = fz.accounts["acct-1"]
    assert state.count == 4
    assert state.mean == pytest.approx(130.0)


def test_windows_are_half_open_in_event_time() -> None:
    fz = Featurizer()
    for s in (0, 15, 30, 45):
        process_one(fz, make_tx(s))
    # At t=60 the event at t=0 is exactly a minute old: out of (t-60, t].
    assert process_one(fz, make_tx(60)).tx_1m == 4


def test_hour_window_is_half_open() -> None:
    def hour_count(seconds: float) -> int | None:
        fz = Featurizer()
        process_one(fz, make_tx(0))
        process_one(fz, make_tx(10))
        return process_one(fz, make_tx(seconds)).tx_1h

    assert hour_count(3599) == 3
    assert hour_count(3600) == 2  # the event at 0 is exactly an hour old
    assert hour_count(3610) == 1


def test_accounts_are_independent() -> None:
    fz = Featurizer()
    for s in range(5):
        process_one(fz, make_tx(s, account_id="busy"))
    f = process_one(fz, make_tx(6, account_id="quiet"))
    assert f.history == 0
    assert f.tx_1m == 1


def test_late_event_is_counted_against_its_own_time() -> None:
    fz = Featurizer()
    for s in (0, 100, 110):
        process_one(fz, make_tx(s))
    late = process_one(fz, make_tx(50))
    # (-10, 50] holds only the event at 0; the later ones at 100 and 110 do not count.
    assert late.tx_1m == 2
    times = list(fz.accounts["acct-1"].recent_times)
    assert times == sorted(times)
    assert len(times) == 4


def test_very_late_event_updates_stats_but_not_windows_or_location() -> None:
    fz = Featurizer()
    process_one(fz, make_tx(7200, lat=51.5, lon=-0.1))
    process_one(fz, make_tx(0, lat=40.7, lon=-74.0))  # two hours late
    state = fz.accounts["acct-1"]
    assert state.count == 2
    assert len(state.recent_times) == 1
    assert (state.loc_lat, state.loc_lon) == (51.5, -0.1)


def test_travel_features_use_last_located_transaction() -> None:
    fz = Featurizer()
    process_one(fz, make_tx(0, lat=40.71, lon=-74.01))
    unlocated = process_one(fz, make_tx(1800))
    assert unlocated.distance_km is None
    assert unlocated.speed_kmh is None
    f = process_one(fz, make_tx(7200, lat=51.51, lon=-0.13))
    assert f.distance_km == pytest.approx(5570, rel=0.01)
    assert f.elapsed_s == 7200
    assert f.speed_kmh == pytest.approx(2785, rel=0.01)


def test_same_second_travel_is_treated_as_one_second() -> None:
    fz = Featurizer()
    process_one(fz, make_tx(0, lat=0.0, lon=0.0))
    f = process_one(fz, make_tx(0, lat=0.0, lon=1.0))
    assert f.elapsed_s == 0
    assert f.speed_kmh == pytest.approx(111.2 * 3600, rel=0.01)


def test_novelty_needs_something_seen_before() -> None:
    fz = Featurizer()
    first = process_one(fz, make_tx(0, country=None, device_id=None))
    assert first.is_new_merchant is None
    assert first.is_new_country is None
    assert first.is_new_device is None
    second = process_one(fz, make_tx(1, merchant_id="m-2", country="US", device_id="d-1"))
    assert second.is_new_merchant is True
    assert second.is_new_country is None  # nothing to compare against yet
    third = process_one(fz, make_tx(2, merchant_id="m-1", country="FR", device_id="d-1"))
    assert third.is_new_merchant is False
    assert third.is_new_country is True
    assert third.is_new_device is False


def test_tiny_amounts_counted_in_their_own_window() -> None:
    fz = Featurizer(small_amount=5.0)
    process_one(fz, make_tx(0, amount=Decimal("1.00")))
    process_one(fz, make_tx(100, amount=Decimal("2.00")))
    process_one(fz, make_tx(200, amount=Decimal("50.00")))
    assert process_one(fz, make_tx(300, amount=Decimal("4.99"))).tiny_recent == 3
    assert process_one(fz, make_tx(301, amount=Decimal("5.00"))).tiny_recent == 3
    # At 650 the charge at 0 has left the ten-minute window.
    assert process_one(fz, make_tx(650, amount=Decimal("100.00"))).tiny_recent == 2


def test_the_streams_amount_scale_is_its_typical_amount_over_40_once_known() -> None:
    fz = Featurizer(["amount_scale", "amount_scaled", "account_small_scaled_count_10m"])
    rng = random.Random(3)
    amounts = [round(math.exp(rng.gauss(math.log(6000.0), 1.2)), 2) for _ in range(2500)]
    seen = [fz.values_one(make_tx(i * 60.0, amount=Decimal(f"{a:.2f}"))) for i, a in
            enumerate(amounts)]  # fmt: skip
    # Unknown for the first 1,000: amounts are taken as they are (5,000 yen is not small).
    assert all(v["amount_scale"] is None for v in seen[:AMOUNT_SCALE_FROM])
    assert seen[10]["amount_scaled"] == amounts[10]
    small_early = [v["account_small_scaled_count_10m"] for v in seen[:AMOUNT_SCALE_FROM]]
    assert small_early == [sum(1 for a in amounts[max(0, i - 9) : i + 1] if a < 5.0)
                           for i in range(AMOUNT_SCALE_FROM)]  # fmt: skip
    # Then the geometric mean of the amounts before, over 40, worked out every 1,000.
    scales = [v["amount_scale"] for v in seen[AMOUNT_SCALE_FROM:]]
    first = math.exp(statistics.fmean(math.log(a) for a in amounts[:1000])) / 40.0
    assert scales[0] == pytest.approx(first) and set(scales[:1000]) == {scales[0]}
    assert scales[1000] == pytest.approx(
        math.exp(statistics.fmean(math.log(a) for a in amounts[:2000])) / 40.0
    )
    assert 150.0 / 1.2 < scales[0] < 150.0 * 1.2
    v = seen[1500]
    assert v["amount_scaled"] == pytest.approx(amounts[1500] / scales[0])
    # 5.00 on the scale: ~750 here, counted in the account's ten minutes.
    small = 5.0 * scales[0]
    assert v["account_small_scaled_count_10m"] == sum(1 for a in amounts[1491:1501] if a < small)
    assert any(w["account_small_scaled_count_10m"] for w in seen[1000:])


def test_bad_featurizer_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        Featurizer(ttl_s=7 * 86400)
    with pytest.raises(ValueError, match="unknown features: no_such"):
        Featurizer(["amount", "no_such"])


def test_state_is_bounded_under_a_flood() -> None:
    fz = Featurizer()
    countries = ["".join(p) for p in itertools.product("ABCDEFGHIJKLMNOPQRSTUVWXYZ", repeat=2)]
    for i in range(10_000):
        process_one(
            fz,
            make_tx(
                i * 0.3,  # all within the hour, so only the length cap limits the window
                merchant_id=f"m-{i}",
                device_id=f"d-{i}",
                country=countries[i % len(countries)],
            ),
        )
    state = fz.accounts["acct-1"]
    assert state.count == 10_000
    assert len(state.recent_times) == len(state.recent_amounts) == MAX_RECENT
    assert state.recent_times[-1] == pytest.approx(T0.timestamp() + 9999 * 0.3)
    assert state.merchants is not None and len(state.merchants) == MAX_MERCHANTS
    assert state.devices is not None and len(state.devices) == MAX_DEVICES
    assert state.countries is not None and len(state.countries) == 256
    # A full list can no longer tell what is new, so it stops claiming novelty.
    assert process_one(fz, make_tx(3000, merchant_id="m-brand-new")).is_new_merchant is None


def test_window_is_pruned_by_age() -> None:
    fz = Featurizer()
    for i in range(600):
        process_one(fz, make_tx(i * 60.0))  # ten hours, one a minute
    assert len(fz.accounts["acct-1"].recent_times) == 60


def test_account_state_uses_slots() -> None:
    state = AccountState()
    assert not hasattr(state, "__dict__")


def test_missing_optional_fields_give_empty_features() -> None:
    fz = Featurizer()
    for s in range(10):
        f = process_one(fz, make_tx(s * 3600))
    assert f.distance_km is None
    assert f.is_new_country is None
    assert f.is_new_device is None
    assert f.history == 9


# --- named features, long windows, other keys ---------------------------------------------

DAY = 86400.0
HOUR = 3600.0


def test_named_gives_every_feature_and_unknown_as_none() -> None:
    fz = Featurizer()
    f = process_one(fz, make_tx(0, device_id="d-1"))
    named = f.named()
    assert list(named) == list(FEATURES)
    assert named["amount"] == 40.0
    assert named["ip_count_24h"] is None  # no ip field
    assert named["device_count_24h"] == 1.0
    assert named["distance_km"] is None
    assert f.named(["amount", "history"]) == {"amount": 40.0, "history": 0.0}
    # The first detector's names still read.
    assert (f.tx_1m, f.tx_1h, f.tiny_recent) == (1, 1, 0)
    with pytest.raises(AttributeError):
        _ = f.no_such_feature


def test_only_the_features_asked_for_are_computed_and_kept() -> None:
    fz = Featurizer(["amount_ratio", "merchant_count_24h"])
    f = process_one(fz, make_tx(0, device_id="d-1", country="US"))
    assert f.values.keys() >= {"amount_ratio", "merchant_count_24h", "merchant_sum_24h"}
    assert "account_count_1m" not in f.values
    assert "is_new_device" not in f.values
    assert f.named()["is_new_device"] is None
    state = fz.accounts["acct-1"]
    assert len(state.recent_times) == 0
    assert state.devices is None
    assert fz.devices == {}
    assert fz.merchants["m-1"].hour is not None
    assert fz.merchants["m-1"].day is None


def test_long_windows_count_and_sum_in_event_time() -> None:
    fz = Featurizer()
    for day in range(40):
        process_one(fz, make_tx(day * DAY, amount=Decimal("10.00"), device_id="d-1", ip="10.0.0.1"))
    f = process_one(fz, make_tx(40 * DAY, amount=Decimal("5.50"), device_id="d-1", ip="10.0.0.1"))
    for entity in ("account", "merchant", "device", "ip"):
        named = f.named()
        assert named[f"{entity}_count_24h"] == 1, entity  # yesterday's is 24 h old: out
        assert named[f"{entity}_count_7d"] == 7, entity  # days 34-40
        assert named[f"{entity}_count_30d"] == 30, entity
        assert named[f"{entity}_sum_7d"] == pytest.approx(6 * 10 + 5.5), entity
    assert f.account_count_10m == 1
    assert f.account_sum_1h == 5.5


def test_windows_ignore_later_events_seen_first() -> None:
    fz = Featurizer()
    process_one(fz, make_tx(10 * DAY))
    late = process_one(fz, make_tx(0))
    assert late.account_count_24h == 1
    assert late.merchant_count_7d == 1


def test_bucket_windows_count_whole_buckets() -> None:
    # A merchant's 10 min window is the current minute and the nine before it: an event
    # reaches back between 9 and 10 minutes, never more (docs/rules.md).
    fz = Featurizer()
    process_one(fz, make_tx(0))
    assert process_one(fz, make_tx(599, account_id="b")).merchant_count_10m == 2
    fz = Featurizer()
    process_one(fz, make_tx(59))
    assert process_one(fz, make_tx(630, account_id="b")).merchant_count_10m == 1


def test_time_since_previous_and_first_seen_mcc() -> None:
    fz = Featurizer()
    first = process_one(fz, make_tx(0, mcc="5411"))
    assert first.since_prev_s is None
    assert first.is_new_mcc is None
    second = process_one(fz, make_tx(90, mcc="5999"))
    assert second.since_prev_s == 90
    assert second.is_new_mcc is True
    assert process_one(fz, make_tx(100, mcc="5411")).is_new_mcc is False
    assert process_one(fz, make_tx(110)).is_new_mcc is None  # no mcc


def test_distinct_merchants_and_countries_in_24h() -> None:
    fz = Featurizer()
    process_one(fz, make_tx(0, merchant_id="a", country="US"))
    process_one(fz, make_tx(60, merchant_id="b", country="FR"))
    f = process_one(fz, make_tx(120, merchant_id="a", country="US"))
    assert (f.distinct_merchants_24h, f.distinct_countries_24h) == (2, 2)
    later = process_one(fz, make_tx(DAY + 90, merchant_id="c"))
    # "a" was refreshed at 120 and is still within the 24 h; "b" (at 60) is not.
    assert later.distinct_merchants_24h == 2
    assert later.distinct_countries_24h is None


def test_merchant_risk_counts_only_labels_known_by_then() -> None:
    fz = Featurizer([n for n in FEATURES if n.startswith(("merchant_fraud", "merchant_labels"))])
    for i in range(10):
        process_one(fz, make_tx(i * 60.0, merchant_id="shop"))
    t0 = T0.timestamp()
    # Three frauds become known on day 3; a label "from the future" must not count before.
    for _ in range(3):
        fz.learn_label("shop", t0 + 3 * DAY, True)
    fz.learn_label("shop", t0 + 3 * DAY, False)
    before = process_one(fz, make_tx(2 * DAY, merchant_id="shop"))
    assert (before.merchant_labels_30d, before.merchant_frauds_30d) == (0, 0)
    assert before.merchant_fraud_rate_30d is None  # no label known yet: unknown, not 0
    after = process_one(fz, make_tx(3 * DAY + 60, merchant_id="shop"))
    assert (after.merchant_labels_30d, after.merchant_frauds_30d) == (4, 3)
    assert after.merchant_frauds_7d == 3
    assert after.merchant_fraud_rate_30d == pytest.approx(3 / 4)
    # The two-day window: labels learnt today or yesterday (day 3 seen on day 4, not day 5).
    assert (after.merchant_labels_2d, after.merchant_frauds_2d) == (4, 3)
    next_day = process_one(fz, make_tx(4 * DAY + 60, merchant_id="shop"))
    assert (next_day.merchant_labels_2d, next_day.merchant_fraud_rate_2d) == (4, 3 / 4)
    two_days = process_one(fz, make_tx(5 * DAY + 60, merchant_id="shop"))
    assert (two_days.merchant_labels_2d, two_days.merchant_fraud_rate_2d) == (0, None)
    assert two_days.merchant_frauds_7d == 3
    much_later = process_one(fz, make_tx(40 * DAY, merchant_id="shop"))
    assert (much_later.merchant_labels_30d, much_later.merchant_fraud_rate_30d) == (0, None)
    other = process_one(fz, make_tx(3 * DAY + 60, merchant_id="elsewhere"))
    assert other.merchant_fraud_rate_30d is None
    # A merchant known only through labels costs no state per transaction.
    assert "elsewhere" not in fz.merchants


def test_the_merchants_run_of_frauds_counts_labels_since_its_last_legitimate_one() -> None:
    # A compromised terminal: once its first frauds are known, every new label is fraud; a
    # stray fraud at an honest shop is followed by a legitimate label and the run ends.
    fz = Featurizer(["merchant_fraud_run"])
    t0 = T0.timestamp()

    def run(at: float) -> Any:
        return process_one(fz, make_tx(at, merchant_id="shop")).merchant_fraud_run

    assert run(0) == 0  # nothing known
    fz.learn_label("shop", t0 + 1 * DAY, False)
    fz.learn_label("shop", t0 + 2 * DAY, True)
    fz.learn_label("shop", t0 + 2 * DAY + 60, True)
    fz.learn_label("shop", t0 + 9 * DAY, True)  # known later: not counted before then
    assert run(1 * DAY + 60) == 0
    assert run(2 * DAY + 120) == 2  # today's labels, all fraud
    assert run(5 * DAY) == 2  # days without labels do not end a run
    assert run(9 * DAY + 60) == 3
    # A day whose labels are not all fraud ends it (their order within the day is unknown).
    fz.learn_label("shop", t0 + 10 * DAY, True)
    fz.learn_label("shop", t0 + 10 * DAY + 60, False)
    assert run(10 * DAY + 120) == 0
    assert run(11 * DAY) == 0
    fz.learn_label("shop", t0 + 12 * DAY, True)
    assert run(12 * DAY + 60) == 1
    # Only the last 30 days of labels are looked at.
    assert run(41 * DAY) == 1
    assert run(43 * DAY) == 0


def test_the_amounts_fraud_rate_counts_the_labels_known_on_about_that_amount() -> None:
    # The handbook-style stream's frauds include every amount over 220, its legitimate
    # amounts stop just under: a step the model's amount bands (200 to 500) cannot place.
    fz = Featurizer(["amount_fraud_rate"])
    t0 = T0.timestamp()
    assert process_one(fz, make_tx(0, amount=Decimal("230.00"))).amount_fraud_rate == 0.0
    for _ in range(3):
        fz.learn_label("shop", t0 + 60, True, 230.0)
    fz.learn_label("elsewhere", t0 + 60, False, 231.0)  # within 2.5 %: the same amount
    fz.learn_label("shop", t0 + 60, False, 215.0)
    near = process_one(fz, make_tx(120, amount=Decimal("230.40"), merchant_id="any"))
    assert near.amount_fraud_rate == pytest.approx(3 / 5, rel=1e-4)  # frauds / (labels + 1)
    assert process_one(fz, make_tx(120, amount=Decimal("215.00"))).amount_fraud_rate == 0.0
    fz.learn_label("shop", t0 + 180, True, 215.0)
    assert process_one(fz, make_tx(240, amount=Decimal("215.00"))).amount_fraud_rate == (
        pytest.approx(1 / 3, rel=1e-4)
    )
    # A label weighs half after 30 days: the shrinkage towards 0 grows as they fade.
    month = process_one(fz, make_tx(60 + 30 * DAY, amount=Decimal("230.00")))
    assert month.amount_fraud_rate == pytest.approx(1.5 / 3, rel=1e-4)
    # A label learnt later adds to the faded counts, not to the old ones.
    fz.learn_label("shop", t0 + 60 + 30 * DAY, False, 230.0)
    assert process_one(fz, make_tx(60 + 30 * DAY, amount=Decimal("230.00"))).amount_fraud_rate == (
        pytest.approx(1.5 / 4, rel=1e-4)
    )


def test_the_hours_fraud_rate_counts_the_labels_known_at_that_local_hour() -> None:
    # A card stream whose frauds cluster late in the evening (the Sparkov-style one: 22-23 h
    # and 00-03 h) carries that in no other input: `night` is 00-05 h alone.
    fz = Featurizer(["hour_fraud_rate"])
    t0 = T0.timestamp()  # 12:00 UTC
    late = dt.timezone(dt.timedelta(hours=11))  # the same instant is 23:00 there
    assert process_one(fz, make_tx(0)).hour_fraud_rate == 0.0
    for _ in range(3):
        fz.learn_label("shop", t0 + 60, True, 40.0, 23)
    fz.learn_label("elsewhere", t0 + 60, False, 40.0, 23)
    fz.learn_label("shop", t0 + 60, False, 40.0, 12)
    at_23 = make_tx(120, merchant_id="any")
    at_23.timestamp = at_23.timestamp.astimezone(late)
    assert process_one(fz, at_23).hour_fraud_rate == pytest.approx(3 / 5, rel=1e-4)
    assert process_one(fz, make_tx(120)).hour_fraud_rate == pytest.approx(0 / 2)
    # A label weighs half after 30 days, as the amount's do; taken back, it counts no more.
    month = make_tx(120 + 30 * DAY)
    month.timestamp = month.timestamp.astimezone(late)
    assert process_one(fz, month).hour_fraud_rate == pytest.approx(1.5 / 3, rel=1e-4)
    fz.unlearn_label("shop", t0 + 60, True, 40.0, 23)
    again = make_tx(120 + 30 * DAY)
    again.timestamp = again.timestamp.astimezone(late)
    assert process_one(fz, again).hour_fraud_rate == pytest.approx(1.0 / 2.5, rel=1e-4)


def test_the_amount_is_measured_against_its_mccs_usual_amounts() -> None:
    # Sparkov-style fraud at a fuel station charges about 10 where fuel runs 60-70: ordinary
    # for the card, unusual for the category. Every account's transactions count.
    fz = Featurizer(["mcc_amount_z"])
    amounts = [55.0, 60.0, 65.0, 70.0, 75.0] * 6
    seen = [
        process_one(fz, make_tx(60 * i, amount=Decimal(f"{a:.2f}"), mcc="5541",
                                account_id=f"acct-{i}"))
        for i, a in enumerate(amounts)
    ]  # fmt: skip
    assert [v.mcc_amount_z for v in seen] == [None] * 30  # under 30 earlier: unknown
    logs = [math.log1p(a) for a in amounts]
    mean, sd = statistics.fmean(logs), statistics.stdev(logs)
    low = process_one(fz, make_tx(3600, amount=Decimal("10.00"), mcc="5541"))
    assert low.mcc_amount_z == pytest.approx((math.log1p(10.0) - mean) / sd, rel=1e-9)
    assert low.mcc_amount_z < -5
    # Learnt after it is measured: the next one sees 31.
    usual = process_one(fz, make_tx(3660, amount=Decimal("65.00"), mcc="5541"))
    logs.append(math.log1p(10.0))
    assert usual.mcc_amount_z == pytest.approx(
        (math.log1p(65.0) - statistics.fmean(logs)) / statistics.stdev(logs), rel=1e-9
    )
    assert process_one(fz, make_tx(3720, amount=Decimal("10.00"))).mcc_amount_z is None
    assert process_one(fz, make_tx(3780, amount=Decimal("10.00"), mcc="5411")).mcc_amount_z is None


def test_an_account_s_receipts_as_a_payee_in_24_hours() -> None:
    # A mule passes on what it was just sent: the account's receipts as a merchant_id count
    # for its own transactions, for 24 h (to the hour), never its own amount.
    fz = Featurizer(["account_inflow_24h"])
    assert process_one(fz, make_tx(0, account_id="mule", merchant_id="m-1")).account_inflow_24h == 0
    process_one(fz, make_tx(60, account_id="victim-1", merchant_id="mule",
                            amount=Decimal("900.00")))  # fmt: skip
    process_one(fz, make_tx(120, account_id="victim-2", merchant_id="mule",
                            amount=Decimal("100.00")))  # fmt: skip
    process_one(fz, make_tx(180, account_id="victim-3", merchant_id="other",
                            amount=Decimal("5000.00")))  # fmt: skip
    out = process_one(fz, make_tx(240, account_id="mule", merchant_id="agent"))
    assert out.account_inflow_24h == pytest.approx(1000.0)
    assert process_one(fz, make_tx(300, account_id="victim-1")).account_inflow_24h == 0
    # Paying oneself does not count the payment's own amount.
    itself = make_tx(360, account_id="mule", merchant_id="mule", amount=Decimal("7.00"))
    assert process_one(fz, itself).account_inflow_24h == pytest.approx(1000.0)
    later = process_one(fz, make_tx(25 * 3600, account_id="mule", merchant_id="agent"))
    assert later.account_inflow_24h == 0


def test_a_payee_unpaid_for_30_days_is_new() -> None:
    # A mule's fresh account, a merchant set up for fraud: nobody has paid it, from any
    # account, in the 30 days (to the hour) before; this transaction's own does not count.
    fz = Featurizer(["is_new_payee"], ttl_s=31 * DAY)

    def new(seconds: float, payer: str, payee: str) -> Value:
        return process_one(fz, make_tx(seconds, account_id=payer, merchant_id=payee)).is_new_payee

    assert new(0, "victim-1", "mule") is True
    assert new(HOUR, "victim-2", "mule") is False
    assert new(2 * HOUR, "victim-2", "shop") is True
    # 29 days 23 hours after its last payment it is not new; 30 days after, it is again,
    # though a label on one of its transactions came since (it moves the key's `last_t`).
    assert new(30 * DAY, "victim-3", "mule") is False
    fz.learn_label("mule", T0.timestamp() + 45 * DAY, True, 500.0)
    assert new(60 * DAY, "victim-4", "mule") is True
    # Paying is not being paid: an account's own payments do not make it a known payee.
    assert new(60 * DAY + HOUR, "fresh", "cash-agent") is True
    assert new(60 * DAY + 2 * HOUR, "victim-5", "fresh") is True
    # Eviction (after `ttl_s` idle, at least 31 days) only drops payees that read as new
    # anyway: the shop, paid once on day 0, is gone, and new as it would be kept.
    assert "shop" not in fz.merchants
    assert new(61 * DAY, "victim-6", "shop") is True


def test_idle_keys_are_evicted_by_event_time() -> None:
    fz = Featurizer(ttl_s=40 * DAY)
    process_one(fz, make_tx(0, account_id="idle", merchant_id="old-shop", device_id="d-old"))
    process_one(fz, make_tx(0, account_id="busy"))
    for day in range(1, 60, 5):
        process_one(fz, make_tx(day * DAY, account_id="busy"))
    assert "idle" not in fz.accounts
    assert "old-shop" not in fz.merchants
    assert "d-old" not in fz.devices
    assert fz.accounts["busy"].count == 13
    # Coming back after eviction is a fresh start, not an error.
    assert process_one(fz, make_tx(60 * DAY, account_id="idle")).history == 0


def test_eviction_never_uses_the_wall_clock() -> None:
    fz = Featurizer(ttl_s=40 * DAY)
    process_one(fz, make_tx(-400 * DAY, account_id="ancient"))  # a year before "now"
    assert "ancient" in fz.accounts
    assert fz.evict(T0.timestamp() - 400 * DAY) == 0


def test_stable_hash_is_the_same_in_every_process() -> None:
    # crc32 of the UTF-8 bytes: a fixed value, unlike the per-process salted hash().
    assert stable_hash("m-1") == zlib.crc32(b"m-1")
    assert stable_hash("café") == zlib.crc32("café".encode())


def test_merchant_risk_cache_matches_counting_afresh() -> None:
    # The earlier days' sums are kept for the day; labels of any day, late transactions and
    # pruned buckets must give what counting every bucket again gives.
    names = [n for n in FEATURES if n.startswith(("merchant_fraud", "merchant_labels"))]
    rng = random.Random(7)
    t0 = T0.timestamp()
    for _ in range(20):
        cached, fresh = Featurizer(names), Featurizer(names)
        t = 0.0
        for _ in range(300):
            t += rng.expovariate(1 / (DAY / rng.choice([1, 5, 30])))
            if rng.random() < 0.5:
                late = rng.choice([0.0, 0.0, -40 * DAY * rng.random(), 5 * DAY * rng.random()])
                at = t0 + t + late
                is_fraud = rng.random() < 0.2
                cached.learn_label("shop", at, is_fraud)
                fresh.learn_label("shop", at, is_fraud)
            when = t + rng.choice([0.0, 0.0, -3 * DAY * rng.random()])
            if (state := fresh.merchants.get("shop")) is not None:
                state.risk = None  # nothing cached: counted afresh
            got = process_one(cached, make_tx(when, merchant_id="shop")).named(names)
            want = process_one(fresh, make_tx(when, merchant_id="shop")).named(names)
            assert got == want


def _features_of(stream: list[dict[str, Any]]) -> list[dict[str, Value]]:
    fz = Featurizer(FEATURES)
    out = []
    for i, fields in enumerate(stream):
        tx = make_tx(i * 97.0, **fields)
        fz.learn_label(tx.merchant_id, tx.timestamp.timestamp(), i % 3 == 0, 40.0, 12)
        out.append(fz.values_one(tx))
    return out


@pytest.mark.parametrize(
    ("field", "one", "other"),
    [
        ("account_id", lambda i: f"a{i % 2}", lambda i: f"a{i % 3}"),
        ("merchant_id", lambda i: f"m{i % 2}", lambda i: f"m{i % 4}"),
        ("amount", lambda i: Decimal(3 + i), lambda i: Decimal(3 + i * i)),
        ("mcc", lambda i: "5411", lambda i: f"54{i % 3}"),
        ("country", lambda i: "FR", lambda i: ("FR", "DE")[i % 2]),
        ("lat", lambda i: 48.0, lambda i: 48.0 + i),
        ("lon", lambda i: 2.0, lambda i: 2.0 + 3 * i),
        ("device_id", lambda i: "d1", lambda i: f"d{i % 3}"),
        ("ip", lambda i: "10.0.0.1", lambda i: f"10.0.0.{i % 3}"),
    ],
)
def test_feature_fields_name_every_field_a_feature_changes_with(
    field: str, one: Any, other: Any
) -> None:
    # What a backtest's rule note tells the user to check: a feature that moves when only
    # `field` changes must list it.
    base = {"lat": 48.0, "lon": 2.0, "mcc": "5411", "country": "FR", "device_id": "d1"}
    base |= {"ip": "10.0.0.1"}
    a = _features_of([base | {field: one(i)} for i in range(40)])
    b = _features_of([base | {field: other(i)} for i in range(40)])
    moved = {
        name for x, y in zip(a, b, strict=True) for name in FEATURES if x.get(name) != y.get(name)
    }
    assert moved, f"changing {field} moved no feature: the test does not exercise it"
    assert sorted(n for n in moved if field not in FEATURE_FIELDS[n]) == []
