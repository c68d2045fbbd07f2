"""The keyboard shortcuts are described in three places: keyboard.js's header (for whoever
changes the keys), the page's `?` list (for the analyst) and docs/dashboard.md. They must
say the same about what a, f and l act on: the checked alerts while any are checked, as
the bulk bar does, and the drawer's alert while it is open, as its buttons do."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def plain(text: str) -> str:
    """Tags, comment markers and line breaks out: the words as read."""
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"^\s*//\s?", "", text, flags=re.MULTILINE)
    return " ".join(text.split())


def keyboard_header() -> str:
    lines = (ROOT / "static/js/keyboard.js").read_text().splitlines()
    header = [line for line in lines[: lines.index("")] if line.startswith("//")]
    return plain("\n".join(header))


def shortcuts_list() -> str:
    page = (ROOT / "templates/dashboard.html").read_text()
    match = re.search(r'<dialog[^>]*id="shortcuts".*?</dialog>', page, flags=re.DOTALL)
    assert match, "no shortcuts dialog in the page"
    return plain(match.group(0))


def docs_keyboard() -> str:
    docs = (ROOT / "docs/dashboard.md").read_text()
    match = re.search(r"^## Keyboard\n(.*?)^## ", docs, flags=re.DOTALL | re.MULTILINE)
    assert match, "no Keyboard section in docs/dashboard.md"
    return plain(match.group(1))


@pytest.mark.parametrize("source", [keyboard_header, shortcuts_list, docs_keyboard])
def test_a_f_and_l_on_the_selection_and_the_drawers_alert(source: Callable[[], str]) -> None:
    text = source()
    # On the checked (selected) alerts while there are some...
    assert re.search(r"a, f and l [^.]*\b(selection|them|checked alerts)\b", text), text
    # ...and on the alert the drawer (the details) shows while it is open.
    assert re.search(r"(drawer|details) open,? [^.]*\balert\b", text), text
