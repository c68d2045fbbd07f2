"""Detector throughput on a synthetic in-process stream, against a dict-only baseline."""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import gc
import platform
import pstats
import random
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Sequence
from decimal import Decimal

from server.detection.detector import Detector
from server.detection.verdict import Scored
from server.transactions import Transaction

CITIES = [
    ("US", 40.71, -74.01, -5),
    ("US", 34.05, -118.24, -8),
    ("GB", 51.51, -0.13, 0),
    ("FR", 48.86, 2.35, 1),
    ("DE", 52.52, 13.40, 1),
    ("JP", 35.68, 139.69, 9),
    ("BR", -23.55, -46.63, -3),
    ("IN", 19.08, 72.88, 5),
    ("AU", -33.87, 151.21, 10),
    ("ZA", -26.20, 28.05, 2),
]
START = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)


def generate(n_tx: int, n_accounts: int, seed: int) -> list[Transaction]:
    """A time-ordered stream: mostly habitual spending, a sprinkle of fraud-like events."""
    rng = random.Random(seed)
    accounts = []
    for i in range(n_accounts):
        country, lat, lon, offset = rng.choice(CITIES)
        accounts.append(
            (
                f"acct-{i:06d}",
                country,
                lat,
                lon,
                dt.timezone(dt.timedelta(hours=offset)),
                [f"m-{rng.randrange(5000):04d}" for _ in range(rng.randint(3, 15))],
                f"dev-{i:06d}",
                rng.uniform(2.5, 4.5),  # log of the typical amount
            )
        )
    span = 3 * 86400.0
    stream = sorted((rng.uniform(0, span), rng.randrange(n_accounts)) for _ in range(n_tx))
    txs = []
    for k, (offset_s, a) in enumerate(stream):
        acct, country, lat, lon, tz, merchants, device, mu = accounts[a]
        amount = rng.lognormvariate(mu, 0.6)
        merchant = rng.choice(merchants)
        roll = rng.random()
        if roll < 0.005:  # somewhere far away
            country, lat, lon, _ = rng.choice(CITIES)
        elif roll < 0.01:
            amount *= 20
        elif roll < 0.02:
            merchant = f"m-{rng.randrange(5000):04d}"
        located = rng.random() > 0.1
        txs.append(
            Transaction(
                id=f"tx-{k}",
                timestamp=(START + dt.timedelta(seconds=offset_s)).astimezone(tz),
                account_id=acct,
                merchant_id=merchant,
                amount=Decimal(f"{amount:.2f}") or Decimal("0.01"),
                currency="USD",
                country=country if located else None,
                lat=lat + rng.uniform(-0.1, 0.1) if located else None,
                lon=lon + rng.uniform(-0.1, 0.1) if located else None,
                device_id=device if rng.random() > 0.05 else None,
            )
        )
    # Card-testing bursts on a few accounts: four tiny charges a minute apart.
    for j in range(n_tx // 2000):
        base = txs[rng.randrange(len(txs))]
        for m in range(4):
            txs.append(
                Transaction(
                    id=f"ct-{j}-{m}",
                    timestamp=base.timestamp + dt.timedelta(seconds=60 * m + 1),
                    account_id=base.account_id,
                    merchant_id=f"m-{rng.randrange(5000):04d}",
                    amount=Decimal(f"{rng.uniform(0.5, 2):.2f}"),
                    currency="USD",
                )
            )
    txs.sort(key=lambda tx: tx.timestamp)
    return txs


class DictOnly:
    """Baseline: look the account up, bump a counter, return a shared answer."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.allow = Scored(0.0, "allow", "low", (), "baseline")

    def score(self, tx: Transaction) -> Scored:
        counts = self.counts
        counts[tx.account_id] = counts.get(tx.account_id, 0) + 1
        return self.allow


def run(score: Callable[[Transaction], Scored], txs: Sequence[Transaction]) -> tuple[float, float]:
    """Wall and CPU seconds for one pass; CPU time is what a busy shared machine distorts less."""
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    for tx in txs:
        score(tx)
    return time.perf_counter() - wall, time.process_time() - cpu


def best_of(
    make: Callable[[], Callable[[Transaction], Scored]], txs: Sequence[Transaction], repeat: int
) -> tuple[float, float]:
    return min(run(make(), txs) for _ in range(repeat))


def state_bytes(txs: Sequence[Transaction]) -> tuple[int, int]:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    det = Detector()
    for tx in txs:
        det.score(tx)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used, len(det.featurizer.accounts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--transactions", type=int, default=200_000)
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="runs per scorer; best is kept")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one run")
    args = parser.parse_args()

    t0 = time.perf_counter()
    txs = generate(args.transactions, args.accounts, args.seed)
    print(
        f"{len(txs):,} transactions over {args.accounts:,} accounts "
        f"(generated in {time.perf_counter() - t0:.1f} s); "
        f"Python {platform.python_version()} on {platform.machine()}"
    )

    if args.profile:
        det = Detector()
        profiler = cProfile.Profile()
        profiler.runcall(run, det.score, txs)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
        return

    base_wall, base_cpu = best_of(lambda: DictOnly().score, txs, args.repeat)
    wall, cpu = best_of(lambda: Detector().score, txs, args.repeat)
    n = len(txs)
    print(f"best of {args.repeat} runs, each scorer starting from empty state")
    print(f"{'scorer':<10} {'tx/s':>12} {'µs/tx':>8} {'CPU µs/tx':>10}")
    for name, w, c in (("baseline", base_wall, base_cpu), ("detector", wall, cpu)):
        print(f"{name:<10} {n / w:>12,.0f} {w / n * 1e6:>8.2f} {c / n * 1e6:>10.2f}")
    print(f"detector / baseline: {wall / base_wall:.1f}× the time")

    det = Detector()
    decisions: Counter[str] = Counter()
    fired: Counter[str] = Counter()
    for tx in txs:
        scored = det.score(tx)
        decisions[scored.decision] += 1
        fired.update(r.code for r in scored.reasons)
    print("decisions: " + ", ".join(f"{k} {v:,}" for k, v in sorted(decisions.items())))
    print("rules fired: " + ", ".join(f"{k} {v:,}" for k, v in fired.most_common()))
    used, accounts = state_bytes(txs)
    print(
        f"detector state: {used / 1e6:.1f} MB for {accounts:,} accounts, "
        f"{used / accounts:,.0f} B/account (tracemalloc; account id strings not counted)"
    )


if __name__ == "__main__":
    main()
