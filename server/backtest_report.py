"""The backtest report: metrics overall and per day, curves, alerts and rules, as JSON or text."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import compress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from server.detection.features import FEATURE_FIELDS
from server.metrics_offline import (
    Groups,
    average_precision_of_groups,
    card_precision_at_k,
    each_day,
    mean,
    pr_curve_of_groups,
    precision_at_k_of_groups,
    roc_auc_of_groups,
    score_groups,
)
from server.transactions import Transaction
from server.wording import counted

if TYPE_CHECKING:
    from server.backtest import Outcome
    from server.detection.rules import RuleSet

MAX_CURVE_POINTS = 400
SWEEP = (0.3, 0.4, 0.5, 0.6, 0.65, 0.7, 0.8, 0.9)
ALERT = 1  # decision index at or above which a transaction raised an alert
# A rule is worth a note when both hold (docs/backtest.md#rules-that-flood):
FLOOD_SHARE = 0.01
"""It fires on at least this share of the labelled transactions: at card fraud rates
(0.1-2 %) that is about as many transactions as the file has frauds, or more."""
FLOOD_SHORTFALL = 2.0
"""Its precision is under its score divided by this. A rule's score is the pack's claim of
how often a transaction it fires on is fraud (rulepacks/default.toml): right half as often,
the rule ranks every transaction it fires on at least twice too high."""
DOCS_NOTE = "docs/backtest.md#rules-that-flood"
# account_id and timestamp feed most features: named last, after the fields that set a
# rule apart (impossible_travel: lat, lon).
_COMMON_FIELDS = ("account_id", "timestamp")


@dataclass(frozen=True, slots=True)
class RuleFacts:
    """What a rule pack declares of a reason code: its score, and the transaction fields
    its features are computed from."""

    score: float
    fields: tuple[str, ...]


def rule_facts(ruleset: RuleSet) -> dict[str, RuleFacts]:
    """Per reason code of `ruleset`'s rules and lists, its `RuleFacts`."""
    facts: dict[str, RuleFacts] = {}
    for rule in ruleset.rules:
        fields = {f for feature in rule.features for f in FEATURE_FIELDS[feature]}
        facts[rule.name] = RuleFacts(rule.score, _ordered(fields))
    for action, score in (("block", 1.0), ("allow", 0.0)):
        fields = {lst.field for lst in ruleset.lists if lst.action == action}
        if fields:
            facts[f"{action}_list"] = RuleFacts(score, _ordered(fields))
    return facts


def _ordered(fields: set[str]) -> tuple[str, ...]:
    """In the transaction's own order, account_id and timestamp last."""
    order = [f for f in Transaction.__struct_fields__ if f not in _COMMON_FIELDS]
    return tuple(f for f in (*order, *_COMMON_FIELDS) if f in fields)


def _r(value: float | None, places: int = 4) -> float | None:
    return None if value is None else round(value, places)


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def build_report(
    outcome: Outcome,
    *,
    k: int,
    review_threshold: float,
    block_threshold: float,
    meta: dict[str, Any],
    facts: Mapping[str, RuleFacts] | None = None,
) -> dict[str, Any]:
    """Everything the JSON and HTML reports show, from the labelled transactions only.

    `facts` (`rule_facts`): what the rule pack says of each reason code, for the rules
    table and the notes on rules that flood the file."""
    if -1 in outcome.labels:
        labelled = [label >= 0 for label in outcome.labels]
        scores = list(compress(outcome.scores, labelled))
        labels = list(compress(outcome.labels, labelled))
        days = list(compress(outcome.days, labelled))
        accounts = list(compress(outcome.accounts, labelled))
        decisions = list(compress(outcome.decisions, labelled))
    else:  # every row labelled, as a simulator's are: the columns as they are
        labelled = [True] * len(outcome.labels)
        scores, labels = outcome.scores.tolist(), outcome.labels.tolist()
        days, accounts = outcome.days.tolist(), outcome.accounts.tolist()
        decisions = list(outcome.decisions)
    alerted = [d >= ALERT for d in decisions]

    per_day = _per_day(days, accounts, scores, labels, alerted, k)
    frauds = sum(labels)
    alerts = sum(alerted)
    caught = sum(compress(labels, alerted))
    groups = score_groups(scores, labels)
    overall = {
        "transactions": len(labels),
        "frauds": frauds,
        "fraud_rate": _ratio(frauds, len(labels)),
        "roc_auc": _r(roc_auc_of_groups(groups)),
        "average_precision": _r(average_precision_of_groups(groups)),
        "precision_at_k": _r(mean([d["precision_at_k"] for d in per_day])),
        "card_precision_at_k": _r(mean([d["card_precision_at_k"] for d in per_day])),
        "card_precision_at_k_ceiling": _r(
            mean([d["card_precision_at_k_ceiling"] for d in per_day])
        ),
        "alerts": alerts,
        "alerts_per_day": round(alerts / len(per_day), 1) if per_day else None,
        "alert_precision": _ratio(caught, alerts),
        "alert_recall": _ratio(caught, frauds),
        "blocks": decisions.count(2),
    }
    rules = _rules(outcome, labelled, facts or {})
    return {
        "meta": {
            **meta,
            "k": k,
            "review_threshold": review_threshold,
            "block_threshold": block_threshold,
            "labels_revealed": outcome.labels_revealed,
            "labels_not_yet_due": outcome.labels_pending,
            "days": len(per_day),
        },
        "overall": overall,
        "per_day": per_day,
        "pr_curve": _curve(groups),
        "thresholds": _sweep(groups, len(per_day), review_threshold, block_threshold),
        "rules": rules,
        "notes": rule_notes(rules, overall, meta.get("mapping", {})),
    }


def _per_day(
    days: Sequence[int],
    accounts: Sequence[int],
    scores: Sequence[float],
    labels: Sequence[int],
    alerted: Sequence[bool],
    k: int,
) -> list[dict[str, Any]]:
    cards = {c.day: c for c in card_precision_at_k(days, accounts, scores, labels, k)}
    out = []
    for day, (s, y, a) in each_day(days, scores, labels, alerted):
        groups = score_groups(s, y)
        card = cards[day]
        out.append(
            {
                "day": dt.date.fromordinal(day).isoformat(),
                "transactions": len(s),
                "frauds": sum(y),
                "alerts": sum(a),
                "true_alerts": sum(compress(y, a)),
                "roc_auc": _r(roc_auc_of_groups(groups)),
                "average_precision": _r(average_precision_of_groups(groups)),
                "precision_at_k": _r(precision_at_k_of_groups(groups, s, y, k)),
                "card_precision_at_k": _r(card.precision),
                # The best any ranking could do that day: its compromised cards not yet
                # detected (by this ranking, on earlier days), over k. A day with 18 such
                # cards scores at most 0.18 however good the ranking.
                "card_precision_at_k_ceiling": _r(min(card.compromised, k) / k),
                "cards": card.cards,
                "compromised_cards": card.compromised,
                "cards_detected": card.detected,
            }
        )
    return out


def _curve(groups: Groups) -> list[dict[str, float]]:
    points = pr_curve_of_groups(groups)
    if len(points) > MAX_CURVE_POINTS:
        step = math.ceil(len(points) / MAX_CURVE_POINTS)
        points = points[::step] + ([points[-1]] if (len(points) - 1) % step else [])
    return [
        {
            "threshold": p.threshold,
            "flagged": p.flagged,
            "precision": round(p.precision, 4),
            "recall": round(p.recall, 4),
        }
        for p in points
    ]


def _sweep(groups: Groups, n_days: int, review: float, block: float) -> list[dict[str, Any]]:
    """Flagged, precision, recall at each threshold; groups as score_groups gives them."""
    frauds = sum(p for _, p, _ in groups)
    # One pass down the groups (highest score first), the thresholds taken highest first.
    cumulative = []
    tp = flagged = i = 0
    for threshold in sorted({*SWEEP, review, block}, reverse=True):
        while i < len(groups) and groups[i][0] >= threshold:
            _, p, n = groups[i]
            tp += p
            flagged += p + n
            i += 1
        cumulative.append((threshold, tp, flagged))
    return [
        {
            "threshold": threshold,
            "role": "review" if threshold == review else "block" if threshold == block else "",
            "flagged": flagged,
            "per_day": round(flagged / n_days, 1) if n_days else None,
            "precision": _ratio(tp, flagged),
            "recall": _ratio(tp, frauds),
        }
        for threshold, tp, flagged in reversed(cumulative)
    ]


def _rules(
    outcome: Outcome, labelled: Sequence[bool], facts: Mapping[str, RuleFacts]
) -> list[dict[str, Any]]:
    """Per reason code: how often it fired, how often rightly, and frauds only it flagged.

    "Only it caught" = fraudulent transactions that raised an alert with this rule as the
    sole reason. That stays well defined whatever combines the reasons into a score.
    """
    # Transactions share a few hundred (codes, fraud, alert) combinations: count those, then
    # add each one's count to its codes (in the order the codes first fired, as before).
    labels, decisions = outcome.labels, outcome.decisions
    combinations = Counter(
        (codes, labels[i], decisions[i] >= ALERT)
        for i, codes in outcome.reasons.items()
        if labelled[i]
    )
    stats: dict[str, list[int]] = {}  # fired, fired frauds, alerts, alert frauds, sole frauds
    for (codes, fraud, alert), count in combinations.items():
        for code in codes:
            row = stats.setdefault(code, [0, 0, 0, 0, 0])
            row[0] += count
            row[1] += fraud * count
            row[2] += alert * count
            row[3] += (alert and fraud) * count
            row[4] += (alert and fraud and len(codes) == 1) * count
    ranked = sorted(stats.items(), key=lambda item: (-item[1][1] / item[1][0], -item[1][0]))
    return [
        {
            "code": code,
            "fired": fired,
            "precision": _ratio(fired_frauds, fired),
            "alerts": alerts,
            "alert_precision": _ratio(alert_frauds, alerts),
            "frauds_flagged": alert_frauds,
            "sole_reason_frauds": sole,
            **(
                {"score": facts[code].score, "fields": list(facts[code].fields)}
                if code in facts
                else {}
            ),
        }
        for code, (fired, fired_frauds, alerts, alert_frauds, sole) in ranked
    ]


def rule_notes(
    rules: Sequence[dict[str, Any]], overall: dict[str, Any], mapping: Mapping[str, str]
) -> list[dict[str, Any]]:
    """A note per rule that fires on a large share of the file far less rightly than its
    score claims: most often a column that means something else in this file than the
    rule assumes. Rules without a declared score (the model) get none."""
    n, rate = overall["transactions"], overall["fraud_rate"]
    notes = []
    for r in rules:
        score, precision = r.get("score"), r["precision"]
        if score is None or precision is None or not n or r["fired"] < FLOOD_SHARE * n:
            continue
        if precision * FLOOD_SHORTFALL >= score:
            continue
        share = r["fired"] / n
        read = _fields_read(r["fields"], mapping)
        text = (
            f"{r['code']} fired on {share:.1%} of transactions ({r['fired']:,}) at precision "
            f"{precision:.2g}, against its score of {score:g} (the file's fraud rate is "
            f"{(rate or 0):.2g}): it reads {read}; check what those columns mean in this file "
            f"({DOCS_NOTE})"
        )
        notes.append(
            {
                "code": r["code"],
                "fired": r["fired"],
                "share": round(share, 4),
                "precision": precision,
                "score": score,
                "fraud_rate": rate,
                "fields": r["fields"],
                "text": text,
            }
        )
    return notes


def _fields_read(fields: Sequence[str], mapping: Mapping[str, str]) -> str:
    """'lat (column merch_lat), lon (column merch_long), besides account_id, timestamp':
    the fields that set the rule apart with the columns --map gave them, then the common
    ones (which alone are named with their columns)."""

    def named(field: str) -> str:
        column = mapping.get(field, field)
        return field if column == field else f"{field} (column {column})"

    own = [f for f in fields if f not in _COMMON_FIELDS]
    common = [f for f in fields if f in _COMMON_FIELDS]
    if not own:
        return ", ".join(map(named, common)) or "no transaction field"
    return ", ".join(map(named, own)) + (f", besides {', '.join(common)}" if common else "")


def write_report(report: dict[str, Any], path: Path) -> None:
    if path.suffix.lower() == ".html":
        from server.backtest_html import render

        text = render(report)
    else:
        text = json.dumps(report, indent=2) + "\n"
    path.write_text(text, encoding="utf-8")


def delay_text(seconds: float) -> str:
    """7 days as '7d', 36 hours as '36h': how --label-delay was most likely written."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _f(value: float | None) -> str:
    return "   -  " if value is None else f"{value:.4f}"


def memory_warning(meta: Mapping[str, Any]) -> str | None:
    """What a too small --model-memory cost, if anything: labels the model never learnt."""
    let_go = meta.get("inputs_let_go")
    if not let_go:
        return None
    wait = meta["longest_label_wait_rows"]
    return (
        f"the model let go of the inputs of {let_go:,} labelled transactions before their "
        f"label was due (--model-memory {meta['model_memory']:,}), so it never learnt those "
        f"labels; a label came up to {wait:,} transactions after its own: run again with "
        f"--model-memory {wait + 1:,} or more, or without it"
    )


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The report as the terminal shows it."""
    meta, overall, k = report["meta"], report["overall"], report["meta"]["k"]
    lines = [
        f"backtest {meta['file']}: {counted(overall['transactions'], 'labelled transaction')} "
        f"over {counted(meta['days'], 'day')}, {counted(overall['frauds'], 'fraud')} "
        f"({(overall['fraud_rate'] or 0):.2%}); "
        f"{meta['unlabelled_rows']:,} unlabelled",
        f"  rules {meta['rules_version']}, review >= {meta['review_threshold']}, "
        f"block >= {meta['block_threshold']}; days in {meta['timezone']}",
        f"  labels: delay {delay_text(meta['label_delay_s'])} of event time; "
        f"{meta['labels_revealed']:,} revealed during the run, "
        f"{meta['labels_not_yet_due']:,} not yet due at its end; detector learns "
        f"from labels: {'yes' if meta['detector_learns_labels'] else 'no (no learn_label)'}",
    ]
    if warning := memory_warning(meta):
        lines.append(f"  WARNING: {warning}")
    if meta["out_of_order_rows"]:
        moved = meta["out_of_order_rows"]
        was = "was" if moved == 1 else "were"
        lines.append(f"  {counted(moved, 'row')} {was} out of event-time order: sorted")
    lines += [
        f"  overall: ROC AUC {_f(overall['roc_auc'])}  average precision "
        f"{_f(overall['average_precision'])}  precision@{k} {_f(overall['precision_at_k'])}  "
        f"card precision@{k} {_f(overall['card_precision_at_k'])} of at most "
        f"{_f(overall['card_precision_at_k_ceiling'])}  (top-k: mean of days)",
        f"  alerts: {overall['alerts']:,} ({_or_dash(overall['alerts_per_day'])}/day), precision "
        f"{_f(overall['alert_precision'])}, recall {_f(overall['alert_recall'])}",
        f"  {'day':<10} {'tx':>8} {'frauds':>6} {'alerts':>6} {'ROC AUC':>7} {'AP':>6} "
        f"{'P@' + str(k):>6} {'CP@' + str(k):>6} {'of max':>6}",
    ]
    for d in report["per_day"]:
        lines.append(
            f"  {d['day']:<10} {d['transactions']:>8,} {d['frauds']:>6,} {d['alerts']:>6,} "
            f"{_f(d['roc_auc']):>7} {_f(d['average_precision']):>6} "
            f"{_f(d['precision_at_k']):>6} {_f(d['card_precision_at_k']):>6} "
            f"{_f(d['card_precision_at_k_ceiling']):>6}"
        )
    t = report.get("throughput")
    if t:
        lines.append(
            f"  throughput: {t['tx_per_s'] or 0:,} tx/s end to end over {t['transactions']:,} tx "
            f"in {t['total_s']} s (read+validate+score {t['read_validate_score_s']} s, metrics "
            f"{t['metrics_s']} s); {t['tx_per_cpu_s'] or 0:,} tx per CPU second (all processes)"
        )
    lines += [f"  note: {note['text']}" for note in report.get("notes", ())]
    return lines


def _or_dash(value: float | None) -> str:
    return "-" if value is None else f"{value}"
