"""A restart replays the stored transactions its detector snapshot lacks: exactly those, key
by key, on a real store and the real detection loop (server/state_replay.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import logging
import random
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import pytest

from server.detection.detector import Detector
from server.detection.features import FEATURES
from server.detection.model import ModelSlot
from server.detection.snapshot import Progress, Restored, encode, encode_frames, restore
from server.hub import Hub
from server.pipeline import DetectionLoop, Submission, TxQueue
from server.state_replay import replay_stored
from server.stats import Stats
from server.store.base import AlertEvent, StoredRecord, StoredTransaction
from server.store.errors import StoreUnavailable
from server.store.sqlite import SqliteStore
from server.transactions import Transaction

T0 = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
BATCH = 20


def stream(n: int, seed: int = 7) -> list[Transaction]:
    """Accounts sharing merchants, devices and IPs, with equal timestamps across accounts and
    events out of order: what per-key event times cannot tell apart in a replay."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        # Steps of 0 or 10 s (ties), now and then 30 s back (late); tiny amounts flag some.
        at = T0 + dt.timedelta(seconds=10 * (i // 2) - (30 if rng.random() < 0.1 else 0))
        out.append(
            Transaction(
                id=f"r-{i:04d}",
                timestamp=at,
                account_id=f"acct-{rng.randrange(12)}",
                merchant_id=f"m-{rng.randrange(5)}",
                amount=Decimal(rng.choice(("1.00", "2.00", "40.00", "900.00"))),
                currency="USD",
                country=rng.choice(("US", "FR")),
                lat=rng.uniform(-50, 50),
                lon=rng.uniform(-100, 100),
                device_id=rng.choice(("d-1", "d-2", "d-3", None)),
                ip=rng.choice(("10.0.0.1", "10.0.0.2", None)),
                mcc=rng.choice(("5411", "5812", None)),
            )
        )
    return out


def detector() -> Detector:
    """Every feature, so merchants', devices' and IPs' windows are kept; a model, for its
    account flags."""
    return Detector(model_features=FEATURES, model=ModelSlot())


class GatedStore(SqliteStore):
    """Holds each batch write until `gate` is set: a batch scored and not yet committed.
    `held` is set once one waits there."""

    gate: asyncio.Event | None = None
    held: asyncio.Event | None = None

    async def write_batch(self, records: Sequence[StoredRecord]) -> list[AlertEvent]:
        if self.gate is not None:
            if self.held is not None:
                self.held.set()
            await self.gate.wait()
        return await super().write_batch(records)


class Running:
    """The real detection loop on a real store, a batch at a time."""

    def __init__(self, store: GatedStore) -> None:
        self.store = store
        self.detector = detector()
        self.progress = Progress()
        stats = Stats()
        self.loop = DetectionLoop(
            TxQueue(1000),
            self.detector,
            store,
            Hub(stats, queue_max=100),
            stats,
            batch_max=BATCH,
            batch_wait=0,
            progress=self.progress,
        )

    async def run(self, txs: list[Transaction]) -> None:
        for start in range(0, len(txs), BATCH):
            await self.loop.process([Submission(txs[start : start + BATCH])])

    async def scored_not_stored(self, txs: list[Transaction]) -> asyncio.Task[None]:
        """Start a batch and return once it is scored, its write held at the gate."""
        held = self.store.held = asyncio.Event()
        self.store.gate = asyncio.Event()
        task = asyncio.create_task(self.loop.process([Submission(txs)]))
        await held.wait()
        assert self.progress.mark() == (txs[-1].id, self.progress.stored)
        return task

    async def release(self, task: asyncio.Task[None]) -> None:
        assert self.store.gate is not None
        self.store.gate.set()
        self.store.gate = None
        await task


async def open_store(tmp_path: Path) -> GatedStore:
    store = GatedStore(tmp_path / "fraudwatch.db")
    await store.start(lambda events: None)
    return store


async def live_snapshot(running: Running, txs: list[Transaction]) -> bytes:
    """A snapshot encoded while the loop scores `txs`: a batch between frames, some of them
    scored while a frame is encoded and committed only after it, as on a busy server."""
    frames: list[bytes] = []
    batches = [txs[i : i + BATCH] for i in range(0, len(txs), BATCH)]
    held: asyncio.Task[None] | None = None
    for i, frame in enumerate(
        encode_frames(running.detector.featurizer, 3, running.detector.model, running.progress)
    ):
        frames.append(frame)
        if held is not None:
            await running.release(held)
            held = None
        if batches:
            batch = batches.pop(0)
            if i % 2:
                held = await running.scored_not_stored(batch)
            else:
                await running.run(batch)
    assert held is None and not batches, "the stream outlasted the snapshot"
    return b"".join(frames)


def same_state(a: Detector, b: Detector) -> None:
    assert encode(b.featurizer) == encode(a.featurizer)
    assert a.model is not None and b.model is not None
    assert dict(b.model.flags.accounts) == dict(a.model.flags.accounts)


async def test_a_crash_after_a_live_snapshot_replays_each_key_exactly_what_it_lacks(
    tmp_path: Path,
) -> None:
    txs = stream(640)
    store = await open_store(tmp_path)
    try:
        running = Running(store)
        await running.run(txs[:200])
        data = await live_snapshot(running, txs[200:400])
        await running.run(txs[400:600])  # after the snapshot, then a crash
        assert running.detector.model is not None and running.detector.model.flags.accounts

        restarted, progress = detector(), Progress()
        restored = restore(restarted.featurizer, data, restarted.model)
        assert restored.marks is not None and len(restored.marks.marks) > 5
        replayed = await replay_stored(restarted, store, progress, restored, max_rows=10**6)
        assert replayed is not None
        # Read back from the first frame's mark on; those scored while the snapshot was
        # written were in some of their keys' frames already, and taken by the others only.
        assert replayed.read == 400 and replayed.partly > 0 and replayed.damaged == 0
        same_state(running.detector, restarted)
        assert progress.mark() == (txs[599].id, txs[599].id)
        # And the two go on alike.
        assert [restarted.score(tx) for tx in txs[600:]] == [
            running.detector.score(tx) for tx in txs[600:]
        ]
    finally:
        await store.close()


async def test_a_snapshot_holding_everything_stored_replays_nothing(tmp_path: Path) -> None:
    # As at shutdown: the loop has drained, every mark is the last stored transaction.
    txs = stream(300)
    store = await open_store(tmp_path)
    try:
        running = Running(store)
        await running.run(txs)
        data = encode(running.detector.featurizer, running.detector.model, running.progress)
        restarted, progress = detector(), Progress()
        restored = restore(restarted.featurizer, data, restarted.model)
        assert await replay_stored(restarted, store, progress, restored, max_rows=10**6) is None
        same_state(running.detector, restarted)
        assert progress.mark() == (txs[-1].id, txs[-1].id)
    finally:
        await store.close()


async def test_a_batch_scored_into_the_snapshot_but_never_stored_is_not_replayed(
    tmp_path: Path,
) -> None:
    # The crash came before the commit: the batch is in the state its frames hold and in no
    # store, and what was stored before it is in every key already.
    txs = stream(260)
    store = await open_store(tmp_path)
    try:
        running = Running(store)
        await running.run(txs[:240])
        held = await running.scored_not_stored(txs[240:])
        data = encode(running.detector.featurizer, running.detector.model, running.progress)
        held.cancel()
        restarted, progress = detector(), Progress()
        restored = restore(restarted.featurizer, data, restarted.model)
        assert await replay_stored(restarted, store, progress, restored, max_rows=10**6) is None
        assert progress.mark() == (txs[239].id, txs[239].id)
    finally:
        await store.close()


async def test_with_no_snapshot_the_state_is_rebuilt_from_the_store(tmp_path: Path) -> None:
    txs = stream(400)
    store = await open_store(tmp_path)
    try:
        running = Running(store)
        await running.run(txs)
        rebuilt, progress = detector(), Progress()
        replayed = await replay_stored(rebuilt, store, progress, None, max_rows=10**6)
        assert replayed is not None and replayed.rebuilt and replayed.read == 400
        same_state(running.detector, rebuilt)
        # So a payee paid before the restart is not new after it; one never paid is.
        for payee, new in (("m-3", False), ("never-paid", True)):
            probe = Transaction(id=f"probe-{payee}", timestamp=txs[-1].timestamp,
                                account_id="acct-0", merchant_id=payee,
                                amount=Decimal("5.00"), currency="USD")  # fmt: skip
            assert rebuilt.featurizer.values_one(probe)["is_new_payee"] is new
        # At most the newest `max_rows`: the history starts there.
        capped = detector()
        replayed = await replay_stored(capped, store, Progress(), None, max_rows=150)
        assert replayed is not None and replayed.read == 150
        alone = detector()
        for tx in txs[250:]:
            alone.relearn(tx, tx.timestamp.timestamp())
        same_state(alone, capped)
        # 0: no replay at all, and the state is taken to hold what is stored.
        none, progress = detector(), Progress()
        assert await replay_stored(none, store, progress, None, max_rows=0) is None
        assert not none.featurizer.accounts and progress.stored == txs[-1].id
    finally:
        await store.close()


async def test_marks_the_store_does_not_have_replay_nothing_and_say_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A snapshot of another database (or of transactions pruned since): counting its keys'
    # transactions again would be worse than missing a few minutes of them.
    txs = stream(100)
    store = await open_store(tmp_path)
    (tmp_path / "other").mkdir()
    other = await open_store(tmp_path / "other")
    try:
        running = Running(store)
        await running.run(txs)
        data = encode(running.detector.featurizer, running.detector.model, running.progress)
        restarted = detector()
        restored = restore(restarted.featurizer, data, restarted.model)
        await Running(other).run(stream(60, seed=8))
        with caplog.at_level(logging.WARNING, logger="server.state_replay"):
            assert await replay_stored(restarted, other, Progress(), restored, max_rows=100) is None
        assert "1 of the snapshot's 1 marks are not in the store" in caplog.text
        # A snapshot from before the marks: the same, quietly.
        older = Restored(restored.keys, None)
        assert await replay_stored(restarted, store, Progress(), older, max_rows=100) is None
    finally:
        await other.close()
        await store.close()


async def test_more_after_the_snapshot_than_a_replay_reads_keeps_the_newest_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    txs = stream(300)
    store = await open_store(tmp_path)
    try:
        running = Running(store)
        await running.run(txs[:100])
        data = encode(running.detector.featurizer, running.detector.model, running.progress)
        await running.run(txs[100:])
        restarted = detector()
        restored = restore(restarted.featurizer, data, restarted.model)
        with caplog.at_level(logging.WARNING, logger="server.state_replay"):
            replayed = await replay_stored(restarted, store, Progress(), restored, max_rows=120)
        assert replayed is not None and replayed.read == 120
        assert "more was stored after the snapshot than a replay reads" in caplog.text
    finally:
        await store.close()


class FailingReads(GatedStore):
    """Its second chunk of stored transactions cannot be read (a disk gone bad)."""

    chunks = 0

    async def transactions_after(
        self, position: int, until: int, limit: int
    ) -> list[StoredTransaction]:
        self.chunks += 1
        if self.chunks == 2:
            raise StoreUnavailable("disk I/O error (SQLITE_IOERR_READ)")
        return await super().transactions_after(position, until, limit)


async def test_a_store_failing_mid_replay_leaves_the_rest_out_and_the_server_starts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("server.state_replay.REPLAY_CHUNK", 50)
    txs = stream(200)
    store = FailingReads(tmp_path / "fraudwatch.db")
    await store.start(lambda events: None)
    try:
        await Running(store).run(txs)
        rebuilt, progress = detector(), Progress()
        with caplog.at_level(logging.ERROR, logger="server.state_replay"):
            assert await replay_stored(rebuilt, store, progress, None, max_rows=1000) is None
        assert "the replay failed" in caplog.text and "SQLITE_IOERR_READ" in caplog.text
        # What was read is in; the state is taken to hold the rest, never to replay it twice.
        assert 0 < sum(s.count for s in rebuilt.featurizer.accounts.values()) <= 100
        assert progress.mark() == (txs[-1].id, txs[-1].id)
        assert rebuilt.explain and gc.isenabled()
    finally:
        await store.close()
