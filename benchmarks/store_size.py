"""Where the SQLite file's bytes go: the demo's stream through the real detection loop and
store, then bytes per transaction for every table and index (SQLite's `dbstat`).

The simulator's transactions are scored by the detection loop (`DetectionLoop.process`, with
the model and its trainer as the server wires them) and stored by `SqliteStore`; the ground
truth comes back as labels `--label-delay` of event time later, through `apply_labels`, as
the demo's `simulator_labels` hands them out: every transaction gets a label and a label
change (which a server prunes at each detector snapshot; this takes none). The baseline, in
the same run, is the transactions' own JSON as stored (what the clients sent, which the API
gives back byte for byte): the file as a multiple of it. `--compare` puts an earlier run's
figures (another commit's, same arguments) beside these. See docs/operations.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import platform
import sqlite3
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

from results_file import commit, write_results

from server.detection.detector import Detector
from server.detection.model import ModelSlot
from server.detection.snapshot import Progress
from server.feeds.simulator import truth_labels
from server.hub import Hub
from server.label_changes import LabelChanges
from server.learning import Trainer, apply_labels
from server.pipeline import DetectionLoop, Submission, TxQueue
from server.stats import Stats
from server.store.base import AlertEvent
from server.store.sqlite import SqliteStore
from simulator import Labeled, Simulator

# What the rows of a table hold, per column: the bytes of its text and blobs (numbers take
# 0-8 bytes each, and are left out): which column of a table is worth shrinking.
_COLUMN_BYTES = "coalesce(sum(CASE WHEN typeof({c}) IN ('text', 'blob') THEN length({c}) END), 0)"
START = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)
_TABLE_COLUMNS = ("transactions", "alerts", "events", "labels", "label_changes")


def _ignore(_events: list[AlertEvent]) -> None:
    pass


async def fill(
    path: Path, items: list[Labeled], batch: int, label_delay_s: float
) -> dict[str, Any]:
    """Score and store `items` `batch` at a time; label each `label_delay_s` of event time
    after it. Returns counts and the wall time spent."""
    stats = Stats()
    store = SqliteStore(path)
    await store.start(_ignore)
    slot = ModelSlot()
    trainer = Trainer(slot, None)
    await trainer.start()
    detector = Detector(model=slot)
    changes = LabelChanges(detector.featurizer, store, Progress())
    loop = DetectionLoop(
        TxQueue(10_000), detector, store, Hub(stats, 1000), stats, batch_max=batch, batch_wait=0
    )
    pending: deque[Labeled] = deque()
    labelled = 0
    start = time.perf_counter()
    for i in range(0, len(items), batch):
        chunk = items[i : i + batch]
        await loop.process([Submission([item.transaction for item in chunk])])
        pending.extend(chunk)
        now = chunk[-1].transaction.timestamp.timestamp()
        due: list[Labeled] = []
        while pending and pending[0].transaction.timestamp.timestamp() <= now - label_delay_s:
            due.append(pending.popleft())
        if due:
            labelled += len(due)
            await apply_labels(
                store,
                trainer,
                None,
                truth_labels(due, due[-1].transaction.timestamp),
                changes,
                stats,
            )
    await trainer.idle.wait()
    elapsed = time.perf_counter() - start
    await trainer.close()
    await store.close()
    return {
        "transactions": len(items),
        "labels": labelled,
        "model_active": slot.predictor is not None,
        "fill_s": round(elapsed, 1),
    }


def measure(path: Path) -> dict[str, Any]:
    """Pages and payload per table and index (`dbstat`), the file, and column sums."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        (page_size,) = conn.execute("PRAGMA page_size").fetchone()
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        (free,) = conn.execute("PRAGMA freelist_count").fetchone()
        kinds = dict(conn.execute("SELECT name, type FROM sqlite_master"))
        objects = {
            name: {"kind": kinds.get(name, "table"), "bytes": size, "payload": payload, "cells": n}
            for name, size, payload, n in conn.execute(
                "SELECT name, sum(pgsize), sum(payload), "
                "sum(CASE WHEN pagetype = 'leaf' THEN ncell ELSE 0 END) "
                "FROM dbstat GROUP BY name ORDER BY sum(pgsize) DESC"
            )
        }
        columns: dict[str, dict[str, int]] = {}
        for table in _TABLE_COLUMNS:
            names = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
            sums = ", ".join(_COLUMN_BYTES.format(c=name) for name in names)
            values = conn.execute(f"SELECT {sums} FROM {table}").fetchone()
            columns[table] = dict(zip(names, values, strict=True))
        (tx_json,) = conn.execute(
            "SELECT coalesce(sum(length(transaction_json)), 0) FROM transactions"
        ).fetchone()
    finally:
        conn.close()
    return {
        "file_bytes": path.stat().st_size,
        "page_size": page_size,
        "pages": pages,
        "free_pages": free,
        "objects": objects,
        "columns": columns,
        "transaction_json_bytes": tx_json,
    }


def report(figures: dict[str, Any], before: dict[str, Any] | None) -> None:
    n = figures["fill"]["transactions"]
    size = figures["size"]
    was = None if before is None else before["size"]
    was_n = None if before is None else before["fill"]["transactions"]

    def per_tx(value: float, old: float | None = None) -> str:
        text = f"{value / n:8.1f}"
        if old is not None and was_n:
            old_per = old / was_n
            text += f"  {old_per:8.1f}  {value / n / old_per if old_per else 0:5.2f}x"
        return text

    print(
        f"python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{platform.machine()}, commit {figures['commit']}"
    )
    fill = figures["fill"]
    print(
        f"{n:,} transactions, {fill['labels']:,} labels, {fill['alerts']:,} alerts; "
        f"filled in {fill['fill_s']} s ({n / fill['fill_s']:,.0f} tx/s); "
        f"model in use by the end: {fill['model_active']}"
    )
    head = "bytes/tx" + ("    before  after/before" if was else "")
    print(f"\n{'table or index':<32} {'kind':<6} {head}")
    now_objects = size["objects"]
    was_objects = {} if was is None else was["objects"]
    rest, rest_was = 0, 0
    for name in [*now_objects, *(name for name in was_objects if name not in now_objects)]:
        obj = now_objects.get(name) or {"kind": was_objects[name]["kind"], "bytes": 0}
        old = None if was is None else was_objects.get(name, {}).get("bytes", 0)
        # The tables of users, keys and sessions, alerts' indexes: a page or two each here.
        if obj["bytes"] < n and (old is None or old < was_n):
            rest, rest_was = rest + obj["bytes"], rest_was + (old or 0)
            continue
        print(f"{name:<32} {obj['kind']:<6} {per_tx(obj['bytes'], old)}")
    print(f"{'(the rest, < 1 byte/tx each)':<32} {'':<6} {per_tx(rest, rest_was if was else None)}")
    old_file = None if was is None else was["file_bytes"]
    print(f"{'file':<32} {'':<6} {per_tx(size['file_bytes'], old_file)}")
    print(
        f"  {size['pages']:,} pages of {size['page_size']}, {size['free_pages']} free; "
        f"{size['file_bytes'] / 2**20:.1f} MiB"
    )
    print("\nwhat the rows hold, bytes/tx per text or blob column (no record overhead):")
    for table, cols in size["columns"].items():
        old_cols = None if was is None else was["columns"].get(table, {})
        parts = []
        for name, value in cols.items():
            if not value and not (old_cols or {}).get(name):
                continue
            text = f"{name} {value / n:.1f}"
            if old_cols is not None and name in old_cols and was_n:
                text += f" (was {old_cols[name] / was_n:.1f})"
            parts.append(text)
        print(f"  {table}: " + ", ".join(parts))
    raw = size["transaction_json_bytes"] / n
    print(
        f"\nbaseline: the transactions' JSON alone, {raw:.1f} bytes/tx; "
        f"the file is {size['file_bytes'] / size['transaction_json_bytes']:.2f}x that"
    )
    if was is not None:
        print(
            f"before ({before['commit']}): the file was "
            f"{was['file_bytes'] / was['transaction_json_bytes']:.2f}x its JSON; now "
            f"{size['file_bytes'] / n / (was['file_bytes'] / was_n):.2f}x the bytes/tx of before"
        )


def _count_alerts(path: Path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM alerts").fetchone()[0])
    finally:
        conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--transactions", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--rate", type=float, default=376.0, help="event-time tx/s: sizes the population"
    )
    parser.add_argument(
        "--batch", type=int, default=38, help="transactions a batch (the demo's 0.1 s tick)"
    )
    parser.add_argument("--label-delay", type=float, default=30.0, help="event-time seconds")
    parser.add_argument("--compare", type=Path, help="an earlier run's results file: before")
    parser.add_argument("--dir", type=Path, help="where to put the database (default: a tmp dir)")
    parser.add_argument("--keep", type=Path, help="copy the database here")
    args = parser.parse_args()
    sim = Simulator(seed=args.seed, rate=args.rate, start=START)
    items = sim.generate(args.transactions)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "fraudwatch.db"
        fill_figures = await fill(path, items, args.batch, args.label_delay)
        fill_figures["alerts"] = _count_alerts(path)
        figures: dict[str, Any] = {
            "commit": commit(),
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "fill": fill_figures,
            "size": measure(path),
        }
        if args.keep is not None:
            args.keep.write_bytes(path.read_bytes())
    before = None if args.compare is None else json.loads(args.compare.read_text())
    if before is not None and before["args"]["transactions"] != args.transactions:
        # The schema's own pages weigh more per transaction in a smaller file.
        print(f"note: before stored {before['args']['transactions']:,} transactions, not the same")
    report(figures, before)
    print(f"\nfigures: {write_results('store-size', figures)}")


if __name__ == "__main__":
    asyncio.run(main())
