"""Shared triage in a real Chromium: "next", notes, release, assign, other dispositions and
reopen, each made on the server and seen live by a second analyst; bulk assign-to-me."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Route, expect

from tests.browser_support import (
    OWNER,
    STATUS,
    T0,
    Ingest,
    animations_done,
    impossible_travel,
    listed_alerts,
    screenshot,
    sign_in,
    travel_at_night,
)

pytestmark = pytest.mark.browser


async def test_next_notes_release_assign_resolve_and_reopen_are_shared(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    alice = await sign_in(browser, server, "alice")
    bob = await sign_in(browser, server, "bob")
    [high] = await ingest(impossible_travel("acct-high", "High Ltd"))
    [critical] = await ingest(travel_at_night("acct-crit"))
    # Both pages list it before Alice acts: an "n" pressed before her table has drawn the new
    # row opens the drawer, which holds the table, and the row waits there ("Paused · 1 new").
    await expect(bob.row(critical)).to_be_visible()
    await expect(alice.row(critical)).to_be_visible()

    # n takes the most urgent alert nobody holds (the critical one, though it is newer) and
    # opens it; Bob sees Alice holding it.
    await alice.page.locator("body").click(position={"x": 5, "y": 5})
    await alice.press("n")
    drawer = alice.drawer
    await expect(drawer).to_be_visible()
    await expect(drawer.locator("h2")).to_have_text("Account acct-crit")
    await expect(alice.cell(critical, OWNER)).to_have_text("alice (you)")
    await expect(bob.cell(critical, OWNER)).to_have_text("alice")
    await expect(drawer.locator(".timeline")).to_contain_text("Acknowledged (next) by alice")

    # Bob follows the same alert in his drawer; Alice's note reaches it live.
    await bob.row(critical).locator("td").nth(2).click()
    await expect(bob.drawer.locator("h2")).to_have_text("Account acct-crit")
    await expect(bob.drawer.locator(".notes-list")).to_have_count(0)
    await drawer.get_by_label("New note").fill("Called the <b>cardholder</b>: not her")
    await drawer.get_by_role("button", name="Add note").click()
    await expect(drawer.get_by_label("New note")).to_have_value("")
    for analyst, author in ((alice, "alice (you)"), (bob, "alice")):
        note = analyst.drawer.locator(".notes-list li")
        await expect(note).to_have_count(1)
        await expect(note.locator(".note-text")).to_have_text(
            "Called the <b>cardholder</b>: not her"
        )
        await expect(note).to_contain_text(author)
        await expect(analyst.drawer.locator(".timeline")).to_contain_text("Note by alice")

    # Release gives it back to the queue; then Alice assigns it to Bob.
    await drawer.get_by_role("button", name="Release").click()
    await expect(bob.cell(critical, STATUS)).to_have_text("Open")
    await expect(bob.cell(critical, OWNER)).to_have_text("—")
    await drawer.get_by_label("Assign to").fill("bob")
    await drawer.get_by_role("button", name="Assign", exact=True).click()
    await expect(bob.cell(critical, OWNER)).to_have_text("bob (you)")
    await expect(alice.cell(critical, OWNER)).to_have_text("bob")
    await expect(bob.drawer.locator(".timeline")).to_contain_text("Assigned to bob by alice")
    # Assigning to someone who cannot triage is refused, and says why.
    await bob.drawer.get_by_label("Assign to").fill("nobody")
    await bob.drawer.get_by_role("button", name="Assign", exact=True).click()
    await expect(bob.page.locator("#notices")).to_contain_text("'nobody' is not an analyst")
    await expect(bob.drawer.get_by_label("Assign to")).to_have_value("nobody")

    # The resolve dialog offers the server's dispositions, "duplicate" included.
    await bob.drawer.get_by_role("button", name="Legitimate…").click()
    dialog = bob.page.get_by_role("dialog")
    await dialog.get_by_label("Duplicate").check()
    await expect(dialog.locator("#resolve-confirm")).to_have_text("Resolve as duplicate")
    await dialog.locator("#resolve-confirm").click()
    await expect(alice.cell(critical, STATUS)).to_have_text("Resolved Duplicate")

    # Alice reopens it: open and unowned again on both screens.
    await drawer.get_by_role("button", name="Reopen").click()
    for analyst in (alice, bob):
        await expect(analyst.cell(critical, STATUS)).to_have_text("Open")
    await expect(drawer.locator(".timeline")).to_contain_text("Reopened (was duplicate) by alice")
    # The queue is left with the high alert for whoever asks next.
    await bob.page.keyboard.press("Escape")
    await bob.page.get_by_role("button", name="Take next").click()
    await expect(bob.cell(critical, OWNER)).to_have_text("bob (you)")
    await bob.page.get_by_role("button", name="Take next").click()
    await expect(bob.cell(high, OWNER)).to_have_text("bob (you)")
    await bob.page.get_by_role("button", name="Take next").click()
    await expect(bob.page.locator("#notices")).to_contain_text("Nothing left to take")
    assert alice.problems == []
    assert bob.problems == []


async def test_bulk_assign_to_me_reports_each_conflict(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    alice = await sign_in(browser, server, "alice")
    bob = await sign_in(browser, server, "bob")
    [first] = await ingest(impossible_travel("acct-b1", "One Ltd"))
    [second] = await ingest(impossible_travel("acct-b2", "Two Ltd", T0 + dt.timedelta(hours=1)))
    await expect(alice.row(second)).to_be_visible()
    for alert_id in (first, second):
        await alice.row(alert_id).get_by_role("checkbox").check()
    # Bob takes the second one before Alice's bulk action reaches it.
    await bob.row(second).get_by_role("button", name=re.compile("^Acknowledge")).click()
    await expect(bob.cell(second, OWNER)).to_have_text("bob (you)")

    await alice.page.locator("#bulk-bar").get_by_role("button", name="Assign to me").click()
    notice = alice.page.locator("#notices")
    await expect(notice).to_contain_text("Assigned to you 1 of 2. 1 conflict.")
    await expect(notice).to_contain_text("Account acct-b2: already acknowledged by bob")
    await expect(alice.cell(first, OWNER)).to_have_text("alice (you)")
    await expect(bob.cell(first, OWNER)).to_have_text("alice")
    assert alice.problems == []


async def test_presence_shows_who_else_is_looking_on_the_row_and_in_the_drawer(
    browser: Browser, server: TestServer, ingest: Ingest, tmp_path: Path
) -> None:
    alice = await sign_in(browser, server, "alice")
    bob = await sign_in(browser, server, "bob")
    [first] = await ingest(impossible_travel("acct-p1", "One Ltd"))
    [second] = await ingest(impossible_travel("acct-p2", "Two Ltd", T0 + dt.timedelta(hours=1)))
    await expect(bob.row(second)).to_be_visible()
    await expect(alice.row(second)).to_be_visible()  # before her drawer holds the table

    await alice.row(first).locator("td").nth(2).click()
    await expect(alice.drawer).to_be_visible()
    await expect(bob.row(first).locator(".presence")).to_have_text("viewing: alice")
    # Nobody else is there yet; one's own presence is never shown.
    await expect(alice.drawer.locator("#drawer-presence")).to_be_hidden()
    await expect(alice.row(first).locator(".presence")).to_have_count(0)

    await bob.row(first).locator("td").nth(2).click()
    await expect(alice.drawer.locator("#drawer-presence")).to_have_text(
        "Also looking at this alert: bob"
    )
    await expect(bob.drawer.locator("#drawer-presence")).to_have_text(
        "Also looking at this alert: alice"
    )
    await animations_done(alice.page)
    await screenshot(alice.page, "presence.png", tmp_path)
    # Alice moves on with j: her presence follows her to the other alert.
    await alice.press("j")
    await expect(alice.drawer.locator("h2")).to_have_text("Account acct-p2")
    await expect(bob.row(second).locator(".presence")).to_have_text("viewing: alice")
    await expect(bob.drawer.locator("#drawer-presence")).to_be_hidden()

    # Bob's page goes away: his presence is cleared for Alice.
    await expect(alice.row(first).locator(".presence")).to_have_text("viewing: bob")
    await bob.page.context.close()
    await expect(alice.row(first).locator(".presence")).to_have_count(0)
    assert alice.problems == []


async def test_next_pressed_again_before_the_answer_claims_one_alert(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    ids = await listed_alerts(alice, ingest, 3)
    claims: list[str] = []

    async def slow(route: Route) -> None:
        # A slow network: the answer takes a second, and the analyst presses again.
        claims.append(route.request.url)
        await asyncio.sleep(1)
        await route.continue_()

    await page.route("**/api/v1/alerts/next", slow)
    await page.locator("body").click(position={"x": 5, "y": 5})
    await alice.press("n", "n")
    await page.get_by_role("button", name="Take next").click()
    await expect(alice.drawer.locator("h2")).to_have_text("Account acct-0")
    await expect(alice.cell(ids[0], OWNER)).to_have_text("alice (you)")
    # A held n repeats: the repeats claim nothing either.
    await alice.drawer.get_by_role("button", name="Close details").click()
    await page.evaluate(
        """() => document.body.dispatchEvent(
            new KeyboardEvent("keydown", { key: "n", repeat: true, bubbles: true }))"""
    )
    await page.wait_for_timeout(1500)
    assert len(claims) == 1, claims
    for alert_id in ids[1:]:
        await expect(alice.cell(alert_id, OWNER)).to_have_text("—")
    assert alice.problems == []
