"""What the independent-stream benchmarks (handbook.py, sparkov.py) share: running
`fraudwatch backtest` on a generated file as a black box, fitting the offline baselines on a
train/test split, and ranking a test window's scores by the issue's metrics."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.metrics_offline import average_precision, card_precision_at_k, mean, roc_auc  # noqa: E402

K = 100


def run_backtest(
    data: Path, report: Path, scores: Path, label: str, delay_days: int, model: str,
    mapping: Sequence[str], options: Sequence[str] = (),
) -> dict[str, Any]:  # fmt: skip
    """`fraudwatch backtest` in a fresh process, as a user runs it, with `options` added
    (`--time-unit h`); its JSON report."""
    args = [sys.executable, "-m", "server", "backtest", str(data), "--label", label,
            "--label-delay", f"{delay_days}d", "--timezone", "UTC", "--model", model,
            "--report", str(report), "--scores-out", str(scores)]  # fmt: skip
    for pair in mapping:
        args += ["--map", pair]
    args += options
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"backtest failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(report.read_text())
    return result


def fit_baselines(
    x: np.ndarray, labels: Sequence[int] | np.ndarray, train: Sequence[int] | np.ndarray,
    test: Sequence[int] | np.ndarray, models: Mapping[str, Any],
) -> dict[str, tuple[np.ndarray, float]]:  # fmt: skip
    """Each scikit-learn model's test scores and fit time, inputs standardised on the
    training rows."""
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x[train])
    x_train, x_test = scaler.transform(x[train]), scaler.transform(x[test])
    y_train = np.asarray(labels)[np.asarray(train, dtype=int)]
    out = {}
    for name, model in models.items():
        started = time.perf_counter()
        model.fit(x_train, y_train)
        out[name] = (model.predict_proba(x_test)[:, 1], time.perf_counter() - started)
    return out


def ranking(
    days: Sequence[int], cards: Sequence[int], scores: Sequence[float], labels: Sequence[int]
) -> dict[str, float | None]:
    """AP, ROC AUC and card precision@K (with its ceiling) of one window's scores."""
    per_day = card_precision_at_k(days, cards, scores, labels, K)
    ap, auc = average_precision(scores, labels), roc_auc(scores, labels)
    return {
        "average_precision": None if ap is None else round(ap, 4),
        "roc_auc": None if auc is None else round(auc, 4),
        "card_precision_at_100": round(mean([c.precision for c in per_day]) or 0.0, 4),
        "card_precision_at_100_ceiling": round(
            mean([min(c.compromised, K) / K for c in per_day]) or 0.0, 4
        ),
    }


Breakdown = Callable[[np.ndarray, np.ndarray, np.ndarray], dict[str, Any]]
"""A stream's own figures for some rows (indices), their scores and alerts (e.g. recall per
fraud pattern): each script keeps its own."""


def compare_window(
    runs: Iterable[str],
    scored: Mapping[str, tuple[np.ndarray, np.ndarray, Any]],
    models: Mapping[str, tuple[np.ndarray, float]],
    test: np.ndarray,
    test_rows: tuple[Sequence[int], Sequence[int], Sequence[int]],
    breakdown: Breakdown,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Each fraudwatch run (scores and alerts per row, by tag) and each baseline (test
    scores, fit seconds) ranked on the test window (`test_rows`: its days, cards and
    labels), and `breakdown` of each: over all days and the test days for the runs, the
    test days for the baselines (alerting at p >= 0.5)."""
    t_days, t_cards, t_labels = test_rows
    window: dict[str, dict[str, Any]] = {}
    patterns: dict[str, dict[str, Any]] = {}
    for tag in runs:
        scores, alerts, _ = scored[tag]
        name = f"fraudwatch_model_{tag}"
        window[name] = ranking(t_days, t_cards, scores[test].tolist(), t_labels)
        patterns[f"{name}_all_days"] = breakdown(np.arange(len(scores)), scores, alerts)
        patterns[f"{name}_test_days"] = breakdown(test, scores[test], alerts[test])
    for name, (t_scores, fit_s) in models.items():
        window[name] = ranking(t_days, t_cards, t_scores.tolist(), t_labels) | {
            "fit_s": round(fit_s, 1)
        }
        patterns[f"{name}_test_days"] = breakdown(test, t_scores, t_scores >= 0.5)
    return window, patterns


def print_window(
    overall: Mapping[str, Mapping[str, Any]],
    window: Mapping[str, Mapping[str, Any]],
    days: tuple[int, int],
    width: int = 40,
) -> None:
    """The table the stream scripts print: each fraudwatch run's report over all days (by
    label), then every ranker on the test window (`days`: first and last)."""
    print(f"\n{'':{width}}{'AP':>7}{'ROC AUC':>9}{'card P@100':>12}")
    for label, o in overall.items():
        print(
            f"{label:{width}}{o['average_precision']:>7.3f}"
            f"{o['roc_auc']:>9.3f}{o['card_precision_at_k']:>12.3f}"
        )
    ceiling = window["random_forest"]["card_precision_at_100_ceiling"]
    print(f"test days {days[0]}-{days[1]} (card P@100 ceiling {ceiling:.3f}):")
    for name, m in window.items():
        print(
            f"  {name:{width - 2}}{m['average_precision']:>7.3f}{m['roc_auc']:>9.3f}"
            f"{m['card_precision_at_100']:>12.3f}"
        )
