"""What the independent-stream benchmarks (handbook.py, sparkov.py, paysim.py, banksim.py)
share: their common options and working folder, a generated stream kept as CSV and arrays,
running `fraudwatch backtest` on the file as a black box and reading its scores back, the
baselines' split and fits, ranking a test window's scores by the issue's metrics, the tables
they print and the results file. Each script keeps its stream, its columns and mapping, its
features and its own analyses."""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from results_file import write_results  # noqa: E402

from server.metrics_offline import (  # noqa: E402
    average_precision,
    card_precision_at_k,
    mean,
    roc_auc,
    top_k,
)

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

K = 100
S = TypeVar("S", bound="DataclassInstance")


def add_common_options(
    parser: argparse.ArgumentParser, name: str, train_days: int, test_days: int
) -> None:
    """The options every stream script takes after its own: the baselines' days, the
    forest's trees and --keep (`name`.csv)."""
    parser.add_argument("--train-days", type=int, default=train_days)
    parser.add_argument("--delay-days", type=int, default=7, help="also the backtest's")
    parser.add_argument("--test-days", type=int, default=test_days)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--keep", type=Path, help=f"write (or reuse) {name}.csv here and keep it")


def first_train_day(opts: argparse.Namespace, before: int) -> int:
    """The day training starts, --train-days, --delay-days and --test-days before the end of
    --days; refused unless it leaves `before` days (a feature window's) ahead of it."""
    train_from: int = opts.days - opts.train_days - opts.delay_days - opts.test_days
    if train_from < before:
        raise SystemExit(
            f"--days {opts.days} leaves {train_from} days before training, want {before}"
        )
    return train_from


@contextlib.contextmanager
def work_dir(keep: Path | None) -> Iterator[Path]:
    """--keep's folder (made if need be), or a temporary one removed afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        work = keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        yield work


def save_arrays(stream: DataclassInstance, path: Path) -> None:
    """A stream dataclass whose fields are numpy arrays, as one .npz."""
    np.savez(path, **{f.name: getattr(stream, f.name) for f in fields(stream)})


def load_arrays(kind: type[S], path: Path) -> S:
    """The stream `save_arrays` wrote."""
    z = np.load(path)
    return kind(**{f.name: z[f.name] for f in fields(kind)})


def generated_or_kept(
    data: Path, saved: Path, generate: Callable[[], S], write_csv: Callable[[S, Path], None],
    kind: type[S],
) -> tuple[S, str]:  # fmt: skip
    """The stream behind `data` (the CSV) and `saved` (its arrays): read back when both are
    there (an earlier run's --keep), else generated and written; and how, for the data line."""
    started = time.perf_counter()
    if data.exists() and saved.exists():
        return load_arrays(kind, saved), f"read from {saved}"
    stream = generate()
    generated = time.perf_counter() - started
    write_csv(stream, data)
    save_arrays(stream, saved)
    written = time.perf_counter() - started - generated
    return stream, f"generated in {generated:.0f} s, written in {written:.0f} s"


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


Scored = tuple[np.ndarray, np.ndarray, list[int]]
"""Per row its score and whether it alerted (review or block), and the rows not scored
(they count as 0 and not alerted, as a refused payment would)."""


def read_scores(path: Path, n: int, row: Callable[[str], int]) -> Scored:
    """A backtest's --scores-out for a file of `n` rows; `row` gives a transaction id's."""
    scores, alerts = np.zeros(n), np.zeros(n, dtype=bool)
    seen = np.zeros(n, dtype=bool)
    with path.open(newline="") as f:
        reader = csv.reader(f)
        next(reader)
        for tx_id, score, decision in reader:
            i = row(tx_id)
            scores[i], alerts[i], seen[i] = float(score), decision != "allow", True
    return scores, alerts, np.flatnonzero(~seen).tolist()


def row_number(tx_id: str) -> int:
    """The row of a file without an id column, whose ids the backtest numbers from 1."""
    return int(tx_id) - 1


@dataclass
class Backtests:
    """The backtest runs on one file, by tag: each one's model and mapping, report, scores
    and wall time."""

    runs: Mapping[str, tuple[str, Sequence[str]]]
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    scored: dict[str, Scored] = field(default_factory=dict)
    wall: dict[str, float] = field(default_factory=dict)

    def notes(self, *more: str) -> dict[str, Any]:
        """What the "on" run's report says of the file, for the data's figures."""
        meta = self.reports["on"]["meta"]
        keys = {"backtest_notes": "notes", "invalid_rows": "invalid_rows"} | {k: k for k in more}
        return {name: meta.get(key) for name, key in keys.items()}

    def overall(self) -> dict[str, dict[str, Any]]:
        """Each run's report over all days, labelled for print_window."""
        return {f"fraudwatch {tag}, all days": self.reports[tag]["overall"] for tag in self.runs}

    def figures(self) -> dict[str, Any]:
        """What the results file keeps of the runs."""
        return {
            "mapping": {tag: list(m) for tag, (_, m) in self.runs.items()},
            **report_figures(self.reports),
            "backtest_wall_s": {t: round(s) for t, s in self.wall.items()},
        }


def run_backtests(
    data: Path, work: Path, runs: Mapping[str, tuple[str, Sequence[str]]], label: str,
    delay_days: int, scores_of: Callable[[Path], Scored], options: Sequence[str] = (),
) -> Backtests:  # fmt: skip
    """Each run (tag: model and mapping) on `data`, its line printed, then the "on" run's
    notes; reports and scores kept in `work`."""
    done = Backtests(runs)
    for tag, (model, mapping) in runs.items():
        report, scores = work / f"report-model-{tag}.json", work / f"scores-model-{tag}.csv"
        started = time.perf_counter()
        done.reports[tag] = run_backtest(
            data, report, scores, label, delay_days, model, mapping, options
        )
        done.wall[tag] = time.perf_counter() - started
        done.scored[tag] = scores_of(scores)
        o = done.reports[tag]["overall"]
        print(
            f"backtest {tag}: AP {o['average_precision']}, ROC AUC {o['roc_auc']}, "
            f"card P@100 {o['card_precision_at_k']} (of {o['card_precision_at_k_ceiling']}), "
            f"alerts {o['alerts']:,} (precision {o['alert_precision']}, recall "
            f"{o['alert_recall']}); {done.reports[tag]['throughput']['tx_per_s']:,} tx/s, "
            f"{done.wall[tag]:.0f} s wall; {len(done.scored[tag][2])} rows not scored"
        )
    notes = done.notes()
    print(f"notes: {notes['backtest_notes']}; invalid {notes['invalid_rows']}")
    return done


def report_figures(reports: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """What the results file keeps of each run's report."""
    return {
        "overall": {t: r["overall"] for t, r in reports.items()},
        "backtest_meta": {t: r["meta"] for t, r in reports.items()},
        "throughput": {t: r["throughput"] for t, r in reports.items()},
    }


@dataclass(frozen=True)
class Split:
    """The baselines' rows, trained on and tested on, and their days (first, last) as the
    script numbers them, with --delay-days unused between."""

    train: np.ndarray
    test: np.ndarray
    train_days: tuple[int, int]
    test_days: tuple[int, int]
    delay_days: int

    @classmethod
    def of(
        cls, train: Sequence[int] | np.ndarray, test: Sequence[int] | np.ndarray,
        train_from: int, opts: argparse.Namespace, first_day: int = 1,
    ) -> Split:  # fmt: skip
        """`train` and `test` rows, their days from `train_from` and the options' lengths;
        `first_day`: the number the stream's first day goes by."""
        test_from = train_from + opts.train_days + opts.delay_days
        return cls(
            np.asarray(train, dtype=int),
            np.asarray(test, dtype=int),
            (train_from + first_day, train_from + opts.train_days - 1 + first_day),
            (test_from + first_day, test_from + opts.test_days - 1 + first_day),
            opts.delay_days,
        )

    def describe(self, labels: np.ndarray, seconds: float, left_out: str = "") -> str:
        """The scripts' "baselines:" line; `left_out`: what the test days leave out."""
        train, test = self.train, self.test
        return (
            f"baselines: trained on days {self.train_days[0]}-{self.train_days[1]} "
            f"({len(train):,} tx, {int(labels[train].sum()):,} frauds), tested on days "
            f"{self.test_days[0]}-{self.test_days[1]} ({len(test):,} tx, "
            f"{int(labels[test].sum()):,} frauds{left_out}); features and fits {seconds:.0f} s"
        )

    def figures(self, labels: np.ndarray | None) -> dict[str, Any]:
        """The split for the results file, with the test frauds unless `labels` is None
        (handbook.py's file never had them)."""
        out = {
            "train_days": list(self.train_days),
            "delay_days": self.delay_days,
            "test_days": list(self.test_days),
            "train_rows": len(self.train),
            "test_rows": len(self.test),
        }
        return out if labels is None else out | {"test_frauds": int(labels[self.test].sum())}


def baseline_split(
    days: np.ndarray, keys: np.ndarray, fraud: np.ndarray, train_from: int,
    opts: argparse.Namespace, first_day: int = 1,
) -> Split:  # fmt: skip
    """Train on --train-days from `train_from`, then --delay-days unused, then test on
    --test-days, each test day leaving out the `keys` (card, customer, account) with a fraud
    known by then (on a day at least the delay earlier)."""
    train = np.flatnonzero((days >= train_from) & (days < train_from + opts.train_days))
    test_from = train_from + opts.train_days + opts.delay_days
    test = []
    for j in range(opts.test_days):
        known_until = train_from + opts.train_days + j  # labels of days before this are known
        known = np.unique(keys[(days < known_until) & (fraud == 1)])
        rows = np.flatnonzero(days == test_from + j)
        test.append(rows[~np.isin(keys[rows], known)])
    return Split.of(train, np.concatenate(test), train_from, opts, first_day)


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


def notebook_baselines(
    x: np.ndarray, labels: np.ndarray, split: Split, trees: int, max_iter: int = 100
) -> dict[str, tuple[np.ndarray, float]]:
    """The two models a typical Kaggle notebook trains (scikit-learn defaults but
    `max_iter`, seed 0): each one's test scores and fit time."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    models = {
        "logistic_regression": LogisticRegression(random_state=0, max_iter=max_iter),
        # n_jobs=1: the machine is shared; the forest is the same whatever n_jobs.
        "random_forest": RandomForestClassifier(n_estimators=trees, random_state=0, n_jobs=1),
    }
    return fit_baselines(x, labels, split.train, split.test, models)


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
    scored: Mapping[str, Scored],
    models: Mapping[str, tuple[np.ndarray, float]],
    test: np.ndarray,
    rows: tuple[np.ndarray, np.ndarray, np.ndarray],
    breakdown: Breakdown,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Each fraudwatch run (scores and alerts per row, by tag) and each baseline (test
    scores, fit seconds) ranked on the test rows (`rows`: every row's day, card and label),
    and `breakdown` of each: over all days and the test days for the runs, the test days for
    the baselines (alerting at p >= 0.5)."""
    t_days, t_cards, t_labels = (r[test].tolist() for r in rows)
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


def in_day_top(days: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per row, whether its score is among the top K of its day's (of these rows)."""
    in_top = np.zeros(len(days), dtype=bool)
    by_day: dict[int, list[int]] = defaultdict(list)
    for j, d in enumerate(days.tolist()):
        by_day[d].append(j)
    for members in by_day.values():
        for m in top_k(scores[members].tolist(), K):
            in_top[members[m]] = True
    return in_top


def group_shares(
    groups: Mapping[str, np.ndarray], fraud: np.ndarray, flagged: np.ndarray,
    in_top: np.ndarray,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Per group (a mask of rows): its frauds, the share of them flagged and in their day's
    top K (None without a fraud), and its legitimate rows flagged."""
    out = {}
    for name, mask in groups.items():
        mine = mask & fraud
        k = int(mine.sum())
        out[name] = {
            "frauds": k,
            "flagged": round(float(flagged[mine].mean()), 4) if k else None,
            "top_100": round(float(in_top[mine].mean()), 4) if k else None,
            "legit_flagged": int((mask & ~fraud & flagged).sum()),
        }
    return out


def score_logit(scores: np.ndarray) -> np.ndarray:
    """Our scores as one input column, on the logistic regression's own scale."""
    p = np.clip(scores, 1e-6, 1 - 1e-6)
    column: np.ndarray = np.log(p / (1 - p))[:, None]
    return column


def residual_fits(
    groups: Mapping[str, Sequence[np.ndarray]], labels: np.ndarray, split: Split
) -> dict[str, dict[str, float | None]]:
    """A logistic regression (seed 0) on each group of input columns (our score's logit and
    what is added to it), trained and tested on the baselines' split: its test AP and ROC
    AUC. A group that raises the AP carries fraud signal our inputs do not see."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    train, test = split.train, split.test
    out = {}
    for name, parts in groups.items():
        z = np.hstack(parts)
        scaler = StandardScaler().fit(z[train])
        model = LogisticRegression(random_state=0, max_iter=1000)
        model.fit(scaler.transform(z[train]), labels[train])
        q = model.predict_proba(scaler.transform(z[test]))[:, 1]
        ap = average_precision(q.tolist(), labels[test].tolist())
        auc = roc_auc(q.tolist(), labels[test].tolist())
        out[name] = {
            "average_precision": None if ap is None else round(ap, 4),
            "roc_auc": None if auc is None else round(auc, 4),
        }
    return out


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


def print_patterns(
    window: Mapping[str, Any], patterns: Mapping[str, Mapping[str, Any]], width: int
) -> None:
    """Per group of a stream's breakdown with a fraud in the test days, each ranker's share
    of those frauds alerted and in a day's top 100 (`group_shares`), in `window`'s order."""
    print("\nfrauds alerted (baselines: p >= 0.5) / in a day's top 100, test days:")
    for group, row in patterns["random_forest_test_days"].items():
        cells = []
        for name in window:
            g = patterns[f"{name}_test_days"].get(group)
            if g and g["frauds"]:
                cells.append(f"{g['flagged']:.2f}/{g['top_100']:.2f}")
        print(f"  {group:{width}} {row['frauds']:>5}  " + "  ".join(cells))
    print("  columns: " + ", ".join(window))


def write_stream_results(kind: str, figures: dict[str, Any], begun: float) -> None:
    """`figures` and the run's time (since `begun`) as benchmarks/results/`kind`-<UTC>.json,
    and the line that names it."""
    runtime = time.perf_counter() - begun
    path = write_results(kind, figures | {"runtime_s": round(runtime)})
    print(f"\nruntime {runtime:.0f} s; results: {path}")
