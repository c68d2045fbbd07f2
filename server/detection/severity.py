"""An alert's severity: how much fraud money it likely holds, for an analyst's triage."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from server.detection.verdict import Decision, Reason, Severity

HIGH_LOSS = 100.0
"""The default of `[settings] high_loss`: the expected loss (score * the amount on the
stream's scale) from which an alert is `high`: a likely fraud of about 100 dollars or euros,
or a more doubtful one of 200."""
CRITICAL_LOSS = 500.0
"""The default of `[settings] critical_loss`: the expected loss from which a block is
`critical`: a block of 625 dollars or more (its
score is at least 0.8), or of 500 and more when the score is near 1. A review stays `high`
however large the amount: critical means likely fraud *and* money at stake.

Measured on the simulator's 30 days (docs/rules.md, "Score, decision, severity"): 4,811
alerts, of which the score's bands made 3,712 critical (every block) holding 235 of fraud
money per alert, the high ones 194 and the medium ones 220: the column said how sure, not
what was at stake, and a 2-dollar card test read as a 3,000-dollar takeover did. With these
bands, 470 are critical (9.8 %) and hold 1,157 of fraud money per alert and half of all of
it, 1,646 high hold 295, and 2,695 medium (card tests, velocity bursts of small amounts) 24."""


@dataclass(frozen=True, slots=True)
class LossBands:
    """Where an alert's expected loss turns `high` and, for a block, `critical`: a rule set's
    `[settings] high_loss` and `critical_loss` (server/detection/rules.py validates them:
    positive, critical >= high), for an operator whose amounts are of another size."""

    high: float = HIGH_LOSS
    critical: float = CRITICAL_LOSS


DEFAULT_BANDS = LossBands()


def severity(
    decision: Decision,
    score: float,
    amount_scaled: float,
    reasons: Iterable[Reason],
    bands: LossBands = DEFAULT_BANDS,
) -> Severity:
    """The severity of a verdict: `low` for an `allow` (no alert); for an alert, from its
    expected loss, `score * amount_scaled` (the amount on the stream's scale, `amount_scaled`
    in server/detection/features.py, so that 500 means dollars in dollars and 75,000 in yen):
    `medium` under `bands.high` (HIGH_LOSS unless the rule set says otherwise), `high` from
    it, `critical` from `bands.critical` (CRITICAL_LOSS) for a block. A
    reason whose severity is `critical` (a block list's, or a rule a pack marks critical)
    makes the alert critical whatever the amount; a rule's `low`, `medium` or `high` stays on
    its reason and leaves the alert's as the money says."""
    if decision == "allow":
        return "low"
    for reason in reasons:
        if reason.severity == "critical":
            return "critical"
    loss = score * amount_scaled
    if loss >= bands.critical and decision == "block":
        return "critical"
    return "high" if loss >= bands.high else "medium"
