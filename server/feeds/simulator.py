"""The built-in simulator as a feed: event time equals wall time, at the configured rate."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from server.detection.verdict import Verdict
from server.pipeline import Submission, TxQueue
from server.scorecard import Scorecard
from server.store.base import Label
from server.transactions import FieldError
from simulator import Labeled, Simulator

log = logging.getLogger(__name__)

WARM_UP_STEP = dt.timedelta(seconds=10)
"""Event time the warm-up scores at a time before it hands out the labels that became due:
the model learns the past in order, 10 s late at most beyond `label_delay`."""

WARM_UP_CAUGHT_UP = dt.timedelta(seconds=1)
"""How near the wall clock the warm-up stops: the live feed's first tick takes the rest."""


@dataclass(slots=True)
class WarmUp:
    """What the warm-up scored."""

    transactions: int = 0
    frauds: int = 0
    alerts: int = 0
    frauds_alerted: int = 0


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
        # Set once the stream is live: after the warm-up, if there is one.
        self.live = asyncio.Event()

    async def run(self, queue: TxQueue) -> None:
        while True:
            batch = self.simulator.generate_until(dt.datetime.now(dt.UTC))
            if batch:
                await queue.put(Submission([item.transaction for item in batch]))
                self.produced += len(batch)
                self._truth(batch)
            await asyncio.sleep(self.tick)

    def _truth(self, batch: Sequence[Labeled]) -> None:
        if self.scorecard is not None:
            for item in batch:
                self.scorecard.add_truth(item.transaction.id, item.is_fraud, item.scenario)
        if self.label_delay is not None:
            self.pending_labels.extend(batch)

    async def warm_up(
        self,
        queue: TxQueue,
        clock: Callable[[], dt.datetime],
        learn: Callable[[list[Labeled], dt.datetime], Awaitable[None]],
    ) -> WarmUp:
        """Score the stream's past (a Simulator made with `history`) until it has caught up
        with `clock` (wall time), as fast as the detection loop takes it, through the queue,
        detector and store the live stream goes through; the ground truth that became due on
        the way goes to `learn` (with the event time it became known), in event-time order,
        so the model and merchant risk learn the past as a server running then would have.
        Labels not yet due at the end stay pending, for the live labeller."""
        loop = asyncio.get_running_loop()
        done = WarmUp()
        t = self.simulator.start
        while (now := clock()) - t > WARM_UP_CAUGHT_UP:
            t = min(t + WARM_UP_STEP, now)
            batch = self.simulator.generate_until(t)
            if batch:
                # Truth first: the scorecard matches each verdict as it is stored.
                self._truth(batch)
                waiter: asyncio.Future[list[Verdict | FieldError]] = loop.create_future()
                await queue.put(Submission([item.transaction for item in batch], waiter=waiter))
                answers = await waiter
                self.produced += len(batch)
                done.transactions += len(batch)
                for item, answer in zip(batch, answers, strict=True):
                    alerted = isinstance(answer, Verdict) and answer.alert_id is not None
                    done.frauds += item.is_fraud
                    done.alerts += alerted
                    done.frauds_alerted += alerted and item.is_fraud
            due = self.due_labels(t)
            if due:
                await learn(due, t)
        return done

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
