"""Ranking metrics for a labelled backtest, in pure Python: AUC, AP, precision@k, card precision@k.

Labels are 1 (fraud) and 0 (legitimate). Scores may tie (a rule-based score takes few
values): ROC AUC and average precision treat tied scores as one threshold, as scikit-learn
does; the top-k metrics rank ties by input order (event time: earlier first), the order an
analyst's queue would show them in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import compress
from typing import TypeAlias


@dataclass(frozen=True, slots=True)
class CurvePoint:
    """Flag all scores >= threshold: the share of flags that are fraud, of fraud that is flagged."""

    threshold: float
    flagged: int
    precision: float
    recall: float


# score_groups' output. The metrics that treat tied scores as one threshold take it too, so
# that a caller needing several of them counts the scores once.
Groups: TypeAlias = Sequence[tuple[float, int, int]]


def score_groups(scores: Sequence[float], labels: Sequence[int]) -> list[tuple[float, int, int]]:
    """(score, frauds, legitimate) per distinct score, highest score first."""
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} scores but {len(labels)} labels")
    # Count the scores, then the fraud scores: both loops run in C, and hashing floats costs
    # about half what building and hashing (score, label) tuples does.
    totals = Counter(scores)
    frauds = Counter(compress(scores, labels))
    return [(s, frauds[s], totals[s] - frauds[s]) for s in sorted(totals, reverse=True)]


def roc_auc(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    """P(a random fraud outscores a random legitimate one), ties counting one half.

    The Mann-Whitney form of the rank-based AUC, with tied scores given their average rank.
    None when only one class is present (undefined).
    """
    return roc_auc_of_groups(score_groups(scores, labels))


def roc_auc_of_groups(groups: Groups) -> float | None:
    """roc_auc from score_groups' output, for a caller that needs the groups for more."""
    positives = sum(p for _, p, _ in groups)
    negatives = sum(n for _, _, n in groups)
    if not positives or not negatives:
        return None
    below = negatives  # legitimate ones scored strictly below the current group
    wins = 0.0
    for _, p, n in groups:
        below -= n
        wins += p * below + 0.5 * p * n
    return wins / (positives * negatives)


def pr_curve(scores: Sequence[float], labels: Sequence[int]) -> list[CurvePoint]:
    """One point per distinct score, from the highest threshold down."""
    return pr_curve_of_groups(score_groups(scores, labels))


def pr_curve_of_groups(groups: Groups) -> list[CurvePoint]:
    """pr_curve from score_groups' output."""
    positives = sum(p for _, p, _ in groups)
    points = []
    tp = fp = 0
    for score, p, n in groups:
        tp += p
        fp += n
        recall = tp / positives if positives else 0.0
        points.append(CurvePoint(score, tp + fp, tp / (tp + fp), recall))
    return points


def average_precision(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    """scikit-learn's definition: sum over thresholds of (R_n - R_{n-1}) * P_n.

    No interpolation: a step function under the precision-recall curve. None without frauds.
    """
    return average_precision_of_groups(score_groups(scores, labels))


def average_precision_of_groups(groups: Groups) -> float | None:
    """average_precision from score_groups' output, walking the curve without building it."""
    positives = sum(p for _, p, _ in groups)
    if not positives:
        return None
    previous_recall = 0.0
    total = 0.0
    tp = fp = 0
    for _, p, n in groups:
        tp += p
        fp += n
        recall = tp / positives
        total += (recall - previous_recall) * (tp / (tp + fp))
        previous_recall = recall
    return total


def top_k(scores: Sequence[float], k: int) -> list[int]:
    """Indices of the k highest scores; equal scores keep input order (stable sort)."""
    return sorted(range(len(scores)), key=scores.__getitem__, reverse=True)[:k]


def precision_at_k(scores: Sequence[float], labels: Sequence[int], k: int) -> float:
    """Frauds among the k highest-scored transactions, divided by k (even if fewer exist)."""
    return sum(labels[i] for i in top_k(scores, k)) / k


@dataclass(frozen=True, slots=True)
class CardDay:
    """One day of card precision@k."""

    day: int
    cards: int
    compromised: int
    detected: int
    precision: float


def card_precision_at_k(
    days: Sequence[int],
    accounts: Sequence[int],
    scores: Sequence[float],
    labels: Sequence[int],
    k: int,
) -> list[CardDay]:
    """Card precision@k per day, days in order (input in event-time order).

    Each day: leave out accounts detected on earlier days; per remaining account take the
    max score and the max label of its transactions that day; rank accounts by max score
    (ties: the account that reached it first); count frauds in the top k, divided by k.
    An account is detected when it is in a day's top k and its max label that day is fraud.
    """
    by_day: dict[int, dict[int, list[float]]] = {}
    for i, (day, account, score, label) in enumerate(
        zip(days, accounts, scores, labels, strict=True)
    ):
        cards = by_day.get(day)
        if cards is None:
            by_day[day] = cards = {}
        # [max score, index where first reached, max label]
        card = cards.get(account)
        if card is None:
            cards[account] = [score, i, label]
        else:
            if score > card[0]:
                card[0] = score
                card[1] = i
            if label > card[2]:
                card[2] = label
    detected: set[int] = set()
    out = []
    for day in sorted(by_day):
        cards = {a: c for a, c in by_day[day].items() if a not in detected}
        ranked = sorted(cards, key=lambda a: (-cards[a][0], cards[a][1]))[:k]
        hits = [a for a in ranked if cards[a][2]]
        detected.update(hits)
        compromised = sum(1 for c in cards.values() if c[2])
        out.append(CardDay(day, len(cards), compromised, len(hits), len(hits) / k))
    return out


def mean(values: Sequence[float | None]) -> float | None:
    """Mean of the defined values; None if there are none."""
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None
