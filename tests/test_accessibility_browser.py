"""Accessibility in a real Chromium: skip links, triage by the keyboard alone, and axe-core's
checks of every page in its main states, light and dark, wide and narrow."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, Locator, Page, expect

from server.auth import create_user
from server.state import STORE
from tests.browser_support import (
    PASSWORD,
    STATUS,
    T0,
    VIEWPORT,
    Ingest,
    analyst_http,
    animations_done,
    card_testing,
    eventually,
    focused,
    listed_alerts,
    sign_in,
    stops_inside,
    travel_at_night,
    tx,
)

pytestmark = pytest.mark.browser


async def signed_in_page(
    browser: Browser, server: TestServer, name: str, path: str, **context_options: object
) -> Page:
    """`name` signed in, on `path`: a page of the console other than the dashboard."""
    context = await browser.new_context(
        base_url=str(server.make_url("/")),
        viewport=context_options.pop("viewport", VIEWPORT),
        **context_options,
    )
    page = await context.new_page()
    await page.goto("/login")
    await page.get_by_label("Username").fill(name)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(str(server.make_url("/")))
    await page.goto(path)
    return page


async def check_skip_link(page: Page, words: str, target: str, back: bool = False) -> None:
    """The page's first Tab stop (its last, from the page's autofocused field, if `back`)
    is a link named `words`, off screen until focused; Enter moves focus to `target`, and
    the next Tab to a control inside it. The address stays as it was: no `#target` left in
    it for a copied link to carry (it did, `/#alerts-panel`)."""
    link = page.get_by_role("link", name=words)
    await expect(link).to_have_count(1)
    await expect(link).not_to_be_in_viewport()
    address = page.url
    await page.keyboard.press("Shift+Tab" if back else "Tab")
    await expect(link).to_be_focused()
    await expect(link).to_be_in_viewport(ratio=1)
    await page.keyboard.press("Enter")
    await expect(page.locator(target)).to_be_focused()
    await expect(link).not_to_be_in_viewport()
    assert page.url == address
    await page.keyboard.press("Tab")
    inside = await page.evaluate(
        "(target) => document.querySelector(target).contains(document.activeElement)", target
    )
    assert inside, f"Tab after the skip link went to {await focused(page)}, outside {target}"


async def test_the_dashboards_skip_link_moves_focus_to_the_alerts(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    alice = await sign_in(browser, server, "alice")
    await listed_alerts(alice, ingest, 2)
    await check_skip_link(alice.page, "Skip to alerts", "#alerts-panel")
    assert alice.problems == []


async def test_every_other_page_has_a_skip_link_to_its_main_content(
    browser: Browser, server: TestServer
) -> None:
    await create_user(server.app[STORE], "root", PASSWORD, "admin")
    admin = await signed_in_page(browser, server, "root", "/admin")
    await expect(admin.locator("#user-rows tr")).to_have_count(3)
    await check_skip_link(admin, "Skip to main content", "main")

    forbidden = await signed_in_page(browser, server, "alice", "/admin")
    await expect(forbidden.get_by_text("Only admins can open the admin page")).to_be_visible()
    await check_skip_link(forbidden, "Skip to main content", "main")

    context = await browser.new_context(base_url=str(server.make_url("/")), viewport=VIEWPORT)
    login = await context.new_page()
    await login.goto("/login")
    await expect(login.get_by_label("Username")).to_be_focused()  # autofocus: the link is behind
    await check_skip_link(login, "Skip to main content", "main", back=True)


async def tab_to(page: Page, target: Locator, key: str = "Tab", limit: int = 60) -> None:
    """Press `key` until `target` has focus, as a keyboard user would reach it."""
    path = []
    for _ in range(limit):
        if await target.evaluate("(el) => el === document.activeElement"):
            return
        path.append(await focused(page))
        await page.keyboard.press(key)
    raise AssertionError(f"{limit} × {key} never reached {target}: {' → '.join(path)}")


async def test_tab_and_shift_tab_stay_inside_each_dialog(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    await listed_alerts(alice, ingest, 2)

    # The resolve dialog: four stops (the chosen answer, the note, Cancel, Resolve), round
    # and round both ways.
    await alice.press("j", "f")
    dialog = page.locator("#resolve-dialog")  # named after the answer chosen, which changes
    await expect(dialog).to_have_accessible_name("Resolve as fraud")
    await expect(page.locator("#resolve-note")).to_be_focused()
    forward = await stops_inside(page, dialog, "Tab", 8)
    assert forward[:4] == [
        'button "Cancel"',
        "button#resolve-confirm",
        'input ""',
        "textarea#resolve-note",
    ], forward
    assert forward[4:] == forward[:4], forward
    # Legitimate chosen (arrow keys in the group): Shift+Tab from the note stops on it, the
    # group's one stop, and from it wraps round to the last button.
    await page.keyboard.press("Shift+Tab")
    await page.keyboard.press("ArrowDown")
    await expect(dialog.get_by_role("radio", name="Legitimate")).to_be_focused()
    await expect(dialog.get_by_role("radio", name="Legitimate")).to_be_checked()
    backward = await stops_inside(page, dialog, "Shift+Tab", 8)
    assert backward[:4] == [
        "button#resolve-confirm",
        'button "Cancel"',
        "textarea#resolve-note",
        'input ""',
    ], backward
    assert backward[4:] == backward[:4], backward
    await alice.press("Escape")
    await expect(dialog).to_be_hidden()

    # The shortcuts list has one button: Tab and Shift+Tab stay on it.
    await alice.press("?")
    shortcuts = page.get_by_role("dialog", name="Keyboard shortcuts")
    await expect(shortcuts).to_be_visible()
    assert await stops_inside(page, shortcuts, "Tab", 3) == ['button "Close"'] * 3
    assert await stops_inside(page, shortcuts, "Shift+Tab", 2) == ['button "Close"'] * 2
    await alice.press("Escape")
    await expect(shortcuts).to_be_hidden()
    assert alice.problems == []


async def test_triage_by_keyboard_alone_gives_focus_back_to_what_opened_a_dialog(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    ids = await listed_alerts(alice, ingest, 2)

    # A row opens the resolve dialog (f); Cancel, reached by Tab, gives focus back to it.
    await alice.press("j")
    assert await alice.focused_row_id() == ids[0]
    await alice.press("f")
    dialog = page.get_by_role("dialog", name="Resolve as fraud")
    await expect(dialog).to_be_visible()
    await tab_to(page, dialog.get_by_role("button", name="Cancel"))
    await alice.press("Enter")
    await expect(dialog).to_be_hidden()
    assert await alice.focused_row_id() == ids[0]

    # So does the top bar's Shortcuts button, reached by Shift+Tab, its list closed by Esc.
    shortcuts_button = page.get_by_role("button", name="Shortcuts")
    await tab_to(page, shortcuts_button, key="Shift+Tab")
    await alice.press("Enter")
    await expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_be_visible()
    await alice.press("Escape")
    await expect(shortcuts_button).to_be_focused()

    # Back to the queue (j); Enter opens the details, Tab reaches the drawer's Fraud…
    # button, Enter opens the dialog with the note in hand, Enter resolves.
    await alice.press("j")
    target = await alice.focused_row_id()
    assert target in ids
    await alice.press("Enter")
    await expect(alice.drawer).to_be_visible()
    await tab_to(page, alice.drawer.get_by_role("button", name="Fraud…"))
    await alice.press("Enter")
    await expect(dialog).to_be_visible()
    await expect(page.locator("#resolve-note")).to_be_focused()
    await page.keyboard.type("Card reported stolen")
    await alice.press("Enter")
    await expect(dialog).to_be_hidden()
    await expect(alice.cell(target, STATUS)).to_have_text("Resolved Fraud")
    # Its opener went with the alert's open state: focus is on the drawer that held it,
    # and Esc closes the drawer with focus back in the table, on the cursor's row: the
    # resolved alert was the last listed and stays there, at the end of the queue, so the
    # cursor keeps it (one that moves away hands it on to the next: test_dashboard_triage).
    await expect(alice.drawer).to_be_focused()
    assert target == ids[1]
    await alice.press("Escape")
    await expect(alice.drawer).to_be_hidden()
    await eventually(alice.focused_row_id, target)
    session, _ = await analyst_http(server, "bob")
    async with session, session.get(server.make_url(f"/api/v1/alerts/{target}")) as r:
        alert = (await r.json())["alert"]
    assert (alert["status"], alert["disposition"], alert["note"]) == (
        "resolved",
        "fraud",
        "Card reported stolen",
    )
    assert alice.problems == []


async def test_bulk_resolve_and_sign_out_by_keyboard_alone(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    ids = await listed_alerts(alice, ingest, 3)

    # x selects; the bulk bar's Resolve fraud… is reached by Shift+Tab from the table.
    await alice.press("j", "x", "j", "x")
    bar = page.locator("#bulk-bar")
    await expect(bar).to_contain_text("2 selected")
    await tab_to(page, bar.get_by_role("button", name="Resolve fraud…"), key="Shift+Tab")
    await alice.press("Enter")
    dialog = page.get_by_role("dialog", name="Resolve 2 alerts as fraud")
    await expect(dialog).to_be_visible()
    await alice.press("Enter")
    await expect(dialog).to_be_hidden()
    await expect(bar).to_be_hidden()
    for alert_id in ids[:2]:
        await expect(alice.cell(alert_id, STATUS)).to_have_text("Resolved Fraud")
    # The bar went with the button that had focus: the keyboard is back in the table.
    assert await page.evaluate("document.activeElement.closest('#table-wrap') !== null")

    await tab_to(page, page.get_by_role("button", name="Sign out"), key="Shift+Tab")
    await alice.press("Enter")
    await expect(page).to_have_url(str(server.make_url("/login")))
    assert alice.problems == []


# axe-core's impacts, least to most: minor, moderate, serious, critical. The last two fail.
FAILING = {"serious", "critical"}
PHONE = {"width": 390, "height": 844}
SCHEMES = ["light", "dark"]


async def axe(page: Page, state: str) -> dict[str, Any]:
    """axe-core's checks (every rule it runs by default: WCAG 2.x A and AA, best practices)
    on `page` as it is now, asserting that none found a serious or critical violation; the
    assertion names each with its elements. Returns axe's results."""
    results = await Axe().run(page, options={"resultTypes": ["violations"]})
    response: dict[str, Any] = results.response
    failing = [v for v in response["violations"] if v["impact"] in FAILING]
    assert not failing, f"axe on {state}: " + "; ".join(
        f"{v['id']} ({v['impact']}: {v['help']}) at "
        + ", ".join(" ".join(node["target"]) for node in v["nodes"])
        for v in failing
    )
    return response


async def in_scheme(page: Page, scheme: str) -> None:
    """The page is in `scheme`: axe checks the dark theme's contrast, not the light one's
    twice."""
    dark = await page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")
    assert dark == (scheme == "dark")


async def a_queue(alice: Any, ingest: Ingest) -> list[str]:
    """Alerts of each severity, one acknowledged by alice: every pill and status drawn."""
    critical = await ingest(travel_at_night("acct-night"))
    medium = await ingest(card_testing("acct-ct", n=3))
    high = await listed_alerts(alice, ingest, 2)
    await expect(alice.row(critical[0])).to_be_visible()
    await alice.row(high[0]).get_by_role("button", name="Acknowledge").click()
    await expect(alice.cell(high[0], STATUS)).to_have_text("Acknowledged")
    await animations_done(alice.page)
    return [*critical, *high, *medium]


async def test_axe_catches_what_it_is_meant_to(browser: Browser, server: TestServer) -> None:
    # The checks below pass only if axe ran: a control without a name on a page it passes
    # must fail it, with the element named.
    context = await browser.new_context(base_url=str(server.make_url("/")), viewport=VIEWPORT)
    page = await context.new_page()
    await page.goto("/login")
    await axe(page, "the sign-in page")
    await page.evaluate(
        """() => document.querySelector("form").append(
            Object.assign(document.createElement("button"), {id: "nameless"}))"""
    )
    with pytest.raises(AssertionError, match=r"button-name \(critical: .*\) at #nameless"):
        await axe(page, "the sign-in page with a nameless button")
    await context.close()


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_axe_finds_nothing_serious_on_the_dashboard(
    browser: Browser, server: TestServer, ingest: Ingest, scheme: str
) -> None:
    alice = await sign_in(browser, server, "alice", color_scheme=scheme)
    page = alice.page
    await in_scheme(page, scheme)
    await expect(page.locator("#alerts-empty")).to_be_visible()
    await axe(page, "the empty queue")

    ids = await a_queue(alice, ingest)
    await alice.row(ids[0]).locator(".row-select").check()
    await expect(page.locator("#bulk-bar")).to_be_visible()
    await page.locator("#notify-button").click()
    await axe(page, "the queue, a row selected, the notifications menu open")
    await page.keyboard.press("Escape")

    await alice.row(ids[1]).locator("td").nth(2).click()
    await expect(alice.drawer).to_be_visible()
    await expect(alice.drawer.locator("#drawer-body")).not_to_be_empty()
    # The drawer holds the table: a critical alert waits, the paused pill in danger colours.
    await ingest(travel_at_night("acct-night-2"))
    await expect(page.locator("#paused-button.is-urgent")).to_contain_text("1 critical")
    await animations_done(page)
    await axe(page, "the drawer open, a critical alert waiting")

    await alice.drawer.get_by_role("button", name="Fraud…").click()
    await expect(page.get_by_role("dialog", name="Resolve as fraud")).to_be_visible()
    await axe(page, "the resolve dialog open over the drawer")
    await page.keyboard.press("Escape")

    await page.get_by_role("button", name="Shortcuts").click()
    await expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_be_visible()
    await axe(page, "the shortcuts list open")
    assert alice.problems == []


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_axe_finds_nothing_serious_at_a_phones_width(
    browser: Browser, server: TestServer, ingest: Ingest, scheme: str
) -> None:
    alice = await sign_in(browser, server, "alice", color_scheme=scheme)
    page = alice.page
    await page.set_viewport_size(PHONE)
    ids = await a_queue(alice, ingest)
    await axe(page, f"the queue at {PHONE}")
    await alice.row(ids[1]).locator("td").nth(2).click()
    await expect(alice.drawer).to_be_visible()
    await expect(alice.drawer.locator("#drawer-body")).not_to_be_empty()
    await animations_done(page)
    await axe(page, f"the drawer open at {PHONE}")
    await alice.drawer.get_by_role("button", name="Legitimate…").click()
    await expect(page.get_by_role("dialog", name="Resolve as legitimate")).to_be_visible()
    await axe(page, f"the resolve dialog open at {PHONE}")
    assert alice.problems == []


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_axe_finds_nothing_serious_in_the_scorecard_and_delivery_panels(
    browser: Browser,
    server: TestServer,
    ingest: Ingest,
    http: aiohttp.ClientSession,
    scheme: str,
) -> None:
    alice = await sign_in(browser, server, "alice", color_scheme=scheme)
    page = alice.page
    await ingest(card_testing("acct-ct", n=4))
    ordinary = [tx(f"ok-{i}", "acct-ok", T0, 30.0 + i, "m-grocer") for i in range(2)]
    await ingest(ordinary)
    labels = [{"transaction_id": f"acct-ct-ct{i}", "label": "fraud"} for i in range(4)]
    labels += [{"transaction_id": t["id"], "label": "legitimate"} for t in ordinary]
    async with http.post(server.make_url("/api/v1/labels"), json=labels) as r:
        assert r.status == 200, await r.text()
    scorecard = page.locator("#scorecard")
    await expect(scorecard).to_be_visible(timeout=10_000)
    await scorecard.locator("summary").click()
    await expect(page.locator("#scorecard-rows tr")).to_have_count(2)
    await axe(page, "the scorecard open")
    await scorecard.locator("summary").click()
    await page.locator("#integrity summary").click()
    await expect(page.locator("#integrity-hint")).to_be_visible()
    await axe(page, "the delivery integrity panel open")
    assert alice.problems == []


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_axe_finds_nothing_serious_on_the_other_pages(
    browser: Browser, server: TestServer, scheme: str
) -> None:
    context = await browser.new_context(
        base_url=str(server.make_url("/")), viewport=VIEWPORT, color_scheme=scheme
    )
    login = await context.new_page()
    await login.goto("/login")
    await in_scheme(login, scheme)
    await axe(login, "the sign-in page")
    await login.get_by_label("Username").fill("alice")
    await login.get_by_label("Password").fill("not the password")
    await login.get_by_role("button", name="Sign in").click()
    await expect(login.get_by_role("alert")).to_be_visible()
    await axe(login, "the sign-in page after a wrong password")
    await context.close()

    await create_user(server.app[STORE], "root", PASSWORD, "admin")
    for viewport in (VIEWPORT, PHONE):
        admin = await signed_in_page(
            browser, server, "root", "/admin", color_scheme=scheme, viewport=viewport
        )
        await expect(admin.locator("#user-rows tr")).to_have_count(3)
        await expect(admin.locator("#setting-rows tr").first).to_be_visible()
        await expect(admin.locator("#rules-version")).not_to_have_text("…")
        await axe(admin, f"the admin page at {viewport}")
        await admin.get_by_role("button", name="Remove alice").click()
        await expect(admin.get_by_role("dialog", name="Remove alice?")).to_be_visible()
        await axe(admin, f"the admin page's remove dialog at {viewport}")
        await admin.keyboard.press("Escape")

    forbidden = await signed_in_page(browser, server, "alice", "/admin", color_scheme=scheme)
    await expect(forbidden.get_by_text("Only admins can open the admin page")).to_be_visible()
    await axe(forbidden, "the 403 page")


# What axe leaves to a person (its "incomplete" results) in the main states, by rule and
# element: only what docs/dashboard.md (Checked by axe-core) explains may be there. The
# table's spacer rows (hidden, or aria-hidden while they stand in for the rows not drawn),
# one cell each, end axe's walk down the last column before it reaches a row: with them
# removed from the page it reports nothing. Under 1200 px the open alerts' counts by
# severity end in an ellipsis in their card (its title has them whole): axe finds the
# part cut off under nothing it can name.
KNOWN_INCOMPLETE = {
    ("th-has-data-cells", "#alerts-table"),
    ("color-contrast", ".sev-count-medium"),
}


async def incomplete(page: Page) -> set[tuple[str, str]]:
    results = await Axe().run(page, options={"resultTypes": ["incomplete"]})
    return {
        (rule["id"], " ".join(map(str, node["target"])))
        for rule in results.response["incomplete"]
        for node in rule["nodes"]
    }


async def test_axe_leaves_nothing_unexplained_to_check_by_hand(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    # The account history's chart drew its labels (the largest amount, the first and last
    # times) as SVG text, which axe cannot check against the page behind it, shrunk with
    # the chart to 9 or 10 px in a narrow drawer. They are text beside the chart now.
    found: dict[str, set[tuple[str, str]]] = {}
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    ids = await a_queue(alice, ingest)
    found["the queue"] = await incomplete(page)
    await alice.row(ids[1]).locator("td").nth(2).click()
    await expect(alice.drawer.locator("svg.amount-chart")).to_be_visible()
    await animations_done(page)
    found["the drawer, with the account's history"] = await incomplete(page)
    await page.set_viewport_size({"width": 1024, "height": 700})
    await animations_done(page)
    found["the drawer at 1024 px"] = await incomplete(page)

    login = await (await browser.new_context(base_url=str(server.make_url("/")))).new_page()
    await login.goto("/login")
    found["the sign-in page"] = await incomplete(login)
    await create_user(server.app[STORE], "root", PASSWORD, "admin")
    admin = await signed_in_page(browser, server, "root", "/admin")
    await expect(admin.locator("#user-rows tr")).to_have_count(3)
    await expect(admin.locator("#rules-version")).not_to_have_text("…")
    found["the admin page"] = await incomplete(admin)
    unexplained = {state: sorted(f - KNOWN_INCOMPLETE) for state, f in found.items()}
    assert unexplained == {state: [] for state in found}, unexplained
    assert alice.problems == []
