"""What an alert's severity tells an analyst, on a labelled file: per severity, the alerts,
their precision and the fraud money they hold.

Scores FILE in event order as `fraudwatch backtest` does (one process, labels revealed after
`--label-delay`, the model on unless `--model off`) and records each alert's severity,
decision, score, amount (and on the stream's scale), reason codes, label and, when the file
has one, its `scenario` column (the backtest never reads it). Prints, per severity: alerts,
share, precision, fraud money per alert (the fraudulent alerts' amounts summed, over the
alerts), the share of all the alerts' fraud money, the legitimate money per alert and the
median amount; then the severities of each scenario and of each rule code.

    .venv/bin/python benchmarks/severity.py /tmp/bt/labelled.csv [--model off] [--json OUT]

docs/rules.md ("Score, decision, severity") has the figures on the simulator's 30 days.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server import backtest as bt  # noqa: E402
from server.detection.verdict import Scored  # noqa: E402
from server.replay_source import Source, source_options  # noqa: E402
from server.transactions import Transaction  # noqa: E402

ORDER = ("critical", "high", "medium", "low")


def record(file: Path, extra: list[str]) -> list[dict[str, Any]]:
    """Every alert of a backtest of `file`, in event order."""
    parser = argparse.ArgumentParser()
    bt.register(parser.add_subparsers())
    args = parser.parse_args(["backtest", str(file), "--label", "is_fraud", *extra])
    options = source_options(args, label=args.label)
    detector = bt.backtest_detector(args)
    alerts: list[dict[str, Any]] = []

    class Recording:
        learns_labels = detector.learns_labels
        rules_version = detector.rules_version

        def score(self, tx: Transaction) -> Scored:
            return self.score_at(tx, tx.timestamp.timestamp())

        def score_at(self, tx: Transaction, t: float) -> Scored:
            scale = detector.featurizer.scale.scale  # as the features read it, before tx
            scored = detector.score_at(tx, t)
            if scored.decision != "allow":
                amount = float(tx.amount)
                alerts.append({
                    "id": tx.id, "severity": scored.severity, "decision": scored.decision,
                    "score": scored.score, "amount": amount,
                    "amount_scaled": amount / scale if scale else amount,
                    "codes": [r.code for r in scored.reasons],
                })  # fmt: skip
            return scored

        def forget(self, tx_id: str) -> None:
            detector.forget(tx_id)

    source = Source(file, options)
    rows = bt._valid(source, bt.RowErrors(), bt.Progress("severity", unit="tx"))
    bt.run_backtest(
        rows, Recording(), label_delay=bt.parse_duration(args.label_delay),
        on_label=bt.label_hook(detector), day_of=bt.day_function(options.timezone),
    )  # fmt: skip
    return alerts


def label(file: Path, alerts: list[dict[str, Any]]) -> None:
    """Each alert's label and scenario, from the file."""
    by_id = {a["id"]: a for a in alerts}
    with file.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            alert = by_id.get(row["id"])
            if alert is not None:
                alert["fraud"] = row["is_fraud"] == "1"
                alert["scenario"] = row.get("scenario") or ("" if alert["fraud"] else "legit")


def per_severity(alerts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    fraud_money = sum(a["amount"] for a in alerts if a["fraud"]) or 1.0
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in alerts:
        groups[a["severity"]].append(a)
    out = {}
    for severity in ORDER:
        group = groups.get(severity)
        if not group:
            continue
        fraud = sum(a["amount"] for a in group if a["fraud"])
        out[severity] = {
            "alerts": len(group),
            "share": round(len(group) / len(alerts), 4),
            "precision": round(sum(a["fraud"] for a in group) / len(group), 4),
            "fraud_money_per_alert": round(fraud / len(group), 2),
            "fraud_money_share": round(fraud / fraud_money, 4),
            "legit_money_per_alert": round(
                sum(a["amount"] for a in group if not a["fraud"]) / len(group), 2
            ),
            "median_amount": statistics.median(a["amount"] for a in group),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path, help="a labelled CSV (is_fraud; scenario if any)")
    parser.add_argument("--model", choices=("on", "off"), default="on")
    parser.add_argument("--label-delay", default="7d")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    alerts = record(args.file, ["--model", args.model, "--label-delay", args.label_delay])
    label(args.file, alerts)
    table = per_severity(alerts)
    frauds = [a for a in alerts if a["fraud"]]
    print(f"{len(alerts):,} alerts, {len(frauds):,} fraud, fraud money "
          f"{sum(a['amount'] for a in frauds):,.2f}")  # fmt: skip
    print("| severity | alerts | share | precision | fraud money / alert | share of it "
          "| legit money / alert | median amount |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for severity, f in table.items():
        print(f"| {severity} | {f['alerts']:,} | {f['share']:.1%} | {f['precision']:.3f} "
              f"| {f['fraud_money_per_alert']:,.0f} | {f['fraud_money_share']:.1%} "
              f"| {f['legit_money_per_alert']:,.0f} | {f['median_amount']:,.2f} |")  # fmt: skip
    scenarios: dict[str, Counter[str]] = defaultdict(Counter)
    codes: dict[str, Counter[str]] = defaultdict(Counter)
    for a in alerts:
        scenarios[a["scenario"]][a["severity"]] += 1
        for code in a["codes"]:
            codes[code][a["severity"]] += 1
    for title, groups in (("scenario", scenarios), ("reason code", codes)):
        print(f"\nby {title}:")
        for name, counts in sorted(groups.items(), key=lambda kv: -sum(kv[1].values())):
            shares = ", ".join(f"{s} {counts[s]}" for s in ORDER if counts[s])
            print(f"  {name or '(none)'}: {sum(counts.values()):,} ({shares})")
    if args.json:
        args.json.write_text(json.dumps({
            "file": str(args.file), "model": args.model, "alerts": len(alerts),
            "per_severity": table,
            "by_scenario": {k: dict(v) for k, v in scenarios.items()},
            "by_code": {k: dict(v) for k, v in codes.items()},
        }, indent=1) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
