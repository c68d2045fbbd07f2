"""Strict ingest: the validator case by case, then the same rules through the HTTP endpoint."""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.state import STORE
from server.transactions import (
    DEFAULT_MINOR_UNITS,
    MAX_DEPTH,
    MAX_FUTURE_SKEW,
    MINOR_UNITS,
    NO_CLOCK,
    SERVER_OWNED_FIELDS,
    InvalidTransaction,
    Transaction,
    encode_transaction,
    parse_transaction,
    same_transaction,
    split_array,
    validate_transaction,
)
from tests.conftest import AUTH, T0, make_settings, tx

URL = "/api/v1/transactions"
JSON = {**AUTH, "Content-Type": "application/json"}
NDJSON = {**AUTH, "Content-Type": "application/x-ndjson"}
VALID = json.dumps(tx("v-1", amount="12.50"))
MISSING = object()


def record(**changes: Any) -> str:
    """A valid record with fields changed (MISSING removes one), as JSON text."""
    fields = tx("v-1", amount="12.50")
    for name, value in changes.items():
        if value is MISSING:
            del fields[name]
        else:
            fields[name] = value
    return json.dumps(fields)


def refusal(raw: str | bytes, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(InvalidTransaction) as caught:
        parse_transaction(raw, **kwargs)
    return caught.value.error.as_dict()


# --- the validator -------------------------------------------------------------------------


def test_a_valid_record_parses_exactly() -> None:
    parsed = parse_transaction(VALID)
    assert parsed.amount == Decimal("12.50") and str(parsed.amount) == "12.50"
    assert parsed.timestamp == T0
    assert parsed.currency == "USD"


@pytest.mark.parametrize(
    ("raw", "code", "field"),
    [
        ("{oops", "malformed_json", None),
        ('{"id": "a",}', "malformed_json", None),
        ('{"id": NaN}', "malformed_json", None),
        (b'{"id": "\xff"}', "malformed_json", None),
        (b'{"x": "\xff", "id": "a"}', "malformed_json", None),  # even in an ignored field
        ("[1, 2]", "invalid_body", None),
        ('"text"', "invalid_body", None),
        ("null", "invalid_body", None),
        ("5", "invalid_body", None),
    ],
)
def test_what_is_not_a_json_object_is_refused(
    raw: str | bytes, code: str, field: str | None
) -> None:
    error = refusal(raw)
    assert (error["code"], error["field"]) == (code, field)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "JSON number or a numeric string"),
        (None, "JSON number or a numeric string"),
        ([1], "JSON number or a numeric string"),
        ({"v": 1}, "JSON number or a numeric string"),
        ("", "JSON number or a numeric string"),
        ("NaN", "finite"),
        ("nan", "finite"),
        ("Infinity", "finite"),
        ("-inf", "finite"),
        ("1_000", "JSON number or a numeric string"),
        (" 5", "JSON number or a numeric string"),
        ("+5", "JSON number or a numeric string"),
        (".5", "JSON number or a numeric string"),
        ("5.", "JSON number or a numeric string"),
        ("0x10", "JSON number or a numeric string"),
        ("\u0661", "JSON number or a numeric string"),  # an Arabic-Indic digit one
        ("12 USD", "JSON number or a numeric string"),
        (-5, ">= 0"),
        ("-0.01", ">= 0"),
        ("-0", ">= 0"),  # a signed zero is a sign error somewhere upstream
        ("-0.00", ">= 0"),
        (10**15, "less than"),
        ("1e15", "less than"),
        (10**400, "less than"),
        ("1.005", "more decimal places than USD allows (2)"),
        (0.001, "more decimal places"),
        ("1e-400", "more decimal places"),
        ("0.1000000000000000000000000000001", "more decimal places"),
        # A zero of any exponent fits every currency; written out, this one is 1 GB.
        ("0e-999999999", "'amount' is 0 written with 999,999,999 decimal places; at most 20"),
        ("0E-21", "is 0 written with 21 decimal places"),
    ],
)
def test_bad_amounts_are_refused_naming_amount(value: Any, message: str) -> None:
    error = refusal(record(amount=value))
    assert (error["code"], error["field"]) == ("invalid_field", "amount")
    assert message in error["message"]


@pytest.mark.parametrize("raw_amount", ["1e309", "-1e309", "1" * 5000])
def test_out_of_range_json_numbers_are_refused_naming_amount(raw_amount: str) -> None:
    raw = record(amount="@").replace('"@"', raw_amount)
    error = refusal(raw)
    assert (error["code"], error["field"]) == ("invalid_field", "amount")


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (12.5, "USD", "12.5"),
        (12, "USD", "12"),
        ("12.50", "USD", "12.50"),
        ("25.000", "USD", "25.000"),  # trailing zeros fit any unit
        ("1e2", "USD", "1E+2"),
        ("1500", "JPY", "1500"),
        ("1500.0", "JPY", "1500.0"),
        ("1.005", "BHD", "1.005"),
        ("1.005", "KWD", "1.005"),
        ("0.01", "EUR", "0.01"),
        (0, "USD", "0"),  # a zero-value authorization (card check)
        ("0.00", "USD", "0.00"),
        ("0E-20", "USD", "0E-20"),
        ("999999999999999.99", "USD", "999999999999999.99"),
    ],
)
def test_good_amounts_are_kept_exactly(amount: Any, currency: str, expected: str) -> None:
    parsed = parse_transaction(record(amount=amount, currency=currency))
    assert str(parsed.amount) == expected


@pytest.mark.parametrize(("amount", "currency"), [("12.5", "JPY"), ("1.0005", "BHD")])
def test_decimals_follow_the_currency(amount: str, currency: str) -> None:
    error = refusal(record(amount=amount, currency=currency))
    assert error["field"] == "amount"
    assert currency in error["message"]


def test_every_missing_required_field_is_listed() -> None:
    error = refusal(record(account_id=MISSING, amount=MISSING, timestamp=MISSING))
    assert error["code"] == "missing_field"
    assert error["field"] == "timestamp"
    assert error["fields"] == ["timestamp", "account_id", "amount"]
    for name in error["fields"]:
        assert name in error["message"]
    assert refusal("{}")["fields"] == ["id", "timestamp", "account_id", "merchant_id", "amount"]


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (VALID[:-1] + ', "amount": "99.00"}', "amount"),
        (VALID[:-1] + ', "id" : "v-2"}', "id"),  # blanks before the colon
        (VALID[:-1] + ', "\\u0069d": "v-2"}', "id"),  # the same key, escaped
        (VALID[:-1] + ', "note": 1, "note": 2}', "note"),  # even an ignored one
        (VALID[:-1] + ', "extra": {"k": 1, "k": 2}}', "k"),  # at any depth
        (VALID[:-1] + ', "mcc": null, "mcc": "5411"}', "mcc"),
    ],
)
def test_duplicate_keys_are_refused(raw: str, key: str) -> None:
    error = refusal(raw)
    assert (error["code"], error["field"]) == ("duplicate_key", key)


@pytest.mark.parametrize("name", SERVER_OWNED_FIELDS)
def test_server_owned_fields_are_refused(name: str) -> None:
    error = refusal(record(**{name: "allow"}))
    assert (error["code"], error["field"]) == ("server_owned_field", name)


def test_unknown_fields_are_ignored_and_never_stored() -> None:
    parsed = parse_transaction(record(note="hello", tags=["a"], meta={"deep": [1, {"x": 2}]}))
    assert parsed == parse_transaction(VALID)
    assert b"note" not in encode_transaction(parsed)


def test_null_optional_fields_are_absent_ones_currency_included() -> None:
    # As replay reads an NDJSON null ("absent values"), so that one file posts either way.
    nulls = {name: None for name in ("merchant_name", "mcc", "country", "lat", "lon",
                                     "channel", "device_id", "ip", "currency")}  # fmt: skip
    parsed = parse_transaction(record(**nulls), default_currency="EUR")
    assert parsed == parse_transaction(record(currency=MISSING), default_currency="EUR")
    assert parsed.currency == "EUR"
    error = refusal(record(currency=5))
    assert (error["code"], error["field"]) == ("invalid_field", "currency")


@pytest.mark.parametrize(
    ("changes", "code", "field"),
    [
        ({"id": "x" * 129}, "too_long", "id"),
        ({"account_id": "x" * 129}, "too_long", "account_id"),
        ({"merchant_name": "x" * 257}, "too_long", "merchant_name"),
        ({"ip": "1" * 257}, "too_long", "ip"),
        ({"id": ""}, "invalid_field", "id"),
        ({"merchant_id": "   "}, "invalid_field", "merchant_id"),
        ({"id": 5}, "invalid_field", "id"),
        ({"merchant_name": 5}, "invalid_field", "merchant_name"),
        ({"merchant_name": "a\u0000b"}, "invalid_text", "merchant_name"),
        ({"merchant_name": "line\nbreak"}, "invalid_text", "merchant_name"),
        ({"id": "tab\tid"}, "invalid_text", "id"),
        ({"device_id": "del\u007f"}, "invalid_text", "device_id"),
        ({"mcc": "c1\u0085"}, "invalid_text", "mcc"),
        *[
            ({"merchant_name": f"evil{chr(c)}moc.exe"}, "invalid_text", "merchant_name")
            for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]
        ],
        ({"account_id": "acct\u202e1"}, "invalid_text", "account_id"),
        ({"currency": "usd"}, "invalid_field", "currency"),
        ({"country": "USA"}, "invalid_field", "country"),
        ({"lat": 90.5}, "invalid_field", "lat"),
        ({"lon": -181}, "invalid_field", "lon"),
        ({"lat": "1.0"}, "invalid_field", "lat"),
        ({"lat": True}, "invalid_field", "lat"),
    ],
)
def test_text_and_other_fields(changes: dict[str, Any], code: str, field: str) -> None:
    error = refusal(record(**changes))
    assert (error["code"], error["field"]) == (code, field)
    assert field in error["message"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"id": 5}, "'id' must be a string, not a number"),
        ({"id": None}, "'id' must be a string, not null"),
        ({"account_id": ["a"]}, "'account_id' must be a string, not an array"),
        # A merchant category code is a number in many systems: say what to send.
        ({"mcc": 5411}, "'mcc' must be a string or null, not a number"),
        ({"lat": "1.0"}, "'lat' must be a number or null, not a string"),
        ({"lon": True}, "'lon' must be a number or null, not true or false"),
        ({"merchant_name": {"a": 1}}, "'merchant_name' must be a string or null, not an object"),
    ],
)
def test_a_wrong_json_type_is_named_in_json_terms(changes: dict[str, Any], message: str) -> None:
    # msgspec's own words ("expected `float | null`, got `str`") are Python's, not the
    # sender's: an integrator reads JSON.
    error = refusal(record(**changes))
    assert error["message"] == message
    assert error["field"] == next(iter(changes))


def test_text_limits_are_inclusive_and_harmless_unicode_passes() -> None:
    parsed = parse_transaction(
        record(id="x" * 128, merchant_name="Café\u00a0Zoë 😀 東京 " + "y" * 200)
    )
    assert len(parsed.id) == 128


@pytest.mark.parametrize(
    ("escape", "field"),
    [("\\ud800", "merchant_name"), ("\\udfff", "merchant_name"), ("x\\uDBFFy", "merchant_name")],
)
def test_lone_surrogates_are_invalid_text(escape: str, field: str) -> None:
    # msgspec will not decode a lone surrogate escape at all; the error still names the field.
    raw = record(merchant_name="@").replace('"@"', f'"{escape}"')
    error = refusal(raw)
    assert (error["code"], error["field"]) == ("invalid_text", field)
    # A surrogate pair is one character, and fine.
    paired = record(merchant_name="@").replace('"@"', '"\\ud83d\\ude00"')
    assert parse_transaction(paired).merchant_name == "😀"


def test_raw_utf8_surrogates_are_malformed() -> None:
    raw = record(merchant_name="@").encode().replace(b'"@"', b'"\xed\xa0\x80"')
    assert refusal(raw)["code"] == "malformed_json"


@pytest.mark.parametrize(
    ("timestamp", "message"),
    [
        ("2026-03-02T14:00:00", "offset"),
        # In RFC 3339's form, but no such moment: the message names what does not exist.
        ("2026-02-30T14:00:00Z", "'timestamp': 2026-02-30 is not a date"),
        ("2026-13-01T00:00:00Z", "'timestamp': 2026-13-01 is not a date"),
        ("0000-01-01T00:00:00Z", "'timestamp': 0000-01-01 is not a date"),
        ("2026-03-01T24:00:00Z", "'timestamp': 24:00:00 is not a time of day"),
        ("2026-03-01T10:60:00.5Z", "'timestamp': 10:60:00 is not a time of day"),
        ("2026-12-31T23:59:60Z", "'timestamp': 23:59:60 is a leap second"),
        ("2026-03-01T10:00:00+24:00", "'timestamp': +24:00 is not a UTC offset"),
        ("2026-02-30T14:00:00+0100", "±hh:mm"),
        ("2026-03-01", "RFC 3339"),
        # ISO 8601 forms that are not RFC 3339: another system may not read them alike.
        ("2026-03-02T14:00:00+0100", "±hh:mm"),
        ("2026-03-02T14:00:00+01", "±hh:mm"),
        ("20260302T140000Z", "RFC 3339"),
        ("2026-W10-1T14:00:00Z", "RFC 3339"),
        ("2026-03-02T14:00Z", "RFC 3339"),
        ("yesterday", "RFC 3339"),
        (1772460000, "RFC 3339"),
        (None, "RFC 3339"),
    ],
)
def test_bad_timestamps_are_refused(timestamp: Any, message: str) -> None:
    for extra in ({}, {"note": "unknown fields take the careful path"}):
        error = refusal(record(timestamp=timestamp, **extra))
        assert (error["code"], error["field"]) == ("invalid_field", "timestamp")
        assert message in error["message"]


@pytest.mark.parametrize("extra", [{}, {"note": "unknown fields take the careful path"}])
def test_a_timestamp_offset_needs_its_colon(extra: dict[str, Any]) -> None:
    # msgspec alone decodes +0100 as +01:00; RFC 3339 (and docs/api.md) say ±hh:mm.
    error = refusal(record(timestamp="2026-03-02T14:00:00+0100", **extra))
    assert (error["code"], error["field"]) == ("invalid_field", "timestamp")
    # Escaped in the JSON text, the same value is read and refused the same.
    escaped = record(**extra).replace(T0.isoformat(), "@")
    error = refusal(escaped.replace('"@"', '"2026-03-02T14:00:00\\u002b0100"'))
    assert error["field"] == "timestamp"
    fine = escaped.replace('"@"', '"2026-03-02T15:00:00\\u002b01:00"')
    assert parse_transaction(fine).timestamp == T0
    # What RFC 3339 allows: a lower-case t and z, a space for the T, -00:00, any fraction.
    for text in ("2026-03-02t14:00:00z", "2026-03-02 14:00:00Z", "2026-03-02T14:00:00-00:00",
                 "2026-03-02T15:00:00.123456789+01:00"):  # fmt: skip
        assert parse_transaction(record(timestamp=text, **extra)).timestamp == T0.replace(
            microsecond=123457 if "." in text else 0
        )


def test_timestamps_may_not_run_ahead_of_the_clock() -> None:
    now = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
    ahead = now + MAX_FUTURE_SKEW + dt.timedelta(seconds=1)
    error = refusal(record(timestamp=ahead.isoformat()), now=now)
    assert (error["code"], error["field"]) == ("invalid_field", "timestamp")
    assert "ahead of the server clock" in error["message"]
    # Within the skew, in any offset, and any time in the past: event time is the sender's.
    almost = (now + MAX_FUTURE_SKEW).astimezone(dt.timezone(dt.timedelta(hours=14)))
    assert parse_transaction(record(timestamp=almost.isoformat()), now=now)
    assert parse_transaction(record(timestamp="2001-01-01T00:00:00-11:00"), now=now)
    # Without `now`, the wall clock.
    assert refusal(record(timestamp="2999-01-01T00:00:00Z"))["field"] == "timestamp"
    # Offline (a replay) there is no clock at all: any time is accepted, the far future too.
    far = parse_transaction(record(timestamp="9500-01-01T00:00:00Z"), now=NO_CLOCK)
    assert far.timestamp.year == 9500


@pytest.mark.parametrize("now", [None, NO_CLOCK])
def test_the_first_and_last_years_are_refused(now: dt.datetime | None) -> None:
    # 0001-01-01T00:00:00+01:00 is a moment of the year 0 in UTC, which a datetime cannot
    # hold: accepted, it made any label of the transaction a 500 and a backtest a traceback.
    for text in ("0001-01-01T00:00:00+01:00", "0001-12-31T23:59:59Z", "9999-01-01T00:00:00Z"):
        error = refusal(record(timestamp=text), now=now)
        assert error == {
            "code": "invalid_field",
            "message": f"'timestamp': the year {text[:4]} is out of range; send one from "
            "0002 to 9998",
            "field": "timestamp",
        }
    assert parse_transaction(record(timestamp="0002-01-01T00:00:00+23:59"), now=now)


def test_nesting_is_capped() -> None:
    def nested(levels: int) -> str:
        # The record itself is one level.
        return record(extra="@").replace('"@"', "[" * (levels - 1) + "]" * (levels - 1))

    assert parse_transaction(nested(MAX_DEPTH))
    error = refusal(nested(MAX_DEPTH + 1))
    assert error["code"] == "too_deep"
    # Far beyond any decoder's recursion limit: refused, not a crash.
    assert refusal("[" * 200_000)["code"] == "too_deep"
    assert refusal('{"x":' * 100_000)["code"] == "too_deep"
    # Brackets inside strings are text.
    assert parse_transaction(record(merchant_name="[" * 100 + "{" * 100))


def test_split_array_isolates_what_it_cannot_read() -> None:
    body = b"[" + VALID.encode() + b', {"id": "\\ud800"}, ' + VALID.encode() + b"]"
    parts = [bytes(p) for p in split_array(body)]
    assert parts == [VALID.encode(), b'{"id": "\\ud800"}', VALID.encode()]
    with pytest.raises(InvalidTransaction) as caught:
        split_array(b"[" * 5000 + b"]" * 5000)
    assert caught.value.error.code == "too_deep"
    with pytest.raises(InvalidTransaction) as caught:
        split_array(b'[{"id": "\\ud800"}, oops]')
    assert caught.value.error.code == "malformed_json"


def test_code_built_transactions_follow_the_same_rules() -> None:
    built = Transaction(
        id="c-1",
        timestamp=T0,
        account_id="a",
        merchant_id="m",
        amount=Decimal("1.005"),
        currency="USD",
    )
    with pytest.raises(InvalidTransaction) as caught:
        validate_transaction(built)
    assert caught.value.error.field == "amount"
    built.amount = Decimal("1.00")
    built.merchant_name = "\u2067spoof"
    with pytest.raises(InvalidTransaction) as caught:
        validate_transaction(built)
    assert caught.value.error.code == "invalid_text"


def test_same_transaction_compares_values_not_spelling() -> None:
    first = parse_transaction(record(amount=25))
    assert same_transaction(first, encode_transaction(first))
    assert same_transaction(parse_transaction(record(amount="25.00")), encode_transaction(first))
    assert not same_transaction(parse_transaction(record(amount=26)), encode_transaction(first))
    # The same instant at another offset is another local hour: not the same.
    moved = record(amount=25, timestamp="2026-03-02T15:00:00+01:00")
    assert not same_transaction(parse_transaction(moved), encode_transaction(first))
    assert not same_transaction(first, b"not json")


# --- through the endpoint ------------------------------------------------------------------


async def post(client: TestClient, body: str | bytes, headers: dict[str, str] = JSON) -> Any:
    resp = await client.post(URL, data=body, headers=headers)
    return resp.status, await resp.json()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("{oops", "malformed_json"),
        ("[{}, oops]", "malformed_json"),
        ("[" * 5000 + "]" * 5000, "too_deep"),
        ('{"a":' * 5000 + "1" + "}" * 5000, "too_deep"),
        (record(amount=MISSING, id=MISSING), "missing_field"),
        (VALID[:-1] + ', "amount": "1.00"}', "duplicate_key"),
        (record(decision="allow"), "server_owned_field"),
        (record(merchant_name="\u202eexe.txt"), "invalid_text"),
        (record(amount=True), "invalid_field"),
        (record(timestamp="2026-02-30T00:00:00Z"), "invalid_field"),
    ],
)
async def test_a_refused_single_record_is_a_json_400(
    client: TestClient, body: str, code: str
) -> None:
    status, answer = await post(client, body)
    assert status == 400
    assert answer["error"]["code"] == code
    assert set(answer["error"]) >= {"code", "message", "field"}


async def test_a_date_that_does_not_exist_is_named_as_such(client: TestClient) -> None:
    # "Must be RFC 3339" would send the sender hunting for a format that is already right.
    body = record(timestamp="2026-02-30T10:00:00Z")
    for sent, headers in ((body, JSON), (f"[{VALID}, {body}]", JSON), (body, NDJSON)):
        status, answer = await post(client, sent, headers)
        error = answer["error"] if "error" in answer else answer["results"][-1]["error"]
        assert error == {
            "code": "invalid_field",
            "message": "'timestamp': 2026-02-30 is not a date",
            "field": "timestamp",
        }, (sent, status, answer)


@pytest.mark.parametrize(("body", "headers"), [("[]", JSON), (" [ ]\n", JSON), ("\n\n", NDJSON)])
async def test_a_batch_of_nothing_is_an_empty_body(
    client: TestClient, body: str, headers: dict[str, str]
) -> None:
    # As the labels API answers `[]`: one rule for both, not a 200 with no results.
    resp = await client.post(URL, data=body, headers=headers)
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "empty_body"
    labels = await client.post("/api/v1/labels", data=body.encode(), headers=JSON)
    assert labels.status == 400
    assert (await labels.json())["error"]["code"] == "empty_body"


async def test_an_array_sent_as_ndjson_says_which_type_to_send(client: TestClient) -> None:
    # On one line, the array is one record that is not an object; pretty-printed, each line
    # is broken JSON. Either way the reason is the content type, and the message says so.
    one_line = json.dumps([tx("arr-1"), tx("arr-2")])
    pretty = json.dumps([tx("arr-3")], indent=2)
    for body in (one_line, pretty):
        status, answer = await post(client, body, NDJSON)
        assert status == 200
        for result in answer["results"]:
            message = result["error"]["message"]
            assert message.endswith("send it with Content-Type: application/json"), message
    assert "A transaction must be a JSON object; a JSON array is not NDJSON" in message_of(
        await post(client, one_line, NDJSON)
    )
    # Sent as JSON, the same array is taken.
    status, answer = await post(client, one_line, JSON)
    assert [r["decision"] for r in answer["results"]] == ["allow", "allow"]


def message_of(answer: tuple[int, Any]) -> str:
    return answer[1]["results"][0]["error"]["message"]  # type: ignore[no-any-return]


async def test_missing_fields_are_all_listed_over_http(client: TestClient) -> None:
    status, answer = await post(client, record(account_id=MISSING, merchant_id=MISSING))
    assert status == 400
    assert answer["error"]["fields"] == ["account_id", "merchant_id"]


async def test_an_oversized_body_is_a_json_413_and_nothing_is_kept(
    aiohttp_client: Any, tmp_path: Any
) -> None:
    client = await aiohttp_client(create_app(make_settings(tmp_path, max_body_bytes=4096)))
    lines = [json.dumps(tx(f"big-{i}")) for i in range(40)]
    body = "\n".join(lines)
    assert len(body) > 4096
    resp = await client.post(URL, data=body, headers=NDJSON)
    assert resp.status == 413
    assert resp.content_type == "application/json"
    assert (await resp.json())["error"]["code"] == "body_too_large"
    metrics = await (await client.get("/metrics")).text()
    assert "fraudwatch_transactions_total 0" in metrics


async def test_a_reused_id_with_another_payload_is_a_409(client: TestClient) -> None:
    status, first = await post(client, record(id="dup-1"))
    assert status == 200
    status, answer = await post(client, record(id="dup-1", amount="99.00"))
    assert status == 409
    assert (answer["error"]["code"], answer["error"]["field"]) == ("id_conflict", "id")
    assert "transaction_id" not in answer
    # The original is kept, and a resend of it (however its amount is spelled) still matches.
    assert await post(client, record(id="dup-1")) == (200, first)
    assert await post(client, record(id="dup-1", amount=12.5)) == (200, first)


async def test_conflicts_inside_a_batch_are_per_record(client: TestClient) -> None:
    await post(client, record(id="stored"))
    batch = [
        tx("b-1", amount="10.00"),
        tx("b-1", amount="11.00"),  # same id, different payload, same batch
        tx("b-1", amount="10.00"),  # a plain resend
        tx("stored", amount="500.00"),
        tx("b-2"),
    ]
    status, answer = await post(client, json.dumps(batch))
    assert status == 200
    results = answer["results"]
    assert results[0]["transaction_id"] == "b-1"
    assert results[1]["error"]["code"] == "id_conflict"
    assert results[2] == results[0]
    assert results[3]["error"]["code"] == "id_conflict"
    assert results[4]["transaction_id"] == "b-2"


async def test_a_batch_answers_each_record_in_order(client: TestClient) -> None:
    lone_surrogate = record(id="s-1", merchant_name="@").replace('"@"', '"\\ud800"')
    records = [
        json.dumps(tx("ok-1")),
        lone_surrogate,
        '{"id": "x", "id": "y"}',
        "[[[[1]]]]",
        json.dumps(tx("ok-2", amount="0.001")),
        json.dumps(tx("ok-3", score=0.9)),
        json.dumps(tx("ok-4")),
    ]
    status, answer = await post(client, "[" + ", ".join(records) + "]")
    assert status == 200
    results = answer["results"]
    assert [r.get("transaction_id") or r["error"]["code"] for r in results] == [
        "ok-1",
        "invalid_text",
        "duplicate_key",
        "invalid_body",
        "invalid_field",
        "server_owned_field",
        "ok-4",
    ]
    assert results[1]["error"]["field"] == "merchant_name"
    # The same records as NDJSON get the same answers.
    status, again = await post(client, "\n".join(records), NDJSON)
    assert again["results"] == results


async def test_a_zero_written_long_is_refused_and_its_batch_stored(client: TestClient) -> None:
    # 0e-999999999 passed validation and wrote out as a gigabyte of zeros in the store's
    # amount column: the commit failed ("string or blob too big") and every transaction of
    # its detection batch, this request's neighbours too, was answered 500 and not stored.
    raw = json.dumps([tx("z-1"), tx("z-2", amount="@"), tx("z-3")])
    status, answer = await post(client, raw.replace('"@"', "0e-999999999"))
    assert status == 200, answer
    results = answer["results"]
    assert results[1]["error"]["field"] == "amount"
    assert [results[0]["transaction_id"], results[2]["transaction_id"]] == ["z-1", "z-3"]
    times = await client.app[STORE].event_times(["z-1", "z-2", "z-3"])  # type: ignore[index]
    assert set(times) == {"z-1", "z-3"}


async def test_refusals_are_counted(client: TestClient) -> None:
    await post(client, record(id="m-1"))
    await post(client, json.dumps([tx("m-1", amount="1.00"), {"id": "m-2"}]))
    metrics = await (await client.get("/metrics")).text()
    assert "fraudwatch_rejected_total 2" in metrics


def test_error_bodies_are_plain_json() -> None:
    # `fields` appears only where it says something.
    error = refusal(record(amount="x"))
    assert "fields" not in error
    assert msgspec.json.decode(msgspec.json.encode(error)) == error


def test_the_dashboards_minor_units_are_the_servers() -> None:
    # The page formats amounts to their currency's ISO 4217 minor units, as the server keeps
    # them (Intl alone has CLDR's, fewer for IQD): static/js/format.js keeps a copy of the
    # server's table, held to it here.
    source = (Path(__file__).resolve().parent.parent / "static/js/format.js").read_text()
    table = re.search(r"const MINOR_UNITS = new Map\(\s*Object\.entries\(\{(.*?)\}\)", source, re.S)
    assert table, "format.js has no MINOR_UNITS table"
    page = {
        code: int(units)
        for units, codes in re.findall(r'(\d+): "([A-Z ]+)"', table.group(1))
        for code in codes.split()
    }
    assert page == MINOR_UNITS
    assert "minorUnits(currency) {\n  return MINOR_UNITS.get(currency) ?? 2;" in source
    assert DEFAULT_MINOR_UNITS == 2
