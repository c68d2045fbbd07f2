"""The live feed's faults in a real Chromium: an error in handling a frame, a frame that is
not JSON, or a fault in the page while it loads the alerts is logged in the console, named,
and costs nothing else: none of them leaves the page silently "Reconnecting…"."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page, Route, WebSocketRoute, expect

from tests.browser_support import Ingest, eventually, impossible_travel, sign_in

pytestmark = pytest.mark.browser


def console_errors(page: Page, errors: list[str]) -> None:
    """Every console.error (and uncaught error, which Chromium logs as one) into `errors`."""
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))


def logged(errors: list[str], fragment: str) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return any(fragment in text for text in errors)

    return probe


async def test_a_frame_that_breaks_a_handler_is_logged_and_the_feed_goes_on(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    routes: list[WebSocketRoute] = []
    errors: list[str] = []

    async def before(page: Page) -> None:
        def route(ws: WebSocketRoute) -> None:
            routes.append(ws)
            ws.connect_to_server().on_message(ws.send)

        await page.route_web_socket("**/ws*", route)
        console_errors(page, errors)

    alice = await sign_in(browser, server, "alice", before_load=before)
    page = alice.page

    # A stats frame the header cannot read (a scorecard that is not an object): the handler
    # throws. The console names the message; it was an uncaught error that named none.
    routes[0].send(json.dumps({"type": "stats", "scorecard": 5}))
    await eventually(logged(errors, 'Live feed: handling a "stats" message failed'), True)
    # A frame that is not JSON was dropped without a word.
    routes[0].send("not json {")
    await eventually(logged(errors, "Live feed: dropped a frame that is not JSON"), True)

    # The feed goes on: live, and the next alert shows.
    [alert] = await ingest(impossible_travel("acct-after", "After Ltd"))
    await expect(alice.row(alert)).to_be_visible()
    await expect(page.locator("#connection")).to_have_text("Live")
    assert [p for p in alice.problems if p.startswith("pageerror")] == []


async def test_a_page_fault_loading_the_alerts_is_logged_and_said(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    [alert] = await ingest(impossible_travel("acct-odd", "Odd Ltd"))
    errors: list[str] = []
    broken = True

    # The snapshot's alert carries reasons the page cannot read: a fault in the page's own
    # handling, not the server's answer. It read "Could not load alerts" under
    # "Reconnecting…", like a network failure, with nothing in the console.
    async def odd_reasons(route: Route) -> None:
        response = await route.fetch()
        body = await response.json()
        if broken:
            for item in body["alerts"]:
                item["reasons"] = 5
        await route.fulfill(response=response, json=body)

    context = await browser.new_context(base_url=str(server.make_url("/")))
    page = await context.new_page()
    console_errors(page, errors)
    await page.goto("/login")
    await page.route("**/api/v1/alerts?*", odd_reasons)
    await page.get_by_label("Username").fill("alice")
    await page.get_by_label("Password").fill("correct horse battery")
    await page.get_by_role("button", name="Sign in").click()

    await eventually(logged(errors, "Dashboard: showing the alerts failed"), True)
    await expect(page.locator("#notices")).to_contain_text(
        re.compile(r"Could not show the alerts: .*not iterable.*The browser console has")
    )
    # The next attempt, given alerts it can read, goes live.
    broken = False
    await expect(page.locator("#connection")).to_have_attribute(
        "data-state", "live", timeout=15_000
    )
    await expect(page.locator(f'#alert-rows tr[data-id="{alert}"]')).to_be_visible()
    await context.close()
