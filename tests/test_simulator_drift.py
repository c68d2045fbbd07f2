"""The simulator's drift: fraud tactics that change at seeded change points, in waves."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import itertools
import json
import statistics
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from simulator import Labeled, Simulator, dataset, ndjson
from simulator.drift import DAY, FIRST_CHANGE_DAY, LAST_CHANGE_DAY
from simulator.population import PROBE_MCCS
from simulator.scenarios import FRAUD, LEGIT

START = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
END = START + dt.timedelta(days=30)


def fingerprint(batch: list[Labeled]) -> list[tuple[bytes, bool, str | None]]:
    return [
        (line, item.is_fraud, item.scenario)
        for line, item in zip(ndjson(batch).splitlines(), batch, strict=True)
    ]


def month(seed: int = 21) -> Simulator:
    # A slow stream with much fraud: a month holds many episodes of every scenario on both
    # sides of every change point, in ~50,000 transactions.
    return Simulator(seed=seed, accounts=20_000, fraud_rate=0.2, rate=0.02, start=START, drift=True)


@pytest.fixture(scope="module")
def drift_month() -> tuple[Simulator, list[Labeled]]:
    sim = month()
    return sim, sim.generate_until(END)


def change(sim: Simulator, scenario: str, n: int = 0) -> dt.datetime:
    assert sim.drift is not None
    return sim.drift.change_moments()[scenario][n]


def frauds(
    batch: list[Labeled], scenario: str, since: dt.datetime, until: dt.datetime
) -> list[Labeled]:
    return [
        item
        for item in batch
        if item.is_fraud
        and item.scenario == scenario
        and since <= item.transaction.timestamp < until
    ]


def before_after(
    drift_month: tuple[Simulator, list[Labeled]],
    scenario: str,
    settle: dt.timedelta,
    until: dt.datetime = END,
) -> tuple[list[Labeled], list[Labeled]]:
    """`scenario`'s frauds before its first change point, and from `settle` after it (an
    episode begun before the change may run on past it) until `until`."""
    sim, batch = drift_month
    first = change(sim, scenario)
    return frauds(batch, scenario, START, first), frauds(batch, scenario, first + settle, until)


def episodes(items: list[Labeled]) -> list[list[Labeled]]:
    """A scenario's transactions on one account, cut where six hours pass without one: an
    account picked twice in a month gives two episodes."""
    out: list[list[Labeled]] = []
    last: dict[str, list[Labeled]] = {}
    for item in items:
        tx = item.transaction
        episode = last.get(tx.account_id)
        if episode is None or tx.timestamp - episode[-1].transaction.timestamp > 6 * HOUR:
            episode = last[tx.account_id] = []
            out.append(episode)
        episode.append(item)
    return out


def test_the_schedule_is_seeded_and_spread_over_the_month() -> None:
    a, b, c = month(21).drift, month(21).drift, month(22).drift
    assert a is not None and b is not None and c is not None
    assert a.change_points == b.change_points != c.change_points
    assert a.waves == b.waves != c.waves
    # Every fraud scenario changes once or twice within the month, after its first days and
    # before its last; a decoy never changes, it only comes in waves.
    assert set(a.change_points) == {s.name for s in FRAUD}
    for scenario in FRAUD:
        points = a.change_points[scenario.name]
        assert 1 <= len(points) <= len(scenario.variants)
        days = [(t - a.start_us) / DAY for t in points]
        assert days == sorted(days)
        assert all(FIRST_CHANGE_DAY <= d <= LAST_CHANGE_DAY for d in days), days
    assert set(a.waves) == {s.name for s in FRAUD + LEGIT}
    multipliers = [a.multiplier("card_testing", a.start_us + h * 3600 * 10**6) for h in range(720)]
    assert 0.35 < min(multipliers) < max(multipliers) < 2.8


def test_same_seed_same_drifting_stream_however_it_is_chunked() -> None:
    until = START + dt.timedelta(days=8)
    whole = month().generate_until(until)
    sim = month()
    assert sim.drift is not None
    # The first eight days hold change points, so the tactics change within the comparison.
    assert any(
        t < sim.drift.start_us + 8 * DAY for p in sim.drift.change_points.values() for t in p
    )
    parts = sim.generate(1234) + sim.generate(0)
    moment = START
    while moment < until:
        moment = min(moment + dt.timedelta(hours=7, minutes=13), until)
        parts += sim.generate_until(moment)
    assert fingerprint(parts) == fingerprint(whole)
    other_seed = Simulator(
        seed=22, accounts=20_000, fraud_rate=0.2, rate=0.02, start=START, drift=True
    ).generate_until(until)
    still = Simulator(seed=21, accounts=20_000, fraud_rate=0.2, rate=0.02, start=START)
    assert fingerprint(whole) != fingerprint(other_seed)
    assert fingerprint(whole) != fingerprint(still.generate_until(until))


def test_the_fraud_share_holds_through_the_waves(
    drift_month: tuple[Simulator, list[Labeled]],
) -> None:
    _, batch = drift_month
    share = sum(item.is_fraud for item in batch) / len(batch)
    assert 0.18 < share < 0.22, share
    # The waves move each scenario's share from week to week.
    weekly: dict[int, Counter[str]] = defaultdict(Counter)
    for item in batch:
        if item.is_fraud and item.scenario:
            weekly[(item.transaction.timestamp - START).days // 7][item.scenario] += 1
    shares = [weekly[w]["card_testing"] / sum(weekly[w].values()) for w in range(4)]
    assert max(shares) > 1.5 * min(shares), shares


def test_card_testing_moves_off_the_probe_shops(
    drift_month: tuple[Simulator, list[Labeled]],
) -> None:
    sim, batch = drift_month
    first, second = change(sim, "card_testing", 0), change(sim, "card_testing", 1)
    before = frauds(batch, "card_testing", START, first)
    after = frauds(batch, "card_testing", first + 2 * HOUR, second)
    later = frauds(batch, "card_testing", second + 2 * HOUR, END)
    assert len(before) > 100 and len(after) > 100 and len(later) > 100
    # Probes at digital goods and donations, then at everyday web shops, larger and slower.
    assert sum(i.transaction.mcc in PROBE_MCCS for i in before) > 0.8 * len(before)
    assert not any(i.transaction.mcc in PROBE_MCCS for i in after + later)

    def probe_gaps(items: list[Labeled]) -> list[float]:
        gaps = []
        for episode in episodes(items):
            probes = [i.transaction.timestamp for i in episode][:-1]  # the last: cash-out
            gaps += [(b - a).total_seconds() for a, b in itertools.pairwise(probes)]
        return gaps

    assert max(probe_gaps(before)) <= 20 < min(probe_gaps(after))
    assert statistics.median(probe_gaps(later)) > 60
    # Stage 2 spreads an episode's probes over several shops.
    spread = [len({i.transaction.merchant_id for i in e}) for e in episodes(later) if len(e) > 5]
    assert spread and min(spread) > 2, spread


def test_takeovers_come_through_a_domestic_proxy(
    drift_month: tuple[Simulator, list[Labeled]],
) -> None:
    sim, batch = drift_month
    before, after = before_after(drift_month, "account_takeover", 2 * HOUR)
    assert len(before) > 50 and len(after) > 50

    def abroad(item: Labeled) -> bool:
        return (
            item.transaction.country != sim.accounts.by_id(item.transaction.account_id).city.country
        )

    assert all(abroad(i) for i in before) and not any(abroad(i) for i in after)
    # Still a device the account never used: nobody else shops on it.
    everyday = {i.transaction.device_id for i in batch if i.scenario is None}
    assert not any(i.transaction.device_id in everyday for i in after if i.transaction.device_id)


def test_velocity_bursts_spread_over_more_minutes(
    drift_month: tuple[Simulator, list[Labeled]],
) -> None:
    second = change(drift_month[0], "velocity_burst", 1)
    before, after = map(episodes, before_after(drift_month, "velocity_burst", 4 * HOUR, second))
    assert len(before) >= 5 and len(after) > 20

    def span_s(episode: list[Labeled]) -> float:
        return (
            episode[-1].transaction.timestamp - episode[0].transaction.timestamp
        ).total_seconds()

    assert max(span_s(e) for e in before) <= 120
    assert statistics.median(span_s(e) for e in after) > 5 * 60


def test_night_sprees_move_to_the_evening(
    drift_month: tuple[Simulator, list[Labeled]],
) -> None:
    # An episode waits up to a day for its city's night (or evening) to come.
    before, after = before_after(drift_month, "night_spree", dt.timedelta(days=1))
    assert len(before) > 50 and len(after) > 50
    assert {i.transaction.timestamp.hour for i in before} <= {1, 2, 3}
    assert {i.transaction.timestamp.hour for i in after} <= {20, 21, 22}


def test_collusive_rings_change_their_price_points(
    drift_month: tuple[Simulator, list[Labeled]],
) -> None:
    before, after = before_after(drift_month, "collusive_merchant", 8 * HOUR)
    assert len(before) > 50 and len(after) > 50

    def shop_price(item: Labeled) -> bool:
        return item.transaction.channel != "atm" and item.transaction.amount % 1 != 0

    assert not any(shop_price(i) for i in before)
    assert sum(shop_price(i) for i in after) > 0.5 * len(after)


def test_amount_outliers_are_split(drift_month: tuple[Simulator, list[Labeled]]) -> None:
    before, after = map(episodes, before_after(drift_month, "amount_outlier", 4 * HOUR))
    assert len(before) > 20 and len(after) > 20
    assert {len(e) for e in before} == {1}
    assert {len(e) for e in after} <= {2, 3} and statistics.mean(len(e) for e in after) > 2


def test_drift_off_is_the_stream_it_always_was() -> None:
    # The digest of this stream as main made it before drift existed (640e547, simulator
    # untouched since): drift off must leave every byte, label and the RNG's path alone.
    # Merchant names are left out, so that a Faker release cannot move it.
    sim = Simulator(seed=5, accounts=5000, fraud_rate=0.1, rate=0.1, start=START, drift=False)
    assert sim.drift is None
    batch = sim.generate_until(START + dt.timedelta(days=2))
    digest = hashlib.sha256()
    for line, item in zip(ndjson(batch).splitlines(), batch, strict=True):
        record = json.loads(line)
        del record["merchant_name"]
        digest.update(
            f"{json.dumps(record, sort_keys=True)}|{item.is_fraud}|{item.scenario}\n".encode()
        )
    assert (len(batch), digest.hexdigest()) == (
        16_468,
        "a3fdc7e4c5e529a86ce9c116d9be32c12f4921a60739b3724234f742d0618b8a",
    )


def test_dataset_drift_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "drift.csv"
    argv = ["--out", str(path), "--days", "6", "--rate", "0.01", "--seed", "21",
            "--fraud-rate", "0.2", "--accounts", "20000", "--start", START.isoformat(),
            "--drift"]  # fmt: skip
    assert dataset.main(argv) == 0
    with path.open(newline="", encoding="utf-8") as f:
        ids = [row["id"] for row in csv.DictReader(f)]
    expected = Simulator(
        seed=21, accounts=20_000, fraud_rate=0.2, rate=0.01, start=START, drift=True
    ).generate_until(START + dt.timedelta(days=6))
    assert ids == [item.transaction.id for item in expected]
    out = capsys.readouterr().out
    # The schedule is printed, so a reader of the file knows when each tactic changed.
    assert "drift: card_testing changes at " in out
    assert dataset.parse_args(["--out", "x.csv"]).drift is False
