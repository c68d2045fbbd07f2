"""The built-in simulator as a feed: event time equals wall time, at the configured rate."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from server.pipeline import Submission, TxQueue
from simulator import Labeled, Simulator

log = logging.getLogger(__name__)


class SimulatorFeed:
    def __init__(self, simulator: Simulator, tick: float = 0.1) -> None:
        self.simulator = simulator
        self.tick = tick
        self.produced = 0
        # Ground truth stays out of the detector; kept for scorecards and delayed labels.
        self.recent_labels: list[Labeled] = []

    async def run(self, queue: TxQueue) -> None:
        while True:
            batch = self.simulator.generate_until(dt.datetime.now(dt.UTC))
            if batch:
                await queue.put(Submission([item.transaction for item in batch]))
                self.produced += len(batch)
            await asyncio.sleep(self.tick)
