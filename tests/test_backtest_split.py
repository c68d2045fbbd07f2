"""The backtest with its model in a second process (server/backtest_split.py) gives the
outcome of the one-process backtest, row by row."""

from __future__ import annotations

import datetime as dt
import functools
import io
import os
from pathlib import Path

import pytest

from server.backtest import Outcome, OutOfOrder, day_function, label_hook, run_backtest
from server.backtest_split import run_split, splittable
from server.detection import Detector, snapshot
from server.detection.model import ModelSlot, OnlineLogit
from server.detection.rules import compile_sources, default_pack
from server.replay_source import Row
from simulator import Simulator

T0 = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
DELAY = dt.timedelta(minutes=30)
# The default pack plus lists that decide some transactions on their own (no model then).
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


def _detector(lists: list[str] | None = None) -> Detector:
    rules = None
    if lists:
        text = LISTS.format(*lists)
        rules = compile_sources(
            [("default.toml", default_pack().read_bytes()), ("lists.toml", text.encode())]
        )
    slot = ModelSlot(learner=OnlineLogit(), min_labels=200, min_frauds=5)
    return Detector(rules=rules, model=slot)


def _rows(n: int = 6000) -> list[Row]:
    stream = Simulator(seed=9, rate=1.0, start=T0, accounts=300).generate(n)
    return [Row(i + 2, item.transaction, item.is_fraud) for i, item in enumerate(stream)]


def _fields(out: Outcome) -> tuple[object, ...]:
    return (
        list(out.scores), list(out.labels), list(out.days), list(out.accounts),
        bytes(out.decisions), out.reasons, out.labels_revealed, out.labels_pending,
        out.first_event, out.last_event,
    )  # fmt: skip


@pytest.mark.parametrize("lists", [False, True])
def test_the_split_backtest_gives_the_one_process_outcome(lists: bool, tmp_path: Path) -> None:
    rows = _rows()
    # Some rows without a label: scored, never revealed.
    rows = [row._replace(label=None) if row.line % 17 == 0 else row for row in rows]
    accounts = [row.transaction.account_id for row in rows[:50:10]] if lists else None
    inline_scores = io.StringIO()
    one = _detector(accounts)
    expected = run_backtest(
        rows, one, label_delay=DELAY, on_label=label_hook(one),
        day_of=day_function(dt.UTC), scores_out=inline_scores,
    )  # fmt: skip
    chunks = [rows[i : i + 700] for i in range(0, len(rows), 700)]
    scores_path = tmp_path / "scores.csv"
    build = functools.partial(_detector, accounts)
    two, got = run_split(chunks, build, label_delay=DELAY, timezone=dt.UTC, scores_out=scores_path)
    assert _fields(got) == _fields(expected)
    # This process kept the features, merchant risk from the labels included.
    assert snapshot.encode(two.featurizer) == snapshot.encode(one.featurizer)
    assert scores_path.read_text() == inline_scores.getvalue()
    # What makes the comparison worth something: the model learnt and then scored, and
    # (with the lists) some verdicts were the lists' alone.
    assert expected.labels_revealed > 4000 and expected.labels_pending > 0
    codes = {code for reasons in expected.reasons.values() for code in reasons}
    assert "model" in codes
    assert ("block_list" in codes and "allow_list" in codes) is lists


def test_rows_out_of_order_stop_the_split_backtest_and_its_process() -> None:
    rows = _rows(1500)
    rows[1200], rows[1201] = rows[1201], rows[1200]
    before = _children()
    with pytest.raises(OutOfOrder):
        run_split([rows[:1000], rows[1000:]], _detector, label_delay=DELAY, timezone=dt.UTC)
    assert _children() == before  # the model process was stopped and reaped


def _children() -> set[int]:
    """This process's live child processes (Linux)."""
    me = os.getpid()
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                out.add(int(entry.name))
    return out


def test_a_detector_without_a_model_splits_too() -> None:
    rows = _rows(3000)
    one = Detector()
    expected = run_backtest(
        rows, one, label_delay=DELAY, on_label=label_hook(one), day_of=day_function(dt.UTC)
    )
    two, got = run_split([rows[:1500], rows[1500:]], Detector, label_delay=DELAY, timezone=dt.UTC)
    assert _fields(got) == _fields(expected)
    assert snapshot.encode(two.featurizer) == snapshot.encode(one.featurizer)


def test_only_a_detector_whose_model_learns_inline_is_split() -> None:
    assert splittable(_detector()) and splittable(Detector())
    assert not splittable(Detector(model=ModelSlot()))  # its learner is a trainer thread's
    with pytest.raises(ValueError, match="learns inline"):
        run_split([], functools.partial(Detector, model=ModelSlot()), label_delay=DELAY,
                  timezone=dt.UTC)  # fmt: skip
