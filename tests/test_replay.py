"""Replay: reading CSV/NDJSON/gzip into transactions, pacing, and posting into a running server."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import errno
import gzip
import io
import json
import socket
import sqlite3
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from server.app import create_app
from server.cli import main
from server.detection.detector import Detector
from server.detection.verdict import Scored
from server.progress import Progress
from server.replay import (
    TargetRefused,
    parse_speed,
    replay_in_process,
    replay_to_target,
)
from server.replay_source import (
    Row,
    RowError,
    Source,
    SourceError,
    SourceOptions,
    cannot_read,
    parse_mapping,
    parse_timezone,
)
from server.state import STORE
from server.transactions import Transaction
from tests.conftest import API_KEY, make_settings
from tests.live_server import live_server
from tests.test_cli import free_port

HEADER = ["TX_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT", "country", "lat",
          "TX_FRAUD", "TX_FRAUD_SCENARIO"]  # fmt: skip
ROWS = [
    ["1", "2026-03-02 09:00:00", "c-1", "t-1", "12.10", "FR", "48.85", "0", "0"],
    ["2", "2026-03-02T09:01:00+02:00", "c-2", "t-2", "99.99", "", "", "1", "3"],
    ["3", "2026-03-02 09:02:30", "c-1", "t-3", "7", "DE", "", "0", "0"],
]
MAPPING = {"id": "TX_ID", "timestamp": "TX_DATETIME", "account_id": "CUSTOMER_ID",
           "merchant_id": "TERMINAL_ID", "amount": "TX_AMOUNT"}  # fmt: skip
MAP_FLAGS = [f"--map={field}={column}" for field, column in MAPPING.items()]


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    data = buffer.getvalue().encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def write_ndjson(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    lines = []
    for row in rows:
        obj: dict[str, Any] = {k: v for k, v in zip(header, row, strict=True) if v != ""}
        if "lat" in obj:
            obj["lat"] = float(obj["lat"])
        # JSON files carry numbers as numbers, written as is: 12.10 must arrive as 12.10.
        amount = obj.pop("TX_AMOUNT")
        lines.append(json.dumps(obj)[:-1] + f', "TX_AMOUNT": {amount}}}')
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def read(path: Path, **options: Any) -> list[Row | RowError]:
    options.setdefault("mapping", MAPPING)
    with Source(path, SourceOptions(**options)) as source:
        return list(source)


def transactions(items: list[Row | RowError]) -> list[Transaction]:
    return [item.transaction for item in items if isinstance(item, Row)]


@pytest.mark.parametrize("name", ["tx.csv", "tx.csv.gz", "tx.ndjson", "tx.jsonl.gz", "tx.data"])
def test_csv_ndjson_and_gzip_read_the_same(tmp_path: Path, name: str) -> None:
    writer = write_ndjson if "json" in name else write_csv
    items = read(writer(tmp_path / name, HEADER, ROWS), label="TX_FRAUD")
    assert all(isinstance(item, Row) for item in items), items
    first, second, third = transactions(items)
    assert first.id == "1" and first.account_id == "c-1" and first.merchant_id == "t-1"
    # A naive timestamp is UTC by default; one with an offset keeps it.
    assert first.timestamp == dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    assert second.timestamp.utcoffset() == dt.timedelta(hours=2)
    assert first.amount == Decimal("12.10") and str(first.amount) == "12.10"
    assert third.amount == Decimal("7")
    assert (first.country, first.lat) == ("FR", 48.85)
    # Empty cells are absent values, not empty strings.
    assert (second.country, second.lat) == (None, None)
    assert third.lat is None
    assert first.currency == "USD"  # the default currency
    assert [item.label for item in items if isinstance(item, Row)] == [False, True, False]


def test_columns_named_like_fields_are_taken_and_others_ignored(tmp_path: Path) -> None:
    header = ["timestamp", "account_id", "merchant_id", "amount", "channel", "notes", "is_fraud"]
    rows = [["2026-03-02T09:00:00Z", "a", "m", "5.00", "ecom", "stolen card!", "1"]]
    items = read(write_csv(tmp_path / "f.csv", header, rows), mapping={})
    (tx,) = transactions(items)
    assert tx.channel == "ecom"
    values = [getattr(tx, name) for name in Transaction.__struct_fields__]
    assert "stolen card!" not in values and "1" not in values[1:]
    # No id column: ids are data row numbers.
    assert tx.id == "1"


@pytest.mark.parametrize("name", ["tx.csv", "tx.ndjson"])
def test_guaranteed_fields_are_found_by_their_other_names(tmp_path: Path, name: str) -> None:
    # The handbook's columns with nothing mapped: TX_ID, TX_DATETIME, CUSTOMER_ID, TERMINAL_ID
    # and TX_AMOUNT are what they say; the notes tell which were taken.
    writer = write_ndjson if "json" in name else write_csv
    options = SourceOptions(mapping={}, label="TX_FRAUD")
    with Source(writer(tmp_path / name, HEADER, ROWS), options) as source:
        items = list(source)
        notes = source.notes()
    assert transactions(items) == transactions(read(write_csv(tmp_path / "m.csv", HEADER, ROWS)))
    assert [item.label for item in items if isinstance(item, Row)] == [False, True, False]
    assert notes[0] == (
        "columns taken by name: id=TX_ID, timestamp=TX_DATETIME, account_id=CUSTOMER_ID, "
        "merchant_id=TERMINAL_ID, amount=TX_AMOUNT (--map FIELD=COLUMN to choose others)"
    )


@pytest.mark.parametrize("name", ["tx.csv", "tx.ndjson"])
def test_a_field_s_name_in_another_case_or_punctuation_is_its_column(
    tmp_path: Path, name: str
) -> None:
    # A spreadsheet's header: ID was ignored (ids became row numbers) and Timestamp and
    # Amount were "no column", while Account_ID was taken by name.
    header = ["ID", "Timestamp", "Account_ID", "Merchant Id", "Amount", "Country", "Is_Fraud"]
    row = ["x-1", "2026-03-02T09:00:00Z", "c-1", "m-1", "5.00", "FR", "1"]
    if name.endswith(".csv"):
        path = write_csv(tmp_path / name, header, [row])
    else:
        path = tmp_path / name
        path.write_text(json.dumps(dict(zip(header, row, strict=True))) + "\n")
    with Source(path, SourceOptions(mapping={}, label="Is_Fraud")) as source:
        items = list(source)
        notes = source.notes()
    (tx,) = transactions(items)
    assert (tx.id, tx.account_id, tx.merchant_id, tx.amount, tx.country) == (
        "x-1", "c-1", "m-1", Decimal("5.00"), "FR",
    )  # fmt: skip
    assert tx.timestamp == dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    assert [item.label for item in items if isinstance(item, Row)] == [True]
    assert notes[0] == (
        "columns taken by name: id=ID, timestamp=Timestamp, account_id=Account_ID, "
        "merchant_id=Merchant Id, amount=Amount, country=Country "
        "(--map FIELD=COLUMN to choose others)"
    )


def test_a_field_s_own_column_a_map_and_the_label_come_before_other_names(
    tmp_path: Path,
) -> None:
    header = ["timestamp", "CUSTOMER_ID", "card_id", "merchant", "amount", "TX_AMOUNT", "AMT"]
    row = ["2026-03-02T09:00:00Z", "c-1", "k-1", "m-1", "5.00", "6.00", "7.00"]
    path = write_csv(tmp_path / "f.csv", header, [row])
    with Source(path, SourceOptions(mapping={"account_id": "card_id"})) as source:
        (tx,) = transactions(list(source))
        assert source.notes() == [
            "columns taken by name: merchant_id=merchant (--map FIELD=COLUMN to choose others)"
        ]
    assert (tx.amount, tx.account_id, tx.merchant_id) == (Decimal("5.00"), "k-1", "m-1")
    # The label is never taken for a field: amount falls to the next of its names.
    del header[4], row[4]
    path = write_csv(tmp_path / "g.csv", header, [row])
    items = read(path, mapping={}, label="TX_AMOUNT")
    (tx,) = transactions(items)
    assert tx.amount == Decimal("7.00") and tx.account_id == "c-1"


def test_missing_id_column_numbers_rows_counting_invalid_ones(tmp_path: Path) -> None:
    header = HEADER[1:]
    rows = [r[1:] for r in ROWS]
    rows.insert(1, ["2026-03-02 09:00:30", "c-9", "t-9", "-1", "", "", "0", "0"])
    mapping = {k: v for k, v in MAPPING.items() if k != "id"}
    items = read(write_csv(tmp_path / "f.csv", header, rows), mapping=mapping)
    assert [tx.id for tx in transactions(items)] == ["1", "3", "4"]
    assert [(e.line, e.field) for e in items if isinstance(e, RowError)] == [(3, "amount")]


def test_invalid_rows_are_reported_with_line_numbers(tmp_path: Path) -> None:
    rows = [
        ROWS[0],
        ["x1", "yesterday", "c-1", "t-1", "5", "", "", "0", "0"],
        ["x2", "2026-03-02 09:00:00", "", "t-1", "5", "", "", "0", "0"],
        ["x3", "2026-03-02 09:00:00", "c-1", "t-1", "lots", "", "", "0", "0"],
        ["x4", "2026-03-02 09:00:00", "c-1", "t-1", "5", "France", "", "0", "0"],
        ["x5", "2026-03-02 09:00:00", "c-1", "t-1", "5", "", "123", "0", "0"],
        ["x6", "2026-03-02"],
        ROWS[1],
    ]
    items = read(write_csv(tmp_path / "f.csv", HEADER, rows))
    errors = {e.line: e for e in items if isinstance(e, RowError)}
    assert sorted(errors) == [3, 4, 5, 6, 7, 8]
    assert errors[3].field == "timestamp" and errors[4].field == "account_id"
    assert errors[5].field == "amount" and errors[6].field == "country"
    assert errors[7].field == "lat" and "header has 9" in errors[8].message
    assert str(errors[5]).startswith("line 5: ")
    assert [tx.id for tx in transactions(items)] == ["1", "2"]


@pytest.mark.parametrize("name", ["f.csv", "f.ndjson"])
def test_a_date_that_does_not_exist_is_named_as_ingest_names_it(tmp_path: Path, name: str) -> None:
    # The form is right, the day is not: "cannot read" would send the reader to the format.
    rows = [
        ["x1", "2026-02-30T09:00:00Z", "c-1", "t-1", "5", "", "", "0", "0"],
        ["x2", "2026-02-29 09:00:00", "c-1", "t-1", "5", "", "", "0", "0"],
        ["x3", "2026-03-02 24:00:00", "c-1", "t-1", "5", "", "", "0", "0"],
        ["x4", "2026-03-02T09:00:00+25:00", "c-1", "t-1", "5", "", "", "0", "0"],
        ["x5", "2026-03-02T09:00:00 noon", "c-1", "t-1", "5", "", "", "0", "0"],
    ]
    writer = write_ndjson if "json" in name else write_csv
    items = read(writer(tmp_path / name, HEADER, rows))
    assert [(e.field, e.message) for e in items if isinstance(e, RowError)] == [
        ("timestamp", "'timestamp': 2026-02-30 is not a date"),
        ("timestamp", "'timestamp': 2026-02-29 is not a date"),
        ("timestamp", "'timestamp': 24:00:00 is not a time of day"),
        ("timestamp", "'timestamp': +25:00 is not a UTC offset"),
        (
            "timestamp",
            "'timestamp': cannot read '2026-03-02T09:00:00 noon', expected an RFC 3339 "
            "date-time (2026-03-02T09:00:00Z), 'YYYY-MM-DD HH:MM:SS' or Unix time; a date "
            "alone is not taken",
        ),  # not the form: the message gives the forms taken
    ]


@pytest.mark.parametrize("name", ["f.csv", "f.ndjson"])
def test_a_cell_that_cannot_be_read_says_what_its_field_takes(tmp_path: Path, name: str) -> None:
    # An outsider's export: a currency sign, thousands separators, a date without its time.
    # "cannot read '$12.50'" alone left them to guess what the column should hold.
    header = ["id", "timestamp", "account_id", "merchant_id", "amount"]
    rows = [
        ["x1", "2026-03-02T09:00:00Z", "c-1", "t-1", "$12.50"],
        ["x2", "2026-03-02T09:00:00Z", "c-1", "t-1", "1,234.00"],
        ["x3", "2026-03-02", "c-1", "t-1", "5.00"],
    ]
    if name.endswith(".csv"):
        path = write_csv(tmp_path / name, header, rows)
    else:
        path = tmp_path / name
        path.write_text("".join(json.dumps(dict(zip(header, r, strict=True))) + "\n" for r in rows))
    items = read(path, mapping={})
    amount = (
        ", expected a decimal number such as 1234.50, without a currency sign or thousands "
        "separators"
    )
    first = 2 if name.endswith(".csv") else 1  # the header is line 1
    assert [(e.line, e.field, e.message) for e in items if isinstance(e, RowError)] == [
        (first, "amount", "'amount': cannot read '$12.50'" + amount),
        (first + 1, "amount", "'amount': cannot read '1,234.00'" + amount),
        (
            first + 2,
            "timestamp",
            "'timestamp': cannot read '2026-03-02', expected an RFC 3339 date-time "
            "(2026-03-02T09:00:00Z), 'YYYY-MM-DD HH:MM:SS' or Unix time; a date alone is not "
            "taken",
        ),
    ]


def test_a_row_of_delimiters_only_is_no_row_as_a_blank_line_is_not(tmp_path: Path) -> None:
    # A spreadsheet saved as CSV ends with ",,,," for each row it once formatted: each was
    # an invalid row, "'timestamp' is required", counted and numbered.
    path = tmp_path / "f.csv"
    path.write_text(
        "timestamp,account_id,merchant_id,amount\n2026-03-02T09:00:00Z,a,m,5.00\n,,,\n\n"
        '2026-03-02T09:00:01Z,a,m,6.00\n,,,\n"",,,\n2026-03-02T09:00:02Z,,m,7.00\n'
    )
    with Source(path, SourceOptions(mapping={})) as source:
        items = list(source)
        assert source.rows_read == 3
    assert [tx.id for tx in transactions(items)] == ["1", "2"]
    (error,) = [item for item in items if isinstance(item, RowError)]
    assert (error.line, error.field) == (8, "account_id")


@pytest.mark.parametrize("parallel", ["off", "on"])
@pytest.mark.parametrize("indent", [None, 2])
def test_a_json_array_file_is_refused_with_how_to_convert_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], indent: int | None, parallel: str
) -> None:
    # A .json export holding one array: every line was an invalid row ("Expected `object`,
    # got `array`", then "got `str`" for each line of a pretty-printed one).
    good = {"id": "a", "timestamp": "2026-03-02T09:00:00Z", "account_id": "c",
            "merchant_id": "m", "amount": 5}  # fmt: skip
    path = tmp_path / "export.json"
    path.write_text("\n" + json.dumps([good, {**good, "id": "b"}], indent=indent) + "\n")
    assert main(["replay", str(path), "--parallel", parallel]) == 2
    assert (
        f"error: {path} is a JSON array: one JSON object per line (NDJSON) is read; convert "
        f"it first, e.g. jq -c '.[]' {path} > rows.ndjson"
    ) in capsys.readouterr().err


def test_unreadable_ndjson_lines_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "f.ndjson"
    good = {"id": "a", "timestamp": "2026-03-02T09:00:00Z", "account_id": "c", "merchant_id": "m",
            "amount": 5}  # fmt: skip
    path.write_text(
        json.dumps(good) + "\n{not json\n\n[1, 2]\n" + json.dumps({**good, "amount": True}) + "\n"
    )
    items = read(path, mapping={})
    assert [type(i).__name__ for i in items] == ["Row", "RowError", "RowError", "RowError"]
    assert [i.line for i in items] == [1, 2, 4, 5]


def test_a_label_column_read_as_a_field_is_refused(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "f.csv", HEADER, ROWS)
    with pytest.raises(SourceError, match="must never see the label"):
        read(path, label="TX_AMOUNT")
    header = ["timestamp", "account_id", "merchant_id", "amount", "channel"]
    path = write_csv(tmp_path / "g.csv", header, [["2026-03-02T09:00:00Z", "a", "m", "5", "1"]])
    with pytest.raises(SourceError, match="'channel'"):
        read(path, mapping={}, label="channel")
    # Mapping the field elsewhere makes the column free to be the label.
    read(path, mapping={"channel": "account_id"}, label="channel")
    # A label named like a field that the file does not have is a missing column (a typo),
    # not a conflict with a column that is not there.
    with pytest.raises(SourceError, match=r"label column 'id' is not in .*columns: timestamp"):
        read(path, mapping={}, label="id")


def test_mapping_and_columns_are_checked_up_front(tmp_path: Path) -> None:
    unnamed = ["PAN_HASH" if c == "CUSTOMER_ID" else "POS" if c == "TERMINAL_ID" else c
               for c in HEADER]  # fmt: skip
    with pytest.raises(SourceError, match="no column for account_id, merchant_id"):
        read(write_csv(tmp_path / "u.csv", unnamed, ROWS), mapping={})
    path = write_csv(tmp_path / "f.csv", HEADER, ROWS)
    with pytest.raises(SourceError, match="no column 'NOPE'"):
        read(path, mapping={**MAPPING, "ip": "NOPE"})
    with pytest.raises(SourceError, match="not a transaction field"):
        parse_mapping(["colour=TX_ID"])
    with pytest.raises(SourceError, match="FIELD=COLUMN"):
        parse_mapping(["account_id"])
    assert parse_mapping(["account_id = CUSTOMER_ID"]) == {"account_id": "CUSTOMER_ID"}


def test_timezone_of_naive_timestamps(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "f.csv", HEADER, ROWS[:1])
    (tx,) = transactions(read(path, timezone=parse_timezone("+02:00")))
    assert tx.timestamp == dt.datetime(2026, 3, 2, 7, 0, tzinfo=dt.UTC)
    (tx,) = transactions(read(path, timezone=parse_timezone("Europe/Paris")))
    assert tx.timestamp == dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)
    with pytest.raises(SourceError, match="--timezone"):
        parse_timezone("Mars/Olympus")


def test_numeric_timestamps_are_unix_time(tmp_path: Path) -> None:
    # Public datasets carry Unix time (Sparkov's unix_time, in seconds or milliseconds) or a
    # count of hours (PaySim's step): each is read, and the summary says in which unit.
    at = dt.datetime(2012, 1, 1, 0, 0, 18, tzinfo=dt.UTC)
    rows = [["1", "1325376018", "c", "t", "5", "", "", "0", "0"],
            ["2", "1325376018250", "c", "t", "5", "", "", "0", "0"],
            ["3", "1325376018.5", "c", "t", "5", "", "", "0", "0"]]  # fmt: skip
    path = write_csv(tmp_path / "f.csv", HEADER, rows)
    with Source(path, SourceOptions(mapping=MAPPING)) as source:
        items = list(source)
        notes = source.notes()
    assert [tx.timestamp for tx in transactions(items)] == [
        at,
        at + dt.timedelta(milliseconds=250),
        at + dt.timedelta(milliseconds=500),
    ]
    assert "numeric timestamps read as Unix time in seconds (--time-unit)" in notes
    ndjson = tmp_path / "f.ndjson"
    ndjson.write_text(
        '{"TX_ID": "1", "TX_DATETIME": 1325376018, "CUSTOMER_ID": "c", "TERMINAL_ID": "t", '
        '"TX_AMOUNT": 5}\n'
    )
    (tx,) = transactions(read(ndjson))
    assert tx.timestamp == at
    steps = [["1", "743", "c", "t", "5", "", "", "0", "0"]]
    (tx,) = transactions(read(write_csv(tmp_path / "steps.csv", HEADER, steps), time_unit="h"))
    assert tx.timestamp == dt.datetime(1970, 1, 31, 23, tzinfo=dt.UTC)
    # Not a number, negative, or past the year 9999 in the unit given: the row is refused.
    cells = ["-5", "1e9", "99999999999"]
    bad = [[str(i), cell, "c", "t", "5", "", "", "0", "0"] for i, cell in enumerate(cells)]
    items = read(write_csv(tmp_path / "bad.csv", HEADER, bad), time_unit="d")
    assert [(e.line, e.field) for e in items if isinstance(e, RowError)] == [
        (2, "timestamp"),
        (3, "timestamp"),
        (4, "timestamp"),
    ]


def test_a_count_from_the_start_read_as_seconds_is_pointed_out(tmp_path: Path) -> None:
    # BankSim's step counts days from 0 to 179: mapped without --time-unit, it reads as the
    # first three minutes of 1970, which would make every label delay longer than the file.
    days = [[str(i), str(step), "c", "t", "5", "", "", "0", "0"]
            for i, step in enumerate(["0", "0", "1", "179"])]  # fmt: skip
    path = write_csv(tmp_path / "days.csv", HEADER, days)

    def notes(**options: Any) -> list[str]:
        with Source(path, SourceOptions(mapping=MAPPING, **options)) as source:
            list(source)
            return source.notes()

    (hint,) = [n for n in notes() if "within a year of 1970-01-01" in n]
    assert "--time-unit d" in hint
    # Said, the unit needs no hint; nor do numbers that are Unix time.
    assert not [n for n in notes(time_unit="d") if "within a year" in n]
    late = [*days, ["9", "1325376018", "c", "t", "5", "", "", "0", "0"]]
    path = write_csv(tmp_path / "days.csv", HEADER, late)
    assert not [n for n in notes() if "within a year" in n]


def test_parse_speed() -> None:
    assert parse_speed("max") is None
    assert parse_speed("10") == 10.0
    for bad in ("0", "-2", "fast", "inf"):
        with pytest.raises(SourceError):
            parse_speed(bad)


class Recorder:
    review_threshold, block_threshold, rules_version = 0.5, 0.8, "test"

    def __init__(self) -> None:
        self.seen: list[Transaction] = []

    def score(self, tx: Transaction) -> Scored:
        self.seen.append(tx)
        return Scored(0.0, "allow", "low", (), self.rules_version)


def test_replay_in_process_scores_in_file_order() -> None:
    t0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    items: list[Row | RowError] = [
        Row(2, Transaction(id="a", timestamp=t0, account_id="c", merchant_id="m",
                           amount=Decimal(5), currency="USD")),
        RowError(3, "bad"),
        Row(4, Transaction(id="b", timestamp=t0, account_id="c", merchant_id="m",
                           amount=Decimal(6), currency="USD")),
    ]  # fmt: skip
    recorder = Recorder()
    summary = replay_in_process(items, recorder)
    assert [tx.id for tx in recorder.seen] == ["a", "b"]
    assert summary.decisions == {"allow": 2}
    assert summary.errors.count == 1


@pytest.mark.parametrize("parallel", ["off", "on"])
def test_replay_in_process_counts_rows_whose_id_an_earlier_row_had(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], parallel: str
) -> None:
    # An export joined twice, or ids reused across days: each row is still scored, but
    # the summary said nothing, where a server would have answered 409 or the first verdict.
    rows = [[*row[:4], f"{i}.00", "", "", "0", "0"]
            for i, row in enumerate(_card_testing_rows(6), start=1)]  # fmt: skip
    rows[3][0] = rows[1][0]  # line 5 repeats line 3's id
    rows[5][0] = rows[0][0]  # line 7 repeats line 2's
    # An invalid row is not scored, so its id is no repeat.
    rows.append([rows[2][0], "bad", "c", "t", "1", "", "", "0", "0"])
    path = write_csv(tmp_path / "dup.csv", HEADER, rows)
    assert main(["replay", str(path), *MAP_FLAGS, "--parallel", parallel]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("7 rows read, 6 scored, 1 invalid")
    assert "  2 repeated ids: rows scored again under an id an earlier row had (first: line 5, " \
        "'r-1')" in lines  # fmt: skip
    unique = write_csv(tmp_path / "unique.csv", HEADER, _card_testing_rows(6))
    assert main(["replay", str(unique), *MAP_FLAGS, "--parallel", parallel]) == 0
    assert "repeated id" not in capsys.readouterr().out


def test_replay_paces_event_time() -> None:
    t0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    items: list[Row | RowError] = [
        Row(i, Transaction(id=str(i), timestamp=t0 + dt.timedelta(seconds=2 * i), account_id="c",
                           merchant_id="m", amount=Decimal(5), currency="USD"))
        for i in range(3)
    ]  # fmt: skip
    started = time.monotonic()
    replay_in_process(items, Detector(), speed=10.0)  # 4 s of event time at 10x: 0.4 s
    assert 0.35 <= time.monotonic() - started < 2.0


@pytest.mark.parametrize("name", ["f.csv", "f.ndjson"])
def test_amounts_from_float_exports_are_rounded_unless_exact_is_asked(
    tmp_path: Path, name: str
) -> None:
    def row(id: str, amount: str) -> list[str]:
        return [id, "2026-03-02 09:00:00", "c-1", "t-1", amount, "", "", "0", "0"]

    rows = [row("1", "57.950001"), row("2", "12.345"), row("3", "12.355"), row("4", "0.004")]
    rows += [row("5", "1e400"), row("6", "12.10")]
    write = write_csv if name.endswith(".csv") else write_ndjson
    path = write(tmp_path / name, HEADER, rows)
    with Source(path, SourceOptions(mapping=MAPPING)) as source:
        items = list(source)
        assert source.amounts_rounded == 4  # rows 1-4; 0.004 is 0.00, a zero amount
        assert "4 amounts had more decimals" in source.notes()[0]
    amounts = {tx.id: tx.amount for tx in transactions(items)}
    assert amounts == {
        "1": Decimal("57.95"),
        "2": Decimal("12.34"),  # half-even: banker's rounding, as ledgers do
        "3": Decimal("12.36"),
        "4": Decimal("0.00"),
        "6": Decimal("12.10"),
    }
    refused = {e.line: e.field for e in items if isinstance(e, RowError)}
    header = 1 if name.endswith(".csv") else 0
    assert refused == {5 + header: "amount"}
    exact = read(path, round_amounts=False)
    assert [tx.id for tx in transactions(exact)] == ["6"]


def test_replay_and_backtest_say_how_many_amounts_were_rounded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [[*r[:4], "12.101", *r[5:]] for r in ROWS]
    path = write_csv(tmp_path / "f.csv", HEADER, rows)
    assert main(["replay", str(path), *MAP_FLAGS]) == 0
    out = capsys.readouterr().out
    assert "3 rows read, 3 scored, 0 invalid" in out
    assert "3 amounts had more decimals than their currency allows" in out
    assert main(["replay", str(path), *MAP_FLAGS, "--exact-amounts"]) == 1  # no row read
    assert "3 rows read, 0 scored, 3 invalid" in capsys.readouterr().out
    flags = [*MAP_FLAGS, "--label", "TX_FRAUD", "--label-delay", "0s"]
    assert main(["backtest", str(path), *flags]) == 0
    assert "3 amounts had more decimals" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["f.csv", "f.ndjson"])
def test_label_cells_that_are_no_label_are_named(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # A label column in words this reader does not know: every row unlabelled, every metric
    # undefined, and until now nothing said why.
    words = ["genuine", "fraudulent", "genuine"]
    rows = [[*r[:7], word, *r[8:]] for r, word in zip(ROWS, words, strict=True)]
    writer = write_ndjson if "json" in name else write_csv
    path = writer(tmp_path / name, HEADER, rows)
    flags = [*MAP_FLAGS, "--label", "TX_FRAUD", "--label-delay", "0s"]
    assert main(["backtest", str(path), *flags]) == 0
    out = capsys.readouterr().out
    assert "0 labelled transactions" in out
    assert (
        "3 label cells are not a label ('genuine', 'fraudulent') and were read as unlabelled" in out
    )
    with Source(path, SourceOptions(mapping=MAPPING, label="TX_FRAUD")) as source:
        list(source)
        assert source.labels_unread == 3


@pytest.mark.parametrize(
    ("name", "parallel"), [("f.csv", "off"), ("f.csv", "on"), ("f.ndjson", "off")]
)
def test_bytes_that_are_not_utf8_are_counted_in_the_notes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, parallel: str
) -> None:
    # A Latin-1 export: Café and Cafè are both read as Caf\ufffd, one merchant, and nothing
    # said so.
    lines = ["id,timestamp,account_id,merchant_id,amount"] if name.endswith(".csv") else []
    for i, merchant in enumerate(["Caf\xe9", "Caf\xe8", "Cafe"]):
        if name.endswith(".csv"):
            lines.append(f"x{i},2026-03-02T09:00:0{i}Z,c-1,{merchant},5.00")
        else:
            lines.append(
                f'{{"id": "x{i}", "timestamp": "2026-03-02T09:00:0{i}Z", "account_id": "c-1", '
                f'"merchant_id": "{merchant}", "amount": 5}}'
            )
    path = tmp_path / name
    path.write_bytes("\n".join(lines).encode("latin-1") + b"\n")
    assert main(["replay", str(path), "--parallel", parallel]) == 0
    out = capsys.readouterr().out
    assert "3 rows read, 3 scored, 0 invalid" in out
    assert (
        "2 byte sequences of the file are not UTF-8 and were read as U+FFFD, so ids and names "
        "differing there run together: if the file is in another encoding, convert it first"
    ) in out
    with Source(path, SourceOptions(mapping={})) as source:
        assert [tx.merchant_id for tx in transactions(list(source))] == [
            "Caf\ufffd", "Caf\ufffd", "Cafe",
        ]  # fmt: skip
        assert len(source.notes()) == 1
    path.write_bytes(
        "\n".join(lines).encode("latin-1").replace(b"\xe9", b"e").replace(b"\xe8", b"e") + b"\n"
    )
    with Source(path, SourceOptions(mapping={})) as source:
        list(source)
        assert source.notes() == []


def test_label_cells_of_0_and_1_with_decimals_are_labels(tmp_path: Path) -> None:
    # 1.0 was a label and 1.00 was not: a column exported with two decimals was unlabelled.
    cells = ["1.00", "0.000", "1.", " 1.0 ", "0", "2.00", "0.5", "1e0"]
    rows = [[*ROWS[0][:7], cell, *ROWS[0][8:]] for cell in cells]
    for i, row in enumerate(rows):
        row[0] = f"x{i}"
    items = read(write_csv(tmp_path / "f.csv", HEADER, rows), label="TX_FRAUD")
    labels = [item.label for item in items if isinstance(item, Row)]
    assert labels == [True, False, True, True, False, None, None, None]


def test_counts_of_one_take_the_singular(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # One of each: a row, an invalid row, a rounded amount, a label cell that is no label,
    # a row out of order, a labelled transaction, a fraud, a day. "1 days" and the like.
    rows = [
        ["1", "2026-03-02 09:00:00", "c-1", "t-1", "12.105", "", "", "maybe", "0"],
        ["2", "2026-03-02 09:05:00", "c-1", "t-1", "bad", "", "", "1", "0"],
        ["3", "2026-03-02 09:10:00", "c-2", "t-1", "5.00", "", "", "1", "0"],
        ["4", "2026-03-02 09:01:00", "c-2", "t-1", "5.00", "", "", "", "0"],
    ]
    path = write_csv(tmp_path / "one.csv", HEADER, rows)
    assert main(["replay", str(path), *MAP_FLAGS]) == 0
    out = capsys.readouterr().out
    assert "4 rows read, 3 scored, 1 invalid\n1 invalid row (skipped):\n" in out
    assert "1 amount had more decimals than its currency allows and was rounded" in out
    single = write_csv(tmp_path / "single.csv", HEADER, rows[2:3])
    assert main(["replay", str(single), *MAP_FLAGS]) == 0
    assert ": 1 row read, 1 scored, 0 invalid" in capsys.readouterr().out
    assert main(["backtest", str(path), *MAP_FLAGS, "--label", "TX_FRAUD"]) == 0
    out = capsys.readouterr().out
    assert "1 label cell is not a label ('maybe') and was read as unlabelled" in out
    assert ": 1 labelled transaction over 1 day, 1 fraud (100.00%); 2 unlabelled" in out
    assert "  1 row was out of event-time order: sorted" in out
    html = tmp_path / "r.html"
    assert (
        main(["backtest", str(path), *MAP_FLAGS, "--label", "TX_FRAUD", "--report", str(html)]) == 0
    )
    assert "1 labelled transaction over 1 day (" in html.read_text(encoding="utf-8")


def test_replay_command_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_csv(
        tmp_path / "f.csv.gz", HEADER, [*ROWS, ["4", "later", "c", "t", "1", "", "", "0", "0"]]
    )
    assert main(["replay", str(path), *MAP_FLAGS]) == 0
    out = capsys.readouterr().out
    assert "4 rows read, 3 scored, 1 invalid" in out
    assert "line 5: 'timestamp'" in out
    assert "decisions: allow=3" in out and "tx/s" in out
    assert main(["replay", str(path), "--speed", "slow"]) == 2
    assert main(["replay", str(tmp_path / "missing.csv"), *MAP_FLAGS]) == 1


@pytest.mark.parametrize("command", ["replay", "backtest"])
@pytest.mark.parametrize("parallel", ["off", "on"])
def test_a_cut_short_gzip_file_is_an_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, parallel: str
) -> None:
    whole = write_csv(tmp_path / "whole.csv.gz", HEADER, ROWS * 400).read_bytes()
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    args = [command, str(cut), *MAP_FLAGS, "--parallel", parallel]
    if command == "backtest":
        args += ["--label", "TX_FRAUD"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"error: {cut}: the compressed file is damaged or cut short, after" in err, err
    assert "Traceback" not in err


def test_progress_bar_on_a_terminal_and_lines_otherwise() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, plain = Tty(), io.StringIO()
    for stream in (tty, plain):
        progress = Progress("scoring", total=200, stream=stream, unit="tx", interval=0.0)
        progress.update(50)
        progress.update(200)
        progress.close()
    assert tty.getvalue().count("\r") == 3 and tty.getvalue().endswith("\n")
    assert "[######" in tty.getvalue() and "ETA" in tty.getvalue()
    lines = plain.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in plain.getvalue()
    assert lines[0].startswith("scoring: 50/200 tx") and "25%" in lines[0]
    assert "100%" in lines[-1] and "in 0:00" in lines[-1]


# --- into a running server ----------------------------------------------------------------------


def _card_testing_rows(n: int) -> list[list[str]]:
    t0 = dt.datetime(2026, 3, 2, 14, 0, tzinfo=dt.UTC)
    return [
        [f"r-{i}", (t0 + dt.timedelta(seconds=20 * i)).isoformat(), "victim", f"shop-{i}", "1.00",
         "", "", "1", "0"]
        for i in range(n)
    ]  # fmt: skip


async def test_replay_into_a_running_server(aiohttp_server: Any, tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path))
    server = await aiohttp_server(app)
    rows = _card_testing_rows(5)
    # Valid offline, but the server refuses a timestamp far ahead of its clock.
    rows.append(["future", "2999-01-01T00:00:00Z", "c", "m", "5.00", "", "", "0", "0"])
    rows.append(["broken", "2026-03-02T14:00:00Z", "c", "m", "-1.00", "", "", "0", "0"])
    path = write_csv(tmp_path / "f.csv", HEADER, rows)
    with Source(path, SourceOptions(mapping=MAPPING, label="TX_FRAUD")) as source:
        summary = await replay_to_target(source, str(server.make_url("/")), API_KEY, batch_size=2)
    assert summary.sent == 6 and summary.failed == 0 and summary.stopped is None
    assert summary.errors.count == 1 and summary.errors.first[0].line == 8
    assert summary.refused.count == 1 and summary.refused.first[0].line == 7
    # The summary tells the two apart: the file's invalid row, the row the server refused.
    lines = summary.lines("target", None)
    assert lines[0].endswith("5 scored, 1 invalid")
    assert lines[1] == "1 invalid row (skipped):" and "line 8:" in lines[2]
    assert "refused by the server 1;" in lines[3]
    assert lines[4] == "  1 refused by the server (skipped):" and "line 7:" in lines[5]
    # Card testing fires from the third tiny amount on: three alerts, committed in the store.
    assert summary.decisions["allow"] == 2
    assert summary.decisions["review"] + summary.decisions["block"] == 3
    page = await app[STORE].list_alerts(None, 100, None)
    alerted = {alert.transaction_id for alert in page.alerts}
    assert alerted == {"r-2", "r-3", "r-4"}


async def test_replay_with_a_wrong_key_stops(aiohttp_server: Any, tmp_path: Path) -> None:
    server = await aiohttp_server(create_app(make_settings(tmp_path)))
    path = write_csv(tmp_path / "f.csv", HEADER, ROWS)
    with Source(path, SourceOptions(mapping=MAPPING)) as source, pytest.raises(TargetRefused):
        await replay_to_target(source, str(server.make_url("/")), "wrong-key")


async def test_replay_to_a_wrong_url_stops_at_once(
    aiohttp_server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = await aiohttp_server(create_app(make_settings(tmp_path)))
    path = write_csv(tmp_path / "f.csv", HEADER, _card_testing_rows(6))
    # The dashboard's address with a path: the API is not under it.
    argv = ["replay", str(path), *MAP_FLAGS, "--target", str(server.make_url("/dashboard")),
            "--api-key", API_KEY, "--batch", "2"]  # fmt: skip
    assert await asyncio.to_thread(main, argv) == 1
    err = capsys.readouterr().err
    assert "/dashboard/api/v1/transactions answered 404: check --target" in err


@pytest.mark.parametrize(
    ("limit", "parts"), [({"max_body_bytes": 1000}, 2), ({"max_batch_records": 7}, 2)]
)
def test_a_batch_over_the_request_limit_is_split_and_sent_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], limit: dict[str, int], parts: int
) -> None:
    # `fraudwatch serve` taking 1,000-byte bodies, or 7 records a request, and --batch 20
    # (about 2,400 bytes): the server answers 413. The rows were counted as "failed (no
    # answer)", though the server had answered. Now the request is halved until it passes,
    # and later batches are sent in parts of that size: every row is scored, and the
    # summary says what --batch fits.
    path = write_csv(tmp_path / "f.csv", HEADER, _card_testing_rows(50))
    with live_server(tmp_path / "data", **limit) as server:
        argv = ["replay", str(path), *MAP_FLAGS, "--target", server.url, "--api-key", API_KEY,
                "--batch", "20"]  # fmt: skip
        assert main(argv) == 0
        server.stop()
    out = capsys.readouterr().out
    assert "sent 50, answered 50; refused by the server 0; failed (request refused whole or " \
        "unanswered) 0\n" in out  # fmt: skip
    assert f"  {parts} requests over the server's request limit (413: its max_body_bytes or " \
        "max_batch_records) split and sent again; then at most 5 rows a request (--batch 5 " \
        "avoids the split)\n" in out  # fmt: skip
    assert "alerts 48 " in out  # card testing on one account: from the third on
    with contextlib.closing(sqlite3.connect(server.db)) as conn:
        stored = [row[0] for row in conn.execute("SELECT id FROM transactions ORDER BY rowid")]
    assert stored == [f"r-{i}" for i in range(50)]  # each once, in the file's order


async def test_a_row_alone_over_the_body_limit_is_refused(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    # No request can carry it: it is the server's refusal of that row, with its line.
    server = await aiohttp_server(create_app(make_settings(tmp_path, max_body_bytes=100)))
    path = write_csv(tmp_path / "f.csv", HEADER, _card_testing_rows(3))
    with Source(path, SourceOptions(mapping=MAPPING)) as source:
        summary = await replay_to_target(source, str(server.make_url("/")), API_KEY)
    assert (summary.sent, summary.failed, summary.refused.count) == (3, 0, 3)
    assert [e.line for e in summary.refused.first] == [2, 3, 4]
    # The server's own words, which name the limit and the setting behind it.
    assert str(summary.refused.first[0]) == (
        "line 2: alone over the server's body limit (HTTP 413: Request body over 100 bytes "
        "(max_body_bytes): send fewer transactions per request. Nothing of this request "
        "was accepted.)"
    )


async def test_a_replay_whose_rows_the_server_never_took_fails(
    aiohttp_server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Something in front of the server (a gateway, a proxy) refusing requests whole: the
    # rows were never taken, so the run fails, though the replay goes on with the next batch.
    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=400, text="request refused by the gateway")

    gateway = web.Application()
    gateway.router.add_post("/api/v1/transactions", refuse)
    server = await aiohttp_server(gateway)
    path = write_csv(tmp_path / "f.csv", HEADER, _card_testing_rows(20))
    argv = ["replay", str(path), *MAP_FLAGS, "--target", str(server.make_url("/")),
            "--api-key", API_KEY, "--batch", "5"]  # fmt: skip
    assert await asyncio.to_thread(main, argv) == 1
    out = capsys.readouterr().out
    assert "answered 0; refused by the server 0; failed (request refused whole or unanswered) " \
        "20; last error: HTTP 400: request refused by the gateway" in out  # fmt: skip


async def test_a_server_that_goes_away_mid_replay_is_tried_the_full_retries(
    aiohttp_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It answered the first batch, then stopped listening (a restart, a crash): connection
    # refused from then on is worth every try, not the few a server that never answered
    # gets. (Short waits for the test; the count is the rule.)
    monkeypatch.setattr("server.replay.RETRIES", 5)
    monkeypatch.setattr("server.replay.RETRY_WAIT_MAX_S", 0.01)

    async def answer_then_go(request: web.Request) -> web.Response:
        lines = (await request.read()).splitlines()
        for site in list(server.runner.sites):
            await site.stop()  # no more connections; this one is answered and closed
        response = web.json_response({"results": [{"decision": "allow"} for _ in lines]})
        response.force_close()
        return response

    app = web.Application()
    app.router.add_post("/api/v1/transactions", answer_then_go)
    server = await aiohttp_server(app)
    path = write_csv(tmp_path / "f.csv", HEADER, _card_testing_rows(6))
    with Source(path, SourceOptions(mapping=MAPPING)) as source:
        summary = await replay_to_target(source, str(server.make_url("/")), API_KEY, batch_size=2)
    url = str(server.make_url("/api/v1/transactions"))
    assert summary.stopped is not None
    assert summary.stopped.startswith(f"no answer from {url} after 5 tries: ClientConnectorError")
    # The batch that got no answer failed; the replay stopped before the third.
    assert summary.decisions["allow"] == 2 and summary.failed == 2
    assert "sent 4, answered 2;" in "\n".join(summary.lines("target", None))


def test_a_replay_to_a_server_that_is_down_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # No server listening: it printed the full summary, "0 scored", "decisions: allow=0"
    # and "event time: … → … at speed max", as if the file had been replayed. Then it
    # printed one line, but only after 8 tries over ~22 s: connection refused at the first
    # request is now tried 3 times (0.5 and 1 s apart), as nothing there has ever answered.
    port = free_port()
    path = write_csv(tmp_path / "f.csv", HEADER, _card_testing_rows(5))
    argv = ["replay", str(path), *MAP_FLAGS, "--target", f"http://127.0.0.1:{port}",
            "--api-key", API_KEY]  # fmt: skip
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and "event time" not in err, err
    assert err.startswith(
        f"error: cannot connect to http://127.0.0.1:{port}/api/v1/transactions (3 tries, "
        "0.5 and 1 s apart): ClientConnectorError: Cannot connect to host "
    ), err
    assert err.endswith(
        f"; is a server running at http://127.0.0.1:{port}? Nothing was replayed.\n"
    ), err


@contextlib.contextmanager
def blackhole() -> Iterator[int]:
    """A port whose listener's queue is full: the kernel drops each further SYN, as a host
    behind a dropping firewall does, so a connection neither opens nor is refused."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        with contextlib.ExitStack() as held:
            for _ in range(4):  # never accepted: they fill the queue
                sock = held.enter_context(socket.socket())
                sock.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    sock.connect(("127.0.0.1", port))
            yield port


async def test_a_target_that_drops_packets_is_given_up_on_after_three_connect_timeouts(
    tmp_path: Path,
) -> None:
    # Only ClientTimeout(total=120) bounded a try: each of 8 tries to a host that drops
    # packets waited 120 s. A connection not made within the connect timeout (10 s by
    # default; short here) is now one that cannot be made: 3 tries, as a refused one.
    path = write_csv(tmp_path / "f.csv", HEADER, _card_testing_rows(5))
    with blackhole() as port, Source(path, SourceOptions(mapping=MAPPING)) as source:
        summary = await replay_to_target(
            source, f"http://127.0.0.1:{port}", API_KEY, connect_timeout_s=0.2
        )
    assert summary.stopped is not None and not summary.answered
    assert summary.stopped.startswith(
        f"cannot connect to http://127.0.0.1:{port}/api/v1/transactions (3 tries, 0.5 and 1 s "
        "apart): ConnectionTimeoutError: "
    ), summary.stopped
    assert summary.failed == 5


async def test_replay_command_into_a_running_server_paced(
    aiohttp_server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = await aiohttp_server(create_app(make_settings(tmp_path)))
    rows = _card_testing_rows(5)  # 20 s apart: 80 s of event time, 0.4 s at 200x
    path = write_csv(tmp_path / "f.csv", HEADER, rows)
    argv = ["replay", str(path), *MAP_FLAGS, "--target", str(server.make_url("/")),
            "--api-key", API_KEY, "--speed", "200", "--batch", "2"]  # fmt: skip
    started = time.monotonic()
    # The command runs its own event loop: give it a thread, as a terminal would a process.
    assert await asyncio.to_thread(main, argv) == 0
    assert 0.35 <= time.monotonic() - started < 5.0
    out = capsys.readouterr().out
    assert "5 rows read, 5 scored, 0 invalid" in out
    assert "sent 5, answered 5;" in out
    assert "refused by the server 0; failed (request refused whole or unanswered) 0" in out
    assert "alerts 3 " in out


@pytest.mark.parametrize("target", ["127.0.0.1:8000", "localhost", "ftp://127.0.0.1:8000"])
def test_a_target_that_is_no_http_url_is_refused_up_front(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    # "--target 127.0.0.1:8000" (no scheme) was tried 8 times over ~22 s, each failing with
    # "NonHttpUrlClientError", before the run stopped.
    path = write_csv(tmp_path / "f.csv", HEADER, ROWS)
    assert main(["replay", str(path), *MAP_FLAGS, "--target", target, "--api-key", "k"]) == 2
    assert (
        f"error: --target must be the server's base URL, http://HOST:PORT or https://HOST, "
        f"got {target!r}"
    ) in capsys.readouterr().err


def test_delimiter_and_format_flags(tmp_path: Path) -> None:
    path = tmp_path / "export.txt"
    path.write_text("timestamp;account_id;merchant_id;amount\n2026-03-02 09:00:00;a;m;1,5\n"
                    "2026-03-02 09:00:01;a;m;2.5\n")  # fmt: skip
    items = read(path, mapping={}, delimiter=";", format="csv")
    assert [type(i).__name__ for i in items] == ["RowError", "Row"]  # no decimal commas
    assert transactions(items)[0].amount == Decimal("2.5")


@pytest.mark.parametrize(("sep", "flag"), [(";", "--delimiter ';'"), ("\t", "--delimiter tab")])
def test_a_header_read_as_one_column_names_the_delimiter_it_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sep: str, flag: str
) -> None:
    # A European spreadsheet's export, or a .tsv: "no column for timestamp, …" alone sent
    # the reader to --map, with every column there.
    path = tmp_path / "export.csv"
    path.write_text(
        sep.join(["id", "timestamp", "account_id", "merchant_id", "amount"]) + "\n"
        + sep.join(["x", "2026-03-02T09:00:00Z", "a", "m", "5.00"]) + "\n"
    )  # fmt: skip
    assert main(["replay", str(path)]) == 2
    error = capsys.readouterr().err
    assert f"holds {sep!r}: if that is the file's delimiter, say so with {flag}" in error
    shown = "tab" if sep == "\t" else sep
    assert main(["replay", str(path), "--delimiter", shown]) == 0
    assert "1 row read, 1 scored, 0 invalid" in capsys.readouterr().out
    # A header of one column with no other delimiter in it gets no guess.
    path.write_text("amount\n5.00\n")
    assert main(["replay", str(path)]) == 2
    assert "delimiter" not in capsys.readouterr().err


def test_a_binary_files_header_is_shown_escaped_and_cut(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A zip or a spreadsheet's binary given to replay: its first "line" went into the error
    # as it was, control codes (a terminal's escapes among them) and all, however long.
    path = tmp_path / "export.csv"
    path.write_bytes(b"PK\x03\x04\x1b[2J" + bytes(range(1, 10)) + b"x" * 5000 + b"\n1,2\n")
    assert main(["replay", str(path)]) == 2
    error = capsys.readouterr().err
    assert "no column for" in error and "\\x1b[2J" in error, error
    assert all(c.isprintable() for c in error.rstrip("\n")), repr(error)
    assert len(error) < 800 and "… (1 column)" in error, error
    # Many columns: the first ones, and how many there are.
    path.write_text(",".join(f"column_{i}" for i in range(200)) + "\n")
    assert main(["replay", str(path)]) == 2
    error = capsys.readouterr().err
    assert "columns: column_0, column_1," in error and ", … (200 columns)" in error, error
    assert len(error) < 800, error


@pytest.mark.parametrize("command", ["replay", "backtest"])
def test_a_default_currency_that_is_no_code_is_refused_up_front(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    # --currency usd was given to every row without one: scored so in-process, and every
    # row refused by the server with --target, the run ending 0.
    path = write_csv(tmp_path / "f.csv", HEADER, ROWS)
    flags = [*MAP_FLAGS, *(["--label", "TX_FRAUD"] if command == "backtest" else [])]
    assert main([command, str(path), *flags, "--currency", "usd"]) == 2
    assert "--currency must be an ISO 4217 code like USD, got 'usd'" in capsys.readouterr().err
    assert main([command, str(path), *flags, "--currency", "EUR"]) == 0


@pytest.mark.parametrize("command", ["replay", "backtest"])
def test_help_says_what_a_file_must_hold(capsys: pytest.CaptureFixture[str], command: str) -> None:
    # An outsider with a file of their own: the flags alone did not say which columns are
    # needed, in which forms, nor (backtest) which label cells count.
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert (
        "FILE needs columns (in NDJSON, keys) for timestamp, account_id, merchant_id and amount"
        in out
    )
    assert "Timestamps: RFC 3339 (2026-03-02T09:00:00Z), 'YYYY-MM-DD HH:MM:SS' in --timezone" in out
    assert ("Labels: 1/0, true/false, yes/no or fraud/legit" in out) == (command == "backtest")


@pytest.mark.parametrize("command", ["replay", "backtest"])
def test_a_file_of_which_no_row_can_be_read_fails_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    # Dates without times in every row: "0 labelled transactions", every metric "-", and
    # exit status 0, which a script took for a run that measured something.
    header = ["id", "timestamp", "account_id", "merchant_id", "amount", "is_fraud"]
    rows = [[f"x{i}", "2026-03-02", "a", "m", "5.00", "0"] for i in range(3)]
    path = write_csv(tmp_path / "dates.csv", header, rows)
    flags = ["--label", "is_fraud"] if command == "backtest" else []
    assert main([command, str(path), *flags]) == 1
    captured = capsys.readouterr()
    assert "3 invalid rows" in captured.out
    assert f"error: no row of {path} could be read (see the invalid rows above)" in captured.err
    # One row read is a run: it goes through.
    rows[1][1] = "2026-03-02 09:00:00"
    path = write_csv(tmp_path / "dates.csv", header, rows)
    assert main([command, str(path), *flags]) == 0


def test_a_header_only_file_says_nothing_was_scored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_csv(tmp_path / "empty.csv", HEADER, [])
    assert main(["replay", str(path), *MAP_FLAGS]) == 0
    out = capsys.readouterr().out
    assert "0 rows read" in out and "event time: none (no row scored)" in out
    assert "None" not in out
    assert main(["backtest", str(path), *MAP_FLAGS, "--label", "TX_FRAUD"]) == 0
    out = capsys.readouterr().out
    assert "alerts: 0 (-/day)" in out and "None" not in out


async def test_a_replay_outlives_a_restart_of_its_server(
    aiohttp_server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # An operator restarts the server under a replay: shutting down, then a few seconds
    # without a listener while the new process loads its state (a big snapshot takes that).
    settings = make_settings(tmp_path / "data")
    first = await aiohttp_server(create_app(settings))
    port = first.port
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
    rows = [[f"rs-{i}", (t0 + dt.timedelta(seconds=i)).isoformat(), f"c-{i % 7}", "t-1", "5.00",
             "", "", "0", "0"] for i in range(40)]  # fmt: skip
    path = write_csv(tmp_path / "f.csv", HEADER, rows)
    # 40 s of event time at 5x: the rows go out over 8 s.
    argv = ["replay", str(path), *MAP_FLAGS, "--target", f"http://127.0.0.1:{port}",
            "--api-key", API_KEY, "--speed", "5"]  # fmt: skip
    replay = asyncio.create_task(asyncio.to_thread(main, argv))
    await asyncio.sleep(1.5)
    await first.close()
    await asyncio.sleep(5.0)
    second = await aiohttp_server(create_app(settings), port=port)
    assert await asyncio.wait_for(replay, 60) == 0
    out = capsys.readouterr().out
    assert "sent 40, answered 40;" in out
    assert "refused by the server 0; failed (request refused whole or unanswered) 0" in out
    # Every row is stored once, across both processes' lives.
    await second.close()
    with contextlib.closing(sqlite3.connect(settings.db_path)) as conn:
        assert conn.execute("SELECT count(*) FROM transactions").fetchone() == (40,)


@pytest.mark.parametrize("command", ["replay", "backtest"])
@pytest.mark.parametrize("parallel", ["off", "on"])
def test_a_file_that_cannot_be_read_is_one_line_naming_it_and_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, parallel: str
) -> None:
    # It was Python's own `error: [Errno 2] No such file or directory: '/nope.csv'`.
    flags = ["--parallel", parallel, *(["--label", "is_fraud"] if command == "backtest" else [])]
    missing = tmp_path / "nope.csv"
    assert main([command, str(missing), *flags]) == 1
    assert capsys.readouterr().err == f"error: cannot read {missing}: no such file\n"
    assert main([command, str(tmp_path), *flags]) == 1
    assert capsys.readouterr().err == f"error: cannot read {tmp_path}: it is a directory\n"


def test_why_a_file_cannot_be_read_is_said_in_words() -> None:
    # Tests run as root here, whom no file mode stops: the wording is checked directly.
    path = Path("/data/tx.csv")
    denied = PermissionError(errno.EACCES, "Permission denied", str(path))
    assert str(cannot_read(path, denied)) == f"cannot read {path}: permission denied"
    other = OSError(errno.EIO, "Input/output error", str(path))
    assert str(cannot_read(path, other)) == f"cannot read {path}: input/output error"
