"""The dashboard reading the server's filters and counts, in a real Chromium: a time range
and a resolved-status view that load what the page does not hold, kept in the URL;
ingest -> screen latency."""

from __future__ import annotations

import asyncio
import datetime as dt
import re

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Route, expect

from server.state import STORE
from tests.browser_support import (
    MERCHANT,
    STATUS,
    T0,
    Analyst,
    Ingest,
    card_testing,
    eventually,
    impossible_travel,
    sign_in,
    travel_at_night,
)

pytestmark = pytest.mark.browser


async def resolved_before_sign_in(server: TestServer, *alert_ids: str) -> None:
    """Bob resolves these before Alice opens the page: her snapshot (unresolved alerts)
    lacks them, so only a view that asks the server shows them."""
    for alert_id in alert_ids:
        await server.app[STORE].resolve(alert_id, "bob", "fraud", None)


async def test_time_range_loads_from_the_server_and_stays_in_the_url(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    [travel] = await ingest(impossible_travel("acct-t", "Harrods"))  # event 14:10 UTC
    [night] = await ingest(travel_at_night("acct-n"))  # event 01:35 UTC
    cards = await ingest(card_testing("acct-c", at=T0 + dt.timedelta(hours=1)))  # 15:01 on
    await resolved_before_sign_in(server, travel)

    window = "from=2026-03-02T14:05:00.000Z&to=2026-03-02T14:15:00.000Z"
    alice = await sign_in(browser, server, "alice", path=f"/?{window}", timezone_id="UTC")
    page = alice.page
    await expect(alice.row(travel)).to_be_visible()
    await expect(alice.cell(travel, STATUS)).to_have_text("Resolved Fraud")
    await expect(alice.rows).to_have_count(1)
    await expect(page.locator("#filter-from")).to_have_value("2026-03-02T14:05")
    await expect(page.locator("#filter-to")).to_have_value("2026-03-02T14:15")

    # Widening the range goes to the URL and to the server; the night alert stays outside.
    await page.locator("#filter-to").fill("2026-03-02T16:00")
    await page.locator("#filter-to").dispatch_event("change")
    await expect(page).to_have_url(re.compile(r"to=2026-03-02T16:00:00\.000Z"))
    for alert_id in (travel, *cards):
        await expect(alice.row(alert_id)).to_be_visible()
    await expect(alice.row(night)).to_have_count(0)
    await expect(alice.rows).to_have_count(1 + len(cards))

    # The link is the view: a reload shows the same, loaded again from the server.
    await page.reload()
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await expect(alice.row(travel)).to_be_visible()
    await expect(alice.rows).to_have_count(1 + len(cards))
    await page.get_by_role("button", name="Clear filters").click()
    await expect(alice.row(night)).to_be_visible()
    await expect(page).to_have_url(re.compile(r"/$"))
    assert alice.problems == []


async def test_resolved_view_loads_resolved_alerts_from_the_server(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    [older] = await ingest(impossible_travel("acct-r1", "Harrods"))
    [newer] = await ingest(travel_at_night("acct-r2"))
    [still_open] = await ingest(card_testing("acct-c", at=T0 + dt.timedelta(hours=1)))
    await resolved_before_sign_in(server, older, newer)

    alice = await sign_in(browser, server, "alice")
    page = alice.page
    await expect(alice.rows).to_have_count(1)
    menu = page.locator("#views-menu")
    await menu.get_by_role("button", name="Saved views").click()
    await menu.get_by_role("link", name="Resolved, newest first").click()
    await expect(page).to_have_url(re.compile(r"/\?status=resolved&sort=newest$"))
    await page.mouse.move(5, 5)
    await expect_rows(alice, [newer, older])
    await expect(page.locator("#alerts-summary")).to_contain_text("2 of 3 match")

    # Live updates still land: Bob resolves the open one, and it joins Alice's view on top.
    bob = await sign_in(browser, server, "bob")
    await bob.row(still_open).get_by_role("button", name=re.compile("as legitimate$")).click()
    await bob.page.get_by_role("dialog").get_by_role("button", name="Resolve as legitimate").click()
    await expect_rows(alice, [still_open, newer, older])

    # The link is the view: loaded with the page, from the server again.
    await page.reload()
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await expect_rows(alice, [still_open, newer, older])
    await expect(alice.cell(older, STATUS)).to_have_text("Resolved Fraud")
    assert alice.problems == []
    assert bob.problems == []


async def test_leaving_the_resolved_view_leaves_the_alerts_it_loaded(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    [waiting] = await ingest(impossible_travel("acct-w", "Harrods"))
    [earlier] = await ingest(travel_at_night("acct-e"))
    [today] = await ingest(card_testing("acct-c", at=T0 + dt.timedelta(hours=1)))
    [reopened] = await ingest(impossible_travel("acct-o", "Ritz", T0 + dt.timedelta(hours=2)))
    await resolved_before_sign_in(server, earlier, reopened)

    alice = await sign_in(browser, server, "alice")
    page = alice.page
    # Resolved while the page is open: Everything keeps it, at the end of the queue.
    await alice.row(today).get_by_role("button", name=re.compile("as legitimate$")).click()
    await page.get_by_role("dialog").get_by_role("button", name="Resolve as legitimate").click()
    await page.mouse.move(5, 5)
    await expect_rows(alice, [waiting, today])

    views = page.locator("#views-menu")
    await views.get_by_role("button", name="Saved views").click()
    await views.get_by_role("link", name="Resolved, newest first").click()
    await page.mouse.move(5, 5)
    await expect_rows(alice, [reopened, today, earlier])
    # Reopened from this view: open again, and the feed says so to every page.
    await alice.cell(reopened, MERCHANT).click()
    await alice.drawer.get_by_role("button", name="Reopen").click()
    await expect(alice.cell(reopened, STATUS)).to_have_text("Open")
    await alice.press("Escape", "Escape")  # the drawer, then the table it gave focus to
    await page.mouse.move(5, 5)
    await expect_rows(alice, [today, earlier])

    # Back to Everything: what it would show had the resolved view never been opened.
    await views.get_by_role("button", name="Saved views").click()
    await views.get_by_role("link", name="Everything").click()
    await page.mouse.move(5, 5)
    await expect(page).to_have_url(re.compile(r"/$"))
    await expect_rows(alice, [waiting, reopened, today])
    await expect(page.locator("#alerts-summary")).to_contain_text("3 shown")
    assert alice.problems == []


async def test_a_server_views_answer_shows_while_the_table_is_held(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    [waiting] = await ingest(impossible_travel("acct-w", "Harrods"))
    [earlier] = await ingest(travel_at_night("acct-e"))
    [later] = await ingest(card_testing("acct-c", at=T0 + dt.timedelta(hours=1)))
    await resolved_before_sign_in(server, earlier, later)

    alice = await sign_in(browser, server, "alice", timezone_id="UTC")
    page = alice.page
    await expect_rows(alice, [waiting])
    answer = asyncio.Event()
    server_down = False

    async def resolved_alerts(route: Route) -> None:
        if server_down:
            error = {"code": "unavailable", "message": "The store is busy.", "field": None}
            await route.fulfill(status=503, json={"error": error})
            return
        await answer.wait()
        await route.continue_()

    await page.route("**/api/v1/alerts?status=resolved*", resolved_alerts)

    # The pointer rests on the table (which holds it) when the server answers: what the view
    # asked for shows all the same, rather than waiting as "new".
    views = page.locator("#views-menu")
    await views.get_by_role("button", name="Saved views").click()
    await views.get_by_role("link", name="Resolved, newest first").click()
    await page.locator("#table-wrap").hover()
    await expect(page.locator("#alerts-paused")).to_have_text("Paused")
    answer.set()
    await expect_rows(alice, [later, earlier])
    await expect(page.locator("#alerts-paused")).to_have_text("Paused")

    # The drawer open on one of them (holding the table), the view narrows to a range the
    # server cannot load now. What the resolved view loaded goes back, and leaves the table
    # at once, but for the row the drawer shows: that one stays until the table is released.
    await alice.cell(earlier, MERCHANT).click()
    await expect(alice.drawer).to_contain_text("Account acct-e")
    server_down = True
    # Beside the drawer up to 1535 px the From/To fields are behind the range's button.
    await page.locator("#filter-range-toggle").click()
    await page.locator("#filter-from").fill("2026-03-01T00:00")
    await page.locator("#filter-from").dispatch_event("change")
    await expect(page.locator("#notices")).to_contain_text("Could not load that time range")
    await expect_rows(alice, [earlier])
    await expect(alice.drawer).to_contain_text("Account acct-e")
    # The kept row is one the page has, and it matches; the open alert does not.
    await expect(page.locator("#alerts-summary")).to_contain_text("1 of 2 match")
    # Bob reopens it meanwhile: the kept row shows it as it is now, as the drawer does, and
    # the keyboard acts on that (not on the copy the page let go of).
    await server.app[STORE].reopen(earlier, "bob", None)
    await expect(alice.drawer.locator(".drawer-badges")).to_contain_text("Open")
    await expect(alice.cell(earlier, STATUS)).to_have_text("Open")
    # Open, it no longer matches the view: held in place, not counted.
    await expect(page.locator("#alerts-summary")).to_contain_text("0 of 2 match")
    await alice.drawer.focus()
    await alice.press("a")
    await expect(alice.cell(earlier, STATUS)).to_have_text("Acknowledged")
    await expect(alice.drawer.locator(".drawer-badges")).to_contain_text("Acknowledged")
    # Closed, and the table released: the view shows what it would had it loaded nothing.
    await alice.drawer.get_by_role("button", name="Close details").click()
    await alice.press("Escape")  # the table, which the drawer gave focus to
    await page.mouse.move(5, 5)
    await expect_rows(alice, [])
    await expect(page.locator("#alerts-empty")).to_have_text("No alerts match these filters.")
    assert alice.problems == []


async def expect_rows(analyst: Analyst, expected: list[str]) -> None:
    """The table lists exactly `expected`, in this order, within 5 s."""

    async def listed() -> list[str]:
        ids: list[str] = await analyst.rows.evaluate_all("rows => rows.map(r => r.dataset.id)")
        return ids

    await eventually(listed, expected)


async def test_header_shows_ingest_to_screen_latency_and_server_counts(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    stats = page.locator("#stats")
    await expect(stats.locator('[data-stat="screen_p99"]')).to_have_text("—")
    await expect(page.locator("#screen-latency-detail")).to_have_text(
        "measured on the next new alert"
    )
    [critical] = await ingest(travel_at_night("acct-n"))
    await expect(alice.row(critical)).to_be_visible()
    await expect(stats.locator('[data-stat="screen_p99"]')).to_have_text(
        re.compile(r"^\d+(\.\d+)? (ms|s)$")
    )
    # One alert, not "1 alerts".
    await expect(page.locator("#screen-latency-detail")).to_have_text(
        re.compile(r"^p50 \S+ m?s · last 1 alert$")
    )
    await expect(page.locator("#severity-counts")).to_have_text("1 critical", timeout=5000)
    # A refused record is counted by the server and shown from the stats message.
    await ingest_bad(server)
    await page.locator("#integrity summary").click()
    await expect(page.locator('[data-integrity="rejected"]')).to_have_text("1", timeout=5000)
    assert alice.problems == []


async def ingest_bad(server: TestServer) -> None:
    import aiohttp

    from tests.browser_support import API_KEY

    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_KEY}"}) as http,
        http.post(server.make_url("/api/v1/transactions"), json={"id": "bad"}) as r,
    ):
        assert r.status == 400
