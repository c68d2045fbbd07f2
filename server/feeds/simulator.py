"""The built-in simulator as a feed: event time equals wall time, at the configured rate."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import deque
from collections.abc import Sequence

from server.pipeline import Submission, TxQueue
from server.scorecard import Scorecard
from server.store.base import Label
from simulator import Labeled, Simulator

log = logging.getLogger(__name__)


class SimulatorFeed:
    """Ground truth stays out of the detector: it goes to the scorecard at once, and, only
    when `label_delay` is set, waits that long to be handed out as labels."""

    def __init__(
        self,
        simulator: Simulator,
        tick: float = 0.1,
        *,
        scorecard: Scorecard | None = None,
        label_delay: float | None = None,
    ) -> None:
        self.simulator = simulator
        self.tick = tick
        self.produced = 0
        self.scorecard = scorecard
        self.label_delay = None if label_delay is None else dt.timedelta(seconds=label_delay)
        self.pending_labels: deque[Labeled] = deque()

    async def run(self, queue: TxQueue) -> None:
        while True:
            batch = self.simulator.generate_until(dt.datetime.now(dt.UTC))
            if batch:
                await queue.put(Submission([item.transaction for item in batch]))
                self.produced += len(batch)
                if self.scorecard is not None:
                    for item in batch:
                        self.scorecard.add_truth(item.transaction.id, item.is_fraud, item.scenario)
                if self.label_delay is not None:
                    self.pending_labels.extend(batch)
            await asyncio.sleep(self.tick)

    def due_labels(self, now: dt.datetime) -> list[Labeled]:
        """The ground truth of transactions at least `label_delay` older than `now`."""
        if self.label_delay is None:
            return []
        cutoff = now - self.label_delay
        pending = self.pending_labels
        due: list[Labeled] = []
        # Event time is wall time and the stream is in order: the oldest come first.
        while pending and pending[0].transaction.timestamp <= cutoff:
            due.append(pending.popleft())
        return due


def truth_labels(due: Sequence[Labeled], at: dt.datetime) -> list[Label]:
    """The simulator's ground truth for `due` transactions, as labels (source `simulator`)
    given at `at`: what the demo's labeller stores and learns."""
    labelled_at = at.isoformat().replace("+00:00", "Z")
    return [
        Label(
            transaction_id=item.transaction.id,
            label="fraud" if item.is_fraud else "legitimate",
            source="simulator",
            labelled_at=labelled_at,
            scenario=item.scenario,
        )
        for item in due
    ]
