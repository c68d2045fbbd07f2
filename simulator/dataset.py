"""A labelled CSV of simulated transactions, for `fraudwatch backtest` and offline work."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import gzip
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from simulator.generator import Simulator

FIELDS = ("id", "timestamp", "account_id", "merchant_id", "amount", "currency", "merchant_name",
          "mcc", "country", "lat", "lon", "channel", "device_id", "ip")  # fmt: skip
# Ground truth, never a transaction field: `fraudwatch backtest --label is_fraud` keeps it
# from the detector, and ignores `scenario` altogether.
LABELS = ("is_fraud", "scenario")
DEFAULT_START = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
_CHUNK = dt.timedelta(hours=6)


def write_csv(
    sim: Simulator, out: TextIO, start: dt.datetime, until: dt.datetime
) -> tuple[int, int]:
    """Every transaction of `sim` (begun at `start`) up to `until`, as CSV rows.

    An absent field is an empty cell. Returns (rows, frauds). Generated a few hours of event
    time at a time, so memory stays flat however long the file.
    """
    writer = csv.writer(out)
    writer.writerow((*FIELDS, *LABELS))
    rows = frauds = 0
    moment = start
    while moment < until:
        moment = min(moment + _CHUNK, until)
        batch = sim.generate_until(moment)
        for item in batch:
            tx = item.transaction
            cells = [getattr(tx, name) for name in FIELDS]
            cells[1] = tx.timestamp.isoformat()
            label = [int(item.is_fraud), item.scenario or ""]
            writer.writerow(["" if c is None else c for c in cells] + label)
        rows += len(batch)
        frauds += sum(item.is_fraud for item in batch)
    return rows, frauds


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m simulator.dataset",
        description="Write a labelled CSV of simulated transactions (gzipped if F ends in .gz).",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="F.csv[.gz]")
    parser.add_argument("--days", type=float, default=30.0, help="Event time to cover.")
    parser.add_argument(
        "--start",
        type=dt.datetime.fromisoformat,
        default=DEFAULT_START,
        help="First instant, RFC 3339 with an offset (default 2026-03-01T00:00:00+00:00).",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=0.116,
        help="Transactions per event-time second (0.116: ~10,000 a day).",
    )
    parser.add_argument("--seed", type=int, default=7, help="Same seed, same file.")
    parser.add_argument("--fraud-rate", type=float, default=0.02)
    parser.add_argument("--accounts", type=int, default=None, help="Default: sized from --rate.")
    parser.add_argument("--merchants", type=int, default=300)
    parser.add_argument(
        "--drift",
        action="store_true",
        help="Fraud tactics change at seeded change points and come in waves "
        "(docs/simulator.md, Drift). Off by default.",
    )
    args = parser.parse_args(argv)
    if args.start.tzinfo is None:
        parser.error("--start needs an offset, e.g. 2026-03-01T00:00:00+00:00")
    if not args.days > 0:
        parser.error("--days must be > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        sim = Simulator(
            seed=args.seed,
            accounts=args.accounts,
            merchants=args.merchants,
            fraud_rate=args.fraud_rate,
            rate=args.rate,
            start=args.start,
            drift=args.drift,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    until = args.start + dt.timedelta(days=args.days)
    path: Path = args.out
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", newline="", encoding="utf-8") as out:
        rows, frauds = write_csv(sim, out, args.start, until)
    print(f"{path}: {rows:,} transactions, {frauds:,} fraudulent ({frauds / max(rows, 1):.2%})")
    if sim.drift is not None:
        for scenario, moments in sim.drift.change_moments().items():
            print(f"drift: {scenario} changes at {', '.join(m.isoformat() for m in moments)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
