"""Detector state survives a restart: snapshot round trips, across processes and servers."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import signal
import struct
import subprocess
import sys
import tracemalloc
from collections import OrderedDict
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp.test_utils import TestClient

from server.config import Settings
from server.detection import Detector, Scored
from server.detection.features import FEATURES
from server.detection.model import (
    _EARLIER_RAW,
    _RAW_SIZE,
    FEATURE_NAMES,
    FEATURE_SET,
    RAW_LAYOUT,
    RAW_LAYOUTS_READ,
    ModelSlot,
    OnlineLogit,
    inputs,
    scored_logit,
)
from server.detection.snapshot import (
    Progress,
    SnapshotError,
    decode_into,
    encode,
    encode_frames,
    load,
    restore,
    save,
)
from server.state import AUTH as AUTH_KEY
from server.state_saver import StateSaver
from server.transactions import Transaction
from tests.conftest import AUTH, card_testing
from tests.conftest import tx as tx_json
from tests.live_server import BASE, start_live

T0 = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)


def stream(n: int = 800, seed: int = 5) -> list[Transaction]:
    """Several accounts over two weeks: every kind of state gets something to hold."""
    rng = random.Random(seed)
    t = 0.0
    out = []
    for i in range(n):
        t += rng.choice((5.0, 40.0, 900.0, 4000.0))
        located = rng.random() < 0.8
        out.append(
            Transaction(
                id=f"s-{i}",
                timestamp=T0 + dt.timedelta(seconds=t),
                account_id=f"acct-{rng.randrange(8)}",
                merchant_id=f"m-{rng.randrange(15)}",
                amount=Decimal(rng.choice(("1.00", "25.00", "60.00", "900.00"))),
                currency="USD",
                country=rng.choice(("US", "FR", "JP")) if located else None,
                lat=rng.uniform(-50, 50) if located else None,
                lon=rng.uniform(-100, 100) if located else None,
                device_id=rng.choice(("d-1", "d-2", "d-3", None)),
                ip=rng.choice(("10.0.0.1", "10.0.0.2", None)),
                mcc=rng.choice(("5411", "5999", None)),
            )
        )
    return out


def all_features() -> Detector:
    return Detector(model_features=FEATURES)


def label_some(det: Detector, txs: list[Transaction]) -> None:
    for tx in txs[::7]:
        det.featurizer.learn_label(tx.merchant_id, tx.timestamp.timestamp(), True, float(tx.amount))


def test_round_trip_continues_exactly_where_it_stopped(tmp_path: Path) -> None:
    txs = stream()
    half = len(txs) // 2
    straight = all_features()
    label_some(straight, txs[:half])
    expected = [straight.score(tx) for tx in txs[:half]]
    expected_rest = [straight.score(tx) for tx in txs[half:]]

    first = all_features()
    label_some(first, txs[:half])
    assert [first.score(tx) for tx in txs[:half]] == expected
    path = tmp_path / "state.msgpack"
    assert save(first.featurizer, path) == path.stat().st_size
    second = all_features()
    restored = load(second.featurizer, path)
    assert restored == sum(first.featurizer.size().values())
    assert [second.score(tx) for tx in txs[half:]] == expected_rest
    assert encode(second.featurizer) == encode(straight.featurizer)


def learning() -> Detector:
    # Ready after 40 labels, so the second half is scored by what was learnt across the restart.
    slot = ModelSlot(learner=OnlineLogit(), min_labels=40, min_frauds=5, negative_ratio=1e9)
    return Detector(model=slot)


def learn(det: Detector, txs: list[Transaction]) -> None:
    assert det.model is not None
    for i, tx in enumerate(txs):
        det.model.learn_label(tx.id, i % 4 == 0)


def test_a_label_after_a_restart_is_learnt_as_without_one(tmp_path: Path) -> None:
    """Chargebacks come days later: the inputs of transactions scored before a restart are
    in the snapshot, so their labels teach the model exactly as if it had kept running."""
    txs = stream()
    half = len(txs) // 2
    straight = learning()
    [straight.score(tx) for tx in txs[:half]]
    learn(straight, txs[:half])  # labels arrive after the first half was scored
    expected = [straight.score(tx) for tx in txs[half:]]
    assert straight.model is not None and straight.model.predictor is not None  # it scored

    first = learning()
    [first.score(tx) for tx in txs[:half]]
    assert first.model is not None and first.model.flags.accounts  # something to carry
    path = tmp_path / "state.msgpack"
    save(first.featurizer, path, first.model)
    second = learning()
    load(second.featurizer, path, second.model)
    assert second.model is not None
    assert list(second.model.remembered.items()) == list(first.model.remembered.items())
    assert second.model.flags.accounts == first.model.flags.accounts
    learn(second, txs[:half])
    assert [second.score(tx) for tx in txs[half:]] == expected

    # Without the model's memory (a snapshot taken without it) those labels teach nothing.
    save(first.featurizer, path)
    third = learning()
    load(third.featurizer, path, third.model)
    assert third.model is not None and not third.model.remembered
    assert [third.score(tx) for tx in txs[half:]] != expected


def scored(n: int = 100) -> Detector:
    det = learning()
    for tx in stream(n):
        det.score(tx)
    return det


def save_as_layout(det: Detector, path: Path, layout: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A snapshot whose model memory is marked with `layout`, as another build writes it."""
    monkeypatch.setattr("server.detection.snapshot.RAW_LAYOUT", layout)
    save(det.featurizer, path, det.model)
    monkeypatch.undo()


def test_model_memory_of_other_inputs_is_left_out_and_the_rest_restored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    det = scored()
    path = tmp_path / "state.msgpack"
    save_as_layout(det, path, "m1+older/<Idd", monkeypatch)
    fresh = learning()
    assert load(fresh.featurizer, path, fresh.model) == sum(det.featurizer.size().values())
    assert fresh.model is not None and not fresh.model.remembered
    assert fresh.featurizer.accounts.keys() == det.featurizer.accounts.keys()


def test_model_memory_from_before_the_logit_was_kept_loads_and_bad_entries_are_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    det = scored()
    assert det.model is not None
    old_layout = f"{FEATURE_SET}/{RAW_LAYOUT.split('/', 1)[1].split('+')[0]}"
    assert old_layout in RAW_LAYOUTS_READ  # the same inputs, before the logit
    # As the previous fraudwatch wrote it: its marker, entries without a logit; and one
    # entry of a length no layout holds (damaged), which is left out.
    items = list(det.model.remembered.items())
    det.model.remembered = OrderedDict((k, v[:_RAW_SIZE]) for k, v in items)
    det.model.remembered["damaged"] = b"\x00" * 7
    path = tmp_path / "state.msgpack"
    save_as_layout(det, path, old_layout, monkeypatch)
    fresh = learning()
    load(fresh.featurizer, path, fresh.model)
    assert fresh.model is not None
    assert list(fresh.model.remembered) == [k for k, _ in items]
    assert all(scored_logit(raw) is None for raw in fresh.model.remembered.values())


@pytest.mark.parametrize(("feature_set", "raw_format"), sorted(_EARLIER_RAW.items()))
def test_model_memory_of_earlier_inputs_is_learnt_without_its_logit(
    feature_set: str, raw_format: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Upgrades that added inputs (the bands, session 8, from the same raw values; the
    amount's fraud rate, session 9, and the merchant's run of frauds, session 10, one raw
    value more each): a label that arrives after them for a transaction scored before them
    is still learnt, the values added read as unknown, and the old model's logit does not
    teach the new model's calibration."""
    det = scored()
    assert det.model is not None
    items = list(det.model.remembered.items())
    assert all(len(v) == _RAW_SIZE for _, v in items)
    # New raw values go last: an earlier layout is this one's first bytes.
    size = struct.calcsize(raw_format)
    previous = {k: v[:size] + struct.pack("<d", 2.5) for k, v in items}
    det.model.remembered = OrderedDict(previous)
    path = tmp_path / "state.msgpack"
    layout = f"{feature_set}/{raw_format}+<d"
    save_as_layout(det, path, layout, monkeypatch)
    fresh = learning()
    load(fresh.featurizer, path, fresh.model)
    assert fresh.model is not None
    assert list(fresh.model.remembered) == [k for k, _ in items]
    assert all(scored_logit(raw) is None for raw in fresh.model.remembered.values())
    # The inputs made of the values it had are as before; those added since are unknown.
    since = ["hour_risk", "mcc_amount_dev", "log_inflow_24h", "new_payee"]
    added = {
        "m1+e7244f76": ["amount_risk", "log_merchant_fraud_run", *since],
        "m1+99dcd961": ["amount_risk", "log_merchant_fraud_run", *since],
        "m1+188af7cc": ["log_merchant_fraud_run", *since],
        # round_amount: made from the amount, which it had
        "m1+741ad7a6": since,
        "m1+5f146e3d": since,
        "m1+c7a32c63": since[1:],
        "m1+ee4e1224": since[2:],
        "m1+46ab33c9": since[3:],
        # The stream's scale is no input of its own: unknown, the amount reads as scored.
        "m1+9d47c3d5": [],
    }[feature_set]
    new = [FEATURE_NAMES.index(name) for name in added]
    for (_, raw), (_, before) in zip(fresh.model.remembered.items(), items, strict=True):
        x, was = inputs(raw), inputs(before)
        assert [x[i] for i in new] == [0.0] * len(new)
        assert [v for i, v in enumerate(x) if i not in new] == [
            v for i, v in enumerate(was) if i not in new
        ]
    assert fresh.model.learn_label(items[0][0], True)


def test_earlier_raw_layouts_are_this_ones_first_values() -> None:
    # What lets an older entry read as this one padded with zeros: values are only ever
    # appended, as floats whose "unknown" is 0.0.
    current = RAW_LAYOUT.split("/", 1)[1].split("+", 1)[0]
    for raw_format in _EARLIER_RAW.values():
        assert current.startswith(raw_format)
        assert set(current[len(raw_format) :]) <= {"f"}


def test_a_snapshot_of_the_previous_format_still_loads() -> None:
    det = all_features()
    for tx in stream(50):
        det.score(tx)
    data = encode(det.featurizer).replace(
        b"fraudwatch-detector-state/2", b"fraudwatch-detector-state/1", 1
    )
    fresh = all_features()
    assert decode_into(fresh.featurizer, data) == sum(det.featurizer.size().values())


def test_the_labels_by_amount_survive_a_restart() -> None:
    det = all_features()
    txs = stream(60)
    label_some(det, txs)
    for tx in txs:
        det.score(tx)
    assert det.featurizer.amounts
    fresh = all_features()
    decode_into(fresh.featurizer, encode(det.featurizer))
    assert fresh.featurizer.amounts == det.featurizer.amounts
    # A snapshot from before them (no "amounts" in its end frame) starts them empty.
    older = encode(det.featurizer).replace(b"\xa7amounts", b"\xa7ignored", 1)
    again = all_features()
    decode_into(again.featurizer, older)
    assert again.featurizer.amounts == {}


def test_the_amounts_by_mcc_survive_a_restart() -> None:
    det = all_features()
    for tx in stream(200):
        det.score(tx)
    assert any(n >= 30 for n, _, _ in det.featurizer.mcc_amounts.values())
    fresh = all_features()
    decode_into(fresh.featurizer, encode(det.featurizer))
    assert fresh.featurizer.mcc_amounts == det.featurizer.mcc_amounts
    # A snapshot from before them starts them empty.
    older = encode(det.featurizer).replace(b"\xabmcc_amounts", b"\xabignored_mcc", 1)
    again = all_features()
    decode_into(again.featurizer, older)
    assert again.featurizer.mcc_amounts == {}


def test_the_streams_amount_scale_survives_a_restart() -> None:
    # Amounts times 10: a typical amount over 40, so the scale is above its floor and moves.
    txs = [msgspec.structs.replace(tx, amount=tx.amount * 10) for tx in stream(3200)]
    det = all_features()
    for tx in txs[:2200]:
        det.score(tx)
    assert det.featurizer.scale.scale is not None
    fresh = all_features()
    decode_into(fresh.featurizer, encode(det.featurizer))
    assert fresh.featurizer.scale.state() == det.featurizer.scale.state()
    # The next transactions read it alike, and its next step (at 3,000 amounts) is the same.
    names = ("amount_scale", "amount_scaled", "account_small_scaled_count_10m")
    after = [[[v[n] for n in names] for v in map(fz.values_one, txs[2200:])]
             for fz in (det.featurizer, fresh.featurizer)]  # fmt: skip
    assert after[0] == after[1]
    assert fresh.featurizer.scale.state() == det.featurizer.scale.state()
    assert len({scale for scale, _, _ in after[0]}) == 2  # it moved once meanwhile
    # A snapshot from before it starts it unknown, learnt again from what comes.
    older = encode(det.featurizer).replace(b"\xacamount_scale", b"\xacignored_scal", 1)
    again = all_features()
    decode_into(again.featurizer, older)
    assert again.featurizer.scale.scale is None and again.featurizer.scale.seen == 0


def test_missing_snapshot_is_not_an_error(tmp_path: Path) -> None:
    assert load(all_features().featurizer, tmp_path / "none.msgpack") is None


@pytest.mark.parametrize(
    "data",
    [b"not msgpack at all \xff", msgspec.msgpack.encode({"format": "something-else/9"})],
)
def test_a_foreign_or_damaged_file_is_refused(data: bytes) -> None:
    det = all_features()
    det.score(stream(1)[0])
    with pytest.raises(SnapshotError):
        decode_into(det.featurizer, data)
    assert len(det.featurizer.accounts) == 1  # untouched


_CHILD = """
import json, sys
from pathlib import Path
from server.detection.snapshot import load, save
from tests.test_snapshot import all_features, label_some, stream

part, path = sys.argv[1], Path(sys.argv[2])
txs = stream()
half = len(txs) // 2
det = all_features()
if part == "first":
    label_some(det, txs[:half])
    scores = [det.score(tx) for tx in txs[:half]]
    save(det.featurizer, path)
else:
    load(det.featurizer, path)
    scores = [det.score(tx) for tx in txs[half:]]
print(json.dumps([[s.score, s.decision, [r.code for r in s.reasons]] for s in scores]))
"""


def _child(part: str, path: Path, seed: str) -> list[Any]:
    # Different hash seeds: state that leaned on the salted hash() would not match.
    env = {**os.environ, "PYTHONHASHSEED": seed}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, part, str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def _plain(scored: Scored) -> list[Any]:
    return [scored.score, scored.decision, [r.code for r in scored.reasons]]


def test_a_payee_paid_before_a_restart_is_not_new_after_it(tmp_path: Path) -> None:
    # The model's new_payee reads the merchant's latest hour bucket, which the snapshot keeps
    # with the merchant's other windows.
    def pay(n: int, days: float, payee: str) -> Transaction:
        return Transaction(id=f"p-{n}", timestamp=T0 + dt.timedelta(days=days),
                           account_id=f"victim-{n}", merchant_id=payee,
                           amount=Decimal("500.00"), currency="USD")  # fmt: skip

    before = Detector(model=ModelSlot())
    before.score(pay(0, 0, "mule"))
    path = tmp_path / "state.msgpack"
    save(before.featurizer, path)
    after = Detector(model=ModelSlot())
    load(after.featurizer, path)
    assert after.featurizer.values_one(pay(1, 29, "mule"))["is_new_payee"] is False
    assert after.featurizer.values_one(pay(2, 29, "shop"))["is_new_payee"] is True
    assert after.featurizer.values_one(pay(3, 59, "mule"))["is_new_payee"] is True


def test_snapshot_carries_state_across_processes(tmp_path: Path) -> None:
    txs = stream()
    half = len(txs) // 2
    straight = all_features()
    label_some(straight, txs[:half])
    expected = [_plain(straight.score(tx)) for tx in txs]
    path = tmp_path / "state.msgpack"
    assert _child("first", path, "1") == expected[:half]
    rest = _child("second", path, "2")
    assert rest == expected[half:]
    # The second half leans on restored state: first-seen flags, and merchant risk from the
    # labels learnt in the first.
    fired = {code for _, _, codes in rest for code in codes}
    assert {"new_merchant", "compromised_merchant"} <= fired


async def test_a_restarted_server_remembers_card_testing(tmp_path: Path) -> None:
    """Two tiny charges, a real SIGTERM restart, then the third: card testing still fires."""
    data = tmp_path / "data"
    probes = card_testing("ct", "acct-restart", n=3, at=BASE)
    with contextlib.ExitStack() as stack:
        server = await start_live(data, stack, state_snapshot_interval=0)
        async with aiohttp.ClientSession(headers=AUTH) as http:
            resp = await http.post(f"{server.url}/api/v1/transactions", json=probes[:2])
            assert resp.status == 200
            assert all(not r["reasons"] for r in (await resp.json())["results"])
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=30) == 0, server.output()
    assert (data / "detector-state.msgpack").exists()
    with contextlib.ExitStack() as stack:
        server = await start_live(data, stack)
        async with aiohttp.ClientSession(headers=AUTH) as http:
            resp = await http.post(f"{server.url}/api/v1/transactions", json=probes[2])
            verdict = await resp.json()
        assert "detector state restored" in server.output()
    assert [r["code"] for r in verdict["reasons"]] == ["card_testing"], verdict
    assert verdict["reasons"][0]["observed"] == 3


async def test_a_chargeback_after_a_restart_is_learnt(tmp_path: Path) -> None:
    """Scored, a real SIGTERM restart, then the labels: the model learns them all."""
    data = tmp_path / "data"
    records = [tx_json(f"cb-{i}", account=f"acct-cb-{i % 3}") for i in range(6)]
    labels = [
        {"transaction_id": f"cb-{i}", "label": "fraud" if i % 2 else "legitimate"} for i in range(6)
    ]
    with contextlib.ExitStack() as stack:
        server = await start_live(data, stack, state_snapshot_interval=0)
        async with aiohttp.ClientSession(headers=AUTH) as http:
            assert (await http.post(f"{server.url}/api/v1/transactions", json=records)).ok
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=30) == 0, server.output()
    with contextlib.ExitStack() as stack:
        server = await start_live(data, stack)
        assert "6 transactions awaiting labels" in server.output()
        async with aiohttp.ClientSession(headers=AUTH) as http:
            assert (await http.post(f"{server.url}/api/v1/labels", json=labels)).ok
            for _ in range(50):  # the trainer learns on its own thread
                model = (await (await http.get(f"{server.url}/api/v1/scorecard")).json())["model"]
                if model["labels_learnt"] + model["labels_without_inputs"] >= 6:
                    break
                await asyncio.sleep(0.1)
    assert model["labels_without_inputs"] == 0, model
    assert model["labels_learnt"] + model["labels_sampled_out"] == 6, model


async def test_a_damaged_snapshot_is_set_aside_and_the_server_starts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "detector-state.msgpack").write_bytes(b"\x00garbage")
    with contextlib.ExitStack() as stack:
        server = await start_live(data, stack)
        async with aiohttp.ClientSession(headers=AUTH) as http:
            resp = await http.post(f"{server.url}/api/v1/transactions", json=tx_json("after-bad"))
            assert resp.status == 200
    assert (data / "detector-state.msgpack.bad").read_bytes() == b"\x00garbage"
    assert "not restored" in server.output()


def test_frames_written_while_scoring_go_on_restore_each_key_as_it_was() -> None:
    txs = stream()
    det = all_features()
    for tx in txs[:400]:
        det.score(tx)
    frames: list[bytes] = []
    for i, frame in enumerate(encode_frames(det.featurizer, chunk=2)):
        frames.append(frame)
        if i == 2:  # the detection loop runs between two frames
            for tx in txs[400:450]:
                det.score(tx)
    restored = all_features()
    decode_into(restored.featurizer, b"".join(frames))
    assert restored.featurizer.accounts.keys() == det.featurizer.accounts.keys()
    # Each account is as it was when its frame was encoded: never torn, at most behind.
    for key, state in restored.featurizer.accounts.items():
        assert 0 < state.count <= det.featurizer.accounts[key].count


def test_model_memory_written_while_scoring_goes_on_leaves_out_what_was_forgotten() -> None:
    det = learning()
    txs = stream(60)
    for tx in txs[:40]:
        det.score(tx)
    assert det.model is not None
    before = list(det.model.remembered.items())
    frames: list[bytes] = []
    ran = False
    for frame in encode_frames(det.featurizer, chunk=4, model=det.model):
        frames.append(frame)
        if not ran and msgspec.msgpack.decode(frame[8:]).get("kind") == "model_inputs":
            # After the memory's first frame the loop runs: labels learnt, new ones remembered.
            ran = True
            learn(det, txs[:10])
            for tx in txs[40:]:
                det.score(tx)
    restored = learning()
    decode_into(restored.featurizer, b"".join(frames), restored.model)
    assert restored.model is not None
    # The keys were taken when the model's frames began: the twenty new are not in, and of
    # the ten learnt since, those in the first frame (written before) are, the rest are gone.
    assert list(restored.model.remembered.items()) == before[:4] + before[10:]


def many_accounts(n: int) -> list[Transaction]:
    """`n` transactions, three an account, a minute apart: many keys and model inputs."""
    return [
        Transaction(
            id=f"many-{i}",
            timestamp=T0 + dt.timedelta(minutes=i),
            account_id=f"acct-{i // 3}",
            merchant_id=f"m-{i % 50}",
            amount=Decimal("25.00"),
            currency="USD",
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("live", [True, False], ids=["periodic", "at-shutdown"])
async def test_a_snapshot_is_written_as_it_is_encoded_not_held_whole(
    tmp_path: Path, live: bool
) -> None:
    # Holding every frame until the last was encoded (and, at shutdown, every key packed
    # into Python lists in one frame) took 1x the snapshot (3.4x at shutdown) on top of the
    # state, and the process kept that memory after every snapshot.
    det = Detector(model=ModelSlot())
    for tx in many_accounts(60_000):
        det.score(tx)
    saver = StateSaver(det, tmp_path / "detector-state.msgpack")
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        saved = await saver.save(live=live)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert saved.size == saver.path.stat().st_size > 8 * 2**20
    # Before: 11.2 MiB (periodic) and 36.8 MiB (at shutdown) held for a 10.3 MiB file. Now a
    # chunk of keys at a time: 2-3 MiB alone, 4.2 MiB seen in the full suite's order.
    assert peak < saved.size / 2, f"{peak / 2**20:.1f} MiB held for {saved.size / 2**20:.1f} MiB"
    restored = Detector(model=ModelSlot())
    # 20,000 accounts, and the 50 merchants, whose receipts are read at the payer's key.
    assert load(restored.featurizer, saver.path, restored.model) == 20_050 == saved.keys
    assert encode(restored.featurizer, restored.model) == encode(det.featurizer, det.model)


def test_a_truncated_snapshot_is_refused() -> None:
    det = all_features()
    for tx in stream(50):
        det.score(tx)
    data = encode(det.featurizer)
    with pytest.raises(SnapshotError, match="truncated"):
        decode_into(all_features().featurizer, data[:-5])


async def test_the_snapshot_endpoint_needs_the_backup_scope_and_writes_the_state(
    client: TestClient, settings: Settings
) -> None:
    resp = await client.post("/api/v1/transactions", json=card_testing("e", "acct-e"), headers=AUTH)
    assert resp.status == 200
    assert (await client.post("/api/v1/admin/snapshot")).status == 401
    reader = await client.app[AUTH_KEY].keys.create("reader", ["read", "ingest"])
    refused = await client.post(
        "/api/v1/admin/snapshot", headers={"Authorization": f"Bearer {reader}"}
    )
    assert refused.status == 403
    assert "'backup' scope" in (await refused.json())["error"]["message"]
    backup_key = await client.app[AUTH_KEY].keys.create("backups", ["backup"])
    headers = {"Authorization": f"Bearer {backup_key}"}
    # Two at once: each waits for the other's write, both files whole.
    answers = await asyncio.gather(
        *(client.post("/api/v1/admin/snapshot", headers=headers) for _ in range(2))
    )
    assert [a.status for a in answers] == [200, 200]
    body = await answers[1].json()
    assert body["path"] == str(settings.state_path) and body["keys"] >= 1
    assert body["bytes"] == settings.state_path.stat().st_size
    featurizer = Detector().featurizer
    assert load(featurizer, settings.state_path) == body["keys"]
    assert "acct-e" in featurizer.accounts


def test_each_frame_marks_how_far_through_the_store_its_keys_had_got() -> None:
    txs = stream(120)
    det, progress = learning(), Progress()
    for tx in txs[:100]:
        det.score(tx)
    progress.through("s-99")
    frames: list[bytes] = []
    for i, frame in enumerate(encode_frames(det.featurizer, 3, det.model, progress)):
        frames.append(frame)
        if i == 1:  # a batch scored after the first accounts' frame, and not yet stored
            for tx in txs[100:110]:
                det.score(tx)
            progress.scored = "s-109"
    restored = restore(learning().featurizer, b"".join(frames), learning().model)
    assert restored.marks is not None
    assert restored.marks.marks == [("s-99", "s-99"), ("s-109", "s-99")]
    accounts = list(det.featurizer.accounts)
    # The header's mark stands for the first frame's keys and any the snapshot lacks.
    assert restored.marks.keys["accounts"] == dict.fromkeys(accounts[3:], 1)
    assert set(restored.marks.keys["merchants"]) == set(det.featurizer.merchants)
    # Without `progress` (the naive pipeline, an earlier version's file): no marks.
    assert restore(all_features().featurizer, encode(det.featurizer)).marks is None
