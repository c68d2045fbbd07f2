"""The detector: features, then lists and rules, then one noisy-OR score, decision, severity."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from math import log1p

from server.detection.features import DEFAULT_TTL_S, Featurizer, Value
from server.detection.model import FLAG_SCORE, MODEL_FEATURES, RAW_LAYOUT, ModelSlot
from server.detection.rules import RuleSet, load_rules
from server.detection.severity import severity
from server.detection.verdict import Decision, Reason, Scored
from server.transactions import MAX_AMOUNT, Transaction

SEVERITY_FEATURES = frozenset({"amount_scaled"})
"""Computed whatever the rules and the model read: an alert's severity weighs its score
against the amount on the stream's scale (server/detection/severity.py)."""
AMOUNT_SPAN = 0.01
"""The most the amount adds to the rules' score until the model scores (log-scaled up to
the largest amount accepted): enough to order the rules' ties, larger amounts first,
never enough to move a transaction across a threshold.

Most transactions fire no rule, and before the model has learnt from enough labels (a week
or more of a new stream, with chargebacks a week late) they all scored 0, frauds with them:
their order decided what an analyst saw first and what a backtest's first week measured.
Large payments are riskier whoever makes them, on every stream we measured: ordering the
ties by amount lifted the mean daily average precision of the label-free days from 0.054 to
0.22 on the handbook-style stream and from 0.52 to 0.56 on our simulator (docs/model.md,
"Before the model scores"). A function of the amount alone, so a verdict still depends only
on the transaction and its keys' history, not on other accounts'. The raw number, whatever
the currency: a stream that mixes currencies orders its ties by it."""
AMOUNT_GAP = 1e-6  # a score moved by its amount stays this far under the threshold above it
_LOG_MAX_AMOUNT = log1p(MAX_AMOUNT)


def amount_share(amount: float) -> float:
    """What `amount` adds to the rules' score before the model scores: 0 to AMOUNT_SPAN."""
    return AMOUNT_SPAN * log1p(amount) / _LOG_MAX_AMOUNT


RulesHalf = tuple[Scored, bool, bytes | None]
"""`Detector.rules_half`: the rules' verdict, whether it is final, the model's packed inputs
(but the account's recent flags, which `model_half` fills in)."""


class Detector:
    """Scores transactions one at a time in event time; holds every key's state.

    Not thread-safe and not async: the detection loop owns one and calls `score` in order.
    `model_features` are computed besides those the rules use, for a model to read (and
    SEVERITY_FEATURES, which the severity reads, always are); with a
    `model` (server/detection/model.py) its features are computed too and it rescores what
    the rules scored (never a transaction a block or allow list decided).
    """

    __slots__ = (
        "_allow",
        "_fired",
        "_model",
        "block_threshold",
        "explain",
        "featurizer",
        "model_features",
        "review_threshold",
        "ruleset",
    )

    def __init__(
        self,
        *,
        review_threshold: float = 0.5,
        block_threshold: float = 0.8,
        rules: RuleSet | None = None,
        model_features: Iterable[str] = (),
        ttl_s: float = DEFAULT_TTL_S,
        model: ModelSlot | None = None,
        explain: bool = True,
    ) -> None:
        if not 0 <= review_threshold <= block_threshold <= 1:
            raise ValueError(
                "Thresholds must satisfy 0 <= review <= block <= 1, "
                f"got {review_threshold} and {block_threshold}"
            )
        self.review_threshold = review_threshold
        self.block_threshold = block_threshold
        # False: reasons keep their codes, values and weights but no message, and the model
        # adds no top factors. A backtest reads only the codes; rendering every fired
        # rule's message was ~4 % of its scoring process.
        self.explain = explain
        self.ruleset = load_rules() if rules is None else rules
        self.model_features = frozenset(model_features) | SEVERITY_FEATURES
        self.featurizer = Featurizer(
            self.ruleset.features | self.model_features,
            small_amount=self.ruleset.small_amount,
            ttl_s=ttl_s,
        )
        self._fired = self.ruleset.fired
        self._allow = self._scored((), 0.0)
        self._model: ModelSlot | None = None
        self.model = model

    @property
    def model(self) -> ModelSlot | None:
        return self._model

    @model.setter
    def model(self, slot: ModelSlot | None) -> None:
        """Attach (or detach) the model; the features it reads are computed from then on."""
        self._model = slot
        if slot is not None:
            self.model_features = self.model_features | MODEL_FEATURES
            self.featurizer.use(
                self.ruleset.features | self.model_features, self.ruleset.small_amount
            )

    @property
    def rules_version(self) -> str:
        return self.ruleset.version

    def use_rules(self, rules: RuleSet) -> None:
        """Score with `rules` from the next transaction on; state is kept."""
        self.featurizer.use(rules.features | self.model_features, rules.small_amount)
        self.ruleset = rules
        self._fired = rules.fired
        self._allow = self._scored((), 0.0)

    def score(self, tx: Transaction) -> Scored:
        """Score `tx` against its keys' history, then add it to that history."""
        return self.score_at(tx, tx.timestamp.timestamp())

    def score_at(self, tx: Transaction, t: float) -> Scored:
        """`score`, given `tx.timestamp.timestamp()`: computed once for the features, the
        lists and the model alike (a backtest has it already)."""
        return self.score_features(tx, self.featurizer.values_one(tx, t), t)

    def score_features(self, tx: Transaction, v: dict[str, Value], t: float) -> Scored:
        """`score_at` with `tx`'s features already computed (`Featurizer.values_one`, in
        event order): lists, rules, then the model (never over a verdict a block or allow
        list made). A backtest splits it in two: `rules_half` in its reader process,
        `model_half` in the scoring one."""
        return self.model_half(tx, self.rules_half(tx, v, t), t)

    def relearn(
        self, tx: Transaction, t: float, *, held: Collection[str] = (), flags: bool = True
    ) -> None:
        """Take `tx` into its keys' history as `score` does, with no verdict: a restart
        replaying stored transactions its snapshot lacks (server/state_replay.py). `held`:
        kinds of key (`features.KEY_FIELDS`) that hold `tx` already, left as they are. With
        every key taking it, the model's account flags do too (`flags`), as `observe` would
        note them; its memory of inputs does not (a label for `tx` is learnt from the
        inputs stored with its verdict, as it was scored)."""
        if held:
            self.featurizer.learn_except(tx, t, held)
            return
        v = self.featurizer.values_one(tx, t)
        model = self._model
        if model is None or not flags:
            return
        rules, final = self._rules_verdict(tx, v, t)
        if not final and rules.score >= FLAG_SCORE:
            model.flags.note(tx.account_id, t, rules.score)

    def rules_half(self, tx: Transaction, v: dict[str, Value], t: float) -> RulesHalf:
        """The lists' and rules' verdict; whether it is final (a block or an allow list
        decided it, and no model overrules that); and, if not, what the model keeps of `tx`
        (its inputs, packed: `ModelSlot.observe`; None without a model). In event order."""
        rules, final = self._rules_verdict(tx, v, t)
        model = self._model
        if final or model is None:
            return rules, final, None
        return rules, False, model.observe(tx, v, rules)

    def model_half(self, tx: Transaction, half: RulesHalf, t: float) -> Scored:
        """The verdict from `rules_half`'s: the model's once it is ready, else the rules'
        with ties ordered by amount. In event order: the model's account flags
        (`ModelSlot.flag`) are kept here, so that in a backtest the scoring process keeps
        them, not the reader, which had the more work to do. `t`: as for `rules_half`."""
        rules, final, inputs = half
        if final:
            return rules
        model = self._model
        if model is not None and inputs is not None:
            inputs = model.flag(tx.account_id, inputs, rules.score, t)
            scored = model.rescore(
                tx.id,
                inputs,
                rules,
                self.decide,
                self.review_threshold,
                factors=self.explain,
                bands=self.ruleset.bands,
            )
            if scored is not None:
                return scored
        return self._by_amount(rules, float(tx.amount))

    def _rules_verdict(self, tx: Transaction, v: dict[str, Value], t: float) -> tuple[Scored, bool]:
        ruleset = self.ruleset
        if ruleset.lists:
            block, allow = ruleset.check_lists(tx, t)
            if block is None and allow is not None:
                return self._scored((allow,), 0.0), True
        else:
            block = None
        explain = self.explain
        reasons = [rule.reason(v, tx, message=explain) for rule in self._fired(v)]
        if block is None and not reasons:
            return self._allow, False
        if block is not None:
            reasons.insert(0, block)
        reasons.sort(key=_by_weight)
        at_stake = v.get("amount_scaled")
        if at_stake is None:  # not computed: a featurizer built without SEVERITY_FEATURES
            at_stake = float(tx.amount)
        return self._scored(tuple(reasons), float(at_stake)), block is not None

    # --- learning from labels (server/detection/model.py) ---------------------------------

    def kept_inputs(self, tx_id: str) -> tuple[str, bytes] | None:
        """What the model keeps of a transaction just scored until its label comes: (layout,
        packed inputs), for the store to keep too (a label may come after this memory let
        go of it, or reach another process). None when the model reads nothing of it."""
        model = self._model
        if model is None:
            return None
        raw = model.kept(tx_id)
        return None if raw is None else (RAW_LAYOUT, raw)

    @property
    def learns_labels(self) -> bool:
        return self._model is not None and self._model.learner is not None

    def learn_label(self, tx_id: str, account_id: str, is_fraud: bool, at: object) -> None:
        """A label for a transaction this detector scored (the backtest's hook): learnt at
        once when the model learns inline, ignored without a model."""
        if self._model is not None and self._model.learner is not None:
            self._model.learn_label(tx_id, is_fraud)

    def forget(self, tx_id: str) -> None:
        """No label will come for `tx_id` (the backtest's unlabelled row): the model need
        not keep its inputs."""
        if self._model is not None:
            self._model.forget(tx_id)

    def decide(self, score: float) -> Decision:
        """The decision for a score (its severity also weighs the amount: `severity`)."""
        if score >= self.block_threshold:
            return "block"
        if score < self.review_threshold:
            return "allow"
        return "review"

    def _by_amount(self, scored: Scored, amount: float) -> Scored:
        """`scored` with up to AMOUNT_SPAN more the larger the amount, within its decision's
        band: until the model scores, the amount orders the rules' ties."""
        score = scored.score
        ranked = score + amount_share(amount)
        decision = scored.decision
        if decision != "block":
            top = self.review_threshold if decision == "allow" else self.block_threshold
            ranked = min(ranked, top - AMOUNT_GAP)
        ranked = round(ranked, 6)
        if ranked <= score:
            return scored
        return Scored(ranked, decision, scored.severity, scored.reasons, scored.rules_version)

    def _scored(self, reasons: tuple[Reason, ...], amount_scaled: float) -> Scored:
        """The rules' verdict from the `reasons` that fired; `amount_scaled`: the amount on
        the stream's scale, which the severity weighs (unused for an allow)."""
        keep = 1.0
        for reason in reasons:
            keep *= 1.0 - reason.weight
        # Rounded so that equal weights give equal scores whatever float noise the product has.
        score = round(1.0 - keep, 4)
        decision = self.decide(score)
        return Scored(
            score,
            decision,
            severity(decision, score, amount_scaled, reasons, self.ruleset.bands),
            reasons,
            self.ruleset.version,
        )


def _by_weight(reason: Reason) -> float:
    return -reason.weight
