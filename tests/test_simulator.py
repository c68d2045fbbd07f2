"""Tests for the transaction simulator and its standalone NDJSON client."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import gzip
import io
import itertools
import socket
import statistics
import time
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from server.transactions import parse_transaction, validate_transaction
from simulator import Labeled, Simulator, dataset, ndjson
from simulator import accounts as accounts_module
from simulator.accounts import MEAN_DAILY_TX
from simulator.client import ClientOptions, TargetRefused, parse_args, run_client
from simulator.geo import CITIES, distance_km

START = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
FRAUD_SCENARIOS = {
    "card_testing",
    "account_takeover",
    "impossible_travel",
    "velocity_burst",
    "amount_outlier",
    "night_spree",
    "compromised_merchant",
    "collusive_merchant",
    "bust_out",
}
LEGIT_SCENARIOS = {"legit_travel", "legit_big_purchase", "new_phone"}
# Episodes whose genuine transactions carry the scenario's name: the visits where cards were
# copied, and the trust-building history before a bust-out.
MIXED_SCENARIOS = {"compromised_merchant", "bust_out"}


def fingerprint(batch: list[Labeled]) -> list[tuple[bytes, bool, str | None]]:
    return [
        (line, item.is_fraud, item.scenario)
        for line, item in zip(ndjson(batch).splitlines(), batch, strict=True)
    ]


@pytest.fixture(scope="module")
def long_run() -> tuple[Simulator, list[Labeled]]:
    # A low rate stretches 150k transactions over ~1.7 days of event time: every local hour
    # everywhere, and every scenario many times over. The population is sized from the rate
    # (~15,000 accounts), so each card is used as often as at any other rate.
    sim = Simulator(seed=11, merchants=400, fraud_rate=0.05, rate=1.0, start=START)
    return sim, sim.generate(150_000)


def test_same_seed_gives_the_same_stream() -> None:
    a = Simulator(seed=7, fraud_rate=0.1, start=START).generate(3000)
    b = Simulator(seed=7, fraud_rate=0.1, start=START).generate(3000)
    c = Simulator(seed=8, fraud_rate=0.1, start=START).generate(3000)
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint(c)


def test_how_calls_are_chunked_does_not_change_the_stream() -> None:
    whole = Simulator(seed=3, fraud_rate=0.1, start=START).generate(5000)
    sim = Simulator(seed=3, fraud_rate=0.1, start=START)
    parts = sim.generate(1234) + sim.generate(0) + sim.generate(3766)
    assert fingerprint(parts) == fingerprint(whole)


def test_event_time_is_ordered() -> None:
    batch = Simulator(seed=5, fraud_rate=0.2, start=START).generate(20_000)
    times = [item.transaction.timestamp for item in batch]
    assert all(earlier <= later for earlier, later in itertools.pairwise(times))
    assert sum(item.scenario is not None for item in batch) > 500  # episodes were interleaved


def test_generate_until_skips_nothing_and_overshoots_nothing() -> None:
    reference = Simulator(seed=9, fraud_rate=0.1, start=START).generate(4000)
    sim = Simulator(seed=9, fraud_rate=0.1, start=START)
    collected: list[Labeled] = []
    for step in range(1, 60):
        t = START + dt.timedelta(seconds=1.37 * step)
        batch = sim.generate_until(t)
        assert all(item.transaction.timestamp <= t for item in batch)
        collected += batch
    assert sim.generate_until(START) == []  # going back in time yields nothing
    collected += sim.generate(4000 - len(collected))
    assert fingerprint(collected) == fingerprint(reference)
    assert len({item.transaction.id for item in collected}) == 4000


def test_generate_until_includes_a_transaction_exactly_at_t() -> None:
    first = Simulator(seed=2, start=START).generate(1)[0].transaction.timestamp
    sim = Simulator(seed=2, start=START)
    assert sim.generate_until(first - dt.timedelta(microseconds=1)) == []
    assert [i.transaction.timestamp for i in sim.generate_until(first)] == [first]


def test_rate_is_transactions_per_event_time_second() -> None:
    sim = Simulator(seed=4, rate=50.0, start=START)
    produced = len(sim.generate_until(START + dt.timedelta(seconds=200)))
    # START is a Monday everywhere, at 0.95 of the weekly average: ~9,500 expected, sd ~100.
    assert 9_150 < produced < 9_850


def test_start_defaults_to_now() -> None:
    before = dt.datetime.now(dt.UTC)
    first = Simulator(seed=1, rate=1000.0).generate(1)[0].transaction.timestamp
    assert before <= first < before + dt.timedelta(seconds=5)


def test_a_live_stream_with_history_began_that_long_ago() -> None:
    # The demo's warm-up: the stream's last minutes first, then on in wall time, with a live
    # stream's ids (they carry the run, so a restarted demo reuses none).
    before = dt.datetime.now(dt.UTC)
    sim = Simulator(seed=1, rate=20.0, history=dt.timedelta(minutes=5))
    after = dt.datetime.now(dt.UTC)
    assert before - dt.timedelta(minutes=5) <= sim.start <= after - dt.timedelta(minutes=5)
    past = sim.generate_until(after)
    assert past[0].transaction.timestamp < before - dt.timedelta(minutes=4)
    assert 4_000 < len(past) < 8_000  # ~20 a second for 300 s, shaped by the hour and week
    assert all(item.transaction.timestamp <= after for item in past)
    assert past[0].transaction.id.startswith("tx-1-") and past[0].transaction.id.count("-") == 3
    later = sim.generate_until(after + dt.timedelta(seconds=30))
    assert later and later[0].transaction.timestamp > after
    ids = [item.transaction.id for item in past + later]
    assert len(set(ids)) == len(ids)


def test_every_transaction_validates(long_run: tuple[Simulator, list[Labeled]]) -> None:
    sim, batch = long_run
    ids = set()
    for item in batch:
        tx = validate_transaction(item.transaction)
        ids.add(tx.id)
        assert tx.currency == "USD"
        assert tx.amount.as_tuple().exponent == -2 and tx.amount >= Decimal("0.50")
        # Local hour is meaningful: the timestamp carries the cardholder's home offset.
        home = sim.accounts.by_id(tx.account_id).city
        assert tx.timestamp.utcoffset() == dt.timedelta(hours=home.utc_offset_hours)
        if tx.device_id is not None:
            assert tx.channel == "ecom"
        if tx.channel != "ecom":
            assert tx.lat is not None and tx.lon is not None  # a terminal knows its place
        assert tx.country is not None
        if item.is_fraud:
            assert item.scenario in FRAUD_SCENARIOS
        elif item.scenario is not None:
            assert item.scenario in LEGIT_SCENARIOS | MIXED_SCENARIOS
    assert len(ids) == len(batch)


def test_optional_fields_are_sometimes_absent_and_say_nothing_of_the_label(
    long_run: tuple[Simulator, list[Labeled]],
) -> None:
    _, batch = long_run
    online = {
        label: [
            i.transaction for i in batch if i.is_fraud == label and i.transaction.channel == "ecom"
        ]
        for label in (False, True)
    }
    for txs in online.values():
        assert len(txs) > 1000
        unlocated = sum(tx.lat is None for tx in txs) / len(txs)
        no_device = sum(tx.device_id is None for tx in txs) / len(txs)
        # The same odds for fraud and genuine: an absence must not give the label away.
        assert 0.07 < unlocated < 0.13
        assert 0.03 < no_device < 0.07


def test_ndjson_round_trips_through_the_ingest_parser() -> None:
    batch = Simulator(seed=6, fraud_rate=0.1, start=START).generate(500)
    body = ndjson(batch)
    assert body.endswith(b"\n")
    lines = body.split(b"\n")[:-1]
    assert [parse_transaction(line) for line in lines] == [item.transaction for item in batch]


def test_fraud_share_follows_fraud_rate(long_run: tuple[Simulator, list[Labeled]]) -> None:
    _, batch = long_run
    share = sum(item.is_fraud for item in batch) / len(batch)
    assert 0.042 < share < 0.058
    clean = Simulator(seed=11, fraud_rate=0.0, start=START).generate(20_000)
    assert not any(item.is_fraud or item.scenario for item in clean)


def test_every_scenario_appears(long_run: tuple[Simulator, list[Labeled]]) -> None:
    _, batch = long_run
    seen = Counter(item.scenario for item in batch if item.scenario)
    assert set(seen) == FRAUD_SCENARIOS | LEGIT_SCENARIOS
    assert all(count >= 20 for count in seen.values()), seen
    assert not any(item.is_fraud for item in batch if item.scenario in LEGIT_SCENARIOS)


def episodes(batch: list[Labeled], scenario: str) -> dict[str, list[Labeled]]:
    by_account: dict[str, list[Labeled]] = defaultdict(list)
    for item in batch:
        if item.scenario == scenario:
            by_account[item.transaction.account_id].append(item)
    return by_account


def test_card_testing_probes_small_then_cashes_out(
    long_run: tuple[Simulator, list[Labeled]],
) -> None:
    sim, batch = long_run
    runs = episodes(batch, "card_testing")
    assert runs
    # An episode still probing when the batch ends has its cash-out still to come.
    cut = batch[-1].transaction.timestamp - dt.timedelta(minutes=20)
    for account_id, items in runs.items():
        if items[0].transaction.timestamp > cut:
            continue
        amounts = [item.transaction.amount for item in items]
        assert all(item.transaction.channel == "ecom" for item in items)
        probes = [a for a in amounts if a <= Decimal("3.00")]
        assert len(probes) >= 5 and all(a >= Decimal("0.50") for a in probes)
        typical = sim.accounts.by_id(account_id).typical
        assert max(amounts) >= Decimal(str(round(typical * 8, 2)))


def test_impossible_travel_is_far_and_soon(long_run: tuple[Simulator, list[Labeled]]) -> None:
    sim, batch = long_run
    where = {(c.lat, c.lon): c for c in CITIES}
    history: dict[str, list[Labeled]] = defaultdict(list)
    for item in batch:
        history[item.transaction.account_id].append(item)
    runs = episodes(batch, "impossible_travel")
    assert runs
    for account_id, items in runs.items():
        home = sim.accounts.by_id(account_id).city
        for item in items:
            tx = item.transaction
            assert tx.channel in ("pos", "atm") and tx.lat is not None and tx.lon is not None
            assert distance_km(home, where[(tx.lat, tx.lon)]) >= 3000
        # The genuine purchase at home shortly before is unlabelled: find it in the history
        # (unless the episode began before the stream did).
        first = items[0].transaction.timestamp
        if first < START + dt.timedelta(hours=1):
            continue
        assert any(
            first - dt.timedelta(hours=1) <= other.transaction.timestamp < first
            and other.transaction.channel != "ecom"
            and (other.transaction.lat, other.transaction.lon) == (home.lat, home.lon)
            for other in history[account_id]
        )


def test_account_takeover_brings_new_device_and_country(
    long_run: tuple[Simulator, list[Labeled]],
) -> None:
    sim, batch = long_run
    runs = episodes(batch, "account_takeover")
    assert runs
    for account_id, items in runs.items():
        account = sim.accounts.by_id(account_id)
        for item in items:
            tx = item.transaction
            assert tx.device_id not in account.devices
            assert tx.country != account.city.country
            assert tx.amount >= Decimal(str(round(account.typical * 5, 2)))


def test_velocity_burst_is_quick(long_run: tuple[Simulator, list[Labeled]]) -> None:
    _, batch = long_run
    runs = episodes(batch, "velocity_burst")
    assert runs
    for items in runs.values():
        times = [item.transaction.timestamp for item in items]
        # One account can be hit twice, far apart: split its bursts at quiet gaps.
        bursts: list[list[dt.datetime]] = [[times[0]]]
        for earlier, later in itertools.pairwise(times):
            if later - earlier > dt.timedelta(minutes=10):
                bursts.append([])
            bursts[-1].append(later)
        for burst in bursts:
            assert 8 <= len(burst) <= 20
            assert burst[-1] - burst[0] <= dt.timedelta(minutes=2)


def test_travellers_fly_home_before_shopping_at_home(
    long_run: tuple[Simulator, list[Labeled]],
) -> None:
    _, batch = long_run
    where = {(c.lat, c.lon): c for c in CITIES}
    abroad: dict[str, Labeled] = {}
    speeds = []
    for item in batch:
        tx = item.transaction
        if tx.lat is None:
            continue  # an online purchase without a geolocated IP says nothing of where
        if item.scenario == "legit_travel":
            abroad[tx.account_id] = item
        elif item.scenario is None and tx.account_id in abroad:
            last = abroad.pop(tx.account_id).transaction
            km = distance_km(where[(last.lat, last.lon)], where[(tx.lat, tx.lon)])
            speeds.append(km / ((tx.timestamp - last.timestamp) / dt.timedelta(hours=1)))
    assert len(speeds) >= 20
    # A fraud episode planned on a traveller can still place a purchase at home; rarely.
    assert sum(speed > 900 for speed in speeds) <= len(speeds) // 20


def test_night_spree_happens_at_night(long_run: tuple[Simulator, list[Labeled]]) -> None:
    _, batch = long_run
    hours = {item.transaction.timestamp.hour for item in batch if item.scenario == "night_spree"}
    assert hours and hours <= {1, 2, 3}


# A month at a low rate: long enough for the episodes that span days to play out in full many
# times (those started before the stream, pre-rolled, are over by LEAD_OVER).
MONTH = dt.timedelta(days=30)
LEAD_OVER = START + dt.timedelta(days=9)


@pytest.fixture(scope="module")
def month_run() -> tuple[Simulator, list[Labeled]]:
    sim = Simulator(seed=21, accounts=20_000, fraud_rate=0.05, rate=0.05, start=START)
    return sim, sim.generate_until(START + MONTH)


def test_the_fraud_share_holds_from_the_first_day(
    month_run: tuple[Simulator, list[Labeled]],
) -> None:
    _, batch = month_run
    by_day: dict[int, list[Labeled]] = defaultdict(list)
    for item in batch:
        by_day[(item.transaction.timestamp - START).days].append(item)
    first_days = by_day[0] + by_day[1] + by_day[2]
    later_days = [item for day in range(10, 30) for item in by_day[day]]
    share = {name: sum(i.is_fraud for i in items) / len(items) for name, items in
             (("first", first_days), ("later", later_days))}  # fmt: skip
    # Fraud comes in episodes of up to twenty transactions: three days of a slow stream hold
    # ~130 of them, hence the wider margin there.
    assert 0.035 < share["first"] < 0.065 and 0.045 < share["later"] < 0.055, share
    # Episodes begun before the stream (pre-rolled) bring their frauds into its first days.
    early = Counter(item.scenario for item in first_days if item.is_fraud)
    assert early["bust_out"] >= 10 and early["compromised_merchant"] >= 10, early


def test_month_run_has_every_scenario_many_times_in_order(
    month_run: tuple[Simulator, list[Labeled]],
) -> None:
    _, batch = month_run
    # Episodes spanning days hand out their transactions one by one: still in event time.
    times = [item.transaction.timestamp for item in batch]
    assert all(earlier <= later for earlier, later in itertools.pairwise(times))
    seen = Counter(item.scenario for item in batch if item.is_fraud)
    assert set(seen) == FRAUD_SCENARIOS
    assert all(count >= 100 for count in seen.values()), seen


def test_weeks_peak_on_friday_and_average_to_the_rate(
    month_run: tuple[Simulator, list[Labeled]],
) -> None:
    sim, batch = month_run
    by_weekday = Counter(
        item.transaction.timestamp.weekday() for item in batch if not item.scenario
    )
    # 30 days from a Monday: five Mondays and Tuesdays, four of every other day.
    per_day = {day: by_weekday[day] / (5 if day < 2 else 4) for day in range(7)}
    assert 1.1 < per_day[4] / per_day[6] < 1.35  # Friday over Sunday: 1.22 expected
    assert max(per_day, key=per_day.__getitem__) in (4, 5)
    expected = sim.rate * MONTH.total_seconds()
    assert 0.95 < len(batch) / expected < 1.03


def test_same_seed_gives_the_same_long_episodes() -> None:
    def run(seed: int) -> list[tuple[bytes, bool, str | None]]:
        sim = Simulator(seed=seed, accounts=5000, fraud_rate=0.1, rate=0.1, start=START)
        return fingerprint(sim.generate_until(START + dt.timedelta(days=3)))

    a, b = run(5), run(5)
    assert a == b and a != run(6)
    assert {"compromised_merchant", "collusive_merchant", "bust_out", "new_phone"} <= {
        scenario for _, _, scenario in a
    }


def test_compromised_merchant_victims_all_shopped_there_before_the_fraud(
    month_run: tuple[Simulator, list[Labeled]],
) -> None:
    sim, batch = month_run
    visits: dict[str, list[Labeled]] = defaultdict(list)  # account -> its copied visits
    victims: dict[str, set[str]] = defaultdict(set)  # merchant -> accounts copied there
    checked = 0
    for item in batch:
        tx = item.transaction
        if item.scenario != "compromised_merchant":
            continue
        if not item.is_fraud:
            visits[tx.account_id].append(item)
            victims[tx.merchant_id].add(tx.account_id)
            continue
        if tx.timestamp < LEAD_OVER:
            continue  # may belong to an episode whose visits came before the stream
        checked += 1
        earlier = [v for v in visits[tx.account_id] if v.transaction.timestamp < tx.timestamp]
        assert earlier, f"{tx.account_id} was never at a compromised merchant before {tx.id}"
        visit = earlier[-1].transaction
        # Hours or days later, somewhere else, and never at the compromised merchant itself.
        assert tx.timestamp - visit.timestamp >= dt.timedelta(hours=2)
        assert tx.merchant_id != visit.merchant_id
        account = sim.accounts.by_id(tx.account_id)
        if visit.channel == "ecom":  # a breached web shop: the copy is used online, by others
            assert tx.channel == "ecom" and tx.device_id not in account.devices
        else:  # a skimmed terminal: a counterfeit card, in person, in another city
            assert tx.channel in ("pos", "atm")
            assert (tx.lat, tx.lon) != (account.city.lat, account.city.lon)
    assert checked >= 100
    # The common point of purchase: many different cards copied at one merchant.
    assert statistics.median(len(accounts) for accounts in victims.values()) >= 5


def test_collusive_merchant_is_a_burst_of_many_new_or_quiet_cards(
    month_run: tuple[Simulator, list[Labeled]],
) -> None:
    sim, batch = month_run
    at_merchant: dict[str, list[Labeled]] = defaultdict(list)
    for item in batch:
        if item.scenario == "collusive_merchant":
            at_merchant[item.transaction.merchant_id].append(item)
    bursts: list[list[Labeled]] = []
    for items in at_merchant.values():
        bursts.append([items[0]])
        for earlier, later in itertools.pairwise(items):
            if later.transaction.timestamp - earlier.transaction.timestamp > dt.timedelta(hours=7):
                bursts.append([])
            bursts[-1].append(later)
    assert len(bursts) >= 20
    opened = total = online = round_prices = 0
    for burst in bursts:
        txs = [item.transaction for item in burst]
        accounts = {tx.account_id for tx in txs}
        assert len(accounts) >= 5  # many cards at one merchant...
        assert txs[-1].timestamp - txs[0].timestamp <= dt.timedelta(hours=7)  # ...at once
        # ...for a round price, or within $20 of one.
        assert all(tx.amount % 50 <= 20 or tx.amount % 50 >= 30 for tx in txs)
        round_prices += sum(tx.amount % 50 == 0 for tx in txs)
        opened += sum(int(a.removeprefix("acct-")) >= len(sim.accounts) for a in accounts)
        total += len(accounts)
        online += sum(tx.channel == "ecom" for tx in txs)
    # Mostly card-not-present, and often from accounts opened for the purpose.
    charges = sum(len(burst) for burst in bursts)
    assert online >= 0.6 * charges
    assert round_prices >= 0.6 * charges
    assert opened >= 0.25 * total


def test_bust_out_builds_trust_then_sprees_and_vanishes(
    month_run: tuple[Simulator, list[Labeled]],
) -> None:
    sim, batch = month_run
    by_account: dict[str, list[Labeled]] = defaultdict(list)
    for item in batch:
        by_account[item.transaction.account_id].append(item)
    bust_outs = {a for a, items in by_account.items() if items[0].scenario == "bust_out"}
    whole = 0
    for account_id in bust_outs:
        items = by_account[account_id]
        # The account exists for this alone: nothing else ever happens on it.
        assert int(account_id.removeprefix("acct-")) >= len(sim.accounts)
        assert {item.scenario for item in items} == {"bust_out"}
        history = [item.transaction for item in items if not item.is_fraud]
        spree = [item.transaction for item in items if item.is_fraud]
        if spree:  # a quiet good history, then fraud and nothing after
            assert items[-len(spree) :] == [item for item in items if item.is_fraud]
            assert spree[-1].timestamp - spree[0].timestamp <= dt.timedelta(hours=8)
        if items[0].transaction.timestamp < LEAD_OVER or items[-1].transaction.timestamp > (
            START + MONTH - dt.timedelta(days=3)
        ):
            continue  # begun before the stream, or its spree may still be to come
        whole += 1
        assert 4 <= len(history) <= 9 and 5 <= len(spree) <= 10
        assert spree[0].timestamp - history[0].timestamp >= dt.timedelta(days=2)
        assert all(6 <= tx.timestamp.hour < 22 for tx in history)  # an ordinary customer
        median = statistics.median
        assert median(tx.amount for tx in spree) >= 3 * median(tx.amount for tx in history)
    assert whole >= 20


def test_new_phone_brings_a_new_device_and_the_same_habits(
    long_run: tuple[Simulator, list[Labeled]],
) -> None:
    sim, batch = long_run
    fresh = Simulator(seed=11, merchants=400, fraud_rate=0.0, rate=1.0, start=START).accounts
    switched: dict[str, set[str | None]] = defaultdict(set)  # account -> its new phones
    ratios = []
    for item in batch:
        tx = item.transaction
        if item.scenario == "new_phone":
            assert not item.is_fraud and tx.channel == "ecom"
            account = sim.accounts.by_id(tx.account_id)
            switched[tx.account_id].add(tx.device_id)
            assert tx.device_id not in fresh.by_id(tx.account_id).devices
            assert tx.country == account.city.country
            ratios.append(float(tx.amount) / account.typical)
        elif item.scenario is None and tx.account_id in switched and tx.device_id is not None:
            # From the switch on, everyday online shopping uses the new phone, not the old one.
            old = fresh.by_id(tx.account_id).devices[0]
            assert tx.device_id != old
    assert len(switched) >= 50
    # The account keeps the phone it switched to (its latest, if it switched twice; unless
    # the feed left the device out of every purchase we saw from it).
    assert all(
        sim.accounts.by_id(a).devices[0] in phones or None in phones
        for a, phones in switched.items()
    )
    # Ordinary amounts for the account: no spending shift to explain.
    assert 0.5 <= statistics.median(ratios) <= 3.0


def test_nights_are_quieter_than_days(long_run: tuple[Simulator, list[Labeled]]) -> None:
    _, batch = long_run
    by_hour = Counter(item.transaction.timestamp.hour for item in batch if item.scenario is None)
    night = sum(by_hour[h] for h in (1, 2, 3, 4)) / 4
    day = sum(by_hour[h] for h in range(10, 17)) / 7
    assert night < 0.2 * day


def test_accounts_default_to_a_realistic_population_for_the_rate() -> None:
    # About six transactions a day per card, whatever the rate.
    assert 5.5 < MEAN_DAILY_TX < 6.5
    sizes = {rate: len(Simulator(rate=rate, start=START).accounts) for rate in (5.0, 50.0, 200.0)}
    assert sizes == {rate: round(rate * 86_400 / MEAN_DAILY_TX) for rate in sizes}
    assert 700_000 < sizes[50.0] < 760_000 and 2_800_000 < sizes[200.0] < 3_000_000
    assert len(Simulator(accounts=123, rate=50.0, start=START).accounts) == 123


def test_accounts_are_built_only_when_used() -> None:
    sim = Simulator(seed=3, accounts=2_000_000, fraud_rate=0.0, start=START)
    assert len(sim.accounts) == 2_000_000 and sim.accounts.materialised == 0
    batch = sim.generate(10_000)
    used = {item.transaction.account_id for item in batch}
    assert sim.accounts.materialised == len(used) < 10_000
    # Fraud episodes already under way when the stream starts (see the pre-roll) build the
    # accounts of their next transactions only: a few thousand, not the population.
    sim = Simulator(seed=3, accounts=2_000_000, fraud_rate=0.1, start=START)
    assert sim.accounts.materialised < 20_000
    batch = sim.generate(10_000)
    used = {item.transaction.account_id for item in batch}
    assert len(used) <= sim.accounts.materialised < len(used) + 20_000


def test_an_account_does_not_depend_on_when_it_is_first_used() -> None:
    def snapshot(sim: Simulator, index: int) -> tuple[Any, ...]:
        a = sim.accounts[index]
        favorites = tuple(m.id for m in a.favorites)
        return (a.id, a.name, a.city.name, a.segment, a.typical, a.devices, a.ip, favorites)

    fresh = Simulator(seed=5, accounts=500_000, start=START)
    busy = Simulator(seed=5, accounts=500_000, start=START)
    busy.generate(5000)
    for index in (0, 1, 77_777, 499_999):
        assert snapshot(fresh, index) == snapshot(busy, index)
    assert busy.accounts.by_id("acct-0077777") is busy.accounts[77_777]
    other_seed = Simulator(seed=6, accounts=500_000, start=START)
    assert snapshot(other_seed, 77_777) != snapshot(fresh, 77_777)
    with pytest.raises(IndexError):  # past the population and the accounts episodes opened
        fresh.accounts[500_000 + fresh.accounts.opened]


def test_a_small_account_cache_gives_the_same_stream_and_stays_small(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every account used stayed built: ~470 bytes each, up to the population (4.3 million
    # at 300 tx/s), in the demo's process. Building one again gives the same account, but
    # for a new phone, which must stay: the stream is the same with a cache of 200.
    def run(n: int = 20_000) -> tuple[list[tuple[bytes, bool, str | None]], Simulator]:
        sim = Simulator(seed=11, merchants=400, fraud_rate=0.05, rate=1.0, start=START)
        return fingerprint(sim.generate(n)), sim

    expected, _ = run()
    monkeypatch.setattr(accounts_module, "CACHED_ACCOUNTS", 200)
    got, sim = run()
    assert got == expected
    changed = len(sim.accounts._changed)
    assert changed > 10  # new phones were bought and kept: the stream used them
    assert sim.accounts.materialised <= 200 + changed
    monkeypatch.setattr(accounts_module, "CHANGED_ACCOUNTS", 5)
    got, sim = run(10_000)
    assert len(sim.accounts._changed) == 5 and sim.accounts.materialised <= 205


def _first_day(batch: list[Labeled]) -> list[Labeled]:
    return [item for item in batch if item.transaction.timestamp < START + dt.timedelta(days=1)]


def test_cards_are_used_a_few_times_a_day(long_run: tuple[Simulator, list[Labeled]]) -> None:
    _, batch = long_run
    per_account = Counter(
        item.transaction.account_id for item in _first_day(batch) if not item.is_fraud
    )
    counts = sorted(per_account.values())
    percentiles = statistics.quantiles(counts, n=100)
    # Of the cards used that day: most a few times, a busy tail up to a few dozen.
    assert 2 <= statistics.median(counts) <= 5
    assert 15 <= percentiles[98] <= 35
    assert counts[-1] < 60


def test_legit_small_tickets_do_not_look_like_card_testing(
    long_run: tuple[Simulator, list[Labeled]],
) -> None:
    _, batch = long_run
    tiny: dict[str, list[dt.datetime]] = defaultdict(list)
    for item in _first_day(batch):
        if not item.is_fraud and item.transaction.amount < Decimal("5.00"):
            tiny[item.transaction.account_id].append(item.transaction.timestamp)
    assert sum(len(times) for times in tiny.values()) > 1000  # small tickets are common...
    tested = {
        account_id
        for account_id, times in tiny.items()
        for first, third in zip(times, times[2:], strict=False)
        if third - first <= dt.timedelta(minutes=10)
    }
    # ...but three within ten minutes, what the detector's card_testing rule looks for, is not.
    legit_accounts = {item.transaction.account_id for item in batch if not item.is_fraud}
    assert len(tested) <= 0.001 * len(legit_accounts)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate": 0.0},
        {"fraud_rate": 0.9},
        {"fraud_rate": -0.1},
        {"merchants": 1},
        {"accounts": 0},
        {"start": dt.datetime(2026, 1, 1)},
        {"history": dt.timedelta(minutes=5)},  # with a start: a live stream's only
    ],
)
def test_invalid_arguments_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Simulator(**{"start": START, **kwargs})


def test_naive_until_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Simulator(start=START).generate_until(dt.datetime(2026, 1, 1))


def test_tiny_population_still_runs() -> None:
    batch = Simulator(seed=1, accounts=1, merchants=2, fraud_rate=0.3, start=START).generate(3000)
    assert len(batch) == 3000
    assert any(item.is_fraud for item in batch)


RECEIVED = web.AppKey("received", list[dict[str, Any]])
POSTED = web.AppKey("posted", asyncio.Event)


def ingest_app(status: int = 200) -> web.Application:
    async def ingest(request: web.Request) -> web.Response:
        if status != 200:
            return web.json_response({"error": "unauthorized"}, status=status)
        body = await request.read()
        lines = body.splitlines()
        request.app[RECEIVED].append(
            {
                "authorization": request.headers.get("Authorization"),
                "content_type": request.content_type,
                "lines": lines,
                "at": time.monotonic(),
            }
        )
        request.app[POSTED].set()
        results = []
        for line in lines:
            tx = parse_transaction(line)
            decision = "block" if tx.amount > 1000 else "allow"
            results.append({"transaction_id": tx.id, "decision": decision})
        return web.json_response({"results": results})

    app = web.Application()
    app[RECEIVED] = []
    app[POSTED] = asyncio.Event()
    app.router.add_post("/api/v1/transactions", ingest)
    return app


async def test_client_posts_ndjson_at_the_rate(aiohttp_server: Any) -> None:
    app = ingest_app()
    server = await aiohttp_server(app)
    out = io.StringIO()
    stop = asyncio.Event()
    options = ClientOptions(
        target=str(server.make_url("/")),
        api_key="sekrit",
        rate=200.0,
        batch_ms=100.0,
        fraud_rate=0.2,
        report_s=0.05,
    )
    began = time.monotonic()
    task = asyncio.create_task(run_client(options, stop=stop, out=out))
    # Several ticks, not one burst: stopped once the server has had three posts, however
    # long the ticks take on a loaded machine (a fixed duration made it count ticks).
    while len(app[RECEIVED]) < 3:
        app[POSTED].clear()
        await asyncio.wait_for(app[POSTED].wait(), timeout=30)
    stop.set()
    stats = await asyncio.wait_for(task, timeout=30)
    took = time.monotonic() - began

    posts = app[RECEIVED]
    assert len(posts) >= 3
    assert {p["authorization"] for p in posts} == {"Bearer sekrit"}
    assert {p["content_type"] for p in posts} == {"application/x-ndjson"}
    txs = [parse_transaction(line) for p in posts for line in p["lines"]]
    assert len({tx.id for tx in txs}) == len(txs)
    # At the rate: each tick sends what the simulator made up to that moment, at 200 a
    # second on average (its daily rhythm moves it by up to half), so the posts after the
    # first carry about 200 a second of the time between them, and all of them at most
    # what the whole run's time allows, whenever each tick ran.
    later = sum(len(p["lines"]) for p in posts[1:])
    between = posts[-1]["at"] - posts[0]["at"]
    assert later >= 0.25 * 200.0 * between - 5, (later, between)
    assert len(txs) <= 2 * 200.0 * took + 10, (len(txs), took)
    assert stats.sent == stats.stored == stats.generated == len(txs)
    assert stats.resent == stats.refused == stats.dropped == 0
    assert sum(stats.decisions.values()) == len(txs)
    lines = out.getvalue().splitlines()
    assert len(lines) >= 2 and lines[-1].startswith("done ")
    assert f"sent={len(txs)}" in lines[-1]


async def test_client_stops_when_asked(aiohttp_server: Any) -> None:
    app = ingest_app()
    server = await aiohttp_server(app)
    stop = asyncio.Event()
    options = ClientOptions(target=str(server.make_url("/")), api_key="k", batch_ms=50.0)
    task = asyncio.create_task(run_client(options, stop=stop, out=io.StringIO()))
    await asyncio.wait_for(app[POSTED].wait(), timeout=10)
    assert not task.done()
    stop.set()
    stats = await asyncio.wait_for(task, timeout=2)
    assert stats.sent == sum(len(post["lines"]) for post in app[RECEIVED]) > 0


async def test_client_gives_up_on_bad_credentials(aiohttp_server: Any) -> None:
    server = await aiohttp_server(ingest_app(status=401))
    options = ClientOptions(target=str(server.make_url("/")), api_key="wrong", duration=1.0)
    with pytest.raises(TargetRefused, match="api-key"):
        await run_client(options, out=io.StringIO())


async def test_client_holds_what_no_server_answers_then_reports_it_dropped() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: connections fail
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options = ClientOptions(
        target=f"http://127.0.0.1:{port}",
        api_key="k",
        rate=200.0,
        duration=0.3,
        batch_ms=100.0,
        retry_base_s=0.01,
        retry_max_s=0.05,
        drain_s=0.5,
    )
    out = io.StringIO()
    stats = await run_client(options, out=out)
    assert stats.generated > 0 and stats.stored == 0
    # Connection refused is worth a retry: the first batch went out again and again, and
    # nothing later overtook it; at the end what was never answered is said to be dropped.
    assert stats.sent > 0 and stats.resent > 0
    assert stats.dropped == stats.generated and stats.refused == 0
    assert "gave up on" in out.getvalue() and "ClientConnectorError" in out.getvalue()


def test_cli_flags() -> None:
    options = parse_args(
        ["--target", "http://h:1", "--api-key", "K", "--rate", "5", "--seed", "3",
         "--duration", "2", "--batch-ms", "50"]
    )  # fmt: skip
    assert options == ClientOptions(
        target="http://h:1", api_key="K", rate=5.0, seed=3, duration=2.0, batch_ms=50.0
    )
    assert options.accounts is None  # sized from the rate
    assert parse_args(["--target", "http://h:1", "--api-key", "K", "--accounts", "9"]).accounts == 9
    for bad in (["--rate", "0"], ["--accounts", "0"]):
        with pytest.raises(SystemExit):
            parse_args(["--target", "http://h:1", "--api-key", "K", *bad])


def test_dataset_writes_the_stream_with_its_labels(tmp_path: Path) -> None:
    path = tmp_path / "month.csv.gz"
    argv = ["--out", str(path), "--days", "2", "--rate", "0.05", "--seed", "4",
            "--fraud-rate", "0.1", "--start", "2026-03-02T12:00:00+00:00"]  # fmt: skip
    assert dataset.main(argv) == 0
    with gzip.open(path, "rt", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    expected = Simulator(seed=4, rate=0.05, fraud_rate=0.1, start=START).generate_until(
        START + dt.timedelta(days=2)
    )
    assert len(rows) == len(expected) > 8000
    for row, item in zip(rows, expected, strict=True):
        tx = item.transaction
        assert row["id"] == tx.id and dt.datetime.fromisoformat(row["timestamp"]) == tx.timestamp
        assert Decimal(row["amount"]) == tx.amount
        assert row["lat"] == ("" if tx.lat is None else str(tx.lat))  # absent: an empty cell
        assert (row["is_fraud"], row["scenario"]) == (str(int(item.is_fraud)), item.scenario or "")
    with pytest.raises(SystemExit):
        dataset.parse_args(["--out", "x.csv", "--start", "2026-03-02T12:00:00"])


@pytest.mark.parametrize("target", ["127.0.0.1:8000", "localhost", "ftp://127.0.0.1:8000"])
def test_a_target_that_is_no_http_url_is_refused_up_front(
    target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # `--target 127.0.0.1:8000` (no scheme) was posted to again and again, each try failing
    # with NonHttpUrlClientError, until --duration ended and everything counted dropped.
    # `fraudwatch replay --target` refuses it before anything is sent; so does this.
    with pytest.raises(SystemExit) as exited:
        parse_args(["--target", target, "--api-key", "k"])
    assert exited.value.code == 2
    assert (
        f"error: --target must be the server's base URL, http://HOST:PORT or https://HOST, "
        f"got {target!r}"
    ) in capsys.readouterr().err
