"""Counts in the commands' output, with the noun that agrees with them."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`n` with thousands separators and `noun`, made plural unless `n` is 1: "1 day",
    "2 days", "1,000 rows". `plural` for a noun that does not just take an s."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"
