"""The WAL under a steady stream of batch commits: its size every 5 s, and what the writer's
checkpoints cost the batch commits.

Writes benchmarks/store.py's records through a real `SqliteStore`, `--batch` transactions a
commit with a 10 ms pause between commits (the detection loop's rhythm under a steady
feed), for `--seconds`. Before the writer ran checkpoints of its own (`Writer.checkpoint`),
the WAL grew without end here (800 MiB in 40 s at ~1,700 transactions a second); it should
now stay near `WAL_RESTART_BYTES`.

    PYTHONPATH=. .venv/bin/python benchmarks/wal.py [--seconds 30] [--batch 20] [--dir D]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sqlite3
import tempfile
import time
from pathlib import Path

from store import generate

from server.store.base import AlertEvent
from server.store.sqlite import SqliteStore
from server.store.sqlite_writer import WAL_RESTART_BYTES


def _ignore(_events: list[AlertEvent]) -> None:
    pass


def _mib(path: Path) -> float:
    return path.stat().st_size / 2**20 if path.exists() else 0.0


async def run(path: Path, seconds: float, batch: int) -> None:
    store = SqliteStore(path)
    await store.start(_ignore)
    wal = path.with_name(path.name + "-wal")
    records = generate(int(seconds * 4_000), 0.03, seed=1)
    written, commits, report = 0, [], 5.0
    print(
        f"python {platform.python_version()}, SQLite {sqlite3.sqlite_version}; {batch} a commit, "
        f"WAL restart bound {WAL_RESTART_BYTES / 2**20:.0f} MiB"
    )
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds and written < len(records):
        t = time.perf_counter()
        await store.write_batch(records[written : written + batch])
        commits.append((time.perf_counter() - t) * 1000)
        written += batch
        if written % (batch * 10) == 0:
            await store.last_seq()  # a reader, as the dashboard's queries are
        await asyncio.sleep(0.01)
        if elapsed >= report:
            print(f"  {report:4.0f} s: {written:,} tx written, WAL {_mib(wal):6.1f} MiB, "
                  f"database {_mib(path):6.1f} MiB")  # fmt: skip
            report += 5.0
    restarts = store.wal_restarts
    await store.close()
    commits.sort()
    n = len(commits)
    print(
        f"{written / seconds:,.0f} tx/s; commit ms p50 {commits[n // 2]:.1f}, p99 "
        f"{commits[int(n * 0.99)]:.1f}, p99.9 {commits[int(n * 0.999)]:.1f}, max "
        f"{commits[-1]:.1f}; checkpoints on the writer that let the WAL start over: {restarts}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--batch", type=int, default=20, help="transactions a commit")
    parser.add_argument("--dir", type=Path, help="where to put the database (default: tmp)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        asyncio.run(run(Path(tmp) / "wal.db", args.seconds, args.batch))


if __name__ == "__main__":
    main()
