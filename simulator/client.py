"""The standalone client: post simulated transactions to a running server at a steady rate."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import email.utils
import itertools
import random
import signal
import sys
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import aiohttp

from server.config import is_base_url
from server.views.responses import (
    CONNECT_TIMEOUT_S,
    FIRST_CONNECT_TRIES,
    cannot_connect,
    error_message,
    first_connect_wait,
)
from simulator.generator import Labeled, Simulator, ndjson

INGEST_PATH = "/api/v1/transactions"
# Well under the server's default 8 MiB body limit (a transaction is ~350 bytes): a client
# that fell behind catches up in several requests instead of one the server refuses.
MAX_BATCH = 5000
FLAGGED = frozenset({"review", "block"})
# What the server may answer while it restarts, is overloaded or sits behind a proxy that
# lost it: "not answered; send it again" (docs/api.md). Every other 4xx is about the data
# or the request, and the same request would get the same answer.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
# A 500 is a bug of the server's (docs/api.md: "do not loop"), but a deploy can fix it: a
# few tries, then the batch is reported as refused so the feed moves on.
TRIES_ON_500 = 3
# A Retry-After beyond this is taken as a mistake, not as an order to sleep for hours.
RETRY_AFTER_MAX_S = 300.0
# Until the server has answered a request, a connection that cannot be made (refused, a
# host name that does not resolve, or not made within CONNECT_TIMEOUT_S) is tried
# FIRST_CONNECT_TRIES times, then the feed stops, by `fraudwatch replay`'s rule
# (server/views/responses.py).
# A request's time in all: above the server's ingest_timeout (10 s), so its 503 comes
# before this timeout.
REQUEST_TIMEOUT_S = 30.0
# Transactions alone over the server's request limit named one a line; the rest are
# counted, and totalled at the end (a tiny limit drops every one, at the feed's rate).
NAMED_DROPS = 3


class TargetRefused(Exception):
    """The server rejected our credentials, or the URL is not its ingest API; retrying
    cannot help."""


class TargetDown(Exception):
    """Nothing listens at the target: no connection was made in FIRST_CONNECT_TRIES tries,
    and none ever had been."""


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
    # Transactions held while the server does not answer: ~0.6 KB each in this process
    # (measured with tracemalloc), so ~60 MB, 5.5 minutes of a 300 tx/s feed. Past it,
    # new ones are dropped.
    max_backlog: int = 100_000
    # Past max_backlog, one line when it fills, then the count dropped since at most this
    # often: each tick's drop was a line of its own, 5 a second at --batch-ms 200.
    backlog_report_s: float = 5.0
    retry_base_s: float = 1.0
    retry_max_s: float = 30.0
    # After --duration or Ctrl-C: how long to keep trying to deliver what is held.
    drain_s: float = 30.0
    # A connection not made within this is one that cannot be made (a host or firewall
    # dropping packets): replay's. A request has REQUEST_TIMEOUT_S in all.
    connect_timeout_s: float = CONNECT_TIMEOUT_S


@dataclass
class ClientStats:
    generated: int = 0
    sent: int = 0  # distinct transactions posted at least once
    resent: int = 0  # posted again after a try that got no final answer (not a 413's split)
    stored: int = 0  # answered with a verdict: stored (once, whatever the re-sends)
    refused: int = 0  # answered with an error: not stored, and not re-sent
    # Never delivered: over max_backlog, alone over the server's request limit, or still
    # held at the end.
    dropped: int = 0
    fraud_sent: int = 0
    fraud_flagged: int = 0
    decisions: Counter[str] = field(default_factory=Counter)
    waiting: int = 0
    last_error: str | None = None

    def line(self, elapsed: float) -> str:
        decisions = " ".join(f"{k}={v}" for k, v in sorted(self.decisions.items())) or "-"
        text = (
            f"[{elapsed:7.1f}s] generated={self.generated} sent={self.sent} "
            f"({self.sent / max(elapsed, 1e-9):.1f}/s) stored={self.stored} "
            f"resent={self.resent} refused={self.refused} dropped={self.dropped} "
            f"waiting={self.waiting} decisions: {decisions} "
            f"fraud flagged={self.fraud_flagged}/{self.fraud_sent}"
        )
        return text + (f" last error: {self.last_error}" if self.last_error else "")


class TooLarge(Exception):
    """The server refused the request as over its body or record limit (413), storing
    none of it: the same transactions in smaller requests may pass."""


class Retry(Exception):
    """The request got no final answer: send the same transactions again, after `after`
    seconds if the server said so."""

    def __init__(
        self,
        reason: str,
        after: float | None = None,
        *,
        status: int = 0,
        unreachable: bool = False,
    ) -> None:
        super().__init__(reason)
        self.after = after
        self.status = status
        self.unreachable = unreachable  # no connection could be made


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        seconds = (when - dt.datetime.now(dt.UTC)).total_seconds()
    if seconds != seconds:  # nan
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_MAX_S)


def backoff(failures: int, options: ClientOptions, rng: random.Random) -> float:
    """Capped exponential backoff with jitter (half to all of the step), so that many
    clients cut off by one restart do not all come back in the same instant."""
    step: float = min(options.retry_max_s, options.retry_base_s * 2.0 ** max(failures - 1, 0))
    return step * rng.uniform(0.5, 1.0)


def _tally(stats: ClientStats, batch: list[Labeled], reply: Any) -> None:
    results = reply.get("results") if isinstance(reply, dict) else None
    if not isinstance(results, list) or len(results) != len(batch):
        # Not the ingest API's answer (a proxy's page?): what was stored is unknown, and
        # re-sending is safe.
        raise Retry("the answer has no result per transaction")
    for item, result in zip(batch, results, strict=True):
        decision = result.get("decision") if isinstance(result, dict) else None
        if isinstance(decision, str):
            stats.stored += 1
            stats.decisions[decision] += 1
            if item.is_fraud and decision in FLAGGED:
                stats.fraud_flagged += 1
        else:
            # An answer about this record (id_conflict, invalid_field, stored_row_damaged):
            # final until the record changes, so it is reported, not re-sent.
            stats.refused += 1
            error = result.get("error") if isinstance(result, dict) else None
            stats.last_error = f"{item.transaction.id} refused: {error or result}"[:300]


async def _post(
    session: aiohttp.ClientSession,
    url: str,
    batch: list[Labeled],
    stats: ClientStats,
    *,
    tries: int,
) -> None:
    """Post one batch and tally its answer; Retry when it got no final answer."""
    try:
        async with session.post(url, data=ndjson(batch)) as response:
            if response.status in (401, 403):
                raise TargetRefused(f"{url} answered {response.status}: check --api-key")
            if response.status in (404, 405):
                raise TargetRefused(
                    f"{url} answered {response.status}: check --target, the server's base "
                    f"URL ({INGEST_PATH} is added to it)"
                )
            if response.status in RETRY_STATUSES or (
                response.status >= 500 and (response.status != 500 or tries < TRIES_ON_500)
            ):
                raise Retry(
                    f"HTTP {response.status}: {(await response.text())[:200]}",
                    retry_after(response.headers.get("Retry-After")),
                    status=response.status,
                )
            if response.status == 413:
                raise TooLarge(error_message(await response.text()))
            if response.status >= 300:
                # 400/409/422 (or a 500 that stayed): the same request would get the
                # same answer. Reported and counted; the feed goes on with the next batch.
                stats.refused += len(batch)
                stats.last_error = (
                    f"HTTP {response.status}, {len(batch)} transactions refused "
                    f"({batch[0].transaction.id} .. {batch[-1].transaction.id}): "
                    f"{(await response.text())[:200]}"
                )
                return
            reply = await response.json(content_type=None)
    except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
        # Refused, a name that does not resolve, or not made within the connect timeout.
        raise Retry(f"{type(exc).__name__}: {exc}", unreachable=True) from exc
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        # Connection refused or reset, a timeout, a cut answer: the server may have stored
        # some or all of the batch. The same ids again are safe: it keeps their first copy.
        raise Retry(f"{type(exc).__name__}: {exc}") from exc
    _tally(stats, batch, reply)


class Sender:
    """Delivers held transactions in order: the oldest batch is re-sent until it gets a
    final answer, and no later one is posted before it."""

    def __init__(
        self, session: aiohttp.ClientSession, url: str, options: ClientOptions, out: TextIO
    ) -> None:
        self.session = session
        self.url = url
        self.options = options
        self.out = out
        self.backlog: deque[Labeled] = deque()
        self.stats = ClientStats()
        self.failures = 0  # tries of the oldest batch that got no final answer
        self.tries_500 = 0
        self.next_try = 0.0
        self.rng = random.Random()
        self.unanswered = 0  # how many at the backlog's head a try may have stored
        self.posted = 0  # how many at the backlog's head were posted at least once
        # Most transactions a request carries: halved by each 413 (a server with a smaller
        # body limit than ours), then kept, so that later batches do not meet it again.
        self.batch_max = MAX_BATCH
        self.why = ""  # why the oldest batch is still held
        self.reached = False  # the server has answered a request, if only with a 503
        # Dropped alone over the request limit: how many, the first and last ids, and the
        # server's last word on it.
        self.too_large = 0
        self.too_large_ids = ("", "")
        self.too_large_why = ""
        # Dropped past max_backlog since the last line said so: how many, the first and
        # last ids; whether the backlog is full (its first drop said), and when the last
        # line was printed.
        self.full = False
        self.over = 0
        self.over_ids = ("", "")
        self.over_said = 0.0

    def hold(self, batch: list[Labeled]) -> None:
        stats = self.stats
        stats.generated += len(batch)
        room = max(self.options.max_backlog - len(self.backlog), 0)
        if len(batch) > room:
            lost = batch[room:]
            stats.dropped += len(lost)
            self._over_backlog(lost)
            batch = batch[:room]
        elif self.full:
            # Room again: the server caught up. What this episode dropped since its last
            # line is said now, and the next time the backlog fills is said at once.
            self._say_over_backlog()
            self.full = False
        self.backlog.extend(batch)
        stats.waiting = len(self.backlog)

    def _over_backlog(self, lost: list[Labeled]) -> None:
        """`lost` dropped past max_backlog: named when the backlog fills, then counted, and
        said at most every `backlog_report_s`."""
        now = time.monotonic()
        if not self.full:
            self.full = True
            self.over_said = now
            print(
                f"dropping {len(lost)} transactions ({lost[0].transaction.id} .. "
                f"{lost[-1].transaction.id}): {len(self.backlog)} already wait for the "
                f"server (--max-backlog {self.options.max_backlog}); more are counted, not "
                f"named, one line at most every {self.options.backlog_report_s:g} s",
                file=self.out,
                flush=True,
            )
            return
        self.over += len(lost)
        self.over_ids = (self.over_ids[0] or lost[0].transaction.id, lost[-1].transaction.id)
        if now - self.over_said >= self.options.backlog_report_s:
            self._say_over_backlog()

    def _say_over_backlog(self) -> None:
        """Print how many were dropped past max_backlog since the last line, if any."""
        if self.over:
            first, last = self.over_ids
            print(
                f"dropped {self.over} more over --max-backlog {self.options.max_backlog} "
                f"since the last line ({first} .. {last}); {len(self.backlog)} wait for "
                "the server",
                file=self.out,
                flush=True,
            )
        self.over = 0
        self.over_ids = ("", "")
        self.over_said = time.monotonic()

    async def deliver(self) -> None:
        """Post held batches, oldest first, until none is left or one gets no final answer
        (then wait out its backoff before the next call tries it again)."""
        stats = self.stats
        while self.backlog and time.monotonic() >= self.next_try:
            batch = list(itertools.islice(self.backlog, self.batch_max))
            first = batch[self.posted :]
            stats.sent += len(first)
            stats.fraud_sent += sum(1 for item in first if item.is_fraud)
            stats.resent += min(self.unanswered, len(batch))
            self.posted = max(self.posted, len(batch))
            self.unanswered = len(batch)
            try:
                await _post(self.session, self.url, batch, stats, tries=self.tries_500 + 1)
                self.reached = True
            except TooLarge as exc:
                self.reached = True
                # A final answer: the server stored none of it. Halves go next, the first
                # half first (in order), and are not re-sends of a batch that went
                # unanswered: `resent` does not count them.
                self.unanswered = 0
                self.failures = self.tries_500 = 0
                if len(batch) > 1:
                    self.batch_max = (len(batch) + 1) // 2
                    continue
                # No request can carry it: it is never delivered.
                self._too_large(batch[0].transaction.id, str(exc))
                self._answered(1)
                continue
            except Retry as retry:
                self.failures += 1
                self.why = str(retry)
                if retry.status == 500:
                    self.tries_500 += 1
                self.reached = self.reached or not retry.unreachable
                if not self.reached:
                    if self.failures >= FIRST_CONNECT_TRIES:
                        raise TargetDown(
                            f"{cannot_connect(self.url, self.failures, retry)}; is a server "
                            f"running at {self.options.target.rstrip('/')}?"
                        ) from None
                    wait = first_connect_wait(self.failures)
                else:
                    wait = retry.after if retry.after is not None else 0.0
                    wait = max(wait, backoff(self.failures, self.options, self.rng))
                self.next_try = time.monotonic() + wait
                stats.last_error = f"{retry} (retrying {len(batch)} in {wait:.1f}s)"
                return
            self._answered(len(batch))

    def _too_large(self, id: str, why: str) -> None:
        """Transaction `id` alone is over the server's request limit: dropped, and named
        while fewer than NAMED_DROPS were."""
        self.stats.dropped += 1
        self.stats.last_error = f"{id} over the request limit: {why}"
        self.too_large += 1
        self.too_large_ids = (self.too_large_ids[0] or id, id)
        self.too_large_why = why
        if self.too_large <= NAMED_DROPS:
            line = f"dropping {id}: alone over the server's request limit (HTTP 413: {why})"
        elif self.too_large == NAMED_DROPS + 1:
            line = (
                f"dropping {id} and any more alone over the server's request limit without "
                "naming them: they are counted under dropped, and totalled at the end"
            )
        else:
            return
        print(line, file=self.out, flush=True)

    def _answered(self, n: int) -> None:
        """The oldest `n` held got a final answer: they leave the backlog."""
        for _ in range(n):
            self.backlog.popleft()
        self.posted = max(self.posted - n, 0)
        self.unanswered = 0
        self.failures = self.tries_500 = 0
        self.stats.waiting = len(self.backlog)

    def give_up(self) -> None:
        self._say_over_backlog()
        if self.too_large > NAMED_DROPS:
            first, last = self.too_large_ids
            print(
                f"dropped {self.too_large} transactions alone over the server's request "
                f"limit in all ({first} .. {last}); last: HTTP 413: {self.too_large_why}",
                file=self.out,
                flush=True,
            )
        if self.backlog:
            self.stats.dropped += len(self.backlog)
            print(
                f"gave up on {len(self.backlog)} transactions the server never answered "
                f"({self.backlog[0].transaction.id} .. {self.backlog[-1].transaction.id}); "
                f"{self.failures} tries; last: {self.why}",
                file=self.out,
                flush=True,
            )
            self.backlog.clear()
        self.stats.waiting = 0


async def _pause(seconds: float, event: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=max(seconds, 0.0))


async def run_client(
    options: ClientOptions,
    *,
    stop: asyncio.Event | None = None,
    abandon: asyncio.Event | None = None,
    out: TextIO = sys.stdout,
) -> ClientStats:
    """Post batches every `batch_ms` until `duration` passes or `stop` is set, then keep
    delivering what is held for up to `drain_s` (or until `abandon` is set)."""
    stop = stop or asyncio.Event()
    abandon = abandon or asyncio.Event()
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
    began = time.monotonic()
    next_report = began + options.report_s
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S, sock_connect=options.connect_timeout_s)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
        sender = Sender(session, url, options, out)
        stats = sender.stats
        try:
            while True:
                elapsed = time.monotonic() - began
                finished = stop.is_set() or (
                    options.duration is not None and elapsed >= options.duration
                )
                # Event time is wall time: the simulator started "now", so everything up to now
                # is exactly `rate` per second of real time, whatever the ticks' jitter (or
                # however long a request took).
                sender.hold(sim.generate_until(dt.datetime.now(dt.UTC)))
                await sender.deliver()
                if time.monotonic() >= next_report:
                    print(stats.line(time.monotonic() - began), file=out, flush=True)
                    stats.last_error = None
                    next_report += options.report_s
                if finished:
                    break
                delay = options.batch_ms / 1000
                if options.duration is not None:
                    delay = min(delay, max(0.0, began + options.duration - time.monotonic()))
                await _pause(delay, stop)
            deadline = time.monotonic() + options.drain_s
            while sender.backlog and not abandon.is_set():
                wait = sender.next_try - time.monotonic()
                if time.monotonic() + max(wait, 0.0) > deadline:
                    break
                await _pause(wait, abandon)
                await sender.deliver()
        except (TargetRefused, TargetDown) as exc:
            # The key or the address is wrong: nothing held will be taken. Count it as
            # dropped, and say so, as at any other end.
            if isinstance(exc, TargetRefused):
                sender.why = str(exc)
            sender.give_up()
            print("done " + stats.line(time.monotonic() - began), file=out, flush=True)
            raise
        sender.give_up()
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
    parser.add_argument(
        "--max-backlog",
        type=int,
        default=100_000,
        help="Transactions held while the server does not answer (~0.6 KB each); past "
        "it, new ones are dropped and said so.",
    )
    parser.add_argument(
        "--drain-s",
        type=float,
        default=30.0,
        help="After --duration or Ctrl-C, seconds to keep delivering what is held "
        "(a second Ctrl-C gives up at once).",
    )
    args = parser.parse_args(argv)
    if not is_base_url(args.target):
        # Else posted to again and again, each try failing the same way.
        parser.error(
            f"--target must be the server's base URL, http://HOST:PORT or https://HOST, "
            f"got {args.target!r}"
        )
    if not args.rate > 0:
        parser.error("--rate must be > 0")
    if args.accounts is not None and args.accounts < 1:
        parser.error("--accounts must be >= 1")
    if not args.batch_ms > 0:
        parser.error("--batch-ms must be > 0")
    if args.duration is not None and args.duration < 0:
        parser.error("--duration must be >= 0")
    if args.max_backlog < 1:
        parser.error("--max-backlog must be >= 1")
    if not args.drain_s >= 0:
        parser.error("--drain-s must be >= 0")
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
        max_backlog=args.max_backlog,
        drain_s=args.drain_s,
    )


async def _main(options: ClientOptions) -> ClientStats:
    stop = asyncio.Event()
    abandon = asyncio.Event()

    def on_signal() -> None:
        (abandon if stop.is_set() else stop).set()

    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        # Ctrl-C ends the current tick cleanly and delivers what is held (session closed,
        # summary printed) instead of cancelling a request halfway; a second one stops
        # waiting for the server. Windows has no add_signal_handler and gets the default.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, on_signal)
    try:
        return await run_client(options, stop=stop, abandon=abandon)
    finally:
        for sig in signals:
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 every transaction generated was stored; 1 some were not (refused by
    the server, or dropped); 2 the key or the URL was refused, or nothing listens there (or
    a bad flag)."""
    options = parse_args(argv)
    try:
        stats = asyncio.run(_main(options))
    except (TargetRefused, TargetDown) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    lost = stats.refused + stats.dropped
    if lost:
        # A script or a CI job running the feed must not take a lossy run for a good one.
        print(
            f"error: {lost} transactions were never stored: {stats.refused} refused, "
            f"{stats.dropped} dropped (see above)",
            file=sys.stderr,
        )
        return 1
    return 0
