"""What a corrected label costs the online model, and what taking the earlier one back buys.

A label can be replaced (an analyst's mis-click corrected, a chargeback reversed). This
replays the online learner (`OnlineLogit`) over the model inputs of the simulator's seed-7
stream (benchmarks/backtest.py's, computed in one pass as the detector sees them with a
7-day label delay: benchmarks/model.py's `model_inputs`), scoring each day's transactions
with the model as it stood that morning and learning the labels revealed that day. A
fraction of the labels is first given wrong (the other class) and corrected --lag days
later; the same transactions for every variant, drawn with a fixed seed:

- `never wrong`: the correct label only, a week after the transaction (the reference);
- `wrong not learnt`: the wrong label never learnt, its correction learnt when it comes:
  more than any take-back can recover, since the wrong label is never in the model;
- `today`: the wrong label learnt, then the correction learnt as one more example (what
  the server did before the corrections were taken back);
- `take back` (the server's now): the correction first takes the wrong label out of the
  model's counters and scaling statistics (`OnlineLogit.take_back`), then learns the new
  one: the weights are not stepped back;
- `reverse step` (tried, not kept): as `take back`, and the weights also take the negative
  of the wrong example's gradient at their current values, with each weight's AdaGrad step
  size as it stands (no L2, the squared-gradient sums left as they are).

With --sample S below 1, only some transactions get a label (each with probability S, a
fraud with 10 S, at most 1), as where analysts' resolutions of alerts are the only labels: a
few hundred a day, so the model learns much less between a label and its correction.

Printed per variant: AP, ROC AUC and card precision@100 on days 8-21 and 22-30, the
model's `frauds` and `count` at the end, and AP as a ratio to `today`'s of the same
fraction. Run by hand, not a test; no scikit-learn needed.

    .venv/bin/python benchmarks/label_corrections.py --keep /tmp/bt     # ~2 minutes
    .venv/bin/python benchmarks/label_corrections.py --keep /tmp/bt --lag 1 --sample 0.02
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from itertools import compress
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from backtest import labelled_rows  # noqa: E402
from model import model_inputs, window_metrics  # noqa: E402
from results_file import write_results  # noqa: E402

from server.detection.model import OnlineLogit, sigmoid  # noqa: E402

VARIANTS = ("never wrong", "wrong not learnt", "today", "take back", "reverse step")
WINDOWS = ((8, 21), (22, 30))


def reverse_step(model: OnlineLogit, x: Sequence[float], is_fraud: bool) -> None:
    """The weights' half of unlearning an example of weight 1, as first designed: the
    negative of its gradient at the current weights, AdaGrad's current step sizes."""
    active = [(i, x[i] * model.scale[i]) for i in compress(range(len(x)), x)]
    w, g2, lr = model.w, model.g2, model.learning_rate
    err = sigmoid(model.b + sum(w[i] * z for i, z in active)) - (1.0 if is_fraud else 0.0)
    for i, z in active:
        w[i] += lr * err * z / math.sqrt(g2[i])
    model.b += lr * err / math.sqrt(model.g2b)


def replay(
    vectors: Sequence[list[float]],
    days: Sequence[int],
    labels: Sequence[int],
    labelled: set[int] | None,
    wrong: set[int],
    variant: str,
    delay: int,
    lag: int,
) -> tuple[list[float], OnlineLogit]:
    """Each row's logit from the model of its morning; labels come `delay` days after
    their transaction (if it is `labelled`; None: all are), corrections of the `wrong` ones
    `lag` days after that."""
    model = OnlineLogit()
    due: defaultdict[int, list[tuple[bool, int]]] = defaultdict(list)  # (correction?, row)
    scores: list[float] = []
    today = None
    predictor = model.freeze()
    for n, x in enumerate(vectors):
        if days[n] != today:
            today = days[n]
            for correction, i in due.pop(today, ()):
                truth = bool(labels[i])
                if not correction:
                    if i not in wrong or variant == "never wrong":
                        model.learn_one(vectors[i], truth)
                    elif variant != "wrong not learnt":
                        model.learn_one(vectors[i], not truth)
                    continue
                if variant in ("take back", "reverse step"):
                    model.take_back(vectors[i], not truth)
                    if variant == "reverse step":
                        reverse_step(model, vectors[i], not truth)
                model.learn_one(vectors[i], truth)
            predictor = model.freeze()
        scores.append(predictor.logit(x))
        if labelled is not None and n not in labelled:
            continue
        due[days[n] + delay].append((False, n))
        if n in wrong and variant != "never wrong":
            due[days[n] + delay + lag].append((True, n))
    return scores, model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rate", type=float, default=0.116)
    parser.add_argument("--fractions", default="0.02,0.1", help="labels first given wrong")
    parser.add_argument("--lag", type=int, default=7, help="days from a wrong label to its fix")
    parser.add_argument("--sample", type=float, default=1.0, help="share of labelled tx")
    parser.add_argument("--keep", type=Path, help="write (or reuse) labelled.csv here and keep it")
    opts = parser.parse_args()
    fractions = [float(f) for f in opts.fractions.split(",")]
    delay = 7

    with tempfile.TemporaryDirectory() as tmp:
        work = opts.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        _, rows = labelled_rows(work, opts.rows, opts.seed, opts.rate)
        vectors, days, accounts, labels = model_inputs(rows, f"{delay}d")
        print(
            f"{len(rows):,} rows, {sum(labels):,} frauds; inputs in "
            f"{time.perf_counter() - started:.0f} s; labels {delay} days late, wrong ones "
            f"corrected {opts.lag} days after that"
        )
    first = days[0]
    windows = {
        f"days {a}-{b}": [i for i, d in enumerate(days) if a <= d - first + 1 <= b]
        for a, b in WINDOWS
    }

    def measure(scores: Sequence[float]) -> dict[str, dict[str, float | None]]:
        return {
            name: window_metrics(
                [days[i] for i in idx],
                [accounts[i] for i in idx],
                [scores[i] for i in idx],
                [labels[i] for i in idx],
            )
            for name, idx in windows.items()
        }

    labelled = None
    if opts.sample < 1.0:
        pick = random.Random(f"{opts.seed}-sample")
        labelled = {
            i for i, y in enumerate(labels) if pick.random() < opts.sample * (10 if y else 1)
        }
        print(
            f"labelled: {len(labelled):,} transactions, {sum(labels[i] for i in labelled):,} frauds"
        )
    rows_labelled = sorted(labelled) if labelled is not None else range(len(labels))
    results: dict[str, Any] = {
        "lag_days": opts.lag,
        "delay_days": delay,
        "sample": opts.sample,
        "fractions": {},
    }
    reference: dict[str, Any] | None = None
    for fraction in fractions:
        # The same wrong labels for every variant of this fraction.
        draw = random.Random(f"{opts.seed}-{fraction}")
        wrong = {i for i in rows_labelled if draw.random() < fraction}
        flipped_frauds = sum(labels[i] for i in wrong)
        # Wrong labels learnt whose correction has not come by the end: honest counters
        # are the reference's frauds plus those given as fraud, less those given as not.
        last = days[-1]
        pending = [i for i in wrong if days[i] + delay <= last < days[i] + delay + opts.lag]
        net = sum(1 - 2 * labels[i] for i in pending)
        print(
            f"\n{fraction:.0%} of labels first wrong: {len(wrong):,} "
            f"({flipped_frauds:,} frauds first given as legitimate); {len(pending):,} still "
            f"wrong at the end, {net:+,} frauds on the counter for them"
        )
        figures: dict[str, Any] = {}
        for variant in VARIANTS:
            if variant == "never wrong" and reference is not None:
                figures[variant] = reference  # the same run whatever the fraction
                continue
            started = time.perf_counter()
            scores, model = replay(vectors, days, labels, labelled, wrong, variant, delay, opts.lag)
            figures[variant] = {
                "windows": measure(scores),
                "frauds": model.frauds,
                "count": model.count,
                "seconds": round(time.perf_counter() - started, 1),
            }
            if variant == "never wrong":
                reference = figures[variant]
        baseline = figures["today"]["windows"]
        for variant in VARIANTS:
            f = figures[variant]
            parts = []
            for name, m in f["windows"].items():
                ap = m["average_precision"] or 0.0
                ratio = ap / (baseline[name]["average_precision"] or 1.0)
                parts.append(
                    f"{name}: AP {ap:.4f} (×{ratio:.3f}) AUC {m['roc_auc']:.4f} "
                    f"card P@100 {m['card_precision_at_100']:.4f}"
                )
            print(
                f"  {variant:16} {' | '.join(parts)} | frauds {f['frauds']:,} "
                f"count {f['count']:,} ({f['seconds']:.0f} s)"
            )
        figures["pending_corrections"] = {"labels": len(pending), "net_frauds": net}
        results["fractions"][str(fraction)] = figures
    path = write_results("label-corrections", results)
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
