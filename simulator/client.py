"""The standalone client: post simulated transactions to a running server at a steady rate."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import signal
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import aiohttp

from simulator.generator import Labeled, Simulator, ndjson

INGEST_PATH = "/api/v1/transactions"
# Well under the server's default 8 MiB body limit (a transaction is ~350 bytes): a client
# that fell behind catches up in several requests instead of one the server refuses.
MAX_BATCH = 5000
FLAGGED = frozenset({"review", "block"})


class TargetRefused(Exception):
    """The server rejected our credentials; retrying cannot help."""


@dataclass(frozen=True, kw_only=True)
class ClientOptions:
    target: str
    api_key: str
    rate: float = 50.0
    seed: int = 7
    duration: float | None = None
    batch_ms: float = 200.0
    accounts: int | None = None  # sized from the rate: ~6 transactions a day per card
    merchants: int = 300
    fraud_rate: float = 0.02
    report_s: float = 5.0


@dataclass
class ClientStats:
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    fraud_sent: int = 0
    fraud_flagged: int = 0
    decisions: Counter[str] = field(default_factory=Counter)
    last_error: str | None = None

    def line(self, elapsed: float) -> str:
        decisions = " ".join(f"{k}={v}" for k, v in sorted(self.decisions.items())) or "-"
        text = (
            f"[{elapsed:7.1f}s] sent={self.sent} ({self.sent / max(elapsed, 1e-9):.1f}/s) "
            f"accepted={self.accepted} rejected={self.rejected} failed={self.failed} "
            f"decisions: {decisions} fraud flagged={self.fraud_flagged}/{self.fraud_sent}"
        )
        return text + (f" last error: {self.last_error}" if self.last_error else "")


def _tally(stats: ClientStats, batch: list[Labeled], reply: Any) -> None:
    results = reply.get("results") if isinstance(reply, dict) else None
    if not isinstance(results, list):
        # An ingest that queues instead of scoring inline has no verdicts to give back.
        stats.accepted += len(batch)
        return
    for item, result in zip(batch, results, strict=False):
        decision = result.get("decision") if isinstance(result, dict) else None
        if isinstance(decision, str):
            stats.accepted += 1
            stats.decisions[decision] += 1
            if item.is_fraud and decision in FLAGGED:
                stats.fraud_flagged += 1
        else:
            stats.rejected += 1


async def _post(
    session: aiohttp.ClientSession, url: str, batch: list[Labeled], stats: ClientStats
) -> None:
    stats.sent += len(batch)
    stats.fraud_sent += sum(1 for item in batch if item.is_fraud)
    try:
        async with session.post(url, data=ndjson(batch)) as response:
            if response.status in (401, 403):
                raise TargetRefused(f"{url} answered {response.status}: check --api-key")
            if response.status >= 300:
                stats.failed += len(batch)
                stats.last_error = f"HTTP {response.status}: {(await response.text())[:200]}"
                return
            _tally(stats, batch, await response.json(content_type=None))
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        # Keep going: the server may be restarting, and the next tick brings a new batch.
        stats.failed += len(batch)
        stats.last_error = f"{type(exc).__name__}: {exc}"


async def run_client(
    options: ClientOptions, *, stop: asyncio.Event | None = None, out: TextIO = sys.stdout
) -> ClientStats:
    """Post batches every `batch_ms` until `duration` passes or `stop` is set."""
    stop = stop or asyncio.Event()
    sim = Simulator(
        seed=options.seed,
        accounts=options.accounts,
        merchants=options.merchants,
        fraud_rate=options.fraud_rate,
        rate=options.rate,
    )
    url = options.target.rstrip("/") + INGEST_PATH
    headers = {
        "Authorization": f"Bearer {options.api_key}",
        "Content-Type": "application/x-ndjson",
    }
    stats = ClientStats()
    began = time.monotonic()
    next_report = began + options.report_s
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
        while True:
            elapsed = time.monotonic() - began
            finished = stop.is_set() or (
                options.duration is not None and elapsed >= options.duration
            )
            # Event time is wall time: the simulator started "now", so everything up to now
            # is exactly `rate` per second of real time, whatever the ticks' jitter.
            batch = sim.generate_until(dt.datetime.now(dt.UTC))
            for i in range(0, len(batch), MAX_BATCH):
                await _post(session, url, batch[i : i + MAX_BATCH], stats)
            if time.monotonic() >= next_report:
                print(stats.line(time.monotonic() - began), file=out, flush=True)
                stats.last_error = None
                next_report += options.report_s
            if finished:
                break
            delay = options.batch_ms / 1000
            if options.duration is not None:
                delay = min(delay, max(0.0, began + options.duration - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
    print("done " + stats.line(time.monotonic() - began), file=out, flush=True)
    return stats


def parse_args(argv: Sequence[str] | None = None) -> ClientOptions:
    parser = argparse.ArgumentParser(
        prog="python -m simulator",
        description="Post simulated card transactions to a fraudwatch server as NDJSON.",
    )
    parser.add_argument(
        "--target", required=True, help="Server base URL, e.g. http://127.0.0.1:8000"
    )
    parser.add_argument("--api-key", required=True, help="Bearer key for the ingest API.")
    parser.add_argument("--rate", type=float, default=50.0, help="Transactions per second.")
    parser.add_argument("--seed", type=int, default=7, help="Same seed, same stream.")
    parser.add_argument(
        "--duration", type=float, default=None, help="Stop after this many seconds."
    )
    parser.add_argument("--batch-ms", type=float, default=200.0, help="Milliseconds between posts.")
    parser.add_argument(
        "--accounts",
        type=int,
        default=None,
        help="Simulated cardholders (default: sized from --rate, ~6 transactions a day each).",
    )
    parser.add_argument("--merchants", type=int, default=300, help="Simulated merchants.")
    parser.add_argument(
        "--fraud-rate", type=float, default=0.02, help="Share of fraudulent transactions."
    )
    args = parser.parse_args(argv)
    if not args.rate > 0:
        parser.error("--rate must be > 0")
    if args.accounts is not None and args.accounts < 1:
        parser.error("--accounts must be >= 1")
    if not args.batch_ms > 0:
        parser.error("--batch-ms must be > 0")
    if args.duration is not None and args.duration < 0:
        parser.error("--duration must be >= 0")
    return ClientOptions(
        target=args.target,
        api_key=args.api_key,
        rate=args.rate,
        seed=args.seed,
        duration=args.duration,
        batch_ms=args.batch_ms,
        accounts=args.accounts,
        merchants=args.merchants,
        fraud_rate=args.fraud_rate,
    )


async def _main(options: ClientOptions) -> ClientStats:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        # Ctrl-C ends the current tick cleanly (session closed, summary printed) instead of
        # cancelling a request halfway; Windows has no add_signal_handler and gets the default.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        return await run_client(options, stop=stop)
    finally:
        for sig in signals:
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        asyncio.run(_main(options))
    except TargetRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
