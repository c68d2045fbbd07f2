"""Learning off the event loop: a trainer thread owns the learner, learns the labelled
transactions' inputs, and swaps a frozen predictor into the detector; labels reach it from
the labels API, analysts' resolutions and (when enabled) the simulator's ground truth.

The detection loop only ever reads `ModelSlot.predictor`, an immutable snapshot; the learner
itself is touched by the trainer thread alone. A swap is one attribute assignment made on the
event loop (call_soon_threadsafe), between two batches, so a batch is scored by one model.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import queue
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from server import atomic_file
from server.detection.model import (
    FEATURE_NAMES,
    FEATURE_SET,
    ModelSlot,
    OnlineLogit,
    Predictor,
    learn_or_take_back,
)
from server.label_changes import LabelChanges
from server.scorecard import Scorecard
from server.stats import Stats
from server.store.base import Label, LabelOutcome, LabelValue, LabelWithdrawal, Store
from server.store.errors import StoreUnavailable

log = logging.getLogger(__name__)
Example = tuple[bytes, bool, float]  # raw values (model.capture), fraud?, weight (< 0: take back)


@dataclass(slots=True)
class TrainerStatus:
    labels_learnt: int = 0
    labels_without_inputs: int = 0  # no inputs kept: scored before the store kept them
    labels_from_store: int = 0  # inputs read back from the store (memory had let them go)
    labels_taken_back: int = 0  # earlier labels a correction replaced, no longer counted
    rounds: int = 0
    # The predictor in use: the labels it has learnt, or one past the one before when a
    # round left that count where it was (corrections only); 0: rules only.
    model_version: int = 0
    last_round_thread: int | None = None  # threading.get_ident() of the last round


def load_learner(path: Path) -> OnlineLogit | None:
    """The learner saved at `path`, or None (no file, another feature set, damaged: logged)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        learner = OnlineLogit.from_dict(data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("model file %s not loaded (%s); starting from the rules alone", path, exc)
        return None
    if data.get("feature_set") != FEATURE_SET:
        saved = set(data["features"])
        new = [name for name in FEATURE_NAMES if name not in saved]
        dropped = sorted(saved - set(FEATURE_NAMES))
        log.info(
            "model file %s was saved by another version (feature set %s): loaded by input "
            "name; inputs new to it, starting at 0: %d (%s); inputs it had that are no "
            "longer used: %d (%s)",
            path, data.get("feature_set"), len(new), ", ".join(new) or "none",
            len(dropped), ", ".join(dropped) or "none",
        )  # fmt: skip
    return learner


def save_learner(learner: OnlineLogit, path: Path) -> None:
    """Write atomically: a crash mid-write leaves the previous model, never half of one."""
    atomic_file.write_text(path, json.dumps(learner.to_dict()))


class Trainer:
    """One thread that learns; `submit` (on the loop) hands it the labelled inputs."""

    def __init__(self, slot: ModelSlot, path: Path | None, learner: OnlineLogit | None = None):
        self.slot = slot
        self.path = path
        self.learner = learner
        self.status = TrainerStatus()
        self._queue: queue.SimpleQueue[list[Example] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.idle = asyncio.Event()
        self.idle.set()
        self._pending = 0
        self._version = 0  # the trainer thread's, once started

    async def start(self) -> None:
        """Load the saved model (off the loop), put its predictor in use if it is ready, and
        start the thread."""
        self._loop = asyncio.get_running_loop()
        if self.learner is None and self.path is not None:
            self.learner = await asyncio.to_thread(load_learner, self.path)
        if self.learner is None:
            self.learner = OnlineLogit()
        learner = self.learner
        self._version = learner.count
        if self.slot.ready(learner.count, learner.frauds):
            self._swap(learner.freeze(self._version))
        self._thread = threading.Thread(target=self._run, name="model-trainer", daemon=True)
        self._thread.start()

    async def learn(
        self,
        labels: Iterable[tuple[str, bool]],
        store: Store | None = None,
        replaced: Mapping[str, bool] | None = None,
    ) -> tuple[int, int]:
        """On the loop: queue the inputs of these labelled transactions for learning, from
        the detector's memory or, for those it let go of (`model_memory`) or never held
        (scored before a restart without a snapshot, or by another process), from the
        `store`; a label that `replaced` another (by transaction id: was that one fraud?)
        first takes it back (`ModelSlot.pop_examples`). Returns (labels queued, without
        inputs)."""
        examples, missing = self.slot.pop_examples(labels, replaced)
        without = len({tx_id for tx_id, _ in missing})  # a label repeated in one call: once
        if missing:
            # Without a store, none is found: stored_examples notes them as not learnt.
            stored = {} if store is None else await _stored_inputs(store, missing, without)
            looked_up = without
            more, without = self.slot.stored_examples(missing, stored, replaced)
            self.status.labels_from_store += looked_up - without
            examples += more
        self.status.labels_without_inputs += without
        self._put(examples)
        return sum(weight > 0 for _, _, weight in examples), without

    async def take_back(
        self, withdrawn: Sequence[tuple[str, bool]], store: Store | None = None
    ) -> int:
        """On the loop: queue the take-back of labels withdrawn with none in their place
        (by transaction id, was it fraud?: an alert reopened), with the weight each was
        learnt with (`ModelSlot.withdrawn_examples`), their inputs from memory or the
        `store`. Returns how many are queued."""
        slot = self.slot
        need = [(tx_id, was) for tx_id, was in withdrawn if slot.kept(tx_id) is None]
        stored = {} if store is None or not need else await _stored_inputs(store, need, len(need))
        examples, missing = slot.withdrawn_examples(withdrawn, stored)
        if missing:
            log.warning("%d withdrawn labels not taken back by the model: no inputs", missing)
        self._put(examples)
        return len(examples)

    def _put(self, examples: list[Example]) -> None:
        """Hand `examples` (if any) to the thread; `idle` is clear until it has learnt them."""
        if examples:
            self._pending += 1
            self.idle.clear()
            self._queue.put(examples)

    def _run(self) -> None:
        learner = self.learner
        assert learner is not None
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            batches = [batch]
            # Take whatever else is waiting too: one freeze and one save for all of it.
            stop = False
            while True:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batches.append(more)
            try:
                self._round(learner, batches)
            except Exception:
                log.exception("model training round failed; the current model stays in use")
            finally:
                assert self._loop is not None
                self._loop.call_soon_threadsafe(self._done, len(batches))
            if stop:
                return

    def _round(self, learner: OnlineLogit, batches: Sequence[list[Example]]) -> None:
        learnt = taken_back = 0
        for batch in batches:
            for x, is_fraud, weight in batch:
                learn_or_take_back(learner, x, is_fraud, weight)
                if weight < 0:
                    taken_back += 1
            learnt += len(batch)
        learnt -= taken_back
        self.status.last_round_thread = threading.get_ident()
        predictor = None
        if self.slot.ready(learner.count, learner.frauds):
            # A correction takes one label back and learns one: the count stays, the model
            # does not, and a version that stayed too would say nothing changed.
            self._version = max(learner.count, self._version + 1)
            predictor = learner.freeze(self._version)
        if self.path is not None:
            try:
                save_learner(learner, self.path)
            except OSError as exc:
                log.warning("could not save the model to %s (%s)", self.path, exc)
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._learnt, learnt, taken_back, predictor)

    def _learnt(self, learnt: int, taken_back: int, predictor: Predictor | None) -> None:
        self.status.labels_learnt += learnt
        self.status.labels_taken_back += taken_back
        self.status.rounds += 1
        if predictor is not None:
            self._swap(predictor)

    def _done(self, batches: int) -> None:
        self._pending -= batches
        if self._pending <= 0:
            self._pending = 0
            self.idle.set()

    def _swap(self, predictor: Predictor) -> None:
        self.slot.predictor = predictor
        self.status.model_version = predictor.version

    async def close(self) -> None:
        if self._thread is None:
            return
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    def snapshot(self) -> dict[str, object]:
        predictor = self.slot.predictor
        return {
            "active": predictor is not None,
            "labels_learnt": self.status.labels_learnt,
            "labels_without_inputs": self.status.labels_without_inputs,
            "labels_from_store": self.status.labels_from_store,
            "labels_sampled_out": self.slot.sampler.skipped,
            "labels_taken_back": self.status.labels_taken_back,
            "model_version": self.status.model_version,
            "min_labels": self.slot.min_labels,
            # The map from the model's logit to the probability it scores with (Platt:
            # sigmoid(slope * logit + offset)); null until the model is in use.
            "calibration": None
            if predictor is None
            else {"slope": round(predictor.cal_a, 4), "offset": round(predictor.cal_b, 4)},
        }


async def _stored_inputs(
    store: Store, missing: Sequence[tuple[str, bool]], without: int
) -> Mapping[str, tuple[str, bytes]]:
    """The stored inputs of the labels `missing` from memory; none when unreadable (logged)."""
    try:
        found = await store.model_inputs([tx_id for tx_id, _ in missing])
    except StoreUnavailable as exc:
        # The labels are stored already; only this learning is lost, and said.
        log.warning("%d labels not learnt: model inputs unreadable (%s)", without, exc)
        return {}
    except Exception:
        # Anything else: the same, and the inputs taken from memory are still learnt
        # rather than dropped with the rest.
        log.exception("%d labels not learnt: model inputs unreadable", without)
        return {}
    # A damaged row costs its own label only (counted as without inputs).
    for tx_id, problem in found.damaged.items():
        log.error("label of %s not learnt by the model: %s", tx_id, problem)
    return found.rows


async def apply_labels(
    store: Store,
    trainer: Trainer | None,
    scorecard: Scorecard | None,
    labels: Sequence[Label],
    changes: LabelChanges | None = None,
    stats: Stats | None = None,
) -> list[LabelOutcome]:
    """Store labels, then let the model learn the new ones, the scorecard count them and the
    merchants' risk features take them in. Raises only if storing them failed: once they are
    committed, the outcomes are returned whatever happens to the learning."""
    outcomes = await store.add_labels(labels)
    new, replaced = net_changes(labels, outcomes)
    if new:
        await learn_stored_labels(store, trainer, scorecard, changes, new, stats, replaced)
    elif any(outcome.status in ("created", "updated") for outcome in outcomes):
        # Changed and changed back: nothing for the model to learn, but each change is in
        # the store's log, and merchant risk takes the log in as it stands.
        await absorb_labels(store, changes, None, labels)
    return outcomes


def net_changes(
    labels: Sequence[Label], outcomes: Sequence[LabelOutcome]
) -> tuple[list[Label], dict[str, tuple[LabelValue, str]]]:
    """What one request changed, per transaction: its last stored label, if it differs from
    the one the transaction had before the request, and that earlier label (with its
    `labelled_at`) by transaction id, to be taken back. The store applies a request's
    labels in order, so several for one transaction leave the last: the model, merchant
    risk and the scorecard must see that one change, not each step (nor the first alone).
    In the order the labels came; a transaction's place is that of its last label."""
    # The first label that changed the transaction replaced what it had before the request
    # (an `unchanged` one before it changed nothing): None if it had no label (`created`).
    before: dict[str, tuple[LabelValue, str] | None] = {}
    last: dict[str, Label] = {}
    for label, outcome in zip(labels, outcomes, strict=True):
        if outcome.status not in ("created", "updated"):
            continue
        tx_id = label.transaction_id
        before.setdefault(tx_id, outcome.replaced)
        last.pop(tx_id, None)  # keep the order of the last label
        last[tx_id] = label
    new: list[Label] = []
    replaced: dict[str, tuple[LabelValue, str]] = {}
    for tx_id, label in last.items():
        was = before.get(tx_id)
        if was is not None and was[0] == label.label:
            continue  # changed and changed back: nothing to learn or take back
        new.append(label)
        if was is not None:
            replaced[tx_id] = was
    return new, replaced


class _Labelled(msgspec.Struct):
    """What the scorecard needs of a label's stored transaction."""

    account_id: str
    timestamp: dt.datetime


_labelled = msgspec.json.Decoder(_Labelled)


async def absorb_labels(
    store: Store,
    changes: LabelChanges | None,
    scorecard: Scorecard | None,
    labels: Sequence[Label],
) -> set[str]:
    """What a label tells beyond the model: merchant risk and the amount's fraud rate take
    in the store's label changes up to these (`LabelChanges.catch_up`: in the store's
    order, each once, what a change replaced taken back first); the scorecard gets the
    verdict it waits for, from the stored transaction. Runs on the event loop, between two
    of the detection loop's batches, which own the featurizer.

    Returns the ids of the labels whose stored row could not be read back (damaged), each
    logged with what is wrong: those alone are not taken in."""
    damaged: dict[str, str] = {}
    not_read: set[str] = set()
    if changes is not None:
        try:
            not_read = await changes.catch_up()
        except Exception as exc:
            # Stored in the log: the next catch-up (the next label, or a restart's replay)
            # takes them in, in order. Nothing is lost, only later.
            log.warning("merchant risk: label changes not read yet (%s); taken in later", exc)
    if scorecard is None or not scorecard.waiting:
        return not_read
    known = await store.known_transactions([label.transaction_id for label in labels])
    damaged.update(known.damaged)
    for label in labels:
        found = known.rows.get(label.transaction_id)
        if found is None or not scorecard.waiting_for(label.transaction_id):
            continue
        verdict, raw = found
        try:
            tx = _labelled.decode(raw)
        except msgspec.DecodeError as exc:
            damaged[label.transaction_id] = f"transaction_json unreadable: {exc}"
            continue
        scorecard.add_verdict(
            label.transaction_id,
            tx.timestamp.timestamp(),
            tx.account_id,
            verdict.alert_id is not None,
        )
    for tx_id, problem in damaged.items():
        log.error("label of %s not taken in by the scorecard: %s", tx_id, problem)
    return not_read | set(damaged)


async def learn_stored_labels(
    store: Store,
    trainer: Trainer | None,
    scorecard: Scorecard | None,
    changes: LabelChanges | None,
    labels: Sequence[Label],
    stats: Stats | None = None,
    replaced: Mapping[str, tuple[str, str]] | None = None,
) -> None:
    """Labels already stored (by add_labels, or a resolution in its own commit): to the
    model, the scorecard and merchant risk, the model first taking back the labels they
    `replaced` (Trainer.learn); merchant risk takes in the store's log of label changes up
    to these, which says what each replaced (absorb_labels).

    Never raises. The labels are committed: an error here must not answer the request as
    failed, since a retry would find them `unchanged` and learn nothing either. Each step
    that fails is logged with its cause, the others still run, and the labels are counted
    in `stats.labels_not_learnt` (/metrics); a damaged stored row costs only its own label,
    counted there too (or, for the model's inputs, in `labels_without_inputs`)."""
    labelled = [(label.transaction_id, label.label == "fraud") for label in labels]
    not_learnt: set[str] = set()

    async def model() -> None:
        if trainer is not None:
            was = None if not replaced else {tx: v == "fraud" for tx, (v, _) in replaced.items()}
            await trainer.learn(labelled, store, was)

    async def count() -> None:
        if scorecard is not None:
            for label in labels:
                scorecard.add_truth(label.transaction_id, label.label == "fraud", label.scenario)

    async def absorb() -> None:
        not_learnt.update(await absorb_labels(store, changes, scorecard, labels))

    for step, what in ((model, "the model"), (count, "the scorecard"), (absorb, "merchant risk")):
        try:
            await step()
        except Exception:
            not_learnt.update(label.transaction_id for label in labels)
            log.exception("%d stored labels not taken in by %s", len(labels), what)
    if stats is not None:
        stats.labels_not_learnt += len(not_learnt)


async def withdraw_label(
    store: Store,
    trainer: Trainer | None,
    scorecard: Scorecard | None,
    changes: LabelChanges | None,
    withdrawal: LabelWithdrawal,
    stats: Stats | None = None,
) -> None:
    """A label withdrawn (`Store.reopen_labelled`: an alert reopened), already stored: taken
    back by the model, the scorecard and merchant risk as a corrected label's replaced one
    is, so that they are as if it had never been given. The label it had replaced, put
    back, is learnt again in its place (`learn_stored_labels`, with the withdrawn label as
    the one replaced); with none, the model takes the label back with the weight it was
    learnt with (`Trainer.take_back`), the scorecard stops counting the transaction, and
    merchant risk takes in the store's log, whose change says what to take back.

    Never raises, as `learn_stored_labels`: the withdrawal is committed."""
    tx_id = withdrawal.transaction_id
    if withdrawal.restored is not None:
        replaced = {tx_id: withdrawal.withdrawn}
        await learn_stored_labels(
            store, trainer, scorecard, changes, [withdrawal.restored], stats, replaced
        )
        return
    was = withdrawal.withdrawn[0] == "fraud"
    failed = False

    async def model() -> None:
        if trainer is not None:
            await trainer.take_back([(tx_id, was)], store)

    async def count() -> None:
        if scorecard is not None:
            scorecard.withdraw_truth(tx_id)

    async def absorb() -> None:
        nonlocal failed
        failed |= tx_id in await absorb_labels(store, changes, None, ())

    for step, what in ((model, "the model"), (count, "the scorecard"), (absorb, "merchant risk")):
        try:
            await step()
        except Exception:
            failed = True
            log.exception("the withdrawn label of %s not taken back by %s", tx_id, what)
    if failed and stats is not None:
        stats.labels_not_learnt += 1


REBUILD_LABELS = 50_000
"""Labels a restarted server's scorecard is rebuilt from: ~1 s of startup (~19 µs each,
measured on a demo's database of 48,416)."""


async def rebuild_scorecard(store: Store, scorecard: Scorecard, limit: int = REBUILD_LABELS) -> int:
    """After a restart, count the `limit` labels stored last with their stored verdicts, so
    the scorecard's precision and recall do not start again from nothing. Returns how many
    labelled transactions it counted."""
    # The path a stored label takes, for the scorecard alone: the model has learnt these,
    # and merchant risk has them in the detector's snapshot.
    await learn_stored_labels(store, None, scorecard, None, await store.recent_labels(limit))
    return scorecard.counted
