"""The live scorecard: precision, recall, alerts per hour and detection delay, per scenario,
from verdicts and the labels known so far. Pure and synchronous: no I/O, no clock.

A verdict and its label may arrive in either order (the simulator's ground truth comes
before the verdict, a chargeback days after); each is held until the other comes, within
bounds, then counted once. A later label for a counted transaction is a correction: its
old label is taken out and the new one counted, so the figures are what counting the
latest labels from scratch gives (a restart's rebuild), in whatever order they came; a
label withdrawn (an alert reopened) is taken out with nothing in its place.
Time is event time: alerts per hour are over the span of the labelled transactions'
timestamps, and a detection delay is from an episode's first fraudulent transaction to its
first alerted one.
"""

from __future__ import annotations

import bisect
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


_Counted = tuple[float, str, bool, bool, str]
"""What a counted transaction added, kept so that a correction can take it out: its event
time, account, whether it was alerted, whether it was a fraud, and its scenario's name. (A
plain tuple: one is made for every transaction the simulator's truth counts.)"""


@dataclass(slots=True)
class _Frauds:
    """One account's frauds in one scenario, (event time, alerted) in event-time order, and
    the episodes they make: from them alone, so the order they were counted in (or taken
    out) does not matter."""

    times: list[tuple[float, bool]] = field(default_factory=list)
    episodes: list[_Episode] = field(default_factory=list)

    def put(self, t: float, alerted: bool) -> tuple[int, int]:
        """Add a fraud; returns the change in (episodes, detected episodes)."""
        times, episodes = self.times, self.episodes
        if times and (t, alerted) < times[-1]:
            bisect.insort(times, (t, alerted))
            return self._regroup()
        # In event-time order, as labels mostly come: what `_regroup` would do for the last
        # one, without walking the account's every fraud again (a card-testing run's
        # hundreds would make counting them quadratic).
        times.append((t, alerted))
        new = not episodes or t - episodes[-1].start > EPISODE_GAP_S
        if new:
            episodes.append(_Episode(t))
        found = alerted and episodes[-1].detected_at is None
        if found:
            episodes[-1].detected_at = t
        return int(new), int(found)

    def take(self, t: float, alerted: bool) -> tuple[int, int]:
        """Take a fraud out; returns the change in (episodes, detected episodes)."""
        i = bisect.bisect_left(self.times, (t, alerted))
        if i == len(self.times) or self.times[i] != (t, alerted):
            return 0, 0  # given up past the bound, with the episodes it was in
        del self.times[i]
        return self._regroup()

    def _regroup(self) -> tuple[int, int]:
        before = len(self.episodes), self.detected
        episodes: list[_Episode] = []
        for t, alerted in self.times:
            if not episodes or t - episodes[-1].start > EPISODE_GAP_S:
                episodes.append(_Episode(t))
            if alerted and episodes[-1].detected_at is None:
                episodes[-1].detected_at = t  # in time order: the first alerted one
        self.episodes = episodes
        return len(episodes) - before[0], self.detected - before[1]

    @property
    def detected(self) -> int:
        return sum(e.detected_at is not None for e in self.episodes)


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
        # Transactions already counted, with what they added: a second label for one (a
        # chargeback overturning "legitimate") replaces the first, not counts it twice.
        self._counted: OrderedDict[str, _Counted] = OrderedDict()
        self._tallies: dict[str, _Tally] = {}
        self._frauds: OrderedDict[tuple[str, str], _Frauds] = OrderedDict()
        self._first: float | None = None
        self._last: float | None = None
        self.counted = 0

    def add_verdict(self, tx_id: str, event_time: float, account_id: str, alerted: bool) -> None:
        """A verdict: `event_time` is the transaction's timestamp in epoch seconds."""
        truth = self._truths.pop(tx_id, None)
        if truth is None:
            _put(self._verdicts, tx_id, (event_time, account_id, alerted), self.max_waiting)
        elif tx_id not in self._counted:
            self._count(tx_id, event_time, account_id, alerted, *truth)

    def waiting_for(self, tx_id: str) -> bool:
        """Whether a label for `tx_id` waits for its verdict."""
        return tx_id in self._truths

    @property
    def waiting(self) -> int:
        """Labels waiting for their verdict."""
        return len(self._truths)

    def add_truth(self, tx_id: str, is_fraud: bool, scenario: str | None = None) -> None:
        """A label; `scenario` names the simulator's episode (legitimate ones too). For a
        transaction already counted it is a correction: the label it had is taken out and
        this one counted instead."""
        counted = self._counted.get(tx_id)
        if counted is not None:
            self._verdicts.pop(tx_id, None)  # read from the store again: it is counted
            t, account, alerted, _, _ = counted
            self._uncount(counted)
            self._count(tx_id, t, account, alerted, is_fraud, scenario)
            return
        verdict = self._verdicts.pop(tx_id, None)
        if verdict is None:
            _put(self._truths, tx_id, (is_fraud, scenario), self.max_waiting)
        else:
            self._count(tx_id, *verdict, is_fraud, scenario)

    def withdraw_truth(self, tx_id: str) -> None:
        """A label withdrawn with none in its place (an alert reopened): the transaction is
        no longer counted, nor waits for its verdict, as if its label had never come. The
        event-time span is then that of the transactions still counted."""
        self._truths.pop(tx_id, None)
        counted = self._counted.pop(tx_id, None)
        if counted is None:
            return
        self._uncount(counted)
        if not self.counted:
            self._first = self._last = None
        elif counted[0] in (self._first, self._last) and self.counted == len(self._counted):
            # (Past `max_waiting` counted, the oldest are no longer here to measure: the
            # span is left as it was, as for a correction.)
            times = [t for t, *_ in self._counted.values()]
            self._first, self._last = min(times), max(times)

    def _count(
        self,
        tx_id: str,
        t: float,
        account: str,
        alerted: bool,
        is_fraud: bool,
        scenario: str | None,
    ) -> None:
        name = scenario or (UNSPECIFIED if is_fraud else NORMAL)
        _put(self._counted, tx_id, (t, account, alerted, is_fraud, name), self.max_waiting)
        self.counted += 1
        self._first = t if self._first is None else min(self._first, t)
        self._last = t if self._last is None else max(self._last, t)
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
        frauds = self._frauds.get(key)
        if frauds is None:
            frauds = self._frauds[key] = _Frauds()
            if len(self._frauds) > self.max_waiting:
                old_key, old = self._frauds.popitem(last=False)
                self._close(self._tallies[old_key[0]], old)
        episodes, detected = frauds.put(t, alerted)
        tally.episodes += episodes
        tally.detected += detected

    def _uncount(self, counted: _Counted) -> None:
        """Take out what `_count` added. The event-time span stays: the transaction is still
        counted, under its new label."""
        t, account, alerted, is_fraud, name = counted
        self.counted -= 1
        tally = self._tallies[name]
        tally.transactions -= 1
        tally.frauds -= is_fraud
        tally.alerts -= alerted
        tally.alerted_frauds -= alerted and is_fraud
        frauds = self._frauds.get((name, account)) if is_fraud else None
        if frauds is not None:  # None: given up past the bound, its episodes closed
            episodes, detected = frauds.take(t, alerted)
            tally.episodes += episodes
            tally.detected += detected
            if not frauds.times:
                del self._frauds[(name, account)]
        if not tally.transactions:
            del self._tallies[name]  # as if it had never been counted: no empty row

    def _close(self, tally: _Tally, frauds: _Frauds) -> None:
        for episode in frauds.episodes:
            if episode.detected_at is not None:
                tally.delays.append(max(0.0, episode.detected_at - episode.start))
        del tally.delays[:-MAX_DELAYS]

    def snapshot(self) -> dict[str, Any] | None:
        """None until a labelled transaction has a verdict."""
        if not self.counted or self._first is None or self._last is None:
            return None
        hours = max((self._last - self._first) / 3600.0, 1 / 60)
        delays: dict[str, list[float]] = {name: list(t.delays) for name, t in self._tallies.items()}
        for (name, _), frauds in self._frauds.items():
            for episode in frauds.episodes:
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
