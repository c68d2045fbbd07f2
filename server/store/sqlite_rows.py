"""How the SQLite store packs a transaction's verdict and model inputs into its row, and
reads them back the same from rows written before it packed them so (migration 8)."""

from __future__ import annotations

import re
from itertools import chain

import msgspec

from server.detection.verdict import Decision, Reason, Verdict

INPUTS_RAW: int | None = None
"""`model_packing` of inputs kept as the model packed them: every row before migration 8,
and those the sparse form would not make shorter."""
INPUTS_SPARSE = 1
"""`model_packing` of inputs kept in the sparse form (`pack_inputs`)."""

# The model's packed inputs are mostly zero bytes (69-79 % in the demo's stream): the sparse
# form is their length (2 bytes, little-endian), a bitmap of the bytes that are not zero
# (bit i of the little-endian number: byte i), then those bytes in order: ~61 bytes of ~134
# once the model scores (benchmarks/store_size.py). Deflate keeps ~55, but takes ~8 µs a row
# on the writer's thread against ~1.2 µs for this, made of C-speed bytes methods only.
_BITS = bytes.maketrans(bytes(range(256)), b"0" + b"1" * 255)
_RUNS = bytes.maketrans(b"01", b"\x00\x01")  # the bitmap's digits back to bytes: 0 or a mark
_BYTE = re.compile(rb".", re.DOTALL)
_MAX_SPARSE = 0xFFFF


def pack_inputs(raw: bytes) -> tuple[int | None, bytes]:
    """The packing and bytes to keep for the model's `raw` inputs."""
    size = len(raw)
    if not 0 < size <= _MAX_SPARSE:
        return INPUTS_RAW, raw
    bits = int(raw.translate(_BITS)[::-1], 2)
    packed = b"".join(
        (
            size.to_bytes(2, "little"),
            bits.to_bytes((size + 7) // 8, "little"),
            raw.translate(None, b"\0"),  # one pass: replace() is ~6x slower here
        )
    )
    return (INPUTS_SPARSE, packed) if len(packed) < size else (INPUTS_RAW, raw)


def unpack_inputs(packing: object, stored: bytes) -> bytes:
    """The model's inputs exactly as `pack_inputs` was given them. Raises ValueError for a
    packing this store does not write, or bytes that are not what it says."""
    if packing is INPUTS_RAW:
        return stored
    if packing != INPUTS_SPARSE:
        raise ValueError(f"unknown packing {packing!r}")
    size = int.from_bytes(stored[:2], "little")
    start = 2 + (size + 7) // 8
    bits = int.from_bytes(stored[2:start], "little")
    values = stored[start:]
    if len(stored) < start or bits >> size or bits.bit_count() != len(values) or 0 in values:
        raise ValueError("not in the sparse form")
    # The runs of zeros between the values, then each run and the value after it, joined:
    # C-speed steps only, ~6 µs for the detector's inputs (a loop over the bits took ~10).
    zero_runs = format(bits, f"0{size}b")[::-1].encode().translate(_RUNS).split(b"\x01")
    pairs = zip(zero_runs[:-1], _BYTE.findall(values), strict=True)
    return b"".join(chain.from_iterable(pairs)) + zero_runs[-1]


class _StoredVerdict(msgspec.Struct, array_like=True):
    """A verdict as its row keeps it: a JSON array, [score, decision, reasons,
    rules_version, latency_ms], without the transaction id and alert id, which the row's
    `id` and `alert_id` columns hold. ~45 bytes for an allowed transaction's, against ~150 as
    the object the API shows (each key spelt out in every row). Appended fields must have
    defaults, so that the rows written before them still read."""

    score: float
    decision: Decision
    reasons: list[Reason]
    rules_version: str
    latency_ms: float


class _EarlierVerdict(msgspec.Struct):
    """`verdict_json` of a row written before migration 8: the whole Verdict as an object.
    Its ids are ignored and read from the columns, which always held the same values."""

    score: float
    decision: Decision
    reasons: list[Reason]
    rules_version: str
    latency_ms: float


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(_StoredVerdict)
_earlier_decoder = msgspec.json.Decoder(_EarlierVerdict)


def encode_verdict(verdict: Verdict) -> str:
    """`verdict_json` for `verdict`, whose ids go in the row's `id` and `alert_id`."""
    stored = _StoredVerdict(
        verdict.score, verdict.decision, verdict.reasons, verdict.rules_version, verdict.latency_ms
    )
    return _encoder.encode(stored).decode()


def decode_verdict(transaction_id: str, alert_id: str | None, stored: str | bytes) -> Verdict:
    """The verdict of the row with this `id`, `alert_id` and `verdict_json`. Raises
    msgspec.DecodeError (or TypeError: not text) for JSON that is not a verdict's."""
    earlier = stored[:1] in ("{", b"{")  # a row written before migration 8
    v: _StoredVerdict | _EarlierVerdict = (
        _earlier_decoder.decode(stored) if earlier else _decoder.decode(stored)
    )
    return Verdict(
        transaction_id=transaction_id,
        score=v.score,
        decision=v.decision,
        reasons=v.reasons,
        alert_id=alert_id,
        rules_version=v.rules_version,
        latency_ms=v.latency_ms,
    )
