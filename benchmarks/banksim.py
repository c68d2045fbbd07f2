"""Our detector on a fourth independent labelled stream: a BankSim-style card-payment stream
(the simulator behind Kaggle's "Synthetic data from a financial payment system",
bs140513_032310.csv), against the baselines a typical notebook for that set trains, on the
inputs our detector may see.

The generator is our own code, written from the published description of BankSim
(Lopez-Rojas and Axelsson, "BankSim: a bank payments simulator for fraud detection
research", EMSS 2014) and of the Kaggle file's columns and known properties:

1. One row per payment, `step` the day (0 to 179) and nothing finer: every payment of a day
   has the same time. Columns as the file's: step, customer, age, gender, zipcodeOri,
   merchant, zipMerchant, category, amount, fraud, every text cell in single quotes inside
   the CSV's double quotes ("'C1093826151'"), zip codes one constant ('28007').
2. 4,112 customers (an age band '0'-'6' or 'U', a gender 'F', 'M', 'E' for an enterprise or
   'U'), each paying about 0.8 times a day, as often on any day; 15 categories with the
   file's row counts (es_transportation 85 %), each category served by its own few of 50
   merchants, two of which take the transport payments; amounts log-normal around the
   file's mean per category (overall ~32).
3. Fraud, 7,200 rows (1.21 %), in the file's per-category counts (none in transportation,
   food, contents; most of es_leisure and es_travel), at amounts about four times the
   category's usual (mean ~530), at a few merchants per category (most at one): 1,483
   victims (women a little more often, as in the file), each with about five frauds over a
   few days from a day of its own (one past the last day is folded back into the run) among
   its ordinary payments, sometimes two or more on a day.

Then, as benchmarks/paysim.py does: `fraudwatch backtest` on the file as a user would run it
(7-day label delay, --time-unit d, account = customer, merchant = merchant, MCC = category
and without it; no id column, so ids are row numbers; age and gender are not transaction
fields, so never fed to the detector); the notebook's logistic regression and random forest
on the inputs the detector may see (amount, category and merchant one-hot, the customer's
payments so far and its mean amount before), trained on --train-days, then --delay-days
unused, then tested on the last --test-days, leaving out customers with a fraud known by
then; per category, amount band and frauds on the victim's day the share each one alerts
and puts in a day's top 100; and what the detector computed for same-day payments.

Writes benchmarks/results/banksim-<UTC>.json. scikit-learn is the `bench` extra.

    .venv/bin/python benchmarks/banksim.py --keep /tmp/bs   # about 3 min, 0.59 M rows
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import streams  # noqa: E402
from results_file import commit  # noqa: E402

COLUMNS = ("step", "customer", "age", "gender", "zipcodeOri", "merchant", "zipMerchant",
           "category", "amount", "fraud")  # fmt: skip
MAPPING = ("timestamp=step", "account_id=customer", "merchant_id=merchant", "mcc=category")
# Per category: rows and frauds in the file, mean legitimate and fraud amount, merchants.
CATEGORY_TABLE = (
    ("es_transportation", 505_119, 0, 26.96, 0.0, 2),
    ("es_food", 26_254, 0, 37.07, 0.0, 3),
    ("es_health", 16_133, 1_696, 103.74, 407.03, 6),
    ("es_wellnessandbeauty", 15_086, 718, 57.32, 229.42, 5),
    ("es_fashion", 6_454, 116, 62.35, 247.01, 4),
    ("es_barsandrestaurants", 6_373, 120, 41.15, 164.09, 4),
    ("es_hyper", 6_098, 280, 40.04, 169.26, 4),
    ("es_sportsandtoys", 4_002, 1_982, 88.50, 345.37, 4),
    ("es_tech", 2_370, 158, 99.92, 415.27, 3),
    ("es_home", 1_986, 302, 113.34, 457.48, 3),
    ("es_hotelservices", 1_744, 548, 172.76, 421.82, 3),
    ("es_otherservices", 912, 228, 75.69, 316.47, 3),
    ("es_contents", 885, 0, 44.55, 0.0, 1),
    ("es_travel", 728, 578, 669.03, 2_660.80, 3),
    ("es_leisure", 499, 474, 73.23, 300.29, 2),
)
CATEGORIES = tuple(c[0] for c in CATEGORY_TABLE)
FILE_ROWS = 594_643
FILE_FRAUDS = 7_200
FILE_VICTIMS = 1_483
AGES = ("0", "1", "2", "3", "4", "5", "6", "U")
AGE_SHARES = (0.004, 0.098, 0.315, 0.247, 0.183, 0.105, 0.045, 0.003)
GENDERS = ("F", "M", "E", "U")
GENDER_SHARES = (0.546, 0.451, 0.002, 0.001)
ZIP = "28007"
LEGIT_SIGMA, FRAUD_SIGMA = 0.8, 0.6


@dataclass
class Stream:
    """The rows in file order (numpy arrays); customer and merchant are indices."""

    step: np.ndarray
    customer: np.ndarray
    merchant: np.ndarray
    category: np.ndarray
    amount: np.ndarray
    fraud: np.ndarray
    age: np.ndarray  # per customer, index into AGES
    gender: np.ndarray  # per customer, index into GENDERS
    customer_ids: np.ndarray  # 'C…' per customer
    merchant_ids: np.ndarray  # 'M…' per merchant
    merchant_category: np.ndarray  # per merchant

    @property
    def days(self) -> np.ndarray:
        return self.step


def _ids(rng: np.random.Generator, n: int, prefix: str) -> np.ndarray:
    """Distinct ids: a prefix and 7-10 digits, as the file's 'C1093826151', 'M348934600'."""
    numbers = np.unique(rng.integers(1_000_000, 2_150_000_000, 2 * n + 16))
    return np.array([f"{prefix}{x}" for x in rng.permutation(numbers)[:n].tolist()])


def _lognormal(rng: np.random.Generator, mean: np.ndarray, sigma: float) -> np.ndarray:
    """Log-normal draws with the given means, to the cent."""
    return np.round(mean * np.exp(sigma * rng.standard_normal(len(mean)) - sigma**2 / 2), 2)


def generate(days: int, customers: int, scale: float, seed: int) -> Stream:
    rng = np.random.default_rng(seed)
    n_cat = len(CATEGORY_TABLE)
    rows = np.array([c[1] for c in CATEGORY_TABLE], dtype=float) * scale * days / 180
    frauds = np.array([c[2] for c in CATEGORY_TABLE], dtype=float) * scale * days / 180
    legit_mean = np.array([c[3] for c in CATEGORY_TABLE])
    fraud_mean = np.array([c[4] for c in CATEGORY_TABLE])
    # Merchants: each serves one category; the first two carry the transport payments.
    merchant_category = np.repeat(np.arange(n_cat), [c[5] for c in CATEGORY_TABLE])
    n_merchants = len(merchant_category)
    merchant_ids = _ids(rng, n_merchants, "M")
    legit_w = np.zeros(n_merchants)
    fraud_w = np.zeros(n_merchants)
    for k in range(n_cat):
        mine = np.flatnonzero(merchant_category == k)
        legit_w[mine] = rng.dirichlet(np.full(len(mine), 2.0))
        # Fraud goes mostly to one merchant of the category: a few merchants carry most.
        skew = np.array([0.7, 0.2, 0.06, 0.03, 0.01, 0.005][: len(mine)])
        fraud_w[mine] = skew / skew.sum()
    # Customers: age band, gender, how often they pay, and their own category mix.
    age = rng.choice(len(AGES), customers, p=np.array(AGE_SHARES) / sum(AGE_SHARES))
    gender = rng.choice(len(GENDERS), customers, p=np.array(GENDER_SHARES) / sum(GENDER_SHARES))
    enterprise = gender == GENDERS.index("E")
    age[enterprise] = AGES.index("U")
    customer_ids = _ids(rng, customers, "C")
    activity = rng.lognormal(0.0, 0.5, customers)
    legit_rows = rows - frauds
    legit_share = legit_rows / legit_rows.sum()
    mix = rng.dirichlet(legit_share * 30 + 1e-3, customers)
    # Legitimate rows: per day and customer a Poisson count, each with the customer's mix.
    per_day = legit_rows.sum() / days
    rate = activity / activity.sum() * per_day
    counts = rng.poisson(np.tile(rate, days))
    step = np.repeat(np.repeat(np.arange(days), customers), counts)
    customer = np.repeat(np.tile(np.arange(customers), days), counts)
    n = len(step)
    cum = np.cumsum(mix, axis=1)
    category = (rng.random(n)[:, None] > cum[customer]).sum(axis=1).clip(0, n_cat - 1)
    merchant = _pick(rng, category, merchant_category, legit_w)
    amount = _lognormal(rng, legit_mean[category], LEGIT_SIGMA)
    # Fraud: victims (women a little more often, as in the file), each with about five
    # frauds over a few days from a day of its own.
    want = round(float(frauds.sum()))
    n_victims = max(1, round(FILE_VICTIMS * customers / 4_112))
    bias = np.where(gender == GENDERS.index("F"), 1.5, 1.0)
    victims = rng.choice(customers, n_victims, replace=False, p=bias / bias.sum())
    per_victim = 1 + rng.multinomial(want - n_victims, np.full(n_victims, 1 / n_victims))
    f_customer = np.repeat(victims, per_victim)
    start = rng.integers(0, days, n_victims)
    offset = rng.geometric(0.35, want) - 1
    f_step = np.repeat(start, per_victim) + offset
    f_step = np.where(f_step >= days, 2 * (days - 1) - f_step, f_step).clip(0, days - 1)
    f_category = rng.choice(n_cat, want, p=frauds / frauds.sum())
    f_merchant = _pick(rng, f_category, merchant_category, fraud_w)
    f_amount = _lognormal(rng, fraud_mean[f_category], FRAUD_SIGMA)
    # File order: by step; within a step, rows in random order.
    step = np.r_[step, f_step]
    key = step * 2.0 + rng.random(len(step))
    order = np.argsort(key, kind="stable")
    return Stream(
        step=step[order],
        customer=np.r_[customer, f_customer][order],
        merchant=np.r_[merchant, f_merchant][order],
        category=np.r_[category, f_category][order],
        amount=np.r_[amount, f_amount][order],
        fraud=np.r_[np.zeros(n, dtype=np.int8), np.ones(want, dtype=np.int8)][order],
        age=age,
        gender=gender,
        customer_ids=customer_ids,
        merchant_ids=merchant_ids,
        merchant_category=merchant_category,
    )


def _pick(
    rng: np.random.Generator, category: np.ndarray, merchant_category: np.ndarray,
    weights: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """A merchant of each row's category, by `weights` within the category."""
    out = np.zeros(len(category), dtype=int)
    for k in np.unique(category).tolist():
        rows = np.flatnonzero(category == k)
        mine = np.flatnonzero(merchant_category == k)
        out[rows] = rng.choice(mine, len(rows), p=weights[mine] / weights[mine].sum())
    return out


def write_csv(stream: Stream, path: Path) -> None:
    """The file's layout: no id column, text cells in single quotes (inside the CSV's double
    quotes), amounts to the cent."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, quoting=csv.QUOTE_NONNUMERIC)
        writer.writerow(COLUMNS)
        c_ids, m_ids = stream.customer_ids, stream.merchant_ids
        ages = [f"'{AGES[a]}'" for a in stream.age.tolist()]
        genders = [f"'{GENDERS[g]}'" for g in stream.gender.tolist()]
        columns = zip(stream.step.tolist(), stream.customer.tolist(), stream.merchant.tolist(),
                      stream.category.tolist(), stream.amount.tolist(), stream.fraud.tolist(),
                      strict=True)  # fmt: skip
        zip_cell = f"'{ZIP}'"
        for s, c, m, k, a, y in columns:
            f.write(
                f'{s},"\'{c_ids[c]}\'","{ages[c]}","{genders[c]}","{zip_cell}",'
                f'"\'{m_ids[m]}\'","{zip_cell}","\'{CATEGORIES[k]}\'",{a:.2f},{y}\n'
            )


def _running_count(key: np.ndarray) -> np.ndarray:
    """Rows of the same key so far, this one included."""
    n = len(key)
    order = np.lexsort((np.arange(n), key))
    keys = key[order]
    out = np.zeros(n)
    bounds = np.flatnonzero(np.diff(keys)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, n], strict=True):
        out[order[lo:hi]] = np.arange(1, hi - lo + 1)
    return out


def _running_mean_before(key: np.ndarray, value: np.ndarray) -> np.ndarray:
    """The mean of `value` over the same key's earlier rows (0 for a first row)."""
    n = len(key)
    order = np.lexsort((np.arange(n), key))
    keys, values = key[order], value[order]
    out = np.zeros(n)
    bounds = np.flatnonzero(np.diff(keys)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, n], strict=True):
        v = values[lo:hi]
        before = np.r_[0.0, np.cumsum(v)[:-1]]
        out[order[lo:hi]] = before / np.maximum(np.arange(hi - lo), 1)
    return out


FEATURES = ("amount", *(f"category_{c}" for c in CATEGORIES), "customer_count",
            "customer_mean_amount_before")  # fmt: skip


def features(stream: Stream, merchants: bool = True) -> np.ndarray:
    """A typical notebook's features for this set (amount, category, merchant; it drops the
    two constant zip codes), limited to what the detector is given (no age, no gender) and
    one-hot rather than as label codes, plus the customer's history so far."""
    n = len(stream.step)
    n_cat = len(CATEGORIES)
    out = np.zeros((n, len(FEATURES)))
    out[:, 0] = stream.amount
    out[np.arange(n), 1 + stream.category] = 1.0
    out[:, 1 + n_cat] = _running_count(stream.customer)
    out[:, 2 + n_cat] = _running_mean_before(stream.customer, stream.amount)
    if not merchants:
        return out
    one_hot = np.zeros((n, len(stream.merchant_ids)))
    one_hot[np.arange(n), stream.merchant] = 1.0
    return np.hstack([out, one_hot])


def same_day_rank(stream: Stream) -> np.ndarray:
    """Per row, how many of its customer's rows came earlier on the same day (0 = first)."""
    n = len(stream.step)
    order = np.lexsort((np.arange(n), stream.step, stream.customer))
    c, s = stream.customer[order], stream.step[order]
    new_group = np.r_[True, (np.diff(c) != 0) | (np.diff(s) != 0)]
    starts = np.flatnonzero(new_group)
    pos = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    out = np.zeros(n, dtype=int)
    out[order] = pos
    return out


def breakdown(
    stream: Stream, rows: np.ndarray, scores: np.ndarray, flagged: np.ndarray
) -> dict[str, dict[str, Any]]:
    """Among `rows`' frauds, per group with one: count, share alerted, share in its day's
    top 100."""
    category = stream.category[rows]
    amount = stream.amount[rows]
    earlier = _earlier_frauds(stream)[rows]
    groups = {f"category {c}": category == i for i, c in enumerate(CATEGORIES)}
    groups |= {
        "amount < 100": amount < 100,
        "amount 100-499": (amount >= 100) & (amount < 500),
        "amount >= 500": amount >= 500,
        "victim's first fraud": earlier == 0,
        "victim's later frauds": earlier > 0,
        "all": np.ones(len(rows), dtype=bool),
    }
    fraud = stream.fraud[rows] == 1
    shares = streams.group_shares(
        groups, fraud, flagged, streams.in_day_top(stream.days[rows], scores)
    )
    return {name: g for name, g in shares.items() if g["frauds"]}


def _earlier_frauds(stream: Stream) -> np.ndarray:
    """Per row, its customer's frauds in the file before it."""
    n = len(stream.step)
    order = np.lexsort((np.arange(n), stream.customer))
    c, y = stream.customer[order], stream.fraud[order].astype(int)
    out = np.zeros(n, dtype=int)
    bounds = np.flatnonzero(np.diff(c)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, n], strict=True):
        out[order[lo:hi]] = np.r_[0, np.cumsum(y[lo:hi])[:-1]]
    return out


def same_day(stream: Stream, scored: dict[str, Any]) -> dict[str, Any]:
    """What the day-resolution timestamps do: a customer's second and later payments on a
    day share its first one's time. Scores and alerts of legitimate and fraud rows by their
    place among the customer's payments that day."""
    rank = same_day_rank(stream)
    scores, alerts, _ = scored
    legit = stream.fraud == 0
    out = {}
    for name, mask in (("first of its customer's day", rank == 0),
                       ("second", rank == 1), ("third or later", rank >= 2)):  # fmt: skip
        row = {}
        for label, kind in (("legitimate", legit & mask), ("fraud", ~legit & mask)):
            k = int(kind.sum())
            row[label] = {
                "rows": k,
                "mean_score": round(float(scores[kind].mean()), 4) if k else None,
                "alerted": round(float(alerts[kind].mean()), 4) if k else None,
            }
        out[name] = row
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--customers", type=int, default=4_112)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="rows and frauds as a share of the file's (594,643 and 7,200 "
                        "over 180 days)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    streams.add_common_options(parser, "banksim", train_days=28, test_days=14)
    opts = parser.parse_args()
    train_from = streams.first_train_day(opts, 1)
    begun = time.perf_counter()

    with streams.work_dir(opts.keep) as work:
        data = work / "banksim.csv"
        stream, how = streams.generated_or_kept(
            data, work / "banksim.npz",
            lambda: generate(opts.days, opts.customers, opts.scale, opts.seed), write_csv, Stream,
        )  # fmt: skip
        n = len(stream.step)
        labels = stream.fraud.astype(int)
        frauds = int(labels.sum())
        fraud_amount = stream.amount[labels == 1]
        legit_amount = stream.amount[labels == 0]
        meta = {
            "rows": n,
            "frauds": frauds,
            "customers": len(np.unique(stream.customer)),
            "customers_with_fraud": len(np.unique(stream.customer[labels == 1])),
            "merchants": len(np.unique(stream.merchant)),
            "rows_per_day": round(n / opts.days),
            "mean_amount": {
                "legitimate": round(float(legit_amount.mean()), 2),
                "fraud": round(float(fraud_amount.mean()), 2),
            },
            "by_category": {
                c: {
                    "rows": int((stream.category == i).sum()),
                    "frauds": int(labels[stream.category == i].sum()),
                }
                for i, c in enumerate(CATEGORIES)
            },
            "frauds_at_top_5_merchants": int(
                np.sort(np.bincount(stream.merchant[labels == 1]))[-5:].sum()
            ),
            "customer_days_with_2_or_more": int((same_day_rank(stream) == 1).sum()),
            "days": opts.days,
            "customers_asked": opts.customers,
            "scale": opts.scale,
            "seed": opts.seed,
            "bytes": data.stat().st_size,
            "commit": commit(),
        }
        print(
            f"data: {n:,} rows over {opts.days} days, {frauds:,} frauds ({frauds / n:.3%}) in "
            f"{meta['customers_with_fraud']:,} of {meta['customers']:,} customers, "
            f"{meta['merchants']} merchants (top 5 carry {meta['frauds_at_top_5_merchants']:,} "
            f"frauds), mean amount {meta['mean_amount']['legitimate']} / "
            f"{meta['mean_amount']['fraud']} (fraud), seed {opts.seed}, "
            f"{meta['bytes'] / 1e6:.0f} MB, {how}"
        )

        no_mcc = tuple(m for m in MAPPING if not m.startswith("mcc="))
        runs = {"on": ("on", MAPPING), "on_no_mcc": ("on", no_mcc), "off": ("off", MAPPING)}
        backtests = streams.run_backtests(
            data, work, runs, "fraud", opts.delay_days,
            lambda path: streams.read_scores(path, n, streams.row_number), ("--time-unit", "d"),
        )  # fmt: skip
        meta |= backtests.notes()

        started = time.perf_counter()
        x = features(stream)
        split = streams.baseline_split(
            stream.days, stream.customer, stream.fraud, train_from, opts, 0
        )
        models = streams.notebook_baselines(x, labels, split, opts.trees, max_iter=1000)
        print(split.describe(labels, time.perf_counter() - started))

        window, patterns = streams.compare_window(
            runs, backtests.scored, models, split.test, (stream.days, stream.customer, labels),
            lambda rows, scores, alerts: breakdown(stream, rows, scores, alerts),
        )  # fmt: skip
        streams.print_window(backtests.overall(), window, split.test_days)
        streams.print_patterns(window, patterns, 32)

        days_tied = {tag: same_day(stream, backtests.scored[tag]) for tag in runs}
        print("\nsame-day payments (fraudwatch on, all days): rows, mean score, alerted")
        for place, row in days_tied["on"].items():
            cells = "  ".join(
                f"{kind} {v['rows']:,} {v['mean_score'] or 0:.4f} {v['alerted'] or 0:.4f}"
                for kind, v in row.items()
            )
            print(f"  {place:30} {cells}")

        streams.write_stream_results(
            "banksim",
            {
                "data": meta,
                **backtests.figures(),
                "split": split.figures(labels),
                "features": [*FEATURES, "merchant one-hot (50)"],
                "test_window": window,
                "patterns": patterns,
                "same_day": days_tied,
            },
            begun,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
