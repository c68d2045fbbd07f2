"""Our detector on an independent labelled stream: the fraud-detection handbook's simulator,
against the handbook's own baseline models.

The stream and the baseline re-implement, in this codebase's style, the published method of
*Reproducible Machine Learning for Credit Card Fraud Detection - Practical Handbook*
(Y.-A. Le Borgne, W. Siblini, B. Lebichot, G. Bontempi; Université Libre de Bruxelles and
Worldline; https://fraud-detection-handbook.github.io/fraud-detection-handbook/, code at
github.com/Fraud-Detection-Handbook/fraud-detection-handbook, chapters 3.2 "Transaction data
simulator", 3.3 "Baseline feature transformation", 3.4 "Baseline fraud detection system",
4.3 "Precision top-k metrics", and `Chapter_References/shared_functions.py`):

1. Stream: customers and terminals uniform on a 100 x 100 grid; a customer uses the terminals
   within `radius`, picked uniformly; per customer a mean amount U(5, 100) (std half of it)
   and a mean daily count U(0, 4); each day a Poisson count of transactions at N(noon,
   20,000 s) (times outside the day dropped), amounts N(mean, std) (negative: U(0, 2 mean)),
   rounded to cents. Frauds: (1) every amount > 220; (2) each day 2 random terminals are
   compromised for 28 days, all their transactions fraud; (3) each day 3 random customers
   are compromised for 14 days, a third of their transactions get amount x5 and are fraud.
   `--seed 0` uses the handbook's own seeds (numpy RandomState 0 for customers, 1 for
   terminals, the customer id per customer, the day per fraud day; `random` likewise), so
   with its defaults the first rows are those the handbook shows (customer 596 at terminal
   3156 for 57.16 at 2018-04-01 00:00:31). Written as the handbook's columns, amounts as
   Python/pandas write floats (x5 amounts come out like 85.64999999999999).
2. `fraudwatch backtest` on it as a black box, `--model on` (default) and `--model off`, with
   only id, timestamp, account (CUSTOMER_ID), merchant (TERMINAL_ID) and amount mapped.
3. The handbook's baseline offline: 15 features (amount; weekend; night = hour <= 6; per
   customer the count and mean amount over 1, 7, 30 days; per terminal the count and fraud
   rate over 1, 7, 30 days ending 7 days ago), standardised on the training set; logistic
   regression, a depth-2 decision tree and a random forest (scikit-learn defaults, seed 0)
   trained on --train-days days, then --delay-days unused, then tested on --test-days days,
   leaving out of each test day the customers with a fraud known by then (fraud at least
   the delay earlier); our backtest's scores on exactly those test transactions.
4. Per fraud scenario, the share our alerts and each day's top 100 catch.

Writes benchmarks/results/handbook-<UTC>.json. scikit-learn (and numpy with it) is the
`bench` extra (`pip install -e '.[bench]'`).

    .venv/bin/python benchmarks/handbook.py --keep /tmp/hb      # ~3 minutes, 575,755 rows
"""

from __future__ import annotations

import argparse
import bisect
import csv
import datetime as dt
import random
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import streams  # noqa: E402

COLUMNS = ("TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT",
           "TX_TIME_SECONDS", "TX_TIME_DAYS", "TX_FRAUD", "TX_FRAUD_SCENARIO")  # fmt: skip
MAPPING = ("id=TRANSACTION_ID", "timestamp=TX_DATETIME", "account_id=CUSTOMER_ID",
           "merchant_id=TERMINAL_ID", "amount=TX_AMOUNT")  # fmt: skip
SCENARIOS = {1: "amount > 220", 2: "compromised terminal", 3: "compromised card, amount x5"}
DAY_S = 86_400
WINDOWS = (1, 7, 30)
FEATURES = (
    "TX_AMOUNT", "TX_DURING_WEEKEND", "TX_DURING_NIGHT",
    *(f"CUSTOMER_ID_{kind}_{w}DAY_WINDOW" for w in WINDOWS for kind in ("NB_TX", "AVG_AMOUNT")),
    *(f"TERMINAL_ID_{kind}_{w}DAY_WINDOW" for w in WINDOWS for kind in ("NB_TX", "RISK")),
)  # fmt: skip


@dataclass
class Stream:
    """The transactions in TRANSACTION_ID (= event time) order, one list per column."""

    start: dt.datetime
    seconds: list[int] = field(default_factory=list)
    customers: list[int] = field(default_factory=list)
    terminals: list[int] = field(default_factory=list)
    amounts: list[float] = field(default_factory=list)
    frauds: list[int] = field(default_factory=list)
    scenarios: list[int] = field(default_factory=list)

    @property
    def days(self) -> list[int]:
        return [s // DAY_S for s in self.seconds]


def _seed(seed: int, n: int) -> int:
    # Seed 0 is the handbook's own seeding; another seed moves every generator at once.
    return n if seed == 0 else seed * 1_000_003 + n


def generate(
    n_customers: int, n_terminals: int, radius: float, start: dt.datetime, days: int, seed: int
) -> Stream:
    rs = np.random.RandomState(_seed(seed, 0))
    profiles = []
    for _ in range(n_customers):
        x, y, mean_amount = rs.uniform(0, 100), rs.uniform(0, 100), rs.uniform(5, 100)
        profiles.append((x, y, mean_amount, mean_amount / 2, rs.uniform(0, 4)))
    rs = np.random.RandomState(_seed(seed, 1))
    xy_terminals = np.array([(rs.uniform(0, 100), rs.uniform(0, 100)) for _ in range(n_terminals)])

    rows: list[tuple[int, int, int, float]] = []  # (seconds, customer, terminal, amount)
    for customer, (x, y, mean_amount, std_amount, per_day) in enumerate(profiles):
        distance = np.sqrt(np.sum(np.square(np.array([x, y]) - xy_terminals), axis=1))
        near = [int(t) for t in np.where(distance < radius)[0]]
        rs = np.random.RandomState(_seed(seed, customer))
        pick = random.Random(_seed(seed, customer))
        for day in range(days):
            for _ in range(rs.poisson(per_day)):
                second = int(rs.normal(DAY_S / 2, 20_000))
                # Drawn in the handbook's order: a dropped time draws no amount or terminal.
                if not 0 < second < DAY_S:
                    continue
                amount = rs.normal(mean_amount, std_amount)
                if amount < 0:
                    amount = rs.uniform(0, mean_amount * 2)
                amount = float(np.round(amount, decimals=2))
                if near:
                    rows.append((second + day * DAY_S, customer, pick.choice(near), amount))
    rows.sort(key=lambda r: r[0])  # stable: equal times keep customer order

    stream = Stream(start)
    for second, customer, terminal, amount in rows:
        stream.seconds.append(second)
        stream.customers.append(customer)
        stream.terminals.append(terminal)
        stream.amounts.append(amount)
    _add_frauds(stream, n_customers, n_terminals, seed)
    return stream


def _add_frauds(stream: Stream, n_customers: int, n_terminals: int, seed: int) -> None:
    n = len(stream.seconds)
    days = stream.days
    stream.frauds = [1 if a > 220 else 0 for a in stream.amounts]
    stream.scenarios = list(stream.frauds)
    by_terminal: dict[int, list[int]] = defaultdict(list)
    by_customer: dict[int, list[int]] = defaultdict(list)
    for i in range(n):
        by_terminal[stream.terminals[i]].append(i)
        by_customer[stream.customers[i]].append(i)
    last_day = days[-1]
    for day in range(last_day):  # as the handbook: no compromise starts on the last day
        rs = np.random.RandomState(_seed(seed, day))
        for terminal in rs.choice(n_terminals, size=2, replace=False):
            for i in by_terminal[int(terminal)]:
                if day <= days[i] < day + 28:
                    stream.frauds[i], stream.scenarios[i] = 1, 2
    for day in range(last_day):
        rs = np.random.RandomState(_seed(seed, day))
        chosen = {int(c) for c in rs.choice(n_customers, size=3, replace=False)}
        exposed = sorted(
            i for c in chosen for i in by_customer[c] if day <= days[i] < day + 14
        )  # fmt: skip
        for i in random.Random(_seed(seed, day)).sample(exposed, k=len(exposed) // 3):
            stream.amounts[i] *= 5
            stream.frauds[i], stream.scenarios[i] = 1, 3


def write_csv(stream: Stream, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for i, second in enumerate(stream.seconds):
            when = stream.start + dt.timedelta(seconds=second)
            writer.writerow(
                (i, when.strftime("%Y-%m-%d %H:%M:%S"), stream.customers[i], stream.terminals[i],
                 repr(stream.amounts[i]), second, second // DAY_S, stream.frauds[i],
                 stream.scenarios[i])
            )  # fmt: skip


def read_csv(path: Path, start: dt.datetime) -> Stream:
    stream = Stream(start)
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            stream.seconds.append(int(row["TX_TIME_SECONDS"]))
            stream.customers.append(int(row["CUSTOMER_ID"]))
            stream.terminals.append(int(row["TERMINAL_ID"]))
            stream.amounts.append(float(row["TX_AMOUNT"]))
            stream.frauds.append(int(row["TX_FRAUD"]))
            stream.scenarios.append(int(row["TX_FRAUD_SCENARIO"]))
    return stream


def features(stream: Stream, delay_days: int) -> np.ndarray:
    """The handbook's 15 baseline features, one row per transaction.

    Windows are pandas' time-based rolling windows: (t - w, t], counting the transaction
    itself and earlier ones. The terminal's figures cover (t - delay - w, t - delay]: only
    transactions whose labels are known by t.
    """
    n = len(stream.seconds)
    out = np.zeros((n, len(FEATURES)))
    for i, second in enumerate(stream.seconds):
        when = stream.start + dt.timedelta(seconds=second)
        out[i, 0] = stream.amounts[i]
        out[i, 1] = when.weekday() >= 5
        out[i, 2] = when.hour <= 6
    groups: dict[int, list[int]] = defaultdict(list)
    for i, customer in enumerate(stream.customers):
        groups[customer].append(i)
    for rows in groups.values():
        times = [stream.seconds[i] for i in rows]
        spent = [0.0]
        for i in rows:
            spent.append(spent[-1] + stream.amounts[i])
        for pos, i in enumerate(rows):
            for w, window in enumerate(WINDOWS):
                left = bisect.bisect_right(times, times[pos] - window * DAY_S)
                count = pos + 1 - left
                out[i, 3 + 2 * w] = count
                out[i, 4 + 2 * w] = (spent[pos + 1] - spent[left]) / count
    groups = defaultdict(list)
    for i, terminal in enumerate(stream.terminals):
        groups[terminal].append(i)
    delay = delay_days * DAY_S
    for rows in groups.values():
        times = [stream.seconds[i] for i in rows]
        frauds = [0]
        for i in rows:
            frauds.append(frauds[-1] + stream.frauds[i])
        for pos, i in enumerate(rows):
            known = bisect.bisect_right(times, times[pos] - delay)
            for w, window in enumerate(WINDOWS):
                left = bisect.bisect_right(times, times[pos] - delay - window * DAY_S)
                count = known - left
                out[i, 9 + 2 * w] = count
                out[i, 10 + 2 * w] = (frauds[known] - frauds[left]) / count if count else 0.0
    return out


def split(
    stream: Stream, train_from: int, train_days: int, delay_days: int, test_days: int
) -> tuple[list[int], list[int]]:
    """The handbook's `get_train_test_set`: row indices of the training and test sets.

    Each test day leaves out the customers with a fraud known by then: in the training set
    or on a day at least `delay_days` before the test day (they would already be blocked).
    """
    days = stream.days
    train = [i for i, d in enumerate(days) if train_from <= d < train_from + train_days]
    known = {stream.customers[i] for i in train if stream.frauds[i]}
    by_day: dict[int, list[int]] = defaultdict(list)
    for i, d in enumerate(days):
        by_day[d].append(i)
    test = []
    for j in range(test_days):
        revealed = by_day[train_from + train_days + j - 1]
        known |= {stream.customers[i] for i in revealed if stream.frauds[i]}
        day = train_from + train_days + delay_days + j
        test += [i for i in by_day[day] if stream.customers[i] not in known]
    return train, test


def after_compromise(stream: Stream) -> list[bool]:
    """Legitimate transactions at a terminal whose compromise (scenario 2) is over: where a
    terminal-risk signal that looks back too far raises false alerts."""
    days = stream.days
    last: dict[int, int] = {}
    for i, scenario in enumerate(stream.scenarios):
        if scenario == 2:
            last[stream.terminals[i]] = days[i]
    return [
        not stream.frauds[i] and days[i] > last.get(stream.terminals[i], days[i])
        for i in range(len(days))
    ]


def scenario_recall(
    stream: Stream,
    rows: Sequence[int],
    scores: Sequence[float],
    flagged: Sequence[bool],
    stale: Sequence[bool],
) -> dict[str, dict[str, Any]]:
    """Per scenario, among `rows`: frauds, the share `flagged`, the share in a day's top 100.
    For legitimate ones, counts, and how many of the flagged are `stale` (after_compromise)."""
    days = stream.days
    in_top = streams.in_day_top(np.array([days[i] for i in rows]), np.asarray(scores)).tolist()
    out = {}
    for scenario, name in SCENARIOS.items():
        mine = [j for j, i in enumerate(rows) if stream.scenarios[i] == scenario]
        out[str(scenario)] = {
            "scenario": name,
            "frauds": len(mine),
            "flagged": round(sum(flagged[j] for j in mine) / len(mine), 4) if mine else None,
            "top_100": round(sum(in_top[j] for j in mine) / len(mine), 4) if mine else None,
        }
    legit = [j for j, i in enumerate(rows) if not stream.frauds[i]]
    out["0"] = {
        "scenario": "legitimate",
        "transactions": len(legit),
        "flagged": sum(flagged[j] for j in legit),
        "top_100": sum(in_top[j] for j in legit),
        "flagged_after_terminal_compromise": sum(
            flagged[j] for j, i in enumerate(rows) if stale[i]
        ),
    }
    return out


def backtest(data: Path, work: Path, model: str, delay_days: int) -> tuple[dict[str, Any], Path]:
    report, scores = work / f"report-model-{model}.json", work / f"scores-model-{model}.csv"
    result = streams.run_backtest(data, report, scores, "TX_FRAUD", delay_days, model, MAPPING)
    return result, scores


def baselines(
    x: np.ndarray, labels: Sequence[int], split: streams.Split, trees: int
) -> dict[str, tuple[np.ndarray, float]]:
    """Each baseline's test scores and fit time (the handbook's classifiers, seed 0)."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    models = {
        "logistic_regression": LogisticRegression(random_state=0),
        "decision_tree_depth_2": DecisionTreeClassifier(max_depth=2, random_state=0),
        # n_jobs=1: the machine is shared; the forest is the same whatever n_jobs.
        "random_forest": RandomForestClassifier(n_estimators=trees, random_state=0, n_jobs=1),
    }
    return streams.fit_baselines(x, labels, split.train, split.test, models)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--terminals", type=int, default=10_000)
    parser.add_argument("--radius", type=float, default=5.0)
    parser.add_argument("--start", default="2018-04-01")
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0, help="0: the handbook's own seeds")
    streams.add_common_options(parser, "handbook", train_days=7, test_days=7)
    opts = parser.parse_args()
    start = dt.datetime.fromisoformat(opts.start)
    train_from = streams.first_train_day(opts, max(WINDOWS))
    begun = time.perf_counter()

    with streams.work_dir(opts.keep) as work:
        data = work / "handbook.csv"
        started = time.perf_counter()
        if data.exists():
            stream = read_csv(data, start)
            how = f"read from {data}"
        else:
            stream = generate(
                opts.customers, opts.terminals, opts.radius, start, opts.days, opts.seed
            )
            write_csv(stream, data)
            how = f"generated in {time.perf_counter() - started:.0f} s"
        n = len(stream.seconds)
        counts = {s: stream.scenarios.count(s) for s in SCENARIOS}
        meta = {
            "rows": n,
            "frauds": sum(stream.frauds),
            "frauds_by_scenario": counts,
            "customers": opts.customers,
            "terminals": opts.terminals,
            "radius": opts.radius,
            "days": opts.days,
            "start": opts.start,
            "seed": opts.seed,
            "bytes": data.stat().st_size,
        }
        print(
            f"data: {n:,} rows over {opts.days} days from {opts.start}, {meta['frauds']:,} "
            f"frauds ({meta['frauds'] / n:.2%}; by scenario {counts}), seed {opts.seed}, "
            f"{meta['bytes'] / 1e6:.0f} MB, {how}"
        )

        reports, scored = {}, {}
        for model in ("on", "off"):
            started = time.perf_counter()
            reports[model], path = backtest(data, work, model, opts.delay_days)
            # The validation refuses an amount of 0.00, which the handbook's generator writes
            # now and then (a negative draw redrawn from U(0, 2 mean) and rounded): such a
            # row gets no score, and counts as scored 0 and not alerted.
            scored[model] = streams.read_scores(path, n, int)
            unscored = scored[model][2]
            o = reports[model]["overall"]
            print(
                f"backtest --model {model}: AP {o['average_precision']}, ROC AUC {o['roc_auc']}, "
                f"card P@100 {o['card_precision_at_k']}, P@100 {o['precision_at_k']}, alerts "
                f"{o['alerts']:,} (precision {o['alert_precision']}, recall "
                f"{o['alert_recall']}); {reports[model]['throughput']['tx_per_s']:,} tx/s "
                f"({time.perf_counter() - started:.0f} s)"
            )
        meta["refused_rows"] = reports["on"]["meta"]["invalid_examples"]
        meta["unscored_ids"] = unscored
        meta["unscored_frauds"] = sum(stream.frauds[i] for i in unscored)
        meta["backtest_notes"] = reports["on"]["meta"].get("notes")
        print(
            f"not scored (refused by validation): {len(unscored)} rows, "
            f"{meta['unscored_frauds']} of them fraud, e.g. {meta['refused_rows'][:2]}; "
            f"notes: {meta['backtest_notes']}"
        )

        started = time.perf_counter()
        x = features(stream, opts.delay_days)
        train, test = split(stream, train_from, opts.train_days, opts.delay_days, opts.test_days)
        train_test = streams.Split.of(train, test, train_from, opts)
        labels = np.array(stream.frauds)
        models = baselines(x, stream.frauds, train_test, opts.trees)
        took = time.perf_counter() - started
        print(train_test.describe(labels, took, ", known-fraud customers left out"))

        stale = after_compromise(stream)
        window, recall = streams.compare_window(
            ("on", "off"), scored, models, train_test.test,
            (np.array(stream.days), np.array(stream.customers), labels),
            lambda rows, scores, alerts: scenario_recall(
                stream, rows.tolist(), scores.tolist(), alerts.tolist(), stale
            ),
        )  # fmt: skip
        streams.print_window(
            {f"fraudwatch --model {m}, all days": reports[m]["overall"] for m in ("on", "off")},
            window, train_test.test_days, width=34,
        )  # fmt: skip
        print("\nper scenario: share of frauds alerted (baselines: p >= 0.5) / in a day's top 100")
        for name, table in recall.items():
            cells = [
                f"{s}: {table[str(s)]['flagged']:.2f} / {table[str(s)]['top_100']:.2f}"
                for s in SCENARIOS
                if table[str(s)]["frauds"]
            ]
            legit = table["0"]
            print(
                f"  {name:38} {'  '.join(cells)}  (legitimate flagged {legit['flagged']:,}, "
                f"{legit['flagged_after_terminal_compromise']:,} of them at a terminal whose "
                f"compromise had ended; in top 100 {legit['top_100']:,})"
            )

        streams.write_stream_results(
            "handbook",
            {
                "data": meta,
                **streams.report_figures(reports),
                "split": train_test.figures(None),
                "test_window": window,
                "scenario_recall": recall,
            },
            begun,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
