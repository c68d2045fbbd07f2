"""How high can any model go on the online model's inputs? Upper bounds for card precision@100
and AP on days 22-30 of the seed-7 simulator stream, next to the product and the forest of
benchmarks/model.py.

The inputs are the online model's own (benchmarks/model.py's `model_inputs`: computed in one
pass as the detector sees them, labels revealed `--label-delay` after their transaction, so
inputs such as the merchant's fraud rate are what the detector knew). On those inputs:

- `online`: the product, `fraudwatch backtest --model on` (labels a week late, one pass);
- `forest, days 1-14`: benchmarks/model.py's random forest (100 trees, depth 20), trained on
  days 1-14, the handbook's split: what the issue's bar compares against;
- (a) `forest, days 1-21`: the same forest trained on days 1-21 with every label, none held
  back by the delay: the most a model fitted before the test days could know;
- (b) `forest, 5-fold on 22-30`: fitted on days 22-30 themselves, five folds grouped by
  account (each account's transactions scored by a forest that never saw that account):
  in-distribution, with labels no model at event time could have;
- (c) the same two with histogram gradient-boosted trees (scikit-learn's
  `HistGradientBoostingClassifier`, 200 rounds, 31 leaves), and boosted trees fitted on
  days 1-21 plus the other four folds of days 22-30 (the most labels of all).

Printed: AP, card precision@100 and its ceiling (each day's compromised cards, at most 100,
over 100) on days 22-30; then, for the bound with the highest card precision and for the
online model, which scenarios (the simulator's `scenario` column) the cards in each day's
top 100 come from, and which compromised cards each left out of it, summed over the days.

`--cache FILE.npz` keeps the stream's inputs and each model's scores as they are made (a
second run reads them; delete them after changing the detector); `--runs` picks models.
scikit-learn and numpy are the `bench` extra; this is never run by the tests.

    .venv/bin/python benchmarks/model_bound.py --keep /tmp/bt --cache /tmp/bt/bound.npz
    # ~40 minutes on 2 busy cores (the forests ~20 of it, each model on one thread)
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from backtest import labelled_rows  # noqa: E402
from model import backtest, model_inputs, read_scores, window_metrics  # noqa: E402
from results_file import write_results  # noqa: E402

from server.metrics_offline import card_precision_at_k, each_day  # noqa: E402

TRAIN_DAYS = 14  # model.py's split: train days 1-14, a week's delay, test days 22-30
FIRST_TEST_DAY = 21  # day 22, counting from 1
FOLDS = 5
K = 100
RUNS = ("forest-14", "forest-21", "forest-folds", "boosted-21", "boosted-folds", "boosted-all")


def load(opts: argparse.Namespace) -> dict[str, Any]:
    """The stream: the product's scores, every row's model inputs, day (from 0), account
    number, label and scenario. With `--cache`, read from (or written to) that .npz."""
    import numpy as np

    if opts.cache and opts.cache.exists():
        with np.load(opts.cache, allow_pickle=False) as f:
            return {name: f[name] for name in f.files}
    work = opts.keep
    work.mkdir(parents=True, exist_ok=True)
    data, rows = labelled_rows(work, opts.rows, opts.seed, opts.rate)
    _, score_file = backtest(data, work, "on", opts.label_delay)
    online_by_id = read_scores(score_file)
    vectors, days, accounts, labels = model_inputs(rows, opts.label_delay)
    with data.open(newline="") as f:
        scenario_of = {r["id"]: r.get("scenario") or "" for r in csv.DictReader(f)}
    stream = {
        "online": np.array([online_by_id[r.transaction.id] for r in rows]),
        "x": np.array(vectors),
        "y": np.array(labels),
        "days": np.array(days) - days[0],
        "accounts": np.array(accounts),
        "scenarios": np.array([scenario_of[r.transaction.id] for r in rows]),
    }
    if opts.cache:
        np.savez(opts.cache, **stream)
    return stream


def top_cards(
    days: Sequence[int], accounts: Sequence[int], scores: Sequence[float], labels: Sequence[int]
) -> list[tuple[int, list[int], set[int]]]:
    """Per day: the accounts in its top K and the compromised ones it missed (outside the
    top K), as `card_precision_at_k` ranks them (accounts detected on earlier days left
    out of both)."""
    detected: set[int] = set()
    out = []
    for day, (a, s, y) in each_day(days, accounts, scores, labels):
        cards = set(a) - detected
        compromised = {acc for acc, label in zip(a, y, strict=True) if label} - detected
        top: dict[int, None] = {}
        for i in sorted(range(len(s)), key=s.__getitem__, reverse=True):
            if a[i] in cards and a[i] not in top:
                top[a[i]] = None
                if len(top) == K:
                    break
        hits = {acc for acc in top if acc in compromised}
        detected.update(hits)
        out.append((day, list(top), compromised - hits))
    return out


def card_kinds(
    days: Sequence[int],
    accounts: Sequence[int],
    labels: Sequence[int],
    scenarios: Sequence[str],
) -> dict[tuple[int, int], str]:
    """What each (day, account) is: the scenario of most of its frauds that day, or for an
    account with none "legitimate" (with the scenario its legitimate rows belong to, if any:
    a bust-out still paying its way, a genuine big purchase)."""
    frauds: dict[tuple[int, int], Counter[str]] = {}
    legit: dict[tuple[int, int], Counter[str]] = {}
    for d, a, y, s in zip(days, accounts, labels, scenarios, strict=True):
        (frauds if y else legit).setdefault((d, a), Counter())[s] += 1
    kinds = {}
    for key, c in legit.items():
        named = [s for s, _ in c.most_common() if s]
        kinds[key] = "legitimate" + (f" ({named[0]})" if named else "")
    for key, c in frauds.items():
        kinds[key] = c.most_common(1)[0][0] or "fraud (no scenario)"
    return kinds


def breakdown(
    stream: dict[str, Any], test: Any, rankings: dict[str, Any]
) -> dict[str, dict[str, int]]:
    """Per kind of card (`card_kinds`), summed over the test days: how many of each ranking's
    top-K places it takes, how many of them the other ranking's top K does not hold, and
    how many compromised cards of that kind each ranking missed (not yet detected, not in
    its top K: what keeps it under the ceiling)."""
    days = stream["days"][test].tolist()
    accounts = stream["accounts"][test].tolist()
    labels = stream["y"][test].tolist()
    kinds = card_kinds(days, accounts, labels, stream["scenarios"][test].tolist())
    table: dict[str, dict[str, int]] = {}
    tops = {
        name: top_cards(days, accounts, s[test].tolist(), labels) for name, s in rankings.items()
    }
    for name, per_day in tops.items():
        for day, top, missed in per_day:
            for account in top:
                row = table.setdefault(kinds[(day, account)], {})
                row[name] = row.get(name, 0) + 1
            for account in missed:
                row = table.setdefault(kinds[(day, account)], {})
                row[f"missed by {name}"] = row.get(f"missed by {name}", 0) + 1
    first, second = list(tops)
    for (day, a, _), (_, b, _) in zip(tops[first], tops[second], strict=True):
        for only, mine, theirs in ((f"only {first}", a, b), (f"only {second}", b, a)):
            for account in set(mine) - set(theirs):
                row = table.setdefault(kinds[(day, account)], {})
                row[only] = row.get(only, 0) + 1
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rate", type=float, default=0.116)
    parser.add_argument("--label-delay", default="7d")
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--keep", type=Path, required=True, help="labelled.csv here (or made)")
    parser.add_argument("--cache", type=Path, help="read (or write) the stream's inputs here")
    parser.add_argument("--runs", default=",".join(RUNS), help=f"which models, of {','.join(RUNS)}")
    opts = parser.parse_args()
    chosen = opts.runs.split(",")
    if unknown := sorted(set(chosen) - set(RUNS)):
        parser.error(f"--runs: unknown {', '.join(unknown)} (of {', '.join(RUNS)})")
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.model_selection import GroupKFold
    from threadpoolctl import threadpool_limits

    started = time.perf_counter()
    stream = load(opts)
    x, y, days, accounts = stream["x"], stream["y"], stream["days"], stream["accounts"]
    print(
        f"{len(y):,} rows, {int(y.sum()):,} frauds, {x.shape[1]} inputs "
        f"({time.perf_counter() - started:.0f} s)"
    )
    test = np.flatnonzero(days >= FIRST_TEST_DAY)
    before = np.flatnonzero(days < FIRST_TEST_DAY)

    def forest() -> Any:
        return RandomForestClassifier(
            n_estimators=opts.trees, max_depth=20, min_samples_leaf=2, n_jobs=1, random_state=0
        )

    def boosted() -> Any:
        return HistGradientBoostingClassifier(
            max_iter=200, max_leaf_nodes=31, early_stopping=False, random_state=0
        )

    def fitted_on(train: Any, make: Callable[[], Any]) -> Any:
        scores = np.full(len(y), np.nan)
        scores[test] = make().fit(x[train], y[train]).predict_proba(x[test])[:, 1]
        return scores

    def folds(make: Callable[[], Any], also: Any) -> Any:
        """Each test row scored by a model fitted on `also` and the other folds of the test
        days, folds grouped by account."""
        scores = np.full(len(y), np.nan)
        for fit_part, score_part in GroupKFold(FOLDS).split(test, groups=accounts[test]):
            train = np.concatenate([also, test[fit_part]])
            model = make().fit(x[train], y[train])
            scores[test[score_part]] = model.predict_proba(x[test[score_part]])[:, 1]
        return scores

    none = np.array([], dtype=int)
    every: dict[str, tuple[str, Callable[[], Any]]] = {
        "forest-14": (
            "forest, days 1-14 (model.py)",
            lambda: fitted_on(np.flatnonzero(days < TRAIN_DAYS), forest),
        ),
        "forest-21": ("(a) forest, days 1-21, every label", lambda: fitted_on(before, forest)),
        "forest-folds": ("(b) forest, 5-fold on days 22-30", lambda: folds(forest, none)),
        "boosted-21": (
            "(c) boosted, days 1-21, every label",
            lambda: fitted_on(before, boosted),
        ),
        "boosted-folds": ("(c) boosted, 5-fold on days 22-30", lambda: folds(boosted, none)),
        "boosted-all": (
            "(c) boosted, days 1-21 + 5-fold on 22-30",
            lambda: folds(boosted, before),
        ),
    }
    rankings: dict[str, Any] = {"online model (the product)": stream["online"]}
    seconds: dict[str, float] = {}
    for key in chosen:
        name, run = every[key]
        # With --cache, each model's scores are kept beside the inputs as they are made: a
        # run stopped half-way keeps the models it fitted.
        kept = opts.cache.with_name(f"{opts.cache.stem}-{key}.npy") if opts.cache else None
        if kept is not None and kept.exists():
            rankings[name] = np.load(kept)
            print(f"  {name}: scores read from {kept}")
            continue
        started = time.perf_counter()
        # One thread: the boosted trees' OpenMP threads, on cores shared with other work,
        # spend most of their time waiting for each other.
        with threadpool_limits(1):
            rankings[name] = run()
        seconds[name] = round(time.perf_counter() - started, 1)
        print(f"  fitted {name} in {seconds[name]:.0f} s")
        if kept is not None:
            np.save(kept, rankings[name])

    t_days, t_accounts, t_labels = days[test].tolist(), accounts[test].tolist(), y[test].tolist()
    window = {
        name: window_metrics(t_days, t_accounts, s[test].tolist(), t_labels)
        | {"card_precision_at_100_by_day": [
            round(c.precision, 2)
            for c in card_precision_at_k(t_days, t_accounts, s[test].tolist(), t_labels, K)
        ]}
        | ({"fit_seconds": seconds[name]} if name in seconds else {})
        for name, s in rankings.items()
    }  # fmt: skip
    print(f"days 22-30 ({len(test):,} tx, {sum(t_labels):,} frauds):")
    for name, m in window.items():
        print(
            f"  {name:42} AP {m['average_precision']:.4f}  card P@100 "
            f"{m['card_precision_at_100']:.4f} (ceiling {m['card_precision_at_100_ceiling']:.4f})"
        )

    bounds = [name for name in rankings if name.startswith("(")] or list(rankings)[1:]
    best = max(bounds, key=lambda name: window[name]["card_precision_at_100"])
    pair = {"online": rankings["online model (the product)"], "bound": rankings[best]}
    table = breakdown(stream, test, pair)
    columns = (
        "online",
        "bound",
        "only online",
        "only bound",
        "missed by online",
        "missed by bound",
    )
    print(f"top-{K} cards by kind, days 22-30 summed; bound = {best}:")
    print(f"  {'kind':36}" + "".join(f"{c:>17}" for c in columns))
    for kind, row in sorted(table.items(), key=lambda kv: -kv[1].get("bound", 0)):
        print(f"  {kind:36}" + "".join(f"{row.get(c, 0):>17}" for c in columns))

    path = write_results(
        "model-bound",
        {
            "label_delay": opts.label_delay,
            "inputs": int(x.shape[1]),
            "test_window": window,
            "breakdown_bound": best,
            "breakdown": table,
        },
    )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
