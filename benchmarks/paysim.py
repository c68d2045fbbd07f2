"""Our detector on a third independent labelled stream: a PaySim-style mobile-money stream
(the simulator behind Kaggle's "Synthetic Financial Datasets For Fraud Detection",
PS_20174392719_1491204439457_log.csv), against the baselines a typical notebook for that set
trains, on the inputs our detector may see.

The generator is our own code, written from the published description of PaySim
(Lopez-Rojas, Elmir and Axelsson, "PaySim: a financial mobile money simulator for fraud
detection", EMSS 2016) and of the Kaggle file's columns and known properties:

1. One row per transaction, `step` the hour (1 = the first), five types with the file's
   shares: CASH_OUT 35 %, PAYMENT 34 %, CASH_IN 22 %, TRANSFER 8.4 %, DEBIT 0.65 %, and an
   amount per type from a log-normal around the file's medians (PAYMENT ~10,000, CASH_IN and
   CASH_OUT ~150,000, TRANSFER ~490,000, DEBIT ~3,000).
2. Legitimate volume follows a daily rhythm (quiet from midnight to 08:00) and varies a
   little from day to day.
3. nameOrig is a fresh client id ('C' and 9-10 digits) on almost every row. nameDest is a
   merchant ('M...', nearly unique) for a PAYMENT and otherwise a client from a pool that
   receives about seven transactions each over the run.
4. Fraud, about 0.13 % of the rows, only TRANSFER and CASH_OUT, at the same rate in every
   hour (no daily rhythm): a fraudster takes over a victim and empties its balance by
   TRANSFERs of at most 10,000,000 (PaySim's transfer limit) to a new mule account, each
   followed in the same step by a CASH_OUT of the same amount from the mule. With
   --kaggle-names the CASH_OUT's nameOrig is a fresh id instead of the mule, as in Kaggle's
   file (where the two do not match).
5. Balances (oldbalanceOrg, newbalanceOrig, oldbalanceDest, newbalanceDest) are written as
   the file has them: the origin's before and after, the pool destinations' running
   balances, merchants' as 0, and a fraud TRANSFER's destination as 0 before and after (the
   file's best-known quirk). isFlaggedFraud marks a few fraud TRANSFERs over 200,000.

Then, as benchmarks/sparkov.py does: `fraudwatch backtest` on the file as a user would run it
(7-day label delay, --time-unit h, account = nameOrig, merchant = nameDest, MCC = type and
without it; no id column, so ids are row numbers; the balances are never fed to the
detector); the notebook's logistic regression and random forest on the inputs the detector
may see (amount, type one-hot, hour of day, per-account and per-destination counts), trained
on --train-days, then --delay-days unused, then tested on the last --test-days; per type,
amount band and hour band the share of frauds each one alerts and puts in a day's top 100;
and what our score leaves out (a logistic regression on it and one more input).

Writes benchmarks/results/paysim-<UTC>.json. scikit-learn is the `bench` extra.

    .venv/bin/python benchmarks/paysim.py --keep /tmp/ps   # about 2 min, 0.3 M rows
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import streams  # noqa: E402
from results_file import commit  # noqa: E402

COLUMNS = ("step", "type", "amount", "nameOrig", "oldbalanceOrg", "newbalanceOrig",
           "nameDest", "oldbalanceDest", "newbalanceDest", "isFraud", "isFlaggedFraud")  # fmt: skip
MAPPING = ("account_id=nameOrig", "merchant_id=nameDest", "mcc=type", "timestamp=step")
TYPES = ("CASH_IN", "CASH_OUT", "DEBIT", "PAYMENT", "TRANSFER")
CASH_IN, CASH_OUT, DEBIT, PAYMENT, TRANSFER = range(len(TYPES))
SHARES = (0.220, 0.352, 0.0065, 0.338, 0.0835)
# Per type: median amount and the log-normal's sigma (the file's medians; spreads chosen so
# the means land near the file's: PAYMENT ~13,000, CASH_OUT ~180,000, TRANSFER ~900,000).
AMOUNTS = ((143_000, 0.8), (147_000, 0.8), (3_000, 1.0), (9_500, 0.75), (486_000, 1.1))
# Legitimate volume by hour of day (relative): PaySim's file is quiet from 00:00 to 08:00.
RHYTHM = (0.25, 0.12, 0.06, 0.04, 0.04, 0.08, 0.25, 0.55, 1.0, 1.5, 1.8, 1.9, 1.95, 1.95,
          1.9, 1.85, 1.85, 1.8, 1.75, 1.6, 1.3, 1.0, 0.7, 0.45)  # fmt: skip
TRANSFER_LIMIT = 10_000_000.0
FLAG_FROM = 200_000.0
DESTINATIONS_PER_ROW = 1 / 7.4  # pool clients per non-PAYMENT row: ~7 receipts each
DAY_STEPS = 24


@dataclass
class Stream:
    """The rows in file order (numpy arrays); ids are indices into `names`."""

    step: np.ndarray
    kind: np.ndarray  # index into TYPES
    amount: np.ndarray
    orig: np.ndarray
    old_orig: np.ndarray
    new_orig: np.ndarray
    dest: np.ndarray
    old_dest: np.ndarray
    new_dest: np.ndarray
    fraud: np.ndarray
    flagged: np.ndarray
    role: np.ndarray  # 0 legitimate, 1 fraud TRANSFER, 2 fraud CASH_OUT
    names: np.ndarray  # 'C…' / 'M…' strings

    @property
    def days(self) -> np.ndarray:
        return self.step // DAY_STEPS


class Names:
    """Fresh ids: 'C' or 'M' and 9-10 digits, drawn at random (a clash is rare, as in the
    file, where nameOrig repeats on 0.15 % of rows)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.names: list[str] = []

    def fresh(self, n: int, prefix: str = "C") -> np.ndarray:
        start = len(self.names)
        numbers = self.rng.integers(100_000_000, 2_150_000_000, n)
        self.names += [f"{prefix}{x}" for x in numbers.tolist()]
        return np.arange(start, start + n)


def _legit_counts(days: int, rows: int, rng: np.random.Generator) -> np.ndarray:
    """Legitimate rows per step (1..days*24-1): the daily rhythm times a day's own level."""
    hour_w = np.array(RHYTHM) / sum(RHYTHM)
    level = rng.lognormal(0.0, 0.15, days)
    mean = (level[:, None] * hour_w[None, :]).ravel() * rows / level.sum()
    return rng.poisson(mean[1:])


def generate(days: int, rows: int, fraud_rate: float, kaggle_names: bool, seed: int) -> Stream:
    rng = np.random.default_rng(seed)
    names = Names(rng)
    counts = _legit_counts(days, rows, rng)
    steps = np.arange(1, days * DAY_STEPS)
    n = int(counts.sum())
    step = np.repeat(steps, counts)
    kind = rng.choice(len(TYPES), n, p=np.array(SHARES) / sum(SHARES))
    median = np.array([m for m, _ in AMOUNTS])[kind]
    sigma = np.array([s for _, s in AMOUNTS])[kind]
    amount = np.round(median * np.exp(sigma * rng.standard_normal(n)), 2)
    orig = names.fresh(n)
    pool_size = max(1, int((kind != PAYMENT).sum() * DESTINATIONS_PER_ROW))
    pool = names.fresh(pool_size)
    # Some destinations (agents, popular payees) receive far more than others.
    popularity = rng.lognormal(0.0, 1.0, pool_size)
    dest = np.where(
        kind == PAYMENT, -1, pool[rng.choice(pool_size, n, p=popularity / popularity.sum())]
    )
    merchants = kind == PAYMENT
    dest[merchants] = names.fresh(int(merchants.sum()), "M")
    # A third of the senders hold nothing before (the file's many zero balances); the rest
    # hold around what they move.
    held = np.round(amount * rng.lognormal(0.3, 1.0, n), 2)
    old_orig = np.where(rng.random(n) < 0.33, 0.0, held)
    # Fraud: at the same rate every hour. Each victim's balance goes out in TRANSFERs of at
    # most the limit, each one cashed out in the same step: two rows per chunk.
    balances = np.round(rng.lognormal(np.log(440_000), 1.5, 4 * int(n * fraud_rate) + 16), 2)
    chunks = np.maximum(1, np.ceil(balances / TRANSFER_LIMIT)).astype(int)
    wanted = n * fraud_rate / (1 - fraud_rate)
    victims = int(np.searchsorted(np.cumsum(2 * chunks), wanted)) + 1
    balances, chunks = balances[:victims], chunks[:victims]
    victim_step = rng.choice(steps, victims)
    f_step, f_kind, f_amount, f_orig, f_old, f_dest, f_role = ([] for _ in range(7))
    victim_ids, mule_ids = names.fresh(victims), names.fresh(victims)
    for v in range(victims):
        left = float(balances[v])
        for _ in range(int(chunks[v])):
            chunk = min(left, TRANSFER_LIMIT)
            cash_out_by = names.fresh(1)[0] if kaggle_names else mule_ids[v]
            f_step += [victim_step[v]] * 2
            f_kind += [TRANSFER, CASH_OUT]
            f_amount += [chunk, chunk]
            f_orig += [victim_ids[v], cash_out_by]
            f_old += [left, chunk]
            f_dest += [mule_ids[v], pool[rng.integers(pool_size)]]
            f_role += [1, 2]
            left = round(left - chunk, 2)
    m = len(f_step)
    # Each pair goes in at a random place among its step's rows, the two rows adjacent.
    at = np.searchsorted(step, np.array(f_step), side="left") + rng.integers(
        0, np.maximum(counts[np.array(f_step) - 1], 1)
    )
    at[1::2] = at[::2]
    key = np.r_[np.arange(n) * 2.0, at * 2.0 - 1 + np.arange(m) * 1e-7]
    order = np.argsort(key, kind="stable")
    step = np.r_[step, f_step][order]
    kind = np.r_[kind, f_kind][order]
    amount = np.r_[amount, f_amount][order]
    orig = np.r_[orig, f_orig][order]
    old_orig = np.r_[old_orig, f_old][order]
    dest = np.r_[dest, f_dest][order]
    role = np.r_[np.zeros(n, dtype=np.int8), np.array(f_role, dtype=np.int8)][order]
    fraud = (role > 0).astype(np.int8)
    new_orig = np.where(kind == CASH_IN, old_orig + amount, np.maximum(old_orig - amount, 0.0))
    new_orig = np.round(new_orig, 2)
    old_dest, new_dest = _dest_balances(kind, amount, dest, role, pool_size, pool[0], rng)
    flagged = (role == 1) & (amount > FLAG_FROM) & (rng.random(len(step)) < 0.004)
    return Stream(step, kind, amount, orig, old_orig, new_orig, dest, old_dest, new_dest,
                  fraud, flagged.astype(np.int8), role, np.array(names.names))  # fmt: skip


def _dest_balances(
    kind: np.ndarray, amount: np.ndarray, dest: np.ndarray, role: np.ndarray, pool_size: int,
    first_pool: int, rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The pool destinations' running balances; merchants and fraud TRANSFERs' mules 0."""
    balance = np.round(rng.lognormal(np.log(500_000), 1.5, pool_size), 2)
    old, new = np.zeros(len(kind)), np.zeros(len(kind))
    sign = np.where(kind == CASH_IN, -1.0, 1.0)  # a cash-in agent pays out the cash
    for i, (d, k, r) in enumerate(zip(dest.tolist(), kind.tolist(), role.tolist(), strict=True)):
        j = d - first_pool
        if k == PAYMENT or r == 1 or not 0 <= j < pool_size:
            continue
        old[i] = balance[j]
        balance[j] = max(round(balance[j] + sign[i] * amount[i], 2), 0.0)
        new[i] = balance[j]
    return old, new


def write_csv(stream: Stream, path: Path) -> None:
    """The file's layout: no id column; amounts and balances to the cent."""
    names = stream.names
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        columns = zip(
            stream.step.tolist(), stream.kind.tolist(), stream.amount.tolist(),
            stream.orig.tolist(), stream.old_orig.tolist(), stream.new_orig.tolist(),
            stream.dest.tolist(), stream.old_dest.tolist(), stream.new_dest.tolist(),
            stream.fraud.tolist(), stream.flagged.tolist(), strict=True,
        )  # fmt: skip
        for s, k, a, o, oo, no, d, od, nd, y, fl in columns:
            writer.writerow((s, TYPES[k], f"{a:.2f}", names[o], f"{oo:.2f}", f"{no:.2f}",
                             names[d], f"{od:.2f}", f"{nd:.2f}", y, fl))  # fmt: skip


FEATURES = ("amount", *(f"type_{t}" for t in TYPES), "hour", "orig_count", "dest_count",
            "dest_count_24h")  # fmt: skip


def _running_count(key: np.ndarray, step: np.ndarray, window: int | None) -> np.ndarray:
    """Rows of the same key so far (this one included), over the whole file or the last
    `window` steps."""
    n = len(key)
    order = np.lexsort((np.arange(n), key))
    keys, steps = key[order], step[order]
    out = np.zeros(n)
    bounds = np.flatnonzero(np.diff(keys)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, n], strict=True):
        pos = np.arange(hi - lo)
        if window is None:
            out[order[lo:hi]] = pos + 1
        else:
            t = steps[lo:hi]
            out[order[lo:hi]] = pos + 1 - np.searchsorted(t, t - window, side="right")
    return out


def features(stream: Stream) -> np.ndarray:
    """A typical notebook's features for this set, limited to what the detector is given:
    no balances. Counts are of the rows so far, this one included."""
    n = len(stream.step)
    out = np.zeros((n, len(FEATURES)))
    out[:, 0] = stream.amount
    out[np.arange(n), 1 + stream.kind] = 1.0
    j = 1 + len(TYPES)
    out[:, j] = stream.step % DAY_STEPS
    out[:, j + 1] = _running_count(stream.orig, stream.step, None)
    out[:, j + 2] = _running_count(stream.dest, stream.step, None)
    out[:, j + 3] = _running_count(stream.dest, stream.step, DAY_STEPS)
    return out


def breakdown(
    stream: Stream, rows: np.ndarray, scores: np.ndarray, flagged: np.ndarray
) -> dict[str, dict[str, Any]]:
    """Among `rows`' frauds, per group: count, share alerted, share in its day's top 100."""
    hour = stream.step[rows] % DAY_STEPS
    amount = stream.amount[rows]
    role = stream.role[rows]
    groups = {
        "fraud TRANSFER (victim to mule)": role == 1,
        "fraud CASH_OUT (from the mule)": role == 2,
        "amount < 200,000": amount < 200_000,
        "amount 200,000-1,000,000": (amount >= 200_000) & (amount < 1_000_000),
        "amount 1,000,000-9,999,999": (amount >= 1_000_000) & (amount < TRANSFER_LIMIT),
        "amount 10,000,000 (the limit)": amount >= TRANSFER_LIMIT,
        "hours 00-07 (quiet)": hour < 8,
        "hours 08-23": hour >= 8,
        "all": np.ones(len(rows), dtype=bool),
    }
    fraud = stream.fraud[rows] == 1
    return streams.group_shares(
        groups, fraud, flagged, streams.in_day_top(stream.days[rows], scores)
    )


def inflow(stream: Stream) -> np.ndarray:
    """log(1 + what the row's nameOrig received as a nameDest in the 24 steps before, or in
    this step before this row): a mule cashing out what it was just sent."""
    n = len(stream.step)
    received: dict[int, list[tuple[int, float]]] = defaultdict(list)
    out = np.zeros(n)
    rows = zip(stream.step.tolist(), stream.orig.tolist(), stream.dest.tolist(),
               stream.amount.tolist(), strict=True)  # fmt: skip
    for i, (s, o, d, a) in enumerate(rows):
        got = received.get(o)
        if got:
            out[i] = np.log1p(sum(x for t, x in got if t > s - DAY_STEPS))
        received[d].append((s, a))
    return out


def residual_signals(
    stream: Stream, x: np.ndarray, scores: np.ndarray, split: streams.Split
) -> dict[str, dict[str, float | None]]:
    """What our score leaves out: a logistic regression (seed 0) on the logit of our score
    alone, then with one input added, trained and tested on the baselines' split. An input
    that raises the test AP carries fraud signal our inputs do not see."""
    train = split.train
    logit = streams.score_logit(scores)
    types = x[:, 1 : 1 + len(TYPES)]
    # The type's fraud rate among the labels known before the training days end (what a
    # learnt per-type rate would hold then): fraud / (labels + 1).
    labels = stream.fraud.astype(int)
    rate = np.zeros(len(TYPES))
    for t in range(len(TYPES)):
        mine = stream.kind[train] == t
        rate[t] = labels[train][mine].sum() / (mine.sum() + 1)
    type_rate = rate[stream.kind][:, None]
    dest_prior = np.log1p(x[:, FEATURES.index("dest_count")] - 1)[:, None]
    new_dest = (x[:, FEATURES.index("dest_count")] == 1).astype(float)[:, None]
    log_amount = np.log1p(stream.amount)[:, None]
    received = inflow(stream)[:, None]
    groups = {
        "score": [logit],
        "score + type one-hot": [logit, types],
        "score + type's fraud rate (train labels)": [logit, type_rate],
        "score + destination's prior receipts (log)": [logit, dest_prior],
        "score + new destination": [logit, new_dest],
        "score + new destination x log amount": [logit, new_dest * log_amount],
        "score + sender's inflow in 24 h (log)": [logit, received],
        "score + type's rate + new destination x log amount": [
            logit, type_rate, new_dest * log_amount
        ],
        "score + type's rate + new destination x log amount + inflow": [
            logit, type_rate, new_dest * log_amount, received
        ],
        "score + every notebook feature + the three": [
            logit, x, type_rate, new_dest * log_amount, received
        ],
    }  # fmt: skip
    return streams.residual_fits(groups, labels, split)


def reweighted(
    stream: Stream, x: np.ndarray, scores: np.ndarray, train: np.ndarray, test: np.ndarray,
    cards: np.ndarray,
) -> dict[str, dict[str, float | None]]:  # fmt: skip
    """Our test-day scores scaled by what a type's fraud rate and a new destination would
    say, without refitting anything: the type's rate among the training days' labels
    (fraud / (rows + 1)), and x2 when the destination receives for the first time."""
    labels = stream.fraud.astype(int)
    rate = np.array([
        labels[train][stream.kind[train] == t].sum() / ((stream.kind[train] == t).sum() + 1)
        for t in range(len(TYPES))
    ])  # fmt: skip
    new = np.where(x[:, FEATURES.index("dest_count")] == 1, 2.0, 1.0)
    variants = {
        "score": scores,
        "score, types without a fraud label zeroed": scores * (rate[stream.kind] > 0),
        "score x type's fraud rate": scores * rate[stream.kind],
        "score x type's fraud rate x 2 if new destination": scores * rate[stream.kind] * new,
    }
    t_days, t_cards, t_labels = stream.days[test].tolist(), cards[test].tolist(), labels[test]
    return {
        name: streams.ranking(t_days, t_cards, v[test].tolist(), t_labels.tolist())
        for name, v in variants.items()
    }


def type_rate_known(stream: Stream, delay_steps: int) -> np.ndarray:
    """Per row, its type's fraud labels over labels + 1 among the rows whose label was due
    (`delay_steps` after them) before it: what a learnt per-type (per-MCC) rate would say."""
    labels = stream.fraud.astype(int)
    due = np.searchsorted(stream.step, stream.step + delay_steps, side="left")
    by_row: dict[int, list[int]] = defaultdict(list)
    for i, r in enumerate(due.tolist()):
        by_row[r].append(i)
    frauds, seen = np.zeros(len(TYPES)), np.zeros(len(TYPES))
    out = np.zeros(len(labels))
    for i, k in enumerate(stream.kind.tolist()):
        for j in by_row.get(i, ()):
            seen[stream.kind[j]] += 1
            frauds[stream.kind[j]] += labels[j]
        out[i] = frauds[k] / (seen[k] + 1)
    return out


def online_estimate(
    data: Path, stream: Stream, x: np.ndarray, test: np.ndarray, cards: np.ndarray,
    delay_days: int, learnt_days: int,
) -> dict[str, dict[str, float | None]]:  # fmt: skip
    """What a candidate input would add to the online model itself: the detector's own model
    inputs for every row (computed in one pass as the backtest does, MCC = type), a candidate
    appended, OnlineLogit and NegativeSampler as the detector uses them learning the labels
    known when the test window starts (days before `learnt_days`), tested on `test` frozen,
    as benchmarks/learner.py does."""
    from model import model_inputs

    from server.detection.model import NEGATIVE_RATIO, NegativeSampler, OnlineLogit
    from server.replay_source import Row, Source, SourceOptions

    mapping = {"account_id": "nameOrig", "merchant_id": "nameDest", "mcc": "type",
               "timestamp": "step"}  # fmt: skip
    with Source(data, SourceOptions(mapping=mapping, label="isFraud", time_unit="h")) as source:
        rows = [item for item in source if isinstance(item, Row)]
    vectors = np.array(model_inputs(rows, f"{delay_days}d")[0])
    prior = x[:, FEATURES.index("dest_count")] - 1
    # As the detector can keep them: its merchant windows end at 30 days.
    recent = _running_count(stream.dest, stream.step, 30 * DAY_STEPS) - 1
    type_rate = type_rate_known(stream, delay_days * DAY_STEPS)
    new_dest = (prior == 0).astype(float)
    received = inflow(stream)
    candidates = {
        "the detector's inputs": [],
        "+ type's fraud rate (labels due)": [type_rate],
        "+ new destination": [new_dest],
        "+ destination's prior receipts (log)": [np.log1p(prior)],
        "+ destination's receipts in 30 days (log)": [np.log1p(recent)],
        "+ destination's newness, 1 / (1 + receipts in 30 days)": [1 / (1 + recent)],
        "+ type's rate + destination's prior receipts": [type_rate, np.log1p(prior)],
        "+ sender's inflow in 24 h (log)": [received],
        "+ type's rate + prior receipts + inflow": [type_rate, np.log1p(prior), received],
    }
    labels = stream.fraud.astype(int)
    learn = np.flatnonzero(stream.days < learnt_days).tolist()
    t_days, t_cards, t_labels = stream.days[test].tolist(), cards[test].tolist(), labels[test]
    out = {}
    for name, extra in candidates.items():
        z = np.hstack([vectors, *(c[:, None] for c in extra)]).tolist()
        model = OnlineLogit()
        k = len(extra)  # the learner is sized for FEATURE_NAMES: widen it
        model.w += [0.0] * k
        model.g2 += [model.g2[0]] * k
        model.sums += [0.0] * k
        model.squares += [0.0] * k
        model.scale += [1.0] * k
        sampler = NegativeSampler(NEGATIVE_RATIO)
        for i in learn:
            if weight := sampler.weight(rows[i].transaction.id, bool(labels[i])):
                model.learn_one(z[i], bool(labels[i]), weight)
        frozen = model.freeze()
        scores = [frozen.predict_proba(z[i]) for i in test.tolist()]
        out[name] = streams.ranking(t_days, t_cards, scores, t_labels.tolist())
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rows", type=int, default=300_000,
                        help="legitimate rows, about (PaySim: 6.35 M in 31 days)")  # fmt: skip
    parser.add_argument("--fraud-rate", type=float, default=0.0013)
    parser.add_argument("--kaggle-names", action="store_true",
                        help="the CASH_OUT's nameOrig a fresh id, not the mule's (as in "
                        "Kaggle's file)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    streams.add_common_options(parser, "paysim", train_days=14, test_days=7)
    parser.add_argument("--inputs", action="store_true",
                        help="also estimate candidate model inputs with the online learner "
                        "on the detector's own inputs (about a minute more)")  # fmt: skip
    opts = parser.parse_args()
    train_from = streams.first_train_day(opts, 1)
    begun = time.perf_counter()

    with streams.work_dir(opts.keep) as work:
        data = work / "paysim.csv"
        stream, how = streams.generated_or_kept(
            data, work / "paysim.npz",
            lambda: generate(opts.days, opts.rows, opts.fraud_rate, opts.kaggle_names, opts.seed),
            write_csv, Stream,
        )  # fmt: skip
        n = len(stream.step)
        frauds = int(stream.fraud.sum())
        orig_names = stream.names[stream.orig]
        meta = {
            "rows": n,
            "frauds": frauds,
            "fraud_transfers": int((stream.role == 1).sum()),
            "fraud_cash_outs": int((stream.role == 2).sum()),
            "frauds_at_the_limit": int((stream.amount[stream.fraud == 1] >= TRANSFER_LIMIT).sum()),
            "rows_by_type": {t: int((stream.kind == i).sum()) for i, t in enumerate(TYPES)},
            "name_orig_distinct": len(np.unique(orig_names)),
            "name_dest_distinct": len(np.unique(stream.dest)),
            "flagged": int(stream.flagged.sum()),
            "days": opts.days,
            "legit_rows_asked": opts.rows,
            "fraud_rate": opts.fraud_rate,
            "kaggle_names": opts.kaggle_names,
            "seed": opts.seed,
            "bytes": data.stat().st_size,
            "commit": commit(),
        }  # fmt: skip
        print(
            f"data: {n:,} rows over {opts.days} days, {frauds:,} frauds ({frauds / n:.3%}: "
            f"{meta['fraud_transfers']} TRANSFER, {meta['fraud_cash_outs']} CASH_OUT), "
            f"{meta['name_orig_distinct']:,} distinct nameOrig, {meta['name_dest_distinct']:,} "
            f"nameDest, seed {opts.seed}, {meta['bytes'] / 1e6:.0f} MB, {how}"
        )

        no_mcc = tuple(m for m in MAPPING if not m.startswith("mcc="))
        runs = {"on": ("on", MAPPING), "on_no_mcc": ("on", no_mcc), "off": ("off", MAPPING)}
        backtests = streams.run_backtests(
            data, work, runs, "isFraud", opts.delay_days,
            lambda path: streams.read_scores(path, n, streams.row_number), ("--time-unit", "h"),
        )  # fmt: skip
        scored = backtests.scored
        meta |= backtests.notes()

        started = time.perf_counter()
        x = features(stream)
        labels = stream.fraud.astype(int)
        split = streams.baseline_split(stream.days, stream.orig, stream.fraud, train_from, opts)
        models = streams.notebook_baselines(x, labels, split, opts.trees, max_iter=1000)
        print(split.describe(labels, time.perf_counter() - started))

        _, cards = np.unique(orig_names, return_inverse=True)
        window, patterns = streams.compare_window(
            runs, scored, models, split.test, (stream.days, cards, labels),
            lambda rows, scores, alerts: breakdown(stream, rows, scores, alerts),
        )  # fmt: skip
        streams.print_window(backtests.overall(), window, split.test_days)
        residual = residual_signals(stream, x, scored["on"][0], split)
        print("\nwhat fraudwatch on's score leaves out (logistic regression on it and one "
              "more input; test days):")  # fmt: skip
        for name, m in residual.items():
            print(f"  {name:62}{m['average_precision']:>7.3f}{m['roc_auc']:>9.3f}")

        scaled = reweighted(stream, x, scored["on"][0], split.train, split.test, cards)
        print("\nfraudwatch on's scores reweighted (test days):")
        for name, m in scaled.items():
            print(f"  {name:62}{m['average_precision']:>7.3f}{m['roc_auc']:>9.3f}"
                  f"{m['card_precision_at_100']:>12.3f}")  # fmt: skip

        estimate = None
        if opts.inputs:
            started = time.perf_counter()
            learnt = train_from + opts.train_days
            estimate = online_estimate(data, stream, x, split.test, cards, opts.delay_days, learnt)
            took = time.perf_counter() - started
            print(f"\nthe online model with a candidate input (labels of days 1-{learnt} "
                  f"learnt, frozen; test days; {took:.0f} s):")  # fmt: skip
            for name, m in estimate.items():
                print(f"  {name:62}{m['average_precision']:>7.3f}{m['roc_auc']:>9.3f}"
                      f"{m['card_precision_at_100']:>12.3f}")  # fmt: skip

        streams.print_patterns(window, patterns, 32)

        streams.write_stream_results(
            "paysim",
            {
                "data": meta,
                **backtests.figures(),
                "split": split.figures(labels),
                "features": list(FEATURES),
                "test_window": window,
                "patterns": patterns,
                "residual_signals": {"of": "on", "test_window": residual},
                "reweighted": {"of": "on", "test_window": scaled},
                "online_estimate": estimate,
            },
            begun,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
