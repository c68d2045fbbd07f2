"""The simulated merchants and the cities they trade in, built once per Simulator from its seed."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from faker import Faker

from simulator.geo import CITIES, City

Channel = Literal["pos", "ecom", "atm"]


@dataclass(frozen=True, slots=True)
class Category:
    """A kind of merchant: its MCC, where it trades, and how its tickets scale."""

    mcc: str
    channel: Channel
    scale: float  # typical ticket as a multiple of the cardholder's usual amount
    weight: float  # how common such merchants are
    suffix: str  # appended to the faker company name, so the dashboard reads naturally


CATEGORIES: tuple[Category, ...] = (
    Category("5411", "pos", 1.0, 8.0, "Market"),
    Category("5812", "pos", 1.2, 7.0, "Bistro"),
    Category("5814", "pos", 0.35, 6.0, "Grill"),
    Category("5541", "pos", 1.0, 4.0, "Fuel"),
    Category("5912", "pos", 0.6, 3.0, "Pharmacy"),
    Category("4121", "pos", 0.5, 2.0, "Cabs"),
    Category("5651", "pos", 1.8, 3.0, "Apparel"),
    Category("5311", "pos", 2.0, 2.0, "Department Store"),
    Category("5732", "pos", 5.0, 1.5, "Electronics"),
    Category("5712", "pos", 6.0, 1.0, "Home"),
    Category("7011", "pos", 4.0, 1.0, "Hotel"),
    Category("5944", "pos", 8.0, 0.5, "Jewelers"),
    Category("5999", "ecom", 1.5, 5.0, ""),
    Category("5964", "ecom", 1.5, 3.0, "Direct"),
    Category("5815", "ecom", 0.3, 3.0, "Digital"),
    Category("4899", "ecom", 0.4, 2.0, "Media"),
    Category("8398", "ecom", 0.8, 1.0, "Foundation"),
    Category("5732", "ecom", 5.0, 1.5, "Tech"),
    Category("4722", "ecom", 7.0, 1.0, "Travel"),
    Category("4511", "ecom", 10.0, 0.7, "Airways"),
    Category("5944", "ecom", 8.0, 0.5, "Jewelry"),
    Category("6011", "atm", 3.0, 1.0, "ATM"),
)

# A merchant whose tickets are this many times a cardholder's usual amount sells the things
# fraudsters cash out on (electronics, jewellery, flights) and people splurge on.
HIGH_VALUE_SCALE = 4.0
# Card testers probe at merchants with tiny, unremarkable tickets: digital goods, donations.
PROBE_MCCS = frozenset({"5815", "8398", "4899"})

_ECOM_SHARE = 0.22
_ATM_SHARE = 0.08
# Faker is slow (~50 µs a name): past this many merchants, company names are reused.
_COMPANY_POOL = 1000


@dataclass(frozen=True, slots=True, eq=False)
class Merchant:
    id: str
    name: str
    mcc: str
    channel: Channel
    city: City
    scale: float


@dataclass(frozen=True, slots=True)
class Population:
    merchants: tuple[Merchant, ...]
    ecom: tuple[Merchant, ...]
    card_present: dict[City, tuple[Merchant, ...]]  # only cities that have some: the homes
    nearby: dict[City, tuple[Merchant, ...]]  # everything reachable from home: shops and ecom
    ip_prefix: dict[City, str]


def device_id(rng: random.Random) -> str:
    return f"dev-{rng.getrandbits(48):012x}"


def ip_in(population: Population, city: City, rng: random.Random) -> str:
    return f"{population.ip_prefix[city]}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def _weighted(rng: random.Random, items: Sequence[City]) -> City:
    return rng.choices(items, weights=[c.weight for c in items])[0]


def _merchants(rng: random.Random, fake: Faker, count: int) -> list[Merchant]:
    n_ecom = max(1, round(count * _ECOM_SHARE))
    n_atm = round(count * _ATM_SHARE)
    n_pos = count - n_ecom - n_atm
    if n_pos < 1:
        raise ValueError(f"merchants must be at least 2, got {count}")
    by_weight = sorted(CITIES, key=lambda c: -c.weight)
    pos_cities = [
        by_weight[i] if i < len(by_weight) else _weighted(rng, CITIES) for i in range(n_pos)
    ]
    # ATMs only where there are shops: a city with cash machines but no stores has no residents.
    shop_cities = sorted(set(pos_cities), key=CITIES.index)
    companies = [fake.company() for _ in range(min(count, _COMPANY_POOL))]
    cats = {ch: [c for c in CATEGORIES if c.channel == ch] for ch in ("pos", "ecom", "atm")}
    plan: list[tuple[Channel, City]] = (
        [("ecom", _weighted(rng, CITIES)) for _ in range(n_ecom)]
        + [("atm", _weighted(rng, shop_cities)) for _ in range(n_atm)]
        + [("pos", city) for city in pos_cities]
    )
    merchants = []
    for j, (channel, city) in enumerate(plan):
        options = cats[channel]
        cat = rng.choices(options, weights=[c.weight for c in options])[0]
        # Reusing company names beyond the pool reads as chains with several branches.
        name = f"{companies[j % len(companies)]} {cat.suffix}".strip()
        merchants.append(Merchant(f"mrc-{j:05d}", name, cat.mcc, channel, city, cat.scale))
    return merchants


def build_population(rng: random.Random, fake: Faker, merchants: int) -> Population:
    """Draw the merchants; cardholders live only in cities that have shops."""
    all_merchants = _merchants(rng, fake, merchants)
    ecom = tuple(m for m in all_merchants if m.channel == "ecom")
    shops_in: dict[City, list[Merchant]] = {}
    for m in all_merchants:
        if m.channel != "ecom":
            shops_in.setdefault(m.city, []).append(m)
    card_present = {city: tuple(shops) for city, shops in shops_in.items()}
    return Population(
        merchants=tuple(all_merchants),
        ecom=ecom,
        card_present=card_present,
        nearby={city: shops + ecom for city, shops in card_present.items()},
        ip_prefix={city: ".".join(fake.ipv4_public().split(".")[:2]) for city in CITIES},
    )
