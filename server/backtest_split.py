"""A backtest whose model runs in a second process: the same verdicts, on two cores.

A backtest with the model spends about half of its time per transaction on the detector's
features and rules, and the other half on the model (remembering each transaction's inputs
until its label is due, predicting, learning) and the bookkeeping of the report. Both halves
keep state that only they read, so they split cleanly:

    reader process            this process                      model process
    read, map, validate  ──▶  features, lists, rules,     ──▶   remember, predict, learn
    (server/read_ahead.py)    the model's raw values            the labels when due
                              merchant risk: labels when due    scores, decisions, report

This process sends, per transaction, what `ModelSlot.rescore` would be given: the rules'
score, decision and reason codes and the model's raw values (`ModelSlot.observe`). The model
process reveals each label at the same event time as `run_backtest` does (before the first
transaction at or after it is due), so it learns the same labels between the same
predictions, and the outcome is the one `run_backtest` gives with the same detector
(`tests/test_backtest_split.py` compares them row by row). Explanation texts are not built:
a backtest keeps only reason codes.
"""

from __future__ import annotations

import datetime as dt
import gc
import multiprocessing
import pickle
from collections import deque
from collections.abc import Iterable
from multiprocessing.connection import Connection
from pathlib import Path

import msgspec

from server.backtest import DECISIONS, Outcome, OutOfOrder, Recorder, day_function
from server.detection.detector import Detector, decision_for
from server.detection.model import ModelSlot, inputs
from server.replay_source import Row

# Per transaction: id, account, event time (µs), label (-1: none), the rules' score,
# decision (index into DECISIONS) and reason codes, and the model's raw values (b"": a list
# decided, the model does not rescore).
_Item = tuple[str, str, int, int, float, int, tuple[str, ...], bytes]
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(list[_Item] | None).decode
_US = dt.timedelta(microseconds=1)


def splittable(detector: object) -> bool:
    """Whether `run_split` can run this detector: a `Detector` whose model learns inline."""
    return (
        isinstance(detector, Detector)
        and detector.model is not None
        and detector.model.learner is not None
    )


def run_split(
    chunks: Iterable[list[Row]],
    detector: Detector,
    *,
    label_delay: dt.timedelta,
    timezone: dt.tzinfo,
    scores_out: Path | None = None,
) -> Outcome:
    """`run_backtest` (same arguments, same outcome) with the model in a second process.
    `detector` must be fresh, with a model that learns inline (`splittable`)."""
    if label_delay < dt.timedelta(0):
        raise ValueError(f"label_delay must be >= 0, got {label_delay}")
    slot = detector.model
    assert slot is not None and slot.learner is not None, "run_split needs a learning model"
    # The model process gets a copy of the fresh slot (learner included); this one keeps
    # using its own only for the account flags that `observe` packs with each transaction.
    context = multiprocessing.get_context("spawn")
    conn, child_end = context.Pipe()
    process = context.Process(
        target=_model_process,
        args=(
            child_end,
            pickle.dumps(slot),
            detector.review_threshold,
            detector.block_threshold,
            label_delay // _US,
            timezone,
            scores_out,
        ),
        name="fraudwatch-model",
        daemon=True,
    )
    process.start()
    child_end.close()
    finished = False
    try:
        outcome = _score(chunks, detector, slot, label_delay, conn)
        conn.send_bytes(_encode(None))
        result: Outcome = pickle.loads(conn.recv_bytes())
        finished = True
        result.first_event, result.last_event = outcome.first_event, outcome.last_event
        return result
    except EOFError:
        raise RuntimeError(
            f"the model process stopped without a word (exit code {process.exitcode})"
        ) from None
    finally:
        if not finished:
            process.terminate()  # stopped early (rows out of order, an error): not needed
        process.join()
        conn.close()
        process.close()


def _score(
    chunks: Iterable[list[Row]],
    detector: Detector,
    slot: ModelSlot,
    label_delay: dt.timedelta,
    conn: Connection,
) -> Outcome:
    """This process's half: features and rules; merchant risk learns each label when due."""
    out = Outcome()
    delay_us = label_delay // _US
    pending: deque[tuple[int, str, bool, float]] = deque()
    merchant_learns = detector.featurizer.learn_label
    score_rules, observe, send = detector.score_rules, slot.observe, conn.send_bytes
    decision_code = {name: i for i, name in enumerate(DECISIONS)}
    last_us = -(2**63)
    tx = None
    for chunk in chunks:
        items: list[_Item] = []
        for row in chunk:
            tx = row.transaction
            t = tx.timestamp.timestamp()
            now_us = round(t * 1e6)
            if now_us < last_us:
                raise OutOfOrder(row.line)
            if out.first_event is None:
                out.first_event = tx.timestamp
            last_us = now_us
            while pending and pending[0][0] <= now_us:
                _, merchant, is_fraud, at_s = pending.popleft()
                merchant_learns(merchant, at_s, is_fraud)
            features, scored, final = score_rules(tx)
            raw = b"" if final else observe(tx, features, scored, t)
            label = row.label
            items.append(
                (
                    tx.id,
                    tx.account_id,
                    now_us,
                    -1 if label is None else int(label),
                    scored.score,
                    decision_code[scored.decision],
                    tuple(r.code for r in scored.reasons),
                    raw,
                )
            )
            if label is not None:
                # Whole microseconds / 1e6: what run_backtest's hook gets from
                # `(tx.timestamp + label_delay).timestamp()`, to the last bit.
                due = now_us + delay_us
                pending.append((due, tx.merchant_id, label, due / 1e6))
        if items:
            send(_encode(items))
    out.last_event = tx.timestamp if tx is not None else None
    return out


def _model_process(
    conn: Connection,
    slot_bytes: bytes,
    review: float,
    block: float,
    delay_us: int,
    timezone: dt.tzinfo,
    scores_out: Path | None,
) -> None:
    """The model's half: remember, predict, learn each label when due, and the outcome."""
    gc.disable()  # long-lived acyclic state, as in the parent (replay.paused_gc)
    slot: ModelSlot = pickle.loads(slot_bytes)
    learn = slot.learn_label
    keep = slot.keep
    scores_file = scores_out.open("w", encoding="utf-8", newline="") if scores_out else None
    try:
        record = Recorder(day_function(timezone), scores_file)
        out = record.outcome
        code_of = {name: i for i, name in enumerate(DECISIONS)}
        allow = code_of["allow"]
        pending: deque[tuple[int, str, bool]] = deque()
        while (items := _decode(conn.recv_bytes())) is not None:
            for tx_id, account_id, now_us, label, score, decision, codes, raw in items:
                while pending and pending[0][0] <= now_us:
                    _, known, is_fraud = pending.popleft()
                    learn(known, is_fraud)
                    out.labels_revealed += 1
                if raw:
                    keep(tx_id, raw)
                    predictor = slot.predictor
                    if predictor is not None:
                        score = round(predictor.predict_proba(inputs(raw)), 4)
                        decision = code_of[decision_for(score, review, block)]
                        if decision != allow:
                            codes = ("model", *codes)
                record.add(tx_id, account_id, now_us, score, decision, codes, label)
                if label >= 0:
                    pending.append((now_us + delay_us, tx_id, label == 1))
        out.labels_pending = len(pending)
        if scores_file is not None:
            scores_file.close()  # complete before the parent hears the outcome
            scores_file = None
        conn.send_bytes(pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL))
    finally:
        if scores_file is not None:
            scores_file.close()
        conn.close()
