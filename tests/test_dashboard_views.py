"""Filters, search, sort and saved views in a real Chromium: kept in the URL and the browser."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Request, expect

from server.auth import create_user
from server.state import STORE
from tests.browser_support import (
    MERCHANT,
    OWNER,
    PASSWORD,
    T0,
    Analyst,
    Ingest,
    bob_resolves,
    card_testing,
    eventually,
    impossible_travel,
    listed,
    sign_in,
    travel_at_night,
    tx,
)

pytestmark = pytest.mark.browser

# The saved-views menu with none saved: the built-in views and nothing else.
BUILT_IN_VIEWS = "EverythingUnowned critical and highHeld by meResolved, newest first"


def velocity(account: str, at: dt.datetime) -> list[dict[str, Any]]:
    """Five purchases nine seconds apart: the fifth raises a medium alert."""
    return [
        tx(f"{account}-v{i}", account, at + dt.timedelta(seconds=9 * i), 19.99, "m-steam")
        for i in range(5)
    ]


async def four_kinds(ingest: Ingest) -> dict[str, str]:
    """One alert of each kind, raised in this order (so oldest first is this order): high,
    medium, critical, and a card test of 1.00, which is medium too (little money at stake)."""
    ids = {}
    [ids["high_travel"]] = await ingest(impossible_travel("acct-travel", "Harrods"))
    [ids["medium"]] = await ingest(velocity("acct-velo", T0 + dt.timedelta(hours=1)))
    [ids["critical"]] = await ingest(travel_at_night("acct-night"))
    [ids["card"]] = await ingest(card_testing("acct-card", at=T0 + dt.timedelta(hours=2)))
    return ids


async def shows(alice: Analyst, expected: list[str]) -> None:
    """The table lists `expected`, in this order, within 5 s (filters and sorts apply after a
    round trip to the server)."""
    await eventually(lambda: listed(alice), expected)


async def test_filters_and_search_live_in_the_url_and_survive_reload(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    ids = await four_kinds(ingest)
    await expect(alice.rows).to_have_count(4)

    severity = page.get_by_role("group", name="Severity")
    await severity.get_by_role("button", name="Critical").click()
    await expect(severity.get_by_role("button", name="Critical")).to_have_attribute(
        "aria-pressed", "true"
    )
    await expect(alice.rows).to_have_count(1)
    await expect(alice.row(ids["critical"])).to_be_visible()
    await expect(page).to_have_url(re.compile(r"/\?severity=critical$"))
    await severity.get_by_role("button", name="Medium").click()
    await expect(page).to_have_url(re.compile(r"/\?severity=critical,medium$"))
    await shows(alice, [ids["critical"], ids["medium"], ids["card"]])

    # Rule: the menu offers the codes seen in the data.
    await page.get_by_label("Rule").select_option("card_testing")
    await shows(alice, [ids["card"]])
    await page.get_by_label("Rule").select_option("")

    # Owner: "me" after acknowledging one; "unowned" for the rest.
    await alice.row(ids["medium"]).get_by_role("button", name=re.compile("^Acknowledge")).click()
    await expect(alice.cell(ids["medium"], OWNER)).to_have_text("alice (you)")
    await page.mouse.move(5, 5)
    await page.get_by_label("Owner").select_option("me")
    await shows(alice, [ids["medium"]])
    await page.get_by_label("Owner").select_option("unowned")
    await shows(alice, [ids["critical"], ids["card"]])
    await expect(page).to_have_url(re.compile(r"\?severity=critical,medium&owner=unowned$"))

    # Free text: account, merchant name, transaction id or alert id, any case.
    search = page.get_by_role("searchbox", name="Search alerts")
    await search.fill("ACCT-CARD")
    await expect(alice.rows).to_have_count(1)
    await search.fill("saks")  # merchant name of the critical one
    await expect(alice.rows).to_have_count(1)
    await expect(alice.row(ids["critical"])).to_be_visible()
    await search.fill(ids["card"][:12])
    await expect(alice.rows).to_have_count(1)
    await expect(alice.row(ids["card"])).to_be_visible()
    await search.fill("acct-card-ct2")
    await expect(alice.row(ids["card"])).to_be_visible()
    await search.fill("nothing-like-this")
    await expect(alice.rows).to_have_count(0)
    await expect(page.locator("#alerts-empty")).to_have_text("No alerts match these filters.")
    await search.fill("acct-card")
    await expect(page).to_have_url(
        re.compile(r"\?q=acct-card&severity=critical,medium&owner=unowned$")
    )

    # A reload (or the same link in another browser) shows the same view.
    await page.reload()
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await expect(search).to_have_value("acct-card")
    await expect(page.get_by_label("Owner")).to_have_value("unowned")
    await expect(severity.get_by_role("button", name="Medium")).to_have_attribute(
        "aria-pressed", "true"
    )
    await expect(alice.rows).to_have_count(1)
    await expect(alice.row(ids["card"])).to_be_visible()

    await page.get_by_role("button", name="Clear filters").click()
    await expect(alice.rows).to_have_count(4)
    await expect(page).to_have_url(str(server.make_url("/")))
    assert alice.problems == []


async def test_clear_filters_hands_the_keyboard_to_the_table(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    # QA: Clear filters left the keyboard in the search box, so "j x" became a search for "jx".
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    ids = await four_kinds(ingest)
    await expect(alice.rows).to_have_count(4)
    await page.get_by_role("group", name="Severity").get_by_role("button", name="Medium").click()
    await page.get_by_role("searchbox", name="Search alerts").fill("acct-card")
    await expect(alice.rows).to_have_count(1)

    await page.get_by_role("button", name="Clear filters").click()
    await expect(alice.rows).to_have_count(4)
    await alice.press("j", "x")
    # The first of the queue (critical first) has the cursor and is selected; nothing typed.
    await expect(alice.row(ids["critical"])).to_have_class(re.compile(r"\bis-cursor\b"))
    await expect(page.locator("#bulk-bar")).to_contain_text("1 selected")
    await expect(page.get_by_role("searchbox", name="Search alerts")).to_have_value("")
    await expect(page).to_have_url(str(server.make_url("/")))
    assert alice.problems == []


# How the sort menu looks: its border, outline and ring (what focus changes), and its fill.
SORT_LOOK = """() => {
  const sort = document.getElementById("filter-sort");
  const s = getComputedStyle(sort);
  return {
    focused: document.activeElement === sort,
    edge: [s.borderTopColor, s.borderRightColor, s.outlineStyle, s.boxShadow].join(" | "),
    fill: s.backgroundColor,
  };
}"""


async def test_the_sort_menu_looks_focused_only_when_it_is(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    # QA: the sort menu had a blue border while the keyboard was elsewhere.
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    await four_kinds(ingest)
    await expect(alice.rows).to_have_count(4)
    at_rest = await page.evaluate(SORT_LOOK)
    assert not at_rest["focused"], at_rest

    # A filter on, the order untouched: the sort menu looks as it did.
    await page.get_by_role("group", name="Severity").get_by_role("button", name="High").click()
    await expect(page).to_have_url(re.compile(r"\?severity=high$"))
    assert await page.evaluate(SORT_LOOK) == at_rest

    # Newest first is not the default, so it is tinted, but still has no focus border.
    await page.get_by_label("Sort").select_option("newest")
    await page.locator("body").click(position={"x": 5, "y": 5})
    newest = await page.evaluate(SORT_LOOK)
    assert not newest["focused"], newest
    assert newest["edge"] == at_rest["edge"], (newest, at_rest)
    assert newest["fill"] != at_rest["fill"], (newest, at_rest)
    assert alice.problems == []


async def test_the_match_count_leaves_out_a_held_row_that_no_longer_matches(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    alice = await sign_in(browser, server, "alice", path="/?status=open")
    page = alice.page
    ids = await four_kinds(ingest)
    summary = page.locator("#alerts-summary")
    await expect(alice.rows).to_have_count(4)
    await expect(summary).to_contain_text("4 of 4 match")

    # Acknowledged from the drawer, the alert is no longer open, but its row holds still
    # under the analyst: listed, and not counted as a match.
    medium = ids["medium"]
    await alice.cell(medium, MERCHANT).click()
    await expect(alice.drawer).to_contain_text("Account acct-velo")
    await alice.drawer.get_by_role("button", name="Acknowledge").click()
    await expect(alice.cell(medium, OWNER)).to_have_text("alice (you)")
    await expect(alice.rows).to_have_count(4)
    await expect(summary).to_contain_text("3 of 4 match")
    # Released again, it matches again.
    await alice.drawer.get_by_role("button", name="Release").click()
    await expect(alice.cell(medium, OWNER)).to_have_text("—")
    await expect(summary).to_contain_text("4 of 4 match")
    await alice.drawer.get_by_role("button", name="Acknowledge").click()
    await expect(summary).to_contain_text("3 of 4 match")

    # The table released, the row goes and the count stays.
    await alice.drawer.get_by_role("button", name="Close details").click()
    await alice.press("Escape")  # the table, which the drawer gave focus to
    await page.mouse.move(5, 5)
    await expect(alice.rows).to_have_count(3)
    await expect(summary).to_contain_text("3 of 4 match")
    assert alice.problems == []


async def test_default_sort_is_severity_then_oldest_and_toggles_to_newest(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    ids = await four_kinds(ingest)
    await expect(alice.rows).to_have_count(4)
    await shows(
        alice,
        [
            ids["critical"],
            ids["high_travel"],
            ids["medium"],
            ids["card"],
        ],
    )
    await expect(page.locator("#alerts-summary")).to_contain_text("by severity, oldest first")

    await page.get_by_label("Sort").select_option("newest")
    await expect(page).to_have_url(re.compile(r"/\?sort=newest$"))
    await shows(
        alice,
        [
            ids["card"],
            ids["critical"],
            ids["medium"],
            ids["high_travel"],
        ],
    )
    await expect(page.locator("#alerts-summary")).to_contain_text("newest first")

    # Resolved alerts step to the end of the queue in the default order.
    await page.get_by_label("Sort").select_option("priority")
    await (
        alice.row(ids["critical"]).get_by_role("button", name=re.compile("as legitimate$")).click()
    )
    await page.get_by_role("dialog").get_by_role("button", name="Resolve as legitimate").click()
    await page.mouse.move(5, 5)
    await expect(alice.rows.last).to_have_attribute("data-id", ids["critical"])
    assert alice.problems == []


async def test_saved_views_are_kept_in_this_browser(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    ids = await four_kinds(ingest)
    await expect(alice.rows).to_have_count(4)

    await page.get_by_role("group", name="Status").get_by_role("button", name="Open").click()
    await page.get_by_role("group", name="Severity").get_by_role("button", name="Critical").click()
    menu = page.locator("#views-menu")
    await menu.get_by_role("button", name="Saved views").click()
    # Demo: with no view saved yet the menu listed a stray "null" under the built-in ones.
    await expect(menu.locator("#view-list")).to_have_text(BUILT_IN_VIEWS)
    await page.get_by_label("Name for the current view").fill("Critical, open")
    await page.get_by_label("Name for the current view").press("Enter")
    saved = menu.get_by_role("link", name="Critical, open")
    await expect(saved).to_have_attribute("href", "/?status=open&severity=critical")
    await expect(saved).to_have_attribute("aria-current", "true")

    await page.get_by_role("button", name="Clear filters").click()
    await expect(alice.rows).to_have_count(4)

    # Applied from the menu without a reload; kept across one.
    await menu.get_by_role("button", name="Saved views").click()
    await saved.click()
    await expect(alice.rows).to_have_count(1)
    await expect(alice.row(ids["critical"])).to_be_visible()
    # The keyboard is in the table, not lost with the closed menu: j reaches the row.
    assert await page.evaluate("document.activeElement.closest('#table-wrap') !== null")
    await alice.press("j")
    await expect(alice.row(ids["critical"])).to_have_class(re.compile(r"\bis-cursor\b"))
    await expect(page).to_have_url(re.compile(r"/\?status=open&severity=critical$"))
    await page.goto("/")
    await expect(alice.rows).to_have_count(4)
    await menu.get_by_role("button", name="Saved views").click()
    await expect(saved).to_be_visible()

    # A built-in view, then deleting ours.
    await menu.get_by_role("link", name="Unowned critical and high").click()
    await expect(page).to_have_url(re.compile(r"/\?status=open&severity=critical,high$"))
    await expect(alice.rows).to_have_count(2)  # the card test is medium
    await menu.get_by_role("button", name="Saved views").click()
    await menu.get_by_role("button", name="Delete saved view Critical, open").click()
    await expect(saved).to_have_count(0)
    await expect(menu.locator("#view-list")).to_have_text(BUILT_IN_VIEWS)
    stored = await page.evaluate("() => localStorage.getItem('fraudwatch.views')")
    assert stored == "[]"
    assert alice.problems == []


async def test_the_open_alert_lives_in_the_url_across_a_reload_back_and_a_shared_link(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    # Analysts: a reload closed the details drawer, and a link to an alert could not be sent.
    alice = await sign_in(browser, server, "alice", path="/?severity=critical,high")
    page = alice.page
    ids = await four_kinds(ingest)
    await shows(alice, [ids["critical"], ids["high_travel"]])
    travel = ids["high_travel"]

    # Opened, the alert joins the filters in the address bar.
    await alice.cell(travel, MERCHANT).click()
    await expect(alice.drawer).to_contain_text("Account acct-travel")
    await expect(page).to_have_url(re.compile(rf"/\?severity=critical,high&alert={travel}$"))

    # A reload opens it again, the filters kept; Esc closes it and takes it out of the URL.
    await page.reload()
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await expect(alice.drawer).to_be_visible()
    await expect(alice.drawer).to_contain_text("Account acct-travel")
    await shows(alice, [ids["critical"], travel])
    await expect(alice.drawer).to_be_focused()
    await alice.press("Escape")
    await expect(alice.drawer).to_be_hidden()
    await expect(page).to_have_url(re.compile(r"/\?severity=critical,high$"))

    # Opening is one step in the history (j moving the drawer along replaces it): Back
    # closes the drawer and stays on the dashboard, with the filters; Forward opens it again.
    await alice.cell(ids["critical"], MERCHANT).click()
    await expect(alice.drawer).to_contain_text("Account acct-night")
    await expect(page).to_have_url(re.compile(rf"&alert={ids['critical']}$"))
    await alice.press("j")
    await expect(alice.drawer).to_contain_text("Account acct-travel")
    await expect(page).to_have_url(re.compile(rf"/\?severity=critical,high&alert={travel}$"))
    await page.go_back()
    await expect(alice.drawer).to_be_hidden()
    await expect(page).to_have_url(re.compile(r"/\?severity=critical,high$"))
    await expect(alice.rows).to_have_count(2)
    await page.go_forward()
    await expect(alice.drawer).to_contain_text("Account acct-travel")
    await expect(page).to_have_url(re.compile(rf"&alert={travel}$"))
    # Closed by its button after Forward: out of the URL, and Back leaves the drawer shut.
    await alice.drawer.get_by_role("button", name="Close details").click()
    await expect(page).to_have_url(re.compile(r"/\?severity=critical,high$"))

    # A link to an alert resolved before the page loaded (not among the alerts it loads)
    # opens it all the same, for anyone who may read alerts: a viewer too.
    await bob_resolves(server, ids["medium"])
    await create_user(server.app[STORE], "vic", PASSWORD, "viewer")
    vic = await sign_in(browser, server, "vic", path=f"/?alert={ids['medium']}")
    await expect(vic.drawer).to_be_visible()
    await expect(vic.drawer).to_contain_text("Account acct-velo")
    await expect(vic.drawer.locator("#drawer-actions")).to_contain_text("Resolved")

    # An id the server does not know (mistyped, or gone with retention): a calm notice, no
    # drawer, and the address cleaned of it.
    await page.goto("/?status=open&alert=no-such-alert")
    await expect(page.locator("#notices")).to_contain_text(
        "The alert in the link (no-such-alert) is not on the server"
    )
    await expect(page.locator("#notices .notice-info")).to_have_count(1)
    await expect(page).to_have_url(re.compile(r"/\?status=open$"))
    await expect(alice.drawer).to_be_hidden()
    assert alice.problems == []
    assert vic.problems == []


async def test_saved_views_is_a_menu_button_by_role_and_by_the_keyboard(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    # Screen-reader users heard a disclosure triangle, not a button, and nothing said whether
    # its menu was open.
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    await four_kinds(ingest)
    await expect(alice.rows).to_have_count(4)
    button = page.get_by_role("button", name="Saved views")
    await expect(button).to_have_count(1)
    await expect(button).to_have_attribute("aria-expanded", "false")
    panel = page.locator(f"#{await button.get_attribute('aria-controls')}")
    await expect(panel).to_be_hidden()
    views = panel.get_by_role("link")

    # Enter opens it with the keyboard on the first view; ↓ and ↑ go through them; Esc
    # closes it with the keyboard back on the button (and the table left alone).
    await button.focus()
    await alice.press("Enter")
    await expect(button).to_have_attribute("aria-expanded", "true")
    await expect(panel).to_be_visible()
    await expect(views.first).to_be_focused()
    await alice.press("ArrowDown")
    await expect(views.nth(1)).to_be_focused()
    await alice.press("ArrowUp", "ArrowUp")
    await expect(views.last).to_be_focused()
    await alice.press("Escape")
    await expect(panel).to_be_hidden()
    await expect(button).to_have_attribute("aria-expanded", "false")
    await expect(button).to_be_focused()

    # Space and ↓ open it too; Tab out of it closes it, as does a click elsewhere.
    await alice.press(" ")
    await expect(views.first).to_be_focused()
    await alice.press("Escape")
    await alice.press("ArrowDown")
    await expect(button).to_have_attribute("aria-expanded", "true")
    await expect(views.first).to_be_focused()
    for _ in range(12):
        await alice.press("Tab")
        if not await panel.evaluate("(p) => p.contains(document.activeElement)"):
            break
    await expect(panel).to_be_hidden()
    await expect(button).to_have_attribute("aria-expanded", "false")
    await button.click()
    await expect(panel).to_be_visible()
    # One menu open at a time: the notifications menu closes it.
    await page.locator("#notify-button").click()
    await expect(panel).to_be_hidden()
    await expect(button).to_have_attribute("aria-expanded", "false")
    await page.mouse.click(5, 5)
    await expect(page.locator("#notify-panel")).to_be_hidden()
    await button.click()
    await expect(panel).to_be_visible()
    await page.mouse.click(5, 5)
    await expect(panel).to_be_hidden()
    assert alice.problems == []


async def test_a_linked_alert_opens_in_the_drawer_without_joining_a_view_it_is_not_in(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    # QA: a link to an alert resolved before the page loaded put it at the end of the
    # Everything view (every unresolved alert, and what the feed brings), where it stayed
    # after the drawer closed, and the page asked the server for it twice.
    ids = await four_kinds(ingest)
    medium = ids["medium"]
    await bob_resolves(server, medium)
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    await shows(alice, [ids["critical"], ids["high_travel"], ids["card"]])
    asked: list[str] = []

    def count(request: Request) -> None:
        if request.url.endswith(f"/api/v1/alerts/{medium}"):
            asked.append(request.url)

    page.on("request", count)

    await page.goto(f"/?alert={medium}")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await expect(alice.drawer).to_contain_text("Account acct-velo")
    await expect(alice.drawer.locator(".history")).to_contain_text("bob")
    await shows(alice, [ids["critical"], ids["high_travel"], ids["card"]])
    await expect(page.locator("#alerts-summary")).to_contain_text("3 shown")

    # The keys act on the drawer's alert all the same: it is resolved, by bob.
    await alice.press("f")
    await expect(page.locator("#notices")).to_contain_text(
        "Alert for account acct-velo (m-steam · $19.99) is already resolved by bob."
    )
    await expect(page.get_by_role("dialog")).to_have_count(0)

    # Closed, it leaves nothing behind in the list, the table let go.
    await alice.drawer.get_by_role("button", name="Close details").click()
    await expect(alice.drawer).to_be_hidden()
    await page.mouse.move(5, 5)
    await expect(page.locator("#paused-button")).to_be_hidden()
    await shows(alice, [ids["critical"], ids["high_travel"], ids["card"]])
    await expect(page.locator("#alerts-summary")).to_contain_text("3 shown")
    assert len(asked) == 1, asked
    assert alice.problems == []


async def test_notifications_is_a_menu_button_by_role_and_by_the_keyboard(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    # Saved views became a menu button; Notifications was still a <summary>, announced as a
    # disclosure triangle, its panel reached by Tab alone and ↓ doing nothing.
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    await four_kinds(ingest)
    await expect(alice.rows).to_have_count(4)
    button = page.get_by_role("button", name=re.compile(r"^Notifications"))
    await expect(button).to_have_count(1)
    await expect(button).to_have_attribute("aria-expanded", "false")
    panel = page.locator(f"#{await button.get_attribute('aria-controls')}")
    await expect(panel).to_be_hidden()
    sound = panel.get_by_label("Play a sound")
    desktop = panel.get_by_label("Show a desktop notification")

    # Enter opens it with the keyboard on the first choice; ↓ and ↑ go through them (round
    # the end); Space ticks the one focused; Esc closes it, the keyboard back on the button.
    await button.focus()
    await alice.press("Enter")
    await expect(button).to_have_attribute("aria-expanded", "true")
    await expect(panel).to_be_visible()
    await expect(sound).to_be_focused()
    await alice.press("ArrowDown")
    await expect(desktop).to_be_focused()
    await alice.press("ArrowDown")
    await expect(sound).to_be_focused()
    await alice.press("ArrowUp")
    await expect(desktop).to_be_focused()
    await alice.press("ArrowUp", " ")
    await expect(sound).to_be_checked()
    await expect(button).to_have_text(re.compile(r"Notifications\s+sound$"))
    await alice.press("Escape")
    await expect(panel).to_be_hidden()
    await expect(button).to_have_attribute("aria-expanded", "false")
    await expect(button).to_be_focused()

    # Space and ↓ open it too (↑ on the last choice); Tab out of it closes it.
    await alice.press(" ")
    await expect(sound).to_be_focused()
    await alice.press("Escape", "ArrowUp")
    await expect(button).to_have_attribute("aria-expanded", "true")
    await expect(desktop).to_be_focused()
    await alice.press("Tab")
    await expect(panel).to_be_hidden()
    await expect(button).to_have_attribute("aria-expanded", "false")

    # One menu open at a time, either way round; a click elsewhere closes it.
    await button.click()
    await expect(panel).to_be_visible()
    views = page.get_by_role("button", name="Saved views")
    await views.click()
    await expect(panel).to_be_hidden()
    await expect(views).to_have_attribute("aria-expanded", "true")
    await button.click()
    await expect(views).to_have_attribute("aria-expanded", "false")
    await expect(panel).to_be_visible()
    await page.mouse.click(5, 5)
    await expect(panel).to_be_hidden()
    assert alice.problems == []
