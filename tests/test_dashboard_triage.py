"""Triage in a real Chromium: keyboard-only work, the details drawer, bulk actions."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import sqlite3
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Route, expect
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

import tests.browser_support as bs
from server.auth import create_user
from server.state import SETTINGS, STORE
from tests.browser_support import (
    MERCHANT,
    OWNER,
    PASSWORD,
    STATUS,
    T0,
    XSS,
    Analyst,
    Ingest,
    analyst_http,
    bob_resolves,
    card_testing,
    eventually,
    impossible_travel,
    listed,
    listed_alerts,
    resolve_in_the_drawer,
    sign_in,
    travel_at_night,
)

pytestmark = pytest.mark.browser


async def three_alerts(ingest: Ingest) -> tuple[str, str, str]:
    """A critical, then two high alerts raised in turn: the queue lists them in that order."""
    [critical] = await ingest(travel_at_night("acct-crit"))
    [first] = await ingest(impossible_travel("acct-high-1", "First Ltd"))
    [second] = await ingest(
        impossible_travel("acct-high-2", "Second Ltd", T0 + dt.timedelta(hours=1))
    )
    return critical, first, second


async def test_keyboard_only_triage_of_three_alerts(
    browser: Browser, server: TestServer, ingest: Ingest, http: aiohttp.ClientSession
) -> None:
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    critical, first, second = await three_alerts(ingest)
    for alert_id in (critical, first, second):
        await expect(alice.row(alert_id)).to_be_visible()
    order = [await row.get_attribute("data-id") for row in await alice.rows.all()]
    assert order == [critical, first, second], "severity first, then oldest first"

    # j: the first row takes focus, with a visible ring.
    await alice.press("j")
    assert await alice.focused_row_id() == critical
    ring = await page.evaluate(
        """() => {
            const el = document.activeElement;
            const style = getComputedStyle(el);
            return {visible: el.matches(':focus-visible'), outline: style.outlineStyle,
                    width: style.outlineWidth};
        }"""
    )
    assert ring == {"visible": True, "outline": "solid", "width": "2px"}, ring

    # a: acknowledge.
    await alice.press("a")
    await expect(alice.cell(critical, STATUS)).to_have_text("Acknowledged")
    await expect(alice.cell(critical, OWNER)).to_have_text("alice (you)")

    # j, then f: the resolve dialog opens with fraud chosen; Enter confirms.
    await alice.press("j")
    assert await alice.focused_row_id() == first
    await alice.press("f")
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text("Resolve as fraud")
    await expect(dialog.get_by_role("radio", name="Fraud")).to_be_checked()
    await alice.press("Enter")
    await expect(dialog).to_be_hidden()
    await expect(alice.cell(first, STATUS)).to_have_text("Resolved Fraud")
    # The analyst has finished it: it goes to the end of the queue, and the keyboard to the
    # queue, at the resolved one's place (_keepPlace's rule: after the nearest alert above
    # that did not change, the first listed here, as the critical one was acknowledged).
    await eventually(lambda: listed(alice), [critical, second, first])

    async def moved_on() -> bool:
        return await alice.focused_row_id() in (critical, second)

    await eventually(moved_on, True)

    # k goes back up, j comes down again; l resolves as legitimate, with a typed note.
    await alice.press("k")
    assert await alice.focused_row_id() == critical
    await alice.press("j")
    assert await alice.focused_row_id() == second
    await alice.press("l")
    await expect(dialog.get_by_role("radio", name="Legitimate")).to_be_checked()
    await page.keyboard.type("Customer confirmed by phone")
    await alice.press("Enter")
    await expect(dialog).to_be_hidden()
    await expect(alice.cell(second, STATUS)).to_have_text("Resolved Legitimate")

    # The server agrees.
    async with http.get(server.make_url("/api/v1/alerts?status=acknowledged,resolved")) as r:
        alerts = {a["id"]: a for a in (await r.json())["alerts"]}
    assert alerts[critical]["status"] == "acknowledged"
    assert alerts[critical]["owner"] == "alice"
    assert (alerts[first]["status"], alerts[first]["disposition"]) == ("resolved", "fraud")
    assert alerts[second]["disposition"] == "legitimate"
    assert alerts[second]["note"] == "Customer confirmed by phone"
    assert alice.problems == []


async def test_u_undoes_the_resolve_just_made(
    browser: Browser, server: TestServer, ingest: Ingest, http: aiohttp.ClientSession
) -> None:
    """Enter confirms the dialog, so a slip resolves at once: the notice says what was
    resolved, and u (or its button) puts the alert back in the queue."""
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    critical, first, third = await three_alerts(ingest)
    await expect(alice.row(first)).to_be_visible()
    await alice.press("j", "j")
    assert await alice.focused_row_id() == first
    await alice.press("f")
    await expect(page.get_by_role("dialog")).to_be_visible()
    await alice.press("Enter")
    await expect(alice.cell(first, STATUS)).to_have_text("Resolved Fraud")
    notice = page.locator(".notice", has_text="Resolved as fraud")
    await expect(notice).to_contain_text("alert for account acct-high-1 (First Ltd")
    await expect(notice.get_by_role("button", name="Undo (u)")).to_be_visible()

    # The keyboard is on the alert that took the resolved one's place (the third).
    await eventually(alice.focused_row_id, third)
    await alice.press("u")
    await expect(alice.cell(first, STATUS)).to_have_text("Open")
    await expect(notice).to_be_hidden()
    await expect(
        page.locator(".notice", has_text="Reopened: alert for account acct-high-1")
    ).to_be_visible()
    async with http.get(server.make_url(f"/api/v1/alerts/{first}")) as r:
        assert (await r.json())["alert"]["status"] == "open"

    # Once is enough: a second u has nothing to undo, and says so.
    await alice.press("u")
    await expect(page.locator(".notice", has_text="Nothing to undo")).to_be_visible()

    # The notice's button does the same, for the mouse.
    await eventually(alice.focused_row_id, third)
    await alice.press("k")
    assert await alice.focused_row_id() == critical
    await alice.press("l")
    await alice.press("Enter")
    await expect(alice.cell(critical, STATUS)).to_have_text("Resolved Legitimate")
    await page.get_by_role("button", name="Undo (u)").click()
    await expect(alice.cell(critical, STATUS)).to_have_text("Open")
    assert alice.problems == []


async def test_keys_never_act_on_an_alert_the_filters_hide(
    browser: Browser, server: TestServer, ingest: Ingest, http: aiohttp.ClientSession
) -> None:
    """The cursor stays on its alert when a search hides it: a, f, l and Enter must not act
    on that unseen alert, and with nothing listed the notice must not send the analyst to
    j and k, which have nothing to move through: j and k themselves say why."""
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    # Nothing raised yet, nothing filtered: nothing to pick, and no filter to blame. j and k
    # said nothing at all.
    notice = page.locator(".notice")
    for key in ("j", "k", "a"):
        await alice.press(key)
        await expect(notice).to_have_text(re.compile("^No alerts listed: nothing"))
        await notice.get_by_role("button", name="Dismiss").click()
        await expect(notice).to_have_count(0)
    critical, first, second = await three_alerts(ingest)
    await expect(alice.rows).to_have_count(3)
    await alice.press("j")
    assert await alice.focused_row_id() == critical
    search = page.get_by_role("searchbox", name="Search alerts")

    # A search that hides the cursor's alert, then Esc back to the table.
    await alice.press("/")
    await page.keyboard.type("acct-high")
    await expect(alice.rows).to_have_count(2)
    await alice.press("Escape")
    await expect(search).not_to_be_focused()
    await alice.press("a")
    await expect(page.locator(".notice", has_text="Pick an alert first")).to_be_visible()
    await alice.press("f")
    await expect(page.get_by_role("dialog")).to_have_count(0)
    await expect(alice.row(critical)).to_have_count(0)

    # A search that hides everything.
    await alice.press("/")
    await page.keyboard.type("-nothing-like-it")
    await expect(alice.rows).to_have_count(0)
    await alice.press("Escape")
    await alice.press("a")
    await expect(page.locator(".notice", has_text="No alerts listed")).to_be_visible()
    await expect(page.locator(".notice", has_text="j and k")).to_have_count(0)
    await notice.get_by_role("button", name="Dismiss").click()
    await alice.press("j")
    await expect(notice).to_have_text(re.compile("^No alerts listed: the filters match none"))
    await alice.press("Enter")
    await expect(alice.drawer).to_be_hidden()

    async with http.get(server.make_url("/api/v1/alerts?status=acknowledged,resolved")) as r:
        assert (await r.json())["alerts"] == [], "nothing was acted on"
    # The cursor's alert is still there once the search is cleared, and j starts afresh.
    await alice.press("/")
    await search.fill("")
    await alice.press("Escape")
    await expect(alice.rows).to_have_count(3)
    await alice.press("a")
    await expect(alice.cell(critical, STATUS)).to_have_text("Acknowledged")
    assert await listed(alice) == [critical, first, second]
    assert alice.problems == []


async def six_in_a_queue(alice: Analyst, ingest: Ingest) -> list[str]:
    """Six high alerts, raised in turn: the queue lists them in that order."""
    queue = [
        (await ingest(impossible_travel(f"acct-q{i}", "Shop", T0 + dt.timedelta(hours=i))))[0]
        for i in range(6)
    ]
    await expect(alice.rows).to_have_count(6)
    assert await listed(alice) == queue, "one severity: oldest first"
    return queue


async def resolve_legitimate(alice: Analyst, alert_id: str, then: str | None = None) -> None:
    """l, Enter on the focused row (`alert_id`): resolved, it goes to its place in the queue
    and the keyboard is on `then`, the alert that took its place (when given; else on
    another row)."""
    await alice.press("l")
    await expect(alice.page.get_by_role("dialog", name=re.compile("^Resolve"))).to_be_visible()
    await alice.press("Enter")
    await expect(alice.cell(alert_id, STATUS)).to_have_text("Resolved Legitimate")
    # Focus comes back to the table once the dialog has closed: keys pressed before that
    # would land outside the table.
    if then is not None:
        await eventually(alice.focused_row_id, then)
        return

    async def elsewhere() -> bool:
        return await alice.focused_row_id() not in (None, alert_id)

    await eventually(elsewhere, True)


async def test_cursor_keeps_its_place_when_the_resolved_row_moves_away(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    alice = await sign_in(browser, server, "alice")
    queue = await six_in_a_queue(alice, ingest)
    await alice.press("j", "j", "j")
    assert await alice.focused_row_id() == queue[2]
    await resolve_legitimate(alice, queue[2], then=queue[3])

    # The resolve let the table catch up (and Esc releases it): the resolved row goes to
    # the end, the cursor stays put, on the alert that took its place.
    await alice.press("Escape")
    await eventually(lambda: listed(alice), [*queue[:2], *queue[3:], queue[2]])
    cursor = alice.page.locator("#alert-rows tr.is-cursor")
    await expect(cursor).to_have_attribute("data-id", queue[3])
    # The analyst has not been on that alert: j lands on it rather than skipping it, and
    # goes on from there.
    await alice.press("j")
    assert await alice.focused_row_id() == queue[3]
    await alice.press("j")
    assert await alice.focused_row_id() == queue[4]
    assert alice.problems == []


async def test_esc_on_a_row_closes_the_drawer_and_the_table_stays_held(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    # QA: Esc closing the drawer sometimes let the table go, with rows resolved meanwhile
    # waiting to move below the focused one: they moved, taking the row's focus to the page.
    # Deterministically: focus on the cursor's row from a mouse press (a drag that opens
    # nothing) does not count as the keyboard, and the drawer's Esc puts focus back where it
    # already is, so nothing said the keyboard was in the table.
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    queue = await six_in_a_queue(alice, ingest)
    await alice.press("j", "j", "j", "Enter")
    await expect(alice.drawer.locator("h2")).to_have_text("Account acct-q2")
    box = await alice.cell(queue[2], MERCHANT).bounding_box()
    assert box is not None
    await page.mouse.move(box["x"] + 5, box["y"] + 5)
    await page.mouse.down()
    await page.mouse.move(5, 5)
    await page.mouse.up()
    assert await alice.focused_row_id() == queue[2]
    await expect(alice.drawer).to_be_visible()

    # Bob resolves the two rows above it: they wait to go to the end of the queue.
    await bob_resolves(server, queue[0], queue[1])
    for alert_id in queue[:2]:
        await expect(alice.cell(alert_id, STATUS)).to_have_text("Resolved Legitimate")

    # Esc closes the drawer; the keyboard is in the table, which stays held.
    await alice.press("Escape")
    await expect(alice.drawer).to_be_hidden()
    paused = page.locator("#alerts-paused")
    await expect(paused).to_have_text("Paused")
    # A barrier: an alert raised after the Esc is drawn in a render after it. A held table
    # counts it as waiting; a released one would list it and re-sort the rest.
    [later] = await ingest(impossible_travel("acct-q6", "Shop", T0 + dt.timedelta(hours=6)))
    await expect(paused).to_have_text("Paused · 1 new")
    assert await listed(alice) == queue
    assert await alice.focused_row_id() == queue[2]
    await expect(paused).to_be_visible()
    # j goes on from there; the next Esc releases the table, and the resolved rows go.
    await alice.press("j")
    assert await alice.focused_row_id() == queue[3]
    await alice.press("Escape")
    await eventually(lambda: listed(alice), [*queue[2:], later, *queue[:2]])
    await expect(paused).to_be_hidden()
    assert alice.problems == []


async def test_the_paused_pill_is_a_button_that_shows_what_waits(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    # QA: held by the drawer, the pill said "Paused · 213 new" and only its tooltip said why
    # and how to go on; a mouse or keyboard could not act on it.
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    queue = await six_in_a_queue(alice, ingest)
    await alice.press("j", "j", "Enter")
    await expect(alice.drawer).to_be_visible()
    [later] = await ingest(impossible_travel("acct-q6", "Shop", T0 + dt.timedelta(hours=6)))
    pill = page.get_by_role("button", name="Paused · 1 new — show")
    await expect(pill).to_be_visible()
    await expect(pill).to_have_accessible_description(re.compile("^New alerts wait while"))
    assert await listed(alice) == queue
    # Reached by the keyboard (Shift+Tab from Take next, the control after it), it keeps the
    # table held until pressed: the drawer holds it.
    await page.get_by_role("button", name="Take next").focus()
    await alice.press("Shift+Tab")
    await expect(pill).to_be_focused()
    await alice.press("Enter")
    await expect(alice.drawer).to_be_hidden()
    await eventually(lambda: listed(alice), [*queue, later])
    await expect(page.locator("#alerts-paused")).to_be_hidden()
    # The keyboard is back with the table, on the cursor's alert.
    await alice.press("j")
    assert await alice.focused_row_id() == queue[2]
    assert alice.problems == []


async def test_shortcuts_list_holds_the_table(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    queue = await six_in_a_queue(alice, ingest)
    await alice.press("j", "j", "j")
    await resolve_legitimate(alice, queue[2], then=queue[3])
    moved = [*queue[:2], *queue[3:], queue[2]]

    # Like the resolve dialog, the list holds the rows: closing it gives focus back to the
    # alert that took the resolved one's place, still where it was, and j lands on it.
    overlay = page.get_by_role("dialog", name="Keyboard shortcuts")
    await alice.press("?")
    await expect(overlay).to_be_visible()
    # A barrier: an alert raised now is drawn in a render after the list opened. A held
    # table counts it as waiting; a released one would list it and re-sort the rest.
    await ingest(impossible_travel("acct-q6", "Shop", T0 + dt.timedelta(hours=6)))
    await expect(page.locator("#alerts-paused")).to_have_text("Paused · 1 new")
    assert await listed(alice) == moved
    await alice.press("Escape")
    await expect(overlay).to_be_hidden()
    await alice.press("j")
    assert await alice.focused_row_id() == queue[3]
    assert alice.problems == []


async def answer_busy(route: Route) -> None:
    """The store's answer when it is busy: a 503 the dashboard may retry."""
    error = {"code": "unavailable", "message": "The store is busy.", "field": None}
    await route.fulfill(status=503, json={"error": error})


async def test_resolve_dialog_keeps_the_note_when_the_call_fails(
    browser: Browser, server: TestServer, ingest: Ingest, http: aiohttp.ClientSession
) -> None:
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    [alert_id] = await ingest(impossible_travel("acct-down", "Harrods"))
    failures = ["unreachable", "server error"]

    async def fail(route: Route) -> None:
        if failures.pop(0) == "unreachable":
            await route.abort()
        else:
            await answer_busy(route)

    await page.route("**/api/v1/alerts/*/resolve", fail)
    await page.get_by_role("button", name="Resolve alert for account acct-down as fraud").click()
    dialog = page.get_by_role("dialog", name=re.compile("^Resolve"))
    note = dialog.get_by_label("Note")
    error = dialog.get_by_role("alert")
    await expect(error).to_be_hidden()
    await page.keyboard.type("Card was in the wallet; merchant confirms")
    await alice.press("Enter")
    await expect(error).to_contain_text("The server could not be reached")
    await expect(dialog).to_be_visible()
    await expect(note).to_have_value("Card was in the wallet; merchant confirms")
    await expect(note).to_be_focused()
    await alice.press("Enter")
    await expect(error).to_contain_text("The store is busy.")
    await expect(dialog).to_be_visible()
    await expect(alice.cell(alert_id, STATUS)).to_have_text("Open")
    await expect(page.locator("#notices")).not_to_contain_text("Could not")

    # The server answers again: the same Enter resolves it, with the note.
    await page.unroute("**/api/v1/alerts/*/resolve")
    await alice.press("Enter")
    await expect(dialog).to_be_hidden()
    await expect(alice.cell(alert_id, STATUS)).to_have_text("Resolved Fraud")
    async with http.get(server.make_url(f"/api/v1/alerts/{alert_id}")) as r:
        alert = (await r.json())["alert"]
    assert alert["note"] == "Card was in the wallet; merchant confirms"
    await expect(page.locator("#notices")).not_to_contain_text("was resolved")
    assert alice.problems == []


async def test_resolve_dialog_keeps_the_note_when_someone_else_takes_the_alert(
    browser: Browser, server: TestServer, ingest: Ingest, http: aiohttp.ClientSession
) -> None:
    # QA: another analyst acknowledging the alert closed the dialog, and the note went with it.
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    [held] = await ingest(impossible_travel("acct-held", "Harrods"))
    [gone] = await ingest(impossible_travel("acct-gone", "Liberty", T0 + dt.timedelta(hours=1)))
    dialog = page.get_by_role("dialog", name=re.compile("^(Resolve|Add your note)"))
    note = dialog.get_by_label("Note")
    message = dialog.get_by_role("alert")
    bob, csrf = await analyst_http(server, "bob")

    async def bob_does(alert_id: str, action: str, body: dict[str, str]) -> None:
        async with bob.post(
            server.make_url(f"/api/v1/alerts/{alert_id}/{action}"),
            json=body,
            headers={"X-CSRF-Token": csrf},
        ) as r:
            assert r.status == 200, await r.text()

    async with bob:
        # Bob acknowledges it mid-sentence: the dialog stays, the note and the keyboard too.
        await page.get_by_role(
            "button", name="Resolve alert for account acct-held as fraud"
        ).click()
        await expect(note).to_be_focused()
        await page.keyboard.type("Cardholder confirms")
        await bob_does(held, "ack", {})
        await expect(alice.cell(held, OWNER)).to_have_text("bob")
        await expect(dialog).to_be_visible()
        await expect(message).to_have_text(
            "Acknowledged by bob meanwhile: only they can resolve it now. Your note is kept: "
            "Enter adds it to the alert's notes, Esc closes without it."
        )
        await expect(dialog.locator("#resolve-title")).to_have_text("Add your note to the alert")
        await expect(dialog.get_by_role("button", name="Add as note")).to_be_visible()
        await expect(dialog.get_by_role("radio")).to_have_count(0)
        await expect(note).to_be_focused()
        # Typing goes on into the note, not into the page's shortcuts.
        await page.keyboard.type(" the card was stolen")
        await expect(note).to_have_value("Cardholder confirms the card was stolen")
        await expect(page.locator("#notices")).not_to_contain_text("meanwhile")

        # Bob lets it go: the dialog resolves again, and Enter does, with the note.
        await bob_does(held, "unack", {})
        await expect(alice.cell(held, OWNER)).to_have_text("—")
        await expect(dialog.locator("#resolve-title")).to_have_text("Resolve as fraud")
        await expect(message).to_be_hidden()
        await expect(dialog.get_by_role("radio", name="Fraud")).to_be_checked()
        await alice.press("Enter")
        await expect(dialog).to_be_hidden()
        await expect(alice.cell(held, STATUS)).to_have_text("Resolved Fraud")
        async with http.get(server.make_url(f"/api/v1/alerts/{held}")) as r:
            assert (await r.json())["alert"]["note"] == "Cardholder confirms the card was stolen"

        # Bob resolves the next one under the dialog: Enter puts the note on the alert.
        await page.get_by_role(
            "button", name="Resolve alert for account acct-gone as fraud"
        ).click()
        await page.keyboard.type("Same card as acct-held")
        await bob_does(gone, "resolve", {"disposition": "legitimate"})
        await expect(message).to_have_text(
            "Resolved as legitimate by bob meanwhile. Your note is kept: "
            "Enter adds it to the alert's notes, Esc closes without it."
        )
        await expect(note).to_have_value("Same card as acct-held")
        await alice.press("Enter")
        await expect(dialog).to_be_hidden()
        # (Beside the notice of alice's own resolve of acct-held, with its undo.)
        await expect(page.locator("#notices .notice:not([data-key=undo])")).to_have_text(
            re.compile(
                r"^Your note is on the alert for account acct-gone \(Liberty · \$1,299\.00\)\."
            )
        )
        async with http.get(server.make_url(f"/api/v1/alerts/{gone}")) as r:
            body = await r.json()
        assert body["alert"]["disposition"] == "legitimate"
        assert [(n["author"], n["text"]) for n in body["notes"]] == [
            ("alice", "Same card as acct-held")
        ]
    assert alice.problems == []


async def test_resolve_dialog_keeps_the_note_when_the_server_says_someone_was_first(
    browser: Browser, server: TestServer, ingest: Ingest, http: aiohttp.ClientSession
) -> None:
    # Bob acknowledges the alert just before Alice's resolve reaches the server: the 409 says
    # so, and her note stays as it does when the live feed tells her first.
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    [alert_id] = await ingest(impossible_travel("acct-race", "Selfridges"))
    dialog = page.get_by_role("dialog", name=re.compile("^(Resolve|Add your note)"))
    bob, csrf = await analyst_http(server, "bob")

    async def bob_first(route: Route) -> None:
        async with bob.post(
            server.make_url(f"/api/v1/alerts/{alert_id}/ack"),
            json={},
            headers={"X-CSRF-Token": csrf},
        ) as r:
            assert r.status == 200, await r.text()
        await route.continue_()

    async with bob:
        await page.route("**/api/v1/alerts/*/resolve", bob_first)
        await page.get_by_role(
            "button", name="Resolve alert for account acct-race as fraud"
        ).click()
        await page.keyboard.type("Merchant confirms the chargeback")
        await alice.press("Enter")
        await expect(dialog.get_by_role("alert")).to_have_text(
            "Acknowledged by bob meanwhile: only they can resolve it now. Your note is kept: "
            "Enter adds it to the alert's notes, Esc closes without it."
        )
        await expect(dialog.get_by_label("Note")).to_have_value("Merchant confirms the chargeback")
        await expect(dialog.get_by_label("Note")).to_be_focused()
        await expect(alice.cell(alert_id, OWNER)).to_have_text("bob")
        await alice.press("Enter")
        await expect(dialog).to_be_hidden()
    async with http.get(server.make_url(f"/api/v1/alerts/{alert_id}")) as r:
        body = await r.json()
    assert (body["alert"]["status"], body["alert"]["owner"]) == ("acknowledged", "bob")
    assert [n["text"] for n in body["notes"]] == ["Merchant confirms the chargeback"]
    assert alice.problems == []


async def test_keys_meant_for_a_dialog_closed_under_the_analyst_run_no_shortcuts(
    browser: Browser, server: TestServer, ingest: Ingest, http: aiohttp.ClientSession
) -> None:
    # QA: Bob took the alert while Alice's resolve dialog was open with no note, so it closed
    # with a notice; what she pressed next for the dialog fell on the shortcuts. "n" took the
    # next alert in her name, Enter opened the drawer, Esc released the table.
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    queue = await six_in_a_queue(alice, ingest)
    await alice.press("j", "j")
    assert await alice.focused_row_id() == queue[1]
    await alice.press("f")
    dialog = page.get_by_role("dialog", name=re.compile("^Resolve"))
    await expect(dialog).to_be_visible()
    bob, csrf = await analyst_http(server, "bob")
    async with (
        bob,
        bob.post(
            server.make_url(f"/api/v1/alerts/{queue[1]}/ack"),
            json={},
            headers={"X-CSRF-Token": csrf},
        ) as r,
    ):
        assert r.status == 200, await r.text()
    await expect(dialog).to_be_hidden()
    await expect(page.locator("#notices")).to_contain_text("was acknowledged by bob meanwhile")

    # The start of a note, then Enter and Esc for a dialog that is gone.
    await page.keyboard.type("no k")
    await alice.press("Enter", "Escape")
    # The keys' handlers have run (a drawer opens at once); a barrier for what follows them:
    # an alert raised now is drawn in a render after the Esc, counted as waiting by a table
    # still held and listed by one released. A claim the keys made would have left the page
    # before this alert was even posted; the server is asked about it after.
    await ingest(impossible_travel("acct-q6", "Shop", T0 + dt.timedelta(hours=6)))
    await expect(page.locator("#alerts-paused")).to_have_text("Paused · 1 new")
    await expect(alice.drawer).to_be_hidden()
    await expect(page.locator("#alerts-paused")).to_be_visible()
    assert await alice.focused_row_id() == queue[1]
    async with http.get(server.make_url("/api/v1/alerts?status=acknowledged")) as r:
        owners = [alert["owner"] for alert in (await r.json())["alerts"]]
    assert owners == ["bob"], "nothing taken in Alice's name"

    # Once the keyboard has been still a moment, keys are the analyst's again. The page's
    # settle time (keyboard.js, SETTLE_MS = 1000) is the behaviour here: this wait stays.
    await page.wait_for_timeout(1100)
    await alice.press("j")
    assert await alice.focused_row_id() == queue[2]
    assert alice.problems == []


async def test_a_held_enter_that_confirmed_the_dialog_does_not_open_the_details(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    # QA: Enter held a moment too long confirmed the dialog, then repeated on the row the
    # dialog went back to and opened its details.
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    queue = await six_in_a_queue(alice, ingest)
    await alice.press("j", "f")
    dialog = page.get_by_role("dialog", name=re.compile("^Resolve"))
    await expect(dialog).to_be_visible()
    await page.keyboard.down("Enter")
    await expect(alice.cell(queue[0], STATUS)).to_have_text("Resolved Fraud")
    await eventually(alice.focused_row_id, queue[1])
    # The keyboard's repeat: the same key, down again and again until it is let go.
    for _ in range(3):
        await page.keyboard.down("Enter")
    await page.keyboard.up("Enter")
    # Each key event is handled before keyboard.down() returns, and Enter opens the drawer
    # there and then: a repeat let through would have opened it by now.
    await expect(alice.drawer).to_be_hidden()
    # A new press is the analyst's own: Enter opens the details.
    await alice.press("Enter")
    await expect(alice.drawer).to_be_visible()
    assert alice.problems == []


async def test_shortcuts_overlay_search_and_typing(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    [a_alert] = await ingest(impossible_travel("acct-alpha", "Alpha Shop"))
    [b_alert] = await ingest(
        impossible_travel("acct-beta", "Beta Shop", T0 + dt.timedelta(hours=1))
    )
    await expect(alice.row(b_alert)).to_be_visible()

    await alice.press("?")
    overlay = page.get_by_role("dialog", name="Keyboard shortcuts")
    await expect(overlay).to_be_visible()
    await expect(overlay).to_contain_text("Resolve as legitimate")
    # Keys do nothing behind the overlay.
    await alice.press("j")
    assert await alice.focused_row_id() is None
    await alice.press("Escape")
    await expect(overlay).to_be_hidden()

    # /: search. Typing "acct-beta" there types; its "a" acknowledges nothing.
    await alice.press("/")
    search = page.get_by_role("searchbox", name="Search alerts")
    await expect(search).to_be_focused()
    await page.keyboard.type("acct-beta")
    await expect(search).to_have_value("acct-beta")
    await expect(alice.row(a_alert)).to_have_count(0)
    await expect(alice.rows).to_have_count(1)
    await expect(alice.cell(b_alert, STATUS)).to_have_text("Open")
    await expect(page).to_have_url(re.compile(r"\?q=acct-beta$"))

    # Esc leaves the search (keeping it) for the table; x selects the row j moved to.
    await alice.press("Escape")
    await expect(search).not_to_be_focused()
    await expect(search).to_have_value("acct-beta")
    await alice.press("j", "x")
    await expect(alice.row(b_alert).get_by_role("checkbox")).to_be_checked()
    await expect(page.locator("#bulk-bar")).to_contain_text("1 selected")
    await alice.press("x")
    await expect(alice.row(b_alert).get_by_role("checkbox")).not_to_be_checked()
    await expect(page.locator("#bulk-bar")).to_be_hidden()
    assert alice.problems == []


async def test_details_drawer_shows_everything_and_holds_the_stream(
    browser: Browser, server: TestServer, ingest: Ingest, tmp_path: Path
) -> None:
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    drawer = alice.drawer
    # Two alerts on one account and device; a third on another account, same device, and the
    # same merchant as the first; a fourth whose merchant name is markup.
    own = await ingest(card_testing("acct-dd", n=4, device_id="dev-77", ip="203.0.113.9"))
    other = await ingest(
        card_testing("acct-ee", n=3, at=T0 + dt.timedelta(hours=1), device_id="dev-77")
    )
    # 42.00 at stake or less: every alert is medium.
    [xss] = await ingest(impossible_travel("acct-xss", XSS, T0 + dt.timedelta(hours=2), "42.00"))
    assert len(own) == 2 and len(other) == 1
    await expect(alice.row(xss)).to_be_visible()

    # Enter on a row opens it.
    await alice.press("j")
    assert await alice.focused_row_id() == own[0], "all medium: the oldest comes first"
    await alice.press("Enter")
    await expect(drawer).to_be_visible()
    await expect(drawer).to_be_focused()
    await expect(drawer.locator("h2")).to_have_text("Account acct-dd")

    fields = drawer.locator('[data-section="transaction"] dl')
    for label, value in [
        ("Transaction id", "acct-dd-ct2"),
        ("Account", "acct-dd"),
        ("Merchant id", "m-don-2"),
        ("Merchant name", "Charity Donate"),
        ("Device", "dev-77"),
        ("IP address", "203.0.113.9"),
        ("Currency", "USD"),
    ]:
        await expect(fields.locator(f"dt:text-is('{label}') + dd")).to_have_text(value)
    reason = drawer.locator(".reason-item").first
    await expect(reason).to_contain_text("Card testing")
    await expect(reason).to_contain_text("observed 3")
    await expect(reason).to_contain_text("threshold 3")
    raw = drawer.locator("pre.raw-json")
    await drawer.get_by_text("Raw payload").click()
    await expect(raw).to_contain_text('"device_id": "dev-77"')
    summary = drawer.locator('[data-section="alert"]')
    await expect(summary).to_contain_text("Unowned")
    await expect(summary).to_contain_text("Score")

    # The account's history comes from the server: all four transactions, this one marked.
    history = drawer.locator('[data-section="account-history"]')
    await expect(history.locator("tbody tr")).to_have_count(4)
    await expect(history).to_contain_text("The last 4 transactions of acct-dd, newest first")
    await expect(history.locator("tr.is-current")).to_contain_text("(this one)")
    await expect(history.locator('tr[data-tx="acct-dd-ct2"]')).to_have_class("is-current")
    await expect(history.locator("svg.amount-chart")).to_be_visible()
    activity = drawer.locator('[data-section="account"]')
    await expect(activity.locator(f'[data-open="{own[1]}"]')).to_be_visible()
    related = drawer.locator('[data-section="related"]')
    await expect(related.locator(".related-group", has_text="Same device")).to_contain_text("· 2")
    same_merchant = related.locator(".related-group", has_text="Same merchant m-don-2")
    await expect(same_merchant.locator(f'[data-open="{other[0]}"]')).to_be_visible()

    # While the drawer is open new alerts wait, like with the pointer on the table.
    [late] = await ingest(impossible_travel("acct-late", "Late Ltd", T0 + dt.timedelta(hours=3)))
    await expect(page.locator("#alerts-paused")).to_have_text("Paused · 1 new")
    await expect(alice.row(late)).to_have_count(0)

    # j moves on and the drawer follows; acknowledging there lands in the audit trail.
    await alice.press("j")
    await expect(drawer.locator("#drawer-sub")).to_contain_text("Charity Donate")
    await expect(drawer.locator("dt:text-is('Transaction id') + dd")).to_have_text("acct-dd-ct3")
    await drawer.get_by_role("button", name="Acknowledge").click()
    await expect(drawer.locator(".drawer-badges")).to_contain_text("Acknowledged")
    await expect(drawer.locator(".timeline")).to_contain_text("Acknowledged by alice")
    await expect(alice.cell(own[1], OWNER)).to_have_text("alice (you)")
    await screenshot_drawer(alice, tmp_path)

    # Esc closes it, puts focus back on the row, and the held alert arrives.
    await page.mouse.move(5, 5)
    await alice.press("Escape")
    await expect(drawer).to_be_hidden()
    assert await alice.focused_row_id() == own[1]
    await alice.press("Escape")  # and a second Esc releases the table
    await expect(alice.row(late)).to_be_visible()

    # Markup in the data stays text in the drawer too.
    await alice.row(xss).locator("td").nth(2).click()
    await expect(drawer.locator("dt:text-is('Merchant name') + dd")).to_have_text(XSS)
    await drawer.get_by_text("Raw payload").click()
    await expect(raw).to_contain_text(XSS.replace('"', '\\"'))
    assert await page.locator("#drawer img").count() == 0
    assert await page.evaluate("() => window.__xss") is None
    assert alice.problems == []


async def screenshot_drawer(alice: Analyst, tmp_path: Path) -> None:
    await bs.animations_done(alice.page)
    await bs.screenshot(alice.page, "drawer.png", tmp_path)


async def test_esc_leaves_the_drawers_note_and_assign_fields_keeping_the_text(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    drawer = alice.drawer
    [alert] = await ingest(impossible_travel("acct-note", "Note Ltd"))
    await expect(alice.row(alert)).to_be_visible()
    await alice.press("n")
    await expect(drawer.locator("h2")).to_have_text("Account acct-note")
    await expect(drawer.locator(".notes-list")).to_have_count(0)

    # Esc leaves the note for the drawer, the draft kept: the next keys are shortcuts again,
    # not letters typed into a note that Enter would post for everyone to read.
    note = drawer.get_by_label("New note")
    await note.click()
    await page.keyboard.type("Called the bank")
    await alice.press("Escape")
    await expect(note).not_to_be_focused()
    await expect(drawer).to_be_focused()
    await expect(note).to_have_value("Called the bank")
    await alice.press("f")
    dialog = page.get_by_role("dialog", name="Resolve as fraud")
    await expect(dialog).to_be_visible()
    await alice.press("Escape")
    await expect(dialog).to_be_hidden()
    await expect(note).to_have_value("Called the bank")

    # The same in the Assign to field; then Esc closes the drawer, as from anywhere in it.
    assign = drawer.get_by_label("Assign to")
    await assign.fill("bob")
    await assign.focus()
    await alice.press("Escape")
    await expect(assign).not_to_be_focused()
    await expect(assign).to_have_value("bob")
    await expect(drawer).to_be_visible()
    await alice.press("Escape")
    await expect(drawer).to_be_hidden()
    assert await alice.focused_row_id() == alert
    # Nothing was posted.
    await alice.press("Enter")
    await expect(drawer.locator(".timeline")).to_contain_text("Acknowledged (next) by alice")
    await expect(drawer.get_by_text("No notes yet.")).to_be_visible()
    await expect(drawer.locator(".timeline")).not_to_contain_text("Note by")
    assert alice.problems == []


async def test_c_goes_to_the_drawers_note_box_and_esc_leaves_it_as_the_drawers_fields(
    browser: Browser, server: TestServer, ingest: Ingest, http: aiohttp.ClientSession
) -> None:
    # QA: the note box was ~35 Tab presses into the drawer, with no shortcut to it.
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    drawer = alice.drawer
    first, second = await ingest(
        [
            *impossible_travel("acct-c1", "One Ltd"),
            *impossible_travel("acct-c2", "Two Ltd", T0 + dt.timedelta(hours=1)),
        ]
    )
    await expect(alice.row(second)).to_be_visible()
    note = drawer.get_by_label("New note")

    # From the table: c opens the drawer on the cursor's alert, in its note box, and the
    # "c" itself is not typed into it.
    await alice.press("j")
    assert await alice.focused_row_id() == first
    await alice.press("c")
    await expect(drawer.locator("h2")).to_have_text("Account acct-c1")
    await expect(note).to_be_focused()
    await expect(note).to_be_in_viewport()
    await expect(note).to_have_value("")
    await page.keyboard.type("Cardholder confirms")
    # Esc leaves the box for the drawer with the draft kept, as from the Assign to field;
    # the next Esc closes the drawer, back on the row.
    await alice.press("Escape")
    await expect(note).not_to_be_focused()
    await expect(drawer).to_be_focused()
    await expect(note).to_have_value("Cardholder confirms")
    await alice.press("Escape")
    await expect(drawer).to_be_hidden()
    assert await alice.focused_row_id() == first

    # From the open drawer, after j: c goes to that alert's box (empty: the draft is the
    # first alert's), and back on the first, to its draft.
    await alice.press("Enter", "j")
    await expect(drawer.locator("h2")).to_have_text("Account acct-c2")
    await alice.press("c")
    await expect(note).to_be_focused()
    await expect(note).to_have_value("")
    await alice.press("Escape", "k", "c")
    await expect(drawer.locator("h2")).to_have_text("Account acct-c1")
    await expect(note).to_be_focused()
    await expect(note).to_have_value("Cardholder confirms")
    await page.keyboard.type(" the purchase")
    await alice.press("Enter")
    await expect(drawer.locator(".notes-list")).to_contain_text("Cardholder confirms the purchase")
    async with http.get(server.make_url(f"/api/v1/alerts/{first}")) as r:
        assert [n["text"] for n in (await r.json())["notes"]] == [
            "Cardholder confirms the purchase"
        ]

    # The shortcuts list names it.
    await alice.press("Escape", "?")
    overlay = page.get_by_role("dialog", name="Keyboard shortcuts")
    await expect(overlay.locator("tr", has=page.locator("kbd:text-is('c')"))).to_contain_text(
        "note"
    )
    await alice.press("Escape")
    assert alice.problems == []


async def test_a_note_draft_in_the_drawer_waits_for_its_alert(
    browser: Browser, server: TestServer, ingest: Ingest, http: aiohttp.ClientSession
) -> None:
    # QA: a half-written note, left with Esc, was gone after j to glance at the next alert.
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    queue = await six_in_a_queue(alice, ingest)
    drawer = alice.drawer
    note = drawer.get_by_label("New note")
    await alice.press("j", "Enter")
    await expect(drawer.locator("h2")).to_have_text("Account acct-q0")
    await note.click()
    await page.keyboard.type("Called the cardholder, no answer")
    await alice.press("Escape")

    # The next alert's box is empty: the draft is not its note.
    await alice.press("j")
    await expect(drawer.locator("h2")).to_have_text("Account acct-q1")
    await expect(note).to_have_value("")
    # Back on the first alert, the draft is where it was; Enter sends it there.
    await alice.press("k")
    await expect(drawer.locator("h2")).to_have_text("Account acct-q0")
    await expect(note).to_have_value("Called the cardholder, no answer")
    await note.focus()
    await alice.press("Enter")
    await expect(drawer.locator(".notes-list")).to_contain_text("Called the cardholder")
    await expect(note).to_have_value("")
    # Sent, it is no longer a draft.
    await alice.press("Escape", "j", "k")
    await expect(drawer.locator("h2")).to_have_text("Account acct-q0")
    await expect(note).to_have_value("")
    for alert_id, count in ((queue[0], 1), (queue[1], 0)):
        async with http.get(server.make_url(f"/api/v1/alerts/{alert_id}")) as r:
            assert len((await r.json())["notes"]) == count
    assert alice.problems == []


async def test_ages_count_every_second_in_the_rows_and_the_drawer(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    [alert] = await ingest(impossible_travel("acct-age", "Age Ltd"))
    await expect(alice.row(alert)).to_be_visible()
    await alice.press("j", "Enter")
    await expect(alice.drawer.locator("#drawer-sub")).to_contain_text("raised")

    # A new alert's age reads in seconds, as the header's oldest unacknowledged does, which
    # counts every second: the row and the drawer count along, not in 10 s jumps (the row)
    # or never while the drawer stays open (its "raised 3 s ago").
    # Sampled every 100 ms for at most 3.5 s, and done as soon as both have read three ways.
    seen = """(id) => {
        const s = (window.__seen ??= { ages: new Set(), raised: new Set() });
        s.ages.add(document.querySelector(`#alert-rows tr[data-id="${id}"] .age`).innerText);
        s.raised.add(document.querySelector("#drawer-sub").innerText);
        return s.ages.size >= 3 && s.raised.size >= 3;
    }"""
    with contextlib.suppress(PlaywrightTimeoutError):  # the asserts below say what was seen
        await page.wait_for_function(seen, arg=alert, polling=100, timeout=3_500)
    ages, raised = await page.evaluate("() => [[...__seen.ages], [...__seen.raised]]")
    assert len(ages) >= 3, ages
    assert len(raised) >= 3, raised
    assert alice.problems == []


async def test_bulk_actions_report_each_result_and_name_the_holder(
    browser: Browser, server: TestServer, ingest: Ingest, tmp_path: Path
) -> None:
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    ids: list[str] = []
    for i in range(4):
        ids += await ingest(
            impossible_travel(f"acct-b{i}", f"Shop {i}", T0 + dt.timedelta(hours=i))
        )
    for alert_id in ids:
        await expect(alice.row(alert_id)).to_be_visible()

    # Bob takes the third one from his own session first.
    bob, csrf = await analyst_http(server, "bob")
    async with (
        bob,
        bob.post(
            server.make_url(f"/api/v1/alerts/{ids[2]}/ack"), json={}, headers={"X-CSRF-Token": csrf}
        ) as r,
    ):
        assert r.status == 200, await r.text()
    await expect(alice.cell(ids[2], OWNER)).to_have_text("bob")

    # Select by keyboard (x) and by checkbox.
    await alice.press("j", "x")
    await alice.row(ids[1]).get_by_role("checkbox").check()
    await alice.row(ids[2]).get_by_role("checkbox").check()
    bar = page.locator("#bulk-bar")
    await expect(bar).to_contain_text("3 selected")
    await bar.get_by_role("button", name="Acknowledge").click()

    notice = page.locator('#notices .notice[data-key="bulk"]')
    await expect(notice).to_contain_text("Acknowledged 2 of 3. 1 conflict.")
    await expect(notice.locator("li")).to_have_text(re.compile(r"acct-b2: .*acknowledged by bob"))
    await expect(alice.cell(ids[0], OWNER)).to_have_text("alice (you)")
    await expect(alice.cell(ids[1], OWNER)).to_have_text("alice (you)")
    await expect(alice.cell(ids[2], OWNER)).to_have_text("bob")
    await expect(bar).to_be_hidden()

    # Select everything unresolved from the header, drop Bob's, resolve the rest at once.
    await page.mouse.move(5, 5)
    await page.get_by_role("checkbox", name="Select every alert").check()
    await expect(bar).to_contain_text("4 selected")
    await alice.row(ids[2]).get_by_role("checkbox").uncheck()
    await expect(bar).to_contain_text("3 selected")
    await bar.get_by_role("button", name="Resolve fraud").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_contain_text("Resolve 3 alerts as fraud")
    await page.get_by_label("Note").fill("Same ring as case 1182")
    await bs.screenshot(page, "bulk-resolve.png", tmp_path)
    await page.keyboard.press("Enter")
    await expect(notice).to_contain_text("Resolved as fraud 3 of 3.")
    for alert_id in (ids[0], ids[1], ids[3]):
        await expect(alice.cell(alert_id, STATUS)).to_have_text("Resolved Fraud")
    await expect(alice.cell(ids[2], STATUS)).to_have_text("Acknowledged")
    assert alice.problems == []


async def test_a_f_and_l_act_on_the_checked_alerts_as_the_bulk_bar_does(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    # QA: with alerts checked (x), f resolved only the cursor's alert, checked or not: an
    # analyst who ticked two and pressed f, as in a mail client, resolved a third.
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    ids: list[str] = []
    for i in range(4):
        ids += await ingest(
            impossible_travel(f"acct-s{i}", f"Shop {i}", T0 + dt.timedelta(hours=i))
        )
    for alert_id in ids:
        await expect(alice.row(alert_id)).to_be_visible()
    bar = page.locator("#bulk-bar")
    summary = page.locator("#resolve-summary")

    # Two checked, the cursor on a third.
    await alice.press("j", "x", "j", "x", "j")
    await eventually(alice.focused_row_id, ids[2])
    await expect(bar).to_contain_text("2 selected")

    # With the drawer open its alert is the one acted on, as its buttons say.
    await alice.press("Enter")
    await expect(alice.drawer.locator("h2")).to_have_text("Account acct-s2")
    await alice.press("f")
    single = page.get_by_role("dialog", name="Resolve as fraud")
    await expect(single).to_be_visible()
    await expect(summary).to_contain_text("acct-s2")
    await alice.press("Escape")
    await expect(single).to_be_hidden()
    await alice.press("Escape")
    await expect(alice.drawer).to_be_hidden()
    await eventually(alice.focused_row_id, ids[2])

    # From the table, f resolves the two checked ones, in the bulk dialog.
    await alice.press("f")
    dialog = page.get_by_role("dialog", name=re.compile("^Resolve 2 alerts as fraud"))
    await expect(dialog).to_be_visible()
    await expect(summary).to_contain_text("acct-s0, acct-s1")
    await page.keyboard.type("Same ring")
    await alice.press("Enter")
    await expect(dialog).to_be_hidden()
    notice = page.locator('#notices .notice[data-key="bulk"]')
    await expect(notice.locator(".notice-text")).to_have_text("Resolved as fraud 2 of 2.")
    statuses = ("Resolved Fraud", "Resolved Fraud", "Open", "Open")
    for alert_id, status in zip(ids, statuses, strict=True):
        await expect(alice.cell(alert_id, STATUS)).to_have_text(status)
    await expect(bar).to_be_hidden()

    # Nothing checked: f and l act on the current alert, as before.
    await alice.press("l")
    legitimate = page.get_by_role("dialog", name="Resolve as legitimate")
    await expect(legitimate).to_be_visible()
    await expect(summary).to_contain_text("acct-s2")
    await alice.press("Escape")
    await expect(legitimate).to_be_hidden()

    # a acknowledges the checked alert, not the cursor's.
    await eventually(alice.focused_row_id, ids[2])
    await alice.press("x", "j")
    await eventually(alice.focused_row_id, ids[3])
    await alice.press("a")
    await expect(notice.locator(".notice-text")).to_have_text("Acknowledged 1 of 1.")
    await expect(alice.cell(ids[2], OWNER)).to_have_text("alice (you)")
    await expect(alice.cell(ids[3], STATUS)).to_have_text("Open")
    await expect(bar).to_be_hidden()
    assert alice.problems == []


async def selected_travel_alerts(
    alice: Analyst, ingest: Ingest, prefix: str, n: int, ticked: int | None = None
) -> list[str]:
    """n impossible-travel alerts, on accounts acct-{prefix}0.., all in the queue, the first
    `ticked` (default all) ticked."""
    ids: list[str] = []
    for i in range(n):
        ids += await ingest(
            impossible_travel(f"acct-{prefix}{i}", f"Shop {i}", T0 + dt.timedelta(hours=i))
        )
    for alert_id in ids:
        await expect(alice.row(alert_id)).to_be_visible()
    for alert_id in ids[:ticked]:
        await alice.row(alert_id).get_by_role("checkbox").check()
    return ids


async def test_bulk_resolve_keeps_the_note_and_retries_what_failed(
    browser: Browser, server: TestServer, ingest: Ingest, http: aiohttp.ClientSession
) -> None:
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    ids = await selected_travel_alerts(alice, ingest, "f", 3)
    answered: list[int] = []

    # The second alert's call meets a busy store once; the others go through.
    async def busy_once(route: Route) -> None:
        if answered:
            await route.continue_()
            return
        answered.append(503)
        await answer_busy(route)

    await page.route(f"**/api/v1/alerts/{ids[1]}/resolve", busy_once)
    await page.locator("#bulk-bar").get_by_role("button", name="Resolve fraud").click()
    dialog = page.get_by_role("dialog", name=re.compile("^Resolve 3 alerts"))
    note = dialog.get_by_label("Note")
    error = dialog.get_by_role("alert")
    await page.keyboard.type("Same ring as case 1182")
    await alice.press("Enter")
    await expect(error).to_have_text(
        "Could not resolve 1 of the 3 alerts: The store is busy. Enter to try again, Esc to cancel."
    )
    await expect(dialog).to_be_visible()
    await expect(note).to_have_value("Same ring as case 1182")
    await expect(note).to_be_focused()
    await expect(alice.cell(ids[0], STATUS)).to_have_text("Resolved Fraud")
    await expect(alice.cell(ids[1], STATUS)).to_have_text("Open")
    await expect(alice.cell(ids[2], STATUS)).to_have_text("Resolved Fraud")

    # Enter tries the one that failed, and only that one: no conflict on the other two.
    await alice.press("Enter")
    await expect(dialog).to_be_hidden()
    notice = page.locator('#notices .notice[data-key="bulk"]')
    await expect(notice.locator(".notice-text")).to_have_text("Resolved as fraud 3 of 3.")
    await expect(alice.cell(ids[1], STATUS)).to_have_text("Resolved Fraud")
    assert answered == [503]
    for alert_id in ids:
        async with http.get(server.make_url(f"/api/v1/alerts/{alert_id}")) as r:
            assert (await r.json())["alert"]["note"] == "Same ring as case 1182"
    assert alice.problems == []


async def test_u_undoes_a_bulk_resolve_but_what_others_changed_meanwhile(
    browser: Browser, server: TestServer, ingest: Ingest, http: aiohttp.ClientSession
) -> None:
    """A bulk resolve's notice offers Undo as a single resolve's does: u (or the button)
    reopens the alerts that resolve resolved, and only those; one another analyst changed
    meanwhile is left as they left it, and the notice says so, with any call that failed."""
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    ids = await selected_travel_alerts(alice, ingest, "u", 4, ticked=3)
    await page.locator("#bulk-bar").get_by_role("button", name="Resolve fraud").click()
    await alice.press("Enter")
    notice = page.locator('#notices .notice[data-key="bulk"]')
    await expect(notice.locator(".notice-text")).to_have_text("Resolved as fraud 3 of 3.")
    await expect(notice.get_by_role("button", name="Undo (u)")).to_be_visible()

    # Bob reopens the second and resolves it as legitimate before alice undoes hers.
    bob, csrf = await analyst_http(server, "bob")
    async with bob:
        for action, body in (("reopen", {}), ("resolve", {"disposition": "legitimate"})):
            url = server.make_url(f"/api/v1/alerts/{ids[1]}/{action}")
            async with bob.post(url, json=body, headers={"X-CSRF-Token": csrf}) as r:
                assert r.status == 200, await r.text()
    await expect(alice.cell(ids[1], STATUS)).to_have_text("Resolved Legitimate")

    await alice.press("u")
    await expect(alice.cell(ids[0], STATUS)).to_have_text("Open")
    await expect(alice.cell(ids[2], STATUS)).to_have_text("Open")
    await expect(notice.locator(".notice-text")).to_have_text(
        "Reopened 2 of the 3 alerts just resolved. 1 changed by others meanwhile, left as it is."
    )
    await expect(notice.locator("li")).to_have_text(
        ["Account acct-u1: resolved as legitimate by bob meanwhile, left as it is"]
    )
    await expect(alice.cell(ids[1], STATUS)).to_have_text("Resolved Legitimate")
    await expect(alice.cell(ids[3], STATUS)).to_have_text("Open")  # never part of it
    statuses = {}
    for alert_id in ids:
        async with http.get(server.make_url(f"/api/v1/alerts/{alert_id}")) as r:
            statuses[alert_id] = (await r.json())["alert"]["status"]
    assert list(statuses.values()) == ["open", "resolved", "open", "open"]
    # Once is enough, as for a single resolve.
    await notice.get_by_role("button", name="Dismiss").click()
    await alice.press("u")
    await expect(page.locator(".notice", has_text="Nothing to undo")).to_be_visible()

    # The button does the same; a reopen that fails is named, the rest reopened.
    for alert_id in (ids[0], ids[2], ids[3]):
        await alice.row(alert_id).get_by_role("checkbox").check()
    await page.locator("#bulk-bar").get_by_role("button", name="Resolve fraud").click()
    await alice.press("Enter")
    await expect(notice.locator(".notice-text")).to_have_text("Resolved as fraud 3 of 3.")
    await page.route(f"**/api/v1/alerts/{ids[2]}/reopen", answer_busy)
    await notice.get_by_role("button", name="Undo (u)").click()
    await expect(notice.locator(".notice-text")).to_have_text(
        "Reopened 2 of the 3 alerts just resolved. 1 failed."
    )
    await expect(notice.locator("li")).to_have_text(
        ["Account acct-u2: not reopened, The store is busy."]
    )
    await expect(alice.cell(ids[0], STATUS)).to_have_text("Open")
    await expect(alice.cell(ids[2], STATUS)).to_have_text("Resolved Fraud")
    await expect(alice.cell(ids[3], STATUS)).to_have_text("Open")
    assert alice.problems == []


async def test_a_bulk_resolve_with_conflicts_offers_to_undo_what_went_through(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    """Its summary stays until dismissed, naming the conflict: the undo is a notice of its
    own, timed as a single resolve's, and reopens the alerts that were resolved alone."""
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    ids = await selected_travel_alerts(alice, ingest, "w", 3)
    bob, csrf = await analyst_http(server, "bob")
    async with bob:
        url = server.make_url(f"/api/v1/alerts/{ids[0]}/ack")
        async with bob.post(url, json={}, headers={"X-CSRF-Token": csrf}) as r:
            assert r.status == 200, await r.text()
    await expect(alice.cell(ids[0], OWNER)).to_have_text("bob")
    await page.locator("#bulk-bar").get_by_role("button", name="Resolve fraud").click()
    await alice.press("Enter")
    summary = page.locator('#notices .notice[data-key="bulk"]')
    await expect(summary.locator(".notice-text")).to_have_text(
        "Resolved as fraud 2 of 3. 1 conflict."
    )
    await expect(summary.get_by_role("button", name="Undo (u)")).to_have_count(0)
    undo = page.locator('#notices .notice[data-key="undo"]')
    await expect(undo.locator(".notice-text")).to_have_text("Resolved as fraud: 2 alerts.")
    await expect(page.get_by_role("dialog")).to_be_hidden()
    await alice.press("u")
    await expect(alice.cell(ids[1], STATUS)).to_have_text("Open")
    await expect(alice.cell(ids[2], STATUS)).to_have_text("Open")
    await expect(alice.cell(ids[0], STATUS)).to_have_text("Acknowledged")
    await expect(undo).to_be_hidden()
    await expect(summary.locator(".notice-text")).to_have_text(
        "Reopened 2 of the 2 alerts just resolved."
    )
    assert alice.problems == []


async def test_bulk_resolve_given_up_keeps_what_failed_selected(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    ids = await selected_travel_alerts(alice, ingest, "g", 3)
    bar = page.locator("#bulk-bar")
    await expect(bar).to_contain_text("3 selected")

    # The second alert's call meets a busy store until the test lets it through.
    busy = True

    async def busy_store(route: Route) -> None:
        await (answer_busy(route) if busy else route.continue_())

    await page.route(f"**/api/v1/alerts/{ids[1]}/resolve", busy_store)
    await bar.get_by_role("button", name="Resolve fraud").click()
    dialog = page.get_by_role("dialog")
    await page.keyboard.type("Same ring as case 1182")
    await alice.press("Enter")
    await expect(dialog.get_by_role("alert")).to_contain_text("Could not resolve 1 of the 3")

    # Esc: no retry now. The summary comes; the alert that failed stays selected.
    await alice.press("Escape")
    await expect(dialog).to_be_hidden()
    notice = page.locator('#notices .notice[data-key="bulk"]')
    await expect(notice.locator(".notice-text")).to_have_text("Resolved as fraud 2 of 3. 1 failed.")
    await expect(bar).to_be_visible()
    await expect(bar).to_contain_text("1 selected")
    await expect(alice.row(ids[1]).get_by_role("checkbox")).to_be_checked()
    for alert_id in (ids[0], ids[2]):
        await expect(alice.cell(alert_id, STATUS)).to_have_text("Resolved Fraud")
        await expect(alice.row(alert_id).get_by_role("checkbox")).not_to_be_checked()

    # Later, the same bulk action tries it again.
    busy = False
    await bar.get_by_role("button", name="Resolve fraud").click()
    await expect(dialog).to_contain_text("Resolve as fraud")
    await alice.press("Enter")
    await expect(dialog).to_be_hidden()
    await expect(notice.locator(".notice-text")).to_have_text("Resolved as fraud 1 of 1.")
    await expect(alice.cell(ids[1], STATUS)).to_have_text("Resolved Fraud")
    await expect(bar).to_be_hidden()
    assert alice.problems == []


async def test_bulk_resolve_dialog_follows_what_others_resolve_meanwhile(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    ids: list[str] = []
    for i in range(5):
        ids += await ingest(
            impossible_travel(f"acct-m{i}", f"Shop {i}", T0 + dt.timedelta(hours=i))
        )
    bar = page.locator("#bulk-bar")
    dialog = page.get_by_role("dialog")
    notice = page.locator('#notices .notice[data-key="bulk"]')
    calls: list[str] = []
    page.on("request", lambda r: calls.append(r.url) if r.url.endswith("/resolve") else None)

    # Some of them: the dialog counts the rest, says why, and keeps the note.
    for alert_id in ids[:3]:
        await alice.row(alert_id).get_by_role("checkbox").check()
    await bar.get_by_role("button", name="Resolve fraud").click()
    await expect(dialog.locator("#resolve-title")).to_have_text("Resolve 3 alerts as fraud")
    await page.keyboard.type("Same ring as case 1182")
    await bob_resolves(server, ids[1])
    await expect(alice.cell(ids[1], STATUS)).to_have_text("Resolved Legitimate")
    await expect(dialog.locator("#resolve-title")).to_have_text("Resolve 2 alerts as fraud")
    await expect(dialog.locator("#resolve-summary")).to_have_text(
        "2 alerts: acct-m0, acct-m2. 1 was resolved by bob meanwhile. "
        "Each is resolved in turn; the note goes on every one."
    )
    await expect(dialog.get_by_role("button", name="Resolve 2 alerts as fraud")).to_be_visible()
    await expect(dialog.get_by_label("Note")).to_have_value("Same ring as case 1182")
    await alice.press("Enter")
    await expect(dialog).to_be_hidden()
    await expect(notice.locator(".notice-text")).to_have_text(
        "Resolved as fraud 2 of 3. 1 conflict."
    )
    await expect(notice.locator("li")).to_have_text("Account acct-m1: already resolved by bob")
    assert not any(ids[1] in url for url in calls), calls
    for alert_id in (ids[0], ids[2]):
        await expect(alice.cell(alert_id, STATUS)).to_have_text("Resolved Fraud")
    await expect(bar).to_be_hidden()

    # All of them: it closes with a notice, as the single-alert dialog does.
    for alert_id in ids[3:]:
        await alice.row(alert_id).get_by_role("checkbox").check()
    await bar.get_by_role("button", name="Resolve fraud").click()
    await expect(dialog.locator("#resolve-title")).to_have_text("Resolve 2 alerts as fraud")
    calls.clear()
    await bob_resolves(server, *ids[3:])
    await expect(dialog).to_be_hidden()
    await expect(notice.locator(".notice-text")).to_have_text(
        "All 2 alerts were resolved by bob meanwhile."
    )
    await expect(bar).to_be_hidden()
    assert calls == []
    assert alice.problems == []


async def test_bulk_resolve_says_what_others_hold_before_resolving_and_leaves_it_out(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    # QA: a bulk resolve over a shared queue tried alerts another analyst had acknowledged
    # (only they may resolve them) and said so only in the summary, as conflicts.
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    ids: list[str] = []
    for i in range(4):
        ids += await ingest(
            impossible_travel(f"acct-h{i}", f"Shop {i}", T0 + dt.timedelta(hours=i))
        )
    store = server.app[STORE]
    await store.acknowledge(ids[1], "bob")
    await store.acknowledge(ids[2], "alice")  # her own: nothing to say about it
    await expect(alice.cell(ids[1], OWNER)).to_have_text("bob")
    await expect(alice.cell(ids[2], OWNER)).to_have_text("alice (you)")
    bar = page.locator("#bulk-bar")
    dialog = page.get_by_role("dialog")
    title = dialog.locator("#resolve-title")
    summary = dialog.locator("#resolve-summary")
    notice = page.locator('#notices .notice[data-key="bulk"]')
    calls: list[str] = []
    page.on("request", lambda r: calls.append(r.url) if r.url.endswith("/resolve") else None)

    # Every unresolved alert, from the header: the dialog counts the three Alice may resolve
    # and names the one Bob holds, before anything is sent.
    await page.get_by_role("checkbox", name="Select every alert").check()
    await expect(bar).to_contain_text("4 selected")
    await bar.get_by_role("button", name="Resolve fraud").click()
    await expect(title).to_have_text("Resolve 3 alerts as fraud")
    await expect(summary).to_have_text(
        "3 alerts: acct-h0, acct-h2, acct-h3. acct-h1 is acknowledged by bob, so it is left out. "
        "Each is resolved in turn; the note goes on every one."
    )
    await expect(dialog.get_by_label("Note")).to_be_focused()
    # Bob takes another while the dialog is open: it leaves too, the note stays.
    await page.keyboard.type("Same ring as case 1182")
    await store.acknowledge(ids[3], "bob")
    await expect(title).to_have_text("Resolve 2 alerts as fraud")
    await expect(summary).to_have_text(
        "2 alerts: acct-h0, acct-h2. Left out, acknowledged by others: acct-h1 (bob), "
        "acct-h3 (bob). Each is resolved in turn; the note goes on every one."
    )
    await expect(dialog.get_by_label("Note")).to_have_value("Same ring as case 1182")
    await alice.press("Enter")
    await expect(dialog).to_be_hidden()
    await expect(notice.locator(".notice-text")).to_have_text(
        "Resolved as fraud 2 of 4. 2 conflicts."
    )
    await expect(notice.locator("li")).to_have_text(
        [f"Account acct-h{i}: already acknowledged by bob" for i in (1, 3)]
    )
    assert [url.split("/")[-2] for url in calls] == [ids[0], ids[2]], calls
    for alert_id in (ids[0], ids[2]):
        await expect(alice.cell(alert_id, STATUS)).to_have_text("Resolved Fraud")
    await expect(bar).to_be_hidden()

    # Only Bob's, chosen by hand: nothing to ask, the notice says why, as `f` on it does.
    await alice.row(ids[1]).get_by_role("checkbox").check()
    calls.clear()
    await bar.get_by_role("button", name="Resolve fraud").click()
    await expect(notice.locator(".notice-text")).to_have_text(
        "Alert for account acct-h1 (Shop 1 · $1,299.00) is already acknowledged by bob."
    )
    await expect(dialog).to_be_hidden()
    await expect(bar).to_be_hidden()
    assert calls == []
    assert alice.problems == []


async def test_bulk_resolve_names_each_account_once_with_its_count(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    # QA: "11 alerts: acct-0524687, acct-0524687, acct-0524687, acct-0644282 and 7 more".
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    burst = await ingest(impossible_travel("acct-burst", "Shop"))
    burst += await ingest(travel_at_night("acct-burst", T0 + dt.timedelta(days=1)))
    assert len(burst) >= 2
    ids = [*burst, *await ingest(impossible_travel("acct-once", "Shop", T0 + dt.timedelta(days=2)))]
    for alert_id in ids:
        await expect(alice.row(alert_id)).to_be_visible()
    for alert_id in ids:
        await alice.row(alert_id).get_by_role("checkbox").check()
    await page.locator("#bulk-bar").get_by_role("button", name="Resolve fraud").click()
    await expect(page.get_by_role("dialog").locator("#resolve-summary")).to_have_text(
        f"{len(ids)} alerts: acct-burst ({len(burst)}), acct-once. "
        "Each is resolved in turn; the note goes on every one."
    )
    assert alice.problems == []


async def test_after_a_bulk_action_the_keyboard_is_back_in_the_table(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    # QA: the bar hid with the button that had focus, focus fell to the page, and j did nothing.
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    await selected_travel_alerts(alice, ingest, "k", 3, ticked=2)
    bar = page.locator("#bulk-bar")
    await bar.get_by_role("button", name="Acknowledge").click()
    await expect(bar).to_be_hidden()
    in_table = "document.activeElement.closest('#table-wrap') !== null"
    assert await page.evaluate(in_table)
    await alice.press("j")
    await expect(page.locator("#alert-rows tr.is-cursor")).to_have_count(1)
    assert alice.problems == []


async def test_a_still_pointer_does_not_hold_the_table_after_a_bulk_resolve(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    # QA: after a bulk resolve the pill said "Paused" until the mouse moved. The bar hid, the
    # table moved up under the pointer left on the dialog's button, and that counted as hover.
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    ids = await selected_travel_alerts(alice, ingest, "s", 3, ticked=2)
    bar = page.locator("#bulk-bar")
    await bar.get_by_role("button", name="Resolve fraud").click()
    confirm = page.get_by_role("dialog").get_by_role("button", name="Resolve 2 alerts as fraud")
    await confirm.click()
    await expect(bar).to_be_hidden()
    await expect(alice.cell(ids[1], STATUS)).to_have_text("Resolved Fraud")
    # The pointer has not moved, and the table is under it now.
    hovered = page.locator("#table-wrap:hover")
    await expect(hovered).to_have_count(1)

    paused = page.locator("#alerts-paused")
    await expect(paused).to_be_hidden()
    [new] = await ingest(travel_at_night("acct-s-new", T0 + dt.timedelta(days=1)))
    await expect(alice.row(new)).to_be_visible()
    await expect(paused).to_be_hidden()

    # A pointer that really moves over the table still holds it.
    box = await hovered.bounding_box()
    assert box is not None
    await page.mouse.move(box["x"] + 40, box["y"] + 120)
    await expect(paused).to_have_text("Paused")
    [later] = await ingest(impossible_travel("acct-s-later", "Shop", T0 + dt.timedelta(days=2)))
    await expect(paused).to_have_text("Paused · 1 new")
    await expect(alice.row(later)).to_have_count(0)
    assert alice.problems == []


async def test_enter_in_the_bulk_dialog_leaves_the_table_as_the_button_does(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    # QA: confirmed with Enter rather than the button, a bulk resolve left the table held
    # ("Paused"), new alerts waiting, though nobody was working in it.
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    ids = await selected_travel_alerts(alice, ingest, "e", 3, ticked=2)
    bar = page.locator("#bulk-bar")
    await bar.get_by_role("button", name="Resolve fraud").click()
    await expect(page.get_by_role("dialog")).to_contain_text("Resolve 2 alerts as fraud")
    await page.keyboard.type("Same ring")
    await alice.press("Enter")
    await expect(bar).to_be_hidden()
    await expect(alice.cell(ids[1], STATUS)).to_have_text("Resolved Fraud")

    paused = page.locator("#alerts-paused")
    await expect(paused).to_be_hidden()
    [new] = await ingest(travel_at_night("acct-e-new", T0 + dt.timedelta(days=1)))
    await expect(alice.row(new)).to_be_visible()
    await expect(paused).to_be_hidden()
    # The keyboard is back in the table all the same: j goes on from there, and holds it.
    await alice.press("j")
    assert await alice.focused_row_id() is not None
    await expect(paused).to_have_text("Paused")
    assert alice.problems == []


async def test_enter_in_the_resolve_dialog_holds_the_table_only_for_the_keyboard(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    # The same for one alert: its Fraud… button clicked, then Enter, held the table once the
    # pointer had left it. From the keyboard (j f Enter) it stays held for the next j.
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    queue = await six_in_a_queue(alice, ingest)
    paused = page.locator("#alerts-paused")
    dialog = page.get_by_role("dialog", name=re.compile("^Resolve"))
    await alice.row(queue[0]).get_by_role("button", name=re.compile("as fraud$")).click()
    await expect(dialog).to_be_visible()
    await alice.press("Enter")
    await expect(dialog).to_be_hidden()
    await expect(alice.cell(queue[0], STATUS)).to_have_text("Resolved Fraud")
    await page.mouse.move(5, 5)
    await expect(paused).to_be_hidden()
    [new] = await ingest(travel_at_night("acct-q-new", T0 + dt.timedelta(days=1)))
    await expect(alice.row(new)).to_be_visible()

    await alice.press("j")
    await expect(paused).to_have_text("Paused")
    focused = await alice.focused_row_id()
    assert focused is not None
    await resolve_legitimate(alice, focused)
    [later] = await ingest(travel_at_night("acct-q-later", T0 + dt.timedelta(days=2)))
    await expect(paused).to_have_text("Paused · 1 new · 1 critical")
    await expect(alice.row(later)).to_have_count(0)
    assert alice.problems == []


async def test_a_viewer_reads_but_cannot_act(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    await create_user(server.app[STORE], "vera", PASSWORD, "viewer")
    vera = await sign_in(browser, server, "vera")
    page = vera.page
    [alert_id] = await ingest(impossible_travel("acct-view", "View Ltd"))
    await expect(vera.row(alert_id)).to_be_visible()
    await expect(vera.row(alert_id).get_by_role("checkbox")).to_have_count(0)
    await expect(vera.row(alert_id).get_by_role("button")).to_have_count(0)
    await expect(page.locator("#select-all")).to_be_hidden()

    # Moving and reading work; a, f, l and x do nothing.
    await vera.press("j", "a", "f", "l", "x", "c")
    await expect(page.get_by_role("dialog")).to_have_count(0)
    await expect(vera.drawer).to_be_hidden()  # c: a viewer has no note box to go to
    await expect(page.locator("#bulk-bar")).to_be_hidden()
    await expect(vera.cell(alert_id, STATUS)).to_have_text("Open")
    await vera.press("Enter")
    await expect(vera.drawer).to_contain_text("Account acct-view")
    await expect(vera.drawer.locator("#drawer-actions").get_by_role("button")).to_have_count(0)
    assert vera.problems == []


async def test_an_alert_whose_stored_row_is_damaged_is_said_so_not_retried(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    # A damaged alert (its stored JSON cut short: a damaged file, another tool's write) was
    # a bare 500: the resolve dialog offered "Enter to try again" for what no retry reads,
    # and the alert list failed whole for everyone on their next load.
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    [damaged] = await ingest(impossible_travel("acct-dmg", "Harrods"))
    [kept] = await ingest(impossible_travel("acct-ok", "Selfridges"))
    await expect(alice.row(damaged)).to_be_visible()
    with contextlib.closing(sqlite3.connect(server.app[SETTINGS].db_path)) as conn, conn:
        sql = "UPDATE alerts SET alert_json = substr(alert_json, 1, 40) WHERE id = ?"
        conn.execute(sql, (damaged,))
    message = (
        f"Alert {damaged} is stored but cannot be read back: its stored row is damaged. "
        "Retrying will not help; tell the server's operator, whose log says what is wrong "
        "with it"
    )

    # The drawer says so where the audit trail and the notes would be.
    await alice.cell(damaged, MERCHANT).click()
    await expect(alice.drawer).to_contain_text(f"Could not load the audit trail: {message}")
    await alice.press("Escape")
    await expect(alice.drawer).to_be_hidden()

    # Resolving: the dialog closes, and the usual error notice gives the server's words.
    await page.get_by_role("button", name="Resolve alert for account acct-dmg as fraud").click()
    dialog = page.get_by_role("dialog", name=re.compile("^Resolve"))
    await page.keyboard.type("Card reported stolen")
    await alice.press("Enter")
    await expect(dialog).to_be_hidden()
    notice = page.locator("#notices .notice-error .notice-text")
    await expect(notice).to_have_text(f"Could not update the alert: {message}")
    await expect(page.locator("#notices")).not_to_contain_text("try again")
    await expect(alice.cell(damaged, STATUS)).to_have_text("Open")

    # A fresh load lists the others, and leaves the damaged one out.
    await page.reload()
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await expect(alice.row(kept)).to_be_visible()
    await expect(alice.row(damaged)).to_have_count(0)
    await expect(page.locator("#notices")).not_to_contain_text("Could not")
    assert alice.problems == []


async def test_the_bulk_bar_moves_no_row_under_the_pointer(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    ids = await listed_alerts(alice, ingest, 4)
    bar = page.locator("#bulk-bar")

    async def tops() -> list[float]:
        return [(await alice.row(alert_id).bounding_box() or {})["y"] for alert_id in ids]

    before = await tops()
    check = await alice.row(ids[2]).get_by_role("checkbox").bounding_box()
    assert check is not None
    x, y = check["x"] + check["width"] / 2, check["y"] + check["height"] / 2

    # The first tick shows the bar: over the column headings, beside the header checkbox,
    # with every row where it was. It took a line above the table and moved them all down.
    await page.mouse.click(x, y)
    await expect(bar).to_contain_text("1 selected")
    assert await tops() == before
    head = await page.locator("#alerts-table thead").bounding_box()
    over = await bar.bounding_box()
    select_all = await page.locator("#select-all").bounding_box()
    assert head is not None and over is not None and select_all is not None
    assert abs(over["y"] - head["y"]) <= 1 and over["y"] + over["height"] <= before[0] + 1
    assert over["x"] >= select_all["x"] + select_all["width"]

    # A second click where the first was unticks the same box. It landed on the row above,
    # and opened its details.
    await page.mouse.click(x, y)
    await expect(bar).to_be_hidden()
    assert await tops() == before
    await expect(alice.drawer).to_be_hidden()
    await expect(alice.row(ids[1]).get_by_role("checkbox")).not_to_be_checked()

    # The header checkbox and the bar's buttons stay in reach.
    await page.locator("#select-all").click()
    await expect(bar).to_contain_text("4 selected")
    await bar.get_by_role("button", name="Acknowledge").click()
    await expect(page.locator("#notices")).to_contain_text("Acknowledged 4 of 4")
    for alert_id in ids:
        await expect(alice.cell(alert_id, STATUS)).to_have_text("Acknowledged")
    assert alice.problems == []


async def test_esc_after_resolving_in_the_drawer_leaves_the_cursor_on_the_next_alert(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    # QA: resolved from the drawer, then Esc: focus landed on the resolved row or on the next
    # one, as the table's release and the Esc's focus raced. The analyst goes on with j, a or
    # f from the next alert, as after a resolve from the table and the Esc that releases it.
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    queue = await six_in_a_queue(alice, ingest)
    await alice.press("j", "j", "j")
    await resolve_in_the_drawer(alice, "acct-q2")
    await expect(alice.cell(queue[2], STATUS)).to_have_text("Resolved Legitimate")

    # Esc: the drawer closes on an alert the analyst has finished, so the table catches up
    # once (the resolved row goes to the end), the keyboard is on the next alert, and the
    # table holds still again, the keyboard in it.
    await alice.press("Escape")
    await expect(alice.drawer).to_be_hidden()
    await eventually(alice.focused_row_id, queue[3])
    cursor = page.locator("#alert-rows tr.is-cursor")
    await expect(cursor).to_have_attribute("data-id", queue[3])
    assert await listed(alice) == [*queue[:2], *queue[3:], queue[2]]
    # A barrier: an alert raised now is drawn in a render after the Esc; the held table
    # counts it as waiting, and nothing has moved the keyboard off the next alert.
    [later] = await ingest(impossible_travel("acct-q6", "Shop", T0 + dt.timedelta(hours=6)))
    await expect(page.locator("#alerts-paused")).to_have_text("Paused · 1 new")
    assert await listed(alice) == [*queue[:2], *queue[3:], queue[2]]
    assert await alice.focused_row_id() == queue[3]
    # j lands on it (the analyst has not been on it), the next j moves on.
    await alice.press("j")
    assert await alice.focused_row_id() == queue[3]
    await alice.press("j")
    assert await alice.focused_row_id() == queue[4]
    # The next Esc releases the table: what waited is listed, the cursor stays.
    await alice.press("Escape")
    await eventually(lambda: listed(alice), [*queue[:2], *queue[3:], later, queue[2]])
    await expect(cursor).to_have_attribute("data-id", queue[4])
    assert alice.problems == []


async def test_f_on_an_alert_you_resolved_says_you_once(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    # QA: working down a held queue, the analyst reached rows they had resolved: each f or l
    # said "is already resolved by analyst" (their own name, read as someone else's), and
    # every press stacked one more copy of it until four filled the corner.
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    queue = await six_in_a_queue(alice, ingest)
    await alice.press("j")
    await resolve_legitimate(alice, queue[0], then=queue[1])
    # Back on it, at the end of the queue.
    await alice.press("End")
    assert await alice.focused_row_id() == queue[0]
    await alice.press("f")
    text = "Alert for account acct-q0 (Shop · $1,299.00) is already resolved by you."
    notice = page.locator(".notice", has_text="is already resolved")
    await expect(notice).to_have_text(re.compile(re.escape(text)))
    # A refused f drops the keys of the next second (keyboard.js, SETTLE_MS = 1000): the
    # analyst who has read the notice presses again after that, and this wait stays.
    await page.wait_for_timeout(1100)
    await alice.press("l")
    await page.wait_for_timeout(1100)
    await alice.press("a")
    await expect(page.get_by_role("dialog", name=re.compile("^Resolve"))).to_be_hidden()
    await expect(notice).to_have_count(1)
    assert alice.problems == []


async def test_the_nothing_listed_notice_goes_once_alerts_are_listed(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    # QA: j on a search that matched nothing said "No alerts listed: the filters match none.
    # Clear filters to see the queue."; Clear filters listed 241 alerts and the notice still
    # said so, for its full time. So did "nothing to act on yet" as the first alerts came in.
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    notice = page.locator(".notice", has_text="No alerts listed")
    await alice.press("j")
    await expect(notice).to_have_text(re.compile("^No alerts listed: nothing to act on yet"))
    await three_alerts(ingest)
    await expect(alice.rows).to_have_count(3)
    await expect(notice).to_have_count(0)

    await alice.press("/")
    await page.keyboard.type("-nothing-like-it")
    await expect(alice.rows).to_have_count(0)
    await alice.press("Escape")
    await alice.press("j")
    await expect(notice).to_have_text(re.compile("^No alerts listed: the filters match none"))
    await page.get_by_role("button", name="Clear filters").click()
    await expect(alice.rows).to_have_count(3)
    await expect(notice).to_have_count(0)
    assert alice.problems == []


async def test_a_note_draft_in_the_drawer_outlives_a_reload(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    # QA: half-way through a note, the analyst reloaded the page (the tab had been open all
    # night); the drawer's note box came back empty and the note was gone.
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    await six_in_a_queue(alice, ingest)
    drawer = alice.drawer
    note = drawer.get_by_label("New note")
    await alice.press("j", "Enter", "c")
    await expect(drawer.locator("h2")).to_have_text("Account acct-q0")
    await expect(note).to_be_focused()
    await page.keyboard.type("Called the cardholder, no answer")

    await page.reload()
    await expect(alice.rows).to_have_count(6)
    # The drawer opens on its alert again by itself (the alert is in the address bar).
    await expect(drawer.locator("h2")).to_have_text("Account acct-q0")
    await expect(note).to_have_value("Called the cardholder, no answer")
    # It is that alert's draft only.
    await alice.press("j")
    await expect(drawer.locator("h2")).to_have_text("Account acct-q1")
    await expect(note).to_have_value("")
    assert alice.problems == []


async def test_keys_typed_for_a_resolve_dialog_that_never_opened_run_no_shortcuts(
    browser: Browser, server: TestServer, ingest: Ingest, http: aiohttp.ClientSession
) -> None:
    # QA: f on an alert someone else had resolved opened no dialog, only a notice; the note
    # typed on for it without looking ("no known fraud") fell on the shortcuts: n took the
    # next alert in the analyst's name and c opened the drawer's note box on it.
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    queue = await six_in_a_queue(alice, ingest)
    await alice.press("j", "j")
    assert await alice.focused_row_id() == queue[1]
    await bob_resolves(server, queue[1])
    await expect(alice.cell(queue[1], STATUS)).to_have_text("Resolved Legitimate")
    await alice.press("f")
    await expect(page.locator("#notices")).to_contain_text("is already resolved by bob")
    await page.keyboard.type("no known fraud")
    await alice.press("Enter")
    # A barrier, as for a dialog closed under the analyst: an alert raised now is drawn after
    # the keys' handlers ran (a claim would have left the page before it was posted).
    await ingest(impossible_travel("acct-q6", "Shop", T0 + dt.timedelta(hours=6)))
    await expect(page.locator("#alerts-paused")).to_have_text("Paused · 1 new")
    await expect(alice.drawer).to_be_hidden()
    await expect(page.get_by_role("dialog")).to_have_count(0)
    assert await alice.focused_row_id() == queue[1]
    async with http.get(server.make_url("/api/v1/alerts?status=acknowledged")) as r:
        assert (await r.json())["alerts"] == [], "nothing taken in Alice's name"

    # Once the keyboard has been still a moment (keyboard.js, SETTLE_MS = 1000), keys work.
    await page.wait_for_timeout(1100)
    await alice.press("j")
    assert await alice.focused_row_id() == queue[2]
    assert alice.problems == []
