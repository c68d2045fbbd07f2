"""A backtest over three processes: the same verdicts, on two cores.

Per transaction, a backtest with the model spends about half of its CPU on the features
(the state of every account, merchant, device and IP) and the rules over them, and the
other half on the model (packing the inputs, remembering them until the label is due,
predicting, learning) and the report's bookkeeping. Each half keeps state that only it
reads, so they split cleanly:

    reader process            this process                     verdict process
    read, map, validate  ──▶  features, lists, rules      ──▶  the model: inputs, predict,
    (server/read_ahead.py)    merchant risk learns each        learn each label when due;
                              label when due                   scores and the report's data

This process sends, per chunk, the rows, their features and the rules' verdicts (score,
decision, reason codes, whether a list decided). The verdict process runs the same
`ModelSlot.rescore` on them and reveals each label to the model at the same event time as
`run_backtest` (before the first transaction at or after it is due), as this process does
to merchant risk, so the outcome is the one `run_backtest` gives
(`tests/test_backtest_split.py` compares them row by row). Reason texts are not sent: a
backtest keeps only codes, and the model reads only codes. Both processes build their
detector with the same `build` function; each uses its own half.

Measured on this machine (2 cores, quiet; docs/backtest.md): the reader ~14 µs of CPU a
row, this process ~33, the verdict process ~34; 19-21k tx/s end to end on 300,000 rows,
against 12k in one process.
"""

from __future__ import annotations

import datetime as dt
import functools
import gc
import pickle
from collections import deque
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection
from pathlib import Path

import msgspec

from server.backtest import DECISIONS, Outcome, OutOfOrder, Recorder, day_function
from server.detection.detector import Detector
from server.detection.features import Value
from server.detection.verdict import Reason, Scored
from server.read_ahead import one_way_pipe, process_context
from server.replay_source import Row

_encode_rows = msgspec.json.Encoder().encode  # JSON keeps a timestamp's own UTC offset
_decode_rows = msgspec.json.Decoder(list[Row]).decode
_encode = msgspec.msgpack.Encoder().encode
# Per row: the rules' score, decision (index into DECISIONS), reason codes, and whether a
# list decided (final: the model does not rescore).
_RulesVerdict = tuple[float, int, tuple[str, ...], bool]
_decode_verdicts = msgspec.msgpack.Decoder(
    tuple[list[dict[str, Value]], list[_RulesVerdict]]
).decode
_US = dt.timedelta(microseconds=1)
_END = b""


def splittable(detector: object) -> bool:
    """Whether `run_split` gives this detector's outcome: a `Detector` whose model, if it
    has one, learns inline (a trainer thread's model learns elsewhere)."""
    return isinstance(detector, Detector) and (
        detector.model is None or detector.model.learner is not None
    )


def run_split(
    chunks: Iterable[list[Row]],
    build: Callable[[], Detector],
    *,
    label_delay: dt.timedelta,
    timezone: dt.tzinfo,
    scores_out: Path | None = None,
) -> tuple[Detector, Outcome]:
    """`run_backtest` over `build()`'s detector, with its verdicts in a second process.

    `build` must be picklable (a module-level function, or a partial of one) and make the
    same fresh detector every call: this process uses its features, the other process its
    lists, rules and model. Returns this process's detector (its features as they ended)
    and the outcome."""
    if label_delay < dt.timedelta(0):
        raise ValueError(f"label_delay must be >= 0, got {label_delay}")
    detector = build()
    if not splittable(detector):
        raise ValueError("run_split needs a Detector whose model (if any) learns inline")
    context = process_context()
    child_in, to_child = one_way_pipe(context)
    from_child, child_out = one_way_pipe(context)
    process = context.Process(
        target=_verdicts,
        args=(child_in, child_out, build, label_delay // _US, timezone, scores_out),
        name="fraudwatch-verdicts",
        daemon=True,
    )
    process.start()
    child_in.close()  # the child's ends are the child's
    child_out.close()
    finished = False
    try:
        first, last = _features(chunks, detector, label_delay, to_child)
        to_child.send_bytes(_END)
        outcome: Outcome = pickle.loads(from_child.recv_bytes())
        finished = True
        outcome.first_event, outcome.last_event = first, last
        return detector, outcome
    except EOFError:
        raise RuntimeError(
            f"the verdict process stopped without a word (exit code {process.exitcode})"
        ) from None
    finally:
        if not finished:
            process.terminate()  # stopped early (rows out of order, an error): not needed
        process.join()
        to_child.close()
        from_child.close()
        process.close()


def _features(
    chunks: Iterable[list[Row]], detector: Detector, label_delay: dt.timedelta, conn: Connection
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """This process's half: each row's features; merchant risk learns each label when due.
    Returns the first and last event times."""
    delay_us = label_delay // _US
    pending: deque[tuple[int, str, bool, float]] = deque()
    values_one, rules_verdict = detector.featurizer.values_one, detector.rules_verdict
    merchant_learns = detector.featurizer.learn_label
    code_of = {name: i for i, name in enumerate(DECISIONS)}
    send = conn.send_bytes
    first = last = None
    last_us = -(2**63)
    for chunk in chunks:
        if not chunk:
            continue
        features = []
        verdicts: list[_RulesVerdict] = []
        for row in chunk:
            tx = row.transaction
            now_us = round(tx.timestamp.timestamp() * 1e6)
            if now_us < last_us:
                raise OutOfOrder(row.line)
            last_us = now_us
            while pending and pending[0][0] <= now_us:
                _, merchant, is_fraud, at_s = pending.popleft()
                merchant_learns(merchant, at_s, is_fraud)
            v = values_one(tx)
            scored, final = rules_verdict(tx, v)
            features.append(v)
            reasons = scored.reasons
            verdicts.append(
                (
                    scored.score,
                    code_of[scored.decision],
                    tuple([r.code for r in reasons]) if reasons else (),
                    final,
                )
            )
            label = row.label
            if label is not None:
                # Whole microseconds / 1e6: what run_backtest's hook gets from
                # `(tx.timestamp + label_delay).timestamp()`, to the last bit.
                due = now_us + delay_us
                pending.append((due, tx.merchant_id, label, due / 1e6))
        if first is None:
            first = chunk[0].transaction.timestamp
        last = chunk[-1].transaction.timestamp
        send(_encode_rows(chunk))
        send(_encode((features, verdicts)))
    return first, last


def _verdicts(
    conn: Connection,
    reply: Connection,
    build: Callable[[], Detector],
    delay_us: int,
    timezone: dt.tzinfo,
    scores_out: Path | None,
) -> None:
    """The verdict process: lists, rules and model over the features received; labels
    reach the model when due; the outcome goes back at the end."""
    gc.disable()  # long-lived acyclic state, as in the parent (replay.paused_gc)
    detector = build()
    model, version = detector.model, detector.rules_version
    rescore = model.rescore if model is not None else None
    learn = detector.learn_label
    decide, review = detector.decide, detector.review_threshold
    code_of = {name: i for i, name in enumerate(DECISIONS)}
    reason = functools.lru_cache(maxsize=None)(lambda code: Reason(code, ""))
    quiet = Scored(0.0, "allow", "low", (), version)
    scores_file = scores_out.open("w", encoding="utf-8", newline="") if scores_out else None
    try:
        record = Recorder(day_function(timezone), scores_file)
        add, out = record.add, record.outcome
        pending: deque[tuple[int, str, str, bool]] = deque()
        while (data := conn.recv_bytes()) != _END:
            rows = _decode_rows(data)
            features, verdicts = _decode_verdicts(conn.recv_bytes())
            for row, v, (score, decision, codes, final) in zip(
                rows, features, verdicts, strict=True
            ):
                tx = row.transaction
                now_us = round(tx.timestamp.timestamp() * 1e6)
                while pending and pending[0][0] <= now_us:
                    _, tx_id, account_id, is_fraud = pending.popleft()
                    learn(tx_id, account_id, is_fraud, None)
                    out.labels_revealed += 1
                if rescore is not None and not final:
                    # The rules' verdict as rescore reads it: codes, score, decision (a
                    # backtest keeps no reason texts, and the model reads only the codes).
                    if codes:
                        rules = Scored(
                            score, DECISIONS[decision], "low", tuple(map(reason, codes)), version
                        )
                    else:
                        rules = quiet  # no rule fired (most transactions)
                    scored = rescore(tx, v, rules, decide, review, now_us / 1e6)
                    if scored is not rules:
                        score, decision = scored.score, code_of[scored.decision]
                        codes = tuple([r.code for r in scored.reasons])
                label = row.label
                add(
                    tx.id,
                    tx.account_id,
                    now_us,
                    score,
                    decision,
                    codes,
                    -1 if label is None else int(label),
                )
                if label is not None:
                    pending.append((now_us + delay_us, tx.id, tx.account_id, label))
        out.labels_pending = len(pending)
        if scores_file is not None:
            scores_file.close()  # complete before the parent hears the outcome
            scores_file = None
        reply.send_bytes(pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL))
    finally:
        if scores_file is not None:
            scores_file.close()
        conn.close()
        reply.close()
