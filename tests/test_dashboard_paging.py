"""The keyboard on an alert table longer than the rows it draws, in a real Chromium.

The table draws only a window of rows. The arrows, PageDown, PageUp, Home and End scrolled
it natively, and it drew a window without the focused row: focus fell to the page and the
table was released under the analyst. They now move the cursor as j/k do, and the view follows it. A
focused row scrolled out of the window otherwise (the wheel) leaves the keyboard in the
table, and the table held.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page, WebSocketRoute, expect

from tests.browser_support import (
    T0,
    Analyst,
    Ingest,
    card_testing,
    eventually,
    impossible_travel,
    post_ndjson,
    row_top,
    sign_in,
)

pytestmark = pytest.mark.browser

ACCOUNTS = 15  # ten alerts each: 150 rows, several windows' worth


async def a_long_queue(alice: Analyst, server: TestServer, http: aiohttp.ClientSession) -> int:
    batch = [
        t
        for k in range(ACCOUNTS)
        for t in card_testing(f"acct-{k:02d}", n=12, at=T0 + dt.timedelta(hours=k))
    ]
    total = len(await post_ndjson(server, http, batch))
    assert total == ACCOUNTS * 10
    table = alice.page.locator("#alerts-table")
    await expect(table).to_have_attribute("aria-rowcount", str(total + 1))
    drawn = await alice.rows.count()
    assert 0 < drawn < total, "the list must be longer than the drawn window"
    return total


# Where the keyboard is: the focused row's place in the list (aria-rowindex counts the
# header row, from 1), whether it is the cursor's row, and whether it is in sight below the
# table's sticky header and above a scrollbar. No index when focus is not on a row.
FOCUS = """() => {
    const wrap = document.querySelector("#table-wrap");
    const row = document.activeElement;
    if (!(row instanceof HTMLTableRowElement) || !row.dataset.id) {
        return { index: null, active: document.activeElement?.id ?? null };
    }
    const bottom = wrap.getBoundingClientRect().top + wrap.clientTop + wrap.clientHeight;
    const head = document.querySelector("#alerts-table thead th").getBoundingClientRect();
    const box = row.getBoundingClientRect();
    return {
        index: Number(row.getAttribute("aria-rowindex")) - 2,
        cursor: row.classList.contains("is-cursor"),
        inSight: box.top >= head.bottom - 1 && box.bottom <= bottom + 1,
    };
}"""

# A page, as the table defines it: the rows the viewport shows whole, less one.
PAGE = """() => {
    const wrap = document.querySelector("#table-wrap");
    const head = document.querySelector("#alerts-table thead th").getBoundingClientRect().height;
    const row = document.querySelector("#alert-rows tr").getBoundingClientRect().height;
    return Math.max(1, Math.floor((wrap.clientHeight - head) / row) - 1);
}"""


async def focus(alice: Analyst) -> dict[str, Any]:
    state: dict[str, Any] = await alice.page.evaluate(FOCUS)
    return state


async def focused_at(alice: Analyst, index: int) -> None:
    """The keyboard is on the cursor's row, `index` in the list, in sight."""
    await eventually(lambda: focus(alice), {"index": index, "cursor": True, "inSight": True})


async def test_page_keys_move_the_cursor_and_keep_focus_and_the_hold(
    browser: Browser, server: TestServer, http: aiohttp.ClientSession, ingest: Ingest
) -> None:
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    total = await a_long_queue(alice, server, http)
    paused = page.locator("#alerts-paused")

    await alice.press("j")
    await focused_at(alice, 0)
    await expect(paused).to_have_text("Paused")  # j holds the table
    step: int = await page.evaluate(PAGE)
    assert step > 1

    # Each key moves the cursor, focused and in sight, and the table stays held.
    expected = [
        ("PageDown", step),
        ("PageDown", 2 * step),
        ("PageUp", step),
        ("End", total - 1),
        ("k", total - 2),  # j/k go on from where the keys left the cursor
        ("PageDown", total - 1),  # clamped at the end
        ("Home", 0),
        ("j", 1),
        ("PageUp", 0),
        ("End", total - 1),
        ("ArrowUp", total - 2),  # the arrows are j/k in the table
        ("ArrowUp", total - 3),
        ("ArrowDown", total - 2),
        ("Home", 0),
        ("Space", step),  # Space and Shift+Space page as PageDown and PageUp do
        ("Space", 2 * step),
        ("Shift+Space", step),
        ("End", total - 1),
    ]
    for key, index in expected:
        await alice.press(key)
        await focused_at(alice, index)
        await expect(paused).to_be_visible()
    assert await page.evaluate("() => document.querySelector('#table-wrap').scrollTop") > 0

    # A barrier: an alert raised now is drawn in a render after the keys. A held table
    # counts it as waiting; a released one would list it.
    await ingest(impossible_travel("acct-late", "Shop", T0 + dt.timedelta(days=1)))
    await expect(paused).to_have_text("Paused · 1 new")
    await focused_at(alice, total - 1)

    # On a row's checkbox Space is the box's: it ticks it, and the cursor stays.
    box = page.locator(
        f'#alert-rows tr[data-id="{await alice.focused_row_id()}"] input[type=checkbox]'
    )
    await box.focus()
    await alice.press("Space")
    await expect(box).to_be_checked()
    await expect(page.locator("#alert-rows tr.is-cursor")).to_have_attribute(
        "aria-rowindex", str(total + 1)
    )

    # In a text field the keys are the field's: Home goes to the start of the search.
    search = page.get_by_role("searchbox")
    await alice.press("/")
    await expect(search).to_be_focused()
    await page.keyboard.type("acct-0")
    await alice.press("Home")
    await page.keyboard.type("x")
    await expect(search).to_have_value("xacct-0")
    assert alice.problems == []


async def test_focus_stays_in_the_table_when_its_row_scrolls_out_of_the_window(
    browser: Browser, server: TestServer, http: aiohttp.ClientSession, ingest: Ingest
) -> None:
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    total = await a_long_queue(alice, server, http)
    paused = page.locator("#alerts-paused")
    await alice.press("j", "j")
    await focused_at(alice, 1)
    cursor_id = await alice.focused_row_id()
    assert cursor_id is not None

    # The wheel takes the view far down: the focused row leaves the drawn window. The
    # keyboard stays in the table (not the page), and the table stays held for it after the
    # pointer leaves.
    box = await page.locator("#table-wrap").bounding_box()
    assert box is not None
    await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    await page.mouse.wheel(0, 60 * total)
    await expect(alice.row(cursor_id)).to_have_count(0)
    await expect(page.locator("#table-wrap")).to_be_focused()
    await page.mouse.move(5, 5)
    await ingest(impossible_travel("acct-late", "Shop", T0 + dt.timedelta(days=1)))
    await expect(paused).to_have_text("Paused · 1 new")

    # j goes on from the cursor, which is drawn, in sight and focused again.
    await alice.press("j")
    await focused_at(alice, 2)
    await expect(paused).to_have_text("Paused · 1 new")
    # Esc releases the table, as from a row.
    await alice.press("Escape")
    await expect(page.locator("#table-wrap")).to_be_focused()
    await expect(paused).to_be_hidden()
    assert alice.problems == []


async def test_after_a_reload_of_the_alerts_the_keyboard_is_back_on_the_cursors_row(
    browser: Browser, server: TestServer, http: aiohttp.ClientSession, ingest: Ingest
) -> None:
    # Medium, as the card tests are (42.00 at stake): the new alerts join the queue's end.
    await reload_under_the_cursor(browser, server, http, ingest, "42.00", above=0)


async def test_a_reload_that_lists_alerts_above_the_cursor_keeps_its_row_in_sight(
    browser: Browser, server: TestServer, http: aiohttp.ClientSession, ingest: Ingest
) -> None:
    # Critical (a block of 1,299.00): the new alerts sort above the medium card tests, so the
    # cursor's row moves two places down the list. The view moves with it: the row stays in
    # sight at the foot of the view where PageDown left it, not two rows below, out of sight.
    await reload_under_the_cursor(browser, server, http, ingest, "1299.00", above=2)


# The live feed loses one alert message: the next one's seq jumps, and the page reloads
# every alert (a fresh snapshot), drawing every row anew. The two alerts raised meanwhile
# are listed by the reload, `above` of them before the cursor's row.
async def reload_under_the_cursor(
    browser: Browser,
    server: TestServer,
    http: aiohttp.ClientSession,
    ingest: Ingest,
    amount: str,
    above: int,
) -> None:
    routes: list[WebSocketRoute] = []
    drop = False

    async def lossy_feed(page: Page) -> None:
        def route(ws: WebSocketRoute) -> None:
            routes.append(ws)

            def forward(message: str | bytes) -> None:
                nonlocal drop
                if ws is not routes[-1]:
                    return
                if drop and '"seq"' in str(message) and '"alert' in str(message):
                    drop = False
                    return
                ws.send(message)

            ws.connect_to_server().on_message(forward)

        await page.route_web_socket("**/ws*", route)

    alice = await sign_in(browser, server, "alice", before_load=lossy_feed)
    page = alice.page
    await a_long_queue(alice, server, http)
    await alice.press("j", "PageDown")
    step: int = await page.evaluate(PAGE)
    await focused_at(alice, step)
    cursor_id = await alice.focused_row_id()
    assert cursor_id is not None

    drop = True
    await ingest(impossible_travel("acct-lost", "Lost", T0 + dt.timedelta(days=1), amount))
    await ingest(impossible_travel("acct-next", "Next", T0 + dt.timedelta(days=2), amount))
    await expect(page.locator("#notices")).to_contain_text("skipped events")
    await expect(page.locator("#connection")).to_have_text("Live", timeout=15_000)
    # The reload lists what it loaded (the two new alerts too) and keeps the table held.
    await expect(alice.row(cursor_id)).to_have_attribute("aria-rowindex", str(step + above + 2))
    await expect(page.locator("#alerts-paused")).to_have_text("Paused")

    # The keyboard is back on the cursor's row, not left on the table container, and the row
    # is in sight.
    await eventually(alice.focused_row_id, cursor_id)
    state = await focus(alice)
    assert state["cursor"] and state["inSight"], state
    await alice.press("j")
    await focused_at(alice, state["index"] + 1)
    assert alice.problems == []


async def test_a_live_alert_listed_above_the_focused_row_leaves_it_where_it_was_on_screen(
    browser: Browser, server: TestServer, http: aiohttp.ClientSession, ingest: Ingest
) -> None:
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    await a_long_queue(alice, server, http)
    paused = page.locator("#alerts-paused")
    await alice.press("j", "PageDown")
    step: int = await page.evaluate(PAGE)
    await focused_at(alice, step)
    cursor_id = await alice.focused_row_id()
    assert cursor_id is not None
    # The table free, with focus on the cursor's row (its checkbox, clicked: the mouse does not
    # hold the table once it has left), at the foot of the view.
    await alice.press("Escape")
    box = alice.row(cursor_id).locator("input[type=checkbox]")
    await box.click()
    await page.mouse.move(5, 5)
    await expect(paused).to_be_hidden()
    await expect(box).to_be_focused()
    top = await row_top(alice, cursor_id)

    # A critical alert (a block of 1,299.00) sorts above the medium card tests: the row moves
    # one place down the list, and the view with it.
    await ingest(impossible_travel("acct-late", "Shop", T0 + dt.timedelta(days=1), "1299.00"))
    await expect(alice.row(cursor_id)).to_have_attribute("aria-rowindex", str(step + 3))
    assert abs(await row_top(alice, cursor_id) - top) <= 1
    await expect(box).to_be_focused()
    assert alice.problems == []


# The first row wholly in view under the table's sticky header: its id and its top on screen.
TOP_ROW = """() => {
    const head = document.querySelector("#alerts-table thead th").getBoundingClientRect();
    for (const row of document.querySelectorAll("#alert-rows tr[data-id]")) {
        const box = row.getBoundingClientRect();
        if (box.top >= head.bottom - 1) return { id: row.dataset.id, top: Math.round(box.top) };
    }
    return null;
}"""


async def top_row(alice: Analyst) -> dict[str, Any]:
    row: dict[str, Any] = await alice.page.evaluate(TOP_ROW)
    assert row is not None
    return row


async def test_alerts_listed_above_a_table_scrolled_down_leave_the_rows_in_view_in_place(
    browser: Browser, server: TestServer, http: aiohttp.ClientSession, ingest: Ingest
) -> None:
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    total = await a_long_queue(alice, server, http)
    rowcount = page.locator("#alerts-table")
    paused = page.locator("#alerts-paused")
    above = page.locator("#new-above-button")

    # Scrolled down the queue with the wheel, then the pointer gone (to the header, say):
    # nobody is working in the table, and it does not hold.
    box = await page.locator("#table-wrap").bounding_box()
    assert box is not None
    await page.mouse.move(box["x"] + 300, box["y"] + 200)
    await page.mouse.wheel(0, 1500)
    await eventually(
        lambda: page.evaluate("document.querySelector('#table-wrap').scrollTop > 0"), True
    )
    await page.mouse.move(5, 5)
    await expect(paused).to_be_hidden()
    await expect(above).to_be_hidden()
    reading = await top_row(alice)

    # A critical alert (a block of 1,299.00) sorts above the medium card tests, out of sight:
    # the rows in view stay where they were (they moved down a row with each), and the page
    # says a new one came above them.
    late = await ingest(
        impossible_travel("acct-late", "Shop", T0 + dt.timedelta(days=1), "1299.00")
    )
    await expect(rowcount).to_have_attribute("aria-rowcount", str(total + 2))
    assert await top_row(alice) == reading
    await expect(above).to_have_text("1 new above — show")

    # The pointer holds the table while it is on it; let go, the release lists what waited
    # above the view, and the rows in view stay put there too.
    await page.mouse.move(box["x"] + 300, box["y"] + 200)
    await expect(paused).to_have_text("Paused")
    later = await ingest(
        impossible_travel("acct-later", "Shop", T0 + dt.timedelta(days=2), "1299.00")
    )
    await expect(paused).to_have_text("Paused · 1 new")
    await page.mouse.move(5, 5)
    await expect(rowcount).to_have_attribute("aria-rowcount", str(total + 3))
    assert await top_row(alice) == reading
    await expect(above).to_have_text("2 new above — show")

    # The button shows the first of them; scrolled to, they are seen and it goes.
    await above.click()
    await expect(alice.row(late[0])).to_be_in_viewport()
    await expect(alice.row(later[0])).to_be_in_viewport()
    await expect(above).to_be_hidden()
    # The keyboard stays with the table (not fallen to the page with the button), free.
    await expect(page.locator("#table-wrap")).to_be_focused()
    await expect(paused).to_be_hidden()
    assert alice.problems == []


async def test_a_table_at_its_top_still_shows_new_alerts_at_the_top(
    browser: Browser, server: TestServer, http: aiohttp.ClientSession, ingest: Ingest
) -> None:
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    await a_long_queue(alice, server, http)
    late = await ingest(
        impossible_travel("acct-late", "Shop", T0 + dt.timedelta(days=1), "1299.00")
    )
    await expect(alice.rows.first).to_have_attribute("data-id", late[0])
    await expect(alice.row(late[0])).to_be_in_viewport()
    await expect(page.locator("#new-above-button")).to_be_hidden()
    assert alice.problems == []
