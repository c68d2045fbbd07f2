"""Replay's reader of the usual CSV row (`compile_fast_row`) against the general path: the
same rows, errors, notes and counts, whatever the row holds."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from server import replay_source
from server.replay_source import (
    FastRow,
    Row,
    Source,
    SourceOptions,
    compile_fast_row,
    parse_timezone,
)
from tests.test_replay import write_csv

HEADER = ["id", "timestamp", "account_id", "merchant_id", "amount", "currency",
          "merchant_name", "mcc", "country", "lat", "lon", "channel", "device_id", "ip",
          "is_fraud", "scenario"]  # fmt: skip
USUAL = ["tx-1", "2026-02-28T19:00:01.770151-05:00", "acct-1", "mrc-1", "13.71", "USD",
         "Chung-Bennett Grill", "5814", "US", "40.7128", "-74.006", "pos", "", "", "0",
         ""]  # fmt: skip


def _with(**cells: str) -> list[str]:
    row = list(USUAL)
    for name, value in cells.items():
        row[HEADER.index(name)] = value
    return row


IRREGULAR: list[list[str]] = [
    _with(id=""),
    _with(id="  "),
    _with(id="x" * 129),
    _with(id="a\tb"),
    _with(account_id=""),
    _with(merchant_id=" "),
    _with(timestamp=""),
    _with(timestamp="2026-03-02"),
    _with(timestamp="2026-03-02 09:00:00"),
    _with(timestamp="2026-03-02t09:00:00z"),
    _with(timestamp="2026-03-02T09:00:00.5+0100"),
    _with(timestamp="1772442000"),
    _with(timestamp="1772442000123"),
    _with(timestamp="99999999999999999999999"),
    _with(timestamp="-5"),
    _with(timestamp="2026-02-30T10:00:00Z"),
    _with(timestamp="2026-03-02T24:00:00Z"),
    _with(timestamp="2026-03-02T23:59:60Z"),
    _with(timestamp="2026-03-02T10:00:00+24:00"),
    _with(timestamp="2026-W09-1T10:00:00Z"),
    _with(amount=""),
    _with(amount="abc"),
    _with(amount="-5"),
    _with(amount="-0"),
    _with(amount="+5"),
    _with(amount=" 5"),
    _with(amount="1_000"),
    _with(amount="1e3"),
    _with(amount="1E-2"),
    _with(amount="0E-20"),
    _with(amount="0e-999999999"),
    _with(amount="12.345"),
    _with(amount="12.3450"),
    _with(amount="1e20"),
    _with(amount="999999999999999.99"),
    _with(amount="NaN"),
    _with(amount="Infinity"),
    _with(amount="1200.5", currency="JPY"),
    _with(amount="1200.0", currency="JPY"),
    _with(amount="1.234", currency="BHD"),
    _with(amount="1.2345", currency="BHD"),
    _with(currency="usd"),
    _with(currency="XTS"),
    _with(currency=""),
    _with(currency="", amount="1.005"),
    _with(country="fr"),
    _with(country="NZ"),
    _with(country=""),
    _with(lat="91"),
    _with(lat="-90"),
    _with(lat="nan"),
    _with(lat="abc"),
    _with(lat=""),
    _with(lon="-181"),
    _with(lon="inf"),
    _with(lon="1e2"),
    _with(is_fraud="1"),
    _with(is_fraud=""),
    _with(is_fraud=" 1"),
    _with(is_fraud="yes"),
    _with(is_fraud="2"),
    _with(is_fraud="1.0"),
    _with(merchant_name="bell\x07"),
    _with(merchant_name="evil\u202egnp.exe"),
    _with(merchant_name="m" * 200),
    _with(merchant_name="m" * 257),
    _with(merchant_name="caf\xe9\xa0bar"),
    _with(device_id="d" * 120),
    _with(mcc="", channel="", device_id="dev-1", ip="10.0.0.1"),
    USUAL[:-1],
    [*USUAL, "extra"],
]


def _general_only(*args: Any) -> FastRow:
    """What the reader does without the fast path: every row the general way."""
    return lambda cells, line, n: None


def _read(
    path: Path, options: SourceOptions, compile_fast: Callable[..., FastRow]
) -> tuple[list[str], list[str], tuple[int, int, int]]:
    """Every item (repr: a timestamp's offset included), the notes and the counts."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(replay_source, "compile_fast_row", compile_fast)
        with Source(path, options) as source:
            items = [repr(item) for item in source]
            counts = (source.rows_read, source.amounts_rounded, source.labels_unread)
            return items, source.notes(), counts


OPTIONS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "exact amounts": {"round_amounts": False},
    "offset zone, yen": {"timezone": parse_timezone("+02:00"), "default_currency": "JPY"},
    "named zone, ms": {"timezone": parse_timezone("Europe/Paris"), "time_unit": "ms"},
    "hours": {"time_unit": "h"},
}


@pytest.mark.parametrize("label", ["is_fraud", None])
@pytest.mark.parametrize("options", OPTIONS.values(), ids=list(OPTIONS))
def test_fast_row_reads_every_row_as_the_general_path(
    tmp_path: Path, options: dict[str, Any], label: str | None
) -> None:
    rows = [USUAL, *[cells for row in IRREGULAR for cells in (row, USUAL)]]
    path = write_csv(tmp_path / "rows.csv", HEADER, rows)
    source_options = SourceOptions(mapping={}, label=label, **options)
    fast_rows: list[Row] = []

    def counting(*args: Any) -> FastRow:
        fast = compile_fast_row(*args)

        def counted(cells: list[str], line: int, n: int) -> Row | None:
            row = fast(cells, line, n)
            if row is not None:
                fast_rows.append(row)
            return row

        return counted

    general = _read(path, source_options, _general_only)
    assert general == _read(path, source_options, counting)
    # The usual rows went the fast way (and the items above compared them).
    assert len(fast_rows) >= len(IRREGULAR) + 1
    assert any("error" in item.lower() for item in general[0])


@pytest.mark.parametrize(
    ("header", "mapping"),
    [
        (["timestamp", "account_id", "merchant_id", "amount"], {}),  # ids are row numbers
        (["amount", "merchant_id", "is_fraud", "timestamp", "account_id", "country", "ip"], {}),
        (["account_id", "timestamp", "merchant_id", "amount"], {"id": "account_id"}),
    ],
)
def test_fast_row_with_other_columns(
    tmp_path: Path, header: list[str], mapping: dict[str, str]
) -> None:
    rows = [
        [dict(zip(HEADER, row, strict=True)).get(name, "") for name in header]
        for row in [USUAL, *IRREGULAR[:40], USUAL]
        if len(row) == len(HEADER)
    ]
    path = write_csv(tmp_path / "rows.csv", header, rows)
    label = "is_fraud" if "is_fraud" in header else None
    options = SourceOptions(mapping=mapping, label=label)
    assert _read(path, options, _general_only) == _read(path, options, compile_fast_row)


def _write_lines(path: Path, records: list[list[str] | str], quoting: int) -> Path:
    """`records` (a string: a line written as it is) with csv's `quoting`, lines ending
    in \\r\\n or \\n by turns."""
    out = io.StringIO()
    for k, record in enumerate(records):
        if isinstance(record, str):
            out.write(record)
            continue
        writer = csv.writer(out, quoting=quoting, lineterminator="\r\n" if k % 2 else "\n")
        writer.writerow(record)
    path.write_text(out.getvalue(), encoding="utf-8", newline="")
    return path


def test_lines_split_without_the_csv_module_read_as_with_it(tmp_path: Path) -> None:
    # Every line quoted goes through the csv module; quoted only where needed, most lines
    # are split at the delimiter here: the same rows, errors and line numbers either way.
    records: list[list[str] | str] = [
        HEADER,
        USUAL,
        "\n",
        _with(merchant_name="Peters, Mueller and Rodriguez Fuel"),
        _with(merchant_name='5" screen'),
        "\r\n",
        _with(merchant_name="two\nlines"),
        USUAL,
        _with(merchant_name="x" * 2000),  # over the field size limit set below
        _with(ip="a\x00b"),
        " \n",
        _with(amount="abc"),
        USUAL[:-2],
        _with(merchant_name="three\r\nlines\nhere"),
        USUAL,
        USUAL,
    ]
    quoted = _write_lines(tmp_path / "all.csv", records, csv.QUOTE_ALL)
    minimal = _write_lines(tmp_path / "minimal.csv", records, csv.QUOTE_MINIMAL)
    options = SourceOptions(mapping={}, label="is_fraud")
    limit = csv.field_size_limit(1000)
    try:
        expected = _read(quoted, options, compile_fast_row)
        assert _read(minimal, options, compile_fast_row) == expected
    finally:
        csv.field_size_limit(limit)
    lines = [item.split(",")[0] for item in expected[0]]  # blank lines are no rows
    assert lines == [
        *("Row(line=2", "Row(line=4", "Row(line=5", "RowError(line=8", "Row(line=9"),
        *("RowError(line=10", "RowError(line=11", "RowError(line=12", "RowError(line=13"),
        *("RowError(line=14", "RowError(line=17", "Row(line=18", "Row(line=19"),
    ]
    assert "unreadable CSV: field larger than field limit (1000)" in expected[0][5]
