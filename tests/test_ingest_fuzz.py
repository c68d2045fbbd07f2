"""Property-based fuzzing of ingest: the validator never fails other than by refusing, valid
records round-trip, and the endpoint never answers 500 nor loses a valid record."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from decimal import Decimal
from typing import Any

from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.transactions import (
    MINOR_UNITS,
    InvalidTransaction,
    Transaction,
    encode_transaction,
    parse_transaction,
)
from tests.conftest import AUTH

URL = "/api/v1/transactions"
JSON = {**AUTH, "Content-Type": "application/json"}
NDJSON = {**AUTH, "Content-Type": "application/x-ndjson"}
ERROR_CODES = {
    "malformed_json",
    "too_deep",
    "invalid_body",
    "duplicate_key",
    "server_owned_field",
    "missing_field",
    "invalid_field",
    "too_long",
    "invalid_text",
    "id_conflict",
}
FUZZ = settings(max_examples=150, deadline=None)
# One app (and store) serves every example of a test: ids are made unique across examples.
ENDPOINT = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
_example = itertools.count()

# What a valid text field may hold: letters, marks, digits, punctuation, symbols, spaces.
text = st.text(
    st.characters(categories=("L", "M", "N", "P", "S", "Zs"), codec="utf-8"), max_size=40
)
ident = text.filter(lambda s: s.strip() != "")
offsets = st.sampled_from([0, 330, -480, 840, -720]).map(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def valid_records(draw: st.DrawFn, id: st.SearchStrategy[str] = ident) -> dict[str, Any]:
    """A JSON-ready valid record: amounts as numbers or numeric strings."""
    currency = draw(st.sampled_from(["USD", "EUR", "JPY", "BHD", "GBP"]))
    places = MINOR_UNITS.get(currency, 2)
    amount = draw(
        st.decimals(min_value=Decimal(1).scaleb(-places), max_value=Decimal(10**14), places=places)
    )
    moment = draw(
        st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2026, 1, 1))
    )
    out: dict[str, Any] = {
        "id": draw(id),
        "timestamp": moment.replace(tzinfo=draw(offsets)).isoformat(),
        "account_id": draw(ident),
        "merchant_id": draw(ident),
        # json.dumps cannot write a Decimal: a string, or a number through its exact text.
        "amount": str(amount) if draw(st.booleans()) else _Number(str(amount)),
        "currency": currency,
    }
    optional = {
        "merchant_name": text,
        "mcc": st.from_regex(r"\A[0-9]{4}\Z"),
        "country": st.from_regex(r"\A[A-Z]{2}\Z"),
        "lat": st.floats(-90, 90),
        "lon": st.floats(-180, 180),
        "channel": st.sampled_from(["pos", "ecom", "atm"]),
        "device_id": text,
        "ip": st.ip_addresses().map(str),
    }
    for name in draw(st.lists(st.sampled_from(sorted(optional)), unique=True)):
        out[name] = draw(optional[name])
    if draw(st.booleans()):
        out["note"] = draw(json_values)  # extra fields are ignored
    return out


class _Number(str):
    """A decimal to be written as a bare JSON number."""


def dumps(record: dict[str, Any], compact: bool = True) -> str:
    """JSON as a client may send it: compact and ASCII, or spaced out and UTF-8."""
    numbers = {
        f"@@number-{i}@@": v for i, v in enumerate(record.values()) if isinstance(v, _Number)
    }
    placeholders = {v: k for k, v in numbers.items()}
    shown = {k: placeholders.get(v, v) if isinstance(v, _Number) else v for k, v in record.items()}
    separators = (",", ":") if compact else (", ", " : ")
    text = json.dumps(shown, separators=separators, ensure_ascii=compact)
    for placeholder, number in numbers.items():
        text = text.replace(f'"{placeholder}"', number)
    return text


def expected(record: dict[str, Any]) -> Transaction:
    fields = {k: v for k, v in record.items() if k != "note"}
    fields["amount"] = Decimal(str(fields["amount"]))
    fields["timestamp"] = dt.datetime.fromisoformat(fields["timestamp"])
    return Transaction(**fields)


def refused_or_parsed(raw: bytes | str) -> Transaction | None:
    try:
        return parse_transaction(raw)
    except InvalidTransaction as exc:
        assert exc.error.code in ERROR_CODES
        assert exc.error.message
        return None


# --- the validator -------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=400))
def test_any_bytes_are_parsed_or_refused(raw: bytes) -> None:
    refused_or_parsed(raw)


@FUZZ
@given(json_values)
def test_any_json_value_is_parsed_or_refused(value: Any) -> None:
    refused_or_parsed(json.dumps(value))
    refused_or_parsed(json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"))


@FUZZ
@given(valid_records(), st.booleans())
def test_valid_records_round_trip(record: dict[str, Any], compact: bool) -> None:
    parsed = parse_transaction(dumps(record, compact))
    assert parsed == expected(record)
    assert parsed.amount == Decimal(str(record["amount"]))
    # The stored form reads back to the same transaction, byte for byte.
    stored = encode_transaction(parsed)
    assert parse_transaction(stored) == parsed
    assert encode_transaction(parse_transaction(stored)) == stored


@st.composite
def mutated_records(draw: st.DrawFn) -> bytes:
    record = draw(valid_records())
    raw = dumps(record, draw(st.booleans())).encode()
    kind = draw(st.sampled_from(["insert", "delete", "truncate", "set", "drop", "duplicate"]))
    if kind in ("insert", "delete", "truncate"):
        at = draw(st.integers(0, len(raw)))
        if kind == "insert":
            return raw[:at] + draw(st.binary(min_size=1, max_size=6)) + raw[at:]
        if kind == "delete":
            return raw[:at] + raw[at + draw(st.integers(1, 6)) :]
        return raw[:at]
    key = draw(st.sampled_from([*record, "score", "status", "x"]))
    if kind == "drop":
        record.pop(key, None)
        return dumps(record).encode()
    if kind == "set":
        record[key] = draw(json_values)
        return dumps(record).encode()
    # A key again (or a server-owned or extra one), with any value.
    return raw[:-1] + f', "{key}": {json.dumps(draw(json_values))}}}'.encode()


@FUZZ
@given(mutated_records())
def test_mutated_records_are_parsed_or_refused(raw: bytes) -> None:
    refused_or_parsed(raw)


# --- through the endpoint ------------------------------------------------------------------


def unique_ids() -> st.SearchStrategy[str]:
    return st.integers(0, 10**9).map(lambda n: f"fz-{next(_example)}-{n}")


@ENDPOINT
@given(
    st.lists(
        st.one_of(
            valid_records(id=unique_ids()).map(lambda r: ("valid", r)),
            json_values.map(lambda v: ("garbage", v)),
        ),
        min_size=1,
        max_size=12,
    ),
    st.booleans(),
)
async def test_a_batch_never_fails_and_keeps_every_valid_record(
    client: TestClient, items: list[tuple[str, Any]], ndjson: bool
) -> None:
    # Neither form has a newline inside a record, nor a blank record.
    lines = [dumps(v) if kind == "valid" else json.dumps(v) for kind, v in items]
    if ndjson:
        resp = await client.post(URL, data="\n".join(lines), headers=NDJSON)
    else:
        resp = await client.post(URL, data="[" + ",".join(lines) + "]", headers=JSON)
    assert resp.status == 200, await resp.text()
    results = (await resp.json())["results"]
    assert len(results) == len(items)
    valid = [(r, v) for (kind, v), r in zip(items, results, strict=True) if kind == "valid"]
    for result, record in valid:
        assert result.get("transaction_id") == record["id"], result
    for result in results:
        assert "transaction_id" in result or result["error"]["code"] in ERROR_CODES
    if valid:
        # Persisted: sent again alone, each gets the very same verdict back.
        again = await client.post(
            URL, data="[" + ",".join(dumps(v) for _, v in valid) + "]", headers=JSON
        )
        assert (await again.json())["results"] == [r for r, _ in valid]


@ENDPOINT
@given(st.binary(max_size=300), st.sampled_from(["application/json", "application/x-ndjson"]))
async def test_any_body_is_answered_without_a_500(
    client: TestClient, body: bytes, content_type: str
) -> None:
    resp = await client.post(URL, data=body, headers={**AUTH, "Content-Type": content_type})
    assert resp.status in (200, 400), await resp.text()
    answer = await resp.json()
    if resp.status == 400:
        assert answer["error"]["code"] in ERROR_CODES | {"empty_body"}
