"""Our detector on a second independent labelled stream: a Sparkov-style card stream (the
generator behind Kaggle's "Credit Card Transactions Fraud Detection" set, fraudTrain.csv /
fraudTest.csv), against the baselines a typical notebook for that set trains.

The generator is our own code, written from a reading of Sparkov's published method
(github.com/namebrandon/Sparkov_Data_Generation: datagen_customer.py, datagen_transaction.py,
profile_weights.py, static_merchant_generator.py and its profile files):

1. Customers: an age (under 25, 25-50, 50 and over), a gender, a home town with a
   population (urban from 2,500), a card number, a name, a job and a date of birth. The
   profile follows from age band and gender (PROFILES below holds four of Sparkov's
   profiles; the other segments use the nearest one, see SEGMENTS).
2. Each customer's legitimate purchases: days x U{min..max} transactions per day for the
   whole run, each on a day drawn by weight (day of week x season: holidays 30 Nov-31 Dec
   x2, 1 Jan-28 Feb x0.75, 24 May-1 Sep x1.25), a category drawn by the profile's weights, a
   time of day from the same uniform draw (the draw's first 30 % is the morning, 00-11 h,
   the rest 12-23 h: Sparkov samples both from one number, so early categories in its list
   are morning ones), an amount from a gamma distribution with the category's mean and
   standard deviation (under 1: U(1, 10) instead), a merchant picked uniformly among the
   category's 50, located uniformly within 1 degree of the customer's home.
3. Fraud: each customer, with probability 99/101, has one compromised episode, starting on a
   day uniform in [1, span - 7] of a run of --fraud-span-days (730, Kaggle's two years) and
   covering that day and the next: 1 x U{min..max} fraud transactions from a fraud profile
   (mostly grocery_pos, shopping_net, misc_net, shopping_pos at 300-1,000 dollars, plus
   small gas_transport, misc_pos, personal_care amounts), 80 % of them at 22-23 h or 00-03 h.
   The customer's legitimate transactions on the days that got a fraud are dropped (Sparkov
   writes only the fraud on those days).
4. Written as Kaggle's CSV, with its leading unnamed index column and its 22 named columns;
   unix_time reads 7 years earlier than trans_date_trans_time, as in the Kaggle files.

Then, as benchmarks/handbook.py does: `fraudwatch backtest` on the file as a black box with
a 7-day label delay, `--model on` and `--model off`, mapping what a user would (id, timestamp,
account, merchant, amount, the merchant's lat/lon, and the category as `mcc`); the baselines
(logistic regression, random forest; scikit-learn defaults, seed 0) on the features Kaggle
notebooks use for this set (amount, category one-hot, hour, age, distance home-merchant, per
card count and mean amount over 1, 7, 30 days), trained on --train-days, then --delay-days
unused, then tested on the last --test-days, leaving out cards with a fraud known by then;
and per category and hour, the share of frauds each one alerts and puts in a day's top 100.

Writes benchmarks/results/sparkov-<UTC>.json. scikit-learn is the `bench` extra.

    .venv/bin/python benchmarks/sparkov.py --keep /tmp/sp --no-location  # 3-6 min, 0.9 M rows
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import streams  # noqa: E402

COLUMNS = ("", "trans_date_trans_time", "cc_num", "merchant", "category", "amt", "first", "last",
           "gender", "street", "city", "state", "zip", "lat", "long", "city_pop", "job", "dob",
           "trans_num", "unix_time", "merch_lat", "merch_long", "is_fraud")  # fmt: skip
MAPPING = ("id=trans_num", "timestamp=trans_date_trans_time", "account_id=cc_num",
           "merchant_id=merchant", "amount=amt", "lat=merch_lat", "lon=merch_long",
           "mcc=category")  # fmt: skip
# In Sparkov's order: the time of day is drawn from the same number as the category, so the
# order decides which categories are morning ones.
CATEGORIES = ("gas_transport", "grocery_net", "grocery_pos", "misc_net", "misc_pos",
              "shopping_net", "shopping_pos", "entertainment", "food_dining", "health_fitness",
              "home", "kids_pets", "personal_care", "travel")  # fmt: skip
MORNING = 0.3  # the profiles' shopping_time: AM 30 %, PM 70 %
MERCHANTS_PER_CATEGORY = 50
DAY_S = 86_400
WINDOWS = (1, 7, 30)


@dataclass(frozen=True)
class Profile:
    """Transactions a day U{low..high} over the run; per category (CATEGORIES' order) a
    weight and the amount's mean and standard deviation; weekday weights, Monday first."""

    per_day: tuple[int, int]
    weights: tuple[float, ...]
    amounts: tuple[tuple[float, float], ...]
    weekdays: tuple[float, ...] = (80, 90, 100, 100, 150, 175, 175)


# Four of Sparkov's profiles (its tests/data files; weights recovered from their cumulative
# form), and its fraud profiles for men and for women.
PROFILES = {
    "adults_2550_female_urban": Profile(
        (1, 6),
        (50, 100, 150, 75, 100, 150, 175, 100, 110, 100, 150, 135, 125, 35),
        ((70, 15), (60, 20), (200, 20), (100, 150), (80, 100), (100, 200), (100, 225),
         (100, 75), (60, 40), (60, 50), (60, 50), (60, 50), (55, 50), (60, 600)),
    ),
    "adults_2550_male_rural": Profile(
        (1, 4),
        (10, 10, 30, 6, 20, 20, 20, 21, 20, 18, 30, 22, 10, 9),
        ((70, 5), (50, 5), (100, 10), (100, 20), (35, 5), (95, 10), (135, 12), (75, 7),
         (60, 6), (75, 2), (80, 8), (50, 5), (75, 5), (500, 50)),
        (80, 90, 100, 100, 125, 150, 150),
    ),
    "young_adults_female_urban": Profile(
        (0, 6),
        (40, 12, 15, 16, 20, 25, 30, 24, 24, 20, 17, 25, 20, 11),
        ((60, 15), (40, 20), (70, 20), (50, 150), (50, 150), (50, 300), (50, 300), (50, 50),
         (30, 50), (50, 50), (50, 50), (50, 50), (35, 50), (50, 600)),
        (60, 70, 80, 90, 180, 250, 175),
    ),
    "adults_50up_female_urban": Profile(
        (0, 3),
        (30, 5, 30, 10, 20, 15, 30, 23, 24, 16, 30, 30, 24, 12),
        ((70, 15), (90, 20), (90, 20), (55, 150), (60, 150), (80, 200), (45, 200), (50, 75),
         (80, 50), (40, 50), (60, 50), (80, 50), (45, 50), (60, 600)),
    ),
    "fraud_male": Profile(
        (8, 14),
        (100, 25, 300, 155, 25, 300, 100, 20, 10, 5, 5, 10, 15, 15),
        ((10, 2), (10, 2), (300, 20), (800, 80), (8, 1), (1000, 100), (800, 80), (500, 50),
         (120, 12), (20, 2), (250, 25), (20, 2), (20, 2), (10, 1)),
    ),
    "fraud_female": Profile(
        (2, 16),
        (50, 10, 150, 75, 100, 150, 175, 100, 110, 100, 150, 135, 125, 35),
        ((10, 2), (12, 2), (350, 20), (800, 80), (8, 1), (1000, 100), (800, 80), (500, 50),
         (120, 12), (20, 2), (250, 25), (20, 2), (20, 2), (10, 1)),
    ),
}  # fmt: skip
# (age band, gender) -> the profile used. Sparkov also splits urban and rural; we have four
# of its twelve profiles, so both areas share one.
SEGMENTS = {
    ("young", "F"): "young_adults_female_urban",
    ("young", "M"): "young_adults_female_urban",
    ("2550", "F"): "adults_2550_female_urban",
    ("2550", "M"): "adults_2550_male_rural",
    ("50up", "F"): "adults_50up_female_urban",
    ("50up", "M"): "adults_50up_female_urban",
}
SEASONS = (((11, 30), (12, 31), 2.0), ((1, 1), (2, 28), 0.75), ((5, 24), (9, 1), 1.25))


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


SURNAMES = _words(
    "Rippin Kub Mann Heller Gutmann Zieme Lind Buckridge Kiehn Emmerich Kutch Hermiston "
    "Schumm Padberg Keeling Goyette Boyer Kerluke Bauch Nitzsche Stokes Harber Koepp Hahn "
    "Kilback Lesch Reichert Abshire Kunze Baumbach Medhurst Weber Cormier Torp Haley Bins "
    "Rempel Schaefer Morissette Jaskolski Lubowitz Moen Tromp Kozey Ullrich Rau Johns "
    "Conroy Pacocha Frami Wiza Crooks Effertz Smitham Volkman Douglas Ritchie Osinski Hills "
    "Witting Feil Jast Bernier Dickinson Fisher Strosin Greenholt Kihn Romaguera Sporer"
)
FIRST = {
    "F": _words(
        "Jennifer Mary Susan Linda Sarah Jessica Ashley Amanda Megan Rachel Laura Kelly "
        "Stephanie Nicole Heather Tina Christine Amy Melissa Rebecca"
    ),
    "M": _words(
        "James John Robert Michael David William Christopher Daniel Joseph Matthew Brian "
        "Mark Jeffrey Scott Eric Steven Kevin Justin Aaron Edward"
    ),
}
JOBS = (
    "Psychologist, counselling", "Special educational needs teacher", "Nature conservation "
    "officer", "Patent attorney", "Dance movement psychotherapist", "Transport planner",
    "Arboriculturist", "Designer, multimedia", "Public affairs consultant", "Pathologist",
    "IT trainer", "Systems developer", "Engineer, land", "Surveyor, minerals",
    "Naval architect", "Film/video editor", "Exhibition designer", "Financial adviser",
)  # fmt: skip
STATES = _words(
    "NC WA ID MT VA PA KS TN IA WV FL CA NM NJ OK IN MA TX WI MI WY HI NE OR LA DC KY "
    "NY MS UT AL AR MD GA ME AZ MN OH CO VT MO SC NV IL NH SD AK ND CT RI DE"
)
CITY_ENDS = ("ville", " Falls", " Springs", "port", " City", "burg", " Creek", " Heights")


@dataclass
class Stream:
    """The transactions in event-time order (numpy arrays), and the customers."""

    start: dt.datetime
    seconds: np.ndarray  # since start
    card: np.ndarray  # customer index
    category: np.ndarray  # index into CATEGORIES
    amount: np.ndarray  # dollars, to the cent
    merchant: np.ndarray  # index into merchant_names
    merch_lat: np.ndarray
    merch_long: np.ndarray
    fraud: np.ndarray
    customers: dict[str, np.ndarray]
    merchant_names: list[str]

    @property
    def days(self) -> np.ndarray:
        return self.seconds // DAY_S


def _day_weights(start: dt.datetime, days: int, weekdays: Sequence[float]) -> np.ndarray:
    out = np.empty(days)
    for d in range(days):
        day = (start + dt.timedelta(days=d)).date()
        w = weekdays[day.weekday()]
        for (m0, d0), (m1, d1), factor in SEASONS:
            if (m0, d0) <= (day.month, day.day) <= (m1, d1):
                w *= factor
        out[d] = w
    return out / out.sum()


def _company(rng: np.random.Generator) -> str:
    a, b, c = (SURNAMES[i] for i in rng.choice(len(SURNAMES), 3, replace=False))
    form = rng.integers(5)
    if form == 0:
        return f"{a}, {b} and {c}"
    if form == 1:
        return f"{a}-{b}"
    return f"{a} {('Inc', 'LLC', 'Ltd', 'Group', 'PLC')[rng.integers(5)]}"


def _customers(n: int, start: dt.datetime, rng: np.random.Generator) -> dict[str, np.ndarray]:
    band = rng.choice(3, n, p=(0.12, 0.45, 0.43))  # young, 25-50, 50 and over
    age = np.where(
        band == 0, rng.uniform(17, 25, n), np.where(band == 1, rng.uniform(25, 50, n),
                                                    50 + rng.exponential(14, n).clip(0, 45))
    )  # fmt: skip
    gender = np.where(rng.random(n) < 0.55, "F", "M")
    dob = [(start - dt.timedelta(days=float(a) * 365.25)).date().isoformat() for a in age]
    lengths = rng.choice((16, 15, 14, 13, 19, 12, 11), n, p=(0.45, 0.15, 0.1, 0.1, 0.1, 0.05, 0.05))
    cards: set[int] = set()
    cc = []
    for length in lengths:
        while True:
            number = int(rng.integers(1, 10)) * 10 ** (int(length) - 1) + int(
                rng.integers(0, 10 ** (int(length) - 1))
            )
            if number not in cards:
                cards.add(number)
                cc.append(number)
                break
    first = [FIRST[g][rng.integers(len(FIRST[g]))] for g in gender]
    last = [SURNAMES[i] for i in rng.integers(len(SURNAMES), size=n)]
    towns = zip(
        rng.integers(len(SURNAMES), size=n), rng.integers(len(CITY_ENDS), size=n), strict=True
    )
    city = [SURNAMES[i] + CITY_ENDS[j] for i, j in towns]
    return {
        "band": band,
        "age": age,
        "gender": gender,
        "dob": np.array(dob),
        "cc_num": np.array([str(c) for c in cc]),
        "first": np.array(first),
        "last": np.array(last),
        "street": np.array(
            [
                f"{rng.integers(100, 99999)} {SURNAMES[rng.integers(len(SURNAMES))]} "
                f"{('St', 'Ave', 'Rd', 'Ln', 'Way')[rng.integers(5)]}"
                for _ in range(n)
            ]
        ),
        "city": np.array(city),
        "state": np.array([STATES[i] for i in rng.integers(len(STATES), size=n)]),
        "zip": rng.integers(1001, 99950, n),
        "lat": np.round(rng.uniform(25.0, 48.5, n), 4),
        "long": np.round(rng.uniform(-123.0, -70.0, n), 4),
        "city_pop": np.round(np.exp(rng.normal(np.log(2500), 2.2, n))).clip(20, 2_900_000),
        "job": np.array([JOBS[i] for i in rng.integers(len(JOBS), size=n)]),
    }


def _draw(
    profile: Profile, n: int, day_p: np.ndarray, day_offset: int, fraud: bool,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """n transactions of `profile`: (seconds since start, category, amount)."""
    day = rng.choice(len(day_p), n, p=day_p) + day_offset
    u = rng.random(n)
    cum = np.cumsum(profile.weights) / sum(profile.weights)
    category = np.minimum(np.searchsorted(cum, u), len(CATEGORIES) - 1)
    morning = u <= MORNING
    low, high = np.where(morning, 0, 12), np.where(morning, 12, 24)
    if fraud:  # 80 %: the small hours
        late = rng.integers(1, 101, n) > 20
        high = np.where(late & morning, 4, high)
        low = np.where(late & ~morning, 22, low)
    hour = rng.integers(low, high)
    seconds = day * DAY_S + hour * 3600 + rng.integers(0, 3600, n)
    mu = np.array([m for m, _ in profile.amounts])[category]
    sd = np.array([s for _, s in profile.amounts])[category]
    amount = rng.gamma(mu**2 / sd**2, sd**2 / mu)
    small = amount < 1
    amount[small] = rng.uniform(1.0, 10.0, int(small.sum()))
    return seconds, category, np.round(amount, 2)


def generate(n_customers: int, start: dt.datetime, days: int, fraud_span: int, seed: int) -> Stream:
    rng = np.random.default_rng(seed)
    customers = _customers(n_customers, start, rng)
    names: set[str] = set()
    merchant_names: list[str] = []
    for _ in CATEGORIES:
        for _ in range(MERCHANTS_PER_CATEGORY):
            name = "fraud_" + _company(rng)
            while name in names:
                name = "fraud_" + _company(rng)
            names.add(name)
            merchant_names.append(name)
    weights: dict[tuple[float, ...], np.ndarray] = {}

    def day_p(profile: Profile) -> np.ndarray:
        if profile.weekdays not in weights:
            weights[profile.weekdays] = _day_weights(start, days, profile.weekdays)
        return weights[profile.weekdays]

    parts: list[tuple[np.ndarray, ...]] = []
    for c in range(n_customers):
        band = ("young", "2550", "50up")[customers["band"][c]]
        gender = str(customers["gender"][c])
        profile = PROFILES[SEGMENTS[band, gender]]
        fraud_profile = PROFILES["fraud_female" if gender == "F" else "fraud_male"]
        if band == "young" and gender == "M":
            fraud_profile = Profile((8, 16), fraud_profile.weights, fraud_profile.amounts)
        chunks = []
        fraud_days: np.ndarray = np.empty(0, dtype=np.int64)
        if rng.integers(0, 101) < 99:
            first = int(rng.integers(1, fraud_span - 7 + 1))
            if first < days:
                span = min(2, days - first)
                p = day_p(fraud_profile)[first : first + span]
                n = int(rng.integers(fraud_profile.per_day[0], fraud_profile.per_day[1] + 1))
                s, cat, amt = _draw(fraud_profile, n, p / p.sum(), first, True, rng)
                chunks.append((s, cat, amt, np.ones(n, dtype=np.int8)))
                fraud_days = np.unique(s // DAY_S)
        n = days * int(rng.integers(profile.per_day[0], profile.per_day[1] + 1))
        s, cat, amt = _draw(profile, n, day_p(profile), 0, False, rng)
        keep = ~np.isin(s // DAY_S, fraud_days)
        chunks.append((s[keep], cat[keep], amt[keep], np.zeros(int(keep.sum()), dtype=np.int8)))
        for s, cat, amt, is_fraud in chunks:
            parts.append((s, np.full(len(s), c), cat, amt, is_fraud))
    seconds, card, category, amount, fraud = (np.concatenate(x) for x in zip(*parts, strict=True))
    order = np.argsort(seconds, kind="stable")
    seconds, card, category, amount, fraud = (
        x[order] for x in (seconds, card, category, amount, fraud)
    )
    merchant = category * MERCHANTS_PER_CATEGORY + rng.integers(
        0, MERCHANTS_PER_CATEGORY, len(seconds)
    )
    # Faker's coordinate(): uniform within the radius (1 degree) of the home, 6 decimals.
    merch_lat = np.round(customers["lat"][card] + rng.uniform(-1, 1, len(card)), 6)
    merch_long = np.round(customers["long"][card] + rng.uniform(-1, 1, len(card)), 6)
    return Stream(start, seconds, card, category, amount, merchant, merch_lat, merch_long,
                  fraud, customers, merchant_names)  # fmt: skip


def write_csv(stream: Stream, path: Path, seed: int) -> list[str]:
    """Kaggle's layout; returns the trans_num of each row."""
    rng = np.random.default_rng(seed + 1)
    raw = rng.bytes(16 * len(stream.seconds))
    ids = [raw[i : i + 16].hex() for i in range(0, len(raw), 16)]
    seven_years_back = stream.start.replace(year=stream.start.year - 7, tzinfo=dt.UTC)
    unix0 = int(seven_years_back.timestamp())
    c = stream.customers
    per_customer = [
        (str(c["cc_num"][i]), str(c["first"][i]), str(c["last"][i]), str(c["gender"][i]),
         str(c["street"][i]), str(c["city"][i]), str(c["state"][i]), int(c["zip"][i]),
         float(c["lat"][i]), float(c["long"][i]), int(c["city_pop"][i]), str(c["job"][i]),
         str(c["dob"][i]))
        for i in range(len(c["cc_num"]))
    ]  # fmt: skip
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for i, second in enumerate(stream.seconds.tolist()):
            cust = per_customer[stream.card[i]]
            when = stream.start + dt.timedelta(seconds=second)
            writer.writerow(
                (i, when.strftime("%Y-%m-%d %H:%M:%S"), cust[0],
                 stream.merchant_names[stream.merchant[i]], CATEGORIES[stream.category[i]],
                 float(stream.amount[i]), *cust[1:], ids[i], unix0 + second,
                 float(stream.merch_lat[i]), float(stream.merch_long[i]), int(stream.fraud[i]))
            )  # fmt: skip
    return ids


def save(stream: Stream, ids: list[str], path: Path) -> None:
    np.savez(
        path, seconds=stream.seconds, card=stream.card, category=stream.category,
        amount=stream.amount, merchant=stream.merchant, merch_lat=stream.merch_lat,
        merch_long=stream.merch_long, fraud=stream.fraud, ids=np.array(ids),
        merchant_names=np.array(stream.merchant_names),
        **{f"customer_{k}": v for k, v in stream.customers.items()},
    )  # fmt: skip


def load(path: Path, start: dt.datetime) -> tuple[Stream, list[str]]:
    z = np.load(path)
    customers = {k.removeprefix("customer_"): z[k] for k in z.files if k.startswith("customer_")}
    stream = Stream(start, z["seconds"], z["card"], z["category"], z["amount"], z["merchant"],
                    z["merch_lat"], z["merch_long"], z["fraud"], customers,
                    z["merchant_names"].tolist())  # fmt: skip
    return stream, z["ids"].tolist()


def _haversine_km(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> Any:
    p1, p2 = np.radians(lat1), np.radians(lat2)
    h = (
        np.sin((p2 - p1) / 2) ** 2
        + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0088 * np.arcsin(np.sqrt(np.minimum(h, 1.0)))


FEATURES = (
    "amt", *(f"category_{c}" for c in CATEGORIES), "hour", "age", "distance_km",
    *(f"card_{kind}_{w}d" for w in WINDOWS for kind in ("count", "mean_amt")),
)  # fmt: skip


def features(stream: Stream) -> np.ndarray:
    """A typical Kaggle notebook's features for this set, one row per transaction. The card
    windows are (t - w, t], this transaction included (pandas' time-based rolling)."""
    n = len(stream.seconds)
    out = np.zeros((n, len(FEATURES)))
    out[:, 0] = stream.amount
    out[np.arange(n), 1 + stream.category] = 1.0
    j = 1 + len(CATEGORIES)
    out[:, j] = (stream.seconds % DAY_S) // 3600
    out[:, j + 1] = stream.customers["age"][stream.card] + stream.seconds / (365.25 * DAY_S)
    out[:, j + 2] = _haversine_km(stream.customers["lat"][stream.card],
                                  stream.customers["long"][stream.card], stream.merch_lat,
                                  stream.merch_long)  # fmt: skip
    j += 3
    order = np.lexsort((np.arange(n), stream.card))  # by card, then time
    cards, secs, amts = stream.card[order], stream.seconds[order], stream.amount[order]
    bounds = np.flatnonzero(np.diff(cards)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, n], strict=True):
        t = secs[lo:hi]
        spent = np.r_[0.0, np.cumsum(amts[lo:hi])]
        pos = np.arange(hi - lo)
        for w, window in enumerate(WINDOWS):
            left = np.searchsorted(t, t - window * DAY_S, side="right")
            count = pos + 1 - left
            rows = order[lo:hi]
            out[rows, j + 2 * w] = count
            out[rows, j + 2 * w + 1] = (spent[pos + 1] - spent[left]) / count
    return out


def breakdown(
    stream: Stream, rows: np.ndarray, scores: np.ndarray, flagged: np.ndarray
) -> dict[str, dict[str, Any]]:
    """Among `rows`' frauds, per category and per hour band: count, share flagged, share in
    its day's top 100 (of `rows`)."""
    hour = (stream.seconds[rows] % DAY_S) // 3600
    groups = {f"category {c}": stream.category[rows] == i for i, c in enumerate(CATEGORIES)}
    groups |= {
        "hours 22-03": (hour >= 22) | (hour <= 3),
        "hours 04-21": (hour >= 4) & (hour <= 21),
        "amount >= 200": stream.amount[rows] >= 200,
        "amount < 200": stream.amount[rows] < 200,
        "all": np.ones(len(rows), dtype=bool),
    }
    fraud = stream.fraud[rows] == 1
    return streams.group_shares(
        groups, fraud, flagged, streams.in_day_top(stream.days[rows], scores)
    )


def residual_signals(
    stream: Stream, x: np.ndarray, scores: np.ndarray, split: streams.Split
) -> dict[str, dict[str, float | None]]:
    """What our score leaves out: a logistic regression (seed 0) on the logit of our score
    alone, then with one signal group added, trained and tested on the baselines' split. A
    group that raises the test AP carries fraud signal our inputs do not see."""
    logit = streams.score_logit(scores)
    hours = np.eye(24)[(stream.seconds % DAY_S) // 3600]
    categories = x[:, 1 : 1 + len(CATEGORIES)]
    cards = x[:, -2 * len(WINDOWS) :]
    groups = {
        "score": [logit],
        "score + hour one-hot": [logit, hours],
        "score + category one-hot": [logit, categories],
        "score + card count and mean over 1/7/30 d": [logit, cards],
        "score + hour + category": [logit, hours, categories],
        "score + hour + category + the notebook features": [logit, hours, categories, x],
    }
    return streams.residual_fits(groups, stream.fraud.astype(int), split)


def early_days(report: dict[str, Any], first: int) -> list[dict[str, Any]]:
    return [
        {k: d.get(k) for k in ("day", "transactions", "frauds", "average_precision",
                               "card_precision_at_k", "alerts")}
        for d in report["per_day"][:first]
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--start", default="2019-01-01")
    parser.add_argument("--days", type=int, default=183)
    parser.add_argument("--fraud-span-days", type=int, default=730,
                        help="the run each customer's one fraud episode is placed in (Kaggle's "
                        "two years): longer than --days keeps Kaggle's fraud rate")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    streams.add_common_options(parser, "sparkov", train_days=28, test_days=14)
    parser.add_argument("--no-location", action="store_true",
                        help="also run --model on without lat/lon mapped")  # fmt: skip
    opts = parser.parse_args()
    start = dt.datetime.fromisoformat(opts.start)
    train_from = streams.first_train_day(opts, max(WINDOWS))
    begun = time.perf_counter()

    with streams.work_dir(opts.keep) as work:
        data, saved = work / "sparkov.csv", work / "sparkov.npz"
        started = time.perf_counter()
        if data.exists() and saved.exists():
            stream, ids = load(saved, start)
            how = f"read from {saved}"
        else:
            stream = generate(opts.customers, start, opts.days, opts.fraud_span_days, opts.seed)
            generated = time.perf_counter() - started
            ids = write_csv(stream, data, opts.seed)
            save(stream, ids, saved)
            how = (f"generated in {generated:.0f} s, written in "
                   f"{time.perf_counter() - started - generated:.0f} s")  # fmt: skip
        n = len(stream.seconds)
        frauds = int(stream.fraud.sum())
        fraud_cards = len(np.unique(stream.card[stream.fraud == 1]))
        meta = {
            "rows": n,
            "frauds": frauds,
            "cards": len(np.unique(stream.card)),
            "cards_with_fraud": fraud_cards,
            "frauds_by_category": {
                c: int(((stream.category == i) & (stream.fraud == 1)).sum())
                for i, c in enumerate(CATEGORIES)
            },
            "customers": opts.customers,
            "days": opts.days,
            "fraud_span_days": opts.fraud_span_days,
            "start": opts.start,
            "seed": opts.seed,
            "bytes": data.stat().st_size,
        }
        print(
            f"data: {n:,} rows over {opts.days} days from {opts.start}, {frauds:,} frauds "
            f"({frauds / n:.2%}) on {fraud_cards} of {meta['cards']} cards, seed {opts.seed}, "
            f"{meta['bytes'] / 1e6:.0f} MB, {how}"
        )

        runs = {"on": ("on", MAPPING), "off": ("off", MAPPING)}
        if opts.no_location:
            runs["on_no_location"] = ("on", tuple(m for m in MAPPING if m.split("=")[0]
                                                  not in ("lat", "lon")))  # fmt: skip
        row = {tx: i for i, tx in enumerate(ids)}
        backtests = streams.run_backtests(
            data, work, runs, "is_fraud", opts.delay_days,
            lambda path: streams.read_scores(path, n, row.__getitem__),
        )  # fmt: skip
        meta |= backtests.notes("invalid_examples")

        started = time.perf_counter()
        x = features(stream)
        labels = stream.fraud.astype(int)
        split = streams.baseline_split(stream.days, stream.card, stream.fraud, train_from, opts)
        models = streams.notebook_baselines(x, labels, split, opts.trees)
        took = time.perf_counter() - started
        print(split.describe(labels, took, ", known-fraud cards left out"))

        window, patterns = streams.compare_window(
            runs, backtests.scored, models, split.test, (stream.days, stream.card, labels),
            lambda rows, scores, alerts: breakdown(stream, rows, scores, alerts),
        )  # fmt: skip
        streams.print_window(backtests.overall(), window, split.test_days)
        residual_of = "on_no_location" if "on_no_location" in runs else "on"
        residual = residual_signals(stream, x, backtests.scored[residual_of][0], split)
        print(f"\nwhat fraudwatch {residual_of}'s score leaves out (logistic regression on it "
              "and one more signal group; test days):")  # fmt: skip
        for name, m in residual.items():
            print(f"  {name:50}{m['average_precision']:>7.3f}{m['roc_auc']:>9.3f}")

        streams.print_patterns(window, patterns, 26)

        streams.write_stream_results(
            "sparkov",
            {
                "data": meta,
                **backtests.figures(),
                "early_days": {t: early_days(backtests.reports[t], 28) for t in runs},
                "split": split.figures(labels),
                "features": list(FEATURES),
                "test_window": window,
                "patterns": patterns,
                "residual_signals": {"of": residual_of, "test_window": residual},
            },
            begun,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
