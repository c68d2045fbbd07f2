"""The detection loop: feeds → bounded queue → batched scoring → one store write → hub.

Feeds put `Submission`s on a `TxQueue` bounded by the number of waiting transactions, so a
fast feed waits (backpressure) instead of growing memory or dropping anything. One loop takes
up to `batch_max` transactions or whatever arrived within `batch_wait_ms`, scores them in a
tight synchronous loop, persists the batch in one store transaction, then answers the waiting
callers and hands the verdicts to the hub. It never awaits a socket.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from server.detection.detector import Detector
from server.detection.verdict import Verdict
from server.hub import Hub
from server.stats import Stats
from server.store.base import Store, StoredRecord
from server.transactions import Transaction

log = logging.getLogger(__name__)


class IntakeClosed(Exception):
    """The server is shutting down and takes no new transactions."""


@dataclass(slots=True)
class Submission:
    transactions: list[Transaction]
    received: float = field(default_factory=time.monotonic)
    # Resolved with one verdict per transaction, in order, once they are durable.
    waiter: asyncio.Future[list[Verdict]] | None = None

    def __len__(self) -> int:
        return len(self.transactions)


class TxQueue:
    """FIFO of submissions, bounded by the number of transactions waiting."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: deque[Submission] = deque()
        self._size = 0
        self._closed = False
        self._not_empty = asyncio.Event()
        self._space = asyncio.Condition()

    def qsize(self) -> int:
        return self._size

    @property
    def closed(self) -> bool:
        return self._closed

    async def put(self, sub: Submission) -> None:
        if self._closed:
            raise IntakeClosed
        async with self._space:
            # An oversized submission still goes in when the queue is empty, or it never would.
            await self._space.wait_for(
                lambda: self._closed or self._size == 0 or self._size + len(sub) <= self.maxsize
            )
            if self._closed:
                raise IntakeClosed
            self._items.append(sub)
            self._size += len(sub)
        self._not_empty.set()

    def close(self) -> None:
        """Refuse new submissions; what is queued is still handed out."""
        self._closed = True
        self._not_empty.set()

    def _take(self, batch: list[Submission], count: int, limit: int) -> int:
        while self._items and count < limit:
            sub = self._items.popleft()
            self._size -= len(sub)
            batch.append(sub)
            count += len(sub)
        if not self._items:
            self._not_empty.clear()
        return count

    async def get_batch(self, limit: int, wait: float) -> list[Submission]:
        """Up to `limit` transactions: what is there, plus what arrives within `wait` seconds.
        Returns [] only once closed and empty."""
        while not self._items:
            if self._closed:
                return []
            await self._not_empty.wait()
        batch: list[Submission] = []
        count = self._take(batch, 0, limit)
        if count < limit and not self._closed:
            await asyncio.sleep(wait)
            count = self._take(batch, count, limit)
        async with self._space:
            self._space.notify_all()
        return batch


def new_alert_id() -> str:
    # Time-ordered and unique across processes without coordination (workers scale out).
    return f"{time.time_ns() // 1_000_000:011x}{os.urandom(5).hex()}"


class DetectionLoop:
    def __init__(
        self,
        queue: TxQueue,
        detector: Detector,
        store: Store,
        hub: Hub,
        stats: Stats,
        *,
        batch_max: int,
        batch_wait: float,
    ) -> None:
        self.queue = queue
        self.detector = detector
        self.store = store
        self.hub = hub
        self.stats = stats
        self.batch_max = batch_max
        self.batch_wait = batch_wait

    async def run(self) -> None:
        """Process batches until the queue is closed and drained."""
        while True:
            batch = await self.queue.get_batch(self.batch_max, self.batch_wait)
            if not batch:
                return
            try:
                await self.process(batch)
            except Exception as exc:
                log.exception("detection batch of %d submissions failed", len(batch))
                for sub in batch:
                    if sub.waiter is not None and not sub.waiter.done():
                        sub.waiter.set_exception(exc)

    async def process(self, batch: Sequence[Submission]) -> None:
        ids = [tx.id for sub in batch for tx in sub.transactions]
        known = await self.store.known_verdicts(ids)
        detector = self.detector
        records: list[StoredRecord] = []
        answers: list[list[Verdict]] = []
        fresh: dict[str, Verdict] = {}
        latencies: list[float] = []
        for sub in batch:
            out: list[Verdict] = []
            for tx in sub.transactions:
                verdict = known.get(tx.id) or fresh.get(tx.id)
                if verdict is None:
                    scored = detector.score(tx)
                    verdict = Verdict(
                        transaction_id=tx.id,
                        score=scored.score,
                        decision=scored.decision,
                        reasons=list(scored.reasons),
                        alert_id=new_alert_id() if scored.decision != "allow" else None,
                        rules_version=scored.rules_version,
                        latency_ms=round((time.monotonic() - sub.received) * 1000, 3),
                    )
                    fresh[tx.id] = verdict
                    records.append(StoredRecord(tx, verdict, scored.severity))
                out.append(verdict)
            answers.append(out)
        if records:
            await self.store.write_batch(records)
        now = time.monotonic()
        for sub, out in zip(batch, answers, strict=True):
            latencies.append((now - sub.received) * 1000)
            if sub.waiter is not None and not sub.waiter.done():
                sub.waiter.set_result(out)
        new_verdicts = [r.verdict for r in records]
        self.stats.record_batch(
            len(new_verdicts),
            sum(1 for v in new_verdicts if v.alert_id is not None),
            latencies,
            [len(sub) for sub in batch],
        )
        if new_verdicts:
            self.hub.publish_verdicts(new_verdicts)
