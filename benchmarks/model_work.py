"""The scoring process's model work alone, repeatable under cachegrind.

A backtest's scoring process spends most of its CPU in the model (`ModelSlot.flag`,
`ModelSlot.rescore`, `ModelSlot.learn_label`); the host's load moves its wall and CPU time by
tens of per cent, an instruction count does not move. So:

1. `record`: a one-process backtest of the first --rows rows of a labelled CSV; from row
   --from on, every call the model gets (the account's flags, scores, labels, forgotten
   rows) is recorded, with the model as it was just before (pickled), to one file.
2. `replay`: those calls again on that model, with a checksum of what came out (every
   logit and score, the learnt weights), so two commits can be compared on the same work,
   and the calls' CPU time; `--load-only` does all but the calls, for the difference in
   instructions.

    .venv/bin/python benchmarks/model_work.py record /tmp/s8/bt/labelled.csv /tmp/mw.pickle
    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \\
        .venv/bin/python benchmarks/model_work.py replay /tmp/mw.pickle   # and --load-only

Instructions per transaction: (replay - load-only) / the transactions recorded. The file
holds pickled objects of this checkout's classes: record once, and replay it on both
commits (a change to what a `ModelSlot` holds needs a recording of its own). The recorded
window is short next to the label delay: labels learnt in it are of transactions scored
before it.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import pickle
import struct
import sys
import tempfile
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from server import backtest
from server.detection.model import ModelSlot


def _args(path: Path) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    backtest.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(
        ["backtest", str(path), "--label", "is_fraud", "--label-delay", "7d", "--parallel", "off"]
    )


def record(csv_path: Path, out: Path, rows: int, start: int) -> int:
    calls: list[tuple[Any, ...]] = []
    state: dict[str, Any] = {"scored": 0, "slot": None}
    flag, rescore = ModelSlot.flag, ModelSlot.rescore
    learn_label, forget = ModelSlot.learn_label, ModelSlot.forget

    def recording(slot: ModelSlot) -> bool:
        if state["slot"] is None and state["scored"] >= start:
            state["slot"] = pickle.dumps(slot, protocol=pickle.HIGHEST_PROTOCOL)
        return state["slot"] is not None

    def flag_(self: ModelSlot, account_id: str, raw: bytes, rules_score: float, t: float) -> bytes:
        state["scored"] += 1
        if recording(self):
            calls.append(("flag", account_id, raw, rules_score, t))
        return flag(self, account_id, raw, rules_score, t)

    def rescore_(self: ModelSlot, tx_id: str, raw: bytes, rules: Any, *a: Any, **k: Any) -> Any:
        if recording(self):
            calls.append(("rescore", tx_id, raw, rules))
        return rescore(self, tx_id, raw, rules, *a, **k)

    def learn_label_(self: ModelSlot, tx_id: str, is_fraud: bool) -> bool:
        if recording(self):
            calls.append(("learn", tx_id, is_fraud))
        return learn_label(self, tx_id, is_fraud)

    def forget_(self: ModelSlot, tx_id: str) -> None:
        if recording(self):
            calls.append(("forget", tx_id))
        forget(self, tx_id)

    ModelSlot.flag, ModelSlot.rescore = flag_, rescore_  # type: ignore[method-assign]
    ModelSlot.learn_label, ModelSlot.forget = learn_label_, forget_  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as tmp:
        head = Path(tmp) / "head.csv"
        with csv_path.open(encoding="utf-8") as src, head.open("w", encoding="utf-8") as dst:
            dst.writelines(itertools.islice(src, rows + 1))
        args = _args(head)
        with open(os.devnull, "w", encoding="utf-8") as devnull:
            backtest.run(args, out=devnull)
    with out.open("wb") as f:
        pickle.dump((state["slot"], calls), f, protocol=pickle.HIGHEST_PROTOCOL)
    kinds = {kind: sum(1 for c in calls if c[0] == kind) for kind in ("flag", "rescore", "learn")}
    print(f"recorded {len(calls):,} calls from transaction {start:,} on: {kinds}")
    return 0


def replay(path: Path, load_only: bool) -> int:
    with path.open("rb") as f:
        pickled, calls = pickle.load(f)
    slot: ModelSlot = pickle.loads(pickled)
    detector = backtest.backtest_detector(_args(path))
    decide, threshold = detector.decide, detector.review_threshold
    digest = hashlib.sha256()
    cpu = time.process_time()
    if not load_only:
        raw = b""
        for call in calls:
            kind = call[0]
            if kind == "flag":
                raw = slot.flag(call[1], call[2], call[3], call[4])
            elif kind == "rescore":
                scored = slot.rescore(call[1], raw, call[3], decide, threshold, factors=False)
                if scored is not None:
                    digest.update(struct.pack("<d", scored.score))
            elif kind == "learn":
                slot.learn_label(call[1], call[2])
            else:
                slot.forget(call[1])
        cpu = time.process_time() - cpu
        learner = slot.learner
        assert learner is not None
        digest.update(struct.pack(f"<{len(learner.w)}d", *learner.w))
        # What is kept for the labels still to come (the logits among it), by CRC: a hash
        # of ~10 MB would add ~15 % to the instructions counted.
        digest.update(struct.pack("<I", zlib.crc32(b"".join(slot.remembered.values()))))
    scored = sum(1 for call in calls if call[0] == "flag")
    took = "" if load_only else f", {cpu / scored * 1e6:.1f} µs of CPU a transaction"
    print(f"{len(calls):,} calls, checksum {digest.hexdigest()[:16]}{took}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    rec = commands.add_parser("record")
    rec.add_argument("csv", type=Path)
    rec.add_argument("out", type=Path)
    rec.add_argument("--rows", type=int, default=110_000)
    rec.add_argument("--from", dest="start", type=int, default=100_000)
    rep = commands.add_parser("replay")
    rep.add_argument("pickle", type=Path)
    rep.add_argument("--load-only", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "record":
        return record(args.csv, args.out, args.rows, args.start)
    return replay(args.pickle, args.load_only)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] if len(sys.argv) > 1 else None))
