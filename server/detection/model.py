"""The online model: named numeric inputs, a logistic regression that learns from labels one at
a time, and the frozen predictor the detection loop scores with.

Why our own and not River: on the same ~37 inputs River's `StandardScaler |
LogisticRegression` costs ~11 µs to predict and ~50-70 µs to learn one example here; this one
~2.6 µs and ~17 µs (benchmarks/model.py), because prediction is one dot product over a fixed
list of weights that already fold the standardisation in. Scoring runs inside the
synchronous batch loop, so those microseconds are the loop's throughput.

The model is a stacked logistic combination: the rules' own score (as a logit) and each rule
that fired are inputs next to the features, so its output is one calibrated probability that
already weighs the rules against the rest, learned from labels rather than set by hand.
"""

from __future__ import annotations

import hashlib
import math
import struct
import zlib
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import compress, pairwise
from operator import itemgetter, mul
from typing import Any

from server.detection.features import TYPICAL_AMOUNT
from server.detection.severity import DEFAULT_BANDS, LossBands, severity
from server.detection.verdict import Decision, Reason, Scored, beyond_cap
from server.transactions import Transaction

# Rule codes the model sees as inputs; a code not listed (a new rule) is simply not an input
# until it is added here.
RULE_INPUTS = (
    "amount_outlier",
    "velocity_1m",
    "velocity_10m",
    "velocity_1h",
    "impossible_travel",
    "new_country",
    "new_merchant",
    "new_device",
    "card_testing",
    "night_high_amount",
    "night_high_amount_new",
    "account_takeover",
    "compromised_merchant",
)
# The detector's features (server/detection/features.py) the inputs are made of: the
# detector computes them whenever a model is attached, whatever the rules use.
MODEL_FEATURES: frozenset[str] = frozenset(
    (
        "amount",
        "local_hour",
        "history",
        "mean",
        "std",
        "distance_km",
        "elapsed_s",
        "is_new_merchant",
        "is_new_country",
        "is_new_device",
        "account_count_1m",
        "account_count_1h",
        "account_small_scaled_count_10m",
        "since_prev_s",
        "merchant_labels_2d",
        "merchant_labels_7d",
        "merchant_labels_30d",
        "merchant_frauds_2d",
        "merchant_frauds_7d",
        "merchant_frauds_30d",
        "amount_fraud_rate",
        "merchant_fraud_run",
        "hour_fraud_rate",
        "mcc_amount_z",
        "account_inflow_24h",
        "is_new_payee",
        "amount_scale",
    )
)
# The three amount inputs that are not a ratio (tiny, round, the bands) are drawn in these
# units: a stream's own amounts are divided by its scale (`features.AmountScale`: its typical
# amount over `TYPICAL_AMOUNT`) first, so they mean the same in yen as in dollars.
TINY_AMOUNT = 5.0
ROUND_AMOUNT_FROM = 20.0
SHOWN_RATIO_CAP = 1000.0
"""Past this, a factor's ratio reads `more than 1,000×`, as the default rule pack caps it."""
AMOUNT_BANDS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0)
"""Edges of the amount bands, one input each: a linear model can then give each band its own
weight (a step at a fixed amount, a middle range that is safer than both ends), which a
log amount alone cannot. 1-2-5 steps, on the stream's scale (see TINY_AMOUNT)."""


def _range(low: float | None, high: float | None, show: Callable[[float], str]) -> str:
    if low is None:
        return f"under {show(high or 0.0)}"
    if high is None:
        return f"{show(low)} or more"
    return f"{show(low)} to {show(high)}"


def _count_range(low: float | None, high: float | None, show: Callable[[float], str]) -> str:
    if low is None:
        return "none"
    if high is None:
        return f"{low:,.0f} or more"
    return f"{low:,.0f}" if high == low + 1 else f"{low:,.0f}-{high - 1:,.0f}"


@dataclass(frozen=True, slots=True)
class Banded:
    """An input also given to the model as bands, one input each (1.0 in the band the value
    falls in, none when the value is unknown): a linear model can then weigh each range on
    its own (a step, a middle range safer than both ends), which one weight on the value
    cannot. `what` reads with the band's range in place of {}."""

    name: str
    edges: tuple[float, ...]
    what: str
    ranged: Callable[[float | None, float | None, Callable[[float], str]], str] = _range
    show: Callable[[float], str] = lambda v: f"{v:,g}"

    def labels(self) -> list[str]:
        bounds = [None, *self.edges, None]
        return [
            self.what.format(self.ranged(low, high, self.show)) for low, high in pairwise(bounds)
        ]


# In the vector's order (at its end); the values on their own scale (a ratio, standard
# deviations, a count), before any log. The edges were chosen by what they mean, not fitted
# to a stream; docs/model.md "Bands" has the measurement and the inputs tried and left out.
BANDED: tuple[Banded, ...] = (
    Banded("ratio", (0.5, 0.8, 1.25, 2.0, 3.0, 5.0, 10.0), "amount {} the account's average",
           show=lambda v: f"{v:g}×"),
    Banded("zscore", (-1.0, 0.0, 1.0, 2.0, 3.0, 5.0),
           "amount's standard deviations from the account's average: {}"),
    Banded("tx_1h", (1.0, 2.0, 4.0, 8.0), "other transactions in the last hour: {}",
           _count_range),
    Banded("tx_1m", (1.0, 2.0, 4.0), "other transactions in the last minute: {}", _count_range),
)  # fmt: skip
GRADIENT_PRIOR = 4.0
"""Where each weight's AdaGrad sum of squared gradients starts: as if it had already seen
gradients whose squares add up to 4, so its first steps are about half the learning rate
times the gradient, where they were the whole learning rate however small the gradient (a
rare input's first few labels swung the model). docs/model.md "Bands" has the measurement."""
AMOUNT = Banded(
    "amount", AMOUNT_BANDS, f"amount {{}} on a scale where the typical amount is {TYPICAL_AMOUNT:g}"
)
"""The amount's bands: in the vector after the merchant's fraud rates (they came first)."""
REFREEZE_EVERY = 100
_LOGIT_CLIP = 0.9999

# Every input with what an analyst reads in the `model` reason. The order is the vector's.
FEATURE_LABELS: dict[str, str] = {
    "log_amount": "log amount",
    "log_ratio": "log of amount over the account's average",
    "zscore": "standard deviations from the account's average",
    "no_history": "fewer than 5 prior transactions",
    "log_history": "log prior transactions",
    "log_tx_1m": "log other transactions in the last minute",
    "log_tx_1h": "log other transactions in the last hour",
    "tiny_amount": "amount under an eighth of the stream's typical amount",
    "log_tiny_recent": "log tiny amounts in the last 10 min",
    "log_distance": "log km from the previous location",
    "log_speed": "log implied km/h from the previous location",
    "log_elapsed": "log seconds since the previous located transaction",
    "no_location": "no previous location to compare",
    "new_merchant": "first purchase at this merchant",
    "new_country": "first transaction in this country",
    "new_device": "first transaction from this device",
    "night": "between 00:00 and 05:00 local time",
    "night_ratio": "night-time log amount over average",
    "new_country_ratio": "new country with log amount over average",
    "new_device_ratio": "new device with log amount over average",
    "first_device": "first device this account has used",
    "new_country_device": "new country and a new device at once",
    "prior_flag_24h": "highest rules score on this account in the previous 24 h",
    "flagged_1h": "rules flagged this account in the previous hour",
    "log_flags_24h": "log transactions flagged on this account in the previous 24 h",
    "log_since_prev": "log seconds since the account's previous transaction",
    "merchant_fraud_2d": "merchant's fraud rate among its labels learnt today or yesterday",
    "merchant_fraud_7d": "merchant's fraud rate among its labels learnt in 7 days",
    "merchant_fraud_30d": "merchant's fraud rate among its labels learnt in 30 days",
    **{f"amount_band_{i}": label for i, label in enumerate(AMOUNT.labels())},
    "ecom": "online purchase",
    "atm": "cash withdrawal",
    "rules_logit": "rules' combined score (logit)",
    **{f"rule_{code}": f"rule {code} fired" for code in RULE_INPUTS},
    **{
        f"{banded.name}_band_{i}": label
        for banded in BANDED
        for i, label in enumerate(banded.labels())
    },
    "amount_risk": "fraud rate among labelled transactions of about this amount",
    "log_merchant_fraud_run": "log fraud labels on this merchant since its last legitimate one",
    "round_amount": "a round amount of half the stream's typical amount or more",
    "hour_risk": "fraud rate among labelled transactions at this hour of the day",
    "mcc_amount_dev": "standard deviations of the amount from the usual for its MCC",
    "log_inflow_24h": "log amount the account received as a payee in 24 h",
    "new_payee": "first payment to this payee in 30 days",
}
FEATURE_NAMES: tuple[str, ...] = tuple(FEATURE_LABELS)
FEATURE_SET = "m1+" + hashlib.sha256(",".join(FEATURE_NAMES).encode()).hexdigest()[:8]
"""Changes whenever the inputs do: a saved model of another feature set is not loaded."""


RecentFlags = tuple[float, float, int]
"""(highest rules score, seconds since the last flag, flags) on the account in 24 h."""
_NO_FLAGS: RecentFlags = (0.0, 0.0, 0)
FLAG_SCORE = 0.05
"""A rules score at or above this flags the account for a day: ten times a realistic fraud
rate, as the default pack scores (a new merchant alone does not flag; an outlier amount, a
new device or country does)."""
FLAG_WINDOW_S = 86_400.0
MAX_FLAGS = 16


class AccountFlags:
    """Which accounts the rules flagged in the last day, in event time: fraud comes in
    episodes, so a card flagged an hour ago makes its next transaction more suspect. Only
    flagged accounts are kept (a few per cent), oldest forgotten first past `max_accounts`."""

    __slots__ = ("accounts", "max_accounts")

    def __init__(self, max_accounts: int = 200_000) -> None:
        self.max_accounts = max_accounts
        self.accounts: OrderedDict[str, list[tuple[float, float]]] = OrderedDict()

    def recent(self, account_id: str, t: float) -> RecentFlags:
        flags = self.accounts.get(account_id)
        if not flags:
            return _NO_FLAGS
        # One pass, no list: most accounts here were flagged more than a day ago.
        since = t - FLAG_WINDOW_S
        live = 0
        top = last = 0.0
        for at, score in flags:
            if since < at <= t:
                if not live or score > top:
                    top = score
                if not live or at > last:
                    last = at
                live += 1
        if not live:
            return _NO_FLAGS
        return (top, t - last, live)

    def note(self, account_id: str, t: float, score: float) -> None:
        if score < FLAG_SCORE:
            return
        accounts = self.accounts
        flags = accounts.pop(account_id, None)  # re-inserted last: the newest stays longest
        if flags is None:
            flags = []
        flags = [(at, s) for at, s in flags if at > t - FLAG_WINDOW_S][-(MAX_FLAGS - 1) :]
        flags.append((t, score))
        accounts[account_id] = flags
        if len(accounts) > self.max_accounts:
            accounts.popitem(last=False)


_RULE_KEY = {code: "rule_" + code for code in RULE_INPUTS}
_RULE_ZEROS = dict.fromkeys(_RULE_KEY.values(), 0.0)
_log1p = math.log1p
_log = math.log


def rules_logit(score: float) -> float:
    p = min(max(score, 1 - _LOGIT_CLIP), _LOGIT_CLIP)
    return _log(p / (1 - p))


_ZERO_RULES_LOGIT = rules_logit(0.0)


# What is kept of each scored transaction until its label arrives: the raw values the inputs
# are computed from (134 bytes, then 8 for the logit once a model scores), packed in one C
# call. Most transactions are never labelled, and until the model is ready none is
# predicted, so the inputs themselves (logs, ratios, crosses) are computed only when needed:
# to predict (on the loop) or to learn (on the trainer's thread). Values added later go at
# the end, as 4-byte floats whose "unknown" is 0.0: an older entry then reads as this one's
# first bytes followed by zeros.
_RAW = struct.Struct("<Iddddd bbbbb IIIb Id ddI fffffffffff")
_LOGIT = struct.Struct("<d")
_RAW_SIZE = _RAW.size
_pack_logit = _LOGIT.pack
# Where `capture` packs the account's recent flags (`RecentFlags`) in `_RAW`: `ModelSlot.flag`
# fills them in after the rest (tests/test_model.py checks the offset against `capture`).
_FLAGS_AT = struct.calcsize("<Iddddd bbbbb IIIb Id")
_FLAGS = struct.Struct("<ddI")
_FLAGS_END = _FLAGS_AT + _FLAGS.size
RAW_LAYOUT = f"{FEATURE_SET}/{_RAW.format}+{_LOGIT.format}"
"""What a remembered transaction's bytes mean: the raw values, then, when a model scored
it, that model's own logit (`scored_logit`). A snapshot's of another layout is not read
(an older fraudwatch refuses this one rather than fail on the longer entries)."""
_EARLIER_RAW: dict[str, str] = {
    # The bands of session 8 did not change the raw values.
    "m1+e7244f76": "<Iddddd bbbbb IIIb Id ddI ffff",
    "m1+99dcd961": "<Iddddd bbbbb IIIb Id ddI ffff",
    # Session 9 added the amount's fraud rate; session 10 the merchant's run of frauds, then
    # the round-amount input (from the raw values already kept).
    "m1+188af7cc": "<Iddddd bbbbb IIIb Id ddI fffff",
    "m1+741ad7a6": "<Iddddd bbbbb IIIb Id ddI ffffff",
    # Session 15 added the hour's fraud rate.
    "m1+5f146e3d": "<Iddddd bbbbb IIIb Id ddI ffffff",
    # Then how unusual the amount is for its MCC.
    "m1+c7a32c63": "<Iddddd bbbbb IIIb Id ddI fffffff",
    # Session 16 added what the account received as a payee.
    "m1+ee4e1224": "<Iddddd bbbbb IIIb Id ddI ffffffff",
    # Then whether the payee was paid in the 30 days before.
    "m1+46ab33c9": "<Iddddd bbbbb IIIb Id ddI fffffffff",
    # Session 18 put the amount's absolute inputs on the stream's scale (which reads as
    # unknown, 0: the absolute units these were scored in).
    "m1+9d47c3d5": "<Iddddd bbbbb IIIb Id ddI ffffffffff",
}
"""Feature sets before this one and their raw values: what a transaction remembered then
makes this model's inputs too (the values added since read as unknown), but its logit was
another model's, so it is dropped."""
_READ: dict[str, tuple[bool, int]] = {
    RAW_LAYOUT: (True, _RAW_SIZE),
    f"{FEATURE_SET}/{_RAW.format}": (True, _RAW_SIZE),
    **{f"{fs}/{fmt}+{_LOGIT.format}": (False, struct.calcsize(fmt))
       for fs, fmt in _EARLIER_RAW.items()},
    **{f"{fs}/{fmt}": (False, struct.calcsize(fmt)) for fs, fmt in _EARLIER_RAW.items()},
}  # fmt: skip
"""Per layout read: whether its logit is this model's, and the size of its raw values."""
RAW_LAYOUTS_READ = frozenset(_READ)
"""Layouts a snapshot's (or the store's) remembered inputs are read from: this one, the one
before the logit was kept (its entries read as scored without a model), and those of earlier
feature sets (read without their logit, and with the values added since as unknown): after
an upgrade that added inputs, a label for a transaction scored before it is still learnt."""


def remembered_entry(layout: str, raw: bytes) -> bytes | None:
    """A snapshot's remembered entry as this model keeps it, or None when it cannot be read
    (another layout, a damaged length). The logit is kept only if this model's inputs made
    it; raw values of an earlier layout gain the values added since as unknown (0.0)."""
    read = _READ.get(layout)
    if read is None:
        return None
    own_logit, size = read
    if len(raw) not in (size, size + _LOGIT.size):
        return None
    values = raw[:size] if size == _RAW_SIZE else raw[:size] + bytes(_RAW_SIZE - size)
    return values + raw[size:] if own_logit else values


_NAN = math.nan
_RULE_BIT = {code: 1 << i for i, code in enumerate(RULE_INPUTS)}
_CHANNEL = {"ecom": 1, "atm": 2}


_CAPTURED = (
    "history",
    "amount",
    "mean",
    "std",
    "distance_km",
    "elapsed_s",
    "local_hour",
    "is_new_merchant",
    "is_new_country",
    "is_new_device",
    "account_count_1m",
    "account_count_1h",
    "account_small_scaled_count_10m",
    "since_prev_s",
    "merchant_frauds_2d",
    "merchant_labels_2d",
    "merchant_frauds_7d",
    "merchant_labels_7d",
    "merchant_frauds_30d",
    "merchant_labels_30d",
    "amount_fraud_rate",
    "merchant_fraud_run",
    "hour_fraud_rate",
    "mcc_amount_z",
    "account_inflow_24h",
    "is_new_payee",
    "amount_scale",
)
"""The features `capture` reads, in the order it unpacks them."""
_captured = itemgetter(*_CAPTURED)


def capture(
    v: Mapping[str, Any],
    tx: Transaction,
    reasons: Sequence[Reason],
    rules_score: float,
    recent: RecentFlags = _NO_FLAGS,
) -> bytes:
    """The raw values behind the model's inputs for one transaction, packed: the one place
    that reads the detector's features (`v`, by name: MODEL_FEATURES), the rules that fired
    and the account's recent flags (`AccountFlags.recent`). `inputs()` makes the vector.
    A feature `v` lacks is unknown, as None is."""
    bits = 0
    for reason in reasons:
        bits |= _RULE_BIT.get(reason.code, 0)
    try:
        # One call for all of them: `v.get` 27 times was ~7,300 instructions a row of the
        # backtest's reader, this ~1,500 (docs/backtest.md#throughput-and-memory).
        values = _captured(v)
    except KeyError:  # not a detector's features (a test's few): the rest are unknown
        values = tuple(map(v.get, _CAPTURED))
    (
        history,
        amount,
        mean,
        std,
        distance,
        elapsed,
        hour,
        new_merchant,
        new_country,
        new_device,
        count_1m,
        count_1h,
        small_10m,
        since_prev,
        frauds_2d,
        labels_2d,
        frauds_7d,
        labels_7d,
        frauds_30d,
        labels_30d,
        amount_rate,
        fraud_run,
        hour_rate,
        mcc_z,
        inflow,
        new_payee,
        scale,
    ) = values
    prior_max, since_s, flags = recent
    unlocated = distance is None or elapsed is None
    # Written out here, not called: this runs for every row (~0.6 µs a row as helpers).
    return _RAW.pack(
        history or 0,
        float(amount or 0.0),
        mean or 0.0,
        std or 0.0,
        _NAN if unlocated else distance,
        _NAN if unlocated else elapsed,
        # -1: no time of day (a stream of dates only, `features.DAY_ONLY_FROM`).
        -1 if hour is None else hour,
        new_merchant is True,
        new_country is True,
        new_device is True,
        # No device on record yet: novelty is unknown, but a first device is a signal.
        new_device is None and tx.device_id is not None,
        # Unknown (a stream of dates or hours only): as if alone in the window.
        count_1m or 1,
        count_1h or 1,
        small_10m or 0,
        _CHANNEL.get(tx.channel or "", 0),
        bits,
        rules_score,
        prior_max,
        since_s,
        flags,
        -1.0 if since_prev is None else since_prev,
        # The share of fraud among the merchant's known labels, shrunk towards 0 by one
        # pseudo-label: one fraud out of one label is 0.5, not certainty; none known is 0.
        (frauds_2d or 0) / ((labels_2d or 0) + 1),
        (frauds_7d or 0) / ((labels_7d or 0) + 1),
        (frauds_30d or 0) / ((labels_30d or 0) + 1),
        amount_rate or 0.0,
        float(fraud_run or 0),
        hour_rate or 0.0,
        # How unusual the amount is for its MCC: the z-score's distance either side, at
        # most 10; unknown is 0.
        0.0 if mcc_z is None else min(abs(mcc_z), 10.0),
        inflow or 0.0,
        # 0.0 also for a transaction remembered before this input: not new, as no news is.
        1.0 if new_payee else 0.0,
        scale or 0.0,  # unknown (0): the amount is taken as it is
    )


def amount_scaled(raw: bytes) -> float:
    """The amount on the stream's scale, from `capture()`'s bytes: the `amount_scaled`
    feature as the transaction was scored (the amount itself while the scale was unknown),
    which an alert's severity weighs."""
    fields = _unpack(raw)
    amount, scale = fields[1], fields[-1]
    return float(amount / scale if scale > 0 else amount)


def inputs(raw: bytes) -> list[float]:
    """The model's inputs, in FEATURE_NAMES order, from `capture()`'s bytes: `active_inputs`
    with the inputs that are 0 filled in (one set of formulas; this dense form is for
    explanations, the trainer's corrections and the benchmarks, not the scoring path). An
    unknown value is 0, with a flag where "unknown" itself says something."""
    x = [0.0] * _N_INPUTS
    for i, value in zip(*active_inputs(raw), strict=True):
        x[i] = value
    return x


def active_inputs(raw: bytes) -> tuple[list[int], list[float]]:
    """The model's inputs that are not 0, as (their indices in FEATURE_NAMES, their values),
    in order: what predicting and learning read (`Predictor.logit_active`,
    `OnlineLogit.learn_active`), and what `inputs()` fills out to the dense vector. Made
    without the ~70 that are 0 in a typical transaction (a band is its one index, a flag
    that is off is a test): finding the ~18 among 89 in a dense vector (`compress`, ~100
    instructions an input) cost ~20,000 instructions more each time, to predict and again
    to learn. An unknown value is 0 (left out), with a flag where "unknown" itself says
    something."""
    (
        history, amount, mean, std, distance, elapsed, local_hour,
        new_merchant, new_country, new_device, first_device,
        tx_1m, tx_1h, tiny_recent, channel, bits, rules_score, prior_max, since_s, flags,
        since_prev, merchant_2d, merchant_7d, merchant_30d, amount_risk, run, hour_risk,
        mcc_dev, inflow, new_payee, scale,
    ) = _unpack(raw)  # fmt: skip
    index: list[int] = []
    values: list[float] = []
    # In FEATURE_NAMES order; a value is kept when it is not 0 (-0.0 is left out, NaN kept).
    ratio = amount / mean if history and mean > 0 else -1.0
    log_ratio = _log(ratio if ratio > 1e-3 else 1e-3) if ratio >= 0 else 0.0
    z = (amount - mean) / std if std > 0 else 0.0
    if amount > 0 and (v := _log1p(amount)):
        index.append(0)
        values.append(v)
    if log_ratio:
        index.append(1)
        values.append(log_ratio)
    if v := -5.0 if z < -5.0 else (10.0 if z > 10.0 else z):
        index.append(2)
        values.append(v)
    if history < 5:
        index.append(3)
        values.append(1.0)
    if v := _log1p(history):
        index.append(4)
        values.append(v)
    if v := _log1p(tx_1m - 1):
        index.append(5)
        values.append(v)
    if v := _log1p(tx_1h - 1):
        index.append(6)
        values.append(v)
    if scale > 0:
        scaled = amount / scale
        round_amount = 0.0
        if scaled >= ROUND_AMOUNT_FROM:
            q = amount / (_UNITS.get(scale) or _round_unit(scale))
            if abs(q - round(q)) <= q * 1e-9:
                round_amount = 1.0
    else:
        scaled = amount
        round_amount = 1.0 if amount >= ROUND_AMOUNT_FROM and amount == int(amount) else 0.0
    if scaled < TINY_AMOUNT:
        index.append(7)
        values.append(1.0)
    if tiny_recent and (v := _log1p(tiny_recent)):
        index.append(8)
        values.append(v)
    if distance != distance:  # NaN: no previous location
        index.append(12)
        values.append(1.0)
    else:
        if v := _log1p(distance):
            index.append(9)
            values.append(v)
        if v := _log1p(distance * 3600.0 / max(elapsed, 1.0)):
            index.append(10)
            values.append(v)
        if v := _log1p(elapsed):
            index.append(11)
            values.append(v)
    if new_merchant:
        index.append(13)
        values.append(1.0)
    if new_country:
        index.append(14)
        values.append(1.0)
    if new_device:
        index.append(15)
        values.append(1.0)
    night = 1.0 if 0 <= local_hour < 5 else 0.0
    if night:
        index.append(16)
        values.append(1.0)
    if v := night * log_ratio:
        index.append(17)
        values.append(v)
    if v := new_country * log_ratio:
        index.append(18)
        values.append(v)
    if v := new_device * log_ratio:
        index.append(19)
        values.append(v)
    if first_device:
        index.append(20)
        values.append(1.0)
    if new_country and (new_device or first_device):
        index.append(21)
        values.append(1.0)
    if prior_max:
        index.append(22)
        values.append(prior_max)
    if flags:
        if since_s <= 3600.0:
            index.append(23)
            values.append(1.0)
        if v := _log1p(flags):
            index.append(24)
            values.append(v)
    if since_prev > 0 and (v := _log1p(since_prev)):
        index.append(25)
        values.append(v)
    if merchant_2d:
        index.append(26)
        values.append(merchant_2d)
    if merchant_7d:
        index.append(27)
        values.append(merchant_7d)
    if merchant_30d:
        index.append(28)
        values.append(merchant_30d)
    index.append(_AMOUNT_BAND_AT + bisect_right(AMOUNT_BANDS, scaled))
    values.append(1.0)
    if channel == 1:
        index.append(42)
        values.append(1.0)
    elif channel == 2:
        index.append(43)
        values.append(1.0)
    if v := rules_logit(rules_score) if rules_score else _ZERO_RULES_LOGIT:
        index.append(44)
        values.append(v)
    if bits:
        for at, bit in _RULE_AT_BIT:
            if bits & bit:
                index.append(at)
                values.append(1.0)
    if ratio >= 0:
        index.append(_RATIO_BAND_AT + bisect_right(_RATIO_EDGES, ratio))
        values.append(1.0)
    if std > 0:
        index.append(_Z_BAND_AT + bisect_right(_Z_EDGES, z))
        values.append(1.0)
    index.append(_TX_1H_BAND_AT + bisect_right(_TX_1H_EDGES, tx_1h - 1))
    values.append(1.0)
    index.append(_TX_1M_BAND_AT + bisect_right(_TX_1M_EDGES, tx_1m - 1))
    values.append(1.0)
    if amount_risk:
        index.append(82)
        values.append(amount_risk)
    if run and (v := _log1p(run)):
        index.append(83)
        values.append(v)
    # Fraud that sets its own prices (a ring charging cards at a complicit merchant,
    # cash-out, gift cards) picks round ones; everyday prices have cents. Whole amounts
    # under 20 (a coffee, a bus fare) are too common to say anything.
    if round_amount:
        index.append(84)
        values.append(1.0)
    if hour_risk:
        index.append(85)
        values.append(hour_risk)
    if mcc_dev:
        index.append(86)
        values.append(mcc_dev)
    # A mule passes on what it was just sent: on a stream where accounts are also payees
    # (P2P, mobile money). A card is never a payee, so there it stays 0 and learns nothing.
    if inflow > 0 and (v := _log1p(inflow)):
        index.append(87)
        values.append(v)
    # A payee nobody paid in 30 days: a mule's fresh account, a merchant set up for fraud,
    # where every sender is new (mobile money) and the account's novelty inputs are blank.
    # On a card stream, after its first days, hardly any merchant goes 30 days unpaid.
    if new_payee:
        index.append(88)
        values.append(new_payee)
    return index, values


_unpack = _RAW.unpack_from  # from the start: a logit may follow
_UNITS: dict[float, float] = {}


def _round_unit(scale: float) -> float:
    """A round amount's unit on a stream of this scale: the power of ten nearest it (1 for
    dollars or euros, whose round amounts are whole; 100 for yen, where every amount is
    whole and a round one is a multiple of 100). The scale moves in steps (every
    `AMOUNT_SCALE_EVERY` amounts), so the few seen are kept."""
    if len(_UNITS) >= 256:
        _UNITS.clear()
    unit = _UNITS[scale] = 10.0 ** round(math.log10(scale))
    return unit


def scored_logit(raw: bytes) -> float | None:
    """The model's logit when it scored this transaction (`ModelSlot.rescore`), or None
    when no model was ready then."""
    if len(raw) == _RAW_SIZE:
        return None
    value: float = _LOGIT.unpack_from(raw, _RAW_SIZE)[0]
    return value


def learn_example(
    learner: OnlineLogit,
    raw: bytes,
    is_fraud: bool,
    weight: float,
    active: tuple[Sequence[int], Sequence[float]] | None = None,
) -> None:
    """One label, as the trainer and inline learning both take it: the calibration learns
    from the score the transaction was given, then the model from its inputs (`active`, if
    they were kept when it was scored: `active_inputs(raw)`)."""
    logit = scored_logit(raw)
    if logit is not None:
        learner.calibrate(logit, is_fraud, weight)
    learner.learn_active(*(active or active_inputs(raw)), is_fraud, weight)


_DOUBLES = [struct.Struct(f"<{k}d") for k in range(len(FEATURE_NAMES) + 1)]


def pack_active(index: Sequence[int], values: Sequence[float]) -> bytes:
    """`active_inputs`' (index, values), packed: the values as doubles, then the indices a
    byte each (~170 bytes for the ~18 a transaction has). What an inline learner's slot
    keeps from scoring a transaction to learning its label (`ModelSlot.scored_inputs`)."""
    return _DOUBLES[len(values)].pack(*values) + bytes(index)


def unpack_active(packed: bytes) -> tuple[bytes, tuple[float, ...]]:
    """`pack_active`'s (index, values): the same floats to the bit."""
    k = len(packed) // 9
    return packed[8 * k :], _DOUBLES[k].unpack_from(packed)


def learn_or_take_back(learner: OnlineLogit, raw: bytes, is_fraud: bool, weight: float) -> None:
    """An example as the trainer queues it: a negative `weight` takes back a label learnt
    with weight -`weight` (`ModelSlot.pop_examples`, `OnlineLogit.take_back`)."""
    if weight < 0.0:
        learner.take_back(inputs(raw), is_fraud, -weight)
    else:
        learn_example(learner, raw, is_fraud, weight)


_N_INPUTS = len(FEATURE_NAMES)
# Where `active_inputs` puts the first of each band's inputs, and each rule's.
_AMOUNT_BAND_AT = FEATURE_NAMES.index("amount_band_0")
_RATIO_BAND_AT, _Z_BAND_AT, _TX_1H_BAND_AT, _TX_1M_BAND_AT = (
    FEATURE_NAMES.index(f"{banded.name}_band_0") for banded in BANDED
)
_RULE_AT_BIT = tuple((FEATURE_NAMES.index(_RULE_KEY[code]), bit) for code, bit in _RULE_BIT.items())
_RATIO_EDGES, _Z_EDGES, _TX_1H_EDGES, _TX_1M_EDGES = (banded.edges for banded in BANDED)


def named_features(
    v: Mapping[str, Any],
    tx: Transaction,
    reasons: Sequence[Reason],
    rules_score: float,
    recent: RecentFlags = _NO_FLAGS,
) -> dict[str, float]:
    """The model's inputs for one transaction, by name (for tests and explanations)."""
    x = inputs(capture(v, tx, reasons, rules_score, recent))
    return dict(zip(FEATURE_NAMES, x, strict=True))


def sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@dataclass(frozen=True, slots=True)
class Predictor:
    """A frozen snapshot of the model: standardisation folded into the weights, so predicting
    is one dot product. Immutable, so the loop can keep using one while a new one is built."""

    weights: tuple[float, ...]  # per input, already divided by its spread
    bias: float
    means: tuple[float, ...]
    labels_seen: int
    frauds_seen: int
    version: int
    # Platt scaling of the logit (`OnlineLogit.calibrate`): the probability is
    # sigmoid(cal_a * logit + cal_b).
    cal_a: float = 1.0
    cal_b: float = 0.0

    def logit(self, x: Sequence[float]) -> float:
        """The model's own logit, before calibration: what a scored transaction remembers."""
        # map(mul): the cheapest dot product in pure Python (half of a zip comprehension),
        # over the inputs that are not 0 (a fifth of them, picked by `compress` in C): each
        # product makes a float, where skipping one is nearly free. The sum is the same to
        # the bit: in order, without terms that are ±0.0 (a finite weight times 0), which
        # change no sum of floats that starts at +0.0, as this one does.
        total: float = sum(map(mul, compress(self.weights, x), compress(x, x)))
        return self.bias + total

    def logit_active(self, index: Sequence[int], values: Iterable[float]) -> float:
        """`logit` from the inputs that are not 0 alone (`active_inputs`): the same products
        added up in the same order, so the same logit to the bit."""
        weights = self.weights
        # The weights picked in one C call (`itemgetter` of one index gives the weight, not
        # a tuple of it): ~35 % fewer instructions than `map(weights.__getitem__, ...)`.
        picked = itemgetter(*index)(weights) if len(index) > 1 else [weights[i] for i in index]
        total: float = sum(map(mul, picked, values))
        return self.bias + total

    def calibrated(self, logit: float) -> float:
        """`logit` as the calibrated probability's logit."""
        return self.cal_a * logit + self.cal_b

    def predict_proba(self, x: Sequence[float]) -> float:
        return sigmoid(self.calibrated(self.logit(x)))

    def contributions(self, x: Sequence[float]) -> dict[str, float]:
        """Each input's share of the calibrated logit, against the average labelled
        transaction: they add up, with `intercept()`, to `calibrated(logit(x))`."""
        return dict(zip(FEATURE_NAMES, self.contribution_list(x), strict=True))

    def contribution_list(self, x: Sequence[float]) -> list[float]:
        """`contributions` in FEATURE_NAMES order."""
        a = self.cal_a
        return [a * w * (v - m) for w, v, m in zip(self.weights, x, self.means, strict=True)]

    def intercept(self) -> float:
        """The calibrated logit of a transaction with every input at its mean."""
        mean_logit = self.bias + sum(w * m for w, m in zip(self.weights, self.means, strict=True))
        return self.calibrated(mean_logit)


class OnlineLogit:
    """Logistic regression trained one example at a time: each input divided by its running
    spread, AdaGrad steps, light L2. Pure and synchronous; not thread-safe (the
    trainer owns one and hands out `freeze()`d snapshots).

    Inputs are scaled, not centred, so that the many inputs that are 0 (a rule that did not
    fire) cost nothing in a step; the intercept absorbs the means. The scales are refreshed
    every `rescale_every` examples, and the weights rescaled with them, so a refresh does not
    change what the model predicts.
    """

    def __init__(
        self, *, learning_rate: float = 0.1, l2: float = 1e-5, rescale_every: int = 256
    ) -> None:
        n = len(FEATURE_NAMES)
        self.learning_rate = learning_rate
        self.l2 = l2
        self.rescale_every = rescale_every
        self.w = [0.0] * n
        self.b = 0.0
        self.g2 = [GRADIENT_PRIOR] * n
        self.g2b = 1e-8
        self.count = 0
        self.frauds = 0
        self.weight_sum = 0.0
        # Weighted sums of each input and of its square: sparse to keep (an input at 0, as
        # most are, adds nothing), where a running mean and variance (Welford) cost every
        # input every example, half the cost of learning one.
        self.sums = [0.0] * n
        self.squares = [0.0] * n
        self.scale = [1.0] * n
        # Platt scaling (`calibrate`): the probability is sigmoid(cal_a * logit + cal_b).
        self.cal_a = 1.0
        self.cal_b = 0.0

    @property
    def mean(self) -> list[float]:
        """Each input's (weighted) average over the labels learnt."""
        total = self.weight_sum
        return [s / total for s in self.sums] if total else [0.0] * len(self.sums)

    def _rescale(self) -> None:
        if self.count < 2:
            return
        total = self.weight_sum
        w, scale, g2 = self.w, self.scale, self.g2
        for i, (total_x, square) in enumerate(zip(self.sums, self.squares, strict=True)):
            # Weight 1: the sample variance. Floored at a hundredth of the mean square: the
            # inputs are not centred, and one that hardly varies around a value far from 0
            # (the rules' logit where rules seldom fire, "no location" where no transaction
            # has one) would otherwise be multiplied by hundreds, each step on it swinging
            # the model (docs/model.md, "Which labels were kept must not matter").
            var = max(square - total_x * total_x / total, 0.0) / (total - 1.0)
            var = max(var, 0.01 * square / total)
            new = 1.0 / math.sqrt(var) if var > 1e-12 else 1.0
            ratio = scale[i] / new
            w[i] *= ratio
            # The gradient of a rescaled weight scales by 1/ratio: AdaGrad's sum of its
            # squares follows, so the next steps keep the size they would have had.
            g2[i] /= ratio * ratio
            scale[i] = new

    def learn_one(self, x: Sequence[float], is_fraud: bool, weight: float = 1.0) -> None:
        """One labelled example; `weight` > 1 when it stands for several (a legitimate label
        kept by `NegativeSampler`): it is learnt as that many steps and counts that much in
        the statistics. The sampler's weights add up to the labels it was given, so the
        steps taken are about those of learning every label; the statistics' cost is not."""
        # The inputs that are not 0, picked in C: a fifth of them, as a rule.
        self.learn_active(list(compress(range(len(x)), x)), list(compress(x, x)), is_fraud, weight)

    def learn_active(
        self, index: Sequence[int], values: Sequence[float], is_fraud: bool, weight: float = 1.0
    ) -> None:
        """`learn_one` from the inputs that are not 0 alone, their indices and values in
        order (`active_inputs`): the same steps, the same weights to the bit."""
        self.count += 1
        self.frauds += is_fraud
        self.weight_sum += weight
        scale, w, sums, squares = self.scale, self.w, self.sums, self.squares
        # Each input on its scale; and, in the same pass, the first presentation's margin
        # (the weights before any step), added up in order from +0.0 as `sum` does on
        # Python 3.11 (3.12's compensates): the same margin to the bit. Between refreshes of
        # the scales (all but 1 in `rescale_every` labels, and the first 64) the scaling's
        # statistics are kept in that pass too: one pass over the inputs instead of two.
        scaled: list[float] = []
        margin = 0.0
        if self.count <= 64 or self.count % self.rescale_every == 0:
            for i, v in zip(index, values, strict=True):
                wv = weight * v
                sums[i] += wv
                squares[i] += wv * v
            self._rescale()
            for i, v in zip(index, values, strict=True):
                z = v * scale[i]
                scaled.append(z)
                margin += w[i] * z
        elif weight == 1.0:  # every label when none is sampled out: 1.0 * v is v, to the bit
            for i, v in zip(index, values, strict=True):
                sums[i] += v
                squares[i] += v * v
                z = v * scale[i]
                scaled.append(z)
                margin += w[i] * z
        else:
            for i, v in zip(index, values, strict=True):
                wv = weight * v
                sums[i] += wv
                squares[i] += wv * v
                z = v * scale[i]
                scaled.append(z)
                margin += w[i] * z
        target = 1.0 if is_fraud else 0.0
        g2, lr, l2 = self.g2, self.learning_rate, self.l2
        b, g2b, sqrt = self.b, self.g2b, math.sqrt
        # An example of weight k is learnt as k presentations of it, each step from the
        # margin the previous one left (the last carries the fraction): one step of k times
        # the gradient overshoots, and a legitimate label kept 1 in 13 by the sampler then
        # throws the weights about (docs/model.md, "Which labels were kept must not matter").
        # The inner loop runs for every active input of every presentation: each weight and
        # squared-gradient sum is read once and written once.
        left = weight
        while left > 0.0:
            part = 1.0 if left > 1.0 else left
            left -= part
            err = (sigmoid(b + margin) - target) * part
            for i, z in zip(index, scaled, strict=True):
                wi = w[i]
                g = err * z + l2 * wi
                gi = g2[i] + g * g
                g2[i] = gi
                w[i] = wi - lr * g / sqrt(gi)
            g2b += err * err
            b -= lr * err / sqrt(g2b)
            if left > 0.0:  # another presentation: its margin from the weights just left
                margin = sum([w[i] * z for i, z in zip(index, scaled, strict=True)])
        self.b, self.g2b = b, g2b

    def take_back(self, x: Sequence[float], is_fraud: bool, weight: float = 1.0) -> None:
        """Take an example `learn_one` learnt (its label since corrected) out of what the
        model counts: `count`, `frauds`, `weight_sum` and the scaling's sums, with the
        weight it was learnt with. The weights are left as they are: a reverse step (the
        negative of its gradient at the current weights) lowered AP when the correction
        came a week later, was mixed a day later, and helped only when nothing else had
        been learnt in between; by then the other labels have made up for part of what
        the wrong one did, and the step overshoots (docs/model.md, "Corrected labels").
        Not on the scoring path: corrections are rare."""
        self.count -= 1
        if self.count <= 0:
            # Nothing learnt is left: exact zeros, not what rounding leaves of the sums.
            self.count = self.frauds = 0
            self.weight_sum = 0.0
            self.sums = [0.0] * len(self.sums)
            self.squares = [0.0] * len(self.squares)
            return
        self.frauds = max(self.frauds - is_fraud, 0)
        self.weight_sum -= weight
        sums, squares = self.sums, self.squares
        for i in compress(range(len(x)), x):
            wv = weight * x[i]
            sums[i] -= wv
            squares[i] = max(squares[i] - wv * x[i], 0.0)

    def calibrate(self, logit: float, is_fraud: bool, weight: float = 1.0) -> None:
        """Platt scaling, one label at a time: `logit` is what the model said when it scored
        the transaction, before its label was known. Labels arrive late (a week, say), so
        the model that scores has always learnt a week less than the labels will show, and
        its own fit cannot see that: on the simulator it under-predicted fraud two-fold in
        the middle (predicted 0.10, observed 0.20). Learnt from the scores transactions
        were actually given, the map corrects what the scoring model gets wrong as it is
        used (docs/model.md, "Calibration"). Small constant steps, so it follows the model
        as that changes; the slope moves slower than the offset."""
        p = sigmoid(self.cal_a * logit + self.cal_b)
        err = (p - (1.0 if is_fraud else 0.0)) * weight * CALIBRATION_RATE
        self.cal_a = max(self.cal_a - err * logit * CALIBRATION_SLOPE_SHARE, MIN_SLOPE)
        self.cal_b -= err

    def learn_many(self, examples: Iterable[tuple[Sequence[float], bool]]) -> int:
        n = 0
        for x, y in examples:
            self.learn_one(x, y)
            n += 1
        return n

    def freeze(self, version: int = 0) -> Predictor:
        weights = tuple(w * s for w, s in zip(self.w, self.scale, strict=True))
        return Predictor(
            weights,
            self.b,
            tuple(self.mean),
            self.count,
            self.frauds,
            version,
            self.cal_a,
            self.cal_b,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature_set": FEATURE_SET,
            "features": list(FEATURE_NAMES),
            "learning_rate": self.learning_rate,
            "l2": self.l2,
            "w": self.w,
            "b": self.b,
            "g2": self.g2,
            "g2b": self.g2b,
            "count": self.count,
            "frauds": self.frauds,
            "weight_sum": self.weight_sum,
            "sums": self.sums,
            "squares": self.squares,
            "scale": self.scale,
            "rescale_every": self.rescale_every,
            "calibration": [self.cal_a, self.cal_b],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OnlineLogit:
        """Raises ValueError for a damaged model, or one of another feature set that does
        not name its inputs. One that names them (`features`, saved since inputs have
        names) loads by name (`_by_name`): an input it did not have starts as in a fresh
        model, unknown (0) in every label it learnt; one this version no longer has is
        left out."""
        saved = data.get("features")
        other = data.get("feature_set") != FEATURE_SET
        if not isinstance(saved, list) or not all(isinstance(name, str) for name in saved):
            saved = None
        order: Sequence[str] = FEATURE_NAMES
        if other and saved is not None:
            order = saved
        elif other:
            raise ValueError(
                f"model was trained on feature set {data.get('feature_set')!r}, "
                f"this fraudwatch uses {FEATURE_SET!r}"
            )
        model = cls(
            learning_rate=float(data["learning_rate"]),
            l2=float(data["l2"]),
            rescale_every=int(data["rescale_every"]),
        )
        n = len(order)
        # Saved before the sums (averages and squared deviations): converted to them.
        names = ("sums", "squares") if "sums" in data else ("mean", "m2")
        fields = {}
        for name in ("w", "g2", "scale", *names):
            values = [float(v) for v in data[name]]
            if len(values) != n or not all(math.isfinite(v) for v in values):
                raise ValueError(f"model field {name!r} is damaged")
            fields[name] = values
        if other:
            fields = _by_name(fields, order)
        model.w, model.g2, model.scale = fields["w"], fields["g2"], fields["scale"]
        model.b = float(data["b"])
        model.g2b = float(data["g2b"])
        model.count = int(data["count"])
        model.frauds = int(data["frauds"])
        model.weight_sum = total = float(data.get("weight_sum", model.count))
        # Saved before calibration: none yet.
        calibration = [float(v) for v in data.get("calibration", (1.0, 0.0))]
        if len(calibration) != 2 or not all(math.isfinite(v) for v in calibration):
            raise ValueError("model field 'calibration' is damaged")
        model.cal_a, model.cal_b = calibration
        if "sums" in data:
            model.sums, model.squares = fields["sums"], fields["squares"]
        else:
            model.sums = [m * total for m in fields["mean"]]
            model.squares = [
                q + m * m * total for m, q in zip(fields["mean"], fields["m2"], strict=True)
            ]
        return model


_FRESH = {"w": 0.0, "g2": GRADIENT_PRIOR, "scale": 1.0, "sums": 0.0, "squares": 0.0}
"""Each per-input field of a fresh `OnlineLogit`, for an input a saved model did not have
(averages and squared deviations, saved before the sums, are 0 for it too)."""


def _by_name(fields: Mapping[str, list[float]], saved: Sequence[str]) -> dict[str, list[float]]:
    """A saved model's per-input fields, in its inputs' order `saved`, in FEATURE_NAMES
    order: an input it had keeps its weight, AdaGrad sum, scale and statistics; one it did
    not have starts as in a fresh model, which is what its statistics say too (it read 0,
    unknown, in every label learnt); one it had that this version dropped is left out."""
    at = {name: i for i, name in enumerate(saved)}
    return {
        field: [
            values[at[name]] if name in at else _FRESH.get(field, 0.0) for name in FEATURE_NAMES
        ]
        for field, values in fields.items()
    }


CALIBRATION_RATE = 0.0005
"""Step of the calibration's offset per unit of error and weight. Faster (0.002) calibrates
the simulator's middle bands better but moves the scores of different days apart, which
cost pooled AP on the handbook-style stream (0.521 -> 0.507); this rate keeps it (0.519)
and still halves the simulator's under-prediction (docs/model.md, "Calibration")."""
CALIBRATION_SLOPE_SHARE = 0.1
"""The slope learns at a tenth of the offset's rate (its gradient carries the logit, ~10×)."""
MIN_SLOPE = 0.1
"""The slope stays positive: calibration never reverses the model's ranking."""

NEGATIVE_RATIO = 0.0
"""Legitimate labels learnt per fraud once they abound (`NegativeSampler`); 0, the default,
learns every label. Since a kept label is learnt as as many steps as it stands for, a sample
saves little CPU (the same within the noise in a backtest), and its lumps of repeated steps
cost ranking: the handbook-style stream's 60-day AP 0.624 at 20 per fraud, 0.646 with every
label (docs/model.md, "Downsampling legitimate labels")."""


class NegativeSampler:
    """Which legitimate labels the model learns, and what each stands for.

    Where every transaction gets a label (a simulator's truth, a backtest), legitimate ones
    outnumber frauds fifty to one and nearly all of them say the same thing; learning each
    is most of the model's cost. Once more than `ratio` legitimate labels per fraud (and at
    least `floor`) have been seen, a legitimate label is learnt with probability
    r = ratio * frauds / legitimate and weight 1/r, so the model's expected gradient, and so
    its calibration, are those of learning them all (importance weighting). Frauds are
    always learnt; so is every legitimate label where they are scarce, as when analysts'
    resolutions are the only labels. The choice is a hash of the transaction id: the same
    labels in the same order give the same model. `ratio` 0 learns every label.
    """

    __slots__ = ("floor", "frauds", "legitimate", "ratio", "skipped")

    def __init__(self, ratio: float = NEGATIVE_RATIO, floor: int = 2_000) -> None:
        if ratio < 0:
            raise ValueError(f"ratio must be >= 0, got {ratio}")
        self.ratio = ratio
        self.floor = floor
        self.frauds = 0
        self.legitimate = 0
        self.skipped = 0

    def weight(self, tx_id: str, is_fraud: bool) -> float:
        """0 to leave this label out, else the weight to learn it with."""
        if is_fraud:
            self.frauds += 1
            return 1.0
        self.legitimate += 1
        if not self.ratio:
            return 1.0
        kept = self._kept(tx_id)
        if not kept:
            self.skipped += 1
        return kept

    def _kept(self, tx_id: str) -> float:
        wanted = max(self.ratio * self.frauds, self.floor)
        if self.legitimate <= wanted:
            return 1.0
        rate = wanted / self.legitimate
        if zlib.crc32(tx_id.encode()) >= rate * 4294967296.0:
            return 0.0
        return 1.0 / rate

    def taken_back(self, tx_id: str, is_fraud: bool, weight: float | None = None) -> float:
        """The weight to take back a label given earlier with (a correction replaced it),
        0 if there is nothing to take back; the label stops counting here too. `weight`:
        what `weight` returned for it, where that is known (`ModelSlot.given`).

        Otherwise a fraud was learnt with weight 1, and a legitimate label is decided by the
        rule that decided whether to keep it, at today's rate, on the same hash: a label
        sampled out is not taken back, nor one kept taken back twice, for as long as the
        rate stays where it was (it moves only as the mix of labels does); where it has
        moved, a label is taken back with probability r and weight 1/r, so what is taken
        back is, on average, the weight 1 it stood for (docs/model.md, "Corrected labels")."""
        if is_fraud:
            self.frauds = max(self.frauds - 1, 0)
            return 1.0 if weight is None else weight
        if weight is None:
            weight = self._kept(tx_id) if self.ratio else 1.0
        self.legitimate = max(self.legitimate - 1, 0)
        return weight


_INDEX = {name: i for i, name in enumerate(FEATURE_NAMES)}


_BAND_OF = {"ratio": "log_ratio", "zscore": "zscore", "tx_1h": "log_tx_1h", "tx_1m": "log_tx_1m",
            "amount": "log_amount"}  # fmt: skip


def _factors() -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, tuple[int, ...]], ...]]:
    """The inputs an analyst reads as one factor, named by its first: each value with its
    bands (`BANDED`, `AMOUNT`), and every other input alone (apart: most inputs are alone, and
    `explain` takes them in one pass). One factor, one share of the score: a value and its
    band used to be ranked apart and could read as the same phrase twice, each with half the
    weight, or with a large share that its band took back."""
    members = {name: [i] for i, name in enumerate(FEATURE_NAMES)}
    for banded in (*BANDED, AMOUNT):
        for i in range(len(banded.edges) + 1):
            band = f"{banded.name}_band_{i}"
            members[_BAND_OF[banded.name]] += members.pop(band)
    alone = tuple((name, ix[0]) for name, ix in members.items() if len(ix) == 1)
    grouped = tuple((name, tuple(ix)) for name, ix in members.items() if len(ix) > 1)
    return alone, grouped


_ALONE, _GROUPED = _factors()


_RATIO_FLOOR_LOG = math.log(1e-3)
"""`inputs` floors the ratio at 0.001 before its log (an amount of 0 has none)."""
_Z_LOW, _Z_HIGH = -5.0, 10.0
"""`inputs` clips the z-score to this range (its literals, kept there for speed): at an end
the real value may be any past it."""
_RATIO_CROSSES = {
    "log_ratio": "amount",
    "night_ratio": "night-time amount",
    "new_country_ratio": "new country with an amount",
    "new_device_ratio": "new device with an amount",
}
"""Inputs that are the log of the amount over the account's average (or that times a flag),
and how each reads before the ratio."""


def _times_average(log_ratio: float) -> str:
    """How many times the account's average, from the log of that ratio: below 1 as above."""
    if log_ratio <= _RATIO_FLOOR_LOG:
        return "at most 0.001× the account's average"
    ratio = math.exp(log_ratio)
    shown = beyond_cap(ratio, SHOWN_RATIO_CAP) or (
        f"{ratio:,.0f}" if ratio >= 10 else f"{ratio:.1f}" if ratio >= 1 else f"{ratio:.2g}"
    )
    return f"{shown}× the account's average"


def _deviations(z: float) -> str:
    """The z-score in words: how many standard deviations above or below the average."""
    if z == 0:
        return "amount at the account's average"
    side = "above" if z > 0 else "below"
    if z >= _Z_HIGH or z <= _Z_LOW:  # clipped: the real value may be far past it
        return f"amount {abs(z):g} or more standard deviations {side} the account's average"
    return f"amount {abs(z):.2f} standard deviations {side} the account's average"


def _shown(name: str, value: float) -> str:
    """An input as an analyst reads it: log inputs back on their own scale, flags as words,
    signed values with the side they are on (below the average as much as above)."""
    label = FEATURE_LABELS[name]
    if name in _RATIO_CROSSES:
        return f"{_RATIO_CROSSES[name]} {_times_average(value)}"
    if name == "zscore":
        return _deviations(value)
    if name == "log_amount":  # to the cent: a card test's 0.40 is not an amount of 0
        return f"amount: {math.expm1(value):,.2f}"
    if name.startswith("merchant_fraud_") or name in ("amount_risk", "hour_risk"):
        return f"{label}: {value:.1%}"
    if name == "rules_logit":
        return f"rules' combined score {sigmoid(value):.2f}"
    if name.startswith("log_") and label.startswith("log "):
        return f"{label[4:]}: {math.expm1(value):,.0f}"
    if value == 1.0 and name != "prior_flag_24h":
        return label
    return f"{label}: {value:.2f}"


def explain(
    predictor: Predictor, x: Sequence[float], probability: float, threshold: float, top: int = 3
) -> Reason:
    """The `model` reason: the probability and the inputs that pushed it up the most."""
    c = predictor.contribution_list(x)
    # Only inputs this transaction has: "no new device" as a reason for fraud confuses more
    # than it explains, even when its absence is what moved the score.
    present = [(name, c[i]) for name, i in _ALONE if c[i] > 0 and x[i]]
    for name, members in _GROUPED:
        if any(x[i] for i in members):
            share = sum(c[i] for i in members)
            if share > 0:
                present.append((name, share))
    ranked = sorted(present, key=lambda item: -item[1])[:top]
    parts = [f"{_shown(name, x[_INDEX[name]])} ({c:+.1f})" for name, c in ranked]
    factors = "; ".join(parts) if parts else "no single input stands out"
    return Reason(
        "model",
        f"Model: fraud probability {probability:.0%} (review threshold {threshold:.0%}), "
        f"learned from {predictor.labels_seen:,} labels; top factors: {factors}",
        round(probability, 4),
        threshold,
        probability,
        unit="fraction",
    )


Decide = Callable[[float], Decision]
GIVEN_MAX = 250_000
"""How many labels' `ModelSlot.given` keeps when the slot has no `memory` limit."""
_GIVEN = {(y, w): (y, w) for y in (False, True) for w in (None, 0.0, 1.0)}


class ModelSlot:
    """The model as the detector holds it: the current predictor (None until enough labels:
    then the score is the rules' score), each recent transaction's inputs until its label
    arrives, and, for learning inline (backtests), the learner itself.

    In the server a trainer thread owns the learner and swaps `predictor` (one attribute
    assignment, made on the event loop); `pop_examples` hands it inputs to learn from.
    """

    __slots__ = (
        "evicted",
        "flags",
        "given",
        "given_max",
        "learner",
        "memory",
        "min_frauds",
        "min_labels",
        "predictor",
        "remembered",
        "repeated",
        "repeated_example",
        "sampler",
        "scored_inputs",
        "superseded",
    )

    def __init__(
        self,
        *,
        memory: int | None = 250_000,
        min_labels: int = 500,
        min_frauds: int = 20,
        learner: OnlineLogit | None = None,
        predictor: Predictor | None = None,
        negative_ratio: float = NEGATIVE_RATIO,
    ) -> None:
        if memory is not None and memory < 1:
            raise ValueError(f"memory must be >= 1 or None, got {memory}")
        self.memory = memory  # None: no limit (a backtest forgets what no label will need)
        self.evicted = 0  # inputs let go of at the `memory` limit, oldest first
        self.min_labels = min_labels
        self.min_frauds = min_frauds
        self.learner = learner
        self.predictor = predictor
        # Insertion order is scoring order: the oldest inputs are forgotten first.
        self.remembered: OrderedDict[str, bytes] = OrderedDict()
        # Learning inline (a `learner`: backtests), the inputs each remembered transaction a
        # model scored was scored on (`pack_active`), by id: its label is learnt from them,
        # not from inputs made again from `remembered`. Never snapshotted: a trainer's slot
        # (the server's) keeps none.
        self.scored_inputs: dict[str, bytes] = {}
        # What the trainer was given of each transaction labelled lately: (fraud?, the
        # sampler's weight: 0 left out; None: no inputs, so nothing counted at all), for a
        # correction to take back exactly that. As many as `memory` (GIVEN_MAX without one: a
        # backtest, which never corrects, would keep every label of the file), in this process
        # only: one not here (older, or from before a restart) is taken back by the sampler's
        # rule.
        self.given: OrderedDict[str, tuple[bool, float | None]] = OrderedDict()
        self.given_max = GIVEN_MAX if memory is None else memory
        # Transactions scored under the id of one still remembered (its label not yet
        # learnt): a backtest's file with an id twice. The later row's inputs replace the
        # earlier's, so, learning inline, the earlier row's label is not learnt (`superseded`:
        # how many labels of each such id to pass over, oldest first) and the latest row's
        # label is learnt from its own inputs. Found by the look-up `_remember` makes anyway,
        # so only within the label's delay: a repeat after it is learnt is its own row.
        self.repeated = 0
        self.repeated_example: str | None = None
        self.superseded: dict[str, int] = {}
        self.flags = AccountFlags()
        self.sampler = NegativeSampler(negative_ratio)

    def ready(self, labels: int, frauds: int) -> bool:
        """Enough labels, of both kinds, for the model's score to replace the rules'."""
        return labels >= self.min_labels and min(frauds, labels - frauds) >= self.min_frauds

    def observe(self, tx: Transaction, features: Mapping[str, Any], rules: Scored) -> bytes:
        """What the model reads of `tx` (`capture`: its features and the rules that fired),
        packed, for every transaction the lists did not decide, whether or not a model is
        ready; the account's recent flags are left at none, for `flag` to fill in. Reads no
        state of the slot: a backtest calls it in its reader process."""
        return capture(features, tx, rules.reasons, rules.score)

    def flag(self, account_id: str, raw: bytes, rules_score: float, t: float) -> bytes:
        """`observe`'s `raw` with the account's recent flags (`AccountFlags.recent`) filled
        in; the account is flagged if the rules say so. In event order, for every
        transaction `observe` packed. `t`: `tx.timestamp.timestamp()`. In a backtest this
        runs in the scoring process, not the reader, which had the more work to do
        (docs/backtest.md#throughput-and-memory)."""
        flags = self.flags
        # Most accounts were never flagged: one look-up, not a call of `recent`, for them.
        if flags.accounts.get(account_id):
            recent = flags.recent(account_id, t)
            if recent is not _NO_FLAGS:  # most accounts: none, as packed already
                raw = raw[:_FLAGS_AT] + _FLAGS.pack(*recent) + raw[_FLAGS_END:]
        if rules_score >= FLAG_SCORE:  # `note` ignores the rest: spare the call
            flags.note(account_id, t, rules_score)
        return raw

    def rescore(
        self,
        tx_id: str,
        raw: bytes,
        rules: Scored,
        decide: Decide,
        review_threshold: float,
        *,
        factors: bool = True,
        bands: LossBands = DEFAULT_BANDS,
    ) -> Scored | None:
        """The verdict with the model, from `observe`'s `raw` inputs, which are kept until
        the label comes; None while no model is ready (the rules' verdict stands). Its
        probability replaces the rules' score, and the `model` reason joins the rules' when
        that flags the transaction (with its top factors unless `factors` is False:
        `Detector.explain`). Its severity is banded by `bands`, the rule set's."""
        predictor = self.predictor
        if predictor is None:
            self._remember(tx_id, raw)
            self.scored_inputs.pop(tx_id, None)  # an id scored again: these inputs
            return None
        index, values = active_inputs(raw)
        logit = predictor.logit_active(index, values)
        if self.memory is None:  # `_remember` without its call (a backtest has no limit)
            remembered = self.remembered
            if tx_id in remembered:
                self._repeat(tx_id)
            remembered[tx_id] = raw + _pack_logit(logit)  # the calibration learns from it
        else:
            self._remember(tx_id, raw + _pack_logit(logit))
        if self.learner is not None:  # `pack_active`, written out: once a row in a backtest
            self.scored_inputs[tx_id] = _DOUBLES[len(values)].pack(*values) + bytes(index)
        p = sigmoid(predictor.cal_a * logit + predictor.cal_b)  # `predictor.calibrated(logit)`
        score = round(p, 4)
        decision = decide(score)
        reasons = rules.reasons
        if decision == "allow":
            return Scored(score, decision, "low", reasons, rules.rules_version)
        if factors:  # every input, for the top factors: a few per cent of transactions
            reason = explain(predictor, inputs(raw), p, review_threshold)
        else:
            reason = Reason("model", "", score, review_threshold, p, unit="fraction")
        reasons = (reason, *reasons)
        level = severity(decision, score, amount_scaled(raw), reasons, bands)
        return Scored(score, decision, level, reasons, rules.rules_version)

    def _remember(self, tx_id: str, raw: bytes) -> None:
        remembered = self.remembered
        if tx_id in remembered:
            self._repeat(tx_id)
        remembered[tx_id] = raw
        memory = self.memory
        if memory is not None and len(remembered) > memory:
            # An OrderedDict: a plain dict's first key is found by skipping every deleted
            # slot before it, ~50 us at 250k entries once evictions start.
            oldest, _ = remembered.popitem(last=False)
            self.scored_inputs.pop(oldest, None)
            self.evicted += 1

    def _repeat(self, tx_id: str) -> None:
        """`tx_id` is scored again while its earlier inputs wait for their label."""
        self.repeated += 1
        if self.repeated_example is None:
            self.repeated_example = tx_id
        self.remembered.move_to_end(tx_id)  # kept as long as the latest row needs
        if self.learner is not None:  # a trainer's labels come by `pop_examples`, not here
            self.superseded[tx_id] = self.superseded.get(tx_id, 0) + 1

    def forget(self, tx_id: str) -> None:
        """Let go of `tx_id`'s inputs at once: no label will come for it (a backtest's
        unlabelled row)."""
        self.remembered.pop(tx_id, None)
        self.scored_inputs.pop(tx_id, None)

    def kept(self, tx_id: str) -> bytes | None:
        """The inputs remembered for `tx_id` (`RAW_LAYOUT`), as learnt when its label comes."""
        return self.remembered.get(tx_id)

    def pop_examples(
        self, labels: Iterable[tuple[str, bool]], replaced: Mapping[str, bool] | None = None
    ) -> tuple[list[tuple[bytes, bool, float]], list[tuple[str, bool]]]:
        """The remembered inputs of labelled transactions, packed, with their weights
        (`NegativeSampler`; left-out ones are dropped), forgotten here: each is learnt
        once. A label that `replaced` a different one (by transaction id: was it fraud?)
        comes after the earlier label's take-back, the same inputs with the negative of
        the weight it was learnt with (`given`; none if it was left out or had no inputs;
        by `NegativeSampler.taken_back`'s rule if not known here). Also the labels whose
        inputs are not remembered (scored too long ago: `memory`; or by another process),
        for `stored_examples`; a second label for a transaction learnt in the same call is
        dropped."""
        examples: list[tuple[bytes, bool, float]] = []
        missing: list[tuple[str, bool]] = []
        popped: set[str] = set()
        remembered, weight = self.remembered, self.sampler.weight
        for tx_id, is_fraud in labels:
            x = remembered.pop(tx_id, None)
            if x is None:
                if tx_id not in popped:
                    missing.append((tx_id, is_fraud))
                continue
            popped.add(tx_id)
            if replaced:
                self._take_back(examples, x, tx_id, is_fraud, replaced)
            if w := self._give(tx_id, is_fraud, weight(tx_id, is_fraud)):
                examples.append((x, is_fraud, w))
        return examples, missing

    def stored_examples(
        self,
        labels: Iterable[tuple[str, bool]],
        stored: Mapping[str, tuple[str, bytes]],
        replaced: Mapping[str, bool] | None = None,
    ) -> tuple[list[tuple[bytes, bool, float]], int]:
        """`pop_examples` for labels whose inputs come from the store (`Store.model_inputs`:
        layout and bytes), read as a snapshot's are (`remembered_entry`). Also how many had
        none that this model can read (stored before inputs were, or by an unknown layout)."""
        examples: list[tuple[bytes, bool, float]] = []
        missing = 0
        weight = self.sampler.weight
        seen: set[str] = set()
        for tx_id, is_fraud in labels:
            if tx_id in seen:
                continue
            seen.add(tx_id)
            found = stored.get(tx_id)
            x = None if found is None else remembered_entry(*found)
            if x is None:
                missing += 1
                if tx_id not in self.given:  # else: what it was given is still in the model
                    self._give(tx_id, is_fraud, None)
                continue
            if replaced:
                self._take_back(examples, x, tx_id, is_fraud, replaced)
            if w := self._give(tx_id, is_fraud, weight(tx_id, is_fraud)):
                examples.append((x, is_fraud, w))
        return examples, missing

    def withdrawn_examples(
        self, withdrawn: Iterable[tuple[str, bool]], stored: Mapping[str, tuple[str, bytes]]
    ) -> tuple[list[tuple[bytes, bool, float]], int]:
        """The take-backs of labels withdrawn with nothing in their place (by transaction
        id: was it fraud?; an alert reopened): as a correction's take-back, the inputs
        (remembered, else `stored`) with the negative of the weight the label was learnt
        with, none if it was left out or learnt without inputs. The transaction's `given`
        goes: the model holds nothing of it any more. Also how many could not be taken back
        for want of inputs this model can read (they stay counted)."""
        examples: list[tuple[bytes, bool, float]] = []
        missing = 0
        for tx_id, was in withdrawn:
            x = self.remembered.get(tx_id)
            if x is None:
                found = stored.get(tx_id)
                x = None if found is None else remembered_entry(*found)
            given = self.given.get(tx_id)
            if x is not None:
                self._take_back_label(examples, x, tx_id, was)
            elif given is None or given[1] is not None:
                missing += 1  # something was learnt, or may have been: not taken back
            self.given.pop(tx_id, None)
        return examples, missing

    def _give(self, tx_id: str, is_fraud: bool, weight: float | None) -> float | None:
        given = self.given
        given.pop(tx_id, None)
        entry = (is_fraud, weight)
        given[tx_id] = _GIVEN.get(entry, entry)  # most are one of a few: shared, not 56 B each
        if len(given) > self.given_max:
            given.popitem(last=False)
        return weight

    def _take_back(
        self,
        examples: list[tuple[bytes, bool, float]],
        x: bytes,
        tx_id: str,
        is_fraud: bool,
        replaced: Mapping[str, bool],
    ) -> None:
        """The take-back of the label `is_fraud` replaced, if it replaced another."""
        was = replaced.get(tx_id)
        if was is not None and was != is_fraud:
            self._take_back_label(examples, x, tx_id, was)

    def _take_back_label(
        self, examples: list[tuple[bytes, bool, float]], x: bytes, tx_id: str, was: bool
    ) -> None:
        """The label `was` taken back with the weight it was learnt with (none if the model
        holds nothing of it)."""
        given = self.given.get(tx_id)
        if given is None:
            w = self.sampler.taken_back(tx_id, was)  # not known here: the sampler's rule
        elif given[0] != was or given[1] is None:
            return  # the model holds nothing of `was` (no inputs when it came): none to take
        else:
            w = self.sampler.taken_back(tx_id, was, given[1])
        if w:
            examples.append((x, was, -w))

    def learn_label(self, tx_id: str, is_fraud: bool) -> bool:
        """Learn inline (no trainer thread: backtests). False if the inputs are gone
        (`memory` let go of them, or the model read nothing of it: a list decided it), or
        are a later row's of the same id (`_repeat`): that row's label is learnt from them."""
        learner = self.learner
        if learner is None:
            raise RuntimeError("this ModelSlot has no learner: labels go to its trainer")
        superseded = self.superseded
        if superseded and tx_id in superseded:
            # An earlier row's label: the inputs kept are a later row's (`_repeat`).
            if superseded[tx_id] == 1:
                del superseded[tx_id]
            else:
                superseded[tx_id] -= 1
            return False
        x = self.remembered.pop(tx_id, None)
        active = self.scored_inputs.pop(tx_id, None)
        if x is None:
            return False
        weight = self.sampler.weight(tx_id, is_fraud)
        if not weight:
            return True
        if active is None:  # no model scored it: its inputs were never made
            learn_example(learner, x, is_fraud, weight)
        else:  # `learn_example` with `unpack_active(active)`, written out: once a label
            if len(x) != _RAW_SIZE:  # `scored_logit`: a model scored it
                learner.calibrate(_LOGIT.unpack_from(x, _RAW_SIZE)[0], is_fraud, weight)
            k = len(active) // 9
            learner.learn_active(active[8 * k :], _DOUBLES[k].unpack_from(active), is_fraud, weight)
        # A fresh snapshot every REFREEZE_EVERY labels: current enough (a few hundred labels
        # move the weights little), and refreezing per label would double the cost of learning.
        if learner.count % REFREEZE_EVERY == 0 and self.ready(learner.count, learner.frauds):
            self.predictor = learner.freeze(learner.count)
        return True
