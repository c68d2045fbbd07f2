"""`fraudwatch replay`: stream a file through a Detector in-process, or into a running server."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any, Protocol, TextIO

import aiohttp

from server.config import is_base_url
from server.detection.detector import Detector
from server.detection.rules import RulesPathError, load_rules
from server.detection.verdict import Scored
from server.progress import Progress
from server.read_ahead import open_source
from server.replay_source import (
    FILE_HELP,
    Row,
    RowError,
    RowErrors,
    SourceError,
    add_source_flags,
    source_options,
)
from server.transactions import Transaction, encode_transaction
from server.views.responses import (
    CONNECT_TIMEOUT_S,
    FIRST_CONNECT_TRIES,
    cannot_connect,
    error_message,
)
from server.wording import counted

INGEST_PATH = "/api/v1/transactions"
PROGRESS_EVERY = 1024
# Paced replays send whatever falls due within this much wall time in one request.
TICK_S = 0.05
# Tries per batch, waiting 0.5, 1, 2, 4 s and then RETRY_WAIT_MAX_S between them (or the
# server's Retry-After): about 22 s in all, so a replay outlives a restart of its server.
RETRIES = 8
RETRY_WAIT_MAX_S = 5.0
# Until the server has answered a request, a connection that cannot be made (refused, a
# host name that does not resolve, or not made within CONNECT_TIMEOUT_S: packets dropped)
# is tried FIRST_CONNECT_TRIES times (server/views/responses.py), not RETRIES: the waits
# above begin as `first_connect_wait` does, 0.5 and 1 s.
# A connection has CONNECT_TIMEOUT_S (server/views/responses.py), the answer the rest.
REQUEST_TIMEOUT_S = 120.0
FLAGGED = ("review", "block")


class Scorer(Protocol):
    """What replay and backtest need of a detector (tests pass recording fakes)."""

    review_threshold: float
    block_threshold: float

    @property
    def rules_version(self) -> str: ...

    def score(self, tx: Transaction) -> Scored: ...


class TargetRefused(Exception):
    """The server rejected the API key, or the URL is not its ingest API; retrying cannot
    help, and neither can the next batch."""


class TargetUnavailable(Exception):
    """A batch got no answer after every retry: the rest would fare no better."""


class TargetDown(Exception):
    """No request of the replay got an answer: there was nothing to summarize."""


@dataclass
class ReplaySummary:
    rows_read: int = 0
    errors: RowErrors = field(default_factory=RowErrors)
    sent: int = 0
    refused: RowErrors = field(default_factory=RowErrors)  # valid here, refused by the server
    failed: int = 0  # rows of requests refused whole (not 413) or never answered
    # After a 413: the most rows sent in one request from then on, and the 413s that made
    # replay split a request.
    request_rows: int | None = None
    split_requests: int = 0
    last_error: str | None = None
    stopped: str | None = None  # why a replay into a server gave up early
    answered: bool = False  # the server gave some request a final answer
    reached: bool = False  # the server answered some request, if only with a 503
    decisions: Counter[str] = field(default_factory=Counter)
    # In process: rows whose id an earlier row had, and the first of them (line, id).
    repeated_ids: int = 0
    first_repeat: tuple[int, str] | None = None
    first_event: str | None = None
    last_event: str | None = None
    seconds: float = 0.0

    @property
    def scored(self) -> int:
        return sum(self.decisions.values())

    def lines(self, where: str, speed: float | None) -> list[str]:
        scored = self.scored
        alerts = sum(self.decisions[d] for d in FLAGGED)
        decisions = " ".join(f"{d}={self.decisions[d]:,}" for d in ("allow", *FLAGGED))
        lines = [
            f"replay → {where}: {counted(self.rows_read, 'row')} read, {scored:,} scored, "
            f"{self.errors.count:,} invalid",
            *self.errors.lines(),
        ]
        if self.first_repeat is not None:
            line, id = self.first_repeat
            lines.append(
                f"  {counted(self.repeated_ids, 'repeated id')}: rows scored again under an id "
                f"an earlier row had (first: line {line}, {id!r})"
            )
        if self.sent:
            # Sent counts what was posted; only answered transactions were scored or refused.
            lines.append(
                f"  sent {self.sent:,}, answered {self.sent - self.failed:,}; refused by the "
                f"server {self.refused.count:,}; failed (request refused whole or unanswered) "
                f"{self.failed:,}" + (f"; last error: {self.last_error}" if self.last_error else "")
            )
            if self.request_rows is not None:
                lines.append(
                    f"  {counted(self.split_requests, 'request')} over the server's request limit "
                    f"(413: its max_body_bytes or max_batch_records) split and sent again; then "
                    f"at most "
                    f"{counted(self.request_rows, 'row')} a request (--batch "
                    f"{self.request_rows} avoids the split)"
                )
            refused = self.refused.lines("refused by the server", "refused by the server")
            lines += ["  " + line for line in refused]
        if self.stopped:
            lines.append(f"  STOPPED EARLY: {self.stopped}")
        lines += [
            f"  decisions: {decisions}; alerts {alerts:,} ({alerts / max(scored, 1):.2%})",
            (
                f"  event time: {self.first_event} → {self.last_event}"
                if self.first_event is not None
                else "  event time: none (no row scored)"
            )
            + " at speed "
            + ("max" if speed is None else f"{speed:g}×"),
            f"  throughput: {scored / max(self.seconds, 1e-9):,.0f} tx/s ({self.seconds:.2f} s)",
        ]
        return lines


class Pacer:
    """When each event is due in wall time, replaying event time `speed` times faster."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self._t0: float | None = None
        self._w0 = 0.0

    def wait(self, tx: Transaction) -> float:
        """Seconds until `tx` is due (<= 0: due now). The first event is due immediately."""
        t = tx.timestamp.timestamp()
        if self._t0 is None:
            self._t0, self._w0 = t, time.monotonic()
        return self._w0 + (t - self._t0) / self.speed - time.monotonic()


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector for a bulk run.

    Hundreds of thousands of live transactions and account states make each full
    collection walk all of them, for nothing: they form no reference cycles. Measured on
    300,000 rows: a few per cent of a streamed backtest, a quarter of the reading time when
    every row is held (an out-of-order file being sorted).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def parse_speed(text: str) -> float | None:
    """'max' → None (as fast as possible); otherwise a positive multiple of real time."""
    if text.strip().lower() == "max":
        return None
    try:
        speed = float(text)
    except ValueError:
        speed = 0.0
    if not speed > 0 or speed == float("inf"):
        raise SourceError(f"--speed takes 'max' or a positive multiple of real time, got {text!r}")
    return speed


def _note_time(summary: ReplaySummary, tx: Transaction) -> None:
    stamp = tx.timestamp.isoformat()
    if summary.first_event is None:
        summary.first_event = stamp
    summary.last_event = stamp


def replay_in_process(
    items: Iterable[Row | RowError],
    detector: Scorer,
    *,
    speed: float | None = None,
    progress: Progress | None = None,
) -> ReplaySummary:
    """Score every valid row with `detector`, in file order, paced when `speed` is given.
    Rows whose id an earlier row had are scored too, and counted."""
    summary = ReplaySummary()
    # The ids' hashes, not the ids: ~70 bytes a row rather than the id's string besides
    # (docs/backtest.md). Two ids sharing a 64-bit hash would count as a repeat: odds of
    # about 3e-8 for a million rows.
    seen: set[int] = set()
    pacer = Pacer(speed) if speed is not None else None
    decisions = summary.decisions
    score = detector.score
    start = time.perf_counter()
    last: Transaction | None = None
    for n, item in enumerate(items, start=1):
        if isinstance(item, RowError):
            summary.errors.add(item)
            continue
        tx = item.transaction
        if last is None:
            _note_time(summary, tx)
        last = tx
        key = hash(tx.id)
        if key in seen:
            summary.repeated_ids += 1
            if summary.first_repeat is None:
                summary.first_repeat = (item.line, tx.id)
        else:
            seen.add(key)
        if pacer is not None and (wait := pacer.wait(tx)) > 0:
            time.sleep(wait)
        decisions[score(tx).decision] += 1
        if progress is not None and not n % PROGRESS_EVERY:
            progress.update(n)
    if last is not None:
        _note_time(summary, last)
    summary.seconds = time.perf_counter() - start
    return summary


async def _post(
    session: aiohttp.ClientSession, url: str, batch: list[Row], summary: ReplaySummary
) -> None:
    """POST `batch`, split into smaller requests where the server answers one with 413 (over
    its `max_body_bytes` or `max_batch_records`): halves, until they pass, and batches after
    that in parts of the size that passed (`summary.request_rows`). A row over the limit on
    its own is refused."""
    summary.sent += len(batch)
    parts = [batch]  # a stack: the next part to send is the last
    while parts:
        part = parts.pop()
        most = summary.request_rows
        if most is not None and len(part) > most:
            parts += reversed([part[i : i + most] for i in range(0, len(part), most)])
            continue
        try:
            too_large = await _send(session, url, part, summary)
        except TargetUnavailable:
            summary.failed += sum(len(rest) for rest in parts)  # never sent
            raise
        if too_large is None:
            continue
        if len(part) == 1:
            message = f"alone over the server's body limit (HTTP 413: {too_large})"
            summary.refused.add(RowError(part[0].line, message))
            continue
        summary.split_requests += 1
        half = (len(part) + 1) // 2
        summary.request_rows = half if most is None else min(most, half)
        parts += [part[half:], part[:half]]


async def _send(
    session: aiohttp.ClientSession, url: str, batch: list[Row], summary: ReplaySummary
) -> str | None:
    """One request, retried while the server is busy or away; its answer tallied. Returns the
    server's message when it refused the request as too large (413), and tallies nothing."""
    body = b"".join([encode_transaction(row.transaction) + b"\n" for row in batch])
    wait = 0.0
    for attempt in range(RETRIES):
        if attempt:
            await asyncio.sleep(max(wait, min(0.25 * 2**attempt, RETRY_WAIT_MAX_S)))
        try:
            async with session.post(url, data=body) as response:
                summary.reached = True
                if response.status in (401, 403):
                    raise TargetRefused(f"{url} answered {response.status}: check --api-key")
                if response.status in (404, 405):
                    # Every batch would get the same: the URL is not the ingest API's.
                    raise TargetRefused(
                        f"{url} answered {response.status}: check --target, the server's "
                        f"base URL ({INGEST_PATH} is added to it)"
                    )
                if response.status == 413:
                    summary.answered = True
                    return error_message(await response.text())
                if response.status >= 500 or response.status == 429:
                    # Busy, shutting down or store trouble: worth another try. Ids make a
                    # repeat harmless (the server answers a known id with its first verdict).
                    summary.last_error = f"HTTP {response.status}"
                    wait = _retry_after(response.headers.get("Retry-After"))
                    continue
                if response.status >= 300:
                    # Refused as a whole: other batches may still pass.
                    summary.last_error = f"HTTP {response.status}: {(await response.text())[:200]}"
                    summary.failed += len(batch)
                    summary.answered = True
                    return None
                reply = await response.json(content_type=None)
                summary.answered = True
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            summary.last_error = f"{type(exc).__name__}: {exc}"
            tries = attempt + 1
            if (
                # Refused, unresolved, or not made within the connect timeout.
                isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError))
                and not summary.reached
                and tries >= FIRST_CONNECT_TRIES
            ):
                summary.failed += len(batch)
                raise TargetUnavailable(cannot_connect(url, tries, summary.last_error)) from None
            continue
        _tally(summary, batch, reply)
        return None
    summary.failed += len(batch)
    raise TargetUnavailable(f"no answer from {url} after {RETRIES} tries: {summary.last_error}")


def _retry_after(value: str | None) -> float:
    try:
        return min(float(value), 30.0) if value else 0.0
    except ValueError:
        return 0.0


def _tally(summary: ReplaySummary, batch: list[Row], reply: Any) -> None:
    results = reply.get("results") if isinstance(reply, dict) else None
    if not isinstance(results, list) or len(results) != len(batch):
        summary.failed += len(batch)
        summary.last_error = "the server's answer has no result per transaction"
        return
    for row, result in zip(batch, results, strict=True):
        decision = result.get("decision") if isinstance(result, dict) else None
        if isinstance(decision, str):
            summary.decisions[decision] += 1
            continue
        error = result.get("error") if isinstance(result, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        summary.refused.add(RowError(row.line, str(message or result)))


async def replay_to_target(
    items: Iterable[Row | RowError],
    target: str,
    api_key: str,
    *,
    speed: float | None = None,
    batch_size: int = 1000,
    progress: Progress | None = None,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
) -> ReplaySummary:
    """POST valid rows as NDJSON batches to `target`, one request in flight to keep order.
    A connection not made within `connect_timeout_s` is a try that failed."""
    summary = ReplaySummary()
    pacer = Pacer(speed) if speed is not None else None
    url = target.rstrip("/") + INGEST_PATH
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/x-ndjson"}
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S, sock_connect=connect_timeout_s)
    batch: list[Row] = []
    in_flight: asyncio.Task[None] | None = None
    start = time.perf_counter()
    last: Transaction | None = None

    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:

        async def flush() -> None:
            nonlocal in_flight
            if in_flight is not None:
                await in_flight
                in_flight = None
            if batch:
                # The next batch is read while the server scores this one.
                in_flight = asyncio.create_task(_post(session, url, batch.copy(), summary))
                batch.clear()
                await asyncio.sleep(0)

        try:
            for n, item in enumerate(items, start=1):
                if isinstance(item, RowError):
                    summary.errors.add(item)
                    continue
                tx = item.transaction
                if last is None:
                    _note_time(summary, tx)
                last = tx
                if pacer is not None and pacer.wait(tx) > TICK_S:
                    await flush()
                    await asyncio.sleep(pacer.wait(tx))
                batch.append(item)
                if len(batch) >= batch_size:
                    await flush()
                if progress is not None and not n % PROGRESS_EVERY:
                    progress.update(n)
            await flush()
            await flush()
        except TargetUnavailable as exc:
            summary.stopped = str(exc)
        finally:
            if in_flight is not None and not in_flight.done():
                in_flight.cancel()
    if last is not None:
        _note_time(summary, last)
    summary.seconds = time.perf_counter() - start
    return summary


# --- the command ----------------------------------------------------------------------------


def add_detector_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--review-threshold", type=float, default=0.5, metavar="SCORE", help="default 0.5"
    )
    parser.add_argument(
        "--block-threshold", type=float, default=0.8, metavar="SCORE", help="default 0.8"
    )
    parser.add_argument(
        "--rules",
        type=Path,
        metavar="PATH",
        help="rule file or directory of *.toml files (default: the packaged default pack)",
    )


def detector_from_args(args: argparse.Namespace) -> Detector:
    try:
        return Detector(
            review_threshold=args.review_threshold,
            block_threshold=args.block_threshold,
            rules=load_rules(args.rules) if args.rules is not None else None,
        )
    except RulesPathError as exc:  # the flag's value names no rule file: name the flag
        raise SourceError(f"--rules: {exc}") from None
    except ValueError as exc:  # RulesError included: it lists every problem
        raise SourceError(str(exc)) from None


def register(commands: Any) -> None:
    """Add `replay` to the `fraudwatch` subcommands."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "replay",
        help="stream a CSV or NDJSON file through the detector or into a running server",
        description="Stream FILE through the same pipeline: in-process through a Detector "
        "(default), or into a running server with --target. See docs/backtest.md.",
        epilog=FILE_HELP,
    )
    add_source_flags(parser)
    parser.add_argument("--target", metavar="URL", help="post to this server's ingest API")
    parser.add_argument(
        "--api-key", help="the server's API key (default: $FRAUDWATCH_API_KEY); with --target"
    )
    parser.add_argument(
        "--speed",
        default="max",
        help="'max' (default), or a multiple of real time: 10 replays 10 s of event time per s",
    )
    parser.add_argument(
        "--batch", type=int, default=1000, help="transactions per request with --target"
    )
    add_detector_flags(parser)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = sys.stdout if out is None else out
    try:
        options = source_options(args)
        speed = parse_speed(args.speed)
        api_key = args.api_key or os.environ.get("FRAUDWATCH_API_KEY")
        if args.target and not api_key:
            raise SourceError("--target needs --api-key (or FRAUDWATCH_API_KEY)")
        if args.target and not is_base_url(args.target):
            # Else tried 8 times over ~22 s, each failing the same way.
            raise SourceError(
                f"--target must be the server's base URL, http://HOST:PORT or "
                f"https://HOST, got {args.target!r}"
            )
        if args.batch < 1:
            raise SourceError(f"--batch must be >= 1, got {args.batch}")
        detector = None if args.target else detector_from_args(args)
        with open_source(args.file, options, args.parallel) as source:
            progress = Progress("replay", fraction=source.fraction_read)
            if detector is None:
                where = args.target
                summary = asyncio.run(
                    replay_to_target(
                        source, args.target, api_key or "", speed=speed,
                        batch_size=args.batch, progress=progress,
                    )
                )  # fmt: skip
            else:
                where = f"in-process detector (rules {detector.rules_version})"
                # Not around the network client: its futures and tracebacks do make cycles.
                with paused_gc():
                    rows = chain.from_iterable(source.chunks())
                    summary = replay_in_process(rows, detector, speed=speed, progress=progress)
            if summary.stopped is not None and not summary.answered:
                # Not a replay that stopped part way: nothing reached the server, and a
                # summary (its "event time" span, its decisions of 0) would read as a run.
                progress.abandon()
                raise TargetDown(
                    f"{summary.stopped}; is a server running at {args.target.rstrip('/')}? "
                    "Nothing was replayed."
                )
            summary.rows_read = source.rows_read
            summary.errors.notes = source.notes()
            progress.update(source.rows_read)
            progress.close()
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (TargetRefused, TargetDown) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for line in summary.lines(where, speed):
        print(line, file=out)
    if summary.rows_read and summary.errors.count == summary.rows_read:
        # Every row refused here: the columns or their forms are not what they should be,
        # and a script must not take the run for one that went through.
        print(
            f"error: no row of {args.file} could be read (see the invalid rows above)",
            file=sys.stderr,
        )
        return 1
    # Rows the server never took (a request refused whole, or no answer) fail the run.
    return 1 if summary.stopped or summary.failed else 0
