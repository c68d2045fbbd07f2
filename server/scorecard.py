"""The live scorecard: precision, recall, alerts per hour and detection delay, per scenario,
from verdicts and the labels known so far. Pure and synchronous: no I/O, no clock.

A verdict and its label may arrive in either order (the simulator's ground truth comes
before the verdict, a chargeback days after); each is held until the other comes, within
bounds, then counted once. Time is event time: alerts per hour are over the span of the
labelled transactions' timestamps, and a detection delay is from an episode's first
fraudulent transaction to its first alerted one.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

NORMAL = "normal"
"""Legitimate transactions that belong to no scenario."""
UNSPECIFIED = "unspecified"
"""Frauds labelled without a scenario (an analyst, a chargeback)."""
EPISODE_GAP_S = 86_400.0
"""A fraud on the same account and scenario more than this after an episode began starts
a new episode."""
MAX_DELAYS = 1000


@dataclass(slots=True)
class _Tally:
    transactions: int = 0
    frauds: int = 0
    alerts: int = 0
    alerted_frauds: int = 0
    episodes: int = 0
    detected: int = 0
    delays: list[float] = field(default_factory=list)


@dataclass(slots=True)
class _Episode:
    start: float
    detected_at: float | None = None


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 1)


class Scorecard:
    """Feed it `add_verdict` and `add_truth` in any order; `snapshot()` is the report."""

    def __init__(self, *, max_waiting: int = 200_000) -> None:
        self.max_waiting = max_waiting
        self._verdicts: OrderedDict[str, tuple[float, str, bool]] = OrderedDict()
        self._truths: OrderedDict[str, tuple[bool, str | None]] = OrderedDict()
        # Transactions already counted: a second label for one (a chargeback overturning
        # "legitimate") does not count it twice.
        self._counted_ids: OrderedDict[str, None] = OrderedDict()
        self._tallies: dict[str, _Tally] = {}
        self._episodes: OrderedDict[tuple[str, str], _Episode] = OrderedDict()
        self._first: float | None = None
        self._last: float | None = None
        self.counted = 0

    def add_verdict(self, tx_id: str, event_time: float, account_id: str, alerted: bool) -> None:
        """A verdict: `event_time` is the transaction's timestamp in epoch seconds."""
        truth = self._truths.pop(tx_id, None)
        if truth is None:
            _put(self._verdicts, tx_id, (event_time, account_id, alerted), self.max_waiting)
        elif tx_id not in self._counted_ids:
            self._count(event_time, account_id, alerted, *truth)
            _put(self._counted_ids, tx_id, None, self.max_waiting)

    def waiting_for(self, tx_id: str) -> bool:
        """Whether a label for `tx_id` waits for its verdict."""
        return tx_id in self._truths

    @property
    def waiting(self) -> int:
        """Labels waiting for their verdict."""
        return len(self._truths)

    def add_truth(self, tx_id: str, is_fraud: bool, scenario: str | None = None) -> None:
        """A label; `scenario` names the simulator's episode (legitimate ones too)."""
        verdict = self._verdicts.pop(tx_id, None)
        if verdict is None:
            if tx_id not in self._counted_ids:
                _put(self._truths, tx_id, (is_fraud, scenario), self.max_waiting)
        else:
            self._count(*verdict, is_fraud, scenario)
            _put(self._counted_ids, tx_id, None, self.max_waiting)

    def _count(
        self, t: float, account: str, alerted: bool, is_fraud: bool, scenario: str | None
    ) -> None:
        self.counted += 1
        self._first = t if self._first is None else min(self._first, t)
        self._last = t if self._last is None else max(self._last, t)
        name = scenario or (UNSPECIFIED if is_fraud else NORMAL)
        tally = self._tallies.get(name)
        if tally is None:
            tally = self._tallies[name] = _Tally()
        tally.transactions += 1
        tally.frauds += is_fraud
        tally.alerts += alerted
        tally.alerted_frauds += alerted and is_fraud
        if not is_fraud:
            return
        key = (name, account)
        episode = self._episodes.get(key)
        if episode is None or t - episode.start > EPISODE_GAP_S:
            if episode is not None:
                self._close(tally, episode)
            episode = self._episodes[key] = _Episode(t)
            tally.episodes += 1
            if len(self._episodes) > self.max_waiting:
                old_key, old = self._episodes.popitem(last=False)
                self._close(self._tallies[old_key[0]], old)
        elif t < episode.start:
            episode.start = t  # counted out of order: the episode began earlier
        if alerted and (episode.detected_at is None or t < episode.detected_at):
            if episode.detected_at is None:
                tally.detected += 1
            episode.detected_at = t

    def _close(self, tally: _Tally, episode: _Episode) -> None:
        if episode.detected_at is not None:
            tally.delays.append(max(0.0, episode.detected_at - episode.start))
            del tally.delays[:-MAX_DELAYS]

    def snapshot(self) -> dict[str, Any] | None:
        """None until a labelled transaction has a verdict."""
        if not self.counted or self._first is None or self._last is None:
            return None
        hours = max((self._last - self._first) / 3600.0, 1 / 60)
        delays: dict[str, list[float]] = {name: list(t.delays) for name, t in self._tallies.items()}
        for (name, _), episode in self._episodes.items():
            if episode.detected_at is not None:
                delays[name].append(max(0.0, episode.detected_at - episode.start))
        total = _Tally()
        scenarios = []
        for name in sorted(self._tallies):
            t = self._tallies[name]
            for attr in ("transactions", "frauds", "alerts", "alerted_frauds"):
                setattr(total, attr, getattr(total, attr) + getattr(t, attr))
            scenarios.append(
                {
                    "scenario": name,
                    "kind": "fraud" if t.frauds else "legitimate",
                    **_figures(t, hours),
                    "episodes": t.episodes,
                    "episodes_detected": t.detected,
                    "detection_delay_s": {
                        "median": _quantile(delays[name], 0.5),
                        "p90": _quantile(delays[name], 0.9),
                    },
                }
            )
        return {
            "labelled": self.counted,
            "hours": round(hours, 3),
            "overall": _figures(total, hours),
            "scenarios": scenarios,
        }


def _figures(t: _Tally, hours: float) -> dict[str, Any]:
    return {
        "transactions": t.transactions,
        "frauds": t.frauds,
        "alerts": t.alerts,
        "alerted_frauds": t.alerted_frauds,
        "precision": _ratio(t.alerted_frauds, t.alerts),
        "recall": _ratio(t.alerted_frauds, t.frauds),
        "alerts_per_hour": round(t.alerts / hours, 2),
    }


def _put(waiting: OrderedDict[str, Any], key: str, value: Any, limit: int) -> None:
    waiting[key] = value
    if len(waiting) > limit:
        # The oldest waits longest for its other half; past the bound it is given up. (An
        # OrderedDict: a plain dict finds its first key by skipping every deleted slot.)
        waiting.popitem(last=False)
