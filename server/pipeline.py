"""The detection loop: feeds → bounded queue → batched scoring → one store write → hub.

Feeds put `Submission`s on a `TxQueue` bounded by the number of waiting transactions, so a
fast feed waits (backpressure) instead of growing memory or dropping anything. One loop takes
up to `batch_max` transactions or whatever arrived within `batch_wait_ms` (at once when it
was idle: a lone transaction waits for no one), scores them in a
tight synchronous loop, persists the batch in one store transaction, then answers the waiting
callers and hands the verdicts to the hub. It never awaits a socket.

When the store fails (a lock held elsewhere, a full disk, a file it may not write), the loop
keeps the batch it has scored and retries the same write with capped backoff; it takes no new
batch meanwhile, so intake pauses: feeds wait on the full queue, the API answers 503 at once,
and /healthz reports why. Nothing taken from the queue is dropped or scored twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from server.detection.detector import Detector
from server.detection.snapshot import Progress
from server.detection.verdict import Verdict
from server.hub import Hub
from server.stats import Stats
from server.store.base import Store, StoredRecord, utc_stamp
from server.store.errors import StoreUnavailable
from server.transactions import (
    FieldError,
    Transaction,
    id_conflict,
    same_transaction,
    stored_row_damaged,
)

T = TypeVar("T")
log = logging.getLogger(__name__)
# Backoff between attempts at a failing store: quick to notice it is back, gentle on a disk
# or a lock holder that needs time.
RETRY_FIRST_S = 0.1
RETRY_MAX_S = 2.0


class IntakeClosed(Exception):
    """The server is shutting down and takes no new transactions."""


@dataclass(slots=True)
class Submission:
    transactions: list[Transaction]
    received: float = field(default_factory=time.monotonic)
    # Resolved with one answer per transaction, in order, once they are durable: its verdict,
    # or an `id_conflict` error for an id that an accepted, different transaction holds.
    waiter: asyncio.Future[list[Verdict | FieldError]] | None = None

    def __len__(self) -> int:
        return len(self.transactions)


class TxQueue:
    """FIFO of submissions, bounded by the number of transactions waiting."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: deque[Submission] = deque()
        self._size = 0
        self._closed = asyncio.Event()
        self._not_empty = asyncio.Event()
        self._space = asyncio.Condition()
        self._wake_putters: asyncio.Task[None] | None = None
        # The store's health as the detection loop last saw it, read by intake (the API,
        # /healthz, /metrics): why the store is failing, and how many attempts have failed.
        self.paused: StoreUnavailable | None = None
        self.store_failures = 0

    def qsize(self) -> int:
        return self._size

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def put(self, sub: Submission) -> None:
        if self.closed:
            raise IntakeClosed
        async with self._space:
            # An oversized submission still goes in when the queue is empty, or it never would.
            await self._space.wait_for(
                lambda: self.closed or self._size == 0 or self._size + len(sub) <= self.maxsize
            )
            if self.closed:
                raise IntakeClosed
            self._items.append(sub)
            self._size += len(sub)
        self._not_empty.set()

    async def wait_closed(self) -> None:
        """Until close() is called."""
        await self._closed.wait()

    def close(self) -> None:
        """Refuse new submissions; what is queued is still handed out."""
        self._closed.set()
        self._not_empty.set()
        # Feeds waiting for room hear it now, not when the loop next takes a batch (which
        # may be a while if it is retrying a failing store).
        self._wake_putters = asyncio.get_running_loop().create_task(self._notify_space())

    async def _notify_space(self) -> None:
        async with self._space:
            self._space.notify_all()

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
        """Up to `limit` transactions: what is there, plus, if some were already waiting when
        asked (the loop is busy), what arrives within `wait` seconds. Returns [] only once
        closed and empty.

        A caller that found the queue empty (an idle loop) gets the first arrivals at once:
        a lone transaction is not held `wait` for others that may never come. Under load the
        loop comes back from a batch to a queue that filled meanwhile, and waits to fill the
        next one, as many transactions a batch as before."""
        idle = not self._items
        while not self._items:
            if self.closed:
                return []
            await self._not_empty.wait()
        batch: list[Submission] = []
        count = self._take(batch, 0, limit)
        if count < limit and not self.closed and not idle:
            await asyncio.sleep(wait)
            count = self._take(batch, count, limit)
        async with self._space:
            self._space.notify_all()
        return batch


async def submit(
    queue: TxQueue, transactions: Sequence[Transaction], *, chunk: int, within: float
) -> list[Verdict | FieldError]:
    """Queue `transactions` and wait for their verdicts (or `id_conflict` errors), in order,
    once they are durable.

    Raises IntakeClosed while shutting down. Raises StoreUnavailable at once while the store
    is failing (nothing is queued then), or when the verdicts are not all durable within
    `within` seconds: what was queued by then stays queued and is stored when the store
    recovers, so re-sending the same ids answers with their original verdicts.
    """
    if queue.paused is not None:
        raise StoreUnavailable(queue.paused.cause)
    loop = asyncio.get_running_loop()
    waiters: list[asyncio.Future[list[Verdict | FieldError]]] = []
    try:
        async with asyncio.timeout(within):
            # Chunks keep one huge request from holding the whole queue; order is kept.
            for start in range(0, len(transactions), chunk):
                waiter: asyncio.Future[list[Verdict | FieldError]] = loop.create_future()
                part = list(transactions[start : start + chunk])
                await queue.put(Submission(part, waiter=waiter))
                waiters.append(waiter)
            answers = await asyncio.gather(*waiters)
    except TimeoutError:
        paused = queue.paused
        cause = paused.cause if paused else f"verdicts not durable within {within:g} s"
        raise StoreUnavailable(cause) from None
    finally:
        # Queued parts nobody waits for any more are still scored and stored.
        for waiter in waiters:
            waiter.cancel()
    return [verdict for answer in answers for verdict in answer]


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
        on_stored: Callable[[Sequence[StoredRecord]], None] | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.queue = queue
        self.detector = detector
        self.store = store
        self.hub = hub
        self.stats = stats
        self.batch_max = batch_max
        self.batch_wait = batch_wait
        # Synchronous, after each stored batch (the scorecard): must be cheap and never await.
        self.on_stored = on_stored
        # Transactions taken from the queue and not yet stored (for shutdown's report).
        self.in_hand = 0
        # Moved once a batch (scored, then stored): what each detector snapshot records of
        # where its state stands in the store, for a replay after a crash.
        self.progress = progress

    async def run(self) -> None:
        """Process batches until the queue is closed and drained."""
        while True:
            batch = await self.queue.get_batch(self.batch_max, self.batch_wait)
            if not batch:
                return
            self.in_hand = sum(len(sub) for sub in batch)
            try:
                await self.process(batch)
            except Exception as exc:
                # Not the store being unavailable (process retries that): a fault that the
                # same batch would hit again. Its callers get an error, never a 200, and
                # may re-send; the loop goes on with the next batch.
                log.exception("detection batch of %d submissions failed", len(batch))
                for sub in batch:
                    if sub.waiter is not None and not sub.waiter.done():
                        sub.waiter.set_exception(exc)
            self.in_hand = 0

    async def _until_stored(self, call: Callable[[], Awaitable[T]]) -> T:
        """Make the store call `call` until the store takes it, backing off between attempts.
        Meanwhile no new batch is taken: intake pauses, and what was scored is kept."""
        delay = RETRY_FIRST_S
        while True:
            try:
                result = await call()
            except StoreUnavailable as exc:
                if self.queue.paused is None or self.queue.paused.cause != exc.cause:
                    log.error("store unavailable: %s; intake paused, retrying", exc.cause)
                self.queue.paused = exc
                self.queue.store_failures += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            if self.queue.paused is not None:
                log.warning("store available again; intake resumed")
                self.queue.paused = None
            return result

    async def process(self, batch: Sequence[Submission]) -> None:
        ids = [tx.id for sub in batch for tx in sub.transactions]
        found = await self._until_stored(lambda: self.store.known_transactions(ids))
        # The verdict a re-send must get back is in a row that cannot be read: scoring it
        # again would answer other than what is stored and count it twice. Each such id is
        # refused for good (it stays damaged, however often it is sent); the rest of the
        # batch goes on, so one bad row never fails its neighbours or other callers.
        damaged = found.damaged
        for tx_id, problem in damaged.items():
            log.error(
                "a re-sent transaction was refused, its stored row cannot be read back "
                "(stored_row_damaged): %s: %s",
                tx_id,
                problem,
            )
        known = found.rows
        detector = self.detector
        records: list[StoredRecord] = []
        answers: list[list[Verdict | FieldError]] = []
        fresh: dict[str, tuple[Verdict, Transaction]] = {}
        latencies: list[float] = []
        wall, mono = time.time(), time.monotonic()
        for sub in batch:
            out: list[Verdict | FieldError] = []
            # When the server took this submission, on its wall clock (alerts carry it).
            received_at = utc_stamp(wall - (mono - sub.received))
            for tx in sub.transactions:
                if tx.id in damaged:
                    out.append(stored_row_damaged(tx.id))
                    continue
                # An id seen before gets its first verdict back if this is the same payment
                # (a retry), and a conflict if not: the first transaction stays as it was.
                first = known.get(tx.id) or fresh.get(tx.id)
                if first is not None:
                    verdict, original = first
                    out.append(verdict if same_transaction(tx, original) else id_conflict(tx.id))
                    continue
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
                fresh[tx.id] = (verdict, tx)
                records.append(
                    StoredRecord(
                        tx, verdict, scored.severity, received_at, detector.kept_inputs(tx.id)
                    )
                )
                out.append(verdict)
            answers.append(out)
        progress = self.progress
        if records:
            last = records[-1].transaction.id
            if progress is not None:
                progress.scored = last
            # The records are scored once and kept: a retry writes the same verdicts, so the
            # detector's account state never counts a transaction twice.
            await self._until_stored(lambda: self.store.write_batch(records))
            if progress is not None:
                progress.stored = last
        now = time.monotonic()
        for sub, out in zip(batch, answers, strict=True):
            latencies.append((now - sub.received) * 1000)
            if sub.waiter is None:
                _warn_conflicts(out)  # a feed's: nobody else hears of what was refused
            elif not sub.waiter.done():
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
        if records and self.on_stored is not None:
            self.on_stored(records)


def _warn_conflicts(answers: list[Verdict | FieldError]) -> None:
    """A feed's submission has nobody to answer: say when its transactions were refused."""
    # (A damaged stored row has been logged already, with what is wrong with it.)
    refused = [a for a in answers if isinstance(a, FieldError) and a.code == "id_conflict"]
    if refused:
        log.warning(
            "%d transaction(s) from a feed refused: an id already stored holds another "
            "transaction (first: %s)",
            len(refused),
            refused[0].message,
        )
