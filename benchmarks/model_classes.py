"""Which kind of model the detector's inputs call for: the online logistic model against
models refitted every day on the labels known by then, on the same inputs and protocol.

The stream is benchmarks/backtest.py's simulator CSV (seed 7, 300,000 rows, 30 days). The
inputs are the online model's own (FEATURE_NAMES), computed in one pass as the detector
sees them, labels revealed `--label-delay` after their transaction. Then:

- `online`: `fraudwatch backtest --model on` as a black box (the product);
- `daily-<kind>`: at each midnight from day 8, a scikit-learn model fitted on every label
  known by then (transactions at least the delay old; legitimate ones downsampled to
  `--negatives` per fraud with matching weights, as the online model does), scoring that
  day; days before any label get the online run's scores (the rules alone then) so the 30
  days stay comparable. Kinds: `lr` (standardised logistic regression, the online model's
  own class fitted to convergence), `hgb` (histogram gradient boosting), `mlp` (16 tanh
  units), `hgb-pairs` (depth-2 trees: pairwise interactions only);
- `forest`: benchmarks/model.py's random forest, trained once on days 1-14 with every
  label, for reference (days 22-30 only).

Printed per model: AP over the 30 days, on days 8-21 and on 22-30, card precision@100 on
22-30, and seconds spent fitting. The question it answers: is the online model short of
the forest because it learns online (one pass, delayed labels) or because it is linear?

scikit-learn and numpy are the `bench` extra; this is never run by the tests.

    .venv/bin/python benchmarks/model_classes.py --keep /tmp/bt          # ~6 minutes
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from backtest import labelled_rows  # noqa: E402
from model import backtest, model_inputs, read_scores  # noqa: E402
from results_file import write_results  # noqa: E402

from server.backtest import parse_duration  # noqa: E402
from server.metrics_offline import average_precision, card_precision_at_k, mean  # noqa: E402

KINDS = ("lr", "hgb", "hgb-pairs", "mlp")


def make(kind: str) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "lr":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    if kind == "hgb":
        return HistGradientBoostingClassifier(max_iter=200, random_state=0)
    if kind == "hgb-pairs":
        return HistGradientBoostingClassifier(max_iter=300, max_depth=2, random_state=0)
    if kind == "mlp":
        return make_pipeline(
            StandardScaler(),
            MLPClassifier(
                hidden_layer_sizes=(16,), alpha=1e-3, early_stopping=True, random_state=0
            ),
        )
    raise ValueError(kind)


def fit(model: Any, kind: str, x: Any, y: Any, w: Any) -> None:
    if kind == "mlp":  # takes no sample weights: fitted unweighted, corrected in predict()
        model.fit(x, y)
    elif kind == "lr":
        model.fit(x, y, logisticregression__sample_weight=w)
    else:
        model.fit(x, y, sample_weight=w)


def predict(model: Any, kind: str, x: Any, legit_weight: float) -> Any:
    p = model.predict_proba(x)[:, 1]
    if kind == "mlp":  # undo the downsampling: odds divided by the legitimate labels' weight
        p = p / (p + (1 - p) * legit_weight)
    return p


def metrics(
    days: Sequence[int],
    accounts: Sequence[int],
    scores: Sequence[float],
    labels: Sequence[int],
    first_test_day: int,
) -> dict[str, float]:
    def ap(lo: int, hi: int) -> float:
        idx = [i for i, d in enumerate(days) if lo <= d < hi]
        return round(average_precision([scores[i] for i in idx], [labels[i] for i in idx]) or 0, 4)

    test = [i for i, d in enumerate(days) if d >= first_test_day]
    cards = card_precision_at_k(
        [days[i] for i in test],
        [accounts[i] for i in test],
        [scores[i] for i in test],
        [labels[i] for i in test],
        100,
    )
    return {
        "ap_30_days": ap(0, 10**9),
        "ap_days_8_21": ap(7, first_test_day),
        "ap_days_22_30": ap(first_test_day, 10**9),
        "card_precision_at_100_days_22_30": round(mean([c.precision for c in cards]) or 0, 4),
    }


def stream_arguments(parser: argparse.ArgumentParser, negatives: int) -> None:
    """The flags of the seed-7 stream and its protocol, shared with benchmarks/ensemble.py."""
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rate", type=float, default=0.116)
    parser.add_argument("--label-delay", default="7d")
    parser.add_argument(
        "--negatives", type=int, default=negatives, help="legitimate labels per fraud"
    )
    parser.add_argument("--keep", type=Path, help="write (or reuse) labelled.csv here and keep it")


class Stream(NamedTuple):
    """The stream as both benchmarks use it: the product's backtest (report, scores) and
    every row's model inputs, day (from 0), account number, label and POSIX time."""

    report: dict[str, Any]
    rows: int
    online: Any
    x: Any
    y: Any
    days: Any
    ts: Any
    accounts: list[int]


def load_stream(opts: argparse.Namespace) -> Stream:
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        work = opts.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data, rows = labelled_rows(work, opts.rows, opts.seed, opts.rate)
        report, score_file = backtest(data, work, "on", opts.label_delay)
        online_by_id = read_scores(score_file)
        online = np.array([online_by_id[r.transaction.id] for r in rows])
        vectors, day_list, accounts, label_list = model_inputs(rows, opts.label_delay)
    return Stream(
        report,
        len(rows),
        online,
        np.array(vectors),
        np.array(label_list),
        np.array(day_list) - day_list[0],
        np.array([r.transaction.timestamp.timestamp() for r in rows]),
        accounts,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    stream_arguments(parser, negatives=10)
    parser.add_argument("--kinds", default="lr,hgb,hgb-pairs,mlp", help=f"of {','.join(KINDS)}")
    opts = parser.parse_args()
    import numpy as np

    delay_s = parse_duration(opts.label_delay).total_seconds()
    report, n_rows, online, x, y, days, ts, accounts = load_stream(opts)
    first_test = 21
    print(f"{n_rows:,} rows, {int(y.sum()):,} frauds, {x.shape[1]} inputs")

    results: dict[str, dict[str, Any]] = {
        "online": metrics(days.tolist(), accounts, online.tolist(), y.tolist(), first_test)
    }
    rng = np.random.default_rng(0)
    for kind in opts.kinds.split(","):
        scores = online.copy()
        spent = 0.0
        for day in range(1, int(days.max()) + 1):
            today = np.flatnonzero(days == day)
            if not len(today):
                continue
            known = np.flatnonzero(ts <= ts[today[0]] - delay_s)
            frauds, legit = known[y[known] == 1], known[y[known] == 0]
            if len(frauds) < 10:
                continue
            keep = rng.choice(legit, min(len(legit), opts.negatives * len(frauds)), False)
            train = np.concatenate([frauds, keep])
            weights = np.where(y[train] == 1, 1.0, len(legit) / max(len(keep), 1))
            model = make(kind)
            started = time.perf_counter()
            fit(model, kind, x[train], y[train], weights)
            spent += time.perf_counter() - started
            scores[today] = predict(model, kind, x[today], len(legit) / max(len(keep), 1))
        results[f"daily-{kind}"] = metrics(
            days.tolist(), accounts, scores.tolist(), y.tolist(), first_test
        ) | {"fit_seconds": round(spent, 1)}
        print(f"  daily-{kind}: {results[f'daily-{kind}']}", flush=True)

    from sklearn.ensemble import RandomForestClassifier

    train = np.flatnonzero(days < 14)
    test = np.flatnonzero(days >= first_test)
    forest = RandomForestClassifier(
        n_estimators=100, max_depth=20, min_samples_leaf=2, n_jobs=1, random_state=0
    ).fit(x[train], y[train])
    forest_scores = online.copy()
    forest_scores[test] = forest.predict_proba(x[test])[:, 1]
    m = metrics(days.tolist(), accounts, forest_scores.tolist(), y.tolist(), first_test)
    results["forest"] = {
        "ap_days_22_30": m["ap_days_22_30"],
        "card_precision_at_100_days_22_30": m["card_precision_at_100_days_22_30"],
    }

    print("model            AP 30 d  AP d8-21  AP d22-30  card P@100 d22-30  fit s")
    for name, r in results.items():
        print(
            f"  {name:14} {r.get('ap_30_days', '—'):>7}  {r.get('ap_days_8_21', '—'):>8}  "
            f"{r['ap_days_22_30']:>9}  {r['card_precision_at_100_days_22_30']:>17}  "
            f"{r.get('fit_seconds', '—'):>5}"
        )
    path = write_results(
        "model-classes",
        {
            "rows": n_rows,
            "label_delay": opts.label_delay,
            "negatives_per_fraud": opts.negatives,
            "online_overall": report["overall"],
            "models": results,
        },
    )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
