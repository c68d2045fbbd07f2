"""A start replaying stored transactions into the detector state: how fast, and what it costs.

Stores N transactions of benchmarks/detector.py's stream (accounts spending at their usual
merchants from their own device over three days, a sprinkle of fraud-like events), as the
detection loop stores them, then times `replay_stored` into the server's detector (the
default rules and the model):

- `rebuild` (no snapshot): every stored transaction, from an empty state;
- `crash`: the first N - K scored and a snapshot written with the loop's marks, then the last
  K stored as if scored after it; a fresh detector restores the snapshot and replays them;
- `labels`: every stored transaction scored, `--labels-before` label changes taken in and a
  snapshot written, then `--after` label changes stored after it (a tenth of them
  corrections of earlier labels), in requests of 500; a fresh detector restores the
  snapshot and takes them into merchant risk and the amount's rate
  (server/label_changes.py).

Prints rows a second, the time to the end of the replay (and of the restore, for `crash`),
and the process's peak RSS. `--db` keeps the filled database for another run.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import resource
import sqlite3
import tempfile
import time
from pathlib import Path

import msgspec
from detector import generate
from store import INPUTS_BYTES

from server.detection.detector import Detector
from server.detection.model import RAW_LAYOUT, ModelSlot
from server.detection.snapshot import Progress, encode, restore
from server.detection.verdict import Verdict
from server.label_changes import LabelChanges
from server.state_replay import replay_stored
from server.store.base import AlertEvent, Label, StoredRecord, utc_stamp
from server.store.sqlite import SqliteStore
from server.transactions import Transaction

FILL_BATCH = 1000
_decode = msgspec.json.Decoder(Transaction).decode


def _ignore(_events: list[AlertEvent]) -> None:
    pass


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _detector() -> Detector:
    return Detector(model=ModelSlot())


async def fill(path: Path, n: int, accounts: int) -> None:
    store = SqliteStore(path)
    await store.start(_ignore)
    started = time.perf_counter()
    stream = generate(n, accounts, seed=1)
    for i in range(0, n, FILL_BATCH):
        await store.write_batch([_record(tx) for tx in stream[i : i + FILL_BATCH]])
    await store.close()
    print(f"stored {n:,} transactions in {time.perf_counter() - started:.0f} s")


def _record(tx: Transaction) -> StoredRecord:
    """As the loop stores one that raised no alert: a verdict and the model's inputs."""
    verdict = Verdict(
        transaction_id=tx.id,
        score=0.001,
        decision="allow",
        reasons=[],
        alert_id=None,
        rules_version="rules-3",
        latency_ms=0.5,
    )
    return StoredRecord(tx, verdict, "low", None, (RAW_LAYOUT, bytes(INPUTS_BYTES)))


async def rebuild(path: Path, n: int) -> None:
    store = SqliteStore(path)
    await store.start(_ignore)
    try:
        det = _detector()
        started = time.perf_counter()
        done = await replay_stored(det, store, Progress(), None, max_rows=n)
        seconds = time.perf_counter() - started
    finally:
        await store.close()
    assert done is not None
    print(
        f"rebuild: {done.read:,} rows in {seconds:.1f} s, {done.read / seconds:,.0f} rows/s; "
        f"{sum(det.featurizer.size().values()):,} keys; peak RSS {_peak_mib():,.0f} MiB"
    )


async def crash(path: Path, n: int, after: int) -> None:
    """Score the first n - after through the store's own order, snapshot, replay the rest."""
    store = SqliteStore(path)
    await store.start(_ignore)
    try:
        det, progress = _detector(), Progress()
        started = time.perf_counter()
        position, split, tx = 0, n - after, None  # a filled file's rowids are 1..n
        while chunk := await store.transactions_after(position, split, 5000):
            for row in chunk:
                tx = _decode(row.transaction)
                det.relearn(tx, tx.timestamp.timestamp())
            position = chunk[-1].position
        assert tx is not None
        progress.through(tx.id)  # the loop's marks, once the last of them was stored
        data = encode(det.featurizer, det.model, progress)
        print(
            f"crash: state of {split:,} transactions in {time.perf_counter() - started:.1f} s,"
            f" snapshot {len(data) / 2**20:,.1f} MiB"
        )
        del det
        fresh = _detector()
        started = time.perf_counter()
        restored = restore(fresh.featurizer, data, fresh.model)
        restored_s = time.perf_counter() - started
        done = await replay_stored(fresh, store, Progress(), restored, max_rows=n)
        seconds = time.perf_counter() - started
    finally:
        await store.close()
    assert done is not None
    print(
        f"crash: restore {restored_s:.1f} s, then {done.read:,} rows replayed in "
        f"{done.seconds:.1f} s ({done.read / done.seconds:,.0f} rows/s); {seconds:.1f} s in all;"
        f" peak RSS {_peak_mib():,.0f} MiB"
    )


LABEL_REQUEST = 500


def _labels(stream: list[Transaction], start: int, count: int, fraud_every: int) -> list[Label]:
    """`count` labels from the `start`th transaction on (wrapping round: a second pass is a
    correction, as the verdict flips), each known a day after its transaction."""
    out = []
    for i in range(start, start + count):
        tx = stream[i % len(stream)]
        at = tx.timestamp.timestamp() + 86400 + i
        out.append(
            Label(
                transaction_id=tx.id,
                label="fraud" if (i % fraud_every == 0) != (i >= len(stream)) else "legitimate",
                source="api:bench",
                labelled_at=utc_stamp(at),
            )
        )
    return out


async def _store_labels(store: SqliteStore, labels: list[Label]) -> None:
    for i in range(0, len(labels), LABEL_REQUEST):
        await store.add_labels(labels[i : i + LABEL_REQUEST])


async def labels(path: Path, n: int, accounts: int, before: int, after: int) -> None:
    """Scored state and `before` label changes in a snapshot; `after` stored after it."""
    store = SqliteStore(path)
    await store.start(_ignore)
    try:
        det, progress = _detector(), Progress()
        stream = generate(n, accounts, seed=1)
        for tx in stream:
            det.relearn(tx, tx.timestamp.timestamp())
        progress.through(stream[-1].id)
        changes = LabelChanges(det.featurizer, store, progress)
        first = await store.last_label_change()
        await _store_labels(store, _labels(stream, first, before, 20))
        await changes.catch_up()
        data = encode(det.featurizer, det.model, progress)
        started = time.perf_counter()
        # New labels, then corrections of the earliest once every transaction has one.
        await _store_labels(store, _labels(stream, first + before, after, 20))
        print(
            f"labels: {before:,} label changes in the snapshot ({len(data) / 2**20:,.1f} MiB), "
            f"{after:,} stored after it in {time.perf_counter() - started:.1f} s"
        )
        fresh = _detector()
        started = time.perf_counter()
        restored = restore(fresh.featurizer, data, fresh.model)
        restored_s = time.perf_counter() - started
        started = time.perf_counter()
        replaying = LabelChanges(fresh.featurizer, store, Progress())
        await replaying.start(restored)
        seconds = time.perf_counter() - started
        await changes.catch_up()
    finally:
        await store.close()
    exact = det.featurizer.amounts == fresh.featurizer.amounts and all(
        state.labels == fresh.featurizer.merchants[key].labels
        for key, state in det.featurizer.merchants.items()
        if state.labels is not None
    )
    print(
        f"labels: restore {restored_s:.1f} s, then {after:,} label changes replayed in "
        f"{seconds:.2f} s ({after / seconds:,.0f} a second); as the running state: {exact}; "
        f"peak RSS {_peak_mib():,.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=("rebuild", "crash", "labels"))
    parser.add_argument("--transactions", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument(
        "--after", type=int, default=600_000, help="crash: rows after it; labels: changes"
    )
    parser.add_argument("--labels-before", type=int, default=100_000, help="labels: in it")
    parser.add_argument("--db", type=Path, help="database to use (filled if missing) and keep")
    args = parser.parse_args()
    print(
        f"python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {platform.machine()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or Path(tmp) / "replay.db"
        if not path.exists():
            asyncio.run(fill(path, args.transactions, args.accounts))
        if args.mode == "rebuild":
            asyncio.run(rebuild(path, args.transactions))
        elif args.mode == "labels":
            run = labels(path, args.transactions, args.accounts, args.labels_before, args.after)
            asyncio.run(run)
        else:
            asyncio.run(crash(path, args.transactions, args.after))


if __name__ == "__main__":
    main()
