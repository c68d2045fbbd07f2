"""`fraudwatch backup` against a store being written: what one step costs, and the writer.

Stores N transactions shaped like the detection loop's (benchmarks/store.py's records) with
the real `SqliteStore` (writer thread, checkpoints every second), then keeps writing
batches of --batch every 10 ms, as the detection loop does under a steady feed, timing
each commit. After a few seconds of that alone, `server.backup` copies the file from
another process, as `fraudwatch backup` does, timing each step; the commits go on
meanwhile. Prints the steps, the commits' latency before and during the copy, and the WAL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from store import generate

from server.backup import STEP_PAGES, backup_database
from server.store.base import AlertEvent, StoredRecord
from server.store.sqlite import SqliteStore

INTERVAL_S = 0.010


def _ignore(_events: list[AlertEvent]) -> None:
    pass


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (
        f"median {statistics.median(ordered) * 1000:.1f}, p99 {p99 * 1000:.1f}, "
        f"max {ordered[-1] * 1000:.1f} ms ({len(ordered):,} commits)"
    )


def child(source: Path, target: Path, step: int) -> None:
    """In its own process: back up `source`, print each step's duration as JSON."""
    times: list[float] = []
    last = time.perf_counter()

    def on_step(_left: int, _pages: int) -> None:
        nonlocal last
        now = time.perf_counter()
        times.append(now - last)
        last = now

    started = time.perf_counter()
    copy = backup_database(source, target, step_pages=step, on_step=on_step)
    print(
        json.dumps(
            {
                "steps": times,
                "pages": copy.pages,
                "size": copy.size,
                "seconds": time.perf_counter() - started,
                "check": copy.check,
            }
        )
    )


async def _feed(
    store: SqliteStore, records: list[StoredRecord], batch: int, latencies: list[float]
) -> None:
    at = 0
    while at < len(records):
        started = time.perf_counter()
        await store.write_batch(records[at : at + batch])
        latencies.append(time.perf_counter() - started)
        at += batch
        await asyncio.sleep(max(0.0, INTERVAL_S - (time.perf_counter() - started)))


async def run(path: Path, n: int, batch: int, step: int, alone_s: float) -> None:
    store = SqliteStore(path)
    await store.start(_ignore)
    records = generate(n, 0.03, seed=7)
    for at in range(0, n, 1000):
        await store.write_batch(records[at : at + 1000])
    del records
    await asyncio.sleep(1.5)  # a checkpoint: the file holds them, the WAL is small
    feed = generate(int((alone_s + 30) / INTERVAL_S) * batch, 0.03, seed=8)
    latencies: list[float] = []
    feeding = asyncio.create_task(_feed(store, feed, batch, latencies))
    await asyncio.sleep(alone_s)
    before = list(latencies)
    wal = path.with_name(path.name + "-wal")
    wal_before = wal.stat().st_size if wal.exists() else 0
    target = path.with_name("copy.db")
    command = [sys.executable, __file__, "--child", str(path), str(target), "--step", str(step)]
    proc = await asyncio.create_subprocess_exec(*command, stdout=subprocess.PIPE)
    wal_peak = wal_before
    mark = len(latencies)
    while proc.returncode is None:
        wal_peak = max(wal_peak, wal.stat().st_size if wal.exists() else 0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 0.05)
    out, _ = await proc.communicate()
    during = latencies[mark:]
    feeding.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await feeding
    await store.close()
    result = json.loads(out)
    steps: list[float] = result["steps"]
    print(
        f"python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {platform.machine()}"
    )
    print(
        f"{n:,} transactions stored, then {batch} a commit every {INTERVAL_S * 1000:.0f} ms "
        f"({batch / INTERVAL_S:,.0f} tx/s offered)"
    )
    print(
        f"backup: {result['pages']:,} pages ({_mib(result['size'])}) in {len(steps)} steps of "
        f"{step} in {result['seconds']:.2f} s, integrity_check {result['check']}"
    )
    middle = steps[1:-1] or steps
    print(
        f"  steps: the first {steps[0] * 1000:.1f} ms (it opens the copy), then median "
        f"{statistics.median(middle) * 1000:.1f} ms, max {max(middle) * 1000:.1f} ms; the last "
        f"{steps[-1] * 1000:.1f} ms (it commits and syncs the copy); all {sum(steps):.2f} s, "
        "the rest is the check of the copy"
    )
    print(f"writer commits alone:       {_ms(before)}")
    print(f"writer commits during copy: {_ms(during)}")
    print(f"WAL {_mib(wal_before)} before the copy, at most {_mib(wal_peak)} during it")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--transactions", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=20, help="records a commit (every 10 ms)")
    parser.add_argument("--step", type=int, default=STEP_PAGES, help="pages a backup step")
    parser.add_argument("--alone", type=float, default=5.0, help="seconds of commits first")
    parser.add_argument("--dir", type=Path, help="where to put the database (default: tmp)")
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.step)
        return
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "fraudwatch.db"
        asyncio.run(run(path, args.transactions, args.batch, args.step, args.alone))


if __name__ == "__main__":
    main()
