"""What an alert costs the store's writer, one checkout against another: 1,000-record batches
through SqliteStore.write_batch at a few alerts in a hundred (the detection loop's) and at
every record an alert, CPU time of the whole process per batch, and the bytes on disk of
everything an alert writes (its row, its event, its reason codes, their indexes: dbstat).

Each run is a process of its own, the checkouts alternated (ABBA), so that PYTHONPATH picks
the store's code and a busy moment of this shared machine falls on both:

    PYTHONPATH=. .venv/bin/python benchmarks/store_alerts.py --before /tmp/base --after .

where /tmp/base is e.g. `git worktree add /tmp/base <commit>`. The records are the same in
every run (benchmarks/store.py's, with the detector's own model inputs).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


async def _one(rate: float, batches: int) -> dict[str, Any]:
    """One checkout's figures (in a child process: PYTHONPATH is that checkout)."""
    sys.path.insert(1, str(HERE))  # benchmarks/store.py, after the checkout measured
    from store import _ignore, captured_inputs, generate

    from server.store.sqlite import SqliteStore

    records = generate(batches * 1000, rate, seed=7, inputs=captured_inputs(2000, seed=7))
    alerts = sum(r.verdict.alert_id is not None for r in records)
    gc.collect()
    gc.freeze()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store.db"
        store = SqliteStore(path)
        await store.start(_ignore)
        await store.write_batch(generate(1000, rate, seed=99))  # statements, pages
        cpu = time.process_time()
        for i in range(0, len(records), 1000):
            await store.write_batch(records[i : i + 1000])
        cpu = time.process_time() - cpu
        await store.close()
        with sqlite3.connect(path) as conn:
            sizes = dict(conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"))
            (stored_alerts,) = conn.execute("SELECT count(*) FROM alerts").fetchone()
        file_bytes = sum(p.stat().st_size for p in path.parent.glob("store.db*"))
    alert_objects = ("alerts", "alert_reasons", "events", "sqlite_autoindex_alerts_1")
    alert_bytes = sum(size for name, size in sizes.items() if name.startswith(alert_objects))
    return {
        "rate": rate,
        "records": len(records),
        "alerts": alerts,
        "cpu_ms_per_batch": 1000 * cpu / batches,
        "file_bytes_per_record": file_bytes / (len(records) + 1000),
        "bytes_per_alert": alert_bytes / stored_alerts,
    }


def _child(args: argparse.Namespace) -> None:
    print(json.dumps(asyncio.run(_one(args.rate, args.batches))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="checkout measured first")
    parser.add_argument("--after", type=Path, default=HERE.parent)
    parser.add_argument("--repeat", type=int, default=6, help="runs of each checkout")
    parser.add_argument("--rates", default="0.03:60,1.0:20", help="alert rate:batches, ...")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--batches", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    if args.before is None:
        parser.error("--before is required")
    runs: list[tuple[str, dict[str, Any]]] = []
    for k in range(args.repeat):
        order = ("before", "after") if k % 2 == 0 else ("after", "before")
        for side in order:
            checkout = (args.before if side == "before" else args.after).resolve()
            for spec in args.rates.split(","):
                rate, batches = spec.split(":")
                argv = [sys.executable, __file__, "--child", "--rate", rate, "--batches", batches]
                env = {**os.environ, "PYTHONPATH": str(checkout)}
                out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
                runs.append((side, json.loads(out.stdout)))
                print(side, out.stdout.strip(), flush=True)
    for spec in args.rates.split(","):
        rate = float(spec.split(":")[0])
        print(f"alert rate {rate:g}: median [min-max] of {args.repeat} runs")
        for side in ("before", "after"):
            got = [r for s, r in runs if s == side and r["rate"] == rate]
            cpu = [r["cpu_ms_per_batch"] for r in got]
            per_s = [1e6 / c for c in cpu]  # records per CPU second
            alerts = got[0]["alerts"] / got[0]["records"]
            print(
                f"  {side:6} CPU {statistics.median(cpu):6.1f} ms a 1,000-record batch "
                f"[{min(cpu):.1f}-{max(cpu):.1f}]: {statistics.median(per_s):,.0f} records/s, "
                f"{alerts * statistics.median(per_s):,.0f} alerts/s; "
                f"{statistics.median(r['file_bytes_per_record'] for r in got):,.0f} bytes a "
                f"record, {statistics.median(r['bytes_per_alert'] for r in got):,.0f} an alert"
            )


if __name__ == "__main__":
    main()
