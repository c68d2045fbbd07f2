"""The scoring rules: each turns features into at most one weighted, explained Reason."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar

from server.detection.features import WINDOW_S, Features
from server.detection.verdict import Reason
from server.transactions import Transaction

# The version hash covers parameters only: bump this when what a rule computes changes.
RULES_FAMILY = "core-1"


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleParams:
    """Every threshold and weight; `version` changes whenever any of them does.

    Weights combine by noisy-OR. They are set so that one strong signal (outlier, travel,
    card testing, a minute's burst) reaches review at 0.5, any two strong ones reach block
    at 0.8, and a weak one (novelty, velocity over the hour, night spending) stays allow.
    """

    min_history: int = 5
    outlier_ratio: float = 5.0
    outlier_min_z: float = 3.0
    outlier_weight: float = 0.6
    velocity_1m_count: int = 5
    velocity_1m_weight: float = 0.55
    velocity_1h_count: int = 20
    velocity_1h_weight: float = 0.35
    travel_speed_kmh: float = 900.0
    travel_min_km: float = 50.0
    travel_weight: float = 0.7
    new_country_weight: float = 0.3
    new_merchant_weight: float = 0.15
    new_device_weight: float = 0.2
    tiny_amount: float = 5.0
    tiny_window_s: float = 600.0
    card_testing_count: int = 3
    card_testing_weight: float = 0.65
    night_start_hour: int = 0
    night_end_hour: int = 5
    night_ratio: float = 3.0
    night_amount: float = 1000.0
    night_weight: float = 0.35

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_weight") and not 0.0 <= value <= 1.0:
                raise ValueError(f"RuleParams.{f.name} must be in [0, 1], got {value}")
            if f.name.endswith("_count") and value < 1:
                raise ValueError(f"RuleParams.{f.name} must be >= 1, got {value}")
        if not 0 < self.tiny_window_s <= WINDOW_S:
            raise ValueError(
                f"RuleParams.tiny_window_s must be in (0, {WINDOW_S:g}], got {self.tiny_window_s}"
            )
        for name in ("night_start_hour", "night_end_hour"):
            if not 0 <= getattr(self, name) <= 24:
                raise ValueError(f"RuleParams.{name} must be in [0, 24], got {getattr(self, name)}")

    @property
    def version(self) -> str:
        # As floats, so that 5 and 5.0 (same rules) give the same version.
        values = {name: float(value) for name, value in dataclasses.asdict(self).items()}
        blob = json.dumps(values, sort_keys=True).encode()
        return f"{RULES_FAMILY}+{hashlib.sha256(blob).hexdigest()[:8]}"


def _num(value: float | Decimal, places: int = 2) -> str:
    return f"{value:,.{places}f}"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _history(f: Features, p: RuleParams) -> str:
    return f"{f.history} prior transactions; rule applies from {p.min_history}"


class Rule:
    """One check. Subclasses set `code` and implement `check`; both stay pure."""

    __slots__ = ("params",)
    code: ClassVar[str]

    def __init__(self, params: RuleParams) -> None:
        self.params = params

    def check(self, f: Features, tx: Transaction) -> Reason | None:
        raise NotImplementedError


class AmountOutlier(Rule):
    """Amount far above the account's own average, and not within its usual spread."""

    __slots__ = ()
    code = "amount_outlier"

    def check(self, f: Features, tx: Transaction) -> Reason | None:
        p = self.params
        if f.history < p.min_history or f.mean <= 0:
            return None
        ratio = f.amount / f.mean
        if ratio < p.outlier_ratio:
            return None
        # The ratio alone would flag accounts whose spending is simply erratic.
        z = (f.amount - f.mean) / f.std if f.std > 0 else float("inf")
        if z < p.outlier_min_z:
            return None
        spread = "" if f.std == 0 else f", {z:.1f} standard deviations above it"
        return Reason(
            self.code,
            f"Amount {_num(tx.amount)} {tx.currency} is {ratio:.1f}× this account's average "
            f"of {_num(f.mean)} (threshold {p.outlier_ratio:g}×){spread}",
            round(ratio, 2),
            p.outlier_ratio,
            p.outlier_weight,
        )


class Velocity1m(Rule):
    """A burst: many transactions within a minute."""

    __slots__ = ()
    code = "velocity_1m"

    def check(self, f: Features, tx: Transaction) -> Reason | None:
        p = self.params
        if f.tx_1m < p.velocity_1m_count:
            return None
        return Reason(
            self.code,
            f"{f.tx_1m} transactions in the last minute, this one included "
            f"(threshold {p.velocity_1m_count})",
            f.tx_1m,
            p.velocity_1m_count,
            p.velocity_1m_weight,
        )


class Velocity1h(Rule):
    """Sustained activity: many transactions within an hour."""

    __slots__ = ()
    code = "velocity_1h"

    def check(self, f: Features, tx: Transaction) -> Reason | None:
        p = self.params
        if f.tx_1h < p.velocity_1h_count:
            return None
        return Reason(
            self.code,
            f"{f.tx_1h} transactions in the last hour, this one included "
            f"(threshold {p.velocity_1h_count})",
            f.tx_1h,
            p.velocity_1h_count,
            p.velocity_1h_weight,
        )


class ImpossibleTravel(Rule):
    """Two located transactions too far apart for the time between them."""

    __slots__ = ()
    code = "impossible_travel"

    def check(self, f: Features, tx: Transaction) -> Reason | None:
        p = self.params
        # Short hops are within geolocation error (an IP in the next city), not travel.
        if f.distance_km is None or f.distance_km < p.travel_min_km:
            return None
        speed = f.speed_kmh
        if speed is None or speed < p.travel_speed_kmh:
            return None
        return Reason(
            self.code,
            f"{_num(f.distance_km, 0)} km from the previous location in "
            f"{_duration(f.elapsed_s or 0.0)} implies {_num(speed, 0)} km/h "
            f"(threshold {_num(p.travel_speed_kmh, 0)} km/h)",
            round(speed, 1),
            p.travel_speed_kmh,
            p.travel_weight,
        )


class NewCountry(Rule):
    """First transaction in a country, for an account with an established history."""

    __slots__ = ()
    code = "new_country"

    def check(self, f: Features, tx: Transaction) -> Reason | None:
        p = self.params
        if not f.is_new_country or f.history < p.min_history:
            return None
        return Reason(
            self.code,
            f"First transaction in country {tx.country} for this account ({_history(f, p)})",
            tx.country,
            p.min_history,
            p.new_country_weight,
        )


class NewMerchant(Rule):
    """First purchase at a merchant: common on its own, so it only adds weight to others."""

    __slots__ = ()
    code = "new_merchant"

    def check(self, f: Features, tx: Transaction) -> Reason | None:
        p = self.params
        if not f.is_new_merchant or f.history < p.min_history:
            return None
        name = tx.merchant_id if tx.merchant_name is None else tx.merchant_name
        return Reason(
            self.code,
            f"First purchase at merchant {name} for this account ({_history(f, p)})",
            tx.merchant_id,
            p.min_history,
            p.new_merchant_weight,
        )


class NewDevice(Rule):
    """First transaction from a device, for an account that has used others."""

    __slots__ = ()
    code = "new_device"

    def check(self, f: Features, tx: Transaction) -> Reason | None:
        p = self.params
        if not f.is_new_device or f.history < p.min_history:
            return None
        return Reason(
            self.code,
            f"First transaction from device {tx.device_id} for this account ({_history(f, p)})",
            tx.device_id,
            p.min_history,
            p.new_device_weight,
        )


class CardTesting(Rule):
    """Several tiny amounts in a few minutes: a stolen card being checked before use."""

    __slots__ = ()
    code = "card_testing"

    def check(self, f: Features, tx: Transaction) -> Reason | None:
        p = self.params
        if f.tiny_recent < p.card_testing_count:
            return None
        return Reason(
            self.code,
            f"{f.tiny_recent} transactions under {_num(p.tiny_amount)} {tx.currency} in the "
            f"last {_duration(p.tiny_window_s)} (threshold {p.card_testing_count})",
            f.tiny_recent,
            p.card_testing_count,
            p.card_testing_weight,
        )


class NightHighAmount(Rule):
    """A large amount in the small hours of the transaction's own local time."""

    __slots__ = ("night_hours",)
    code = "night_high_amount"

    def __init__(self, params: RuleParams) -> None:
        super().__init__(params)
        start, end = params.night_start_hour, params.night_end_hour
        self.night_hours = frozenset(
            range(start, end) if start <= end else (*range(start, 24), *range(end))
        )

    def check(self, f: Features, tx: Transaction) -> Reason | None:
        if f.local_hour not in self.night_hours:
            return None
        p = self.params
        if f.history >= p.min_history and f.mean > 0 and f.amount >= p.night_ratio * f.mean:
            ratio = f.amount / f.mean
            return Reason(
                self.code,
                f"Amount {_num(tx.amount)} {tx.currency} at {tx.timestamp:%H:%M} local time is "
                f"{ratio:.1f}× this account's average of {_num(f.mean)} "
                f"(night threshold {p.night_ratio:g}×)",
                round(ratio, 2),
                p.night_ratio,
                p.night_weight,
            )
        if f.amount >= p.night_amount:
            return Reason(
                self.code,
                f"Amount {_num(tx.amount)} {tx.currency} at {tx.timestamp:%H:%M} local time is "
                f"at or above the night limit of {_num(p.night_amount)} {tx.currency}",
                f.amount,
                p.night_amount,
                p.night_weight,
            )
        return None


RULE_TYPES: tuple[type[Rule], ...] = (
    AmountOutlier,
    Velocity1m,
    Velocity1h,
    ImpossibleTravel,
    NewCountry,
    NewMerchant,
    NewDevice,
    CardTesting,
    NightHighAmount,
)


def build_rules(params: RuleParams) -> tuple[Rule, ...]:
    return tuple(rule_type(params) for rule_type in RULE_TYPES)
