"""Reading a file in a second process while this one scores it.

Reading, mapping and validating a row costs about 13 µs of CPU, a quarter of an offline
run's time per row, and the detector's state lives in one process, so the run is bound by
one core. `ReadAhead` moves the reading to a child process: it runs the same
`Source` (same validation, same errors, same line numbers) and sends each chunk of rows to
the parent, encoded once by msgspec (~3 µs a row to decode); the parent only scores. The
child stays at most about one chunk ahead (a pipe write blocks until the parent reads), so
memory stays bounded.

`ReadAhead` has the interface the commands use of `Source`: iteration, `chunks()`, `rows_read`,
`fraction_read()`, `notes()`, and the context manager. A `SourceError` or `OSError` in the
child (no such column, unreadable file) is raised again in the parent with its message.
"""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing
import os
import threading
from collections.abc import Iterator
from itertools import chain
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext, ForkContext, SpawnContext
from pathlib import Path
from typing import Literal

import msgspec

from server.replay_source import CHUNK_ROWS, Row, RowError, Source, SourceError, SourceOptions

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


_Message = _Chunk | _End | _Failed
_decoder = msgspec.json.Decoder(_Message)


PIPE_BYTES = 1 << 20


def one_way_pipe(context: BaseContext) -> tuple[Connection, Connection]:
    """(receiving end, sending end) of a pipe that holds up to 1 MiB (Linux; elsewhere the
    system's default): the sender can run a few chunks ahead of the receiver instead of
    waiting for it at every chunk, which matters when three processes share two cores."""
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
    path: Path, options: SourceOptions, parallel: Parallel = "auto"
) -> Source | ReadAhead:
    """The file's rows, read in a child process or in this one (see `use_process`)."""
    return ReadAhead(path, options) if use_process(parallel, path) else Source(path, options)


class ReadAhead:
    """`Source`'s rows, read, mapped and validated by a child process."""

    def __init__(self, path: Path, options: SourceOptions, chunk_rows: int = CHUNK_ROWS) -> None:
        self.path = path
        self.rows_read = 0
        self._fraction = 0.0
        self._notes: list[str] = []
        context = process_context()
        self._conn, child_end = one_way_pipe(context)
        self._process = context.Process(
            target=_read,
            args=(child_end, path, options, chunk_rows),
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


def _read(conn: Connection, path: Path, options: SourceOptions, chunk_rows: int) -> None:
    """The child: the file through `Source`, a chunk a message."""
    encode = msgspec.json.Encoder().encode
    try:
        with Source(path, options) as source:
            for chunk in source.chunks(chunk_rows):
                rows: list[Row] = []
                errors: list[RowError] = []
                for item in chunk:
                    if type(item) is Row:
                        rows.append(item)
                    else:
                        errors.append(item)  # type: ignore[arg-type]
                message = _Chunk(rows, errors, source.rows_read, source.fraction_read())
                conn.send_bytes(encode(message))
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
