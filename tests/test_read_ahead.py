"""Reading a file in a child process (server/read_ahead.py): the same rows, errors, line
numbers and verdicts as reading it inline, errors raised again in the parent, and no child
left behind."""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import json
import multiprocessing
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from server import read_ahead
from server.backtest import Outcome, RulesFrom, day_function, label_hook, run_backtest
from server.cli import main
from server.detection import Detector
from server.detection.model import FEATURE_NAMES, ModelSlot, OnlineLogit, inputs
from server.detection.rules import compile_sources, default_pack
from server.read_ahead import ReadAhead, RulesSpec, open_source, use_process
from server.replay_source import Row, RowError, Source, SourceError, SourceOptions
from server.transactions import Transaction
from simulator import Simulator
from tests.test_backtest import MAP, _labelled_csv
from tests.test_replay import MAPPING, ROWS, write_csv

T0 = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)


def _simulated_csv(path: Path, n: int = 4000) -> Path:
    """An in-order labelled stream with every field, local-time offsets included."""
    fields = list(Transaction.__struct_fields__)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*fields, "is_fraud"])
        for item in Simulator(seed=5, rate=1.0, start=T0, accounts=300).generate(n):
            cells = [getattr(item.transaction, name) for name in fields]
            cells[1] = item.transaction.timestamp.isoformat()
            writer.writerow(["" if c is None else c for c in cells] + [int(item.is_fraud)])
    return path


def _both(reader_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    """The command's scores file, JSON report and printed lines with each reader."""
    results = []
    for reader in ("off", "on"):
        scores, report = tmp_path / f"{reader}.csv", tmp_path / f"{reader}.json"
        args = [*reader_args, "--parallel", reader, "--scores-out", str(scores)]
        assert main([*args, "--report", str(report)]) == 0
        printed = [
            line for line in capsys.readouterr().out.splitlines() if "throughput" not in line
        ]
        data = json.loads(report.read_text())
        data.pop("throughput")
        results.append((scores.read_text(), data, printed[:-2]))  # minus the "wrote" lines
    return results


def test_a_backtest_read_by_a_process_is_the_backtest_read_inline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # In order, every field, local-time offsets (night rules read the local hour), the model
    # learning from labels: the same verdict for every row.
    data = _simulated_csv(tmp_path / "sim.csv")
    args = ["backtest", str(data), "--label", "is_fraud", "--label-delay", "30m"]
    inline, process = _both(args, tmp_path, capsys)
    assert process == inline
    assert inline[0].count("\n") == 4001
    assert inline[1]["meta"]["labels_revealed"] > 2000
    assert "model" in {rule["code"] for rule in inline[1]["rules"]}  # the model scored too


def test_bad_rows_and_a_file_out_of_order_read_by_a_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Out of event-time order: the first (streaming) reader is abandoned mid-file and the
    # file read again to be sorted; two invalid rows keep their line numbers.
    data = _labelled_csv(tmp_path / "tx.csv")
    args = ["backtest", str(data), "--label", "TX_FRAUD", "--label-delay", "1d", *MAP]
    inline, process = _both(args, tmp_path, capsys)
    assert process == inline
    meta = inline[1]["meta"]
    assert meta["out_of_order_rows"] > 0 and meta["invalid_rows"] == 2
    assert [e.split(":")[0] for e in meta["invalid_examples"]] == ["line 161", "line 162"]


def test_a_replay_read_by_a_process_gives_the_same_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _simulated_csv(tmp_path / "sim.csv", n=1500)
    printed = {}
    for reader in ("off", "on"):
        assert main(["replay", str(data), "--parallel", reader]) == 0
        out = capsys.readouterr().out.splitlines()
        printed[reader] = [line for line in out if "throughput" not in line]
    assert printed["on"] == printed["off"]
    assert any("1,500" in line for line in printed["off"])


def test_the_childs_errors_are_raised_in_the_parent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_csv(tmp_path / "tx.csv", ["TX_ID", "TX_DATETIME", "CUSTOMER_ID"], [])
    options = SourceOptions(mapping=MAPPING)
    with ReadAhead(data, options) as source, pytest.raises(SourceError, match="TERMINAL_ID"):
        list(source)
    with ReadAhead(tmp_path / "missing.csv", options) as source, pytest.raises(OSError):
        list(source)
    # Through the command: the same message and exit status as reading inline.
    assert main(["backtest", str(data), "--label", "x", *MAP, "--parallel", "on"]) == 2
    assert "TERMINAL_ID" in capsys.readouterr().err


def test_rows_and_errors_arrive_in_line_order_and_an_early_close_stops_the_child(
    tmp_path: Path,
) -> None:
    rows = [*ROWS, ["4", "not a time", "c-1", "t-1", "5.00", "", "", "0", "0"], *ROWS]
    header = ["TX_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT", "country",
              "lat", "TX_FRAUD", "TX_FRAUD_SCENARIO"]  # fmt: skip
    data = write_csv(tmp_path / "tx.csv", header, rows * 300)
    options = SourceOptions(mapping=MAPPING, label="TX_FRAUD")
    with Source(data, options) as inline:
        expected: list[Row | RowError] = list(inline)
    with ReadAhead(data, options, chunk_rows=64) as source:
        got = list(source)
        assert source.rows_read == len(rows) * 300 and source.fraction_read() == 1.0
    assert got == expected
    assert sum(type(item) is RowError for item in got) == 300

    source = ReadAhead(data, options, chunk_rows=8)
    first = next(iter(source))
    assert type(first) is Row and first.line == 2
    pid = source._process.pid
    assert pid is not None
    source.close()  # most of the file unread: the child is stopped and reaped
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_auto_uses_a_process_for_big_files_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write_csv(tmp_path / "tx.csv", ["TX_ID"], [["1"]] * 100)
    assert not use_process("auto", data)
    assert use_process("on", data) and not use_process("off", data)
    monkeypatch.setattr(read_ahead, "READ_AHEAD_MIN_BYTES", 10)
    monkeypatch.setattr(read_ahead.os, "cpu_count", lambda: 2)
    assert use_process("auto", data)
    with open_source(data, SourceOptions(mapping={})) as source:
        assert isinstance(source, ReadAhead)
    monkeypatch.setattr(read_ahead.os, "cpu_count", lambda: 1)
    assert not use_process("auto", data)  # one core: nothing to gain
    assert not use_process("auto", tmp_path / "missing.csv")


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_children_started_either_way_give_the_same_backtest(
    method: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The command line forks (one thread: nothing to inherit half-locked); a process with
    # threads, like this test runner may be, spawns. Both must give the same outcome.
    data = _simulated_csv(tmp_path / "sim.csv", n=2000)
    expected = tmp_path / "off.csv"
    args = ["backtest", str(data), "--label", "is_fraud", "--label-delay", "30m"]
    assert main([*args, "--parallel", "off", "--scores-out", str(expected)]) == 0
    context = multiprocessing.get_context(method)
    monkeypatch.setattr(read_ahead, "process_context", lambda: context)
    got = tmp_path / "on.csv"
    assert main([*args, "--parallel", "on", "--scores-out", str(got)]) == 0
    assert got.read_text() == expected.read_text()


def test_a_process_with_threads_spawns_its_children() -> None:
    release = threading.Event()
    worker = threading.Thread(target=release.wait)
    worker.start()
    try:
        assert read_ahead.process_context().get_start_method() == "spawn"
    finally:
        release.set()
        worker.join()


# --- rules computed by the reader -----------------------------------------------------------

DELAY = dt.timedelta(minutes=30)
LISTS = """
[[lists]]
name = "blocked"
action = "block"
field = "account_id"
entries = ["{0}", "{1}"]

[[lists]]
name = "trusted"
action = "allow"
field = "account_id"
entries = ["{2}"]
"""


def _detector(
    lists: list[str] | None = None, model: bool = True, kind: type[Detector] = Detector
) -> Detector:
    """The default pack (plus lists that decide some verdicts alone), and a model learning
    inline that is ready early."""
    rules = None
    if lists:
        rules = compile_sources(
            [
                ("default.toml", default_pack().read_bytes()),
                ("lists.toml", LISTS.format(*lists).encode()),
            ]
        )
    slot = ModelSlot(learner=OnlineLogit(), min_labels=200, min_frauds=5) if model else None
    return kind(rules=rules, model=slot)


def _outcome(out: Outcome) -> tuple[object, ...]:
    return (
        list(out.scores), list(out.labels), list(out.days), list(out.accounts),
        bytes(out.decisions), out.reasons, out.labels_revealed, out.labels_pending,
        out.first_event, out.last_event,
    )  # fmt: skip


class RecordingDetector(Detector):
    """A detector that keeps what its rules' half (`rules_half`) gave, and what the model
    kept of each transaction scored (its inputs, the account's flags filled in)."""

    seen: list[tuple[Any, ...]]
    kept: list[tuple[str, bytes] | None]

    def rules_half(self, tx: Transaction, v: dict[str, Any], t: float) -> Any:
        if not hasattr(self, "seen"):
            self.seen = []
        half = super().rules_half(tx, v, t)
        self.seen.append(half)
        return half

    def score_at(self, tx: Transaction, t: float) -> Any:  # what run_backtest calls
        if not hasattr(self, "kept"):
            self.kept = []
        scored = super().score_at(tx, t)
        self.kept.append(self.kept_inputs(tx.id))
        return scored


class RecordingRulesFrom(RulesFrom):
    seen: list[tuple[Any, ...]]
    kept: list[tuple[str, bytes] | None]

    def score_at(self, tx: Transaction, t: float) -> Any:
        if not hasattr(self, "seen"):
            self.seen, self.kept = [], []
        self.seen.append(self._verdicts[0])
        scored = super().score_at(tx, t)
        self.kept.append(self.detector.kept_inputs(tx.id))
        return scored


@pytest.mark.parametrize(("lists", "model"), [(False, True), (True, True), (False, False)])
def test_rules_from_the_reader_give_the_verdicts_of_one_process(
    lists: bool, model: bool, tmp_path: Path
) -> None:
    data = _simulated_csv(tmp_path / "sim.csv", n=6000)
    options = SourceOptions(mapping={}, label="is_fraud")
    with Source(data, options) as source:
        rows = [item for item in source if type(item) is Row]
    accounts = [row.transaction.account_id for row in rows[:50:10]] if lists else None
    build = functools.partial(_detector, accounts, model)
    day_of = day_function(dt.UTC)

    one = _detector(accounts, model, kind=RecordingDetector)
    inline_scores = io.StringIO()
    expected = run_backtest(
        rows, one, label_delay=DELAY, on_label=label_hook(one), day_of=day_of,
        scores_out=inline_scores,
    )  # fmt: skip
    spec = RulesSpec(build, DELAY // dt.timedelta(microseconds=1))
    with ReadAhead(data, options, chunk_rows=700, rules=spec) as reader:
        assert reader.verdicts is not None
        scorer = RecordingRulesFrom(build(), reader.verdicts)
        split_scores = io.StringIO()
        got = run_backtest(
            (item for item in reader if type(item) is Row), scorer, label_delay=DELAY,
            on_label=label_hook(scorer), day_of=day_of, scores_out=split_scores,
        )  # fmt: skip
        assert not reader.verdicts  # one verdict per row, all used
    assert _outcome(got) == _outcome(expected)
    assert split_scores.getvalue() == inline_scores.getvalue()
    # Row by row the same rules' verdicts and model inputs, merchant risk from the labels
    # revealed so far included, and the same inputs kept, the account's recent flags (filled
    # in by the scoring process) included.
    assert scorer.seen == one.seen
    assert scorer.kept == one.kept
    if model:
        named = [dict(zip(FEATURE_NAMES, inputs(k[1]), strict=True)) for k in one.kept if k]
        assert any(x["merchant_fraud_30d"] for x in named)
        assert any(x["hour_risk"] for x in named)  # the labels' hours, learnt in both
        assert any(x["mcc_amount_dev"] for x in named)  # each MCC's amounts, in both
        assert any(x["flagged_1h"] for x in named)
    # The stream's amount scale (learnt from 1,000 amounts) is in the inputs kept, and the
    # default pack's small amounts and night limit are on it: in both.
    assert one.featurizer.scale.scale is not None
    # What makes the comparison worth something: labels were revealed (merchant risk in the
    # reader, the model here) and, with a model, it scored; with lists, they decided some.
    assert expected.labels_revealed > 4000 and expected.labels_pending > 0
    codes = {code for reasons in expected.reasons.values() for code in reasons}
    assert ("model" in codes) is model
    assert ("block_list" in codes and "allow_list" in codes) is lists
