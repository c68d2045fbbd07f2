"""Fraud and legitimate-but-suspicious episodes, each planned as a few future transactions."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from simulator.accounts import DAY_S, HOURLY_ACTIVITY, Account, Accounts
from simulator.drift import Drift
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
DAY = 24 * HOUR

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
COMPROMISE_VICTIMS = (5, 12)
COMPROMISED_USES = (1, 2)
COLLUSIVE_ACCOUNTS = (8, 16)
COLLUSIVE_TXS = (1, 2)
BUST_OUT_HISTORY = (4, 9)
BUST_OUT_SPREE = (5, 10)
NEW_PHONE_TXS = (2, 5)
# Drift only (docs/simulator.md, "Drift"): an amount outlier split into a few purchases.
SPLIT_OUTLIER_TXS = (2, 3)


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
    # In time order. A list when the episode is short; a generator for one that spans days,
    # so that it is built as it goes instead of holding days of transactions in memory. A
    # generator may yield a bare time first ("wake me then"): an episode planned as if begun
    # in the past then builds nothing, not even its account, until its first transaction.
    events: Iterable[Planned | int]
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
    # Everyday web shops: neither the probe shops nor the high-value ones.
    plain_ecom: tuple[Merchant, ...] = field(init=False)
    high_value_ecom: tuple[Merchant, ...] = field(init=False)
    high_value_shops: dict[City, tuple[Merchant, ...]] = field(init=False)
    far_shop_cities: dict[City, tuple[City, ...]] = field(init=False)
    trips: dict[City, tuple[tuple[City, ...], list[float]]] = field(init=False)
    home_cities: tuple[City, ...] = field(init=False)
    home_weights: tuple[float, ...] = field(init=False)
    atms: dict[City, tuple[Merchant, ...]] = field(init=False)
    shell_merchants: int = 0  # merchants set up by collusive rings so far
    # Transactions before this instant are not wanted: the stream starts there. Long
    # episodes planned as if begun in the past skip building them (and their accounts).
    horizon_us: int = 0
    # When each scenario's tactic changes (None: never, the default).
    drift: Drift | None = None

    def __post_init__(self) -> None:
        pop = self.population
        self.probe_shops = tuple(m for m in pop.ecom if m.mcc in PROBE_MCCS) or pop.ecom
        self.high_value_ecom = tuple(m for m in pop.ecom if m.scale >= HIGH_VALUE_SCALE) or pop.ecom
        self.plain_ecom = (
            tuple(m for m in pop.ecom if m.mcc not in PROBE_MCCS and m.scale < HIGH_VALUE_SCALE)
            or pop.ecom
        )
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
        self.home_cities = tuple(pop.card_present)
        self.home_weights = tuple(c.weight for c in self.home_cities)
        self.atms = {
            city: tuple(m for m in shops if m.channel == "atm")
            for city, shops in pop.card_present.items()
        }

    def stage(self, scenario: str, at_us: int) -> int:
        """The tactic an episode of `scenario` begun at `at_us` uses: 0 the original, 1 or 2
        a later variant (with drift only)."""
        return 0 if self.drift is None else self.drift.stage(scenario, at_us)

    def domestic_city(self, account: Account) -> City:
        """Another city of the cardholder's country with shops (theirs, if none)."""
        others = [c for c in self.home_cities if c.country == account.city.country]
        others = [c for c in others if c is not account.city] or [account.city]
        return self.rng.choice(others)

    def pick_account(self) -> Account:
        # Uniform over accounts, not weighted by activity: a quiet card is as easy to steal.
        return self.accounts[self.accounts.pick_uniform(self.rng.random)]

    def pick_city(self) -> City:
        """A city with shops, weighted like the cardholders' homes."""
        return self.rng.choices(self.home_cities, weights=self.home_weights)[0]

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
    stage = p.stage("card_testing", t0)
    a, rng = p.pick_account(), p.rng
    origin = p.foreign_city(a)
    dev, ip = device_id(rng), ip_in(p.population, origin, rng)
    # Drift: once the digital-goods and donation shops add checks, the bots probe at
    # everyday web shops with somewhat larger, slower probes (stage 1), then spread them
    # over several shops minutes apart (stage 2, "low and slow"). Still a stolen card tried
    # again and again from a foreign device before a cash-out.
    shops: tuple[Merchant, ...]
    if stage == 0:
        shops, cents_range, gap_s = (rng.choice(p.probe_shops),), (50, 300), (3.0, 20.0)
    elif stage == 1:
        shops, cents_range, gap_s = (rng.choice(p.plain_ecom),), (100, 900), (20.0, 90.0)
    else:
        shops, cents_range, gap_s = p.plain_ecom, (100, 1500), (60.0, 300.0)
    events, t = [], t0
    for _ in range(rng.randint(*CARD_TESTING_PROBES)):
        shop = shops[0] if len(shops) == 1 else rng.choice(shops)
        amount = rng.randint(*cents_range)
        events.append(Planned(t, a, shop, amount, origin, dev, ip, True, "card_testing"))
        t += int(rng.uniform(*gap_s) * SECOND)
    # The cash-out follows once a probe has proved the card live.
    t += int(rng.uniform(1, 10) * MINUTE)
    big = rng.choice(p.high_value_ecom)
    amount = cents(a.typical * rng.uniform(8, 25))
    events.append(Planned(t, a, big, amount, origin, dev, ip, True, "card_testing"))
    return Episode(events)


def account_takeover(p: Planner, t0: int) -> Episode:
    stage = p.stage("account_takeover", t0)
    a, rng = p.pick_account(), p.rng
    # Drift: once logins from abroad are challenged, takeovers come through a residential
    # proxy in the cardholder's country (stage 1), then in their own city, with smaller
    # amounts spread over more time (stage 2). The device is still one the account never
    # used, and the spending still several times its norm.
    if stage == 0:
        origin = p.foreign_city(a)
    elif stage == 1:
        origin = p.domestic_city(a)
    else:
        origin = a.city
    dev, ip = device_id(rng), ip_in(p.population, origin, rng)
    times, gap_min = ((5.0, 20.0), (1.0, 20.0)) if stage < 2 else ((3.0, 10.0), (20.0, 120.0))
    events, t = [], t0
    for _ in range(rng.randint(*TAKEOVER_TXS)):
        m = rng.choice(p.high_value_ecom if rng.random() < 0.7 else p.population.ecom)
        amount = cents(a.typical * rng.uniform(*times))
        events.append(Planned(t, a, m, amount, origin, dev, ip, True, "account_takeover"))
        t += int(rng.uniform(*gap_min) * MINUTE)
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
    # Drift: the cloned cards go to cashers who take cash at ATMs and buy resaleable goods
    # (stage 1), a little later after the genuine purchase: still too far, too soon.
    cash_out = p.stage("impossible_travel", t0) > 0
    shops = p.population.card_present[dest]
    if cash_out:
        shops = p.high_value_shops.get(dest, ()) + p.atms[dest] or shops
    t = t0 + int(rng.uniform(*((30, 120) if cash_out else (10, 55))) * MINUTE)
    for _ in range(rng.randint(*CLONED_CARD_TXS)):
        shop = rng.choice(shops)
        amount = ticket(shop, a.typical * rng.uniform(1, 5))
        events.append(Planned(t, a, shop, amount, dest, None, None, True, "impossible_travel"))
        t += int(rng.uniform(2, 15) * MINUTE)
    return Episode(events)


def velocity_burst(p: Planner, t0: int) -> Episode:
    a, rng = p.pick_account(), p.rng
    # A bot with the card details, behind a proxy near the cardholder so geography looks fine.
    dev, ip = device_id(rng), ip_in(p.population, a.city, rng)
    # Drift: once bursts within a minute are stopped, the bot spreads its purchases over
    # 10-30 minutes (stage 1), then over 1-3 hours (stage 2): still one new device buying
    # again and again, far faster than the cardholder ever does.
    stage = p.stage("velocity_burst", t0)
    window = rng.uniform(*((60, 120), (600, 1800), (3600, 10800))[stage]) * SECOND
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
    if p.stage("amount_outlier", t0) == 0:
        m = p.big_ticket_merchant(a)
        dev, ip = p.known_channel(a, m)
        amount = cents(a.typical * rng.uniform(10, 40))
        return Episode([Planned(t0, a, m, amount, a.city, dev, ip, True, "amount_outlier")])
    # Drift: once single big tickets are reviewed, the same take is split into 2-3 purchases
    # of 4-12x the norm at high-value merchants within a few hours: each one smaller, the
    # account's spending over the hours as far out of line as before.
    events, t = [], t0
    for _ in range(rng.randint(*SPLIT_OUTLIER_TXS)):
        m = p.big_ticket_merchant(a)
        dev, ip = p.known_channel(a, m)
        amount = cents(a.typical * rng.uniform(4, 12))
        events.append(Planned(t, a, m, amount, a.city, dev, ip, True, "amount_outlier"))
        t += int(rng.uniform(10, 90) * MINUTE)
    return Episode(events)


def _local_s(t_us: int, city: City) -> int:
    return (t_us // SECOND + city.offset_s) % DAY_S


def night_spree(p: Planner, t0: int) -> Episode:
    rng, pop = p.rng, p.population
    # A spree starts between `begin` and `begin + 2` local time and ends by `end`. Drift:
    # once purchases in the small hours are reviewed, the thieves shop in the evening
    # (20:00-23:00), among more genuine shoppers, with the same big tickets one after another.
    begin, end_h = (1, 4) if p.stage("night_spree", t0) == 0 else (20, 23)

    def wait_s(city: City) -> int:
        local = _local_s(t0, city)
        return 0 if begin * 3600 <= local < (begin + 2) * 3600 else (begin * 3600 - local) % DAY_S

    # Pick among the accounts whose night starts soonest, so an episode lands within the hour
    # instead of up to a day later (the stream the server shows is short-lived).
    waits = {city: wait_s(city) for city in pop.card_present}
    soonest = min(waits.values())
    index = p.accounts.pick_resident(rng.random, {c for c, w in waits.items() if w == soonest})
    a = p.accounts[index]
    wait = waits[a.city]  # `soonest`, unless the population is too small to live everywhere
    start = t0 if wait == 0 else t0 + wait * SECOND + int(rng.uniform(0, 90) * MINUTE)
    end = start + (end_h * 3600 - _local_s(start, a.city)) * SECOND
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


def _daytime(p: Planner, at_us: int, city: City) -> int:
    """A moment between 09:00 and 21:00 local time, on the local day holding `at_us`."""
    midnight = at_us - _local_s(at_us, city) * SECOND
    return midnight + int(p.rng.uniform(9, 21) * HOUR)


def _awake(p: Planner, t0: int, window: float, city: City) -> int:
    """A moment in [t0, t0 + window) that follows the city's daily rhythm, like shoppers."""
    for _ in range(100):
        t = t0 + int(p.rng.random() * window)
        if p.rng.random() < HOURLY_ACTIVITY[_local_s(t, city) // 3600]:
            return t
    return t


def compromised_merchant(p: Planner, t0: int) -> Episode:
    return Episode(_compromised_merchant(p, t0))


def _compromised_merchant(p: Planner, t0: int) -> Iterator[Planned | int]:
    rng, pop, accounts = p.rng, p.population, p.accounts
    horizon = p.horizon_us
    # A skimmer on a terminal or cash machine, or a card-stealing script on a web shop: for a
    # day or so every card used there is copied. The visits themselves are genuine
    # (is_fraud False) and carry the scenario's name only so a scorecard can find the common
    # point of purchase; the later uses of the copies are the fraud.
    # Drift: as chip cards make copied stripes worth less, skimmers on terminals and ATMs
    # give way to scripts on web shops (e-skimming): 60 % skimmed at first, 20 % after.
    skimmed = rng.random() < (0.6 if p.stage("compromised_merchant", t0) == 0 else 0.2)
    point = rng.choice(pop.card_present[p.pick_city()] if skimmed else pop.ecom)
    window = rng.uniform(2, 36) * HOUR
    # The copies are sold as one batch after the window closes; buyers use them over 2 days.
    release = t0 + int(window + rng.uniform(6, 48) * HOUR)
    if release + 2 * DAY + 2 * 40 * MINUTE < horizon:
        return  # every use of every copy is over before the stream starts
    # The timetable first, cheaply; accounts and tickets only when their time comes, so an
    # episode spanning days holds a few numbers, not days of planned transactions.
    timetable: list[tuple[int, int, bool]] = []  # (when, victim, is a use of the copy)
    victims: list[int] = []
    for _ in range(rng.randint(*COMPROMISE_VICTIMS)):
        # A skimmer's victims are the terminal's neighbours, found when needed (a few
        # hundred draws); a web shop's come from anywhere.
        index = -1 if skimmed else accounts.pick_uniform(rng.random)
        visit = _awake(p, t0, window, point.city if skimmed else accounts.home(index))
        t = max(visit + 2 * HOUR, release + int(rng.random() * 2 * DAY))
        uses = [t]
        for _ in range(rng.randint(*COMPROMISED_USES) - 1):
            uses.append(uses[-1] + int(rng.uniform(2, 40) * MINUTE))
        if uses[-1] < horizon:
            continue  # over before the stream starts
        victim = len(victims)
        victims.append(index)
        timetable.append((visit, victim, False))
        timetable.extend((use, victim, True) for use in uses)
    timetable.sort()
    if timetable:
        yield max(horizon, timetable[0][0])
    cards: dict[int, tuple[Account, City, tuple[Merchant, ...], str | None, str | None]] = {}
    for at, victim, is_use in timetable:
        if at < horizon:
            continue
        card = cards.get(victim)
        if card is None:
            index = victims[victim]
            if index < 0:
                index = accounts.pick_resident(rng.random, {point.city})
            a = accounts[index]
            dest = p.pick_city()
            if skimmed:
                # A copied stripe works only in person: cash and resaleable goods, elsewhere.
                for _ in range(10):
                    if dest is not a.city:
                        break
                    dest = p.pick_city()
                shops = p.high_value_shops.get(dest, ()) + p.atms[dest] or pop.card_present[dest]
                card = cards[victim] = (a, dest, shops, None, None)
            else:
                ring_ip = ip_in(pop, dest, rng)
                card = cards[victim] = (a, dest, p.high_value_ecom, device_id(rng), ring_ip)
        a, dest, shops, fraud_dev, fraud_ip = card
        if is_use:
            m = rng.choice(shops)
            while m is point and len(shops) > 1:  # the copies are used elsewhere
                m = rng.choice(shops)
            amount = ticket(m, a.typical * max(m.scale, 2.0) * rng.uniform(1, 3))
            yield Planned(at, a, m, amount, dest, fraud_dev, fraud_ip, True, "compromised_merchant")
        else:
            dev, ip = p.known_channel(a, point)
            where = point.city if skimmed else a.city
            amount = p.usual_ticket(a, point)
            yield Planned(at, a, point, amount, where, dev, ip, False, "compromised_merchant")


# What a ring's own web shop says it sells.
SHELL_MCCS = ("5999", "5964", "5732", "5944")
SHELL_SUFFIXES = ("Goods", "Supply", "Trading", "Outlet")
ROUND_PRICES = (100, 150, 200, 250, 300, 400, 500, 750, 1000)
# Drift: what a ring charges once round amounts are flagged, prices a real shop could ask.
SHOP_PRICES = (39.99, 59.99, 89.99, 129.99, 179.99, 249.99, 349.99)


def shell_merchant(p: Planner) -> Merchant:
    """A web shop a ring has just set up: a merchant id the stream has never shown."""
    rng = p.rng
    number = len(p.population.merchants) + p.shell_merchants
    p.shell_merchants += 1
    stem = rng.choice(p.population.merchants).name.split(" ")[0]
    name = f"{stem} {rng.choice(SHELL_SUFFIXES)}"
    return Merchant(f"mrc-{number:05d}", name, rng.choice(SHELL_MCCS), "ecom", p.pick_city(), 3.0)


def collusive_merchant(p: Planner, t0: int) -> Episode:
    rng, pop, accounts = p.rng, p.population, p.accounts
    # The merchant is in on it: cards of mules and of freshly opened or dormant accounts are
    # charged there in a burst, and the money leaves before any chargeback. Drift: once round
    # amounts are flagged, rings charge shop-like prices (stage 1); once new web shops are
    # watched, most move to complicit shops in person (stage 2, 60 % against 20 %).
    stage = p.stage("collusive_merchant", t0)
    in_person = rng.random() < (0.6 if stage == 2 else 0.2)
    city = p.pick_city()
    if in_person:
        merchant = rng.choice(pop.card_present[city])
    else:
        merchant = shell_merchant(p) if rng.random() < 0.5 else rng.choice(pop.ecom)
    # A ring shares a few phones and connections, and charges one round price or near it.
    devices = [device_id(rng) for _ in range(rng.randint(1, 3))]
    ips = [ip_in(pop, city, rng) for _ in range(rng.randint(1, 2))]
    base: float = rng.choice(ROUND_PRICES if stage == 0 else SHOP_PRICES)
    window = rng.uniform(1, 6) * HOUR
    events = []
    for _ in range(rng.randint(*COLLUSIVE_ACCOUNTS)):
        kind = rng.random()
        if in_person:
            a = accounts[accounts.pick_resident(rng.random, {city})]
        elif kind < 0.45:
            a = accounts[accounts.open()]
        elif kind < 0.85:
            a = accounts[accounts.pick_quiet(rng.random)]
        else:
            a = p.pick_account()
        t = t0 + int(rng.random() * window)
        for _ in range(rng.randint(*COLLUSIVE_TXS)):
            jitter = 20 if stage == 0 else 10
            dollars = base if rng.random() < 0.7 else base + rng.randint(-jitter, jitter)
            if in_person:
                dev, ip, where = None, None, city
            else:
                dev, ip, where = rng.choice(devices), rng.choice(ips), city
            amount = ticket(merchant, dollars)
            events.append(
                Planned(t, a, merchant, amount, where, dev, ip, True, "collusive_merchant")
            )
            t += int(rng.uniform(1, 30) * MINUTE)
    events.sort(key=lambda e: e.at_us)
    return Episode(events)


def bust_out(p: Planner, t0: int) -> Episode:
    return Episode(_bust_out(p, t0))


def _bust_out(p: Planner, t0: int) -> Iterator[Planned | int]:
    rng, accounts = p.rng, p.accounts
    horizon = p.horizon_us
    # A new account (a synthetic identity, or a customer who means to vanish) pays its way
    # for days to earn trust and a limit, then spends all of it at once and is never seen
    # again. Only the spree is fraud; the history is what the account wants you to see.
    span = int(rng.uniform(2, 6) * DAY)
    # A purchase on the history's last day lands before its 21:00, so a spree at least a day
    # after the span follows the whole history.
    start = t0 + span + int(rng.uniform(1, 2.5) * DAY)
    # Drift: once sprees within hours are stopped, the spree is spread over 1-3 days, with
    # more of it taken as cash (stage 1): still far more, far faster than the history.
    slow = p.stage("bust_out", t0) > 0
    length = int(rng.uniform(*((24, 72) if slow else (1, 8))) * HOUR)
    if start + length < horizon:
        return  # over before the stream starts: no account opened, nothing more drawn
    index = accounts.open()
    city = accounts.home(index)
    offsets = [int(rng.random() * span) for _ in range(rng.randint(*BUST_OUT_HISTORY))]
    history = [_daytime(p, t0 + offset, city) for offset in offsets]
    # Daytime of the next day when today's has passed; then in order, since two purchases
    # on one local day get their hours independently.
    history = sorted(t + DAY if t < t0 else t for t in history)
    spree = sorted(start + int(rng.random() * length) for _ in range(rng.randint(*BUST_OUT_SPREE)))
    yield max(horizon, history[0])
    for t in history:
        if t < horizon:
            continue
        a = accounts[index]
        # Everyday shopping, nothing a limit review would notice: no luxuries, no cash.
        shops = [
            m for m in a.favorites if m.scale < HIGH_VALUE_SCALE and m.channel != "atm"
        ] or a.favorites
        m = rng.choice(shops)
        dev, ip = p.known_channel(a, m)
        where = a.city if m.channel == "ecom" else m.city
        yield Planned(t, a, m, p.usual_ticket(a, m), where, dev, ip, False, "bust_out")
    for t in spree:
        if t < horizon:
            continue
        a = accounts[index]
        if p.atms[city] and rng.random() < (0.4 if slow else 0.2):
            m = rng.choice(p.atms[city])
            amount = atm_cents(min(1000.0, a.typical * rng.uniform(5, 15)))
        else:
            m = p.big_ticket_merchant(a)
            amount = ticket(m, a.typical * m.scale * rng.uniform(1.5, 4))
        # Their own card on their own phone at home: nothing is new but the size and the pace.
        dev, ip = p.known_channel(a, m)
        where = a.city if m.channel == "ecom" else m.city
        yield Planned(t, a, m, amount, where, dev, ip, True, "bust_out")


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


def new_phone(p: Planner, t0: int) -> Episode:
    rng = p.rng
    a = p.pick_account()
    # The cardholder replaces their phone (the first device; a second one, the laptop, stays)
    # and often their connection with it. From now on the everyday stream uses the new phone
    # too: the account changes here, once, and keeps the change.
    a.devices = (device_id(rng), *a.devices[1:])
    if rng.random() < 0.6:
        a.ip = ip_in(p.population, a.city, rng)
    p.accounts.keep(a)
    shops = [m for m in a.favorites if m.channel == "ecom"] or list(p.population.ecom)
    events, t = [], t0
    for _ in range(rng.randint(*NEW_PHONE_TXS)):
        m = rng.choice(shops)
        amount = p.usual_ticket(a, m)
        events.append(Planned(t, a, m, amount, a.city, a.devices[0], a.ip, False, "new_phone"))
        t += int(rng.uniform(1, 8) * HOUR)
    return Episode(events)


class Scenario(NamedTuple):
    name: str
    plan: Plan
    weight: float  # relative frequency among episodes of the same kind
    fraud_txs: float  # expected fraudulent transactions per episode
    other_txs: float = 0.0  # expected genuine ones: the home purchase, the trip
    # The longest an episode runs from its start to its last transaction. A stream starting
    # at T also holds the episodes started in [T - lead, T), so that its first days have the
    # same mix (and fraud share) as any later day.
    lead_us: int = 0
    # With drift: the expected fraudulent transactions per episode of each later variant of
    # the tactic (stage 1, 2); as many as the scenario has variants.
    variants: tuple[float, ...] = ()


FRAUD: tuple[Scenario, ...] = (
    Scenario(
        "card_testing",
        card_testing,
        1.0,
        _mean(CARD_TESTING_PROBES) + 1,
        0,
        HOUR,
        (_mean(CARD_TESTING_PROBES) + 1,) * 2,
    ),
    Scenario(
        "account_takeover",
        account_takeover,
        1.5,
        _mean(TAKEOVER_TXS),
        0,
        HOUR,
        (_mean(TAKEOVER_TXS),) * 2,
    ),
    Scenario(
        "impossible_travel",
        impossible_travel,
        1.0,
        _mean(CLONED_CARD_TXS),
        1,
        2 * HOUR,
        (_mean(CLONED_CARD_TXS),),
    ),
    Scenario(
        "velocity_burst",
        velocity_burst,
        0.8,
        _mean(BURST_TXS),
        0,
        2 * MINUTE,
        (_mean(BURST_TXS),) * 2,
    ),
    Scenario("amount_outlier", amount_outlier, 1.2, 1.0, 0, 0, (_mean(SPLIT_OUTLIER_TXS),)),
    # Some city's night is always near, so a spree starts within two hours and lasts three.
    Scenario("night_spree", night_spree, 1.0, _mean(NIGHT_TXS), 0, 6 * HOUR, (_mean(NIGHT_TXS),)),
    Scenario(
        "compromised_merchant",
        compromised_merchant,
        0.3,
        _mean(COMPROMISE_VICTIMS) * _mean(COMPROMISED_USES),
        _mean(COMPROMISE_VICTIMS),
        6 * DAY,
        (_mean(COMPROMISE_VICTIMS) * _mean(COMPROMISED_USES),),
    ),
    Scenario(
        "collusive_merchant",
        collusive_merchant,
        0.25,
        _mean(COLLUSIVE_ACCOUNTS) * _mean(COLLUSIVE_TXS),
        0,
        7 * HOUR,
        (_mean(COLLUSIVE_ACCOUNTS) * _mean(COLLUSIVE_TXS),) * 2,
    ),
    Scenario(
        "bust_out",
        bust_out,
        0.6,
        _mean(BUST_OUT_SPREE),
        _mean(BUST_OUT_HISTORY),
        9 * DAY,
        (_mean(BUST_OUT_SPREE),),
    ),
)
LEGIT: tuple[Scenario, ...] = (
    Scenario("legit_travel", legit_travel, 1.0, 0.0, _mean(TRIP_TXS), 32 * HOUR),
    Scenario("legit_big_purchase", legit_big_purchase, 1.5, 0.0, 1.0),
    Scenario("new_phone", new_phone, 1.0, 0.0, _mean(NEW_PHONE_TXS), 32 * HOUR),
)
# Decoys start at a third of the fraud episodes' rate: enough to fool a naive detector now
# and then, few enough that most alerts are real.
LEGIT_TO_FRAUD_EPISODES = 1 / 3
