"""The queue's backpressure and batching, and the detection loop over a real store."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from server.detection.detector import Detector
from server.detection.features import DAY
from server.hub import Hub
from server.pipeline import DetectionLoop, IntakeClosed, Submission, TxQueue
from server.state import DETECTOR
from server.stats import Stats
from server.store.sqlite import SqliteStore
from server.transactions import Transaction
from tests.conftest import AUTH, tx

T0 = dt.datetime(2026, 3, 2, 14, 0, tzinfo=dt.UTC)


def txs(n: int, prefix: str = "t", amount: str = "20.00") -> list[Transaction]:
    return [
        Transaction(
            id=f"{prefix}-{i}",
            timestamp=T0 + dt.timedelta(seconds=i),
            account_id=f"acct-{i % 7}",
            merchant_id="m",
            amount=Decimal(amount),
            currency="USD",
        )
        for i in range(n)
    ]


async def test_put_waits_while_full_and_resumes_when_drained() -> None:
    queue = TxQueue(maxsize=10)
    await queue.put(Submission(txs(8)))
    blocked = asyncio.create_task(queue.put(Submission(txs(5, "b"))))
    await asyncio.sleep(0.05)
    assert not blocked.done()  # backpressure, not a drop
    batch = await queue.get_batch(limit=100, wait=0)
    assert sum(len(s) for s in batch) == 8
    await asyncio.wait_for(blocked, 1)
    assert queue.qsize() == 5


async def test_an_oversized_submission_enters_an_empty_queue() -> None:
    queue = TxQueue(maxsize=10)
    await asyncio.wait_for(queue.put(Submission(txs(25))), 1)
    assert queue.qsize() == 25


async def test_get_batch_stops_at_the_limit_and_keeps_order() -> None:
    queue = TxQueue(maxsize=1000)
    for i in range(5):
        await queue.put(Submission(txs(3, f"s{i}")))
    batch = await queue.get_batch(limit=6, wait=0)
    assert [s.transactions[0].id for s in batch] == ["s0-0", "s1-0"]
    rest = await queue.get_batch(limit=100, wait=0)
    assert [s.transactions[0].id for s in rest] == ["s2-0", "s3-0", "s4-0"]


async def test_get_batch_waits_briefly_to_fill_a_batch() -> None:
    queue = TxQueue(maxsize=1000)
    await queue.put(Submission(txs(1, "first")))

    async def later() -> None:
        await asyncio.sleep(0.01)
        await queue.put(Submission(txs(1, "second")))

    task = asyncio.create_task(later())
    batch = await queue.get_batch(limit=100, wait=0.2)
    await task
    assert [s.transactions[0].id for s in batch] == ["first-0", "second-0"]


async def test_an_idle_loop_takes_a_lone_transaction_at_once() -> None:
    """The loop asked for a batch before anything came: the first arrival is handed out
    without waiting `wait` (5 s here) for others; what comes next is the next batch."""
    queue = TxQueue(maxsize=1000)
    taking = asyncio.create_task(queue.get_batch(limit=100, wait=5.0))
    await asyncio.sleep(0.01)
    await queue.put(Submission(txs(1, "lone")))
    batch = await asyncio.wait_for(taking, 1.0)
    assert [s.transactions[0].id for s in batch] == ["lone-0"]
    await queue.put(Submission(txs(1, "next")))
    assert [s.transactions[0].id for s in await queue.get_batch(limit=100, wait=0)] == ["next-0"]


async def test_closed_queue_refuses_new_work_but_hands_out_the_rest() -> None:
    queue = TxQueue(maxsize=100)
    await queue.put(Submission(txs(2)))
    queue.close()
    with pytest.raises(IntakeClosed):
        await queue.put(Submission(txs(1, "late")))
    assert len(await queue.get_batch(limit=100, wait=0.1)) == 1
    assert await queue.get_batch(limit=100, wait=0.1) == []


async def running_loop(
    tmp_path: Path,
) -> tuple[SqliteStore, Stats, TxQueue, asyncio.Task[None]]:
    """A detection loop over a real SQLite store, running; close the queue to stop it."""
    store = SqliteStore(tmp_path / "db.sqlite")
    stats = Stats()
    hub = Hub(stats, queue_max=100)
    await store.start(hub.publish_events)
    queue = TxQueue(maxsize=50)
    loop = DetectionLoop(queue, Detector(), store, hub, stats, batch_max=20, batch_wait=0.001)
    return store, stats, queue, asyncio.create_task(loop.run())


async def test_a_feeds_refused_transactions_are_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A feed's submission has no waiter to hear of an id conflict: the log must say.
    store, _, queue, task = await running_loop(tmp_path)
    await queue.put(Submission(txs(3, "f")))
    await queue.put(Submission(txs(3, "f", amount="21.00")))  # same ids, other payments
    queue.close()
    await asyncio.wait_for(task, 10)
    await store.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("3 transaction(s) from a feed refused" in w and "'f-0'" in w for w in warnings)


async def test_loop_drains_everything_accepted_before_stopping(tmp_path: Path) -> None:
    store, stats, queue, task = await running_loop(tmp_path)
    waiters = []
    for i in range(10):
        waiter: asyncio.Future[list] = asyncio.get_running_loop().create_future()  # type: ignore[type-arg]
        await queue.put(Submission(txs(15, f"w{i}"), waiter=waiter))
        waiters.append(waiter)
    queue.close()
    await asyncio.wait_for(task, 10)
    answered = [v for w in waiters for v in w.result()]
    assert len(answered) == 150
    assert stats.transactions_total == 150
    known = await store.known_verdicts([v.transaction_id for v in answered])
    assert len(known) == 150
    await store.close()


async def test_the_running_server_forgets_accounts_idle_past_the_ttl(
    client: TestClient,
) -> None:
    # Eviction runs in event time, from inside scoring: in a live server it sweeps at the
    # first transaction, then at the first one past `next_sweep`, an eighth of the TTL of
    # event time later (45 days / 8: every 5.6 days), each sweep dropping every key idle
    # for the TTL.
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    featurizer = client.app[DETECTOR].featurizer  # type: ignore[index]
    step = 45 * DAY / 8

    async def send(tx_id: str, account: str, days_ago: float) -> float:
        at = now - dt.timedelta(days=days_ago)
        resp = await client.post(
            "/api/v1/transactions", json=tx(tx_id, account=account, at=at), headers=AUTH
        )
        assert resp.status == 200, await resp.text()
        return at.timestamp()

    t = await send("t-1", "idle", 80)
    assert featurizer.next_sweep == t + step
    t = await send("t-2", "month", 30)  # past the next sweep: idle for 50 days, dropped
    assert featurizer.next_sweep == t + step
    assert featurizer.accounts.keys() == {"month"}
    await send("t-3", "busy", 27)  # before the next sweep: none
    assert featurizer.next_sweep == t + step
    t = await send("t-4", "busy", 0)  # a sweep; "month" idle 30 days: kept
    assert featurizer.next_sweep == t + step
    assert featurizer.accounts.keys() == {"month", "busy"}
