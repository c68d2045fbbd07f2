"""What scoring one transaction produces: score, decision, severity and the reasons why."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

import msgspec

Decision = Literal["allow", "review", "block"]
Severity = Literal["low", "medium", "high", "critical"]
UNITS: dict[str, str] = {
    "count": "how many: transactions, labels, distinct merchants",
    "currency": "an amount, in the transaction's currency: a reason says the ISO 4217 code",
    "ratio": "times the account's usual (an amount over its average)",
    "sd": "standard deviations from a mean",
    "fraction": "a proportion or probability from 0 to 1 (0.25 is 25 %)",
    "s": "a duration in seconds",
    "km": "a distance in kilometres",
    "km/h": "a speed in kilometres per hour",
}
"""The units a feature (and so a reason's figures) can be in; `currency` never reaches a
reason as such."""


class Reason(msgspec.Struct, frozen=True, omit_defaults=True):
    """One rule that fired, with the observed value set against its threshold."""

    code: str
    message: str
    # int before float: a count read back from the store stays `3`, as the verdict said it,
    # not `3.0` (msgspec decodes a JSON integer into the first numeric type of the union).
    observed: int | float | str | None = None
    threshold: int | float | str | None = None
    weight: float = 0.0
    severity: Severity | None = None
    # What `observed` and `threshold` measure (UNITS, or the transaction's currency code for
    # an amount); absent for text, booleans, and alerts stored before reasons carried it.
    unit: str | None = None


class Scored(msgspec.Struct, frozen=True):
    """The detector's answer for one transaction, before the pipeline adds ids and timing."""

    score: float
    decision: Decision
    severity: Severity
    reasons: tuple[Reason, ...]
    rules_version: str


class Verdict(msgspec.Struct, omit_defaults=False):
    """The answer an integrator gets for one transaction (the API contract)."""

    transaction_id: str
    score: float
    decision: Decision
    reasons: list[Reason]
    alert_id: str | None
    rules_version: str
    latency_ms: float


def beyond_cap(value: Any, cap: float) -> str | None:
    """How a number past `cap` reads in a reason: `more than 1,000` (or below minus it,
    `less than -1,000`), else None. Rule templates (`{x:.1f|1000}`) and the model's factors
    both cap this way. Infinite values are past any cap (`amount_z` is infinite when an
    account's amounts never varied), and a ratio of 2,531,645,569,620 tells an analyst no
    more than this does."""
    if not isinstance(value, int | float | Decimal) or isinstance(value, bool):
        return None
    limit = f"{int(cap):,}" if cap == int(cap) else f"{cap:,}"
    if value > cap:
        return f"more than {limit}"
    if value < -cap:
        return f"less than -{limit}"
    return None
