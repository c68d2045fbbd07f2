"""Labels that become known a fixed delay of event time after their transaction.

A backtest reveals each label once `label delay` of event time has passed since its
transaction: just before the first transaction whose timestamp is at or after that, never
earlier. With a constant delay and rows in event-time order, due times are in order too, so
a FIFO is enough. The backtest (its model) and the reader process (merchant risk) each keep
one, over the same rows, so they reveal the same labels at the same rows.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class DueLabels(Generic[T]):
    """Items queued with their transaction's time, handed back once `delay_us` has passed.
    Times are integer microseconds: exact, so "due" never drifts by a float rounding."""

    __slots__ = ("delay_us", "queue")

    def __init__(self, delay_us: int) -> None:
        self.delay_us = delay_us
        # (due time, item), oldest first. A loop over every row may look at the first due
        # time and append `(event_us + delay_us, item)` itself, sparing two calls a row
        # (`backtest.run_backtest`): `add` and `due` are no more than that.
        self.queue: deque[tuple[int, T]] = deque()

    def add(self, event_us: int, item: T) -> None:
        self.queue.append((event_us + self.delay_us, item))

    def due(self, now_us: int) -> list[tuple[int, T]]:
        """(due time, item) of every item due at or before `now_us`, oldest first."""
        queue = self.queue
        if not queue or queue[0][0] > now_us:
            return []
        out = []
        while queue and queue[0][0] <= now_us:
            out.append(queue.popleft())
        return out

    def __len__(self) -> int:
        return len(self.queue)
