"""Per-scenario recall of the detector on a simulated month, from `fraudwatch backtest`.

Writes a labelled CSV with `python -m simulator.dataset` (seed 7, 0.116 tx/s: ~10,000 a day
for 30 days, the same stream shape as benchmarks/backtest.py), backtests it with a 7-day label
delay and `--scores-out`, then joins the scores with the file's `scenario` column, which the
backtest never reads. For each fraud scenario: its fraudulent transactions, the share that
raised an alert (decision review or block: the recall at the review threshold), the share
blocked, the share of its cards (accounts) with at least one alert, and the mean score. For
decoys and genuine transactions: the share that raised an alert (false alerts).

Writes benchmarks/results/scenarios-<UTC time>.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
ALERT = {"review", "block"}


def run(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def per_scenario(data: Path, scores: Path) -> dict[str, dict[str, Any]]:
    verdicts: dict[str, tuple[float, str]] = {}
    with scores.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            verdicts[row["transaction_id"]] = (float(row["score"]), row["decision"])
    rows: dict[tuple[str, bool], list[tuple[str, float, str]]] = defaultdict(list)
    with data.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            score, decision = verdicts[row["id"]]
            key = (row["scenario"] or "(everyday)", row["is_fraud"] == "1")
            rows[key].append((row["account_id"], score, decision))
    table: dict[str, dict[str, Any]] = {}
    for (scenario, is_fraud), items in sorted(rows.items()):
        alerted = [i for i in items if i[2] in ALERT]
        cards = {i[0] for i in items}
        name = scenario if is_fraud else f"{scenario} (genuine)"
        table[name] = {
            "fraud": is_fraud,
            "transactions": len(items),
            "alerted": len(alerted),
            "alert_share": round(len(alerted) / len(items), 3),
            "blocked_share": round(sum(i[2] == "block" for i in items) / len(items), 3),
            "cards": len(cards),
            "cards_alerted_share": round(len({i[0] for i in alerted}) / len(cards), 3),
            "mean_score": round(sum(i[1] for i in items) / len(items), 3),
        }
    return table


def markdown(table: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| scenario | label | transactions | alerted (recall or false alerts) | blocked | "
        "cards alerted | mean score |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for fraud in (True, False):
        for name, r in table.items():
            if r["fraud"] != fraud:
                continue
            lines.append(
                f"| {name} | {'fraud' if fraud else 'genuine'} | {r['transactions']:,} | "
                f"{r['alert_share']:.1%} | {r['blocked_share']:.1%} | "
                f"{r['cards_alerted_share']:.1%} | {r['mean_score']:.2f} |"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rate", type=float, default=0.116)
    parser.add_argument("--label-delay", default="7d")
    parser.add_argument("--keep", type=Path, help="write the CSV, scores and report here")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = opts.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data, scores, report = work / "labelled.csv", work / "scores.csv", work / "report.json"
        print(run("-m", "simulator.dataset", "--out", str(data), "--days", str(opts.days),
                  "--seed", str(opts.seed), "--rate", str(opts.rate)).strip())  # fmt: skip
        run("-m", "server", "backtest", str(data), "--label", "is_fraud", "--label-delay",
            opts.label_delay, "--scores-out", str(scores), "--report", str(report))  # fmt: skip
        overall = json.loads(report.read_text())
        table = per_scenario(data, scores)
    o = overall["overall"]
    print(
        f"rules {overall['meta']['rules_version']}, label delay {opts.label_delay}: "
        f"average precision {o['average_precision']}, ROC AUC {o['roc_auc']}, "
        f"card precision@100 {o['card_precision_at_k']}, alerts {o['alerts']:,} "
        f"(precision {o['alert_precision']}, recall {o['alert_recall']})\n"
    )
    print(markdown(table))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"scenarios-{stamp}.json"
    result = {"options": {k: str(v) for k, v in vars(opts).items()}, "meta": overall["meta"],
              "overall": o, "scenarios": table}  # fmt: skip
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nresults: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
