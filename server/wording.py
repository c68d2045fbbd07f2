"""Counts and sizes in the commands' and the API's words, with the noun that agrees with them."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`n` with thousands separators and `noun`, made plural unless `n` is 1: "1 day",
    "2 days", "1,000 rows". `plural` for a noun that does not just take an s."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def size_in_words(n: int) -> str:
    """A size in bytes in the largest binary unit it is a whole number of: "8 MiB",
    "1,500 bytes", so a limit reads as it was set."""
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size and n % size == 0:
            return f"{n // size:,} {unit}"
    return counted(n, "byte")
