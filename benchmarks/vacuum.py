"""Retention giving pages back: how long one `release_free_pages` step holds the writer.

Stores N transactions shaped like the detection loop's (benchmarks/store.py's records),
makes all of them older than retention, prunes them with the store's own pruning, then
gives the freed pages back in steps of --step pages, as the retention pass does, timing
each step. Prints the file's size before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sqlite3
import statistics
import tempfile
import time
from contextlib import closing
from pathlib import Path

from store import generate

from server.store.base import AlertEvent
from server.store.sqlite import PRUNE_CHUNK, VACUUM_STEP_PAGES, SqliteStore


def _ignore(_events: list[AlertEvent]) -> None:
    pass


def _pages(path: Path) -> tuple[int, int]:
    with closing(sqlite3.connect(path)) as conn:
        (count,) = conn.execute("PRAGMA page_count").fetchone()
        (free,) = conn.execute("PRAGMA freelist_count").fetchone()
    return int(count), int(free)


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


async def run(path: Path, n: int, alert_rate: float, step: int, chunk: int) -> None:
    store = SqliteStore(path)
    await store.start(_ignore)
    records = generate(n, alert_rate, seed=7)
    for i in range(0, n, 1000):
        await store.write_batch(records[i : i + 1000])
    alerts = sum(r.verdict.alert_id is not None for r in records)
    await store.close()
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("UPDATE transactions SET received_at = '2000-01-01T00:00:00.000Z'")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size_before = _size(path)

    store = SqliteStore(path)
    await store.start(_ignore)
    started = time.perf_counter()
    deleted = await store.prune_transactions("2001-01-01T00:00:00.000Z", chunk)
    prune_s = time.perf_counter() - started
    commits = -(-n // chunk)
    wal_after_prune = _size(path.with_name(path.name + "-wal"))
    pages, free = _pages(path)
    steps: list[float] = []
    wal_peak = 0
    released = 0
    started = time.perf_counter()
    while True:
        t = time.perf_counter()
        freed = await store.release_free_pages(step)
        steps.append((time.perf_counter() - t) * 1000)
        wal_peak = max(wal_peak, _size(path.with_name(path.name + "-wal")))
        if freed is None:
            raise SystemExit("the file was created without incremental auto-vacuum")
        released += freed.released
        if not freed.left or not freed.released:
            break
    release_s = time.perf_counter() - started
    await asyncio.sleep(2.5)  # two checkpoints, then a commit that may cut the WAL
    await store.write_batch(generate(10, 0.0, seed=8))
    wal_settled = _size(path.with_name(path.name + "-wal"))
    await store.close()
    pages_after, free_after = _pages(path)

    print(
        f"python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {platform.machine()}"
    )
    print(f"{n:,} transactions ({alerts:,} with alerts), file {_mib(size_before)}")
    print(
        f"pruned {deleted:,} in {prune_s:.1f} s ({commits:,} commits of {chunk:,} rowids, "
        f"{prune_s / commits * 1000:.0f} ms each on average): {free:,} of {pages:,} pages free, "
        f"WAL {_mib(wal_after_prune)}"
    )
    print(
        f"released {released:,} pages in {len(steps)} steps of {step:,} in {release_s:.1f} s; "
        f"ms per step: median {statistics.median(steps):.1f}, max {max(steps):.1f}"
    )
    print(
        f"WAL at most {_mib(wal_peak)} while releasing (checkpointed every second), "
        f"{_mib(wal_settled)} after"
    )
    print(
        f"file {_mib(size_before)} -> {_mib(_size(path))} "
        f"({pages_after:,} pages, {free_after:,} free)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--transactions", type=int, default=100_000)
    parser.add_argument("--alert-rate", type=float, default=0.03)
    parser.add_argument("--step", type=int, default=VACUUM_STEP_PAGES, help="pages a step")
    parser.add_argument("--chunk", type=int, default=PRUNE_CHUNK, help="rowids a pruning commit")
    parser.add_argument("--dir", type=Path, help="where to put the database (default: tmp)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "vacuum.db"
        asyncio.run(run(path, args.transactions, args.alert_rate, args.step, args.chunk))


if __name__ == "__main__":
    main()
