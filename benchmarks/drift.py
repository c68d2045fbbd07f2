"""Per-scenario recall around the simulator's change points, with and without drift.

Reads what `benchmarks/model.py --keep DIR` leaves (the labelled CSV and the online
model's `scores-model-on.csv`) for a run on the drifting stream and one on the stationary
stream of the same seed, and for each fraud scenario splits its fraudulent transactions by
when they happened against the scenario's change points (simulator/drift.py): before the
first change, in the 7 days after a change (the variant's labels are not known yet with a
7-day label delay), and later. For each period: transactions, recall at the review
threshold (decision review or block) and mean score, on both streams (the stationary one
over the same calendar days, as a control: what the days alone do).

    .venv/bin/python benchmarks/model.py --keep /tmp/bt                  # stationary
    .venv/bin/python benchmarks/model.py --drift --keep /tmp/bt-drift    # drifting
    .venv/bin/python benchmarks/drift.py --still /tmp/bt --drift /tmp/bt-drift

Writes benchmarks/results/drift-<UTC time>.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from backtest import START  # noqa: E402
from results_file import write_results  # noqa: E402

from simulator import Simulator  # noqa: E402

ALERT = {"review", "block"}
LABEL_DELAY = dt.timedelta(days=7)
PERIODS = ("before the first change", "7 days after a change", "later")


def period(moment: dt.datetime, changes: list[dt.datetime]) -> str:
    passed = [c for c in changes if c <= moment]
    if not passed:
        return PERIODS[0]
    return PERIODS[1] if moment - passed[-1] < LABEL_DELAY else PERIODS[2]


def recall(
    data: Path, scores: Path, changes: dict[str, list[dt.datetime]]
) -> dict[str, dict[str, dict[str, Any]]]:
    verdicts: dict[str, tuple[float, str]] = {}
    with scores.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            verdicts[row["transaction_id"]] = (float(row["score"]), row["decision"])
    found: dict[str, dict[str, list[tuple[float, bool]]]] = defaultdict(lambda: defaultdict(list))
    with data.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["is_fraud"] != "1":
                continue
            score, decision = verdicts[row["id"]]
            when = period(dt.datetime.fromisoformat(row["timestamp"]), changes[row["scenario"]])
            found[row["scenario"]][when].append((score, decision in ALERT))
    return {
        scenario: {
            when: {
                "transactions": len(items),
                "recall": round(sum(a for _, a in items) / len(items), 3),
                "mean_score": round(sum(s for s, _ in items) / len(items), 3),
            }
            for when, items in by_period.items()
        }
        for scenario, by_period in found.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--still", type=Path, required=True, help="model.py --keep DIR")
    parser.add_argument("--drift", type=Path, required=True, help="model.py --drift --keep DIR")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rate", type=float, default=0.116)
    opts = parser.parse_args()

    drift = Simulator(seed=opts.seed, rate=opts.rate, start=START, drift=True).drift
    assert drift is not None
    changes = drift.change_moments()
    runs = {
        "drift": recall(
            opts.drift / "labelled-drift.csv", opts.drift / "scores-model-on.csv", changes
        ),
        "still": recall(opts.still / "labelled.csv", opts.still / "scores-model-on.csv", changes),
    }
    print(
        "| scenario | changes (day) | period | frauds, drift | recall, drift | "
        "frauds, stationary | recall, stationary |"
    )
    print("|---|---|---|---:|---:|---:|---:|")
    for name, moments in changes.items():
        days = ", ".join(f"{(m - START).total_seconds() / 86_400 + 1:.1f}" for m in moments)
        for when in PERIODS:
            d = runs["drift"].get(name, {}).get(when)
            s = runs["still"].get(name, {}).get(when)
            if not d and not s:
                continue
            cells = [f"{r['transactions']:,} | {r['recall']:.1%}" if r else "0 | —" for r in (d, s)]
            print(f"| {name} | {days} | {when} | {cells[0]} | {cells[1]} |")
    path = write_results(
        "drift",
        {
            "seed": opts.seed,
            "rate": opts.rate,
            "change_points": {n: [m.isoformat() for m in ms] for n, ms in changes.items()},
            "recall_by_period": runs,
        },
    )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
