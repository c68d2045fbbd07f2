"""Fraud and legitimate-but-suspicious episodes, each planned as a few future transactions."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from simulator.accounts import DAY_S, Account, Accounts
from simulator.geo import CITIES, City, distance_km
from simulator.population import (
    HIGH_VALUE_SCALE,
    PROBE_MCCS,
    Merchant,
    Population,
    device_id,
    ip_in,
)

SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE

IMPOSSIBLE_KM = 3000.0  # no flight covers this within the hour the detector looks at
FLIGHT_KMH = 800.0

# Ranges shared by the planners and the expected episode sizes the Simulator uses to turn
# `fraud_rate` into an episode rate: keep one source so the two cannot drift apart.
CARD_TESTING_PROBES = (5, 15)
TAKEOVER_TXS = (1, 3)
CLONED_CARD_TXS = (1, 3)
BURST_TXS = (8, 20)
NIGHT_TXS = (3, 6)
TRIP_TXS = (3, 8)


def _mean(bounds: tuple[int, int]) -> float:
    return (bounds[0] + bounds[1]) / 2


class Planned(NamedTuple):
    """One transaction an episode will emit at `at_us` (µs since the Unix epoch)."""

    at_us: int
    account: Account
    merchant: Merchant
    cents: int
    where: City  # the shop's city when card-present, the buyer's (IP) city for ecom
    device_id: str | None
    ip: str | None
    is_fraud: bool
    scenario: str | None


@dataclass(slots=True)
class Episode:
    events: list[Planned]
    # A traveller does not shop at home while away; the Simulator skips their normal
    # activity until then so the trip itself is the only trail.
    away: tuple[int, int] | None = None  # (account index, until µs)


def cents(dollars: float) -> int:
    return max(50, round(dollars * 100))


def atm_cents(dollars: float) -> int:
    # Cash machines dispense notes: twenties, at least one.
    return max(1, round(dollars / 20)) * 2000


def ticket(merchant: Merchant, dollars: float) -> int:
    return atm_cents(dollars) if merchant.channel == "atm" else cents(dollars)


@dataclass(slots=True)
class Planner:
    """What every scenario needs: the stream's RNG, the accounts and indexes over merchants."""

    rng: random.Random
    population: Population
    accounts: Accounts
    probe_shops: tuple[Merchant, ...] = field(init=False)
    high_value_ecom: tuple[Merchant, ...] = field(init=False)
    high_value_shops: dict[City, tuple[Merchant, ...]] = field(init=False)
    far_shop_cities: dict[City, tuple[City, ...]] = field(init=False)
    trips: dict[City, tuple[tuple[City, ...], list[float]]] = field(init=False)

    def __post_init__(self) -> None:
        pop = self.population
        self.probe_shops = tuple(m for m in pop.ecom if m.mcc in PROBE_MCCS) or pop.ecom
        self.high_value_ecom = tuple(m for m in pop.ecom if m.scale >= HIGH_VALUE_SCALE) or pop.ecom
        self.high_value_shops = {
            city: hv
            for city, shops in pop.card_present.items()
            if (hv := tuple(m for m in shops if m.scale >= HIGH_VALUE_SCALE))
        }
        self.far_shop_cities = {
            home: tuple(c for c in pop.card_present if distance_km(home, c) >= IMPOSSIBLE_KM)
            for home in pop.card_present
        }
        # Most trips are regional: destinations abroad weighted by the inverse of distance.
        self.trips = {}
        for home in pop.card_present:
            abroad = tuple(c for c in pop.card_present if c.country != home.country)
            weights = [1 / max(distance_km(home, c), 300.0) for c in abroad]
            self.trips[home] = (abroad, list(itertools.accumulate(weights)))

    def pick_account(self) -> Account:
        # Uniform over accounts, not weighted by activity: a quiet card is as easy to steal.
        return self.accounts[self.accounts.pick_uniform(self.rng.random)]

    def foreign_city(self, account: Account) -> City:
        while True:
            city = self.rng.choice(CITIES)
            if city.country != account.city.country:
                return city

    def usual_ticket(self, account: Account, merchant: Merchant) -> int:
        return ticket(merchant, account.typical * merchant.scale * self.rng.lognormvariate(0, 0.8))

    def home_shop(self, account: Account) -> Merchant:
        shops = [m for m in account.favorites if m.channel != "ecom"]
        return self.rng.choice(shops)

    def big_ticket_merchant(self, account: Account) -> Merchant:
        shops = self.high_value_shops.get(account.city)
        if shops and self.rng.random() < 0.5:
            return self.rng.choice(shops)
        return self.rng.choice(self.high_value_ecom)

    def known_channel(self, account: Account, merchant: Merchant) -> tuple[str | None, str | None]:
        if merchant.channel != "ecom":
            return None, None
        return self.rng.choice(account.devices), account.ip


Plan = Callable[[Planner, int], Episode | None]


def card_testing(p: Planner, t0: int) -> Episode:
    a, rng = p.pick_account(), p.rng
    origin = p.foreign_city(a)
    dev, ip = device_id(rng), ip_in(p.population, origin, rng)
    shop = rng.choice(p.probe_shops)
    events, t = [], t0
    for _ in range(rng.randint(*CARD_TESTING_PROBES)):
        events.append(
            Planned(t, a, shop, rng.randint(50, 300), origin, dev, ip, True, "card_testing")
        )
        t += int(rng.uniform(3, 20) * SECOND)
    # The cash-out follows once a probe has proved the card live.
    t += int(rng.uniform(1, 10) * MINUTE)
    big = rng.choice(p.high_value_ecom)
    amount = cents(a.typical * rng.uniform(8, 25))
    events.append(Planned(t, a, big, amount, origin, dev, ip, True, "card_testing"))
    return Episode(events)


def account_takeover(p: Planner, t0: int) -> Episode:
    a, rng = p.pick_account(), p.rng
    origin = p.foreign_city(a)
    dev, ip = device_id(rng), ip_in(p.population, origin, rng)
    events, t = [], t0
    for _ in range(rng.randint(*TAKEOVER_TXS)):
        m = rng.choice(p.high_value_ecom if rng.random() < 0.7 else p.population.ecom)
        amount = cents(a.typical * rng.uniform(5, 20))
        events.append(Planned(t, a, m, amount, origin, dev, ip, True, "account_takeover"))
        t += int(rng.uniform(1, 20) * MINUTE)
    return Episode(events)


def impossible_travel(p: Planner, t0: int) -> Episode | None:
    a, rng = p.pick_account(), p.rng
    far = p.far_shop_cities.get(a.city)
    if not far:
        return None
    # The genuine cardholder pays at home; a cloned card is used far away soon after.
    home = p.home_shop(a)
    events = [Planned(t0, a, home, p.usual_ticket(a, home), a.city, None, None, False, None)]
    dest = rng.choice(far)
    t = t0 + int(rng.uniform(10, 55) * MINUTE)
    for _ in range(rng.randint(*CLONED_CARD_TXS)):
        shop = rng.choice(p.population.card_present[dest])
        amount = ticket(shop, a.typical * rng.uniform(1, 5))
        events.append(Planned(t, a, shop, amount, dest, None, None, True, "impossible_travel"))
        t += int(rng.uniform(2, 15) * MINUTE)
    return Episode(events)


def velocity_burst(p: Planner, t0: int) -> Episode:
    a, rng = p.pick_account(), p.rng
    # A bot with the card details, behind a proxy near the cardholder so geography looks fine.
    dev, ip = device_id(rng), ip_in(p.population, a.city, rng)
    window = rng.uniform(60, 120) * SECOND
    times = sorted(t0 + int(rng.random() * window) for _ in range(rng.randint(*BURST_TXS)))
    events = []
    for t in times:
        m = rng.choice(p.population.ecom)
        amount = cents(a.typical * rng.uniform(0.5, 3))
        events.append(Planned(t, a, m, amount, a.city, dev, ip, True, "velocity_burst"))
    return Episode(events)


def amount_outlier(p: Planner, t0: int) -> Episode:
    a, rng = p.pick_account(), p.rng
    # Known device, home location: only the amount gives it away.
    m = p.big_ticket_merchant(a)
    dev, ip = p.known_channel(a, m)
    amount = cents(a.typical * rng.uniform(10, 40))
    return Episode([Planned(t0, a, m, amount, a.city, dev, ip, True, "amount_outlier")])


def _local_s(t_us: int, city: City) -> int:
    return (t_us // SECOND + city.offset_s) % DAY_S


def night_spree(p: Planner, t0: int) -> Episode:
    rng, pop = p.rng, p.population

    def wait_s(city: City) -> int:
        local = _local_s(t0, city)
        return 0 if 1 * 3600 <= local < 3 * 3600 else (3600 - local) % DAY_S

    # Pick among the accounts whose night starts soonest, so an episode lands within the hour
    # instead of up to a day later (the stream the server shows is short-lived).
    waits = {city: wait_s(city) for city in pop.card_present}
    soonest = min(waits.values())
    index = p.accounts.pick_resident(rng.random, {c for c, w in waits.items() if w == soonest})
    a = p.accounts[index]
    wait = waits[a.city]  # `soonest`, unless the population is too small to live everywhere
    start = t0 if wait == 0 else t0 + wait * SECOND + int(rng.uniform(0, 90) * MINUTE)
    end = start + (4 * 3600 - _local_s(start, a.city)) * SECOND
    times = sorted(
        start + int(rng.random() * (end - start)) for _ in range(rng.randint(*NIGHT_TXS))
    )
    shops = pop.card_present[a.city]
    events = []
    for t in times:
        m = rng.choice(shops)
        amount = ticket(m, a.typical * rng.uniform(3, 10))
        events.append(Planned(t, a, m, amount, a.city, None, None, True, "night_spree"))
    return Episode(events)


def legit_travel(p: Planner, t0: int) -> Episode | None:
    a, rng = p.pick_account(), p.rng
    abroad, cum_weights = p.trips[a.city]
    if not abroad:
        return None
    dest = rng.choices(abroad, cum_weights=cum_weights)[0]
    # The card goes quiet from t0 and reappears abroad after a plausible flight: the shape a
    # detector must not confuse with a cloned card.
    flight_h = distance_km(a.city, dest) / FLIGHT_KMH
    t = t0 + int((flight_h + rng.uniform(0.5, 1.5)) * HOUR)
    shops = p.population.card_present[dest]
    events = []
    for _ in range(rng.randint(*TRIP_TXS)):
        if rng.random() < 0.85:
            m = rng.choice(shops)
            dev, ip = None, None
        else:
            m = rng.choice(p.population.ecom)
            dev, ip = rng.choice(a.devices), ip_in(p.population, dest, rng)
        events.append(Planned(t, a, m, p.usual_ticket(a, m), dest, dev, ip, False, "legit_travel"))
        t += int(rng.uniform(5, 30) * MINUTE)
    # Shopping at home resumes only after the flight back: sooner, and the first purchase at
    # home would itself be impossible travel.
    return Episode(events, away=(a.index, t + int((flight_h + rng.uniform(0.5, 1.5)) * HOUR)))


def legit_big_purchase(p: Planner, t0: int) -> Episode:
    a, rng = p.pick_account(), p.rng
    m = p.big_ticket_merchant(a)
    dev, ip = p.known_channel(a, m)
    amount = cents(a.typical * rng.uniform(10, 30))
    return Episode([Planned(t0, a, m, amount, a.city, dev, ip, False, "legit_big_purchase")])


class Scenario(NamedTuple):
    name: str
    plan: Plan
    weight: float  # relative frequency among episodes of the same kind
    fraud_txs: float  # expected fraudulent transactions per episode
    other_txs: float = 0.0  # expected genuine ones: the home purchase, the trip


FRAUD: tuple[Scenario, ...] = (
    Scenario("card_testing", card_testing, 1.0, _mean(CARD_TESTING_PROBES) + 1),
    Scenario("account_takeover", account_takeover, 1.5, _mean(TAKEOVER_TXS)),
    Scenario("impossible_travel", impossible_travel, 1.0, _mean(CLONED_CARD_TXS), 1.0),
    Scenario("velocity_burst", velocity_burst, 0.8, _mean(BURST_TXS)),
    Scenario("amount_outlier", amount_outlier, 1.2, 1.0),
    Scenario("night_spree", night_spree, 1.0, _mean(NIGHT_TXS)),
)
LEGIT: tuple[Scenario, ...] = (
    Scenario("legit_travel", legit_travel, 1.0, 0.0, _mean(TRIP_TXS)),
    Scenario("legit_big_purchase", legit_big_purchase, 1.5, 0.0, 1.0),
)
# Decoys start at a third of the fraud episodes' rate: enough to fool a naive detector now
# and then, few enough that most alerts are real.
LEGIT_TO_FRAUD_EPISODES = 1 / 3
