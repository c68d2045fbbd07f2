"""Detector state size per account (and per million), snapshot size and time, eviction.

Feeds --accounts accounts --per-account transactions each, spread over --days of event
time (each with a device, an IP, a location and an MCC, so every kind of state is used),
through a Featurizer computing (a) the default rule pack's features and (b) every feature,
and measures with tracemalloc what the state holds, then the snapshot's size and the time
to write and read it. Key strings are counted (they are part of the state's cost).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import random
import sys
import time
import tracemalloc
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from server.detection.features import FEATURES, Featurizer
from server.detection.rules import load_rules
from server.detection.snapshot import decode_into, encode
from server.transactions import Transaction

START = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def stream(accounts: int, per_account: int, days: float, seed: int) -> list[Transaction]:
    rng = random.Random(seed)
    span = days * 86400
    txs = []
    for a in range(accounts):
        home_lat, home_lon = rng.uniform(-50, 50), rng.uniform(-120, 120)
        for k in range(per_account):
            txs.append(
                Transaction(
                    id=f"{a}-{k}",
                    timestamp=START + dt.timedelta(seconds=rng.uniform(0, span)),
                    account_id=f"acct-{a:07d}",
                    merchant_id=f"m-{rng.randrange(accounts // 10 + 1):06d}",
                    amount=Decimal(f"{rng.lognormvariate(3.5, 0.7):.2f}"),
                    currency="USD",
                    country=rng.choice(("US", "US", "US", "CA")),
                    lat=home_lat + rng.uniform(-0.1, 0.1),
                    lon=home_lon + rng.uniform(-0.1, 0.1),
                    device_id=f"dev-{a:07d}-{rng.randrange(2)}",
                    # Two addresses an account (home and phone), as devices.
                    ip=f"10.{a % 250}.{a // 250 % 250}.{rng.randrange(2)}",
                    mcc=rng.choice(("5411", "5812", "5999", "4111")),
                )
            )
    txs.sort(key=lambda tx: tx.timestamp)
    return txs


def measure(name: str, names: frozenset[str], txs: list[Transaction], accounts: int) -> None:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    fz = Featurizer(names)
    for tx in txs:
        fz.values_one(tx)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    sizes = fz.size()
    started = time.perf_counter()
    data = encode(fz)
    encode_s = time.perf_counter() - started
    started = time.perf_counter()
    decode_into(Featurizer(names), data)
    decode_s = time.perf_counter() - started
    per_account = used / accounts
    print(
        f"{name}: {used / 1e6:,.1f} MB for {sizes}; {per_account:,.0f} B per account "
        f"(all keys included) = {per_account * 1e6 / 1e9:,.2f} GB per million accounts\n"
        f"  snapshot {len(data) / 1e6:,.1f} MB ({len(data) / accounts:,.0f} B per account), "
        f"encode {encode_s:.2f} s, decode {decode_s:.2f} s "
        f"(~{encode_s * 1e6 / accounts:.0f} s / {decode_s * 1e6 / accounts:.0f} s per million)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=50_000)
    parser.add_argument("--per-account", type=int, default=20)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    txs = stream(args.accounts, args.per_account, args.days, args.seed)
    print(
        f"{len(txs):,} transactions, {args.accounts:,} accounts x {args.per_account} over "
        f"{args.days:g} days; Python {sys.version.split()[0]}"
    )
    measure("default pack", load_rules().features, txs, args.accounts)
    measure("every feature", frozenset(FEATURES), txs, args.accounts)


if __name__ == "__main__":
    main()
