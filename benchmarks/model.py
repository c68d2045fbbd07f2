"""The online model: its cost per transaction, and its quality against the rules alone and an
offline random forest, on one labelled simulator stream.

1. Cost (CPU µs per transaction, best of --repeat, gc paused): `Detector.score` with the rules
   alone; with the model's inputs computed and remembered (before it is ready); with a ready
   model scoring; the predictor's dot product alone; learning one label. River's
   `StandardScaler | LogisticRegression` on the same inputs when River is importable.
2. Quality: `fraudwatch backtest` as a black box, `--model on` and `--model off`, on the
   simulator CSV of benchmarks/backtest.py (seed 7, 300,000 rows, 30 days, label delay 7 d):
   AP, ROC AUC and card precision@100 overall.
3. The same split for everyone: a scikit-learn random forest trained offline on the first
   --train-days days (the model's own inputs, all labels known), tested on the days after
   the label delay has passed since the end of training (the handbook's train / delay /
   test protocol); the handbook's own baseline, a random forest on its 15 features
   (benchmarks/handbook.py's `features`: amount, weekend, night, the account's count and
   mean amount and the merchant's count and fraud rate over 1, 7 and 30 days, the
   merchant's ending the delay ago), on the same split; the online model and the rules on
   those same test days; and the online model's calibration there (mean predicted
   probability against the observed fraud rate).

scikit-learn is the `bench` extra (`pip install -e '.[bench]'`), never a runtime dependency.

    .venv/bin/python benchmarks/model.py --keep /tmp/bt      # ~5 minutes
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import gc
import itertools
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from backtest import labelled_rows  # noqa: E402
from results_file import write_results  # noqa: E402

from server.backtest import (  # noqa: E402
    day_function,
    label_hook,
    parse_duration,
    run_backtest,
)
from server.detection.detector import Detector  # noqa: E402
from server.detection.model import FEATURE_NAMES, ModelSlot, OnlineLogit, inputs  # noqa: E402
from server.metrics_offline import (  # noqa: E402
    average_precision,
    card_precision_at_k,
    mean,
    roc_auc,
)
from server.replay_source import Row  # noqa: E402


def best_us(run: Callable[[], int], repeat: int) -> float:
    """CPU µs per item of the fastest of `repeat` runs; `run` returns how many items."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        start = time.process_time()
        n = run()
        best = min(best, (time.process_time() - start) / n * 1e6)
        gc.enable()
    return best


def cost(rows: list[Row], repeat: int) -> dict[str, float | None]:
    rows = rows[:60_000]
    txs = [r.transaction for r in rows]

    def score_all(make: Callable[[], Detector]) -> Callable[[], int]:
        def run() -> int:
            det = make()
            for tx in txs:
                det.score(tx)
            return len(txs)

        return run

    trained = ModelSlot(memory=len(txs), learner=OnlineLogit(), min_labels=1, min_frauds=0)
    warm = Detector(model=trained)
    for row in rows:
        warm.score(row.transaction)
    examples = [(list(inputs(trained.remembered[r.transaction.id])), bool(r.label)) for r in rows]
    learner = OnlineLogit()
    learner.learn_many(examples)
    predictor = learner.freeze(learner.count)
    vectors = [x for x, _ in examples]

    def learn() -> int:
        OnlineLogit().learn_many(examples)
        return len(examples)

    def predict() -> int:
        for x in vectors:
            predictor.predict_proba(x)
        return len(vectors)

    out: dict[str, float | None] = {
        "score_rules_only_us": best_us(score_all(Detector), repeat),
        "score_with_inputs_remembered_us": best_us(
            score_all(lambda: Detector(model=ModelSlot(memory=len(txs)))), repeat
        ),
        "score_with_model_us": best_us(
            score_all(lambda: Detector(model=ModelSlot(memory=len(txs), predictor=predictor))),
            repeat,
        ),
        "predict_dot_product_us": best_us(predict, repeat),
        "learn_one_us": best_us(learn, repeat),
        "river_predict_us": None,
        "river_learn_us": None,
    }
    try:
        from river import linear_model, preprocessing
    except ImportError:
        return out
    dicts = [dict(zip(FEATURE_NAMES, (float(v) for v in x), strict=True)) for x in vectors]
    labelled = list(zip(dicts, (y for _, y in examples), strict=True))[:20_000]
    river_model = preprocessing.StandardScaler() | linear_model.LogisticRegression()

    def river_learn() -> int:
        for x, y in labelled:
            river_model.learn_one(x, y)
        return len(labelled)

    def river_predict() -> int:
        for x, _ in labelled:
            river_model.predict_proba_one(x)
        return len(labelled)

    out["river_learn_us"] = best_us(river_learn, 1)
    out["river_predict_us"] = best_us(river_predict, repeat)
    return out


def backtest(data: Path, work: Path, model: str, delay: str) -> tuple[dict[str, Any], Path]:
    report, scores = work / f"report-model-{model}.json", work / f"scores-model-{model}.csv"
    args = [sys.executable, "-m", "server", "backtest", str(data), "--label", "is_fraud",
            "--label-delay", delay, "--model", model, "--report", str(report),
            "--scores-out", str(scores)]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"backtest failed:\n{done.stderr}")
    return json.loads(report.read_text()), scores


def read_scores(path: Path) -> dict[str, float]:
    with path.open(newline="") as f:
        return {tx_id: float(score) for tx_id, score, _ in list(csv.reader(f))[1:]}


def window_metrics(
    days: Sequence[int], accounts: Sequence[int], scores: Sequence[float], labels: Sequence[int]
) -> dict[str, float | None]:
    cards = card_precision_at_k(days, accounts, scores, labels, 100)
    return {
        "average_precision": round(average_precision(scores, labels) or 0.0, 4),
        "roc_auc": round(roc_auc(scores, labels) or 0.0, 4),
        "card_precision_at_100": round(mean([c.precision for c in cards]) or 0.0, 4),
        # The best any ranking can do: each day's compromised cards not yet detected, over k.
        # With ~30 a day, card P@100 cannot exceed ~0.3 on this stream.
        "card_precision_at_100_ceiling": round(
            mean([min(c.compromised, 100) / 100 for c in cards]) or 0.0, 4
        ),
    }


def calibration(scores: Sequence[float], labels: Sequence[int]) -> list[dict[str, Any]]:
    bands = (0.0, 0.01, 0.05, 0.2, 0.5, 0.8, 1.0001)
    out = []
    for lo, hi in itertools.pairwise(bands):
        band = [(s, y) for s, y in zip(scores, labels, strict=True) if lo <= s < hi]
        if band:
            out.append(
                {
                    "band": f"[{lo:g}, {min(hi, 1):g})",
                    "transactions": len(band),
                    "mean_predicted": round(sum(s for s, _ in band) / len(band), 4),
                    "observed_fraud_rate": round(sum(y for _, y in band) / len(band), 4),
                }
            )
    return out


def model_inputs(
    rows: Sequence[Row], label_delay: str
) -> tuple[list[list[float]], list[int], list[int], list[int]]:
    """Every row's model inputs, computed in one pass as the detector sees them with labels
    revealed after `label_delay` (inputs such as the merchant's fraud rate come from the
    labels known at the time); with each row's UTC day, account number and label."""
    slot = ModelSlot(memory=len(rows) + 1)
    detector = Detector(model=slot)
    day_of = day_function(dt.UTC)
    run_backtest(
        rows,
        detector,
        label_delay=parse_duration(label_delay),
        on_label=label_hook(detector),
        day_of=day_of,
    )
    vectors = [inputs(slot.remembered[r.transaction.id]) for r in rows]
    days = [day_of(round(r.transaction.timestamp.timestamp() * 1e6)) for r in rows]
    account_ids: dict[str, int] = {}
    accounts = [account_ids.setdefault(r.transaction.account_id, len(account_ids)) for r in rows]
    return vectors, days, accounts, [int(r.label or 0) for r in rows]


def handbook_forest(
    rows: Sequence[Row],
    labels: Sequence[int],
    train: Sequence[int],
    test: Sequence[int],
    opts: argparse.Namespace,
) -> list[float]:
    """The handbook's baseline on this stream: its 15 features (merchant as terminal,
    account as customer, UTC times), standardised, a default random forest (seed 0)."""
    from handbook import Stream, features
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.preprocessing import StandardScaler

    first = rows[0].transaction.timestamp.timestamp()
    midnight = first // 86_400 * 86_400
    merchants: dict[str, int] = {}
    accounts: dict[str, int] = {}
    stream = Stream(
        dt.datetime.fromtimestamp(midnight, dt.UTC).replace(tzinfo=None),
        seconds=[int(r.transaction.timestamp.timestamp() - midnight) for r in rows],
        customers=[accounts.setdefault(r.transaction.account_id, len(accounts)) for r in rows],
        terminals=[merchants.setdefault(r.transaction.merchant_id, len(merchants)) for r in rows],
        amounts=[float(r.transaction.amount) for r in rows],
        frauds=list(labels),
        scenarios=[0] * len(rows),
    )
    x = features(stream, opts.delay_days)
    scaler = StandardScaler().fit(x[list(train)])
    forest = RandomForestClassifier(n_estimators=opts.trees, random_state=0, n_jobs=1)
    forest.fit(scaler.transform(x[list(train)]), [labels[i] for i in train])
    return forest.predict_proba(scaler.transform(x[list(test)]))[:, 1].tolist()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rate", type=float, default=0.116)
    parser.add_argument("--label-delay", default="7d")
    parser.add_argument("--train-days", type=int, default=14)
    parser.add_argument("--delay-days", type=int, default=7)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="write (or reuse) labelled.csv here and keep it")
    parser.add_argument(
        "--drift",
        action="store_true",
        help="the simulator's drifting fraud (docs/simulator.md); labelled-drift.csv in --keep",
    )
    parser.add_argument("--cost-only", action="store_true", help="only the µs per transaction")
    opts = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = opts.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data, rows = labelled_rows(work, opts.rows, opts.seed, opts.rate, opts.drift)
        print(f"{len(rows):,} rows, {sum(r.label or 0 for r in rows):,} frauds")

        figures = cost(rows, opts.repeat)
        print("cost, CPU µs per transaction (best of runs, gc paused):")
        for name, value in figures.items():
            print(f"  {name:34} {'n/a (not importable)' if value is None else f'{value:8.2f}'}")
        if opts.cost_only:
            return 0

        reports = {}
        score_files = {}
        for model in ("off", "on"):
            started = time.perf_counter()
            reports[model], score_files[model] = backtest(data, work, model, opts.label_delay)
            o = reports[model]["overall"]
            print(
                f"backtest --model {model}: AP {o['average_precision']}, ROC AUC {o['roc_auc']}, "
                f"card P@100 {o['card_precision_at_k']}, P@100 {o['precision_at_k']}, alerts "
                f"{o['alerts']:,} (precision {o['alert_precision']}, recall "
                f"{o['alert_recall']}); {reports[model]['throughput']['tx_per_s']:,} tx/s, "
                f"{reports[model]['throughput']['tx_per_cpu_s']:,} tx per CPU s "
                f"({time.perf_counter() - started:.0f} s)"
            )

        # Everyone's inputs: the model's own, computed in one pass as the detector sees them,
        # labels revealed after the same delay (inputs such as the merchant's fraud rate come
        # from the labels known at the time: without them the forest would never see those).
        vectors, days, accounts, labels = model_inputs(rows, opts.label_delay)
        first = days[0]
        train = [i for i, d in enumerate(days) if d < first + opts.train_days]
        test_from = first + opts.train_days + opts.delay_days
        test = [i for i, d in enumerate(days) if d >= test_from]

        from sklearn.ensemble import RandomForestClassifier

        started = time.perf_counter()
        forest = RandomForestClassifier(
            n_estimators=opts.trees, max_depth=20, min_samples_leaf=2, n_jobs=1, random_state=0
        )
        forest.fit(
            [vectors[i] for i in train],
            [labels[i] for i in train],
        )
        fit_s = time.perf_counter() - started
        forest_scores = forest.predict_proba([vectors[i] for i in test])[:, 1].tolist()
        print(
            f"random forest: {opts.trees} trees, max_depth 20, trained on days 1-{opts.train_days} "
            f"({len(train):,} tx, {sum(labels[i] for i in train):,} frauds) in {fit_s:.0f} s; "
            f"tested on days {opts.train_days + opts.delay_days + 1}-{days[-1] - first + 1} "
            f"({len(test):,} tx)"
        )

        handbook_scores = handbook_forest(rows, labels, train, test, opts)

        t_days = [days[i] for i in test]
        t_accounts = [accounts[i] for i in test]
        t_labels = [labels[i] for i in test]
        window = {
            "random_forest": window_metrics(t_days, t_accounts, forest_scores, t_labels),
            "random_forest_handbook_features": window_metrics(
                t_days, t_accounts, handbook_scores, t_labels
            ),
        }
        for model in ("off", "on"):
            by_id = read_scores(score_files[model])
            scores = [by_id[rows[i].transaction.id] for i in test]
            name = "online_model" if model == "on" else "rules_only"
            window[name] = window_metrics(t_days, t_accounts, scores, t_labels)
            if model == "on":
                calib = calibration(scores, t_labels)
        print("same test days, same metrics:")
        for name, m in window.items():
            print(
                f"  {name:31} AP {m['average_precision']:.4f}  ROC AUC {m['roc_auc']:.4f}  "
                f"card P@100 {m['card_precision_at_100']:.4f} "
                f"(ceiling {m['card_precision_at_100_ceiling']:.4f})"
            )
        print("online model calibration on the test days:")
        for band in calib:
            print(
                f"  p in {band['band']:12} {band['transactions']:>7,} tx: mean predicted "
                f"{band['mean_predicted']:.4f}, observed {band['observed_fraud_rate']:.4f}"
            )

        path = write_results(
            "model",
            {
                "data": {"seed": opts.seed, "rate": opts.rate, "drift": opts.drift},
                "cost_us": figures,
                "overall": {m: reports[m]["overall"] for m in reports},
                "throughput": {m: reports[m]["throughput"] for m in reports},
                "split": {"train_days": opts.train_days, "delay_days": opts.delay_days},
                "test_window": window,
                "calibration": calib,
            },
        )
        print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
