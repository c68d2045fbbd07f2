"""SqliteStore write throughput: 1000-record batches against one commit per record, same run;
and the reads the API, the WebSocket resume and the labels path make, on the batched file."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import platform
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Sequence
from decimal import Decimal
from pathlib import Path

from server.detection.detector import Detector
from server.detection.model import RAW_LAYOUT, ModelSlot
from server.detection.verdict import Reason, Severity, Verdict
from server.store.base import AlertEvent, Label, StoredRecord
from server.store.sqlite import SqliteStore
from server.transactions import Transaction
from simulator import Simulator

START = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
INPUTS_BYTES = 122
SEVERITIES: tuple[Severity, ...] = ("medium", "high", "critical")


def captured_inputs(n: int, seed: int) -> list[bytes]:
    """What the detector keeps of `n` simulated transactions for the model (mostly zero
    bytes, which the store deflates): the inputs records carry, in turn."""
    detector = Detector(model=ModelSlot())
    kept = []
    for item in Simulator(seed=seed, rate=376.0, start=START).generate(n):
        detector.score(item.transaction)
        inputs = detector.kept_inputs(item.transaction.id)
        assert inputs is not None
        kept.append(inputs[1])
    return kept


def generate(
    n: int, alert_rate: float, seed: int, inputs: Sequence[bytes] = ()
) -> list[StoredRecord]:
    """Records shaped like the detection loop's: full transactions, random ids, a few alerts;
    the model's inputs taken in turn from `inputs`, or random bytes (which deflate cannot
    shorten: the store's worst case) if there are none."""
    rng = random.Random(seed)
    records = []
    for k in range(n):
        tx = Transaction(
            id=f"tx-{rng.getrandbits(64):016x}",
            timestamp=START + dt.timedelta(milliseconds=50 * k),
            account_id=f"acct-{rng.randrange(50_000):06d}",
            merchant_id=f"m-{rng.randrange(5000):04d}",
            amount=Decimal(f"{rng.lognormvariate(3.5, 0.8):.2f}"),
            currency="USD",
            merchant_name="Corner Shop",
            mcc="5411",
            country="US",
            lat=40.71 + rng.uniform(-0.1, 0.1),
            lon=-74.01 + rng.uniform(-0.1, 0.1),
            channel="card_present",
            device_id=f"dev-{rng.randrange(50_000):06d}",
            ip=f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}",
        )
        alert = rng.random() < alert_rate
        reasons = (
            [
                Reason("velocity", "7 payments in 10 minutes", 7.0, 5.0, 0.35),
                Reason("amount_zscore", "amount 6.1 sd above the account's mean", 6.1, 4.0, 0.3),
            ]
            if alert
            else []
        )
        verdict = Verdict(
            transaction_id=tx.id,
            score=0.82 if alert else round(rng.uniform(0, 0.3), 3),
            decision="review" if alert else "allow",
            reasons=reasons,
            alert_id=f"al-{rng.getrandbits(64):016x}" if alert else None,
            rules_version="2026.03.1",
            latency_ms=1.5,
        )
        kept = inputs[k % len(inputs)] if inputs else rng.randbytes(INPUTS_BYTES)
        severity = rng.choice(SEVERITIES) if alert else "low"
        records.append(StoredRecord(tx, verdict, severity, None, (RAW_LAYOUT, kept)))
    return records


def _ignore(_events: list[AlertEvent]) -> None:
    pass


async def _loop_lag(stop: asyncio.Event, lags: list[float]) -> None:
    """How late a 1 ms sleep wakes up: the time the loop could not run anything else."""
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append((time.perf_counter() - start) * 1000 - 1.0)


async def batched(
    path: Path, records: list[StoredRecord], size: int
) -> tuple[list[float], list[float], float]:
    store = SqliteStore(path)
    await store.start(_ignore)
    await store.write_batch(generate(size, 0.03, seed=99))  # warm-up: statements, pages
    stop = asyncio.Event()
    lags: list[float] = []
    ticker = asyncio.create_task(_loop_lag(stop, lags))
    times = []
    cpu = time.process_time()
    for i in range(0, len(records), size):
        start = time.perf_counter()
        await store.write_batch(records[i : i + size])
        times.append((time.perf_counter() - start) * 1000)
    cpu = time.process_time() - cpu
    stop.set()
    await ticker
    await store.close()
    return times, lags, cpu


async def one_per_commit(path: Path, records: list[StoredRecord]) -> float:
    """The same records through the same store, one transaction (and commit) each."""
    store = SqliteStore(path)
    await store.start(_ignore)
    await store.write_batch(generate(10, 0.03, seed=99))
    start = time.perf_counter()
    for record in records:
        await store.write_batch([record])
    elapsed = time.perf_counter() - start
    await store.close()
    return elapsed


async def known_verdicts(path: Path, records: list[StoredRecord], size: int) -> list[float]:
    store = SqliteStore(path)
    await store.start(_ignore)
    times = []
    for i in range(0, min(len(records), 20 * size), size):
        ids = [r.transaction.id for r in records[i : i + size]]
        start = time.perf_counter()
        await store.known_verdicts(ids)
        times.append((time.perf_counter() - start) * 1000)
    await store.close()
    return times


READS = ("list_alerts", "events_since", "account_transactions", "known_transactions",
         "model_inputs", "recent_labels")  # fmt: skip


async def reads(path: Path, records: list[StoredRecord], rounds: int) -> dict[str, list[float]]:
    """ms per call of the store's bulk reads, `rounds` calls each, taking turns so that a
    busy moment of the machine falls on all of them: a page of 100 alerts (the first ten
    pages, by cursor), 1,000 events from seq 0, an account's 50 latest transactions, the
    stored rows and model inputs of 1,000 ids, and the 20,000 labels stored last."""
    store = SqliteStore(path)
    await store.start(_ignore)
    labelled = records[:20_000]
    for i in range(0, len(labelled), 1000):
        await store.add_labels(
            [
                Label(
                    transaction_id=r.transaction.id,
                    label="fraud" if r.verdict.alert_id else "legitimate",
                    source="bench",
                    labelled_at="2026-03-09T10:00:00Z",
                )
                for r in labelled[i : i + 1000]
            ]
        )
    rng = random.Random(3)
    times: dict[str, list[float]] = {name: [] for name in READS}
    cursors: list[str | None] = [None]
    for k in range(rounds):
        ids = [r.transaction.id for r in rng.sample(records, 1000)]
        account = rng.choice(records).transaction.account_id
        calls: dict[str, Awaitable[object]] = {
            "list_alerts": store.list_alerts(None, 100, cursors[k % len(cursors)]),
            "events_since": store.events_since(0, 1000),
            "account_transactions": store.account_transactions(account, 50, None),
            "known_transactions": store.known_transactions(ids),
            "model_inputs": store.model_inputs(ids),
            "recent_labels": store.recent_labels(20_000),
        }
        for name in READS:
            start = time.perf_counter()
            answer = await calls[name]
            times[name].append((time.perf_counter() - start) * 1000)
            if name == "list_alerts" and len(cursors) < 10:
                cursors.append(answer.next_cursor)  # type: ignore[attr-defined]
    await store.close()
    return times


def _db_bytes(path: Path) -> int:
    """The database file and whatever its WAL still holds (closed: checkpointed away)."""
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--alert-rate", type=float, default=0.03)
    parser.add_argument("--baseline", type=int, default=3000, help="records for the baseline")
    parser.add_argument("--dir", type=Path, help="where to put the databases (default: a tmp dir)")
    parser.add_argument("--read-rounds", type=int, default=30, help="calls of each read")
    parser.add_argument(
        "--inputs",
        choices=("captured", "random"),
        default="captured",
        help="the model inputs records carry: the detector's, or random bytes (worst case)",
    )
    args = parser.parse_args()
    size = args.batch_size
    kept = captured_inputs(2000, seed=7) if args.inputs == "captured" else []
    records = generate(args.batches * size, args.alert_rate, seed=7, inputs=kept)
    # The server never holds this many records at once; without freezing them, the cyclic GC
    # would walk them all, and its pauses would be charged to the store.
    gc.freeze()
    alerts = sum(r.verdict.alert_id is not None for r in records)

    # The same records without the model's inputs (a server with the model off), in turns
    # with the full ones, to show what keeping the inputs costs per batch and per row.
    plain = [r._replace(model_inputs=None) for r in records]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        times, lags, cpu_s = await batched(Path(tmp) / "batched.db", records, size)
        plain_times, _, plain_cpu_s = await batched(Path(tmp) / "plain.db", plain, size)
        lookups = await known_verdicts(Path(tmp) / "batched.db", records, size)
        read_times = await reads(Path(tmp) / "batched.db", records, args.read_rounds)
        baseline_s = await one_per_commit(Path(tmp) / "baseline.db", records[: args.baseline])
        sizes = {name: _db_bytes(Path(tmp) / name) for name in ("batched.db", "plain.db")}

    total_s = sum(times) / 1000
    batched_rate = len(records) / total_s
    baseline_rate = args.baseline / baseline_s
    print(
        f"python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {platform.machine()}"
        f"; model inputs: {args.inputs}"
    )
    print(
        f"batched: {len(records)} records in {len(times)} batches of {size} "
        f"({alerts} alerts, {alerts / len(records):.1%})"
    )
    print(f"  {batched_rate:,.0f} records/s")
    print(
        f"  ms per {size}-record batch: mean {statistics.fmean(times):.2f}, "
        f"median {statistics.median(times):.2f}, p90 {_pct(times, 0.9):.2f}, max {max(times):.2f}"
    )
    # CPU time of the whole process (all threads): less sensitive to a busy machine than wall
    # time, though the loop-lag ticker adds a little.
    print(f"  CPU per batch: {1000 * cpu_s / len(times):.2f} ms")
    print(
        f"  event loop late by: median {statistics.median(lags):.2f} ms, "
        f"p99 {_pct(lags, 0.99):.2f} ms, max {max(lags):.2f} ms"
    )
    print(
        f"  known_verdicts({size} ids): median {statistics.median(lookups):.2f} ms, "
        f"max {max(lookups):.2f} ms"
    )
    print(
        f"without model inputs: ms per batch median {statistics.median(plain_times):.2f}, "
        f"CPU per batch {1000 * plain_cpu_s / len(plain_times):.2f} ms; with them "
        f"{statistics.median(times) / statistics.median(plain_times):.2f}x the time, "
        f"{cpu_s / plain_cpu_s:.2f}x the CPU"
    )
    n = len(records) + size  # and the warm-up batch
    print(
        f"  database bytes per record: {sizes['batched.db'] / n:.0f} with the inputs, "
        f"{sizes['plain.db'] / n:.0f} without"
    )
    print(f"reads on the batched file, {args.read_rounds} calls each: ms median, p90")
    for name, values in read_times.items():
        print(f"  {name:<22} {statistics.median(values):7.2f} {_pct(values, 0.9):7.2f}")
    print(f"baseline: {args.baseline} records, one commit each")
    print(f"  {baseline_rate:,.0f} records/s = {1000 * size / baseline_rate:.1f} ms per {size}")
    print(f"ratio: batched is {batched_rate / baseline_rate:.1f}x the baseline")


if __name__ == "__main__":
    asyncio.run(main())
