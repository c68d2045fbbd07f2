"""What scoring one transaction produces: score, decision, severity and the reasons why."""

from __future__ import annotations

from typing import Literal

import msgspec

Decision = Literal["allow", "review", "block"]
Severity = Literal["low", "medium", "high", "critical"]


class Reason(msgspec.Struct, frozen=True, omit_defaults=True):
    """One rule that fired, with the observed value set against its threshold."""

    code: str
    message: str
    observed: float | str | None = None
    threshold: float | str | None = None
    weight: float = 0.0
    severity: Severity | None = None


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
