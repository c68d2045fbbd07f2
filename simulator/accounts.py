"""The simulated cardholders: each derived from (seed, index) when used, a recent few kept."""

from __future__ import annotations

import itertools
import math
import random
import struct
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from hashlib import blake2b
from statistics import NormalDist
from typing import Literal, NamedTuple

from faker import Faker

from simulator.geo import City
from simulator.population import Merchant, Population

Segment = Literal["low", "mid", "high"]

DAY_S = 86_400


class ActivityClass(NamedTuple):
    share: float  # of all accounts
    daily_tx: float  # transactions a day per account when the population has the default size


# Most cards are used a few times a day; a few (small businesses, heavy online shoppers) a few
# dozen. A handful of classes instead of a continuous law keeps picking the next shopper O(1):
# one bisection for the class, one uniform draw within it.
ACTIVITY_CLASSES: tuple[ActivityClass, ...] = (
    ActivityClass(0.25, 1.0),
    ActivityClass(0.30, 3.0),
    ActivityClass(0.20, 6.0),
    ActivityClass(0.13, 10.0),
    ActivityClass(0.09, 16.0),
    ActivityClass(0.03, 25.0),
)
MEAN_DAILY_TX = sum(c.share * c.daily_tx for c in ACTIVITY_CLASSES)
# Relative shopping activity by local hour: a trough from midnight to dawn, a plateau through
# the working day, a tail in the evening. The peak is 1.0 so it doubles as an acceptance
# probability.
HOURLY_ACTIVITY = (
    0.12, 0.07, 0.05, 0.04, 0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95, 1.00,
    1.00, 1.00, 0.95, 0.90, 0.90, 0.95, 1.00, 0.95, 0.80, 0.60, 0.40, 0.22,
)  # fmt: skip

# Relative spending by local weekday, Monday first: a Friday-Saturday peak and a quiet
# Sunday, as card volumes show. The mean is 1.0, so a stream's rate is its weekly average.
WEEKLY_ACTIVITY = (0.95, 0.97, 0.99, 1.02, 1.10, 1.07, 0.90)
WEEKLY_PEAK = max(WEEKLY_ACTIVITY)

_SEGMENTS: tuple[tuple[Segment, float, float], ...] = (
    ("low", 0.45, 18.0),
    ("mid", 0.40, 45.0),
    ("high", 0.15, 130.0),
)
_U16 = 1 << 16
# Upper bounds of each segment's share of a 16-bit draw.
_SEGMENT_CUM = tuple(round(c * _U16) for c in itertools.accumulate(s[1] for s in _SEGMENTS))
_TWO_DEVICES = 0.4  # share of accounts that shop online from two devices
_TYPICAL_SIGMA = 0.25
# Each part is a Faker call (~50 µs), so the pools are what keeps start-up short; combined
# they still give a million distinct full names.
NAME_POOL = 1000
# An account takes its favourite shops from a pool of sets drawn once per city: one draw and
# no tuple of its own, where a set per account would add ~1.5 µs and ~100 bytes to each. One
# neighbour in 256 shares your favourites, which no per-account rule can see.
FAVORITE_SETS = 256
# Home cities come from a table of 2**12 slots filled in proportion to the cities' weights,
# indexed by a multiplicative hash of the account index: cheap enough to run for every
# candidate shopper, so a candidate turned away by the local hour is never materialised.
_HOME_BITS = 12
_HOME_SHIFT = 64 - _HOME_BITS
_GOLDEN = 0x9E3779B97F4A7C15  # 2**64 / golden ratio: consecutive indices spread evenly
_MASK64 = (1 << 64) - 1
# The rest comes from one keyed BLAKE2b digest of the index: eight 16-bit draws, then two
# 48-bit device ids. Seeding a random.Random per account would cost 4.5 µs before its first
# draw; the digest and every draw together cost under 2.
_DRAWS = struct.Struct("<8H")
CACHED_ACCOUNTS = 1 << 16
"""Accounts kept built for reuse (~500 bytes each): past this many, the cache starts over.
An account is a function of its index, so building it again gives the same account; the
population is sized from the rate (4.3 million at 300 tx/s) and a cache of every account
used grew by ~470 bytes per new one in a demo, without end."""
CHANGED_ACCOUNTS = 100_000
"""Accounts changed after they were built (a new phone: `Accounts.keep`), kept as changed:
building one again would give its old phone back. Past this many the oldest change is
forgotten; the detector has seen both phones by then, so going back is no first use."""
# Normal quantiles at 1024 evenly spaced probabilities: the account-norm spread as a lookup.
_NORMAL = tuple(NormalDist().inv_cdf((j + 0.5) / 1024) for j in range(1024))


def default_accounts(rate: float) -> int:
    """The population in which an average card is used MEAN_DAILY_TX (~6) times a day."""
    return max(1, round(rate * DAY_S / MEAN_DAILY_TX))


def name_pool(fake: Faker, size: int = NAME_POOL) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return (
        tuple(fake.first_name() for _ in range(size)),
        tuple(fake.last_name() for _ in range(size)),
    )


# Not frozen: a frozen dataclass takes 3 µs to build against 1, and a fresh stream meets a
# new account on most transactions. A new phone changes one (`Accounts.keep`); nothing else.
@dataclass(slots=True, eq=False)
class Account:
    index: int
    id: str
    name: str
    city: City
    segment: Segment
    typical: float  # median ticket in USD at a scale-1.0 merchant: the "account norm"
    devices: tuple[str, ...]
    ip: str
    favorites: tuple[Merchant, ...]
    nearby: tuple[Merchant, ...]  # everything reachable from home: local stores and all ecom


def _class_sizes(count: int) -> list[int]:
    # Largest remainder, so that even a population of one lands in some class.
    exact = [c.share * count for c in ACTIVITY_CLASSES]
    sizes = [int(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda k: sizes[k] - exact[k])
    for k in by_remainder[: count - sum(sizes)]:
        sizes[k] += 1
    return sizes


class Accounts:
    """`len(self)` cardholders, each derived from (salt, index) the first time it is used.

    Nothing is built up front, and only the accounts used last are kept, so a population
    of millions costs a bounded cache. An account is the same whenever, and in whatever
    order, it is used; the salt comes from the Simulator's seed.
    """

    __slots__ = (
        "_cache",
        "_changed",
        "_class_cum",
        "_class_ranges",
        "_count",
        "_favorite_sets",
        "_first",
        "_home_cities",
        "_home_offsets",
        "_key",
        "_last",
        "_opened",
        "_population",
        "_salt",
    )

    def __init__(
        self,
        population: Population,
        count: int,
        salt: int,
        names: tuple[tuple[str, ...], tuple[str, ...]],
    ) -> None:
        if count < 1:
            raise ValueError(f"accounts must be at least 1, got {count}")
        self._population = population
        self._count = count
        self._salt = salt & _MASK64
        self._key = self._salt.to_bytes(8, "little")
        self._first, self._last = names
        self._cache: dict[int, Account] = {}
        self._changed: OrderedDict[int, Account] = OrderedDict()
        self._opened = 0
        self._favorite_sets: dict[City, tuple[tuple[Merchant, ...], ...]] = {}

        # Contiguous index ranges per class: a class is picked in proportion to the activity
        # it holds, then an account uniformly within it.
        ranges, weights, start = [], [], 0
        for cls, size in zip(ACTIVITY_CLASSES, _class_sizes(count), strict=True):
            if size:
                ranges.append((start, size))
                weights.append(size * cls.daily_tx)
                start += size
        self._class_ranges = tuple(ranges)
        self._class_cum = tuple(itertools.accumulate(weights))

        homes = tuple(population.card_present)
        cum = list(itertools.accumulate(c.weight for c in homes))
        slots = 1 << _HOME_BITS
        self._home_cities = tuple(
            homes[min(bisect_right(cum, (j + 0.5) * cum[-1] / slots), len(homes) - 1)]
            for j in range(slots)
        )
        self._home_offsets = tuple(c.offset_s for c in self._home_cities)

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: int) -> Account:
        account = self._cache.get(index)
        if account is None:
            if not 0 <= index < self._count + self._opened:
                raise IndexError(f"account index {index} is out of range(0, {self._count})")
            account = self._changed.get(index) or self._derive(index)
            cache = self._cache
            if len(cache) >= CACHED_ACCOUNTS:
                cache.clear()  # cheaper than an LRU's bookkeeping on every transaction
            cache[index] = account
        return account

    def keep(self, account: Account) -> None:
        """`account` was changed after it was built: use it as it is now from here on."""
        changed = self._changed
        changed[account.index] = account
        changed.move_to_end(account.index)
        if len(changed) > CHANGED_ACCOUNTS:
            changed.popitem(last=False)

    def open(self) -> int:
        """The index of a brand-new account past the established population.

        The normal stream never picks it (its index is beyond every activity class), so the
        episode that opened it writes its whole history. It is built on first use like any
        other account, so the same seed opens the same accounts in the same order.
        """
        self._opened += 1
        return self._count + self._opened - 1

    @property
    def opened(self) -> int:
        """How many accounts episodes have opened beyond the established population."""
        return self._opened

    @property
    def materialised(self) -> int:
        """How many accounts are built and kept now (used since the cache last started
        over, or changed)."""
        return len(self._cache.keys() | self._changed.keys())

    def by_id(self, account_id: str) -> Account:
        return self[int(account_id.removeprefix("acct-"))]

    def shopper(self, draw: Callable[[], float], t_s: int) -> int:
        """The index of an account shopping at `t_s` (Unix seconds): weighted by how often
        each account shops, and by the hour of day where it lives."""
        cum, ranges, salt = self._class_cum, self._class_ranges, self._salt
        top, last, offsets = cum[-1], len(cum) - 1, self._home_offsets
        while True:
            start, size = ranges[bisect_right(cum, draw() * top, 0, last)]
            index = start + int(draw() * size)
            # Thinning: a candidate is kept with the probability of shopping at its local
            # hour, so the caller's rate holds while the mix follows the sun. The home is
            # known without building the account: a candidate turned away costs no memory.
            offset_s = offsets[(((index + salt) * _GOLDEN) & _MASK64) >> _HOME_SHIFT]
            if draw() < HOURLY_ACTIVITY[((t_s + offset_s) // 3600) % 24]:
                return index

    def weekday(self, index: int, t_s: int) -> int:
        """The local weekday (Monday 0) at `t_s` where account `index` lives."""
        # 1970-01-01 was a Thursday.
        return ((t_s + self.home(index).offset_s) // DAY_S + 3) % 7

    def pick_uniform(self, draw: Callable[[], float]) -> int:
        return int(draw() * self._count)

    def pick_quiet(self, draw: Callable[[], float]) -> int:
        """A uniform index among the least active cards (about one use a day)."""
        start, size = self._class_ranges[0]
        return start + int(draw() * size)

    def pick_resident(
        self, draw: Callable[[], float], cities: Collection[City], tries: int = 2000
    ) -> int:
        """A uniform index among accounts living in `cities`, or any if none turns up.

        Rejection sampling: every home city holds at least ~0.5 % of accounts, so a few
        hundred draws suffice; the fallback is for populations too small to live everywhere.
        """
        for _ in range(tries):
            index = int(draw() * self._count)
            if self.home(index) in cities:
                return index
        return int(draw() * self._count)

    def home(self, index: int) -> City:
        return self._home_cities[(((index + self._salt) * _GOLDEN) & _MASK64) >> _HOME_SHIFT]

    def _favorites(self, city: City) -> tuple[tuple[Merchant, ...], ...]:
        sets = self._favorite_sets.get(city)
        if sets is None:
            # Seeded by city, not drawn from a shared stream, so the sets do not depend on
            # which city's residents shopped first.
            rng = random.Random(f"{self._salt}:{city.name}")
            shops, ecom = self._population.card_present[city], self._population.ecom
            sets = self._favorite_sets[city] = tuple(
                # Drawn with replacement: a shop picked twice is simply visited twice as often.
                tuple(
                    rng.choices(shops, k=rng.randint(3, 8)) + rng.choices(ecom, k=rng.randint(1, 4))
                )
                for _ in range(FAVORITE_SETS)
            )
        return sets

    def _derive(self, index: int) -> Account:
        digest = blake2b(index.to_bytes(8, "little"), digest_size=32, key=self._key).digest()
        u_segment, u_norm, u_favorites, u_devices, u_ip1, u_ip2, u_first, u_last = (
            _DRAWS.unpack_from(digest)
        )
        city = self.home(index)
        segment, _, median = _SEGMENTS[bisect_right(_SEGMENT_CUM, u_segment, 0, 2)]
        devices: tuple[str, ...] = (f"dev-{digest[16:22].hex()}",)
        if u_devices < _TWO_DEVICES * _U16:
            devices += (f"dev-{digest[22:28].hex()}",)
        first, last = self._first, self._last
        return Account(
            index,
            f"acct-{index:07d}",
            f"{first[u_first % len(first)]} {last[u_last % len(last)]}",
            city,
            segment,
            median * math.exp(_TYPICAL_SIGMA * _NORMAL[u_norm >> 6]),
            devices,
            f"{self._population.ip_prefix[city]}.{u_ip1 & 0xFF}.{1 + u_ip2 % 254}",
            self._favorites(city)[u_favorites % FAVORITE_SETS],
            self._population.nearby[city],
        )
