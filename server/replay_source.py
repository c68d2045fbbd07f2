"""Reading a CSV or NDJSON file (optionally gzipped) into validated transactions."""

from __future__ import annotations

import argparse
import codecs
import csv
import datetime as dt
import gzip
import io
import os
import re
import zlib
import zoneinfo
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import count, islice
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple

import msgspec

from server import wording
from server.transactions import (
    AMOUNT_CONTEXT,
    DEFAULT_MINOR_UNITS,
    KNOWN_COUNTRIES,
    KNOWN_CURRENCIES,
    MAX_AMOUNT,
    MAX_ID_LENGTH,
    MINOR_UNITS,
    NO_CLOCK,
    QUANTA,
    InvalidTransaction,
    Transaction,
    is_currency_code,
    missing_moment,
    round_amount,
    validate_transaction,
)
from server.wording import counted

FIELDS: tuple[str, ...] = Transaction.__struct_fields__
CHUNK_ROWS = 1000
REQUIRED = ("timestamp", "account_id", "merchant_id", "amount")
ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("transactionid", "txid", "txnid", "transid", "transnum", "tranid"),
    "timestamp": (
        "txdatetime", "transactiondatetime", "transdatetranstime", "datetime", "eventtime",
        "txtime", "transactiontime", "time",
    ),
    "account_id": (
        "customerid", "cardid", "accountid", "ccnum", "cardnumber", "customer", "card",
        "account", "userid", "clientid",
    ),
    "merchant_id": ("terminalid", "merchantid", "merchant", "terminal", "storeid"),
    "amount": ("txamount", "transactionamount", "transactionamt", "amt"),
}  # fmt: skip
"""Other names of the guaranteed fields, compared without case or punctuation (TX_AMOUNT is
"txamount"): a column is taken by one of them only where the field has no column of its
own name and no --map, never if it is the label, and the source's notes say so. Every
field's own name is compared so too, first: `Amount`, `ID`, `Device ID` are taken."""
Format = Literal["csv", "ndjson"]
TimeUnit = Literal["auto", "s", "ms", "us", "ns", "h", "d"]
TIME_UNITS: tuple[TimeUnit, ...] = ("auto", "s", "ms", "us", "ns", "h", "d")
_NDJSON_SUFFIXES = {".ndjson", ".jsonl", ".json"}
_OFFSET = re.compile(r"^([+-])(\d{2}):?(\d{2})$")
_TRUE = frozenset({"1", "1.0", "true", "t", "yes", "y", "fraud"})
_FALSE = frozenset({"0", "0.0", "false", "f", "no", "n", "legit", "legitimate"})
# JSON numbers as Decimal: an amount must never pass through float.
_json_object = msgspec.json.Decoder(dict[str, Any], float_hook=Decimal)


class SourceError(Exception):
    """The file or the flags cannot be used at all (as opposed to one bad row)."""


def cannot_read(path: Path, exc: OSError) -> OSError:
    """The OSError to raise for `path` failing to open: its message, `cannot read PATH:
    WHY` (server/wording.py), is the command line's error (an OSError still: the exit
    status stays 1)."""
    return OSError(wording.cannot_read(path, exc))


@dataclass(frozen=True, slots=True)
class RowError:
    """One input row that could not become a transaction, and why."""

    line: int
    message: str
    field: str | None = None

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class RowErrors:
    """Refused rows: all counted, the first few kept with their line numbers."""

    def __init__(self, keep: int = 10) -> None:
        self.count = 0
        self.first: list[RowError] = []
        self._keep = keep
        # Rows kept but changed on the way in (Source.notes()), shown after the refusals.
        self.notes: list[str] = []

    def add(self, error: RowError) -> None:
        self.count += 1
        if len(self.first) < self._keep:
            self.first.append(error)

    def lines(self, what: str = "invalid row", plural: str | None = None) -> list[str]:
        """`what`: what one refused row is called (`plural`: two, if not `what` + s)."""
        if not self.count:
            return list(self.notes)
        shown = ", first " + str(len(self.first)) if self.count > len(self.first) else ""
        return [
            f"{counted(self.count, what, plural)} (skipped{shown}):",
            *(f"  {e}" for e in self.first),
            *self.notes,
        ]


class Row(NamedTuple):
    """One valid transaction, where it came from, and its label (None: not given)."""

    line: int
    transaction: Transaction
    label: bool | None = None


def partition(chunk: list[Row | RowError]) -> tuple[list[Row], list[RowError]]:
    """A chunk's valid rows and its refused ones, each in line order: the chunk itself and
    none, usually (looking for a refused one is a C loop, ~10 times cheaper than sorting)."""
    if RowError not in map(type, chunk):
        return chunk, []  # type: ignore[return-value]  # all Rows
    rows: list[Row] = []
    errors: list[RowError] = []
    for item in chunk:
        if isinstance(item, Row):
            rows.append(item)
        else:
            errors.append(item)
    return rows, errors


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceOptions:
    mapping: Mapping[str, str]
    label: str | None = None
    timezone: dt.tzinfo = dt.UTC
    time_unit: TimeUnit = "auto"
    default_currency: str = "USD"
    delimiter: str = ","
    format: Format | None = None
    # Round amounts with more decimals than their currency allows (57.950001 from a float
    # export) instead of refusing the row.
    round_amounts: bool = True


# --- flags shared by `replay` and `backtest` -------------------------------------------------


FILE_HELP = (
    "FILE needs columns (in NDJSON, keys) for timestamp, account_id, merchant_id and amount "
    "(and id, else ids are row numbers), in any case or punctuation (Amount, Account ID) or "
    "by a common other name (TX_AMOUNT, amt, customer_id, ...), or given with --map. Columns "
    "named like another field (currency, country, mcc, channel, device_id, ip, lat, lon) are "
    "read too; the rest are ignored. Timestamps: RFC 3339 (2026-03-02T09:00:00Z), "
    "'YYYY-MM-DD HH:MM:SS' in --timezone, or Unix time (--time-unit); a date alone is "
    "refused. Amounts: decimal numbers (1234.50), no currency sign or thousands separators. "
    "Rows that cannot be read are skipped and listed with their line."
)
"""What an outsider's file must hold, for the `--help` of `replay` and `backtest`."""


def add_source_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, metavar="FILE", help="CSV or NDJSON, optionally .gz")
    parser.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="FIELD=COLUMN",
        help="read transaction FIELD from COLUMN (repeatable); columns named like a field are "
        "taken as they are, every other column is ignored",
    )
    parser.add_argument(
        "--timezone",
        default="UTC",
        help="zone of naive timestamps ('YYYY-MM-DD HH:MM:SS') and of calendar days: "
        "UTC, an offset like +02:00, or an IANA name (default UTC)",
    )
    parser.add_argument(
        "--time-unit",
        choices=TIME_UNITS,
        default="auto",
        help="unit of numeric timestamps, Unix time from 1970-01-01 UTC (h or d for a "
        "count of hours or days, as PaySim's 'step'); default 'auto': seconds below 1e11, "
        "milliseconds below 1e14, microseconds below 1e17, else nanoseconds",
    )
    parser.add_argument(
        "--format",
        choices=["csv", "ndjson"],
        help="default: from the file name (.csv; .ndjson, .jsonl, .json), else from its content",
    )
    parser.add_argument(
        "--delimiter", default=",", help="CSV delimiter (default ','; tab or \\t for a tab)"
    )
    parser.add_argument(
        "--currency", default="USD", help="currency of rows without one (default USD)"
    )
    parser.add_argument(
        "--exact-amounts",
        action="store_true",
        help="refuse rows whose amount has more decimals than its currency allows; by "
        "default such amounts (float exports like 57.950001) are rounded half-even and counted",
    )
    parser.add_argument(
        "--parallel",
        choices=("auto", "on", "off"),
        default="auto",
        help="'on': read and validate the file (and, in a backtest, compute the features) in "
        "a second process while this one scores; 'off': all in this process; default "
        "'auto': on for files of 4 MB and more on a machine with several cores",
    )


def parse_mapping(pairs: Sequence[str]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for pair in pairs:
        field, sep, column = pair.partition("=")
        field, column = field.strip(), column.strip()
        if not sep or not field or not column:
            raise SourceError(f"--map takes FIELD=COLUMN, got {pair!r}")
        if field not in FIELDS:
            raise SourceError(
                f"--map {pair}: {field!r} is not a transaction field; fields: {', '.join(FIELDS)}"
            )
        if field in mapping:
            raise SourceError(f"--map {field} is given twice")
        mapping[field] = column
    return mapping


def parse_timezone(name: str) -> dt.tzinfo:
    if name.upper() in ("UTC", "Z"):
        return dt.UTC
    match = _OFFSET.match(name)
    if match:
        sign, hours, minutes = match.groups()
        offset = dt.timedelta(hours=int(hours), minutes=int(minutes))
        return dt.timezone(-offset if sign == "-" else offset)
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise SourceError(
            f"--timezone {name!r} is not UTC, an offset like +02:00, or a known zone name"
        ) from None


_TAB_NAMES = ("\\t", "tab", "TAB")
"""What --delimiter takes for a tab besides the character itself, which a shell makes
hard to type (`--delimiter $'\\t'` in bash)."""
_OTHER_DELIMITERS = ";\t|"


def source_options(args: argparse.Namespace, label: str | None = None) -> SourceOptions:
    delimiter = "\t" if args.delimiter in _TAB_NAMES else args.delimiter
    if len(delimiter) != 1:
        raise SourceError(f"--delimiter must be one character or tab, got {delimiter!r}")
    if not is_currency_code(args.currency):
        # Every row without a currency gets it, and would be refused (or scored) with it.
        raise SourceError(f"--currency must be an ISO 4217 code like USD, got {args.currency!r}")
    return SourceOptions(
        mapping=parse_mapping(args.map),
        label=label,
        timezone=parse_timezone(args.timezone),
        time_unit=args.time_unit,
        default_currency=args.currency,
        delimiter=delimiter,
        format=args.format,
        round_amounts=not args.exact_amounts,
    )


# --- cell conversion ----------------------------------------------------------------------------


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ValueError("expected text")
    return str(value)


def _amount(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise ValueError("expected a decimal number")
    return Decimal(value)


def _coordinate(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise ValueError("expected a number")
    return float(value)


_MICROSECONDS: dict[str, Decimal] = {
    "s": Decimal(10**6), "ms": Decimal(10**3), "us": Decimal(1), "ns": Decimal("0.001"),
    "h": Decimal(3_600 * 10**6), "d": Decimal(86_400 * 10**6),
}  # fmt: skip
_AUTO_UNITS = ((10**11, "s"), (10**14, "ms"), (10**17, "us"))
"""`--time-unit auto`: a number below 1e11 is seconds (1e11 s is the year 5138), below 1e14
milliseconds, below 1e17 microseconds, and from there nanoseconds."""
_NUMBER = re.compile(r"\d+(?:\.\d*)?")
_A_YEAR_S = 365 * 86_400
"""`--time-unit auto`: if no number it reads as seconds reaches a year past 1970-01-01, the
column is more likely a count from the file's start (PaySim's and BankSim's `step`, in hours
or days) than Unix time: the summary says so (`Source.notes`)."""
_UNIT_NAMES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds",
               "h": "hours", "d": "days"}  # fmt: skip
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _normal(name: str) -> str:
    """A column's name as ALIASES compares it: lower case, letters and digits only."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


_HANDLERS = count()
"""Numbers for each `Source`'s decoding error handler (`Source._replacing`)."""


LISTED_CHARS = 300
"""An error lists a header's columns up to about this many characters."""


def listed(columns: Sequence[str]) -> str:
    """A header's columns for an error message: a character that is not printable escaped
    (a binary file's first line would otherwise write control codes to the terminal), and
    the list cut at about LISTED_CHARS, saying how many columns there are."""
    shown: list[str] = []
    size = 0
    for name in columns:
        text = name if name.isprintable() else name.encode("unicode_escape").decode("ascii")
        if size + len(text) > LISTED_CHARS:
            count = f"{len(columns):,} column{'s' if len(columns) > 1 else ''}"
            if not shown:
                return f"{text[:LISTED_CHARS]}… ({count})"
            return f"{', '.join(shown)}, … ({count})"
        shown.append(text)
        size += len(text) + 2
    return ", ".join(shown)


class NoSuchMoment(ValueError):
    """A date-time in the right form for a date or time that does not exist: the row's
    error says which, as ingest's does, rather than only that it cannot be read."""


def auto_time_unit(number: Decimal) -> str:
    """The unit `--time-unit auto` reads a numeric timestamp in, by its size."""
    return next((unit for below, unit in _AUTO_UNITS if number < below), "ns")


def timestamp_parser(
    tz: dt.tzinfo, unit: TimeUnit = "auto", seen: dict[str, str] | None = None
) -> Callable[[Any], dt.datetime]:
    """RFC 3339 with an offset; a naive 'YYYY-MM-DD HH:MM:SS' is taken to be in `tz`; a
    number (a CSV cell of digits, a JSON number) is Unix time in `unit` (`auto_time_unit`).
    The first number's unit is recorded in `seen["unit"]`, for the summary's notes, and with
    `auto`, `seen["past_1970"]` once a number reaches a year of seconds (`_A_YEAR_S`)."""
    fromisoformat = dt.datetime.fromisoformat
    record = {} if seen is None else seen
    auto = unit == "auto"

    def parse(value: Any) -> dt.datetime:
        # Date and time both, so that a date-only column cannot pass as midnight.
        if isinstance(value, str) and len(value) >= 19 and value[10] in "Tt ":
            try:
                moment = fromisoformat(value)
            except ValueError:
                reason = missing_moment("timestamp", value)
                if reason is None:
                    raise
                raise NoSuchMoment(reason) from None
            return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)
        if isinstance(value, str):
            if not _NUMBER.fullmatch(value):
                raise ValueError("expected RFC 3339, 'YYYY-MM-DD HH:MM:SS' or Unix time")
        elif isinstance(value, bool) or not isinstance(value, int | Decimal) or value < 0:
            raise ValueError("expected RFC 3339, 'YYYY-MM-DD HH:MM:SS' or Unix time")
        number = Decimal(value)
        used = auto_time_unit(number) if auto else unit
        record.setdefault("unit", used)
        if auto and number >= _A_YEAR_S and "past_1970" not in record:
            record["past_1970"] = "yes"
        # OverflowError (an ArithmeticError) past the year 9999: the row is refused.
        return _EPOCH + dt.timedelta(microseconds=int(number * _MICROSECONDS[used]))

    return parse


# CSV cells are text already: only these need converting. JSON values may be numbers too.
_CSV_CONVERT: dict[str, Callable[[str], Any]] = {"amount": Decimal, "lat": float, "lon": float}
_JSON_CONVERT: dict[str, Callable[[Any], Any]] = {
    **dict.fromkeys(FIELDS, _text),
    "amount": _amount,
    "lat": _coordinate,
    "lon": _coordinate,
}


_EXPECTED = {
    "timestamp": "an RFC 3339 date-time (2026-03-02T09:00:00Z), 'YYYY-MM-DD HH:MM:SS' or Unix "
    "time; a date alone is not taken",
    "amount": "a decimal number such as 1234.50, without a currency sign or thousands separators",
    "lat": "a decimal number of degrees",
    "lon": "a decimal number of degrees",
}


def unreadable(field: str, value: Any) -> str:
    """A cell that cannot be converted for `field`: its value, and what the field takes."""
    return f"'{field}': cannot read {value!r}, expected {_EXPECTED.get(field, 'text')}"


def parse_label(value: Any) -> bool | None:
    """A label cell as fraud (True) / legitimate (False); None when empty or unreadable."""
    if value == "0":  # the usual cells first: this runs for every row
        return False
    if value == "1":
        return True
    if isinstance(value, bool):
        return value
    if isinstance(value, int | Decimal):
        return bool(value) if value in (0, 1) else None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        if _NUMBER.fullmatch(text) and (number := Decimal(text)) in (0, 1):
            return bool(number)  # 1.00, 0.000: a spreadsheet's or a float column's export
    return None


# --- the usual CSV row, converted without the general path ---------------------------------------

FastRow = Callable[[list[str], int, int], "Row | None"]
"""(cells, line number, rows read so far) -> the row's `Row`, or None: not a usual row, for
`Source._csv`'s general path to read (and refuse, or round, or note) as always."""

_TEXT_COLUMNS = ("merchant_name", "mcc", "channel", "device_id", "ip")
_new_tuple = tuple.__new__


def compile_fast_row(
    plan: Sequence[tuple[str, int]],
    width: int,
    label_at: int,
    default_currency: str,
    timezone: dt.tzinfo,
    parse_time: Callable[[Any], dt.datetime],
) -> FastRow:
    """One function for a CSV header's columns that turns the usual row (every cell of the
    required fields there and printable, an RFC 3339 or naive date-time, an amount that fits
    its currency, a currency and a country already seen valid, coordinates in range, a label
    of 0, 1 or nothing) straight into its `Row`: the cells at fixed indices, the conversions
    and checks of `_build` and `validate_transaction` written out, in Python code compiled
    once per file. The general path alone (a dict of the cells, the conversions in a loop,
    `Transaction(**values)`, then `validate_transaction`) cost the backtest's reader ~20,700
    more instructions a row (docs/backtest.md#throughput-and-memory). Any other row gives
    None, having changed nothing, and the general path reads it: the errors, the rounding
    and the notes are that path's alone. Only integers and field names (identifiers of
    `FIELDS`) are written into the code; everything else is the function's globals."""
    at = dict(plan)
    if not set(at) <= set(FIELDS) or not all(type(i) is int for i in at.values()):
        raise ValueError(f"bad plan {plan!r}")  # never: `_plan` makes it
    namespace: dict[str, Any] = {
        "Transaction": Transaction,
        "Row": Row,
        "new": _new_tuple,
        "Decimal": Decimal,
        "fromiso": dt.datetime.fromisoformat,
        "parse_time": parse_time,
        "TZ": timezone,
        "timezone": dt.timezone,
        "MAX_AMOUNT": MAX_AMOUNT,
        "MAX_ID": MAX_ID_LENGTH,
        "quantize": AMOUNT_CONTEXT.quantize,
        "QUANTA": QUANTA,
        "currency_units": KNOWN_CURRENCIES,
        "countries": KNOWN_COUNTRIES,
        "DEFAULT": default_currency,
        "DEFAULT_QUANTUM": QUANTA[MINOR_UNITS.get(default_currency, DEFAULT_MINOR_UNITS)],
    }

    # The cells, unpacked (a row of another width is not usual); a column read as two
    # fields is unpacked as the first, and the second is given its value.
    names: list[list[str]] = [[] for _ in range(width)]
    for field in FIELDS:
        if field in at:
            names[at[field]].append(field)
    if label_at >= 0:
        names[label_at].append("label")
    targets = ", ".join(column[0] if column else "_" for column in names)
    lines = [
        "def fast_row(c, line, n):",
        "    try:",
        f"        {targets}, = c",
        "    except ValueError:",
        "        return None",
        *(f"    {other} = {column[0]}" for column in names for other in column[1:]),
        # `_build`: the id defaults to the data row number (an empty id cell is not usual).
        *(["    id = str(n)"] if "id" not in at else []),
        *(
            f"    {name} = ''"
            for name in ("currency", "country", "lat", "lon", *_TEXT_COLUMNS)
            if name not in at
        ),
        # `_check_text`'s first test, on the text as given (before the default currency).
        "    joined = f'{id}{account_id}{merchant_id}{currency}{country}"
        + "".join(f"{{{name}}}" for name in _TEXT_COLUMNS)
        + "'",
        "    if not (len(joined) <= MAX_ID and joined.isprintable() and id.strip()",
        "            and account_id.strip() and merchant_id.strip()):",
        "        return None",
        "    if currency:",
        "        units = currency_units.get(currency)",
        "        if units is None:",
        "            return None",
        "        quantum = QUANTA[units]",
        "    else:",
        "        currency = DEFAULT",
        "        quantum = DEFAULT_QUANTUM",
        "    if country and country not in countries:",
        "        return None",
        "    try:",
        # `timestamp_parser`'s date-time, inline; anything else through it.
        "        if len(timestamp) >= 19 and timestamp[10] in 'Tt ':",
        "            timestamp = fromiso(timestamp)",
        "            if timestamp.tzinfo is None:",
        "                timestamp = timestamp.replace(tzinfo=TZ)",
        "        elif timestamp:",
        "            timestamp = parse_time(timestamp)",
        "        else:",
        "            return None",
        # `_check_amount`, with a minus sign (even -0) as `is_signed`; comparing NaN raises.
        "        if '-' in amount:",
        "            return None",
        "        amount = Decimal(amount)",
        "        if not (amount < MAX_AMOUNT and amount == quantize(amount, quantum)):",
        "            return None",
        "        lat = float(lat) if lat else None",
        "        lon = float(lon) if lon else None",
        "    except (ValueError, ArithmeticError):",
        "        return None",
        # `_check_timestamp`: an offset (a `timezone`'s, or another zone's for this time).
        "    if type(timestamp.tzinfo) is not timezone and timestamp.utcoffset() is None:",
        "        return None",
        "    if not 1 < timestamp.year < 9999:",  # `out_of_range`
        "        return None",
        "    if lat is not None and not -90.0 <= lat <= 90.0:",
        "        return None",
        "    if lon is not None and not -180.0 <= lon <= 180.0:",
        "        return None",
    ]
    if label_at >= 0:
        # `parse_label`'s usual cells; any other goes the general way, for its note.
        lines += [
            "    if label == '0':",
            "        label = False",
            "    elif label == '1':",
            "        label = True",
            "    elif label:",
            "        return None",
            "    else:",
            "        label = None",
        ]
    else:
        lines.append("    label = None")
    optional = ("country", *_TEXT_COLUMNS)
    args = ", ".join(
        f"{name}={name} or None" if name in optional else f"{name}={name}"
        for name in FIELDS
        if name in at or name in ("id", "currency")
    )
    lines += [
        f"    tx = Transaction({args})",
        "    return new(Row, (line, tx, label))",
    ]
    exec(compile("\n".join(lines), "<csv row>", "exec"), namespace)
    fast: FastRow = namespace["fast_row"]
    return fast


# --- the reader ---------------------------------------------------------------------------------


class Source:
    """Rows of one file as `Row` (valid) or `RowError` (counted by the caller, never raised).

    Only transaction fields reach a `Transaction`: mapped columns, then columns named like a
    field. The label column is read separately and may not also feed a field, so the detector
    can never see it. Ids default to the 1-based data row number.
    """

    def __init__(self, path: Path, options: SourceOptions) -> None:
        self.path = path
        self.options = options
        self.rows_read = 0
        self.amounts_rounded = 0
        # Label cells with a value that is no label (counted as unlabelled): how many, and
        # the first few distinct values, for the notes.
        self.labels_unread = 0
        self._unread_values: list[str] = []
        self._not_utf8 = [0]  # byte sequences read as U+FFFD (`_replacing`)
        self.by_alias: dict[str, str] = {}
        try:
            self._raw: io.BufferedReader = open(path, "rb")  # noqa: SIM115 (closed by close())
        except OSError as exc:
            raise cannot_read(path, exc) from None
        try:
            self._size = os.fstat(self._raw.fileno()).st_size
            gzipped = self._raw.peek(2)[:2] == b"\x1f\x8b"
            self._binary: io.BufferedReader | gzip.GzipFile = (
                gzip.GzipFile(fileobj=self._raw) if gzipped else self._raw
            )
            self.format: Format = options.format or self._guess_format()
            self._text = io.TextIOWrapper(
                self._binary, encoding="utf-8-sig", errors=self._replacing(), newline=""
            )
        except BaseException:
            self._raw.close()
            raise
        self._time_unit: dict[str, str] = {}
        parse_time = timestamp_parser(options.timezone, options.time_unit, self._time_unit)
        self._csv_conv = {**_CSV_CONVERT, "timestamp": parse_time}
        self._json_conv = {**_JSON_CONVERT, "timestamp": parse_time}

    def _replacing(self) -> str:
        """The name of a decoding error handler that reads what is not UTF-8 as U+FFFD, as
        "replace" does, and counts it for the notes: a Latin-1 export's Café and Cafè would
        both be Caf\ufffd, one merchant, without a word."""
        # The handler is registered for good: it holds a counter, not the source.
        counter = self._not_utf8

        def replace(exc: UnicodeError) -> tuple[str, int]:
            if not isinstance(exc, UnicodeDecodeError):
                raise exc
            counter[0] += 1
            return "\ufffd", exc.end

        name = f"fraudwatch.replay_source.{next(_HANDLERS)}"
        codecs.register_error(name, replace)
        return name

    def _guess_format(self) -> Format:
        suffixes = [s.lower() for s in self.path.suffixes]
        if suffixes and suffixes[-1] == ".gz":
            suffixes.pop()
        if suffixes and suffixes[-1] in _NDJSON_SUFFIXES:
            return "ndjson"
        if suffixes and suffixes[-1] in (".csv", ".tsv", ".txt"):
            return "csv"
        head = self._binary.peek(64)[:64]
        return "ndjson" if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") else "csv"

    def fraction_read(self) -> float:
        """How far through the file (compressed bytes for .gz), for progress and ETA."""
        if not self._size:
            return 1.0
        try:
            return min(1.0, self._raw.tell() / self._size)
        except ValueError:
            return 1.0  # closed: the reader reached the end

    def _rounded(self, tx: Transaction) -> Transaction | None:
        """`tx` with its amount rounded to the currency's minor units, if that changes it."""
        amount = tx.amount
        if not self.options.round_amounts or not amount.is_finite() or abs(amount) >= MAX_AMOUNT:
            return None
        rounded = round_amount(amount, tx.currency or self.options.default_currency)
        return None if rounded == amount else msgspec.structs.replace(tx, amount=rounded)

    def notes(self) -> list[str]:
        """What was read or changed on the way in, for the command's summary."""
        notes = []
        if self.by_alias:
            taken = ", ".join(f"{field}={column}" for field, column in self.by_alias.items())
            notes.append(f"columns taken by name: {taken} (--map FIELD=COLUMN to choose others)")
        if unit := self._time_unit.get("unit"):
            notes.append(
                f"numeric timestamps read as Unix time in {_UNIT_NAMES[unit]} (--time-unit)"
            )
            in_1970 = "past_1970" not in self._time_unit
            if unit == "s" and self.options.time_unit == "auto" and in_1970:
                notes.append(
                    "every numeric timestamp is within a year of 1970-01-01, as a count from "
                    "the file's start would be: if it counts hours or days (PaySim's or "
                    "BankSim's step), say so with --time-unit h or --time-unit d"
                )
        if self.labels_unread:
            values = self._unread_values
            is_are, was_were = ("is", "was") if self.labels_unread == 1 else ("are", "were")
            notes.append(
                f"{counted(self.labels_unread, 'label cell')} {is_are} not a label "
                f"({', '.join(values[:3])}{', …' if len(values) > 3 else ''}) and {was_were} "
                "read as unlabelled: labels are 1/0, true/false, yes/no or fraud/legit"
            )
        if not_utf8 := self._not_utf8[0]:
            notes.append(
                f"{counted(not_utf8, 'byte sequence')} of the file "
                f"{'is' if not_utf8 == 1 else 'are'} not UTF-8 and "
                f"{'was' if not_utf8 == 1 else 'were'} read as U+FFFD, so ids and names "
                "differing there run together: if the file is in another encoding, convert "
                "it first (iconv -f WINDOWS-1252 -t UTF-8 for a Latin-1 or Windows export)"
            )
        if self.amounts_rounded:
            notes.append(
                f"{counted(self.amounts_rounded, 'amount')} had more decimals than "
                + (
                    "its currency allows and was"
                    if self.amounts_rounded == 1
                    else "their currency allows and were"
                )
                + " rounded half-even (--exact-amounts refuses those rows instead)"
            )
        return notes

    def close(self) -> None:
        self._text.close()
        self._binary.close()
        self._raw.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Row | RowError]:
        rows = self._csv(self._text) if self.format == "csv" else self._ndjson(self._text)
        try:
            yield from rows
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise self._damaged(exc) from None

    def chunks(self, size: int = CHUNK_ROWS) -> Iterator[list[Row | RowError]]:
        """The same rows, `size` at a time.

        Parsing a thousand rows and then scoring them, rather than alternating row by row,
        keeps each loop's code and data in the CPU caches: measured 13-27 % less CPU for a
        read-and-score pass over 300,000 rows.
        """
        # The rows straight from the file's reader, not through `__iter__`'s generator too.
        rows = self._csv(self._text) if self.format == "csv" else self._ndjson(self._text)
        try:
            while chunk := list(islice(rows, size)):
                yield chunk
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise self._damaged(exc) from None

    def _damaged(self, exc: Exception) -> SourceError:
        # A cut-short or damaged gzip file: said like the other file errors, not a
        # traceback (what it holds after this point cannot be read).
        return SourceError(
            f"{self.path}: the compressed file is damaged or cut short, after "
            f"{self.rows_read:,} rows ({exc})"
        )

    def _by_alias(self, columns: Iterable[str]) -> dict[str, str]:
        """Columns taken for a field by its name in another case or punctuation, or for a
        guaranteed field by another of its names (ALIASES)."""
        mapping, names = self.options.mapping, set(columns)
        taken = {mapping.get(field, field) for field in FIELDS} | {self.options.label}
        normal: dict[str, str] = {}
        for name in columns:
            normal.setdefault(_normal(name), name)
        found: dict[str, str] = {}
        for field in FIELDS:
            if field in mapping or field in names:
                continue
            for alias in (_normal(field), *ALIASES.get(field, ())):
                column = normal.get(alias)
                if column is not None and column not in taken:
                    found[field] = column
                    taken.add(column)
                    break
        return found

    def _plan(self, columns: Sequence[str]) -> list[tuple[str, int]]:
        index = {name: i for i, name in enumerate(columns)}
        plan: list[tuple[str, int]] = []
        by_alias = self.by_alias = self._by_alias(columns)  # the notes say which
        for field in FIELDS:
            column = by_alias.get(field) or self.options.mapping.get(field, field)
            if column in index:
                plan.append((field, index[column]))
            elif field in self.options.mapping:
                raise SourceError(
                    f"--map {field}={column}: no column {column!r} in {self.path}; "
                    f"columns: {listed(columns)}"
                )
        missing = [f for f in REQUIRED if f not in dict(plan)]
        if missing:
            raise SourceError(
                f"{self.path} has no column for {', '.join(missing)}; columns: "
                f"{listed(columns)}; map one with --map FIELD=COLUMN"
                + self._delimiter_hint(columns)
            )
        label = self.options.label
        if label is not None and label not in index:
            raise SourceError(
                f"label column {label!r} is not in {self.path}; columns: {listed(columns)}"
            )
        read_as = {self.options.mapping.get(field, field): field for field in FIELDS}
        if label is not None and label in read_as:
            raise SourceError(
                f"label column {label!r} would also be read as field "
                f"{read_as[label]!r}: the detector must never see the label; "
                f"--map {read_as[label]}=<another column> or rename the column"
            )
        return plan

    def _delimiter_hint(self, columns: Sequence[str]) -> str:
        """For a header read as one column: the delimiter it seems to have, if another."""
        if self.format != "csv" or len(columns) != 1:
            return ""
        found = [d for d in _OTHER_DELIMITERS if d in columns[0] and d != self.options.delimiter]
        if not found:
            return ""
        flag = "--delimiter tab" if found[0] == "\t" else f"--delimiter '{found[0]}'"
        return (
            f"; the header is one column split at {self.options.delimiter!r}, and it holds "
            f"{found[0]!r}: if that is the file's delimiter, say so with {flag}"
        )

    def _csv(self, text: IO[str]) -> Iterator[Row | RowError]:
        delimiter = self.options.delimiter
        lines = iter(text)
        handed: list[str] = []  # the line for the csv module to read next

        def feed() -> str:
            return handed.pop() if handed else next(lines)

        # The csv module reads the header and every line with a quote (a record may go on
        # over the next lines, which it takes from the file itself), and counts them.
        reader = csv.reader(iter(feed, None), delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            return
        columns = [name.strip() for name in header]
        plan = self._plan(columns)
        label_at = columns.index(self.options.label) if self.options.label is not None else -1
        width = len(columns)
        general_row = self._csv_general(plan, label_at, width)
        fast_row = compile_fast_row(
            plan,
            width,
            label_at,
            self.options.default_currency,
            self.options.timezone,
            self._csv_conv["timestamp"],
        )
        # A line with no quote is what the csv module would make of it, its cells split at
        # the delimiter (~5,000 instructions instead of ~15,700): the line's end is its only
        # \r or \n (the text is read with newline=""), and no cell can be over the size
        # limit. `split`: the lines read this way, the others being `reader.line_num`.
        split = 0
        quote = '"' if delimiter not in '"\r\n' else ""
        limit = csv.field_size_limit()
        for line in lines:
            if quote and quote not in line and len(line) <= limit:
                split += 1
                if not (content := line.rstrip("\r\n")):
                    continue  # a blank line is not a row
                cells = content.split(delimiter)
            else:
                handed.append(line)
                try:
                    cells = next(reader)
                except csv.Error as exc:
                    self.rows_read += 1
                    yield RowError(split + reader.line_num, f"unreadable CSV: {exc}")
                    continue
                if not cells:
                    continue
            self.rows_read += 1
            line_num = split + reader.line_num
            row = fast_row(cells, line_num, self.rows_read)
            if row is None and not any(cells):
                # Delimiters only: a spreadsheet's empty row, no more a row than a blank line.
                self.rows_read -= 1
                continue
            yield general_row(cells, line_num) if row is None else row

    def _csv_general(
        self, plan: list[tuple[str, int]], label_at: int, width: int
    ) -> Callable[[list[str], int], Row | RowError]:
        """Any CSV row as a Row or a RowError (`compile_fast_row` reads the usual one)."""
        # Cells are text already: only these four need converting.
        plain = [(field, i) for field, i in plan if field not in self._csv_conv]
        converted = [(f, i, self._csv_conv[f]) for f, i in plan if f in self._csv_conv]
        build = self._build

        def general_row(cells: list[str], line: int) -> Row | RowError:
            if len(cells) != width:
                return RowError(line, f"has {len(cells)} cells, the header has {width}")
            values = {field: cell for field, i in plain if (cell := cells[i])}
            field = ""
            try:
                for field, i, conv in converted:
                    if cell := cells[i]:
                        values[field] = conv(cell)
            except NoSuchMoment as exc:
                return RowError(line, str(exc), field)
            except (ValueError, ArithmeticError):
                return RowError(line, unreadable(field, cell), field)
            label = parse_label(cells[label_at]) if label_at >= 0 else None
            if label is None and label_at >= 0 and cells[label_at].strip():
                self._label_unread(cells[label_at])
            return build(values, line, label)

        return general_row

    def _ndjson(self, text: IO[str]) -> Iterator[Row | RowError]:
        mapping = self.options.mapping
        sources = [(field, mapping.get(field, field), self._json_conv[field]) for field in FIELDS]
        label_key = self.options.label
        build = self._build
        first = True
        for line, raw in enumerate(text, start=1):
            if not raw.strip():
                continue
            self.rows_read += 1
            if self.rows_read == 1 and raw.lstrip().startswith("["):
                # A JSON array (a .json export), each of its lines refused as "not a JSON
                # object": nothing to do but convert the file.
                raise SourceError(
                    f"{self.path} is a JSON array: one JSON object per line (NDJSON) is read; "
                    f"convert it first, e.g. jq -c '.[]' {self.path} > rows.ndjson"
                )
            try:
                obj = _json_object.decode(raw)
            except msgspec.DecodeError as exc:
                yield RowError(line, f"not a JSON object: {exc}")
                continue
            if first:  # the first object's keys stand for the file's, as a CSV header would
                first = False
                by_alias = self.by_alias = self._by_alias(obj)
                sources = [(f, by_alias.get(f, key), conv) for f, key, conv in sources]
            values: dict[str, Any] = {}
            try:
                for field, key, conv in sources:
                    value = obj.get(key)
                    if value is not None and value != "":
                        values[field] = conv(value)
            except NoSuchMoment as exc:
                yield RowError(line, str(exc), field)
                continue
            except (ValueError, ArithmeticError):
                yield RowError(line, unreadable(field, value), field)
                continue
            label = None
            if label_key is not None:
                cell = obj.get(label_key)
                label = parse_label(cell)
                if label is None and cell is not None and cell != "":
                    self._label_unread(cell)
            yield build(values, line, label)

    def _label_unread(self, value: Any) -> None:
        self.labels_unread += 1
        shown = repr(value)[:40]
        if len(self._unread_values) < 4 and shown not in self._unread_values:
            self._unread_values.append(shown)  # a fourth only says there are more

    def _build(self, values: dict[str, Any], line: int, label: bool | None) -> Row | RowError:
        if "id" not in values:
            values["id"] = str(self.rows_read)
        try:
            tx = Transaction(**values)
        except TypeError:
            # Only a missing required field gets here: every key is a field.
            field = next(f for f in REQUIRED if f not in values)
            return RowError(line, f"'{field}' is required (empty or missing)", field)
        try:
            tx = validate_transaction(tx, self.options.default_currency, now=NO_CLOCK)
        except InvalidTransaction as exc:
            # Rounding is tried only for a refused amount, so valid rows pay nothing for it.
            if exc.error.field != "amount" or (rounded := self._rounded(tx)) is None:
                return RowError(line, exc.error.message, exc.error.field)
            try:
                tx = validate_transaction(rounded, self.options.default_currency, now=NO_CLOCK)
            except InvalidTransaction as again:
                return RowError(line, again.error.message, again.error.field)
            self.amounts_rounded += 1
        return Row(line, tx, label)
