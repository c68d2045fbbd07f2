"""Ranking metrics for a labelled backtest, in pure Python: AUC, AP, precision@k, card precision@k.

Labels are 1 (fraud) and 0 (legitimate). Scores may tie (a rule-based score takes few
values): ROC AUC and average precision treat tied scores as one threshold, as scikit-learn
does; the top-k metrics rank ties by input order (event time: earlier first), the order an
analyst's queue would show them in.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import compress, islice, repeat
from operator import eq, gt
from typing import Any, TypeAlias


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
    # `get`, not `frauds[s]`: most scores have no fraud, and a Counter's missing key is a
    # call of its Python `__missing__`.
    fraud = frauds.get
    return [(s, p := fraud(s, 0), totals[s] - p) for s in sorted(totals, reverse=True)]


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


def precision_at_k_of_groups(
    groups: Groups, scores: Sequence[float], labels: Sequence[int], k: int
) -> float:
    """precision_at_k for a caller that has score_groups(scores, labels): without a sort.

    The top k are whole groups down to the one the k-th transaction falls in, then the
    earliest transactions of that group (ties in input order).
    """
    taken = frauds = 0
    for score, p, n in groups:
        if taken + p + n > k:
            tied = compress(labels, map(eq, scores, repeat(score)))
            return (frauds + sum(islice(tied, k - taken))) / k
        taken += p + n
        frauds += p
    return frauds / k


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
    if not len(days) == len(accounts) == len(scores) == len(labels):
        raise ValueError("days, accounts, scores and labels differ in length")
    detected: set[int] = set()
    out = []
    for day, (a, s, y) in each_day(days, accounts, scores, labels):
        cards = set(a) - detected
        compromised = set(compress(a, y)) - detected  # max label that day is fraud
        # Highest score first, ties in input order (a stable sort): an account's first row in
        # this order has its max score, reached first, which is what ranks the account.
        top: dict[int, None] = {}
        for i in sorted(range(len(s)), key=s.__getitem__, reverse=True):
            if a[i] in cards and a[i] not in top:
                top[a[i]] = None
                if len(top) == k:
                    break
        hits = [account for account in top if account in compromised]
        detected.update(hits)
        out.append(CardDay(day, len(cards), len(compromised), len(hits), len(hits) / k))
    return out


def each_day(
    days: Sequence[int], *columns: Sequence[Any]
) -> Iterator[tuple[int, list[Sequence[Any]]]]:
    """Per day, ascending: that day's part of each column, rows in input order.

    In event-time order each day's rows are already together and a day is a slice of each
    column; otherwise a stable sort by day brings them together first.
    """
    if any(map(gt, days, islice(days, 1, None))):
        order = sorted(range(len(days)), key=days.__getitem__)
        days = [days[i] for i in order]
        columns = tuple([column[i] for i in order] for column in columns)
    start = 0
    while start < len(days):
        stop = bisect_right(days, days[start], start)
        yield days[start], [column[start:stop] for column in columns]
        start = stop


def mean(values: Sequence[float | None]) -> float | None:
    """Mean of the defined values; None if there are none."""
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None
