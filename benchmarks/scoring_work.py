"""A backtest's scoring process's work alone, repeatable under cachegrind.

The scoring process of a parallel backtest decodes the reader's messages
(`ReadAhead.chunks`), fills in the account's flags and applies the model
(`Detector.model_half`), learns each label when due, keeps the report's data, writes
--scores-out and computes the report. So:

1. `record`: the reader's messages for the first --rows rows of a labelled CSV, as
   `read_ahead._read` sends them, to one file (the reader's own work is counted by
   benchmarks/reader_work.py).
2. `replay`: `backtest.run` on those messages, through the real consumer code
   (`ReadAhead.chunks`, `RulesFrom`, `run_backtest`, the report), with --scores-out to a
   temporary file; a checksum of the scores file and of the report (but its throughput)
   says that two commits computed the same. `--rows` replays the first rows only (whole
   chunks), so one recording serves several lengths.

    .venv/bin/python benchmarks/scoring_work.py record /tmp/s8/bt/labelled.csv /tmp/sw.bin \\
        --rows 30000
    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \\
        .venv/bin/python benchmarks/scoring_work.py replay /tmp/sw.bin --rows 10000  # and 30000

Instructions per row: the difference between two --rows, over the difference in rows (the
start-up, the first rows' and the report's fixed costs cancel out). The first ~70,000 rows
of a 7-day label delay on the simulator's file are scored before any label is due, so the
model is not ready and learns nothing there: the rows around 180,000 (`--rows 180000` and
`190000` of one recording) count the steady state, labels learnt and the model scoring.
The recording holds only the reader's bytes: record once, replay on both commits.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import struct
import sys
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from server import backtest, read_ahead
from server.replay_source import CHUNK_ROWS, source_options

_LENGTH = struct.Struct("<I")


def _args(path: Path, scores_out: Path | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    backtest.register(parser.add_subparsers(dest="command"))
    argv = ["backtest", str(path), "--label", "is_fraud", "--label-delay", "7d"]
    if scores_out is not None:
        argv += ["--scores-out", str(scores_out), "--parallel", "on"]
    return parser.parse_args(argv)


class _Recorder:
    """The pipe's end as `_read` uses it, keeping what it is given."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.messages = 0

    def send_bytes(self, data: bytes) -> None:
        self.out.write(_LENGTH.pack(len(data)))
        self.out.write(data)
        self.messages += 1

    def close(self) -> None:
        pass


def record(csv_path: Path, out: Path, rows: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        head = Path(tmp) / "head.csv"
        with csv_path.open(encoding="utf-8") as src, head.open("w", encoding="utf-8") as dst:
            dst.writelines(itertools.islice(src, rows + 1))
        args = _args(head)
        delay = backtest.parse_duration(args.label_delay)
        spec = read_ahead.RulesSpec(
            lambda: backtest.backtest_detector(backtest._detector_args(args)),
            delay // backtest._US,
        )
        options = source_options(args, label=args.label)
        with out.open("wb") as f:
            conn = _Recorder(f)
            read_ahead._read(conn, head, options, CHUNK_ROWS, spec)  # type: ignore[arg-type]
    print(f"recorded {rows:,} rows: {conn.messages} messages, {out.stat().st_size:,} bytes")
    return 0


class _Replaying:
    """The receiving end of the pipe, giving back recorded messages."""

    def __init__(self, messages: list[bytes]) -> None:
        self._messages = deque(messages)

    def recv_bytes(self) -> bytes:
        if not self._messages:
            raise EOFError
        return self._messages.popleft()

    def close(self) -> None:
        pass


class _Replayed(read_ahead.ReadAhead):
    """A `ReadAhead` whose reader process ran before: its messages come from a recording."""

    def __init__(self, path: Path, messages: list[bytes]) -> None:
        self.path = path
        self.rows_read = 0
        self.verdicts = deque()
        self.times = deque()
        self._fraction = 0.0
        self._notes = []
        self._conn = _Replaying(messages)  # type: ignore[assignment]

    def close(self) -> None:
        pass


def _messages(path: Path, rows: int | None) -> list[bytes]:
    """The recording's messages; with `rows`, those of the first chunks holding that many,
    and an end."""
    data = path.read_bytes()
    messages = []
    at = 0
    while at < len(data):
        (n,) = _LENGTH.unpack_from(data, at)
        messages.append(data[at + 4 : at + 4 + n])
        at += 4 + n
    if rows is None:
        return messages
    decode = msgspec.json.Decoder(read_ahead._Message).decode
    kept: list[bytes] = []
    for chunk, verdicts in zip(messages[0::2], messages[1::2], strict=False):
        message = decode(chunk)
        if type(message) is not read_ahead._Chunk:
            break
        kept += [chunk, verdicts]
        if message.rows_read >= rows:
            end = read_ahead._End(message.rows_read, [])
            kept.append(msgspec.json.encode(end))
            return kept
    return messages


def replay(path: Path, rows: int | None) -> int:
    messages = _messages(path, rows)
    reports: list[dict[str, Any]] = []
    build_report = backtest.build_report

    def keeping(*a: Any, **k: Any) -> dict[str, Any]:
        report = build_report(*a, **k)
        reports.append(report)
        return report

    with tempfile.TemporaryDirectory() as tmp:
        scores = Path(tmp) / "scores.csv"
        args = _args(path, scores)
        backtest.open_source = lambda *a, **k: _Replayed(path, messages)  # type: ignore[assignment]
        backtest.build_report = keeping  # type: ignore[assignment]
        cpu = time.process_time()
        with open(os.devnull, "w", encoding="utf-8") as devnull:
            code = backtest.run(args, out=devnull)
        cpu = time.process_time() - cpu
        if code:
            print(f"backtest exited {code}", file=sys.stderr)
            return code
        digest = hashlib.sha256(scores.read_bytes())
    (report,) = reports
    n = report["throughput"]["transactions"]
    del report["throughput"]
    digest.update(json.dumps(report, sort_keys=True, default=str).encode())
    print(
        f"{n:,} rows, checksum {digest.hexdigest()[:16]}, "
        f"{cpu / n * 1e6:.1f} µs of CPU a row (all of backtest.run)"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    rec = commands.add_parser("record")
    rec.add_argument("csv", type=Path)
    rec.add_argument("out", type=Path)
    rec.add_argument("--rows", type=int, default=30_000)
    rep = commands.add_parser("replay")
    rep.add_argument("recording", type=Path)
    rep.add_argument("--rows", type=int, default=None, help="default: all recorded")
    args = parser.parse_args(argv)
    if args.command == "record":
        return record(args.csv, args.out, args.rows)
    return replay(args.recording, args.rows)


if __name__ == "__main__":
    sys.exit(main())
