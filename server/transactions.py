"""The transaction model and its validation: the one shape every feed produces."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgspec

MAX_ID_LENGTH = 128
MAX_TEXT_LENGTH = 256
# A transaction is flat: nesting can only come from extra fields, which are ignored. The cap
# keeps every decoder, ours and stdlib json's, far from its recursion limit.
MAX_DEPTH = 32
MAX_AMOUNT = Decimal(10) ** 15
# Detection runs on event time; this only refuses a sender whose clock is plainly wrong.
# Measured against the server's wall clock when the record is validated.
MAX_FUTURE_SKEW = dt.timedelta(minutes=5)
DEFAULT_MINOR_UNITS = 2
# ISO 4217 minor units of the currencies that do not have 2.
MINOR_UNITS: dict[str, int] = {
    code: units
    for units, codes in (
        (0, "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"),
        (3, "BHD IQD JOD KWD LYD OMR TND"),
        (4, "CLF UYW"),
    )
    for code in codes.split()
}
REQUIRED_FIELDS = ("id", "timestamp", "account_id", "merchant_id", "amount")
# What the server decides: a client that sends them is confused, or probing.
SERVER_OWNED_FIELDS = ("score", "decision", "alert_id", "status", "verdict", "reasons")

_ID_FIELDS = ("id", "account_id", "merchant_id")
_TEXT_FIELDS = ("merchant_name", "mcc", "channel", "device_id", "ip")
_REQUIRED = frozenset(REQUIRED_FIELDS)
_SERVER_OWNED = frozenset(SERVER_OWNED_FIELDS)
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_TIMESTAMP_FORMAT = (
    "'timestamp' must be an RFC 3339 date-time with an offset (Z or ±hh:mm), "
    "e.g. 2026-01-31T12:00:00Z"
)
# RFC 3339's date-time (section 5.6): seconds required, any fraction, offset Z or ±hh:mm; T
# and Z in either case, or a space for the T (its note allows one). msgspec, which decodes it,
# takes ±hhmm too, and datetime.fromisoformat week dates, basic format and more: neither is
# RFC 3339, and a value read differently by another system is not one to accept.
_RFC3339 = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_RFC3339_TEXT = re.compile(_RFC3339)
_DATE_TIME_START = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}")
_OFFSET_END = re.compile(r"[+-][0-9]{2}:[0-9]{2}")
# A flat record's timestamp member, when written without escapes.
_TIMESTAMP_VALUE = re.compile(rb'"timestamp"[ \t\r\n]*:[ \t\r\n]*"([^"\\]*)"')
# Controls (C0, DEL, C1), bidi embeddings, overrides and isolates (they reorder what an
# analyst reads), and surrogates (not characters; UTF-8 cannot even store them).
_BAD_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NUMBER = rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
# msgspec reads JSON numbers strictly, but a string through Decimal(): " 5", "1_000", "+5".
_AMOUNT_FORM = re.compile(rb"%s|\"%s\"" % (_NUMBER, _NUMBER))
_QUOTED_NUMBER = re.compile(rb'"%s"' % _NUMBER)
_NOT_FINITE = re.compile(rb'"[+-]?(?:nan|inf|infinity)"', re.IGNORECASE)
_AMOUNT_KEY = re.compile(rb'"amount"[ \t\r\n]*:[ \t\r\n]*("?)')
_BLANKS = b" \t\r\n"
_STRUCTURE = re.compile(rb'[][{}"\\]')
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_PATH = re.compile(r" - at `\$\.?([^`]*)`$")
_TYPE_MISMATCH = re.compile(r"Expected `([^`]+)`, got `([^`]+)`")
_JSON_KIND = {
    "str": "a string",
    "int": "a number",
    "float": "a number",
    "bool": "true or false",
    "null": "null",
    "array": "an array",
    "object": "an object",
}
MAX_ZERO_DECIMALS = 20
"""Decimal places a zero amount may be written with (0.00 is fine, 0e-999999999 is not):
the store writes amounts out in full, and that one is a gigabyte of zeros."""
QUANTA = {units: Decimal(1).scaleb(-units) for units in range(5)}
"""The smallest amount of a currency with so many minor units."""
# Wide enough that quantizing anything below MAX_AMOUNT is exact, whatever the thread's context.
AMOUNT_CONTEXT = decimal.Context(prec=40)


class Transaction(msgspec.Struct, omit_defaults=True, kw_only=True, forbid_unknown_fields=True):
    """A payment as a feed delivers it; `currency` is filled from settings when absent.

    Decoding it directly refuses unknown fields: that is parse_transaction's fast path, which
    hands any unusual record to a careful one (which ignores extra fields).
    """

    id: str
    timestamp: dt.datetime
    account_id: str
    merchant_id: str
    amount: Decimal
    currency: str = ""
    merchant_name: str | None = None
    mcc: str | None = None
    country: str | None = None
    lat: float | None = None
    lon: float | None = None
    channel: str | None = None
    device_id: str | None = None
    ip: str | None = None


class _Lenient(Transaction, forbid_unknown_fields=False):
    """The same fields, skipping any others; a null `currency` is no currency, as a null
    in the other optional fields is nothing."""

    currency: str | None = ""  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class FieldError:
    """Why one input record was refused: machine code, human message, offending field
    (and, for `missing_field`, every missing one)."""

    code: str
    message: str
    field: str | None = None
    fields: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message, "field": self.field}
        if self.fields:
            out["fields"] = list(self.fields)
        return out


class InvalidTransaction(Exception):
    def __init__(self, error: FieldError) -> None:
        super().__init__(error.message)
        self.error = error


def _invalid(code: str, message: str, field: str | None = None) -> InvalidTransaction:
    return InvalidTransaction(FieldError(code, message, field))


_decoder = msgspec.json.Decoder(Transaction)
_datetime = msgspec.json.Decoder(dt.datetime)
_text = msgspec.json.Decoder(str)
_lenient = msgspec.json.Decoder(_Lenient)
_members = msgspec.json.Decoder(dict[str, msgspec.Raw])
_raw_list = msgspec.json.Decoder(list[msgspec.Raw])
_encoder = msgspec.json.Encoder(decimal_format="number")


def _decode(data: bytes) -> Transaction:
    """One msgspec pass for the usual record: known fields only, each once, plain amount."""
    try:
        tx = _decoder.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return _decode_carefully(data)
    # What decodes strictly is a flat object of known fields. If it has no more key ends than
    # fields present, no key is repeated. An explicit null or "" is not counted as present,
    # so such a record (or a numeric string amount) is checked member by member.
    texts = (tx.merchant_name, tx.mcc, tx.country, tx.channel, tx.device_id, tx.ip)
    present = len(REQUIRED_FIELDS) + (tx.currency != "") + len(texts) - texts.count(None)
    present += (tx.lat is not None) + (tx.lon is not None)
    key = _AMOUNT_KEY.search(data)
    if (
        _key_ends(data) != present
        or key is None
        or (key.group(1) and not _QUOTED_NUMBER.match(data, key.end() - 1))
    ):
        _check_members(data, _members.decode(data))
    value = _TIMESTAMP_VALUE.search(data)
    if value is None:
        # Escapes in the member: read it as JSON.
        _check_timestamp_form(_members.decode(data)["timestamp"])
    else:
        # msgspec decoded it, so it is RFC 3339 but for one form msgspec also takes: ±hhmm.
        # Its tail tells (Z, or a colon before the offset's minutes), cheaper than a match.
        text = value.group(1)
        if text[-1:] not in (b"Z", b"z") and text[-3:-2] != b":":
            raise _invalid("invalid_field", _TIMESTAMP_FORMAT, "timestamp")
    return tx


def _decode_carefully(data: bytes) -> Transaction:
    """Find exactly what is wrong with a record, or accept it, ignoring extra fields."""
    if data.count(b"{") + data.count(b"[") > MAX_DEPTH and nests_deeper_than(data, MAX_DEPTH):
        raise _invalid("too_deep", f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        # msgspec checks UTF-8 only in the strings it decodes, not in those it skips.
        data.decode()
        members = _members.decode(data)
    except msgspec.ValidationError:
        raise _invalid("invalid_body", "A transaction must be a JSON object") from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise _malformed(data, exc) from None
    _check_members(data, members)
    try:
        lenient = _lenient.decode(data)
    except msgspec.ValidationError as exc:
        error = _type_error(exc)
        if error.field == "timestamp":
            error = _timestamp_error(members["timestamp"])
        raise InvalidTransaction(error) from None
    _check_timestamp_form(members["timestamp"])
    values = msgspec.structs.asdict(lenient)
    values["currency"] = values["currency"] or ""
    return Transaction(**values)


def _timestamp_error(raw: msgspec.Raw) -> FieldError:
    """A timestamp msgspec did not decode: the date or time that does not exist, if that
    is why, else the form it must have."""
    try:
        text = _text.decode(raw)
    except msgspec.DecodeError:
        text = ""
    message = no_such_moment("timestamp", text) or _TIMESTAMP_FORMAT
    return FieldError("invalid_field", message, "timestamp")


def _check_timestamp_form(raw: msgspec.Raw) -> None:
    """Refuse a timestamp that decoded but is not RFC 3339 (such as a +0100 offset)."""
    try:
        text = _text.decode(raw)
    except msgspec.DecodeError:
        text = ""
    if not _RFC3339_TEXT.fullmatch(text):
        raise _invalid("invalid_field", _TIMESTAMP_FORMAT, "timestamp")


def no_such_moment(name: str, text: str) -> str | None:
    """Why `text`, in RFC 3339's form, names no moment (2026-02-30, 24:00:00, a +24:00
    offset), in words for the sender; None if it does, or is not in that form at all."""
    return missing_moment(name, text) if _RFC3339_TEXT.fullmatch(text) else None


def missing_moment(name: str, text: str) -> str | None:
    """`no_such_moment` for any text that starts 'YYYY-MM-DD?HH:MM:SS' (replay also reads
    a date-time without an offset); its offset is checked when it ends in ±hh:mm."""
    if not _DATE_TIME_START.match(text):
        return None
    try:
        dt.date(int(text[0:4]), int(text[5:7]), int(text[8:10]))
    except ValueError:
        return f"'{name}': {text[:10]} is not a date"
    hour, minute, second = int(text[11:13]), int(text[14:16]), int(text[17:19])
    if second == 60 and hour < 24 and minute < 60:
        # RFC 3339 allows a leap second; datetime (and every window here) has none.
        return f"'{name}': {text[11:19]} is a leap second, which is not taken; send :59"
    if hour > 23 or minute > 59 or second > 59:
        return f"'{name}': {text[11:19]} is not a time of day"
    offset = text[-6:]
    if _OFFSET_END.fullmatch(offset) and (int(offset[1:3]) > 23 or int(offset[4:6]) > 59):
        return f"'{name}': {offset} is not a UTC offset"
    return None


def parse_rfc3339(value: object) -> dt.datetime | None:
    """`value` as an RFC 3339 date-time with an offset, read as ingest reads a timestamp;
    None if it is not one (not a string, another ISO 8601 form, no such date)."""
    if not isinstance(value, str) or not _RFC3339_TEXT.fullmatch(value):
        return None
    try:
        # Only ASCII matches the pattern.
        return _datetime.decode(b'"%s"' % value.encode())
    except msgspec.ValidationError:
        return None


def nests_deeper_than(data: bytes, limit: int) -> bool:
    """Whether brackets outside strings nest deeper than `limit`; linear, even on bad input."""
    depth = 0
    in_string = False
    escaped = -1
    for match in _STRUCTURE.finditer(data):
        pos = match.start()
        if pos == escaped:
            continue
        char = data[pos]
        if in_string:
            if char == 0x5C:  # a backslash: the next byte is escaped
                escaped = pos + 1
            elif char == 0x22:
                in_string = False
        elif char == 0x22:
            in_string = True
        elif char in b"[{":
            depth += 1
            if depth > limit:
                return True
        elif char in b"]}":
            depth -= 1
    return False


def _key_ends(data: bytes) -> int:
    """At least the number of object members in `data`: each key ends in `"`, blanks, `:`."""
    return data.translate(None, _BLANKS).count(b'":')


def _check_members(data: bytes, members: dict[str, msgspec.Raw]) -> None:
    # A flat object with no more key ends than distinct keys repeats none; otherwise look.
    if data.count(b"{") != 1 or _key_ends(data) != len(members):
        duplicate = _first_duplicate(data)
        if duplicate is not None:
            message = f"Key '{duplicate}' appears more than once"
            raise _invalid("duplicate_key", message, duplicate)
    if not _SERVER_OWNED.isdisjoint(members):
        owned = [name for name in SERVER_OWNED_FIELDS if name in members]
        raise _invalid(
            "server_owned_field",
            f"{_plural(owned, 'Field')} set by the server, never by a client: {_listed(owned)}",
            owned[0],
        )
    if not _REQUIRED.issubset(members):
        missing = tuple(name for name in REQUIRED_FIELDS if name not in members)
        message = f"Missing required {_plural(missing, 'field')}: {_listed(missing)}"
        raise InvalidTransaction(FieldError("missing_field", message, missing[0], missing))
    amount = bytes(members["amount"])
    if _NOT_FINITE.fullmatch(amount):
        raise _invalid("invalid_field", "'amount' must be a finite number", "amount")
    if not _AMOUNT_FORM.fullmatch(amount):
        raise _invalid(
            "invalid_field",
            "'amount' must be a JSON number or a numeric string, like 12.50 or \"12.50\"",
            "amount",
        )


def _plural(names: Sequence[str], word: str) -> str:
    return word if len(names) == 1 else f"{word}s"


def _listed(names: Sequence[str]) -> str:
    return ", ".join(f"'{name}'" for name in names)


def _ignore(_: str) -> None:
    return None


def _stdlib_pairs(data: bytes, hook: Any) -> Any:
    """Decode with stdlib json, which shows every key/value pair (msgspec keeps the last) and
    keeps lone surrogates. Numbers are not converted: only keys and text matter here."""
    try:
        return json.loads(
            data,
            object_pairs_hook=hook,
            parse_int=_ignore,
            parse_float=_ignore,
            parse_constant=_ignore,
        )
    except (ValueError, RecursionError):
        raise _invalid("malformed_json", "Malformed JSON") from None


def _first_duplicate(data: bytes) -> str | None:
    """The first key repeated within one object, at any depth."""
    repeated: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> None:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen:
                repeated.append(key)
                return
            seen.add(key)

    _stdlib_pairs(data, pairs)
    return repeated[0] if repeated else None


def _malformed(data: bytes, exc: Exception) -> InvalidTransaction:
    # msgspec refuses a lone surrogate escape as malformed JSON; say so, naming the field.
    if _SURROGATE_ESCAPE.search(data):
        try:
            top = _stdlib_pairs(data, lambda items: items)
        except InvalidTransaction:
            top = None  # malformed for stdlib json too: msgspec's message says more
        for key, value in top if isinstance(top, list) else ():
            if _has_surrogate(key) or _has_surrogate(value):
                return _invalid(
                    "invalid_text",
                    f"'{key}' contains a lone UTF-16 surrogate, which is not text",
                    key,
                )
    return _invalid("malformed_json", malformed_message(exc))


def malformed_message(exc: Exception) -> str:
    """The message of a `malformed_json` error for what msgspec (or UTF-8 decoding) raised:
    `Malformed JSON: trailing characters (byte 112)`, `Malformed JSON: not UTF-8`."""
    if isinstance(exc, UnicodeDecodeError):
        return "Malformed JSON: not UTF-8"
    # msgspec starts with "JSON is malformed: ", which after ours read "Malformed JSON: JSON
    # is malformed: trailing characters (byte 112)".
    return f"Malformed JSON: {str(exc).removeprefix('JSON is malformed: ')}"


def why_not_json(data: bytes) -> str | None:
    """Ingest's `malformed_json` message for `data`, or None when ingest reads it as JSON.
    For another parser's refusal (the labels API's) to be said in ingest's words."""
    # Ingest's own decoders: where msgspec says it broke depends on what it was reading for.
    decoder = _raw_list if data.lstrip().startswith(b"[") else _members
    try:
        data.decode()
        decoder.decode(data)
    except msgspec.ValidationError:
        return None  # JSON, only not an array or an object: not a `malformed_json`
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        return malformed_message(exc)
    return None


def _has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= char <= "\udfff" for char in value)
    if isinstance(value, list | tuple):
        return any(_has_surrogate(item) for item in value)
    return False


def _type_error(exc: msgspec.ValidationError) -> FieldError:
    text = str(exc)
    match = _PATH.search(text)
    field = match.group(1) if match else None
    if field == "timestamp":
        return FieldError("invalid_field", _TIMESTAMP_FORMAT, field)
    if match is None:
        return FieldError("invalid_field", text)
    detail = text[: match.start()]
    kinds = _TYPE_MISMATCH.fullmatch(detail)
    if kinds is None:
        return FieldError("invalid_field", f"'{field}': {detail[:1].lower()}{detail[1:]}", field)
    # msgspec names Python's types (`float | null`, `str`); the sender wrote JSON.
    expected = " or ".join(_JSON_KIND.get(k, k) for k in kinds.group(1).split(" | "))
    got = _JSON_KIND.get(kinds.group(2), kinds.group(2))
    return FieldError("invalid_field", f"'{field}' must be {expected}, not {got}", field)


def _check_text(tx: Transaction) -> None:
    joined = (
        f"{tx.id}{tx.account_id}{tx.merchant_id}{tx.currency}{tx.country or ''}"
        f"{tx.merchant_name or ''}{tx.mcc or ''}{tx.channel or ''}{tx.device_id or ''}{tx.ip or ''}"
    )
    # One pass clears the usual record: isprintable() is false for everything _BAD_TEXT
    # refuses (and for a few harmless characters, like a no-break space), and when all the
    # text together fits the shortest limit, so does every field.
    if (
        len(joined) <= MAX_ID_LENGTH
        and joined.isprintable()
        and tx.id.strip()
        and tx.account_id.strip()
        and tx.merchant_id.strip()
    ):
        return
    for name in _ID_FIELDS:
        value: str = getattr(tx, name)
        if not value.strip():
            raise _invalid("invalid_field", f"'{name}' must not be empty", name)
        if len(value) > MAX_ID_LENGTH:
            raise _invalid("too_long", f"'{name}' is longer than {MAX_ID_LENGTH} characters", name)
    for name in _TEXT_FIELDS:
        text: str | None = getattr(tx, name)
        if text is not None and len(text) > MAX_TEXT_LENGTH:
            raise _invalid(
                "too_long", f"'{name}' is longer than {MAX_TEXT_LENGTH} characters", name
            )
    for name in (*_ID_FIELDS, "currency", "country", *_TEXT_FIELDS):
        problem = text_problem(name, getattr(tx, name))
        if problem is not None:
            raise _invalid("invalid_text", problem, name)


def text_problem(name: str, value: str | None) -> str | None:
    """Why `value` is refused as text shown to analysts (control, bidi and surrogate
    characters), or None."""
    if value and (bad := _BAD_TEXT.search(value)):
        return (
            f"'{name}' contains U+{ord(bad.group()):04X}: control, bidi and surrogate "
            "characters are not allowed"
        )
    return None


NO_CLOCK = dt.datetime(9000, 1, 1, tzinfo=dt.UTC)
"""`now` for validating offline, where there is no "now" a timestamp could be ahead of:
history may be replayed years later, and a synthetic stream may lie in the future."""


def _check_timestamp(timestamp: dt.datetime, now: dt.datetime | None) -> None:
    tz = timestamp.tzinfo
    # msgspec gives a fixed-offset dt.timezone, whose offset is never None; other tzinfos
    # (records built in code) are asked.
    if tz is None or (type(tz) is not dt.timezone and timestamp.utcoffset() is None):
        raise _invalid("invalid_field", _TIMESTAMP_FORMAT, "timestamp")
    if (wrong := out_of_range("timestamp", timestamp)) is not None:
        raise _invalid("invalid_field", wrong, "timestamp")
    if now is NO_CLOCK:
        return
    if now is None:
        now = dt.datetime.now(dt.UTC)
    ahead = too_far_ahead("timestamp", timestamp, now)
    if ahead is not None:
        raise _invalid("invalid_field", f"{ahead}; check the sender's clock", "timestamp")


def out_of_range(name: str, at: dt.datetime) -> str | None:
    """Why `name` = `at` is refused for its year, if it is 0001 or 9999: its moment may lie
    outside what a datetime holds once read in UTC or in another zone (a label's time, a
    backtest's days), where 0001-01-01T00:00:00+01:00 failed with OverflowError."""
    if 1 < at.year < 9999:
        return None
    return f"'{name}': the year {at.year:04d} is out of range; send one from 0002 to 9998"


def too_far_ahead(name: str, at: dt.datetime, now: dt.datetime) -> str | None:
    """Why `name` = `at` is refused, if it is more than MAX_FUTURE_SKEW ahead of `now`."""
    if at <= now + MAX_FUTURE_SKEW:
        return None
    minutes = int(MAX_FUTURE_SKEW.total_seconds() // 60)
    return (
        f"'{name}' is more than {minutes} minutes ahead of the server clock "
        f"({now.isoformat(timespec='seconds')})"
    )


def _check_amount(amount: Decimal, currency: str, units: int) -> None:
    if not amount.is_finite():
        raise _invalid("invalid_field", "'amount' must be a finite number", "amount")
    # Zero is a real amount: zero-value authorizations verify a card (and card testers use
    # them), and exported datasets hold such rows. A sign, even on zero, is refused.
    if amount.is_signed():
        raise _invalid("invalid_field", "'amount' must be >= 0", "amount")
    if amount >= MAX_AMOUNT:
        raise _invalid("invalid_field", f"'amount' must be less than {MAX_AMOUNT}", "amount")
    # The value must fit the unit; trailing zeros do not count (1200.0 JPY is fine).
    if amount != AMOUNT_CONTEXT.quantize(amount, QUANTA[units]):
        raise _invalid(
            "invalid_field",
            f"'amount' has more decimal places than {currency} allows ({units})",
            "amount",
        )
    # Only a zero can get here with its exponent this low: any other value of that many
    # places has more decimals than a currency allows. A short text (0e-999999999) that
    # writes out long would fail its whole batch's commit, after a gigabyte of zeros.
    if amount.adjusted() < -MAX_ZERO_DECIMALS:
        raise _invalid(
            "invalid_field",
            f"'amount' is 0 written with {-amount.adjusted():,} decimal places; at most "
            f"{MAX_ZERO_DECIMALS} are taken",
            "amount",
        )


# Codes already seen to be well formed, so that the usual record skips the regexes. Bounded:
# past the cap a new code is checked each time, never trusted unchecked. (Replay's reader of
# the usual CSV row, `replay_source.compile_fast_row`, trusts only these too.)
_KNOWN_CODES_MAX = 1024
KNOWN_CURRENCIES: dict[str, int] = {}
"""Currency codes seen well formed, and their minor units."""
KNOWN_COUNTRIES: set[str] = set()
"""Country codes seen well formed."""


def _units(currency: str) -> int:
    """The currency's minor units; raises if it is not an ISO 4217-shaped code."""
    units = KNOWN_CURRENCIES.get(currency)
    if units is None:
        if not _CURRENCY.match(currency):
            raise _invalid(
                "invalid_field", "'currency' must be an ISO 4217 code like USD", "currency"
            )
        units = MINOR_UNITS.get(currency, DEFAULT_MINOR_UNITS)
        if len(KNOWN_CURRENCIES) < _KNOWN_CODES_MAX:
            KNOWN_CURRENCIES[currency] = units
    return units


def is_currency_code(code: str) -> bool:
    """Whether `code` has the form of an ISO 4217 code (USD), as a transaction's must: for
    the settings that give one to transactions without (`default_currency`, `--currency`)."""
    return _CURRENCY.fullmatch(code) is not None


def round_amount(amount: Decimal, currency: str) -> Decimal:
    """`amount` rounded half-even to the currency's minor units (for files exported through
    float, like 57.950001; the ingest API refuses such amounts instead)."""
    if not amount.is_finite():
        return amount
    units = MINOR_UNITS.get(currency, DEFAULT_MINOR_UNITS)
    return amount.quantize(QUANTA[units], rounding=decimal.ROUND_HALF_EVEN, context=AMOUNT_CONTEXT)


def _check(tx: Transaction, default_currency: str, now: dt.datetime | None) -> Transaction:
    _check_text(tx)
    _check_timestamp(tx.timestamp, now)
    if not tx.currency:
        tx.currency = default_currency
        units = MINOR_UNITS.get(default_currency, DEFAULT_MINOR_UNITS)
    else:
        units = _units(tx.currency)
    _check_amount(tx.amount, tx.currency, units)
    country = tx.country
    if country is not None and country not in KNOWN_COUNTRIES:
        if not _COUNTRY.match(country):
            raise _invalid("invalid_field", "'country' must be an ISO 3166 alpha-2 code", "country")
        if len(KNOWN_COUNTRIES) < _KNOWN_CODES_MAX:
            KNOWN_COUNTRIES.add(country)
    if tx.lat is not None and not -90.0 <= tx.lat <= 90.0:
        raise _invalid("invalid_field", "'lat' must be in [-90, 90]", "lat")
    if tx.lon is not None and not -180.0 <= tx.lon <= 180.0:
        raise _invalid("invalid_field", "'lon' must be in [-180, 180]", "lon")
    return tx


def parse_transaction(
    raw: bytes | str | msgspec.Raw,
    default_currency: str = "USD",
    *,
    now: dt.datetime | None = None,
) -> Transaction:
    """Decode and validate one JSON object; raise InvalidTransaction with the field at fault.

    Extra fields are ignored and never stored. `now` (default: the wall clock) is what the
    timestamp may not be more than MAX_FUTURE_SKEW ahead of; pass it once for a whole batch.
    """
    if isinstance(raw, str):
        data = raw.encode("utf-8", "surrogatepass")
    else:
        data = raw if isinstance(raw, bytes) else bytes(raw)
    return _check(_decode(data), default_currency, now)


def validate_transaction(
    tx: Transaction, default_currency: str = "USD", *, now: dt.datetime | None = None
) -> Transaction:
    """Validate a Transaction built in code (simulator, replay) the same way as parsed input.
    `now`: the clock a timestamp may not be ahead of (None: this machine's; NO_CLOCK: none)."""
    return _check(tx, default_currency, now)


def split_array(body: bytes) -> list[bytes | msgspec.Raw]:
    """The elements of a JSON array, undecoded, so that each can be refused on its own.

    Raises InvalidTransaction (`malformed_json`, `too_deep`) when the array cannot be split.
    """
    try:
        return list(_raw_list.decode(body))
    except RecursionError:
        raise _invalid("too_deep", f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except msgspec.DecodeError as exc:
        error = _invalid("malformed_json", malformed_message(exc))
    # msgspec will not even skip a lone surrogate escape. Mask every surrogate escape with one
    # of the same length, split that, and cut the same spans out of the real body: the record
    # holding it is then refused on its own, naming its field.
    masked = _SURROGATE_ESCAPE.sub(rb"\\ufffd", body)
    if masked == body:
        raise error
    try:
        parts = _raw_list.decode(masked)
    except (msgspec.DecodeError, RecursionError):
        raise error from None
    records: list[bytes | msgspec.Raw] = []
    pos = 0
    for part in parts:
        # Between two elements there are only a comma and blanks: the first match is the one.
        text = bytes(part)
        start = masked.index(text, pos)
        pos = start + len(text)
        records.append(body[start:pos])
    return records


def encode_transaction(tx: Transaction) -> bytes:
    """JSON with the amount as an exact number (never through float)."""
    return _encoder.encode(tx)


def same_transaction(tx: Transaction, other: Transaction | bytes) -> bool:
    """Whether `other` (a transaction, or its JSON as stored) is the same payment as `tx`:
    equal field by field, amounts by value (25 and "25.00" agree) and timestamps by instant
    and offset (the local hour is a feature)."""
    if isinstance(other, bytes):
        if encode_transaction(tx) == other:
            return True
        try:
            other = Transaction(**msgspec.structs.asdict(_lenient.decode(other)))
        except msgspec.DecodeError:
            return False
    return other == tx and other.timestamp.utcoffset() == tx.timestamp.utcoffset()


def id_conflict(tx_id: str) -> FieldError:
    """The answer for a transaction reusing the id of a different one (HTTP 409)."""
    return FieldError(
        "id_conflict",
        f"Id '{tx_id}' belongs to a different transaction, which is kept; use a new id",
        "id",
    )


def stored_row_damaged(tx_id: str) -> FieldError:
    """The answer for a re-sent id whose stored row cannot be read back (HTTP 500): its
    first verdict cannot be given out, and it is never scored again. Retrying cannot help."""
    return FieldError(
        "stored_row_damaged",
        f"Transaction '{tx_id}' is already stored, but its stored row cannot be read back: "
        "it is not scored again, and its stored verdict stays its only one. Re-sending it "
        "will not help; the server's log names the damage for its operator to look at",
        "id",
    )
