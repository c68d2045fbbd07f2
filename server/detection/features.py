"""Per-key state in event time and the named features each transaction is scored on.

Keys are accounts, merchants, devices and IPs. Only the features a rule set (and a declared
model feature list) references are computed, and only the state they need is kept.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from math import asin, cos, exp, inf, log, log1p, pi, sin, sqrt
from zlib import crc32

from server.transactions import Transaction

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0
WINDOW_S = HOUR
"""How far back an account's exact recent transactions are kept (1 min, 10 min, 1 h)."""
MAX_RECENT = 500
MAX_MERCHANTS = 256
MAX_COUNTRIES = 256
MAX_DEVICES = 32
MAX_MCCS = 64
MAX_DISTINCT_24H = 64
MAX_MCC_STATS = 10_000
"""MCCs whose amounts are kept (ISO 18245 has under 1,000): past it, a new one is unknown."""
MCC_MIN_COUNT = 30
"""Transactions an MCC needs before its amounts say what is usual for it."""
TYPICAL_AMOUNT = 40.0
"""The typical amount (geometric mean) that the model's absolute amounts (its bands, tiny and
round amounts) were drawn for: a card purchase in dollars or euros. Our simulator's, the
handbook-style and the Sparkov-style streams' are 37-40; a yen stream's is ~150 times it."""
AMOUNT_SCALE_FROM = 1_000
"""Amounts (above 0) the stream's scale needs before it is known: until then amounts are
taken as they are, in the units TYPICAL_AMOUNT is in."""
AMOUNT_SCALE_EVERY = 1_000
"""The scale is worked out again every this many amounts: it moves in steps, rarely."""
AMOUNT_SCALE_MIN = 1.0
"""The scale never goes below this: it stretches the absolute amounts for a currency whose
unit is worth less than a dollar (yen, rupees, won), and never shrinks them. A stream whose
typical amount is under TYPICAL_AMOUNT is a stream of small payments in such a unit, or one
that began with a burst of card tests (1.00 each: a scale of 0.025 would have put the card
testing rule's 5.00 at 0.125 and stopped it firing), not a currency worth more."""
HASH_CACHE = 200_000  # ids whose stable hash is remembered (a few MB at most)
EARTH_RADIUS_KM = 6371.0088
DEFAULT_TTL_S = 45 * DAY
NEW_PAYEE_HOURS = 30 * 24
DAY_ONLY_FROM = 100
"""A stream's timestamp resolution is measured on its first `DAY_ONLY_FROM` timestamps: the
largest of a day and an hour that divides every one's time since midnight in its own offset.
All at 00:00:00: the date only (BankSim's `step`, read with `--time-unit d`); all on the
hour: the hour only (PaySim's `step`, read with `--time-unit h`). From then on, until a
timestamp that breaks it, what needs a finer time is unknown (`Featurizer.values_one`)."""
"""A merchant with no transaction in this many hours before one is a new payee again."""
DEFAULT_SMALL_AMOUNT = 5.0
_RAD = pi / 180

Value = float | int | bool | None

# Bucket tiers for windows: (width, kept buckets). A window counts whole buckets, so it is
# exact to its tier's width: 10 min and 1 h to the minute, 24 h to the hour, 7 d and 30 d
# to the day (the account's 1 min, 10 min and 1 h windows are exact: see AccountState).
TIERS: dict[str, tuple[float, int]] = {
    "minute": (MINUTE, 60),
    "hour": (HOUR, 24),
    "day": (DAY, 30),
}
WINDOWS: dict[str, tuple[str, int]] = {
    "10m": ("minute", 10),
    "1h": ("minute", 60),
    "24h": ("hour", 24),
    "7d": ("day", 7),
    "30d": ("day", 30),
}
KEY_FIELDS: dict[str, str] = {
    # a Featurizer's key states -> the transaction field keying them
    "accounts": "account_id",
    "merchants": "merchant_id",
    "devices": "device_id",
    "ips": "ip",
}
ENTITIES: dict[str, str | None] = {
    # entity -> the transaction field keying it (None: always present)
    "account": None,
    "merchant": None,
    "device": "device_id",
    "ip": "ip",
}


def _catalogue() -> dict[str, str]:
    names: dict[str, str] = {
        "amount": "the transaction's amount",
        "local_hour": "hour of day in the timestamp's own offset (0-23)",
        "history": "the account's prior transactions (since its state was created)",
        "mean": "mean of the account's prior amounts (from the 6th, each counted at most 3 "
        "standard deviations above the mean before it)",
        "std": "sample standard deviation of the same amounts",
        "amount_ratio": "amount / mean; unknown without history or with a zero mean",
        "amount_z": "(amount - mean) / std; unknown under 2 prior, infinite when std is 0",
        "since_prev_s": "seconds since the account's previous transaction",
        "distance_km": "distance from the account's previous located transaction",
        "elapsed_s": "seconds since the account's previous located transaction",
        "speed_kmh": "distance_km over elapsed_s (at least 1 s), in km/h",
        "is_new_merchant": "first purchase at this merchant for the account",
        "is_new_country": "first transaction in this country for the account",
        "is_new_device": "first transaction from this device for the account",
        "is_new_mcc": "first transaction with this MCC for the account",
        "distinct_merchants_24h": "distinct merchants of the account in 24 h, this one included",
        "distinct_countries_24h": "distinct countries of the account in 24 h, this one included",
        "account_count_1m": "the account's transactions in the last minute, this one included",
        "account_small_count_10m": "the account's amounts under the small amount in 10 min, "
        "this one included",
        "account_small_scaled_count_10m": "the account's amounts under small_amount_scaled in "
        "10 min, this one included: the small amount on the stream's scale",
        "merchant_labels_2d": "labels learnt today or yesterday on the merchant's transactions",
        "merchant_frauds_2d": "fraud labels among merchant_labels_2d",
        "merchant_fraud_rate_2d": "merchant_frauds_2d / merchant_labels_2d; unknown without",
        "merchant_labels_7d": "labels learnt in 7 d on the merchant's transactions",
        "merchant_labels_30d": "labels learnt in 30 d on the merchant's transactions",
        "merchant_frauds_7d": "fraud labels among merchant_labels_7d",
        "merchant_frauds_30d": "fraud labels among merchant_labels_30d",
        "merchant_fraud_rate_7d": "merchant_frauds_7d / merchant_labels_7d; unknown without",
        "merchant_fraud_rate_30d": "merchant_frauds_30d / merchant_labels_30d; unknown without",
        "merchant_fraud_run": "fraud labels learnt on the merchant since its last legitimate "
        "one, in 30 days (a day's labels count when all are fraud)",
        "amount_fraud_rate": "fraud labels over labels + 1 among transactions of about this "
        "amount (within 2.5 %), every merchant's, each label weighing half after 30 d",
        "hour_fraud_rate": "fraud labels over labels + 1 among transactions at this hour of "
        "the day (local_hour), every account's, each label weighing half after 30 d",
        "mcc_amount_z": "standard deviations of log(1 + amount) from their mean among the "
        "earlier transactions with this MCC, every account's; unknown without an MCC or "
        "under 30 of them",
        "account_inflow_24h": "amounts the account received in 24 h, as the merchant_id (the "
        "payee) of earlier transactions: money passed straight on",
        "is_new_payee": "no earlier transaction, from any account, at this merchant_id in the "
        "30 days before (to the hour)",
        "amount_scale": f"the stream's typical amount (the geometric mean of every amount above "
        f"0 before this one, every account's, worked out every {AMOUNT_SCALE_EVERY:,}) over "
        f"{TYPICAL_AMOUNT:g}, at least {AMOUNT_SCALE_MIN:g}: 1 for dollars or euros, ~150 for "
        f"yen; unknown under "
        f"{AMOUNT_SCALE_FROM:,} amounts",
        "amount_scaled": "amount / amount_scale: the amount on the scale the default pack's "
        "amounts are in (the amount itself while amount_scale is unknown)",
        "small_amount_scaled": "the small amount ([settings] small_amount) × amount_scale: in "
        "the file's units, as a reason shows it (small_amount while amount_scale is unknown)",
    }
    for entity, key in ENTITIES.items():
        needs = "" if key is None else f" (needs {key})"
        for window in WINDOWS:
            names[f"{entity}_count_{window}"] = (
                f"the {entity}'s transactions in {window}, this one included{needs}"
            )
            names[f"{entity}_sum_{window}"] = (
                f"the {entity}'s amounts summed over {window}, this one included{needs}"
            )
    return names


FEATURES: dict[str, str] = _catalogue()
"""Every feature name a rule or the model may use, with what it means."""


def _units() -> dict[str, str | None]:
    # None: a flag, an hour of the clock, or an amount on the stream's scale (in no currency).
    units: dict[str, str | None] = {
        "amount": "currency",
        "local_hour": None,
        "history": "count",
        "mean": "currency",
        "std": "currency",
        "amount_ratio": "ratio",
        "amount_z": "sd",
        "since_prev_s": "s",
        "distance_km": "km",
        "elapsed_s": "s",
        "speed_kmh": "km/h",
        "distinct_merchants_24h": "count",
        "distinct_countries_24h": "count",
        "account_count_1m": "count",
        "account_small_count_10m": "count",
        "account_small_scaled_count_10m": "count",
        "merchant_fraud_run": "count",
        "amount_fraud_rate": "fraction",
        "hour_fraud_rate": "fraction",
        "mcc_amount_z": "sd",
        "account_inflow_24h": "currency",
        "amount_scale": "ratio",
        "amount_scaled": None,
        "small_amount_scaled": "currency",
    }
    for name in FEATURES:
        if name in units:
            continue
        if name.startswith("is_new_"):
            units[name] = None
        elif "_sum_" in name:
            units[name] = "currency"
        elif "_rate_" in name:
            units[name] = "fraction"
        else:  # windowed counts, the merchants' labels and frauds
            units[name] = "count"
    return units


FEATURE_UNITS: dict[str, str | None] = _units()
"""What each feature measures (a key of `verdict.UNITS`), or None: what a reason's observed
value and threshold are in when its rule observes that feature."""


def _fields() -> dict[str, tuple[str, ...]]:
    acct, ts = "account_id", "timestamp"
    travel = (acct, ts, "lat", "lon")  # "located": a transaction with both
    merchant_labels = ("merchant_id", ts)
    names: dict[str, tuple[str, ...]] = {
        "amount": ("amount",),
        "local_hour": (ts,),
        "history": (acct,),
        "mean": (acct, "amount"),
        "std": (acct, "amount"),
        "amount_ratio": (acct, "amount"),
        "amount_z": (acct, "amount"),
        "since_prev_s": (acct, ts),
        "distance_km": travel,
        "elapsed_s": travel,
        "speed_kmh": travel,
        "is_new_merchant": (acct, "merchant_id"),
        "is_new_country": (acct, "country"),
        "is_new_device": (acct, "device_id"),
        "is_new_mcc": (acct, "mcc"),
        "distinct_merchants_24h": (acct, ts, "merchant_id"),
        "distinct_countries_24h": (acct, ts, "country"),
        "account_count_1m": (acct, ts),
        "account_small_count_10m": (acct, ts, "amount"),
        "account_small_scaled_count_10m": (acct, ts, "amount"),
        "amount_fraud_rate": ("amount", ts),
        "hour_fraud_rate": (ts,),
        "mcc_amount_z": ("mcc", "amount"),
        "account_inflow_24h": (acct, "merchant_id", ts, "amount"),
        "is_new_payee": ("merchant_id", ts),
        "amount_scale": ("amount",),
        "amount_scaled": ("amount",),
        "small_amount_scaled": ("amount",),
    }
    for name in FEATURES:
        if name.startswith("merchant_") and not name.startswith(("merchant_count", "merchant_sum")):
            names[name] = merchant_labels
    for entity, key in ENTITIES.items():
        keyed = (key or f"{entity}_id", ts)
        for window in WINDOWS:
            names[f"{entity}_count_{window}"] = keyed
            names[f"{entity}_sum_{window}"] = (*keyed, "amount")
    return names


FEATURE_FIELDS: dict[str, tuple[str, ...]] = _fields()
"""The transaction fields each feature is computed from: where to look when one misleads."""


def stable_hash(text: str) -> int:
    """Same value in every process (unlike `hash()`), so snapshots survive a restart.

    32 bits: two of an account's 256 merchants colliding has odds of about 1 in 130,000, and
    a collision only hides one first-seen flag.
    """
    return crc32(text.encode())


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in kilometres."""
    # Hand-inlined (no math.radians, no ** 2): this runs for most transactions.
    p1 = lat1 * _RAD
    p2 = lat2 * _RAD
    s_lat = sin((p2 - p1) * 0.5)
    s_lon = sin((lon2 - lon1) * _RAD * 0.5)
    h = s_lat * s_lat + cos(p1) * cos(p2) * s_lon * s_lon
    return 2 * EARTH_RADIUS_KM * asin(sqrt(min(h, 1.0)))


_DIAMETER_KM = 2 * EARTH_RADIUS_KM


# --- bucketed ring counters ------------------------------------------------------------------
# One array('d') per tier and key, holding (bucket id, count, sum) triplets for non-empty
# buckets only, oldest first: a quiet key costs a few triplets, not a full ring.


def bucket_add(buckets: array[float], bid: float, amount: float, keep: int) -> None:
    n = len(buckets)
    if n and buckets[n - 3] == bid:
        buckets[n - 2] += 1.0
        buckets[n - 1] += amount
        return
    if not n or buckets[n - 3] < bid:
        buckets.extend((bid, 1.0, amount))
        if buckets[0] <= bid - keep:
            i = 0
            while buckets[i] <= bid - keep:
                i += 3
            del buckets[:i]
        return
    # A late event goes to its own bucket, if that is still kept.
    if bid <= buckets[n - 3] - keep:
        return
    i = _at_or_before(buckets, bid)
    if i >= 0 and buckets[i] == bid:
        buckets[i + 1] += 1.0
        buckets[i + 2] += amount
    else:
        buckets[i + 3 : i + 3] = array("d", (bid, 1.0, amount))


def bucket_take(buckets: array[float], bid: float, amount: float) -> bool:
    """Undo one `bucket_add(buckets, bid, amount, ...)`: the bucket loses one count and
    `amount`, never going below zero. False when bucket `bid` is no longer kept."""
    i = _at_or_before(buckets, bid)
    if i < 0 or buckets[i] != bid:
        return False
    buckets[i + 1] = max(buckets[i + 1] - 1.0, 0.0)
    buckets[i + 2] = max(buckets[i + 2] - amount, 0.0)
    return True


def _at_or_before(buckets: array[float], bid: float) -> int:
    """Index of the last (id, count, sum) triplet whose id is <= `bid`; -3 if none."""
    i = len(buckets) - 3
    while i >= 0 and buckets[i] > bid:
        i -= 3
    return i


def bucket_sum(buckets: array[float], bid: float, span: int) -> tuple[float, float]:
    """(count, sum) over buckets in (bid - span, bid]: later buckets do not count."""
    count = total = 0.0
    lo = bid - span
    i = len(buckets) - 3
    while i >= 0:
        b = buckets[i]
        if b <= lo:
            break
        if b <= bid:
            count += buckets[i + 1]
            total += buckets[i + 2]
        i -= 3
    return count, total


# --- state --------------------------------------------------------------------------------


_SCAN_UP_TO = 8
"""A sorted array of hashes up to this long is searched by a scan (`in`, ~170 instructions
an item), a longer one by bisection (~1,300 and up): most accounts have one country and
one device, and a few merchants."""


def _seen(seen: array[int] | None, key: int, cap: int) -> tuple[array[int], bool | None]:
    """Remember `key` (a stable 32-bit hash) in a sorted array capped at `cap`; and was it
    new? None when novelty cannot be judged: nothing seen before, or the array is full (once
    an account has used `cap` distinct values one more says nothing, and flagging every later
    first use would be noise)."""
    if seen is None:
        return array("I", (key,)), None
    i = bisect_left(seen, key)
    n = len(seen)
    if i < n and seen[i] == key:
        return seen, False
    if n >= cap:
        return seen, None
    seen.insert(i, key)
    return seen, True if n else None


def _distinct(recent: array[float], key: int, t: float) -> tuple[array[float], int]:
    """Refresh `key` at `t` in (key, last time) pairs kept for 24 h; distinct keys then."""
    cutoff = t - DAY
    out = array("d")
    seen = False
    for i in range(0, len(recent), 2):
        k, last = recent[i], recent[i + 1]
        if k == key:
            seen = True
            last = max(last, t)
        if last > cutoff:
            out.append(k)
            out.append(last)
    if not seen and len(out) < 2 * MAX_DISTINCT_24H:
        out.append(key)
        out.append(t)
    return out, len(out) // 2


class KeyState:
    """Windows of one merchant, device or IP: a tier array each, only for tiers in use."""

    __slots__ = ("day", "hour", "labels", "last_t", "minute", "risk")

    def __init__(self) -> None:
        self.last_t = -inf
        # Merchants only: for the day they were last computed for, the labels of the days
        # before it (`_earlier_labels`) and its risk features until a label arrives; most
        # of a merchant's transactions then cost one comparison.
        self.risk: tuple[float, LabelSums, dict[str, Value] | None] | None = None
        self.minute: array[float] | None = None
        self.hour: array[float] | None = None
        self.day: array[float] | None = None
        # Merchants only: (day, frauds, labels) triplets of labels by the day they were learnt.
        self.labels: array[float] | None = None


NORM_CAP_FROM = 5
NORM_CAP_SD = 3.0
"""The account's norm (`mean`, `std`) counts an amount at most `NORM_CAP_SD` standard
deviations above the mean before it, once the account has `NORM_CAP_FROM` prior
transactions (winsorized). A stolen card's spree of big amounts would otherwise raise the
norm it is measured against: after a few frauds the next one looked ordinary. A lasting
rise in spending still moves the norm, by up to 3 standard deviations a transaction."""


class AccountState(KeyState):
    """What one account has done, kept small: there will be millions of these.

    Recent transactions (the last hour, for exact 1 min / 10 min / 1 h windows) live in two
    parallel sorted `array('d')`s. Merchants, countries, devices and MCCs are sorted arrays
    of stable 32-bit hashes rather than sets of strings: a set costs 216 bytes empty and
    keeps every id string alive.
    """

    __slots__ = (
        "count",
        "countries",
        "devices",
        "distinct_countries",
        "distinct_merchants",
        "loc_lat",
        "loc_lon",
        "loc_t",
        "m2",
        "mccs",
        "mean",
        "merchants",
        "recent_amounts",
        "recent_times",
    )

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.recent_times: array[float] = array("d")
        self.recent_amounts: array[float] = array("d")
        self.loc_lat = 0.0
        self.loc_lon = 0.0
        self.loc_t: float | None = None
        self.merchants: array[int] | None = None
        self.countries: array[int] | None = None
        self.devices: array[int] | None = None
        self.mccs: array[int] | None = None
        self.distinct_merchants: array[float] | None = None
        self.distinct_countries: array[float] | None = None

    def learn_recent(self, t: float, amount: float) -> None:
        times = self.recent_times
        if not times or t >= times[-1]:
            times.append(t)
            self.recent_amounts.append(amount)
        elif t > times[-1] - WINDOW_S:
            # Late event: insert in order so window counts stay bisections.
            i = bisect_right(times, t)
            times.insert(i, t)
            self.recent_amounts.insert(i, amount)
        # Pruned against the newest event seen, so a late event cannot stretch the window.
        cutoff = times[-1] - WINDOW_S
        if times[0] <= cutoff or len(times) > MAX_RECENT:
            drop = max(bisect_right(times, cutoff), len(times) - MAX_RECENT)
            del times[:drop]
            del self.recent_amounts[:drop]


# --- what the featurizer computes ---------------------------------------------------------


Keyed = tuple[
    str | None,
    str | None,
    tuple[tuple[str, str, str, float, int], ...],
    tuple[tuple[str, float, int], ...],
]
"""One entity's windows, as `Featurizer._keyed` reads them: the `Featurizer` attribute
holding its states and the transaction field keying them (None, None: the account's own);
per window (count feature, sum feature, tier, tier width, buckets spanned); per tier kept
(tier, width, buckets kept)."""
_KEYED: tuple[tuple[str, str | None, str | None], ...] = (
    ("account", None, None),
    ("merchant", "merchants", "merchant_id"),
    ("device", "devices", "device_id"),
    ("ip", "ips", "ip"),
)


_SMALL_COUNTS = ("account_small_count_10m", "account_small_scaled_count_10m")
_SCALED = frozenset(
    {"amount_scale", "amount_scaled", "small_amount_scaled", "account_small_scaled_count_10m"}
)
"""The features that need the stream's scale (`AmountScale`)."""


@dataclass(frozen=True, slots=True)
class Plan:
    """Which state to keep and which features to compute, from the feature names in use."""

    names: frozenset[str]
    recent: bool  # the account's exact recent transactions
    recent_sums: bool
    travel: bool
    novelty: frozenset[str]  # merchant, country, device, mcc
    distinct: frozenset[str]  # merchants, countries
    tiers: Mapping[str, frozenset[str]]  # entity -> bucket tiers kept
    # entity -> (count feature, sum feature, tier, buckets spanned)
    windows: Mapping[str, tuple[tuple[str, str, str, int], ...]]
    merchant_risk: bool
    amount_risk: bool
    hour_risk: bool
    mcc_amounts: bool
    scale: bool  # the stream's typical amount
    # (account_small_count_10m or account_small_scaled_count_10m, on the scale) of those used
    small_counts: tuple[tuple[str, bool], ...]
    inflow: bool  # the account's receipts as a payee: the merchants' hour tier, at its key
    new_payee: bool  # the merchant's latest hour bucket, read before this one is learnt
    keyed: tuple[Keyed, ...]  # the entities with a bucket tier, in `_KEYED`'s order

    @classmethod
    def build(cls, names: Iterable[str]) -> Plan:
        wanted = frozenset(names)
        unknown = sorted(wanted - FEATURES.keys())
        if unknown:
            raise ValueError(f"unknown features: {', '.join(unknown)}")
        tiers: dict[str, set[str]] = {e: set() for e in ENTITIES}
        windows: dict[str, list[tuple[str, str, str, int]]] = {e: [] for e in ENTITIES}
        recent = bool(wanted & {"account_count_1m", *_SMALL_COUNTS})
        recent_sums = False
        for entity in ENTITIES:
            for window, (tier, span) in WINDOWS.items():
                count, total = f"{entity}_count_{window}", f"{entity}_sum_{window}"
                if not wanted & {count, total}:
                    continue
                if entity == "account" and tier == "minute":
                    recent = True  # exact, from the recent transactions
                    recent_sums = recent_sums or total in wanted
                    continue
                tiers[entity].add(tier)
                windows[entity].append((count, total, tier, span))
        risk = any(n.startswith(("merchant_fraud", "merchant_labels")) for n in wanted)
        inflow = "account_inflow_24h" in wanted
        new_payee = "is_new_payee" in wanted
        if inflow or new_payee:
            tiers["merchant"].add("hour")
        return cls(
            names=wanted,
            recent=recent,
            recent_sums=recent_sums,
            travel=bool(wanted & {"distance_km", "elapsed_s", "speed_kmh"}),
            novelty=frozenset(
                k for k in ("merchant", "country", "device", "mcc") if f"is_new_{k}" in wanted
            ),
            distinct=frozenset(
                k for k in ("merchants", "countries") if f"distinct_{k}_24h" in wanted
            ),
            tiers={e: frozenset(t) for e, t in tiers.items()},
            windows={e: tuple(w) for e, w in windows.items()},
            merchant_risk=risk,
            amount_risk="amount_fraud_rate" in wanted,
            hour_risk="hour_fraud_rate" in wanted,
            mcc_amounts="mcc_amount_z" in wanted,
            scale=bool(wanted & _SCALED),
            small_counts=tuple((n, n != _SMALL_COUNTS[0]) for n in _SMALL_COUNTS if n in wanted),
            inflow=inflow,
            new_payee=new_payee,
            keyed=tuple(
                (
                    states,
                    field,
                    tuple((c, s, tier, TIERS[tier][0], span) for c, s, tier, span in windows[e]),
                    tuple((tier, *TIERS[tier]) for tier in sorted(tiers[e])),
                )
                for e, states, field in _KEYED
                if tiers[e]
            ),
        )


AMOUNT_BUCKETS_PER_E = 40
"""Amount buckets: log1p(amount) in steps of 1/40, so each is about 2.5 % wide: fine enough
for a step at any amount (the handbook-style stream's frauds start at exactly 220), ~1,400
buckets up to the largest amount accepted."""
AMOUNT_HALF_LIFE_S = 30 * DAY
"""A label counts half after 30 days of event time: the rates follow a change in what fraud
looks like, and a bucket stays three numbers (no days of labels to keep, as merchants do)."""


def amount_bucket(amount: float) -> int:
    return int(log1p(amount) * AMOUNT_BUCKETS_PER_E) if amount > 0 else 0


def _learn_amount(amounts: dict[int, list[float]], bucket: int, t: float, is_fraud: bool) -> None:
    counts = amounts.get(bucket)
    if counts is None:
        amounts[bucket] = [1.0, 1.0 if is_fraud else 0.0, t]
        return
    labels, frauds, last = counts
    if t > last:
        keep = 0.5 ** ((t - last) / AMOUNT_HALF_LIFE_S)
        labels, frauds, last = labels * keep, frauds * keep, t
    counts[0], counts[1], counts[2] = labels + 1.0, frauds + (1.0 if is_fraud else 0.0), last


def _unlearn_amount(amounts: dict[int, list[float]], bucket: int, t: float, is_fraud: bool) -> None:
    counts = amounts.get(bucket)
    if counts is None:
        return
    labels, frauds, last = counts
    weight = 0.5 ** ((last - t) / AMOUNT_HALF_LIFE_S) if last > t else 1.0
    counts[0] = max(labels - weight, 0.0)
    if is_fraud:
        counts[1] = max(frauds - weight, 0.0)


def _mcc_amount_z(stats: dict[str, list[float]], mcc: str, x: float) -> float | None:
    """How unusual an amount is for `mcc` (its z-score in `x`, log(1 + amount) (0 for an
    amount of 0), against the MCC's earlier transactions, None under MCC_MIN_COUNT of them),
    then the amount learnt. A $10 fuel purchase where fuel runs $60 is as unusual as a $300
    one: fraud at a category picks its own amounts, whoever the card's holder is."""
    s = stats.get(mcc)
    if s is None:
        if len(stats) >= MAX_MCC_STATS:
            return None
        s = stats[mcc] = [0.0, 0.0, 0.0]
    n, mean, m2 = s
    z: float | None = None
    if n >= MCC_MIN_COUNT:
        sd = sqrt(m2 / (n - 1))
        z = (x - mean) / sd if sd > 0 else 0.0
    n += 1.0
    delta = x - mean
    mean += delta / n
    s[0], s[1], s[2] = n, mean, m2 + delta * (x - mean)
    return z


def _decayed_rate(counts: list[float], t: float) -> float:
    """Frauds over labels + 1 in an amount's or an hour's bucket (`counts`: [labels, frauds,
    time of the last]) as of `t`, shrunk towards 0 when few (one fraud out of one label is
    0.5, not certainty). A bucket with no labels has 0 (no call)."""
    labels, frauds, last = counts
    keep = 0.5 ** ((t - last) / AMOUNT_HALF_LIFE_S) if t > last else 1.0
    return frauds * keep / (labels * keep + 1.0)


class AmountScale:
    """The stream's typical amount against TYPICAL_AMOUNT, learnt from every amount: what
    makes an amount of 5 tiny in dollars makes one of 750 tiny in yen, without anyone saying
    which currency the stream is in. The geometric mean (a running mean of log amounts),
    not a median: it moves with the stream exactly (every amount times 150, the scale too; a
    median in buckets moves by whole buckets), is two numbers, and on our three dollar-like
    streams it is 37-40 where their medians are 38-57. It counts every amount since the
    start, so a burst (card tests, a spree) hardly moves it once it is known."""

    __slots__ = ("log_sum", "scale", "seen")

    def __init__(self) -> None:
        self.log_sum = 0.0
        self.seen = 0
        self.scale: float | None = None  # unknown until AMOUNT_SCALE_FROM amounts

    def learn_more(self) -> None:
        """The scale worked out again from the amounts so far. `Featurizer.values_one` adds
        each amount's log to `log_sum` and `seen` itself (it runs for every row) and calls
        this every AMOUNT_SCALE_EVERY amounts."""
        if self.seen >= AMOUNT_SCALE_FROM:
            self.scale = max(AMOUNT_SCALE_MIN, exp(self.log_sum / self.seen) / TYPICAL_AMOUNT)

    def state(self) -> list[float]:
        return [self.log_sum, float(self.seen), 0.0 if self.scale is None else self.scale]

    def put(self, state: list[float]) -> None:
        """Back to `state()`'s: a snapshot's, or the figure before a transaction it held."""
        log_sum, seen, scale = state
        self.log_sum, self.seen = float(log_sum), int(seen)
        self.scale = float(scale) if scale > 0 else None


_NO_LABELS: dict[str, Value] = {
    "merchant_labels_2d": 0,
    "merchant_frauds_2d": 0,
    "merchant_fraud_rate_2d": None,
    "merchant_labels_7d": 0,
    "merchant_labels_30d": 0,
    "merchant_frauds_7d": 0,
    "merchant_frauds_30d": 0,
    "merchant_fraud_rate_7d": None,
    "merchant_fraud_rate_30d": None,
    "merchant_fraud_run": 0,
}


LabelSums = tuple[float, float, float, float, float, float, float]
"""(labels, frauds) over 2, 7 and 30 days, as merchant risk counts them."""


def _earlier_labels(labels: array[float], day: float) -> LabelSums:
    """Labels and frauds learnt in the 2, 7 and 30 days up to `day`, `day` itself left out:
    they no longer change once `day` has begun."""
    n2, f2 = bucket_sum(labels, day - 1, 1)
    n7, f7 = bucket_sum(labels, day - 1, 6)
    n30, f30 = bucket_sum(labels, day - 1, 29)
    run = 0.0
    i = len(labels) - 3
    while i >= 0:
        b = labels[i]
        if b <= day - 30:
            break
        if b <= day - 1:
            if labels[i + 1] != labels[i + 2]:
                break
            run += labels[i + 2]
        i -= 3
    return n2, f2, n7, f7, n30, f30, run


def _risk(m: KeyState, labels: array[float], t: float, v: dict[str, Value]) -> None:
    """Merchant risk from the labels learnt on its transactions by `t` (labels, not all
    transactions, are the denominator: a merchant nobody has labelled has no state)."""
    day = t // DAY
    cached = m.risk
    if cached is None or cached[0] != day:
        # Once a day per merchant: where every transaction is labelled (a backtest), labels
        # arrive between most of a merchant's transactions, and summing up to 30 days of
        # buckets for each of them was a tenth of computing the features.
        cached = (day, _earlier_labels(labels, day), None)
    elif cached[2] is not None:
        v.update(cached[2])
        return
    n2, f2, n7, f7, n30, f30, run = cached[1]
    # The day's own labels (its bucket, if any; later ones are not counted).
    i = len(labels) - 3
    while i >= 0 and labels[i] > day:
        i -= 3
    if i >= 0 and labels[i] == day:
        count, frauds = labels[i + 1], labels[i + 2]
        run = run + frauds if count == frauds else 0.0
        n2 += count
        n7 += count
        n30 += count
        f2 += frauds
        f7 += frauds
        f30 += frauds
    risk: dict[str, Value] = {
        "merchant_labels_2d": int(n2),
        "merchant_frauds_2d": int(f2),
        "merchant_fraud_rate_2d": f2 / n2 if n2 else None,
        "merchant_labels_7d": int(n7),
        "merchant_labels_30d": int(n30),
        "merchant_frauds_7d": int(f7),
        "merchant_frauds_30d": int(f30),
        "merchant_fraud_rate_7d": f7 / n7 if n7 else None,
        "merchant_fraud_rate_30d": f30 / n30 if n30 else None,
        "merchant_fraud_run": int(run),
    }
    m.risk = (day, cached[1], risk)
    v.update(risk)


class Featurizer:
    """Keeps every key's state; `values_one` computes a transaction's features, then learns it.

    `names` are the features to compute (what the rules and the model use). Idle keys are
    evicted `ttl_s` of event time after their last transaction.
    """

    __slots__ = (
        "accounts",
        "amounts",
        "dated",
        "devices",
        "hashes",
        "hours",
        "ips",
        "mcc_amounts",
        "merchants",
        "newest",
        "next_sweep",
        "plan",
        "resolution",
        "scale",
        "small_amount",
        "ttl_s",
    )

    def __init__(
        self,
        names: Iterable[str] = FEATURES,
        *,
        small_amount: float = DEFAULT_SMALL_AMOUNT,
        ttl_s: float = DEFAULT_TTL_S,
    ) -> None:
        if ttl_s < 31 * DAY:
            raise ValueError(f"ttl_s must be at least 31 days (the longest window), got {ttl_s}")
        self.plan = Plan.build(names)
        # The stream's timestamp resolution so far (DAY, HOUR; 0.0 once a timestamp is
        # finer, for good) and how many timestamps were read: not kept in snapshots, so
        # measured again after a restart (`DAY_ONLY_FROM`).
        self.resolution = DAY
        self.dated = 0
        self.small_amount = small_amount
        self.ttl_s = ttl_s
        self.accounts: dict[str, AccountState] = {}
        self.merchants: dict[str, KeyState] = {}
        # Labels by amount (`amount_bucket`): [labels, frauds, event time of the last], decayed.
        self.amounts: dict[int, list[float]] = {}
        # Labels by the local hour of day (0-23), the same way.
        self.hours: dict[int, list[float]] = {}
        # Per MCC, log(1 + amount) of every transaction so far: [count, mean, sum of squares
        # of deviations] (Welford).
        self.mcc_amounts: dict[str, list[float]] = {}
        self.scale = AmountScale()
        self.devices: dict[str, KeyState] = {}
        self.ips: dict[str, KeyState] = {}
        self.hashes: dict[str, int] = {}
        self.newest = -inf
        self.next_sweep = -inf

    def use(self, names: Iterable[str], small_amount: float | None = None) -> None:
        """Compute `names` from now on (after a rules reload). State not kept so far starts
        empty; state no longer needed is kept, and stops being updated."""
        self.plan = Plan.build(names)
        if small_amount is not None:
            self.small_amount = small_amount

    def values_one(self, tx: Transaction, t: float | None = None) -> dict[str, Value]:
        """`tx`'s features against its keys' history, then `tx` learnt. `t`:
        `tx.timestamp.timestamp()`, if the caller has it."""
        if t is None:
            t = tx.timestamp.timestamp()
        amount = float(tx.amount)
        plan = self.plan
        if t > self.newest:
            self.newest = t
            if t >= self.next_sweep:
                self.evict(t)
        # A stream of dates only (every payment of a day at one instant, 00:00) or of hours
        # only: its windows shorter than that would count the whole day or hour, a dated
        # payment would be at night and two in one step 0 s apart: unknown instead
        # (`coarse`: the resolution, 0.0 for a stream with times, which leaves this at its
        # first timestamp finer than an hour).
        coarse = 0.0
        if self.resolution:
            ts = tx.timestamp
            if ts.minute or ts.second or ts.microsecond:
                self.resolution = 0.0
            else:
                if ts.hour:
                    self.resolution = HOUR
                self.dated += 1
                if self.dated > DAY_ONLY_FROM:
                    coarse = self.resolution
        day_only = coarse == DAY
        state = self.accounts.get(tx.account_id)
        if state is None:
            state = self.accounts[tx.account_id] = AccountState()
        n = state.count
        mean = state.mean
        if n > 1:
            std = sqrt(state.m2 / (n - 1))
            z: float | None = (amount - mean) / std if std > 0 else (inf if amount > mean else 0.0)
        else:
            std = 0.0
            z = None
        hour = tx.timestamp.hour
        v: dict[str, Value] = {
            "amount": amount,
            "local_hour": None if day_only else hour,
            "history": n,
            "mean": mean,
            "std": std,
            "amount_ratio": amount / mean if n and mean > 0 else None,
            "amount_z": z,
            "since_prev_s": t - state.last_t if n and t >= state.last_t else None,
        }
        # Most accounts did nothing in the hour before (or ever): their windows hold this
        # one alone, and learning it drops every older time (see `_recent`, `learn_recent`).
        quiet = False
        if plan.recent:
            if day_only:
                v.update(self._unknown_recent)
            else:
                times = state.recent_times
                if not times or times[-1] <= t - HOUR:
                    quiet = True
                    v["account_count_1m"] = v["account_count_10m"] = v["account_count_1h"] = 1
                    for name, scaled in plan.small_counts:
                        small = (
                            self.small_amount * (self.scale.scale or 1.0)
                            if scaled
                            else self.small_amount
                        )
                        v[name] = 1 if amount < small else 0
                    if plan.recent_sums:
                        v["account_sum_10m"] = v["account_sum_1h"] = amount + 0.0
                else:
                    self._recent(state, t, amount, v)
                if coarse:  # the hour only: its 1 h window is kept
                    v.update(self._unknown_sub_hour)
        lat = tx.lat
        lon = tx.lon
        located = lat is not None and lon is not None
        loc_t = state.loc_t
        if plan.travel:
            # Not two located payments in one step of a coarse stream: they have no speed.
            if loc_t is not None and located and not (coarse and t == loc_t):
                # `haversine_km`, written out (this runs for most rows), to the same bits.
                p1 = state.loc_lat * _RAD
                p2 = lat * _RAD  # type: ignore[operator]
                s_lat = sin((p2 - p1) * 0.5)
                s_lon = sin((lon - state.loc_lon) * _RAD * 0.5)  # type: ignore[operator]
                h = s_lat * s_lat + cos(p1) * cos(p2) * s_lon * s_lon
                d = _DIAMETER_KM * asin(sqrt(1.0 if h > 1.0 else h))  # min(h, 1.0)
                elapsed = t - loc_t if t >= loc_t else loc_t - t  # abs(t - loc_t)
                v["distance_km"] = d
                v["elapsed_s"] = elapsed
                # Same-second pairs would divide by zero; one second keeps them "very fast".
                v["speed_kmh"] = d * 3600.0 / (1.0 if elapsed < 1.0 else elapsed)
            else:
                v["distance_km"] = v["elapsed_s"] = v["speed_kmh"] = None
        if plan.novelty:
            self._novelty(state, tx, v)
        if plan.distinct:
            self._distinct(state, tx, t, v)
        if plan.inflow:
            # Read before this transaction is learnt: paying oneself does not count its own.
            payee = self.merchants.get(tx.account_id)
            hours = None if payee is None else payee.hour
            v["account_inflow_24h"] = 0.0 if hours is None else bucket_sum(hours, t // HOUR, 24)[1]
        # The merchant's state as it was before this transaction (None: none yet), for the
        # payee's novelty and merchant risk (`_keyed` keeps its windows).
        merchant = self.merchants.get(tx.merchant_id)
        if plan.new_payee:
            # Read before this transaction is learnt. The merchant's newest hour bucket is its
            # latest transaction (`bucket_add` always keeps it), not `last_t`, which a label
            # on one of its transactions also moves. No state is new: eviction (after
            # `ttl_s` >= 31 days idle) and a replay (31 days) drop no merchant paid in 30.
            hours = None if merchant is None else merchant.hour
            v["is_new_payee"] = not hours or hours[-3] <= t // HOUR - NEW_PAYEE_HOURS
        if plan.keyed:
            self._keyed(state, merchant, tx, t, amount, v)
        # log(1 + amount) once, for the amount's bucket (`amount_bucket`) and its MCC's z.
        log_amount = log1p(amount) if amount > 0 and (plan.amount_risk or plan.mcc_amounts) else 0.0
        if plan.amount_risk:
            counts = self.amounts.get(int(log_amount * AMOUNT_BUCKETS_PER_E))
            v["amount_fraud_rate"] = 0.0 if counts is None else _decayed_rate(counts, t)
        if plan.hour_risk:
            if day_only:
                v["hour_fraud_rate"] = None
            else:
                counts = self.hours.get(hour)
                v["hour_fraud_rate"] = 0.0 if counts is None else _decayed_rate(counts, t)
        if plan.mcc_amounts:
            v["mcc_amount_z"] = (
                None if tx.mcc is None else _mcc_amount_z(self.mcc_amounts, tx.mcc, log_amount)
            )
        if plan.scale:
            scale = self.scale
            known = scale.scale
            v["amount_scale"] = known
            v["amount_scaled"] = amount if known is None else amount / known
            v["small_amount_scaled"] = self.small_amount * (known or 1.0)
            if amount > 0:  # the scale's learning, here: this runs for every row
                scale.log_sum += log(amount)
                seen = scale.seen = scale.seen + 1
                if seen % AMOUNT_SCALE_EVERY == 0:
                    scale.learn_more()
        if plan.merchant_risk:
            # A merchant `_keyed` has just created has no labels either.
            if merchant is None or merchant.labels is None:
                v.update(_NO_LABELS)  # most merchants: no label on record
            else:
                _risk(merchant, merchant.labels, t, v)
        # Learn: the account's running stats, recent window and last location.
        x = amount
        if n >= NORM_CAP_FROM and std > 0 and x > mean + NORM_CAP_SD * std:
            x = mean + NORM_CAP_SD * std  # an outlier moves the account's norm little
        n += 1
        state.count = n
        # Welford: a numerically stable running mean and variance, order-independent, O(1).
        delta = x - mean
        mean += delta / n
        state.mean = mean
        state.m2 += delta * (x - mean)
        if t > state.last_t:
            state.last_t = t
        if quiet:
            times = state.recent_times
            if times:
                del times[:]
                del state.recent_amounts[:]
            times.append(t)
            state.recent_amounts.append(amount)
        elif plan.recent:
            state.learn_recent(t, amount)
        # A late event must not move the account back to where it was earlier.
        if located and (loc_t is None or t >= loc_t):
            state.loc_lat = lat  # type: ignore[assignment]
            state.loc_lon = lon  # type: ignore[assignment]
            state.loc_t = t
        return v

    def learn_except(self, tx: Transaction, t: float, held: Collection[str]) -> None:
        """`values_one`'s learning for `tx`'s keys but those of the kinds in `held`
        (`KEY_FIELDS`: accounts, merchants, devices, ips), which hold `tx` already: a replay
        of stored transactions into a snapshot encoded while the detector scored them. Each
        held key is swapped for a blank one while `values_one` runs, and put back; the
        features (computed against blanks) are dropped. Rare and off the scoring path, so
        `values_one` itself stays as it is."""
        swapped: list[tuple[dict[str, KeyState], str, KeyState | None]] = []
        for kind in held:
            key = getattr(tx, KEY_FIELDS[kind])
            if key is None:
                continue
            states: dict[str, KeyState] = getattr(self, kind)
            swapped.append((states, key, states.get(key)))
            states[key] = AccountState() if kind == "accounts" else KeyState()
        try:
            self.values_one(tx, t)
        finally:
            for states, key, state in swapped:
                if state is None:
                    states.pop(key, None)
                else:
                    states[key] = state

    # -- the parts --------------------------------------------------------------------------

    @property
    def _unknown_recent(self) -> dict[str, Value]:
        """What `_recent` sets, unknown: a stream of dates only cannot tell a minute from
        its day."""
        names = ["account_count_1m", "account_count_10m", "account_count_1h"]
        names += [name for name, _ in self.plan.small_counts]
        if self.plan.recent_sums:
            names += ["account_sum_10m", "account_sum_1h"]
        return dict.fromkeys(names)

    @property
    def _unknown_sub_hour(self) -> dict[str, Value]:
        """What `_recent` sets for windows under an hour, unknown: a stream of hours only
        cannot tell a minute from its hour."""
        names = ["account_count_1m", "account_count_10m"]
        names += [name for name, _ in self.plan.small_counts]
        if self.plan.recent_sums:
            names.append("account_sum_10m")
        return dict.fromkeys(names)

    def _recent(self, state: AccountState, t: float, amount: float, v: dict[str, Value]) -> None:
        times = state.recent_times
        # Windows are (t - w, t] around this event's own time, so later events that arrived
        # first are not counted against an earlier one.
        hi = len(times) if not times or times[-1] <= t else bisect_right(times, t)
        lo_1m = bisect_right(times, t - MINUTE, 0, hi)
        lo_10m = bisect_right(times, t - 600.0, 0, lo_1m)
        lo_1h = bisect_right(times, t - HOUR, 0, lo_10m)
        v["account_count_1m"] = hi - lo_1m + 1
        v["account_count_10m"] = hi - lo_10m + 1
        v["account_count_1h"] = hi - lo_1h + 1
        amounts = state.recent_amounts
        for name, scaled in self.plan.small_counts:
            # On the scale before this amount is learnt, as `amount_scale` reads it.
            small = self.small_amount * (self.scale.scale or 1.0) if scaled else self.small_amount
            tiny = 1 if amount < small else 0
            if lo_10m < hi:
                for a in amounts[lo_10m:hi]:
                    if a < small:
                        tiny += 1
            v[name] = tiny
        if self.plan.recent_sums:
            s10 = sum(amounts[lo_10m:hi]) + amount
            v["account_sum_10m"] = s10
            v["account_sum_1h"] = s10 + sum(amounts[lo_1h:lo_10m])

    def _hash(self, text: str) -> int:
        """stable_hash through a bounded cache: a dict lookup is a quarter of a crc32."""
        hashes = self.hashes
        key = hashes.get(text)
        if key is None:
            if len(hashes) >= HASH_CACHE:
                hashes.clear()
            key = hashes[text] = crc32(text.encode())
        return key

    def _novelty(self, state: AccountState, tx: Transaction, v: dict[str, Value]) -> None:
        """First-seen flags; the values are remembered here too (they are this tx's own).

        Most values were seen before: that case is tested here, written out (no call, no
        tuple), by a scan of a short array (country and device: most accounts have one) or
        a bisection of a longer one; `_seen` adds a new one."""
        kinds = self.plan.novelty
        hashes = self.hashes
        if "merchant" in kinds:
            key = hashes.get(tx.merchant_id)
            if key is None:
                key = self._hash(tx.merchant_id)
            seen = state.merchants
            if seen is not None and (
                key in seen
                if len(seen) <= _SCAN_UP_TO
                else (i := bisect_left(seen, key)) < len(seen) and seen[i] == key
            ):
                v["is_new_merchant"] = False
            else:
                state.merchants, v["is_new_merchant"] = _seen(seen, key, MAX_MERCHANTS)
        if "country" in kinds:
            if tx.country is None:
                v["is_new_country"] = None
            else:
                key = hashes.get(tx.country)
                if key is None:
                    key = self._hash(tx.country)
                seen = state.countries
                if seen is not None and (
                    key in seen
                    if len(seen) <= _SCAN_UP_TO
                    else (i := bisect_left(seen, key)) < len(seen) and seen[i] == key
                ):
                    v["is_new_country"] = False
                else:
                    state.countries, v["is_new_country"] = _seen(seen, key, MAX_COUNTRIES)
        if "device" in kinds:
            if tx.device_id is None:
                v["is_new_device"] = None
            else:
                key = hashes.get(tx.device_id)
                if key is None:
                    key = self._hash(tx.device_id)
                seen = state.devices
                if seen is not None and (
                    key in seen
                    if len(seen) <= _SCAN_UP_TO
                    else (i := bisect_left(seen, key)) < len(seen) and seen[i] == key
                ):
                    v["is_new_device"] = False
                else:
                    state.devices, v["is_new_device"] = _seen(seen, key, MAX_DEVICES)
        if "mcc" in kinds:
            if tx.mcc is None:
                v["is_new_mcc"] = None
            else:
                state.mccs, v["is_new_mcc"] = _seen(state.mccs, self._hash(tx.mcc), MAX_MCCS)

    def _distinct(
        self, state: AccountState, tx: Transaction, t: float, v: dict[str, Value]
    ) -> None:
        kinds = self.plan.distinct
        if "merchants" in kinds:
            state.distinct_merchants, count = _distinct(
                state.distinct_merchants or array("d"), self._hash(tx.merchant_id), t
            )
            v["distinct_merchants_24h"] = count
        if "countries" in kinds:
            if tx.country is None:
                v["distinct_countries_24h"] = None
            else:
                state.distinct_countries, count = _distinct(
                    state.distinct_countries or array("d"), self._hash(tx.country), t
                )
                v["distinct_countries_24h"] = count

    def _keyed(
        self,
        account: AccountState,
        merchant: KeyState | None,
        tx: Transaction,
        t: float,
        amount: float,
        v: dict[str, Value],
    ) -> None:
        """`merchant`: the merchant's state as `values_one` found it (None: none yet)."""
        # Only the entities with a tier in use, their tiers' widths looked up once (`Plan`):
        # with the default rules and the model that is the merchants' hour tier alone.
        for states_name, field, windows, tiers in self.plan.keyed:
            state: KeyState
            if field is None:
                state = account
            elif merchant is not None and field == "merchant_id":
                state = merchant
            else:
                key = getattr(tx, field)
                if key is None:
                    for count_name, sum_name, _, _, _ in windows:
                        v[count_name] = v[sum_name] = None
                    continue
                states: dict[str, KeyState] = getattr(self, states_name)  # type: ignore[arg-type]
                found = states.get(key)
                if found is None:
                    found = states[key] = KeyState()
                state = found
            for count_name, sum_name, tier, width, span in windows:
                buckets = getattr(state, tier)
                if buckets is None:
                    v[count_name], v[sum_name] = 1, amount
                    continue
                # Before learning it, plus itself: "this one included" even for an event
                # too late for the buckets to keep.
                count, total = bucket_sum(buckets, t // width, span)
                v[count_name] = int(count) + 1
                v[sum_name] = total + amount
            for tier, width, keep in tiers:  # learnt
                buckets = getattr(state, tier)
                if buckets is None:
                    setattr(state, tier, array("d", (t // width, 1.0, amount)))
                else:
                    bucket_add(buckets, t // width, amount, keep)
            if t > state.last_t:
                state.last_t = t

    # -- labels, eviction --------------------------------------------------------------------

    def learn_label(
        self,
        merchant_id: str,
        event_time: float,
        is_fraud: bool,
        amount: float | None = None,
        hour: int | None = None,
        *,
        merchant: bool = True,
    ) -> None:
        """A label on one of `merchant_id`'s transactions (of `amount`, at local `hour`, if
        given) became known at `event_time` (epoch seconds, event time). Merchant risk
        (unless not `merchant`: a replay into a merchant that holds it already) and the
        amount's and hour's fraud rates count it from then on, never before: a label known
        "in the future" of a transaction cannot inform its score."""
        if amount is not None:
            _learn_amount(self.amounts, amount_bucket(amount), event_time, is_fraud)
        if hour is not None:
            _learn_amount(self.hours, hour, event_time, is_fraud)
        if not merchant:
            return
        m = self.merchants.get(merchant_id)
        if m is None:
            m = self.merchants[merchant_id] = KeyState()
        if event_time > m.last_t:
            m.last_t = event_time
        if m.labels is None:
            m.labels = array("d")
        risk = m.risk
        if risk is not None:
            # A label of the cached day changes only that day's bucket, which `_risk` reads
            # each time; one of another day (or pruning older buckets) changes the sums.
            m.risk = (risk[0], risk[1], None) if event_time // DAY == risk[0] else None
        # Reuses the (id, count, sum) layout: count = labels, sum = frauds.
        bucket_add(m.labels, event_time // DAY, 1.0 if is_fraud else 0.0, TIERS["day"][1])

    def unlearn_label(
        self,
        merchant_id: str,
        event_time: float,
        is_fraud: bool,
        amount: float | None = None,
        hour: int | None = None,
        *,
        merchant: bool = True,
    ) -> None:
        """Take back a label that `learn_label` counted at `event_time` and that a different
        one has replaced (a chargeback reversed): the merchant's day bucket loses it, so a
        merchant is not said to have frauds that were overturned. One older than the kept
        buckets counts no more anyway. The amount's decayed rate loses what the label
        weighs now (as if it had come in time order), never going below zero; the hour's
        the same."""
        if amount is not None:
            _unlearn_amount(self.amounts, amount_bucket(amount), event_time, is_fraud)
        if hour is not None:
            _unlearn_amount(self.hours, hour, event_time, is_fraud)
        m = self.merchants.get(merchant_id) if merchant else None
        if m is None or m.labels is None:
            return
        day = event_time // DAY
        if not bucket_take(m.labels, day, 1.0 if is_fraud else 0.0):
            return
        risk = m.risk
        if risk is not None:
            m.risk = (risk[0], risk[1], None) if day == risk[0] else None

    def evict(self, now: float) -> int:
        """Drop keys idle for `ttl_s` of event time before `now`; returns how many."""
        cutoff = now - self.ttl_s
        dropped = 0
        for states in (self.accounts, self.merchants, self.devices, self.ips):
            idle = [k for k, s in states.items() if s.last_t < cutoff]
            for k in idle:
                del states[k]
            dropped += len(idle)
        # A full pass over every key costs time in proportion to them; doing it once per
        # eighth of the TTL keeps it rare and idle keys at most 1.125 TTLs old.
        self.next_sweep = now + self.ttl_s / 8
        return dropped

    def size(self) -> dict[str, int]:
        return {
            "accounts": len(self.accounts),
            "merchants": len(self.merchants),
            "devices": len(self.devices),
            "ips": len(self.ips),
        }


def state_fields(cls: type[KeyState]) -> tuple[str, ...]:
    """Every slot of a state class, base first: what a snapshot writes."""
    names: list[str] = []
    for klass in reversed(cls.__mro__):
        names.extend(getattr(klass, "__slots__", ()))
    return tuple(names)
