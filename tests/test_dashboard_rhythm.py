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
    STATUS,
    T0,
    Analyst,
    Ingest,
    eventually,
    impossible_travel,
    listed,
    resolve_in_the_drawer,
    row_top,
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
    assert (await listed(alice))[: min(n, 6)] == ids[: min(n, 6)], "one severity: oldest first"
    return ids


async def critical(ingest: Ingest, name: str) -> str:
    [alert_id] = await ingest(travel_at_night(name))
    return alert_id


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


async def test_esc_after_resolving_in_the_drawer_lets_in_what_waited_and_j_takes_the_next(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    # The rhythm from the top of the queue: j, Enter, l, Enter, Esc, and again.
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    queue = await a_queue(alice, ingest, 6)
    paused = page.locator("#alerts-paused")
    await alice.press("j")
    assert await alice.focused_row_id() == queue[0]
    await resolve_in_the_drawer(alice, "acct-r00")
    crit = await critical(ingest, "acct-crit")
    await expect(paused).to_have_text(re.compile(r"^Paused · 1 new"))
    top = await row_top(alice, queue[0])

    # Esc: the analyst has finished with the alert. What waited is listed in its place, the
    # resolved row goes to the end, and the cursor is on the alert now at the top of the
    # queue, the critical one, where the resolved row was on screen. The keyboard is still in
    # the table, which holds still again.
    await alice.press("Escape")
    await expect(alice.drawer).to_be_hidden()
    await eventually(lambda: listed(alice), [crit, *queue[1:], queue[0]])
    await expect(page.locator("#alert-rows tr.is-cursor")).to_have_attribute("data-id", crit)
    await eventually(alice.focused_row_id, crit)
    assert abs(await row_top(alice, crit) - top) <= 1
    await expect(paused).to_have_text("Paused")

    # j lands on it: the analyst has not been on it yet. Then the rhythm again.
    await alice.press("j")
    assert await alice.focused_row_id() == crit
    await resolve_in_the_drawer(alice, "acct-crit")
    await alice.press("Escape")
    await eventually(alice.focused_row_id, queue[1])
    await alice.press("j")
    assert await alice.focused_row_id() == queue[1]
    await resolve_in_the_drawer(alice, "acct-r01")
    await alice.press("Escape")
    await eventually(alice.focused_row_id, queue[2])
    await alice.press("j")
    assert await alice.focused_row_id() == queue[2], "no alert skipped"
    # Having been on it, the next j moves on as always.
    await alice.press("j")
    assert await alice.focused_row_id() == queue[3]
    await alice.press("k")
    assert await alice.focused_row_id() == queue[2]
    for alert_id in (queue[0], queue[1], crit):
        await expect(alice.cell(alert_id, STATUS)).to_have_text("Resolved Legitimate")
    assert alice.problems == []


async def test_a_resolve_from_the_table_lets_in_what_waited_and_nothing_else_does(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    # QA: working from the table alone (j, l, Enter, and again, never the drawer) never let
    # the table go: only the drawer's close after a resolve did, or Esc. The pill counted
    # the critical alerts waiting for as long as the analyst worked.
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    queue = await a_queue(alice, ingest, 6)
    paused = page.locator("#alerts-paused")
    dialog = page.get_by_role("dialog", name=re.compile("^Resolve"))
    await alice.press("j")
    assert await alice.focused_row_id() == queue[0]
    crit = await critical(ingest, "acct-crit")
    await expect(paused).to_have_text("Paused · 1 new · 1 critical")
    top = await row_top(alice, queue[0])

    # l, Enter: once the server has answered (the dialog holds the keys until then), what
    # waited is listed in its place, the resolved row goes to the end, and the cursor is on
    # the alert now at the top of the queue, where the resolved row was on screen.
    await alice.press("l")
    await expect(dialog).to_be_visible()
    await alice.press("Enter")
    await expect(dialog).to_be_hidden()
    await eventually(lambda: listed(alice), [crit, *queue[1:], queue[0]])
    await expect(page.locator("#alert-rows tr.is-cursor")).to_have_attribute("data-id", crit)
    await eventually(alice.focused_row_id, crit)
    assert abs(await row_top(alice, crit) - top) <= 1
    # The table holds still again for the keys to come: an alert raised now waits.
    await expect(paused).to_have_text("Paused")
    [later] = await ingest(travel_at_night("acct-later", T0 + dt.timedelta(days=1)))
    await expect(paused).to_have_text("Paused · 1 new · 1 critical")

    # j lands on the alert the cursor was put on; an acknowledge (answered whenever the
    # server answers, perhaps between two keys) lets nothing in; nor do j and k.
    await alice.press("j")
    assert await alice.focused_row_id() == crit
    await alice.press("a")
    await expect(alice.cell(crit, STATUS)).to_have_text("Acknowledged")
    await alice.press("j", "k")
    assert await alice.focused_row_id() == crit
    await expect(paused).to_have_text("Paused · 1 new · 1 critical")
    assert await listed(alice) == [crit, *queue[1:], queue[0]]

    # The next resolve from the table lets it in, and j goes on from the alert that took
    # the resolved one's place.
    await alice.press("f")
    await expect(dialog).to_be_visible()
    await alice.press("Enter")
    await expect(dialog).to_be_hidden()
    await eventually(lambda: listed(alice), [later, *queue[1:], crit, queue[0]])
    await eventually(alice.focused_row_id, later)
    await expect(paused).to_have_text("Paused")
    await alice.press("j")
    assert await alice.focused_row_id() == later
    await alice.press("j")
    assert await alice.focused_row_id() == queue[1]
    assert alice.problems == []


async def test_finishing_an_alert_down_the_queue_keeps_its_place_on_screen(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    # Scrolled down the queue: the critical alerts that waited sort above the view, and the
    # panel head says so, urgently; the cursor's row stays where the analyst was looking.
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    queue = await a_queue(alice, ingest, 30)
    paused = page.locator("#alerts-paused")
    # Down past the first screen, then back up into the middle of the view (at its foot, the
    # Undo notice's room, taken from the table as the drawer closes, would lift the row).
    await alice.press(*["j"] * 16, *["k"] * 5)
    assert await alice.focused_row_id() == queue[10]
    assert await page.locator("#table-wrap").evaluate("(el) => el.scrollTop") > 0
    await resolve_in_the_drawer(alice, "acct-r10")
    await critical(ingest, "acct-c1")
    await critical(ingest, "acct-c2")
    await expect(paused).to_have_text(re.compile(r"^Paused · 2 new"))
    top = await row_top(alice, queue[10])

    await alice.press("Escape")
    await expect(alice.drawer).to_be_hidden()
    await expect(page.locator("#alert-rows tr.is-cursor")).to_have_attribute("data-id", queue[11])
    await eventually(alice.focused_row_id, queue[11])
    assert abs(await row_top(alice, queue[11]) - top) <= 1
    # Two critical alerts listed above it and the resolved one gone from there: the 13th
    # listed (aria-rowindex counts from 1, the heading row).
    await expect(alice.row(queue[11])).to_have_attribute("aria-rowindex", "14")
    above = page.get_by_role("button", name="2 new above · 2 critical — show")
    await expect(above).to_be_visible()
    await expect(above).to_have_class(re.compile(r"\bis-urgent\b"))
    await expect(paused).to_have_text("Paused")
    await alice.press("j")
    assert await alice.focused_row_id() == queue[11]
    assert alice.problems == []


async def test_j_at_the_end_of_a_held_list_says_what_waits(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    queue = await a_queue(alice, ingest, 4)
    paused = page.locator("#alerts-paused")
    await alice.press("j", "End")
    assert await alice.focused_row_id() == queue[-1]
    crit = await critical(ingest, "acct-crit")
    await ingest(impossible_travel("acct-h", "Shop", T0 + dt.timedelta(days=1)))
    await expect(paused).to_have_text(re.compile(r"^Paused · 2 new"))

    # j on the last row: the notice says why nothing moved, once however often it is pressed.
    notice = page.locator("#notices .notice", has_text="Last alert listed")
    await alice.press("j")
    await expect(notice).to_have_text(
        re.compile(r"^Last alert listed — 2 new waiting, 1 critical: Esc shows them\.")
    )
    await alice.press("j", "j", "ArrowDown")
    await expect(notice).to_have_count(1)
    assert await alice.focused_row_id() == queue[-1]

    # With the drawer open, Esc closes it first.
    await alice.press("Enter")
    await expect(alice.drawer).to_be_visible()
    await alice.press("j")
    await expect(notice).to_have_text(
        re.compile(
            r"^Last alert listed — 2 new waiting, 1 critical: "
            r"Esc closes the details, and Esc again shows them\."
        )
    )
    await expect(notice).to_have_count(1)
    await alice.press("Escape", "Escape")
    await expect(paused).to_be_hidden()
    await expect(alice.rows.first).to_have_attribute("data-id", crit)
    assert alice.problems == []
