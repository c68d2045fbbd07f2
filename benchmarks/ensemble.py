"""Would trees next to the online model beat the forest on card precision? The online model,
gradient-boosted trees refitted every day, their blends, and the offline random forest on
days 22-30 of the seed-7 simulator stream.

The same protocol as benchmarks/model_classes.py: the online model is `fraudwatch backtest`
(the product, calibrated); the inputs are the online model's own, computed in one pass as
the detector sees them with labels revealed `--label-delay` after their transaction; at
each midnight of the test days, histogram gradient boosting is fitted on every label known
by then (legitimate ones downsampled to `--negatives` per fraud, weighted back); the forest
is benchmarks/model.py's, trained once on days 1-14. Blends: the mean of the two models'
logits with the online model's share, and the mean of the online model's and the forest's
probabilities. Printed: AP and card precision@100 on days 22-30.

The question it answers: is "card precision@100 clearly above an offline random forest"
within reach by adding a refitted tree model (the next step docs/model.md names)?

scikit-learn and numpy are the `bench` extra; this is never run by the tests.

    .venv/bin/python benchmarks/ensemble.py --keep /tmp/bt          # ~4 minutes
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from model_classes import load_stream, stream_arguments  # noqa: E402
from results_file import write_results  # noqa: E402

from server.backtest import parse_duration  # noqa: E402
from server.metrics_offline import average_precision, card_precision_at_k, mean  # noqa: E402

FIRST_TEST_DAY = 21  # day 22, counting from 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    stream_arguments(parser, negatives=20)
    opts = parser.parse_args()
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier

    delay_s = parse_duration(opts.label_delay).total_seconds()
    _, n_rows, online, x, y, days, ts, accounts = load_stream(opts)
    test = np.flatnonzero(days >= FIRST_TEST_DAY)

    def figures(scores: Any) -> dict[str, float]:
        s, labels = scores[test].tolist(), y[test].tolist()
        cards = card_precision_at_k(
            days[test].tolist(), [accounts[i] for i in test], s, labels, 100
        )
        return {
            "ap_days_22_30": round(average_precision(s, labels) or 0.0, 4),
            "card_precision_at_100_days_22_30": round(mean([c.precision for c in cards]) or 0.0, 4),
        }

    rng = np.random.default_rng(0)
    trees = online.copy()
    started = time.perf_counter()
    for day in range(FIRST_TEST_DAY, int(days.max()) + 1):
        today = np.flatnonzero(days == day)
        known = np.flatnonzero(ts <= ts[today[0]] - delay_s)
        frauds, legit = known[y[known] == 1], known[y[known] == 0]
        keep = rng.choice(legit, min(len(legit), opts.negatives * len(frauds)), False)
        train = np.concatenate([frauds, keep])
        weights = np.where(y[train] == 1, 1.0, len(legit) / max(len(keep), 1))
        model = HistGradientBoostingClassifier(max_iter=200, random_state=0)
        model.fit(x[train], y[train], sample_weight=weights)
        trees[today] = model.predict_proba(x[today])[:, 1]
    fit_s = time.perf_counter() - started
    train = np.flatnonzero(days < 14)
    forest_model = RandomForestClassifier(
        n_estimators=100, max_depth=20, min_samples_leaf=2, n_jobs=1, random_state=0
    ).fit(x[train], y[train])
    forest = online.copy()
    forest[test] = forest_model.predict_proba(x[test])[:, 1]

    def logit(p: Any) -> Any:
        p = np.clip(p, 1e-6, 1 - 1e-6)
        return np.log(p / (1 - p))

    results: dict[str, dict[str, float]] = {
        "online": figures(online),
        "daily-trees": figures(trees) | {"fit_seconds": round(fit_s, 1)},
        "forest": figures(forest),
    }
    for share in (0.3, 0.5):
        blend = 1 / (1 + np.exp(-(share * logit(online) + (1 - share) * logit(trees))))
        results[f"logit-mean-online-{share}"] = figures(blend)
    results["mean-online-forest"] = figures(0.5 * online + 0.5 * forest)
    print("days 22-30                     AP     card P@100")
    for name, r in results.items():
        print(f"  {name:26} {r['ap_days_22_30']:.4f}  {r['card_precision_at_100_days_22_30']:.4f}")
    path = write_results(
        "ensemble",
        {
            "rows": n_rows,
            "label_delay": opts.label_delay,
            "negatives_per_fraud": opts.negatives,
            "models": results,
        },
    )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
