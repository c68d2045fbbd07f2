"""The model's hand-over in a demo's first minutes: does the young model (it replaces the
rules' score once it has learnt `model_min_frauds` frauds) hide alerts the rules raise?

For each seed, writes a demo-like stream (the demo's simulator settings: 50 transactions a
second, 2 % fraud) and backtests it twice in fresh processes, with labels 30 s late as the
demo's simulator sends them: `--model on` (the product) and `--model off` (the rules
alone). Prints the cumulative recall and precision of the alerts (decision review or block)
after each of the first minutes, and how the two alert sets overlap; writes the figures to
benchmarks/results/handover-<time>.json.

    python benchmarks/handover.py [--seeds 7 1 2 3] [--minutes 12]

A backtest learns each label inline as it becomes due (refreezing every 100 labels); the
server learns in a trainer thread, a round at a time, so a live demo hands over a little
later. See docs/model.md, "Before the model scores".
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.results_file import commit, write_results  # noqa: E402

START = "2026-11-30T10:00:00+00:00"
CHECKPOINTS = (1, 2, 3, 5, 8, 12)


def backtest(data: Path, scores: Path, model: str) -> None:
    args = [sys.executable, "-m", "server", "backtest", str(data), "--label", "is_fraud",
            "--label-delay", "30s", "--model", model, "--parallel", "off",
            "--scores-out", str(scores)]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"backtest failed:\n{done.stderr}")


def alerts(scores: Path) -> dict[str, bool]:
    with scores.open(newline="") as f:
        return {row["transaction_id"]: row["decision"] != "allow" for row in csv.DictReader(f)}


def run_seed(seed: int, minutes: float, work: Path) -> dict[str, object]:
    data = work / f"demo-{seed}.csv"
    subprocess.run(
        [sys.executable, "-m", "simulator.dataset", "--out", str(data), "--rate", "50",
         "--seed", str(seed), "--days", str(minutes / 1440), "--start", START],
        check=True, capture_output=True, cwd=ROOT,
    )  # fmt: skip
    times: dict[str, float] = {}
    truth: dict[str, bool] = {}
    with data.open(newline="") as f:
        for row in csv.DictReader(f):
            times[row["id"]] = dt.datetime.fromisoformat(row["timestamp"]).timestamp()
            truth[row["id"]] = row["is_fraud"] == "1"
    t0 = min(times.values())
    out: dict[str, object] = {"seed": seed, "transactions": len(truth)}
    decided = {}
    for model in ("on", "off"):
        scores = work / f"scores-{seed}-{model}.csv"
        backtest(data, scores, model)
        decided[model] = alerts(scores)
        curve = []
        for mark in (m for m in CHECKPOINTS if m <= minutes):
            ids = [i for i, t in times.items() if t - t0 < mark * 60]
            frauds = sum(truth[i] for i in ids)
            raised = sum(decided[model][i] for i in ids)
            caught = sum(decided[model][i] and truth[i] for i in ids)
            curve.append({
                "minute": mark, "frauds": frauds, "alerts": raised,
                "recall": round(caught / frauds, 3) if frauds else None,
                "precision": round(caught / raised, 3) if raised else None,
            })  # fmt: skip
        out[f"model_{model}"] = curve
    on, off = decided["on"], decided["off"]
    rules_only = [i for i in truth if off[i] and not on[i]]
    model_only = [i for i in truth if on[i] and not off[i]]
    out["overlap"] = {
        "both": sum(on[i] and off[i] for i in truth),
        "rules_only": len(rules_only),
        "rules_only_frauds": sum(truth[i] for i in rules_only),
        "model_only": len(model_only),
        "model_only_frauds": sum(truth[i] for i in model_only),
    }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 1, 2, 3])
    parser.add_argument("--minutes", type=float, default=12.0)
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            run = run_seed(seed, args.minutes, Path(tmp))
            runs.append(run)
            print(f"seed {seed}: {run['transactions']:,} transactions")
            for model in ("on", "off"):
                cells = [
                    f"{c['minute']}m R {c['recall']} P {c['precision']}"
                    for c in run[f"model_{model}"]  # type: ignore[attr-defined]
                ]
                print(f"  model {model:>3}: " + " | ".join(cells))
            o = run["overlap"]
            print(
                f"  alerts in both {o['both']}; rules only {o['rules_only']} "  # type: ignore[index]
                f"({o['rules_only_frauds']} frauds); model only {o['model_only']} "  # type: ignore[index]
                f"({o['model_only_frauds']} frauds)"  # type: ignore[index]
            )
    path = write_results("handover", {"commit": commit(), "minutes": args.minutes, "runs": runs})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
