"""The Simulator: a seeded, event-time stream of labelled transactions."""

from __future__ import annotations

import datetime as dt
import heapq
import math
import random
import sys
from collections.abc import Iterator
from decimal import Decimal
from typing import NamedTuple

from faker import Faker

from server.transactions import Transaction, encode_transaction
from simulator.accounts import (
    WEEKLY_ACTIVITY,
    WEEKLY_PEAK,
    Accounts,
    default_accounts,
    name_pool,
)
from simulator.drift import Drift
from simulator.population import Population, build_population
from simulator.scenarios import (
    FRAUD,
    LEGIT,
    LEGIT_TO_FRAUD_EPISODES,
    SECOND,
    Episode,
    Planned,
    Planner,
    Scenario,
    ticket,
)

CURRENCY = "USD"
MAX_FRAUD_RATE = 0.5
_CENT = Decimal("0.01")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# The most past episodes a Simulator plans when it starts (see `_preroll`): about a second.
PREROLL_EPISODES = 15_000
_NEVER = sys.maxsize
_AMOUNT_SIGMA = 0.8
# A favourite shop most of the time, otherwise anywhere within reach.
_FAVORITE_SHARE = 0.8
# Real feeds leave optional fields out now and then, and a detector must cope. Card-present
# transactions always carry the terminal's place; an online one may lack a geolocated IP
# (then no lat/lon, though the country stays) or a device fingerprint. The same odds apply
# to every online transaction, fraud or not, so an absence says nothing about the label.
NO_LOCATION = 0.10
NO_DEVICE = 0.05


class Labeled(NamedTuple):
    """A simulated transaction with its ground truth: fraud or not, and which episode."""

    transaction: Transaction
    is_fraud: bool
    scenario: str | None


def ndjson(batch: list[Labeled]) -> bytes:
    """The request body the ingest API takes: one encoded transaction per line."""
    return b"".join([encode_transaction(item.transaction) + b"\n" for item in batch])


def _to_us(moment: dt.datetime, name: str) -> int:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"'{name}' must be a timezone-aware datetime, got {moment!r}")
    return (moment - _EPOCH) // dt.timedelta(microseconds=1)


def _mean_size(scenarios: tuple[Scenario, ...], *, fraud_only: bool) -> float:
    """Expected transactions (or fraudulent ones) per episode of this kind."""
    total = sum(s.weight for s in scenarios)
    size = sum(s.weight * (s.fraud_txs + (0 if fraud_only else s.other_txs)) for s in scenarios)
    return size / total


class Simulator:
    """Normal shoppers plus fraud and decoy episodes, merged in event-time order.

    Arrivals are a Poisson process of `rate` per event-time second in total, averaged over
    a week (everyday shopping follows the local weekday, WEEKLY_ACTIVITY): normal
    transactions fill whatever share the episodes leave. `fraud_rate` is the expected share
    of transactions that are fraudulent; episodes pick their victims uniformly over accounts.
    `accounts=None` sizes the population so that a card is used about six times a day, as
    real cards are: ~740,000 accounts at 50 tx/s. Accounts are built on first use, so the
    size costs nothing until they shop.

    Without `start` the stream is live: event time is wall time, from now, or from `history`
    ago when that is given (then `generate_until(now)` first gives that much of the past,
    and the stream goes on in wall time from there: the demo's warm-up).

    `drift=True` makes the fraud non-stationary (simulator/drift.py): each fraud scenario's
    tactic changes at seeded change points, and each scenario's share of the episodes comes
    in waves, with the fraud share still `fraud_rate`. Off, the stream is the one it always
    was.
    """

    def __init__(
        self,
        seed: int = 7,
        accounts: int | None = None,
        merchants: int = 300,
        fraud_rate: float = 0.02,
        rate: float = 50.0,
        start: dt.datetime | None = None,
        history: dt.timedelta | None = None,
        drift: bool = False,
    ) -> None:
        if history is not None and (start is not None or history < dt.timedelta(0)):
            raise ValueError(
                f"history must be a duration >= 0, and only for a live stream (no start), got "
                f"{history!r}" + (" with a start" if start is not None else "")
            )
        if not rate > 0 or not math.isfinite(rate):
            raise ValueError(f"rate must be a positive number of transactions/s, got {rate}")
        if not 0 <= fraud_rate <= MAX_FRAUD_RATE:
            raise ValueError(f"fraud_rate must be within [0, {MAX_FRAUD_RATE}], got {fraud_rate}")
        if accounts is not None and accounts < 1:
            raise ValueError(f"accounts must be at least 1, got {accounts}")
        start_us = None if start is None else _to_us(start, "start")
        self.seed = seed
        self.rate = rate
        self.fraud_rate = fraud_rate
        self._rng = random.Random(seed)
        fake = Faker("en_US")
        fake.seed_instance(seed)
        self.population: Population = build_population(self._rng, fake, merchants)
        self.accounts = Accounts(
            self.population,
            default_accounts(rate) if accounts is None else accounts,
            salt=self._rng.getrandbits(64),
            names=name_pool(fake),
        )
        self._planner = Planner(self._rng, self.population, self.accounts)

        # Episode starts are Poisson processes sized so that fraudulent transactions make up
        # `fraud_rate` of the stream and the total stays at `rate`.
        fraud_episodes = rate * fraud_rate / _mean_size(FRAUD, fraud_only=True)
        legit_episodes = fraud_episodes * LEGIT_TO_FRAUD_EPISODES
        episode_txs = fraud_episodes * _mean_size(FRAUD, fraud_only=False)
        episode_txs += legit_episodes * _mean_size(LEGIT, fraud_only=False)
        self._normal_rate = rate - episode_txs
        # Everyday arrivals are drawn at the busiest weekday's rate and thinned by the
        # shopper's local weekday, so the week has a shape and averages to the rate.
        self._arrival_rate = self._normal_rate * WEEKLY_PEAK
        self._fraud_episode_rate = fraud_episodes
        self._legit_episode_rate = legit_episodes

        # "Now" is read after the population is built so a live stream starts without a backlog.
        live = start_us is None
        now_us = _to_us(dt.datetime.now(dt.UTC), "start") if start_us is None else start_us
        # A live stream that began `history` ago: its past comes out first.
        begin_us = now_us - history // dt.timedelta(microseconds=1) if history else now_us
        self.drift: Drift | None = None
        if drift:
            self.drift = self._planner.drift = Drift(
                seed, begin_us, [(s.name, len(s.variants)) for s in FRAUD + LEGIT]
            )
            # Fraud episodes begin at the rate that keeps the fraud share at `fraud_rate` for
            # the mix and tactics of the moment (`_fraud_episode_rate_at`): candidates are
            # drawn at a rate no mix can exceed and thinned (`_run`).
            smallest = min(min(s.fraud_txs, *s.variants) for s in FRAUD if s.weight > 0)
            self._fraud_episode_rate = rate * fraud_rate / smallest
        self._pending: list[tuple[int, int, Planned | int, Iterator[Planned | int]]] = []
        self._planned = 0  # heap tie-breaker: equal times come out in planning order
        self._away: dict[int, int] = {}
        # Trips last hours: uncapped, everyone in a small population would soon be abroad.
        self._max_away = max(1, len(self.accounts) // 100)
        self._count = 0
        # Ids are unique across restarts of a live stream: the store keeps the first
        # transaction under an id and refuses another, so a restarted demo numbering from 1
        # again had every transaction refused until it passed the previous run's count. A
        # live stream's ids carry its start (milliseconds, base 36); a stream with `start`
        # given is a function of its arguments, ids included.
        run = f"{_base36(now_us // 1000)}-" if live else ""
        self.id_prefix = f"tx-{seed}-{run}"
        self._preroll(begin_us)
        if live and not history:
            # Again after the pre-roll (up to a second): its few transactions due in between
            # come out first, rather than a second of everyday traffic all at once.
            begin_us = _to_us(dt.datetime.now(dt.UTC), "start")
        # Where the stream begins: `start`, or a live one's start (`history` ago).
        self.start = _EPOCH + dt.timedelta(microseconds=begin_us)
        self._next_normal = begin_us + self._gap(self._arrival_rate)
        self._next_fraud = begin_us + self._gap(fraud_episodes)
        self._next_legit = begin_us + self._gap(legit_episodes)

    def generate(self, n: int) -> list[Labeled]:
        """The next `n` transactions in event-time order."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        return self._run(n, _NEVER)

    def generate_until(self, t: dt.datetime) -> list[Labeled]:
        """Every transaction not yet produced whose timestamp is <= `t`, in order."""
        return self._run(_NEVER, _to_us(t, "t"))

    def _gap(self, rate: float) -> int:
        if rate <= 0:
            return _NEVER // 2
        return int(self._rng.expovariate(rate) * SECOND)

    def _weights(self, kind: tuple[Scenario, ...], at_us: int) -> list[float]:
        """Each scenario's relative frequency among episodes begun at `at_us`."""
        if self.drift is None:
            return [s.weight for s in kind]
        return [s.weight * self.drift.multiplier(s.name, at_us) for s in kind]

    def _fraud_episode_rate_at(self, at_us: int) -> float:
        """With drift: the fraud episodes a second that keep the fraud share at `fraud_rate`
        for the scenarios' shares and tactics at `at_us`."""
        assert self.drift is not None
        weights = self._weights(FRAUD, at_us)
        frauds = 0.0
        for scenario, weight in zip(FRAUD, weights, strict=True):
            stage = self.drift.stage(scenario.name, at_us)
            size = scenario.variants[stage - 1] if stage else scenario.fraud_txs
            frauds += weight * size
        if frauds <= 0:
            return 0.0
        return self.rate * self.fraud_rate * sum(weights) / frauds

    def _start_episode(self, kind: tuple[Scenario, ...], at_us: int) -> None:
        rng = self._rng
        weights = self._weights(kind, at_us)
        # Pruned in place: the hot loop holds a reference to this dict.
        for index in [i for i, until in self._away.items() if until < at_us]:
            del self._away[index]
        # A scenario may not fit a tiny population (no far city with shops), or too many
        # cardholders may be abroad already: then try another.
        for _ in range(2 * len(kind)):
            scenario = rng.choices(kind, weights=weights)[0]
            episode: Episode | None = scenario.plan(self._planner, at_us)
            if episode is not None and (episode.away is None or len(self._away) < self._max_away):
                break
        else:
            return
        self._schedule(episode, at_us)

    def _schedule(self, episode: Episode, not_before: int) -> None:
        # Only an episode's next transaction waits in the heap, with the rest of the episode
        # beside it: popping one brings in the next.
        events = iter(episode.events)
        for event in events:
            at = event if isinstance(event, int) else event.at_us
            if at >= not_before:
                self._planned += 1
                heapq.heappush(self._pending, (at, self._planned, event, events))
                break
        if episode.away is not None:
            index, until = episode.away
            if until >= not_before:
                self._away[index] = max(until, self._away.get(index, 0))

    def _preroll(self, start_us: int) -> None:
        """Plan the fraud episodes that would have begun before `start_us` and still run.

        Without them a stream would show no bust-out spree for days (its episodes take that
        long to reach the fraud), and the fraud share would fall short of `fraud_rate` until
        then. Only their transactions from `start_us` on are kept: the stream starts in the
        middle of their story, as a real feed does. Decoys are not pre-rolled: they hold no
        fraud, and the longest is over in a day and a half.

        The work is one episode per episode in flight, which grows with rate * fraud_rate;
        past PREROLL_EPISODES only the latest part of each lead is planned (the same part for
        every scenario), so a very busy stream reaches its full mix a few days in instead of
        spending minutes here.
        """
        if self.drift is None:
            total = sum(s.weight for s in FRAUD)
            rates = [self._fraud_episode_rate * s.weight / total for s in FRAUD]
        else:
            # The mix of the stream's first instant, for the whole lead (a few days at most).
            weights = self._weights(FRAUD, start_us)
            at_start = self._fraud_episode_rate_at(start_us)
            rates = [at_start * w / sum(weights) for w in weights]
        expected = sum(r * s.lead_us / SECOND for r, s in zip(rates, FRAUD, strict=True))
        scale = min(1.0, PREROLL_EPISODES / expected) if expected > 0 else 0.0
        self._planner.horizon_us = start_us
        for scenario, rate in zip(FRAUD, rates, strict=True):
            lead = int(scenario.lead_us * scale)
            if lead <= 0 or rate <= 0:
                continue
            at = start_us - lead + self._gap(rate)
            while at < start_us:
                episode = scenario.plan(self._planner, at)
                if episode is not None and episode.away is None:
                    self._schedule(episode, start_us)
                at += self._gap(rate)
        self._planner.horizon_us = 0

    def _emit(self, event: Planned) -> Labeled:
        self._count += 1
        account, merchant, where = event.account, event.merchant, event.where
        lat: float | None = where.lat
        lon: float | None = where.lon
        device = event.device_id
        if merchant.channel == "ecom":
            if self._rng.random() < NO_LOCATION:
                lat = lon = None
            if self._rng.random() < NO_DEVICE:
                device = None
        tx = Transaction(
            id=f"{self.id_prefix}{self._count}",
            timestamp=account.city.epoch + dt.timedelta(microseconds=event.at_us),
            account_id=account.id,
            merchant_id=merchant.id,
            amount=Decimal(event.cents) * _CENT,
            currency=CURRENCY,
            merchant_name=merchant.name,
            mcc=merchant.mcc,
            country=where.country,
            lat=lat,
            lon=lon,
            channel=merchant.channel,
            device_id=device,
            ip=event.ip,
        )
        return Labeled(tx, event.is_fraud, event.scenario)

    def _run(self, n: int, limit_us: int) -> list[Labeled]:
        # The hot loop: locals instead of attribute lookups, and Faker never called here.
        out: list[Labeled] = []
        append = out.append
        rng_random = self._rng.random
        gauss = self._rng.gauss
        exp = math.exp
        pending = self._pending
        accounts = self.accounts
        shopper = accounts.shopper
        weekday = accounts.weekday
        away = self._away
        id_prefix = self.id_prefix
        timedelta = dt.timedelta
        while len(out) < n:
            t = self._next_normal
            due = pending[0][0] if pending else _NEVER
            starts = min(self._next_fraud, self._next_legit)
            if due <= t and due <= starts:
                if due > limit_us:
                    break
                _, _, event, rest = heapq.heappop(pending)
                if not isinstance(event, int):  # an int is a wake-up: nothing to emit
                    append(self._emit(event))
                following = next(rest, None)
                if following is not None:
                    at = following if isinstance(following, int) else following.at_us
                    self._planned += 1
                    heapq.heappush(pending, (at, self._planned, following, rest))
                continue
            if starts <= t:
                if starts > limit_us:
                    break
                if self._next_fraud <= self._next_legit:
                    # With drift, a candidate start is kept with the share the rate of the
                    # moment is of the rate candidates come at (thinning).
                    if self.drift is None or (
                        rng_random() * self._fraud_episode_rate
                        < self._fraud_episode_rate_at(starts)
                    ):
                        self._start_episode(FRAUD, starts)
                    self._next_fraud = starts + self._gap(self._fraud_episode_rate)
                else:
                    self._start_episode(LEGIT, starts)
                    self._next_legit = starts + self._gap(self._legit_episode_rate)
                continue
            if t > limit_us:
                break

            t_s = t // SECOND
            travelling = 0
            while True:
                index = shopper(rng_random, t_s)
                if not away or away.get(index, 0) < t:
                    break
                # With a handful of accounts all of them may be away at once; better a stray
                # purchase at home than a loop that never ends.
                travelling += 1
                if travelling > 1000:
                    break
            if rng_random() * WEEKLY_PEAK >= WEEKLY_ACTIVITY[weekday(index, t_s)]:
                self._next_normal = t + self._gap(self._arrival_rate)
                continue
            account = accounts[index]
            shops = account.favorites if rng_random() < _FAVORITE_SHARE else account.nearby
            merchant = shops[int(rng_random() * len(shops))]
            dollars = account.typical * merchant.scale * exp(_AMOUNT_SIGMA * gauss(0.0, 1.0))
            city = account.city
            lat: float | None = city.lat
            lon: float | None = city.lon
            if merchant.channel == "ecom":
                devices = account.devices
                device: str | None = devices[int(rng_random() * len(devices))]
                ip: str | None = account.ip
                amount = max(50, round(dollars * 100))
                if rng_random() < NO_LOCATION:
                    lat = lon = None
                if rng_random() < NO_DEVICE:
                    device = None
            else:
                device = ip = None
                amount = ticket(merchant, dollars)
            self._count += 1
            append(
                Labeled(
                    Transaction(
                        id=f"{id_prefix}{self._count}",
                        timestamp=city.epoch + timedelta(microseconds=t),
                        account_id=account.id,
                        merchant_id=merchant.id,
                        amount=Decimal(amount) * _CENT,
                        currency=CURRENCY,
                        merchant_name=merchant.name,
                        mcc=merchant.mcc,
                        country=city.country,
                        lat=lat,
                        lon=lon,
                        channel=merchant.channel,
                        device_id=device,
                        ip=ip,
                    ),
                    False,
                    None,
                )
            )
            self._next_normal = t + self._gap(self._arrival_rate)
        return out


_DIGITS36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(n: int) -> str:
    out = ""
    while True:
        n, digit = divmod(n, 36)
        out = _DIGITS36[digit] + out
        if not n:
            return out
