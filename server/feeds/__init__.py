"""Feeds: sources that put transactions on the detection queue (simulator, later Redis, files).

A feed is anything with `async run(queue)` that puts `Submission`s until cancelled; the
queue's backpressure is its only flow control. The HTTP ingest API puts directly.
"""

from typing import Protocol

from server.pipeline import TxQueue


class Feed(Protocol):
    async def run(self, queue: TxQueue) -> None: ...


__all__ = ["Feed"]
