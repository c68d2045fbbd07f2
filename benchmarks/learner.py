"""How much the online model depends on which legitimate labels its sampler kept.

Where every transaction is labelled, the model learns every fraud and a sample of the
legitimate labels, each weighted by what it stands for (`NegativeSampler`, --ratio per fraud).
Which ones are kept is a hash of the transaction id: another stream, or the same one with
other ids, keeps others. This trains the learner (`OnlineLogit`) as the detector would, in
event order on the labels known before a test window, once per sample (the ids salted) and
once on every label, and prints the test window's AP and card precision@100 for each.

Streams (the model's own inputs, computed in one pass as the detector sees them with a
7-day label delay):
- `handbook`: benchmarks/handbook.py's stream (60 days, 0.7 % fraud), its split: labels of
  days 1-47 learnt, days 54-60 tested without the customers already known compromised;
- `simulator`: benchmarks/backtest.py's seed-7 stream (30 days, 2.1 % fraud): labels of
  days 1-14 learnt, days 22-30 tested.

Run it on two commits to compare learners (it only imports `server` from its own
checkout). scikit-learn is not needed; numpy is (the `bench` extra).

    .venv/bin/python benchmarks/learner.py --keep /tmp/learner     # ~3 minutes
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import backtest  # noqa: E402
import handbook  # noqa: E402
import streams  # noqa: E402
from model import model_inputs, window_metrics  # noqa: E402
from results_file import write_results  # noqa: E402

from server.detection.model import NegativeSampler, OnlineLogit  # noqa: E402
from server.replay_source import Row, Source, SourceOptions  # noqa: E402

SALTS = ("", "-a", "-b", "-c")

Metrics = Callable[[Sequence[float]], dict[str, float | None]]


def train_and_test(
    vectors: Sequence[list[float]],
    labels: Sequence[int],
    learn: Sequence[int],
    test: Sequence[int],
    metrics: Metrics,
    ratio: float,
    salt: str,
) -> dict[str, float | None]:
    model = OnlineLogit()
    sampler = NegativeSampler(ratio)
    for i in learn:
        fraud = bool(labels[i])
        if weight := sampler.weight(f"{i}{salt}", fraud):
            model.learn_one(vectors[i], fraud, weight)
    predictor = model.freeze()
    return metrics([predictor.predict_proba(vectors[i]) for i in test])


def handbook_case(work: Path) -> tuple[list[list[float]], list[int], list[int], list[int], Metrics]:
    start = dt.datetime(2018, 4, 1)
    data = work / "handbook.csv"
    if not data.exists():
        handbook.write_csv(handbook.generate(5_000, 10_000, 5.0, start, 60, 0), data)
    stream = handbook.read_csv(data, start)
    mapping = dict(pair.split("=", 1) for pair in handbook.MAPPING)
    with Source(data, SourceOptions(mapping=mapping, label="TX_FRAUD")) as source:
        rows = [item for item in source if isinstance(item, Row)]
    vectors, _, _, labels = model_inputs(rows, "7d")
    # Rows refused by validation (amount 0.00) have no inputs: index by TRANSACTION_ID.
    position = {int(r.transaction.id): n for n, r in enumerate(rows)}
    _, test = handbook.split(stream, 39, 7, 7, 7)
    test = [position[i] for i in test if i in position]
    every_day = stream.days  # computed per call
    days = [every_day[int(r.transaction.id)] for r in rows]
    cards = [stream.customers[int(r.transaction.id)] for r in rows]
    learn = [n for n, d in enumerate(days) if d <= 46]

    def metrics(scores: Sequence[float]) -> dict[str, float | None]:
        return streams.ranking(
            [days[i] for i in test], [cards[i] for i in test], scores, [labels[i] for i in test]
        )

    return vectors, labels, learn, test, metrics


def simulator_case(
    work: Path,
) -> tuple[list[list[float]], list[int], list[int], list[int], Metrics]:
    _, rows = backtest.labelled_rows(work)
    vectors, days, accounts, labels = model_inputs(rows, "7d")
    first = days[0]
    learn = [n for n, d in enumerate(days) if d - first <= 13]
    test = [n for n, d in enumerate(days) if 21 <= d - first <= 29]

    def metrics(scores: Sequence[float]) -> dict[str, float | None]:
        return window_metrics(
            [days[i] for i in test],
            [accounts[i] for i in test],
            scores,
            [labels[i] for i in test],
        )

    return vectors, labels, learn, test, metrics


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, required=True, help="data is written/reused here")
    parser.add_argument(
        "--ratio", type=float, default=NegativeSampler().ratio, help="legitimate per fraud"
    )
    opts = parser.parse_args()
    opts.keep.mkdir(parents=True, exist_ok=True)
    figures: dict[str, dict[str, dict[str, float | None]]] = {}
    for name, case in (("handbook", handbook_case), ("simulator", simulator_case)):
        started = time.perf_counter()
        vectors, labels, learn, test, metrics = case(opts.keep)
        print(f"{name}: inputs of {len(vectors):,} rows in {time.perf_counter() - started:.0f} s")
        runs = {}
        for salt in SALTS:
            runs[f"sample{salt or ' (ids as they are)'}"] = train_and_test(
                vectors, labels, learn, test, metrics, opts.ratio, salt
            )
        runs["every label"] = train_and_test(vectors, labels, learn, test, metrics, 0.0, "")
        for run, m in runs.items():
            print(
                f"  {run:26} AP {m['average_precision']:.4f}  "
                f"card P@100 {m['card_precision_at_100']:.4f}"
            )
        figures[name] = runs
    print(f"results: {write_results('learner', figures)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
