"""Reading a file in a second process while this one scores it.

An offline run is bound by one core if one process does everything. `ReadAhead` moves the
reading to a child process: it runs the same `Source` (same validation, same errors, same
line numbers) and sends each chunk of rows to the parent, encoded once by msgspec (~3 µs a
row to decode). For a backtest it also computes each row's features, the lists' and
rules' verdict and the model's inputs (`RulesSpec`): these need only the rows, in order,
and each label once due (for merchant risk), which the reader has. The parent then fills in
the account's recent flags, applies the model (`Detector.model_half`), learns, and keeps
the report's data. Features alone in the reader left it waiting on a full pipe a quarter of
its time while the parent ran the rules (py-spy, docs/backtest.md); with the rules and the
model's inputs moved over, the reader did ~20 % more than the parent, and the flags (which
need only the account, the time and the rules' score) went back: the two cores now share
the work about evenly.

The child runs a few chunks ahead at most (pipes hold 1 MiB; a write blocks until the
parent reads), so memory stays bounded. `ReadAhead` has the interface the commands use of
`Source`: iteration, `chunks()`, `rows_read`, `fraction_read()`, `notes()`, and the context
manager. A `SourceError` or `OSError` in the child (no such column, unreadable file) is
raised again in the parent with its message.
"""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from itertools import chain
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext, ForkContext, SpawnContext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import msgspec

from server.detection.detector import RulesHalf
from server.label_delay import DueLabels
from server.replay_source import (
    CHUNK_ROWS,
    Row,
    RowError,
    Source,
    SourceError,
    SourceOptions,
    partition,
)

READ_AHEAD_MIN_BYTES = 4 << 20
"""`--parallel auto` reads a file at least this big in a child process: below it (~25,000
rows) starting the child (~0.3 s) costs more than the reading it takes off this one."""

Parallel = Literal["auto", "on", "off"]


class _Chunk(msgspec.Struct, tag="chunk", array_like=True):
    rows: list[Row]
    errors: list[RowError]
    rows_read: int
    fraction: float


class _End(msgspec.Struct, tag="end", array_like=True):
    rows_read: int
    notes: list[str]


class _Failed(msgspec.Struct, tag="failed", array_like=True):
    kind: Literal["source", "os", "crash"]
    message: str


if TYPE_CHECKING:
    from server.detection.detector import Detector

_Message = _Chunk | _End | _Failed
_decoder = msgspec.json.Decoder(_Message)
Verdicts = list[RulesHalf]
"""Per row, `Detector.rules_half`'s answer."""
# Verdicts go as MessagePack: faster than JSON for numbers and bytes, and exact.
_encode_verdicts = msgspec.msgpack.Encoder().encode
_decode_verdicts = msgspec.msgpack.Decoder(tuple[list[float], Verdicts]).decode


PIPE_BYTES = 1 << 20


def one_way_pipe(context: BaseContext) -> tuple[Connection, Connection]:
    """(receiving end, sending end) of a pipe that holds up to 1 MiB (Linux; elsewhere the
    system's default): the sender can run a few chunks ahead of the receiver instead of
    waiting for it at every chunk, which matters when both processes share the cores with
    other work."""
    receiving, sending = context.Pipe(duplex=False)
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or above pipe-max-size
        fcntl.fcntl(sending.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    return receiving, sending


def process_context() -> ForkContext | SpawnContext:
    """How to start a child: fork when this process runs one thread (the command line: the
    child starts at once, its modules already loaded), else spawn (~0.3 s, a fresh
    interpreter): a fork copies locks that another thread may be holding."""
    if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def use_process(parallel: Parallel, path: Path) -> bool:
    """Whether `parallel` means child processes for this file on this machine."""
    if parallel != "auto":
        return parallel == "on"
    try:
        big = path.stat().st_size >= READ_AHEAD_MIN_BYTES
    except OSError:
        return False  # the inline Source reports it
    return big and (os.cpu_count() or 1) > 1


def open_source(
    path: Path,
    options: SourceOptions,
    parallel: Parallel = "auto",
    rules: RulesSpec | None = None,
) -> Source | ReadAhead:
    """The file's rows, read in a child process (with `rules`: computing their rules'
    verdicts there too) or in this one (see `use_process`)."""
    if use_process(parallel, path):
        return ReadAhead(path, options, rules=rules)
    return Source(path, options)


class RulesSpec(NamedTuple):
    """What the reader needs to compute each valid row's rules verdict and model inputs as
    well: a picklable function making the fresh detector whose featurizer, lists, rules and
    model flags to use, and the label delay after which merchant risk learns a row's label
    (as `backtest.label_hook` does)."""

    build: Callable[[], Detector]
    label_delay_us: int


class ReadAhead:
    """`Source`'s rows, read, mapped and validated by a child process; with `rules`, each
    valid row's rules verdict and model inputs too, in `self.verdicts` (`Verdicts`), and its
    POSIX time (`tx.timestamp.timestamp()`, computed for the features) in `self.times` (both
    in row order, put there before the chunk holding the row is yielded)."""

    def __init__(
        self,
        path: Path,
        options: SourceOptions,
        chunk_rows: int = CHUNK_ROWS,
        rules: RulesSpec | None = None,
    ) -> None:
        self.path = path
        self.rows_read = 0
        self.verdicts: deque[RulesHalf] | None = deque() if rules else None
        self.times: deque[float] | None = deque() if rules else None
        self._fraction = 0.0
        self._notes: list[str] = []
        context = process_context()
        self._conn, child_end = one_way_pipe(context)
        self._process = context.Process(
            target=_read,
            args=(child_end, path, options, chunk_rows, rules),
            name="fraudwatch-reader",
            daemon=True,
        )
        self._process.start()
        child_end.close()  # the child's copy is the one that writes

    def fraction_read(self) -> float:
        return self._fraction

    def notes(self) -> list[str]:
        return self._notes

    def __iter__(self) -> Iterator[Row | RowError]:
        return chain.from_iterable(self.chunks())

    def chunks(self) -> Iterator[list[Row | RowError]]:
        recv, decode = self._conn.recv_bytes, _decoder.decode
        while True:
            try:
                message = decode(recv())
            except EOFError:
                raise RuntimeError(
                    f"the reader process of {self.path} stopped without a word "
                    f"(exit code {self._process.exitcode})"
                ) from None
            if type(message) is _Chunk:
                self.rows_read = message.rows_read
                self._fraction = message.fraction
                if self.verdicts is not None and self.times is not None:
                    times, verdicts = _decode_verdicts(recv())
                    self.times.extend(times)
                    self.verdicts.extend(verdicts)
                if message.errors:
                    # Line order, as the inline Source gives them: errors are rare.
                    merged: list[Row | RowError] = [*message.rows, *message.errors]
                    merged.sort(key=lambda item: item.line)
                    yield merged
                else:
                    yield message.rows  # type: ignore[misc]
            elif type(message) is _End:
                self.rows_read = message.rows_read
                self._notes = message.notes
                self._fraction = 1.0
                return
            else:
                assert type(message) is _Failed
                if message.kind == "source":
                    raise SourceError(message.message)
                if message.kind == "os":
                    raise OSError(message.message)
                raise RuntimeError(f"the reader process of {self.path} failed: {message.message}")

    def close(self) -> None:
        if self._process.is_alive():
            self._process.terminate()  # stopped early: the rest of the file is not wanted
        self._process.join()
        self._conn.close()
        self._process.close()

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read(
    conn: Connection,
    path: Path,
    options: SourceOptions,
    chunk_rows: int,
    rules: RulesSpec | None = None,
) -> None:
    """The child: the file through `Source`, a chunk a message; with `rules`, the valid
    rows' POSIX times and verdicts in a second message."""
    encode = msgspec.json.Encoder().encode
    compute = _Rules(rules) if rules is not None else None
    try:
        with Source(path, options) as source:
            for chunk in source.chunks(chunk_rows):
                rows, errors = partition(chunk)
                message = _Chunk(rows, errors, source.rows_read, source.fraction_read())
                conn.send_bytes(encode(message))
                if compute is not None:
                    conn.send_bytes(_encode_verdicts(compute(rows)))
            conn.send_bytes(encode(_End(source.rows_read, source.notes())))
    except BrokenPipeError:
        pass  # the parent stopped listening
    except SourceError as exc:
        conn.send_bytes(encode(_Failed("source", str(exc))))
    except OSError as exc:
        conn.send_bytes(encode(_Failed("os", str(exc))))
    except Exception as exc:  # anything else: say what, rather than die silently
        conn.send_bytes(encode(_Failed("crash", f"{type(exc).__name__}: {exc}")))
    finally:
        conn.close()


class _Rules:
    """The reader's half of the detector: each row's features against the history before
    it, the lists' and rules' verdict and the model's inputs (but the account's flags, which
    `Detector.model_half` fills in), as `Detector.score_features` computes them, with
    merchant risk learning each label once due: before the first row at
    or after `timestamp + label delay`, as `backtest.run_backtest` reveals it. (Rows out of
    event-time order make the parent stop and start again, sorted.)"""

    def __init__(self, spec: RulesSpec) -> None:
        detector = spec.build()
        self.values_one = detector.featurizer.values_one
        self.merchant_learns = detector.featurizer.learn_label
        self.rules_half = detector.rules_half
        # (merchant, label, amount, local hour): the features' `amount` and the timestamp's.
        self.pending: DueLabels[tuple[str, bool, Any, Any]] = DueLabels(spec.label_delay_us)

    def __call__(self, rows: list[Row]) -> tuple[list[float], Verdicts]:
        """The rows' POSIX times (the scoring process needs them too: sent, they are not
        computed twice) and their verdicts."""
        pending, values_one, merchant_learns = self.pending, self.values_one, self.merchant_learns
        rules_half = self.rules_half
        times = []
        out: Verdicts = []
        for row in rows:
            tx = row.transaction
            t = tx.timestamp.timestamp()
            times.append(t)
            now_us = round(t * 1e6)
            for due, (merchant, is_fraud, amount, hour) in pending.due(now_us):
                # Whole microseconds / 1e6: what backtest.label_hook gets from
                # `(tx.timestamp + label_delay).timestamp()`, to the last bit.
                merchant_learns(merchant, due / 1e6, is_fraud, amount, hour)
            v = values_one(tx, t)
            out.append(rules_half(tx, v, t))
            if row.label is not None:
                # The features hold `float(tx.amount)` already; the hour as the scoring
                # process learns it (`backtest.label_hook`), which `local_hour` is not for a
                # stream of dates only.
                pending.add(now_us, (tx.merchant_id, row.label, v["amount"], tx.timestamp.hour))
        return times, out
