"""`fraudwatch backtest`: score a labelled file in event time, labels known only after a delay."""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import functools
import io
import re
import resource
import sys
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any, Protocol, TextIO

from server.backtest_report import build_report, rule_facts, summary_lines, write_report
from server.detection.detector import Detector, RulesHalf
from server.detection.model import ModelSlot, OnlineLogit
from server.detection.verdict import Scored
from server.label_delay import DueLabels
from server.progress import Progress
from server.read_ahead import ReadAhead, RulesSpec, open_source
from server.replay import Scorer, add_detector_flags, detector_from_args, paused_gc
from server.replay_source import (
    FILE_HELP,
    Row,
    RowErrors,
    Source,
    SourceError,
    SourceOptions,
    add_source_flags,
    partition,
    source_options,
)
from server.transactions import Transaction
from server.wording import counted

DECISIONS = ("allow", "review", "block")
REPORT_SUFFIXES = (".json", ".html")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([wdhms])")
_UNIT_S = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_US = dt.timedelta(microseconds=1)
_DAY_US = 86_400_000_000

LabelHook = Callable[[Transaction, bool, dt.datetime], None]
"""Called once per label, at the event time `at` when it becomes known (after the delay)."""


class LabelLearner(Protocol):
    """What `label_hook` feeds: a detector that takes a label once it is known (`Detector`,
    `RulesFrom`, or a test's recording stand-in)."""

    def learn_label(self, tx_id: str, account_id: str, is_fraud: bool, at: dt.datetime) -> None: ...


class BacktestScorer(Scorer, LabelLearner, Protocol):
    """What a backtest scores with: a replay `Scorer` that also learns the labels."""


def label_hook(detector: LabelLearner) -> LabelHook:
    """Feed labels to `detector.learn_label(tx_id, account_id, is_fraud, at)`.

    A `Detector`'s labels also reach its featurizer's merchant risk
    (`featurizer.learn_label`): merchant risk features count labels from the moment they are
    known, and no earlier. `RulesFrom` has no featurizer here: its reader process feeds its
    own. When labels are due is decided by `run_backtest` with `label_delay.DueLabels`, which
    the reader uses too.
    """
    learn = detector.learn_label
    merchant = detector.featurizer.learn_label if isinstance(detector, Detector) else None
    slot = _slot(detector) if isinstance(detector, RulesFrom) else None
    if slot is not None and slot.learner is not None:
        # What `RulesFrom.learn_label` and `Detector.learn_label` come to, without their
        # two calls a label (every row of a labelled file has one).
        learn_inline = slot.learn_label

        def to_model(tx: Transaction, is_fraud: bool, at: dt.datetime) -> None:
            learn_inline(tx.id, is_fraud)

        return to_model

    def on_label(tx: Transaction, is_fraud: bool, at: dt.datetime) -> None:
        if merchant is not None:
            merchant(tx.merchant_id, at.timestamp(), is_fraud, float(tx.amount), tx.timestamp.hour)
        learn(tx.id, tx.account_id, is_fraud, at)

    return on_label


def cpu_seconds() -> float:
    """CPU time of this process and of its children that have ended (the reader process of
    a parallel run, joined before the report is written)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def parse_duration(text: str) -> dt.timedelta:
    """'7d', '36h', '1d12h', '90m', '0' → timedelta."""
    compact = text.strip().lower().replace(" ", "")
    if compact in ("0", "0s"):
        return dt.timedelta(0)
    parts = _DURATION.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise SourceError(f"a duration looks like 7d, 36h, 1d12h, 90m or 0; got {text!r}")
    return dt.timedelta(seconds=sum(float(n) * _UNIT_S[u] for n, u in parts))


def day_function(tz: dt.tzinfo) -> Callable[[int], int]:
    """Calendar day (proleptic ordinal) in `tz` of a POSIX time in microseconds."""
    offset = tz.utcoffset(None) if isinstance(tz, dt.timezone) else None
    if offset is not None:
        shift = offset // _US
        return lambda us: (us + shift) // _DAY_US + _EPOCH_ORDINAL
    return lambda us: dt.datetime.fromtimestamp(us / 1e6, tz).toordinal()


@dataclass(slots=True)
class Outcome:
    """Per scored transaction, in event-time order: what the report is computed from."""

    scores: array[float] = field(default_factory=lambda: array("d"))
    labels: array[int] = field(default_factory=lambda: array("b"))  # 1, 0, -1: no label
    days: array[int] = field(default_factory=lambda: array("i"))
    accounts: array[int] = field(default_factory=lambda: array("i"))
    decisions: bytearray = field(default_factory=bytearray)  # index into DECISIONS
    reasons: dict[int, tuple[str, ...]] = field(default_factory=dict)  # only where any fired
    labels_revealed: int = 0
    labels_pending: int = 0  # not yet due when the stream ended
    longest_wait_rows: int = 0  # most rows scored between a labelled row and its label
    first_event: dt.datetime | None = None
    last_event: dt.datetime | None = None


class OutOfOrder(Exception):
    """A row is earlier in event time than one already scored."""

    def __init__(self, line: int) -> None:
        super().__init__(f"line {line} is earlier than a row before it")
        self.line = line


def in_event_time(rows: list[Row]) -> tuple[list[Row], int]:
    """Rows sorted by timestamp (stable), and how many were out of order."""
    epochs = [row.transaction.timestamp.timestamp() for row in rows]
    latest = float("-inf")
    late = 0
    for t in epochs:
        if t < latest:
            late += 1
        else:
            latest = t
    if not late:
        return rows, 0
    order = sorted(range(len(rows)), key=epochs.__getitem__)
    return [rows[i] for i in order], late


def run_backtest(
    rows: Iterable[Row],
    scorer: Scorer,
    *,
    label_delay: dt.timedelta,
    on_label: LabelHook,
    day_of: Callable[[int], int],
    scores_out: TextIO | None = None,
    times: deque[float] | None = None,
) -> Outcome:
    """Score `rows` one by one in event-time order, revealing each label once it is due.

    A label of a transaction at time t is due at t + label_delay: it is handed to `on_label`
    just before the first transaction whose timestamp is >= that, never earlier. Constant
    delay and ordered input make due times ordered too, so a FIFO is enough. A row earlier
    than the one before raises OutOfOrder: its labels could otherwise arrive early.

    `times`, if given, holds each row's `tx.timestamp.timestamp()`, taken from the left as
    the rows are scored: a reader process that computed them for the features sends them,
    which spares ~0.6 µs a row here.
    """
    if label_delay < dt.timedelta(0):
        raise ValueError(f"label_delay must be >= 0, got {label_delay}")
    out = Outcome()
    scores, labels, days, accounts = out.scores, out.labels, out.days, out.accounts
    decisions, reasons = out.decisions, out.reasons
    decision_code = {name: i for i, name in enumerate(DECISIONS)}
    account_index: dict[str, int] = {}
    # Event time as integer microseconds: exact, so "due" never drifts by a float rounding.
    pending: DueLabels[tuple[Transaction, bool, int]] = DueLabels(label_delay // _US)
    # The scores file's lines, written a few thousand at a time (`_SCORES_BATCH`).
    lines: list[str] | None = None
    if scores_out is not None:
        scores_out.write("transaction_id,score,decision\n")
        lines = []
    # A scorer that can take the POSIX time computed here (`RulesFrom`) is spared
    # computing it again: ~1.4 µs a row.
    score_at: Callable[[Transaction, float], Scored]
    score_at = getattr(scorer, "score_at", None) or (lambda tx, t: scorer.score(tx))
    due = pending.due
    # Looked at here, not through `due`, which has nothing for most rows.
    queue, delay_us = pending.queue, pending.delay_us
    enqueue = queue.append
    append_score, append_decision, append_day = scores.append, decisions.append, days.append
    append_account, append_label = accounts.append, labels.append
    next_time = times.popleft if times is not None else None
    # A row no label will come for: the model need not keep its inputs until the end.
    forget: Callable[[str], None] | None = getattr(scorer, "forget", None)
    longest_wait = 0
    last_us = -(2**63)
    tx: Transaction | None = None
    for i, row in enumerate(rows):
        tx = row.transaction
        t = tx.timestamp.timestamp() if next_time is None else next_time()
        now_us = round(t * 1e6)
        if now_us < last_us:
            raise OutOfOrder(row.line)
        if i == 0:
            out.first_event = tx.timestamp
        last_us = now_us
        if queue and queue[0][0] <= now_us:
            for _, (known, is_fraud, at_row) in due(now_us):
                on_label(known, is_fraud, known.timestamp + label_delay)
                out.labels_revealed += 1
                if i - at_row > longest_wait:
                    longest_wait = i - at_row
        scored = score_at(tx, t)
        append_score(scored.score)
        append_decision(decision_code[scored.decision])
        if scored.reasons:
            reasons[i] = tuple(map(_code, scored.reasons))
        append_day(day_of(now_us))
        account = account_index.get(tx.account_id)
        if account is None:
            account = account_index[tx.account_id] = len(account_index)
        append_account(account)
        label = row.label
        if label is None:
            append_label(-1)
            if forget is not None:
                forget(tx.id)
        else:
            append_label(label)
            enqueue((now_us + delay_us, (tx, label, i)))  # `pending.add`
        if lines is not None:
            # As `csv.writer` writes it: an id with no character it would quote for as it
            # is, and the score's repr (~3,000 instructions a row fewer than `writerow`,
            # which looks up each character of each field in the line terminator).
            tx_id = tx.id
            if "," in tx_id or '"' in tx_id or "\n" in tx_id or "\r" in tx_id:
                lines.append(_csv_line(tx_id, scored.score, scored.decision))
            else:
                lines.append(f"{tx_id},{scored.score!r},{scored.decision}\n")
            if len(lines) >= _SCORES_BATCH:
                assert scores_out is not None
                scores_out.write("".join(lines))
                lines.clear()
    if lines:
        assert scores_out is not None
        scores_out.write("".join(lines))
    out.last_event = tx.timestamp if tx is not None else None
    out.labels_pending = len(pending)
    out.longest_wait_rows = longest_wait
    return out


_SCORES_BATCH = 4096
_code = attrgetter("code")  # a reason's: in C, where a generator costs ~1,000 instructions


def _csv_line(*fields: object) -> str:
    """`fields` as one line of `csv.writer` (`lineterminator="\\n"`): quoted where needed."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(fields)
    return buffer.getvalue()


# --- the command ----------------------------------------------------------------------------


def register(commands: Any) -> None:
    """Add `backtest` to the `fraudwatch` subcommands."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "backtest",
        help="score a labelled file in event time and measure detection quality",
        description="Replay FILE in event time in-process, reveal each label only after "
        "--label-delay of event time, and report ROC AUC, average precision, precision@k "
        "and card precision@k, overall and per calendar day. See docs/backtest.md.",
        epilog=f"{FILE_HELP} Labels: 1/0, true/false, yes/no or fraud/legit (any case); an "
        "empty or other cell leaves its row unlabelled, scored but left out of the metrics.",
    )
    add_source_flags(parser)
    parser.add_argument(
        "--label", required=True, metavar="COLUMN", help="column holding the fraud label"
    )
    parser.add_argument(
        "--label-delay",
        default="7d",
        metavar="DURATION",
        help="event time after a transaction when its label becomes known (default 7d)",
    )
    parser.add_argument("--k", type=int, default=100, help="k of the top-k metrics (default 100)")
    parser.add_argument(
        "--scores-out", type=Path, metavar="F.csv", help="transaction_id,score,decision per row"
    )
    parser.add_argument(
        "--report",
        type=Path,
        action="append",
        default=[],
        metavar="F.json|F.html",
        help="write the report as JSON or self-contained HTML (repeatable)",
    )
    add_detector_flags(parser)
    parser.add_argument(
        "--model",
        choices=("on", "off"),
        default="on",
        help="let the revealed labels train the online model (default on); off: rules only",
    )
    parser.add_argument(
        "--model-memory",
        type=int,
        default=None,
        metavar="N",
        help="most transactions whose model inputs are kept until their label is due "
        "(default: no limit; each is kept only until its label is learnt, about one "
        "label delay of labelled rows, ~330 bytes each); a label due after its inputs "
        "were let go of is not learnt, and the summary says how many",
    )


def backtest_detector(args: argparse.Namespace) -> Detector:
    """The detector of a run: the rules, plus a model learning inline unless --model off."""
    detector = detector_from_args(args)
    detector.explain = False  # the report reads reason codes only
    if getattr(args, "model", "off") == "on":
        if args.model_memory is not None and args.model_memory < 1:
            raise SourceError(f"--model-memory must be >= 1, got {args.model_memory}")
        detector.model = ModelSlot(memory=args.model_memory, learner=OnlineLogit())
    return detector


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = sys.stdout if out is None else out
    try:
        options = source_options(args, label=args.label)
        delay = parse_duration(args.label_delay)
        if args.k < 1:
            raise SourceError(f"--k must be >= 1, got {args.k}")
        for path in args.report:
            if path.suffix.lower() not in REPORT_SUFFIXES:
                raise SourceError(f"--report {path}: the name must end in .json or .html")
        backtest_detector(args)  # refuse bad thresholds before reading anything
        started, cpu_started = time.perf_counter(), cpu_seconds()
        with paused_gc():
            detector, outcome, errors, late = _score_file(args, options, delay)
            scored_s = time.perf_counter() - started
            errors.notes += _repeat_notes(detector)
            report = build_report(
                outcome,
                k=args.k,
                review_threshold=detector.review_threshold,
                block_threshold=detector.block_threshold,
                meta=_meta(args, options, detector, outcome, errors, late, delay),
                facts=rule_facts(_built(detector).ruleset),
            )
        total_s, cpu_s = time.perf_counter() - started, cpu_seconds() - cpu_started
        n = len(outcome.scores)
        report["throughput"] = {
            "transactions": n,
            "read_validate_score_s": round(scored_s, 3),
            "metrics_s": round(total_s - scored_s, 3),
            "total_s": round(total_s, 3),
            "cpu_s": round(cpu_s, 3),
            "tx_per_s": round(n / total_s) if total_s else None,
            "tx_per_cpu_s": round(n / cpu_s) if cpu_s else None,
        }
        for path in args.report:
            write_report(report, path)
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for line in [*errors.lines(), *summary_lines(report)]:
        print(line, file=out)
    for path in [*([args.scores_out] if args.scores_out else []), *args.report]:
        print(f"wrote {path}", file=out)
    if errors.count and not n:
        # Every row refused: every metric undefined, and a script must not take the run for
        # one that measured something.
        print(
            f"error: no row of {args.file} could be read (see the invalid rows above)",
            file=sys.stderr,
        )
        return 1
    return 0


def _score_file(
    args: argparse.Namespace, options: SourceOptions, delay: dt.timedelta
) -> tuple[BacktestScorer, Outcome, RowErrors, int]:
    """Stream the file through a fresh detector; if it is not in event-time order, sort it
    in memory and start again (the only way to keep every label from arriving early).

    With `--parallel` on (or auto, for a big file), a second process reads the file and
    computes each row's features, the lists' and rules' verdict and the model's inputs
    (server/read_ahead.py) while this one applies the model, learns and keeps the report's
    data."""
    tz = options.timezone
    spec = RulesSpec(functools.partial(backtest_detector, _detector_args(args)), delay // _US)
    with open_source(args.file, options, args.parallel, rules=spec) as source:
        errors = RowErrors()
        progress = Progress("backtest", fraction=source.fraction_read, unit="tx")
        built = backtest_detector(args)
        detector: BacktestScorer = built
        times = None
        if isinstance(source, ReadAhead) and source.verdicts is not None:
            detector = RulesFrom(built, source.verdicts)
            times = source.times
        try:
            outcome = _run(_valid(source, errors, progress), detector, args, delay, tz, times)
            progress.close()
            return detector, outcome, errors, 0
        except OutOfOrder as exc:
            progress.close()
            print(f"{args.file}: {exc}; sorting it in memory", file=sys.stderr)
    with open_source(args.file, options, args.parallel) as source:
        errors = RowErrors()
        progress = Progress("reading", fraction=source.fraction_read)
        rows, late = in_event_time(list(_valid(source, errors, progress)))
        progress.close()
    detector = backtest_detector(args)
    return detector, _run(rows, detector, args, delay, tz), errors, late


def _run(
    rows: Iterable[Row],
    detector: BacktestScorer,
    args: argparse.Namespace,
    delay: dt.timedelta,
    tz: dt.tzinfo,
    times: deque[float] | None = None,
) -> Outcome:
    """One scoring pass; the scores file is (re)written from its start."""
    with contextlib.ExitStack() as stack:
        scores_file = (
            stack.enter_context(args.scores_out.open("w", encoding="utf-8", newline=""))
            if args.scores_out
            else None
        )
        return run_backtest(
            rows, detector, label_delay=delay,
            on_label=label_hook(detector), day_of=day_function(tz), scores_out=scores_file,
            times=times,
        )  # fmt: skip


class RulesFrom:
    """A detector applying the model to rules' verdicts and model inputs computed elsewhere,
    in row order (the reader process, which also lets merchant risk learn the labels): the
    same verdicts as `Detector.score`, without computing anything twice."""

    def __init__(self, detector: Detector, verdicts: deque[RulesHalf]) -> None:
        self.detector = detector
        self.review_threshold = detector.review_threshold
        self.block_threshold = detector.block_threshold
        self._verdicts = verdicts
        self._model_half = detector.model_half

    @property
    def rules_version(self) -> str:
        return self.detector.rules_version

    @property
    def learns_labels(self) -> bool:
        return self.detector.learns_labels

    def score(self, tx: Transaction) -> Scored:
        return self.score_at(tx, tx.timestamp.timestamp())

    def score_at(self, tx: Transaction, t: float) -> Scored:
        """`score`, given `tx.timestamp.timestamp()` (`run_backtest` has it)."""
        return self._model_half(tx, self._verdicts.popleft(), t)

    def learn_label(self, tx_id: str, account_id: str, is_fraud: bool, at: object) -> None:
        self.detector.learn_label(tx_id, account_id, is_fraud, at)

    def forget(self, tx_id: str) -> None:
        self.detector.forget(tx_id)


def _detector_args(args: argparse.Namespace) -> argparse.Namespace:
    """The arguments `backtest_detector` reads, alone: what a child process needs."""
    names = ("rules", "review_threshold", "block_threshold", "model", "model_memory")
    return argparse.Namespace(**{name: getattr(args, name) for name in names if name in args})


def _valid(source: Source | ReadAhead, errors: RowErrors, progress: Progress) -> Iterator[Row]:
    """The file's valid rows; the invalid ones go to `errors`."""
    for chunk in source.chunks():
        rows, refused = partition(chunk)
        for error in refused:
            errors.add(error)
        yield from rows
        progress.update(source.rows_read)
    errors.notes = source.notes()


def _built(detector: BacktestScorer) -> Detector:
    """The `Detector` behind `detector`: itself, or the one a `RulesFrom` applies."""
    if isinstance(detector, RulesFrom):
        return detector.detector
    assert isinstance(detector, Detector)
    return detector


def _slot(detector: Scorer) -> ModelSlot | None:
    """The model of a backtest's detector, if it has one."""
    built = detector.detector if isinstance(detector, RulesFrom) else detector
    return built.model if isinstance(built, Detector) else None


def _repeat_notes(detector: Scorer) -> list[str]:
    """The note on ids the file has more than once, as the model found them (`_repeat`)."""
    model = _slot(detector)
    if model is None or not model.repeated:
        return []
    n = model.repeated
    return [
        f"{counted(n, 'row')} repeated the id of an earlier row whose label was not yet "
        f"known (first: {model.repeated_example!r}): the model learnt each such id's label "
        "from its latest row only, and --scores-out has the id more than once; repeats "
        "after the earlier row's label was learnt are not counted (docs/backtest.md)"
    ]


def _meta(
    args: argparse.Namespace,
    options: SourceOptions,
    detector: Scorer,
    outcome: Outcome,
    errors: RowErrors,
    late: int,
    delay: dt.timedelta,
) -> dict[str, Any]:
    return {
        "file": str(args.file),
        "rows_read": len(outcome.scores) + errors.count,
        "invalid_rows": errors.count,
        "invalid_examples": [str(e) for e in errors.first],
        "notes": errors.notes,
        "unlabelled_rows": outcome.labels.count(-1),
        "out_of_order_rows": late,
        "label_column": args.label,
        "mapping": dict(options.mapping),
        "label_delay_s": delay.total_seconds(),
        "timezone": args.timezone,
        "rules_version": detector.rules_version,
        "detector_learns_labels": bool(getattr(detector, "learns_labels", False)),
        # Labelled transactions whose inputs the model let go of at --model-memory before
        # their label was due (never without a limit: unlabelled rows are not kept), and
        # the most rows scored between a labelled row and its label: the limit it needed.
        "model_memory": getattr(args, "model_memory", None),
        "inputs_let_go": model.evicted if (model := _slot(detector)) is not None else None,
        "longest_label_wait_rows": outcome.longest_wait_rows,
        "first_event": outcome.first_event.isoformat() if outcome.first_event else None,
        "last_event": outcome.last_event.isoformat() if outcome.last_event else None,
    }
