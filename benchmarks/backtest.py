"""Backtest throughput and detection quality on a labelled simulator stream.

Generates N labelled transactions with the simulator into a temp CSV (all transaction
fields, plus `is_fraud` and `scenario` columns that the detector must never see), then
measures, each in a fresh process where it matters:

- baselines: `csv.reader` alone, and reading + mapping + validating (`Source`);
- `fraudwatch backtest` end to end (best of --repeat runs), with its quality figures, and
  once in one process (`--parallel off`) for the ratio;
- `fraudwatch replay` in-process over the same file;
- the backtest runs with the online model on (the command's default); benchmarks/model.py
  compares it with the rules alone and an offline random forest.

Writes everything to benchmarks/results/backtest-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from results_file import write_results  # noqa: E402

from server.replay_source import Row, Source, SourceOptions  # noqa: E402
from simulator import Simulator  # noqa: E402

FIELDS = ["id", "timestamp", "account_id", "merchant_id", "amount", "currency", "merchant_name",
          "mcc", "country", "lat", "lon", "channel", "device_id", "ip"]  # fmt: skip
START = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
FLOOR_TX_S = 20_000


def generate(path: Path, rows: int, seed: int, rate: float, drift: bool = False) -> dict[str, Any]:
    """The labelled CSV; returns what it holds. `drift`: the simulator's non-stationary
    fraud (docs/simulator.md, "Drift"), off by default."""
    sim = Simulator(seed=seed, rate=rate, start=START, drift=drift)
    frauds = 0
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([*FIELDS, "is_fraud", "scenario"])
        left = rows
        while left:
            batch = sim.generate(min(left, 50_000))
            left -= len(batch)
            for item in batch:
                tx = item.transaction
                cells = [getattr(tx, name) for name in FIELDS]
                cells[1] = tx.timestamp.isoformat()
                writer.writerow(
                    [
                        *("" if c is None else c for c in cells),
                        int(item.is_fraud),
                        item.scenario or "",
                    ]
                )
                frauds += item.is_fraud
    return {
        "rows": rows,
        "frauds": frauds,
        "seed": seed,
        "rate": rate,
        "drift": drift,
        "bytes": path.stat().st_size,
    }


def labelled_rows(
    work: Path, rows: int = 300_000, seed: int = 7, rate: float = 0.116, drift: bool = False
) -> tuple[Path, list[Row]]:
    """`work`/labelled.csv (labelled-drift.csv with the simulator's drift), generated if it
    is not there yet, and its rows as the backtest reads them (every column named like a
    field; `is_fraud` the label)."""
    data = work / ("labelled-drift.csv" if drift else "labelled.csv")
    if not data.exists():
        print("data:", generate(data, rows, seed, rate, drift))
    with Source(data, SourceOptions(mapping={}, label="is_fraud")) as source:
        return data, [item for item in source if isinstance(item, Row)]


def csv_baseline(path: Path) -> float:
    """Rows per second for `csv.reader` alone: the floor any CSV replay pays."""
    start = time.perf_counter()
    with path.open(newline="", encoding="utf-8") as f:
        n = sum(1 for _ in csv.reader(f)) - 1
    return n / (time.perf_counter() - start)


def source_baseline(path: Path) -> float:
    """Rows per second for reading, mapping and validating into Transactions (no scoring)."""
    start = time.perf_counter()
    with Source(path, SourceOptions(mapping={}, label="is_fraud")) as source:
        n = sum(1 for item in source if isinstance(item, Row))
    return n / (time.perf_counter() - start)


def fraudwatch(*args: str) -> tuple[str, float]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "server", *args], capture_output=True, text=True, cwd=ROOT
    )
    elapsed = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"fraudwatch {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--rate",
        type=float,
        default=0.116,
        help="simulated tx per event-time second (0.116: ~10,000 a day, 30 days for 300k)",
    )
    parser.add_argument("--label-delay", default="7d")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3, help="backtest runs; the best counts")
    parser.add_argument("--keep", type=Path, help="write the CSV and reports here and keep them")
    parser.add_argument("--check", action="store_true", help=f"exit 1 below {FLOOR_TX_S:,} tx/s")
    opts = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = opts.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data = work / "labelled.csv"
        started = time.perf_counter()
        facts = generate(data, opts.rows, opts.seed, opts.rate)
        print(
            f"data: {facts['rows']:,} rows, {facts['frauds']:,} frauds "
            f"({facts['frauds'] / facts['rows']:.2%}), seed {opts.seed}, rate {opts.rate:g}/s, "
            f"{facts['bytes'] / 1e6:.0f} MB, generated in {time.perf_counter() - started:.1f} s"
        )
        csv_rate = csv_baseline(data)
        source_rate = source_baseline(data)
        print(f"baseline csv.reader only:          {csv_rate:>9,.0f} rows/s")
        print(f"baseline read+map+validate:        {source_rate:>9,.0f} rows/s")

        runs = []
        for i in range(opts.repeat):
            report_path = work / "report.json"
            args = [
                "backtest", str(data), "--label", "is_fraud", "--label-delay", opts.label_delay,
                "--k", str(opts.k), "--report", str(report_path),
                "--scores-out", str(work / "scores.csv"),
            ]  # fmt: skip
            if i == 0:
                args += ["--report", str(work / "report.html")]
            _, wall = fraudwatch(*args)
            report = json.loads(report_path.read_text())
            runs.append({"wall_s": round(wall, 2), **report["throughput"]})
            print(
                f"backtest run {i + 1}: {report['throughput']['tx_per_s']:>9,} tx/s end to end "
                f"({wall:.1f} s wall with interpreter start)"
            )
        best = max(runs, key=lambda r: r["tx_per_s"])
        # The same command in one process: what reading and verdicts in their own
        # processes (--parallel, server/read_ahead.py and server/backtest_split.py) gain.
        single_path = work / "report-one-process.json"
        fraudwatch(
            "backtest", str(data), "--label", "is_fraud", "--label-delay", opts.label_delay,
            "--k", str(opts.k), "--report", str(single_path), "--parallel", "off",
        )  # fmt: skip
        single = json.loads(single_path.read_text())
        if single["overall"] != json.loads(report_path.read_text())["overall"]:
            raise SystemExit("the one-process backtest gave other figures than the parallel one")
        single_rate = single["throughput"]["tx_per_s"]
        print(
            f"backtest in one process:           {single_rate:>9,} tx/s end to end "
            f"(--parallel off; same figures)"
        )
        peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        out, wall = fraudwatch("replay", str(data))
        replay_line = next(line for line in out.splitlines() if "throughput" in line).strip()

        overall = report["overall"]
        print(
            f"backtest best:                     {best['tx_per_s']:>9,} tx/s end to end "
            f"= {best['tx_per_s'] / csv_rate:.2f}x csv.reader alone, "
            f"{best['tx_per_s'] / source_rate:.2f}x read+validate alone, "
            f"{best['tx_per_s'] / single_rate:.2f}x one process\n"
            f"  read+validate+score {best['read_validate_score_s']} s, metrics "
            f"{best['metrics_s']} s; {best['tx_per_cpu_s']:,} tx per CPU second; "
            f"peak RSS {peak_rss_mb:,.0f} MB"
        )
        print(f"replay in-process:                 {replay_line}")
        print(
            f"quality (label delay {opts.label_delay}, k={opts.k}, "
            f"{report['meta']['days']} days, rules {report['meta']['rules_version']}):\n"
            f"  average precision {overall['average_precision']}, ROC AUC {overall['roc_auc']}, "
            f"card precision@{opts.k} {overall['card_precision_at_k']}, "
            f"precision@{opts.k} {overall['precision_at_k']}\n"
            f"  alerts {overall['alerts']:,} ({overall['alerts_per_day']}/day), precision "
            f"{overall['alert_precision']}, recall {overall['alert_recall']}"
        )
        forest = random_forest_note()
        print(f"random forest: {forest}")
        passed = best["tx_per_s"] >= FLOOR_TX_S
        print(f"floor {FLOOR_TX_S:,} tx/s end to end: {'PASS' if passed else 'FAIL'}")

        result = {
            "machine": {
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "load_avg": os.getloadavg(),
            },
            "data": facts,
            "csv_reader_rows_per_s": round(csv_rate),
            "read_validate_rows_per_s": round(source_rate),
            "backtest_runs": runs,
            "backtest_best": best,
            "backtest_one_process": single["throughput"],
            "peak_rss_mb": round(peak_rss_mb),
            "replay_in_process": replay_line,
            "quality": {"meta": report["meta"], "overall": overall},
            "random_forest": forest,
            "floor_passed": passed,
        }
        print(f"results: {write_results('backtest', result)}")
        if opts.keep:
            print(f"kept: {work}/labelled.csv, report.json, report.html, scores.csv")
    return 1 if opts.check and not passed else 0


def random_forest_note() -> str:
    return (
        "not run here: benchmarks/model.py compares the online model with an offline "
        "random forest on the same split (needs the 'bench' extra)"
    )


if __name__ == "__main__":
    sys.exit(main())
