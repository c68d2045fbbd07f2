"""The transaction model and its validation: the one shape every feed produces."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal

import msgspec

MAX_ID_LENGTH = 128
MAX_TEXT_LENGTH = 256
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


class Transaction(msgspec.Struct, omit_defaults=True, kw_only=True):
    """A payment as a feed delivers it; `currency` is filled from settings when absent."""

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


@dataclass(frozen=True, slots=True)
class FieldError:
    """Why one input record was refused: machine code, human message, offending field."""

    code: str
    message: str
    field: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"code": self.code, "message": self.message, "field": self.field}


class InvalidTransaction(Exception):
    def __init__(self, error: FieldError) -> None:
        super().__init__(error.message)
        self.error = error


_decoder = msgspec.json.Decoder(Transaction)
_encoder = msgspec.json.Encoder(decimal_format="number")
_PATH = re.compile(r" - at `\$\.?([^`]*)`$")


def _from_msgspec(exc: msgspec.DecodeError) -> FieldError:
    text = str(exc)
    if not isinstance(exc, msgspec.ValidationError):
        return FieldError("malformed_json", f"Malformed JSON: {text}")
    match = _PATH.search(text)
    field = match.group(1) if match else None
    message = text[: match.start()] if match else text
    if message.startswith("Object missing required field"):
        missing = message.split("`")[1]
        return FieldError("missing_field", f"Field '{missing}' is required", missing)
    return FieldError(
        "invalid_field", f"{message}" + (f" (field '{field}')" if field else ""), field
    )


def _check(tx: Transaction, default_currency: str) -> Transaction:
    for name in ("id", "account_id", "merchant_id"):
        value = getattr(tx, name)
        if not value or not value.strip():
            raise InvalidTransaction(
                FieldError("invalid_field", f"'{name}' must not be empty", name)
            )
        if len(value) > MAX_ID_LENGTH:
            raise InvalidTransaction(
                FieldError("too_long", f"'{name}' is longer than {MAX_ID_LENGTH} characters", name)
            )
    if tx.timestamp.tzinfo is None:
        raise InvalidTransaction(
            FieldError(
                "invalid_field",
                "'timestamp' must be RFC 3339 with an offset, e.g. 2026-01-31T12:00:00Z",
                "timestamp",
            )
        )
    if not tx.amount.is_finite() or tx.amount <= 0:
        raise InvalidTransaction(FieldError("invalid_field", "'amount' must be > 0", "amount"))
    if not tx.currency:
        tx.currency = default_currency
    elif not _CURRENCY.match(tx.currency):
        raise InvalidTransaction(
            FieldError("invalid_field", "'currency' must be an ISO 4217 code like USD", "currency")
        )
    if tx.country is not None and not _COUNTRY.match(tx.country):
        raise InvalidTransaction(
            FieldError("invalid_field", "'country' must be an ISO 3166 alpha-2 code", "country")
        )
    if tx.lat is not None and not -90.0 <= tx.lat <= 90.0:
        raise InvalidTransaction(FieldError("invalid_field", "'lat' must be in [-90, 90]", "lat"))
    if tx.lon is not None and not -180.0 <= tx.lon <= 180.0:
        raise InvalidTransaction(FieldError("invalid_field", "'lon' must be in [-180, 180]", "lon"))
    for name in ("merchant_name", "mcc", "channel", "device_id", "ip"):
        value = getattr(tx, name)
        if value is not None and len(value) > MAX_TEXT_LENGTH:
            raise InvalidTransaction(
                FieldError(
                    "too_long", f"'{name}' is longer than {MAX_TEXT_LENGTH} characters", name
                )
            )
    return tx


def parse_transaction(raw: bytes | str, default_currency: str = "USD") -> Transaction:
    """Decode and validate one JSON object; raise InvalidTransaction with the field at fault."""
    try:
        tx = _decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise InvalidTransaction(_from_msgspec(exc)) from None
    return _check(tx, default_currency)


def validate_transaction(tx: Transaction, default_currency: str = "USD") -> Transaction:
    """Validate a Transaction built in code (simulator, replay) the same way as parsed input."""
    return _check(tx, default_currency)


def encode_transaction(tx: Transaction) -> bytes:
    """JSON with the amount as an exact number (never through float)."""
    return _encoder.encode(tx)
