"""The detector: features, then rules, then one noisy-OR score, decision and severity."""

from __future__ import annotations

from server.detection.features import Featurizer
from server.detection.model import ModelSlot
from server.detection.rules import Rule, RuleParams, build_rules
from server.detection.verdict import Decision, Reason, Scored, Severity
from server.transactions import Transaction

HIGH_SEVERITY_SCORE = 0.65


class Detector:
    """Scores transactions one at a time in event time; holds every account's state.

    Not thread-safe and not async: the detection loop owns one and calls `score` in order.
    """

    __slots__ = (
        "_allow",
        "block_threshold",
        "featurizer",
        "model",
        "params",
        "review_threshold",
        "rules",
        "rules_version",
    )

    def __init__(
        self,
        *,
        review_threshold: float = 0.5,
        block_threshold: float = 0.8,
        params: RuleParams | None = None,
        model: ModelSlot | None = None,
    ) -> None:
        if not 0 <= review_threshold <= block_threshold <= 1:
            raise ValueError(
                "Thresholds must satisfy 0 <= review <= block <= 1, "
                f"got {review_threshold} and {block_threshold}"
            )
        self.review_threshold = review_threshold
        self.block_threshold = block_threshold
        self.params = RuleParams() if params is None else params
        self.rules: tuple[Rule, ...] = build_rules(self.params)
        self.rules_version = self.params.version
        self.featurizer = Featurizer(
            tiny_amount=self.params.tiny_amount, tiny_window_s=self.params.tiny_window_s
        )
        # Nearly every transaction fires nothing; they can all share one immutable answer.
        self._allow = self._scored(())
        self.model = model

    def score(self, tx: Transaction) -> Scored:
        """Score `tx` against its account's history, then add it to that history."""
        features = self.featurizer.process_one(tx)
        reasons = [r for rule in self.rules if (r := rule.check(features, tx)) is not None]
        if not reasons:
            scored = self._allow
        else:
            reasons.sort(key=_by_weight)
            scored = self._scored(tuple(reasons))
        if self.model is not None:
            return self.model.rescore(tx, features, scored, self.decide, self.review_threshold)
        return scored

    # --- learning from labels (server/detection/model.py) ---------------------------------

    @property
    def learns_labels(self) -> bool:
        return self.model is not None and self.model.learner is not None

    def learn_label(self, tx_id: str, account_id: str, is_fraud: bool, at: object) -> None:
        """A label for a transaction this detector scored (the backtest's hook): learnt at
        once when the model learns inline, ignored without a model."""
        if self.learns_labels:
            self.model.learn_label(tx_id, is_fraud)  # type: ignore[union-attr]

    def decide(self, score: float) -> tuple[Decision, Severity]:
        if score >= self.block_threshold:
            return "block", "critical"
        if score < self.review_threshold:
            return "allow", "low"
        return "review", "medium" if score < HIGH_SEVERITY_SCORE else "high"

    def _scored(self, reasons: tuple[Reason, ...]) -> Scored:
        keep = 1.0
        for reason in reasons:
            keep *= 1.0 - reason.weight
        # Rounded so that equal weights give equal scores whatever float noise the product has.
        score = round(1.0 - keep, 4)
        decision, severity = self.decide(score)
        return Scored(score, decision, severity, reasons, self.rules_version)


def _by_weight(reason: Reason) -> float:
    return -reason.weight
