"""A backtest's reader process's work alone, repeatable under cachegrind.

`read_ahead._read` as the forked reader runs it (the file through `Source`, each row's
features, the lists' and rules' verdicts and the model's inputs, both messages encoded),
on the first --rows rows of a labelled CSV, with the messages thrown away instead of sent.
A checksum of every message says that two commits did the same work.

    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \\
        .venv/bin/python benchmarks/reader_work.py /tmp/s8/bt/labelled.csv --rows 30000

Instructions per row: the difference between two --rows, over the difference in rows
(the start-up and the first rows' cheaper work cancel out).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import itertools
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from server import backtest, read_ahead
from server.replay_source import CHUNK_ROWS, source_options


class _Discard:
    """The pipe's end as `_read` uses it, hashing what it is given."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.messages = 0

    def send_bytes(self, data: bytes) -> None:
        self.digest.update(data)
        self.messages += 1

    def close(self) -> None:
        pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", type=Path)
    parser.add_argument("--rows", type=int, default=30_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        head = Path(tmp) / "head.csv"
        with args.csv.open(encoding="utf-8") as src, head.open("w", encoding="utf-8") as dst:
            dst.writelines(itertools.islice(src, args.rows + 1))
        parsed = argparse.ArgumentParser()
        backtest.register(parsed.add_subparsers(dest="command"))
        bt = parsed.parse_args(["backtest", str(head), "--label", "is_fraud"])
        delay = backtest.parse_duration("7d")
        spec = read_ahead.RulesSpec(
            functools.partial(backtest.backtest_detector, backtest._detector_args(bt)),
            delay // backtest._US,
        )
        conn = _Discard()
        options = source_options(bt, label=bt.label)
        read_ahead._read(conn, head, options, CHUNK_ROWS, spec)  # type: ignore[arg-type]
    print(f"{args.rows:,} rows, {conn.messages} messages, checksum {conn.digest.hexdigest()[:16]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
