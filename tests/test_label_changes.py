"""Label changes reach merchant risk and the amount's fraud rate from the store's log, in its
order, each once; a restart takes in exactly those its snapshot lacked, frame by frame
(server/label_changes.py), on a real store."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.detection.detector import Detector
from server.detection.features import Featurizer
from server.detection.snapshot import Progress, encode, encode_frames, restore
from server.detection.verdict import Verdict
from server.label_changes import LabelChanges
from server.state import DETECTOR, LABEL_CHANGES, STORE
from server.state_saver import StateSaver
from server.store.base import AlertEvent, Label, LabelChange, LabelValue, StoredRecord
from server.store.errors import StoreUnavailable
from server.store.sqlite import SqliteStore
from server.transactions import Transaction
from tests.conftest import AUTH, make_settings
from tests.conftest import tx as conftest_tx
from tests.test_api import post_batch

T0 = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
MERCHANTS = 40
PAYMENTS = 400


def _ignore(_: list[AlertEvent]) -> None:
    pass


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = await _filled(tmp_path / "fraudwatch.db")
    yield store
    await store.close()


async def _filled(path: Path) -> SqliteStore:
    """A store holding PAYMENTS payments at MERCHANTS merchants."""
    store = SqliteStore(path)
    await store.start(_ignore)
    rng = random.Random(3)
    records = []
    for i in range(PAYMENTS):
        tx = Transaction(
            id=f"p-{i:04d}",
            timestamp=T0 + dt.timedelta(minutes=i),
            account_id=f"acct-{i % 17}",
            merchant_id=f"m-{rng.randrange(MERCHANTS)}",
            # Few amount buckets, so that labels of several merchants share one.
            amount=Decimal(rng.choice(("40.00", "41.00", "250.00", "900.00"))),
            currency="USD",
            country="US",
        )
        verdict = Verdict(
            transaction_id=tx.id,
            score=0.1,
            decision="allow",
            reasons=[],
            alert_id=None,
            rules_version="rules-1",
            latency_ms=0.2,
        )
        records.append(StoredRecord(tx, verdict, "low"))
    await store.write_batch(records)
    return store


class Labeller:
    """Random label requests, corrections of earlier labels among them, with labelled_at
    moving forward by irregular steps (and now and then back: a late chargeback)."""

    def __init__(self, store: SqliteStore, seed: int = 11) -> None:
        self.store = store
        self.rng = random.Random(seed)
        self.at = T0 + dt.timedelta(days=1)

    async def request(self, n: int = 6) -> None:
        rng = self.rng
        labels = []
        for _ in range(n):
            self.at += dt.timedelta(hours=rng.choice((0, 1, 7, 30)))
            late = dt.timedelta(hours=rng.choice((0, 0, 0, 20)))
            value: LabelValue = rng.choice(("fraud", "legitimate"))
            labels.append(
                Label(
                    transaction_id=f"p-{rng.randrange(PAYMENTS):04d}",
                    label=value,
                    source="api:test",
                    labelled_at=(self.at - late).isoformat().replace("+00:00", "Z"),
                )
            )
        await self.store.add_labels(labels)


async def _taken_in(
    store: SqliteStore, live: Featurizer, requests: int, progress: Progress | None = None
) -> tuple[Featurizer, Progress, LabelChanges, Labeller]:
    """`requests` label requests stored, each taken into `live` as the server does."""
    progress = progress or Progress()
    changes = LabelChanges(live, store, progress)
    labeller = Labeller(store)
    for _ in range(requests):
        await labeller.request()
        await changes.catch_up()
    return live, progress, changes, labeller


def _risk(featurizer: Featurizer) -> tuple[object, ...]:
    merchants = {
        key: (list(state.labels), state.last_t)
        for key, state in featurizer.merchants.items()
        if state.labels is not None
    }
    amounts = {bucket: list(counts) for bucket, counts in featurizer.amounts.items()}
    hours = {hour: list(counts) for hour, counts in featurizer.hours.items()}
    return merchants, amounts, hours


async def test_a_snapshot_written_while_labels_came_replays_each_part_what_it_lacks(
    store: SqliteStore,
) -> None:
    """Labels taken in between the frames of a live snapshot, and more after it: a restart
    from it ends with every merchant's labels and the amount's rates exactly (to the bit)
    as the running featurizer's."""
    live, progress = Featurizer(["amount_fraud_rate"]), Progress()
    changes = LabelChanges(live, store, progress)
    labeller = Labeller(store)
    for _ in range(10):
        await labeller.request()
        await changes.catch_up()

    frames = []
    for frame in encode_frames(live, chunk=4, progress=progress):
        frames.append(frame)
        await labeller.request(3)
        await changes.catch_up()
    for _ in range(10):
        await labeller.request()
        await changes.catch_up()
    data = b"".join(frames)

    after = Featurizer(["amount_fraud_rate"])
    restored = restore(after, data)
    marks = restored.labels
    assert marks is not None
    # The frames' marks moved while the snapshot was written: one mark for all would
    # count some merchants' changes twice, or miss others'.
    assert len(set(marks.merchants.values())) > 3
    assert marks.header < marks.amounts < progress.labels
    assert _risk(after) != _risk(live)
    replayed = Progress()
    await LabelChanges(after, store, replayed).start(restored)
    assert _risk(after) == _risk(live)
    assert replayed.labels == progress.labels == await store.last_label_change()


async def test_labels_taken_in_out_of_order_would_leave_other_rates(store: SqliteStore) -> None:
    """Why the log's order, not membership alone: the amount's rate decays from the last
    label it saw, so the same labels in another order leave other figures."""
    labeller = Labeller(store)
    for _ in range(5):
        await labeller.request()
    ordered = Featurizer(["amount_fraud_rate"])
    await LabelChanges(ordered, store, Progress()).catch_up()
    shuffled = Featurizer(["amount_fraud_rate"])
    log = await store.label_changes_after(0, 10_000)
    random.Random(5).shuffle(log)
    LabelChanges(shuffled, store, Progress())._apply(log, None)
    assert _risk(ordered)[1] != _risk(shuffled)[1]


class FailingChanges(SqliteStore):
    """Its label changes cannot be read (a disk gone bad)."""

    async def label_changes_after(self, seq: int, limit: int) -> list[LabelChange]:
        raise StoreUnavailable("disk I/O error (SQLITE_IOERR_READ)")


async def test_a_clean_snapshot_replays_nothing_and_a_failing_read_replays_nothing_twice(
    store: SqliteStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    live, progress, _changes, labeller = await _taken_in(
        store, Featurizer(["amount_fraud_rate"]), 5
    )
    data = encode(live, progress=progress)
    after = Featurizer(["amount_fraud_rate"])
    replayed = Progress()
    await LabelChanges(after, store, replayed).start(restore(after, data))
    assert _risk(after) == _risk(live)
    assert replayed.labels == progress.labels
    assert "replayed" not in caplog.text

    # A read that fails at start: the server starts, the state taken to hold every change
    # up to the snapshot's last mark, so no change before it can count twice later.
    await labeller.request()
    failing = FailingChanges(tmp_path / "fraudwatch.db")
    await failing.start(_ignore)
    try:
        broken = Featurizer(["amount_fraud_rate"])
        later = LabelChanges(broken, failing, Progress())
        await later.start(restore(broken, data))
    finally:
        await failing.close()
    assert later.progress.labels == progress.labels
    assert "the label replay failed" in caplog.text


async def test_each_snapshot_prunes_what_the_one_before_it_held(
    store: SqliteStore, tmp_path: Path
) -> None:
    """The log keeps what the newest snapshot (and the one before, which a backup may have
    asked for) can need, and a restart from the newest is still exact."""
    detector, progress = Detector(), Progress()
    live = detector.featurizer
    saver = StateSaver(detector, tmp_path / "state.msgpack", progress, store)
    live, progress, changes, labeller = await _taken_in(store, live, 3, progress)
    first = progress.labels
    await saver.save()
    assert (await store.label_changes_after(0, 1))[0].seq == 1  # nothing pruned yet
    for _ in range(3):
        await labeller.request()
        await changes.catch_up()
    await saver.save()
    assert (await store.label_changes_after(0, 1))[0].seq == first + 1
    await labeller.request()  # after the newest snapshot: replayed
    await changes.catch_up()

    after = Detector()
    restored = restore(after.featurizer, saver.path.read_bytes())
    await LabelChanges(after.featurizer, store, Progress()).start(restored)
    assert _risk(after.featurizer) == _risk(live)


async def test_a_clean_shutdown_takes_in_the_changes_committed_before_it(
    aiohttp_client: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A label committed whose taking-in was cut short (the simulator's labeller is
    cancelled at shutdown between the two): the shutdown snapshot holds it, and the next
    start has nothing to replay."""
    settings = make_settings(tmp_path)
    client: TestClient = await aiohttp_client(create_app(settings))
    await post_batch(client, [conftest_tx("s-0", "acct-s", 250.0, merchant="m-s")])
    label = Label(
        transaction_id="s-0", label="fraud", source="simulator", labelled_at="2026-02-01T00:00:00Z"
    )
    await client.app[STORE].add_labels([label])  # type: ignore[index]
    await client.close()

    with caplog.at_level(logging.INFO, logger="server.label_changes"):
        again: TestClient = await aiohttp_client(create_app(settings))
    merchant = again.app[DETECTOR].featurizer.merchants["m-s"]  # type: ignore[index]
    assert merchant.labels is not None and list(merchant.labels[1:]) == [1.0, 1.0]
    assert "merchant risk: replayed" not in caplog.text


async def test_a_snapshot_of_another_database_replays_nothing_and_misses_nothing_new(
    store: SqliteStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Marks beyond every change the store has: none is replayed (they are not the ones it
    took in), and the changes this store makes from then on are all taken in."""
    live, progress, _changes, _labeller = await _taken_in(
        store, Featurizer(["amount_fraud_rate"]), 5
    )
    data = encode(live, progress=progress)

    other = await _filled(tmp_path / "other.db")
    try:
        elsewhere = Labeller(other, seed=12)
        await elsewhere.request(2)
        after = Featurizer(["amount_fraud_rate"])
        restarted = LabelChanges(after, other, Progress())
        await restarted.start(restore(after, data))
        assert restarted.progress.labels == 2
        assert "another database" in caplog.text
        assert _risk(after) == _risk(live)  # as restored
        # A change this store makes next has a seq the snapshot's marks are past.
        await elsewhere.request(1)
        await restarted.catch_up()
        assert restarted.progress.labels == 3
        assert _risk(after) != _risk(live)
    finally:
        await other.close()


async def test_label_requests_at_once_are_taken_in_in_the_logs_order_each_once(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    """Twenty requests storing labels at once, corrections among them: the server's merchant
    risk and amount rates are the log's changes taken in in its order, each once, so a
    snapshot's one mark says what it holds."""
    settings = make_settings(tmp_path)
    client: TestClient = await aiohttp_client(create_app(settings))
    rng = random.Random(8)
    at = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=3)
    payments = [
        conftest_tx(f"c-{i}", f"acct-c-{i}", rng.choice((40.0, 250.0)), at, f"m-c-{i % 5}")
        for i in range(60)
    ]
    await post_batch(client, payments)

    async def request(n: int) -> None:
        labels = [
            {
                "transaction_id": f"c-{rng.randrange(60)}",
                "label": rng.choice(("fraud", "legitimate")),
                "labelled_at": (at + dt.timedelta(hours=n, minutes=k)).isoformat(),
            }
            for k in range(5)
        ]
        resp = await client.post("/api/v1/labels", json=labels, headers=AUTH)
        assert resp.status == 200, await resp.text()

    await asyncio.gather(*(request(n) for n in range(20)))
    app_changes = client.app[LABEL_CHANGES]  # type: ignore[index]
    store = client.app[STORE]  # type: ignore[index]
    assert app_changes.progress.labels == await store.last_label_change() > 40
    in_order = Featurizer(["amount_fraud_rate"])
    await LabelChanges(in_order, store, Progress()).catch_up()
    assert _risk(client.app[DETECTOR].featurizer) == _risk(in_order)  # type: ignore[index]


async def test_a_correction_takes_back_nothing_the_state_never_took_in(store: SqliteStore) -> None:
    """A state that began after some labels (no snapshot, or one without label marks) never
    counted them: their correction adds the new label and takes nothing back, also after a
    restart from a snapshot of that state."""

    def label(tx_id: str, value: LabelValue, hours: int) -> Label:
        at = (T0 + dt.timedelta(days=1, hours=hours)).isoformat().replace("+00:00", "Z")
        return Label(transaction_id=tx_id, label=value, source="api:test", labelled_at=at)

    def learnt_alone(featurizer: Featurizer, change: LabelChange) -> None:
        assert change.transaction is not None
        tx = msgspec.json.decode(change.transaction, type=Transaction)
        featurizer.learn_label(
            tx.merchant_id,
            dt.datetime.fromisoformat(change.labelled_at).timestamp(),
            change.label == "fraud",
            float(tx.amount),
            tx.timestamp.hour,
        )

    # Before the state began: fraud labels on p-0000 and p-0020 (the hour 12:00 of T0, as
    # every payment up to p-0059 is).
    await store.add_labels([label("p-0000", "fraud", 0), label("p-0020", "fraud", 0)])
    live, progress = Featurizer(["amount_fraud_rate"]), Progress()
    changes = LabelChanges(live, store, progress)
    await changes.start(None)
    # Then labels it takes in, and the correction of one it never took in.
    await store.add_labels([label(f"p-{i:04d}", "fraud", 1) for i in range(1, 20)])
    await store.add_labels([label("p-0000", "legitimate", 2)])
    await changes.catch_up()
    expected = Featurizer(["amount_fraud_rate"])
    for change in await store.label_changes_after(2, 100):
        learnt_alone(expected, change)
    assert _risk(live) == _risk(expected)
    assert live.hours[12][1] > 18.9  # 19 frauds (decayed by an hour): none taken away

    # Restarted from its snapshot: it still never took in p-0020's first label.
    data = encode(live, progress=progress)
    after, expected = Featurizer(["amount_fraud_rate"]), Featurizer(["amount_fraud_rate"])
    restarted = LabelChanges(after, store, Progress())
    await restarted.start(restore(after, data))
    restore(expected, data)
    await store.add_labels([label("p-0020", "legitimate", 3)])
    await restarted.catch_up()
    (correction,) = await store.label_changes_after(progress.labels, 100)
    learnt_alone(expected, correction)
    assert _risk(after) == _risk(expected)
