"""Keyboard-only triage kept up for hours, in a real Chromium: j, Enter, l, Enter, Esc, again.

The keyboard never leaves the table or the drawer, so the table is held the whole time. QA
on the demo: after 40 s the pill read `Paused · 35 new` while 17 critical alerts waited
unseen, and every j after an Esc skipped an alert. Here the pill says how many of the
alerts waiting are critical (and says so once to a screen reader), closing the drawer on an
alert the analyst resolved lets in what waited with the cursor's row kept where it was on
screen, the j after that lands on the next alert rather than past it, and j at the end of a
held list says what waits."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, expect

from tests.browser_support import (
    T0,
    Analyst,
    Ingest,
    eventually,
    impossible_travel,
    sign_in,
    travel_at_night,
)

pytestmark = pytest.mark.browser


async def a_queue(alice: Analyst, ingest: Ingest, n: int) -> list[str]:
    """`n` high alerts in one post, ten minutes apart (in the afternoon: at night they would
    be critical): the queue lists them in that order."""
    transactions: list[dict[str, Any]] = []
    for k in range(n):
        transactions += impossible_travel(
            f"acct-r{k:02d}", "Shop", T0 + dt.timedelta(minutes=10 * k)
        )
    ids = await ingest(transactions)
    assert len(ids) == n
    await expect(alice.page.locator("#alerts-table")).to_have_attribute("aria-rowcount", str(n + 1))
    assert (await drawn(alice))[: min(n, 6)] == ids[: min(n, 6)], "one severity: oldest first"
    return ids


async def drawn(analyst: Analyst) -> list[str]:
    """The ids of the rows drawn, in the table's order."""
    ids: list[str] = await analyst.rows.evaluate_all("rows => rows.map(r => r.dataset.id)")
    return ids


async def critical(ingest: Ingest, name: str) -> str:
    [alert_id] = await ingest(travel_at_night(name))
    return alert_id


async def row_top(alice: Analyst, alert_id: str) -> float:
    box = await alice.row(alert_id).bounding_box()
    assert box is not None
    return float(box["y"])


async def resolve_in_the_drawer(alice: Analyst, account: str) -> None:
    """Enter, l, Enter on the focused row: the drawer open on it, the alert resolved as
    legitimate, the keyboard back in the drawer."""
    await alice.press("Enter")
    await expect(alice.drawer.locator("h2")).to_have_text(f"Account {account}")
    await alice.press("l")
    dialog = alice.page.get_by_role("dialog", name=re.compile("^Resolve"))
    await expect(dialog).to_be_visible()
    await alice.press("Enter")
    await expect(dialog).to_be_hidden()
    await expect(alice.drawer.get_by_text("Resolved", exact=True).first).to_be_visible()
    await expect(alice.drawer).to_be_focused()


# Every change to the screen reader's announcement of what waits, in order.
RECORD_ANNOUNCEMENTS = """() => {
    window.__said = [];
    const region = document.getElementById("held-announcer");
    if (!region) return;
    new MutationObserver(() => window.__said.push(region.textContent)).observe(
        region, { childList: true, characterData: true, subtree: true });
}"""


async def said(alice: Analyst) -> list[str]:
    """What was announced (the region emptied meanwhile left out)."""
    texts: list[str] = await alice.page.evaluate("() => window.__said.filter(Boolean)")
    return texts


async def test_the_paused_pill_says_how_many_waiting_alerts_are_critical(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    await a_queue(alice, ingest, 3)
    await page.evaluate(RECORD_ANNOUNCEMENTS)
    paused = page.locator("#alerts-paused")
    await alice.press("j")
    await expect(paused).to_have_text("Paused")

    # A high alert waits: nothing urgent.
    await ingest(impossible_travel("acct-h", "Shop", T0 + dt.timedelta(days=1)))
    pill = page.get_by_role("button", name="Paused · 1 new — show")
    await expect(pill).to_be_visible()
    await expect(pill).not_to_have_class(re.compile(r"\bis-urgent\b"))

    # A critical one: the pill counts it, looks urgent, and a screen reader hears it once.
    first = await critical(ingest, "acct-c1")
    pill = page.get_by_role("button", name="Paused · 2 new · 1 critical — show")
    await expect(pill).to_be_visible()
    await expect(pill).to_have_class(re.compile(r"\bis-urgent\b"))
    danger = await page.evaluate(
        """() => {
            const probe = document.createElement("span");
            probe.style.color = "var(--danger)";
            document.body.append(probe);
            const color = getComputedStyle(probe).color;
            probe.remove();
            return color;
        }"""
    )
    assert await pill.evaluate("(el) => getComputedStyle(el).borderColor") == danger
    await eventually(lambda: said(alice), ["Critical alert waiting while the table is paused."])

    # The next critical is counted, not announced again.
    await critical(ingest, "acct-c2")
    await expect(paused).to_have_text("Paused · 3 new · 2 critical")
    await ingest(impossible_travel("acct-h2", "Shop", T0 + dt.timedelta(days=2)))
    await expect(paused).to_have_text("Paused · 4 new · 2 critical")
    assert await said(alice) == ["Critical alert waiting while the table is paused."]

    # Shown (Esc), they are listed, the critical ones first; held again, the first critical
    # to wait is announced again.
    await alice.press("Escape")
    await expect(paused).to_be_hidden()
    await expect(alice.rows.first).to_have_attribute("data-id", first)
    await alice.press("j")
    await expect(paused).to_have_text("Paused")
    await critical(ingest, "acct-c3")
    await expect(paused).to_have_text("Paused · 1 new · 1 critical")
    await eventually(lambda: said(alice), ["Critical alert waiting while the table is paused."] * 2)
    assert alice.problems == []
