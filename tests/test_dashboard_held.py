"""A table held for a long time (the keyboard in it for an hour at hundreds of alerts a second)
keeps bounded state: benchmarks/dashboard_soak.py found what grew, these keep it fixed.

Filling the page's 20,000-alert cap takes minutes through the server, so these run the
page's own modules in the page (the table over a store with a small capacity), or load the
dashboard with its cap lowered by rewriting app.js on its way to the browser.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page, expect

from tests.browser_support import (
    T0,
    Ingest,
    an_alert,
    card_testing,
    impossible_travel,
    lower_store_cap,
    sign_in,
)

pytestmark = pytest.mark.browser

# The page's own modules, a table and a store of `capacity` over fresh DOM nodes, and copies
# of `template` (a real alert from the API) as alerts 0, 1, 2, ... raised a second apart.
HARNESS = """
async ({ template, capacity }) => {
  const { AlertStore } = await import("/static/js/alert-store.js");
  const { AlertTable } = await import("/static/js/alert-table.js");
  const make = (tag, parent) => parent.appendChild(document.createElement(tag));
  const wrap = make("div", document.body);
  const table = make("table", wrap);
  const top = make("tbody", table);
  make("td", make("tr", top));
  const tbody = make("tbody", table);
  const bottom = make("tbody", table);
  make("td", make("tr", bottom));
  const store = new AlertStore({ capacity });
  const clock = { now: () => Date.now() };
  const t = new AlertTable({
    wrap, table, tbody, spacers: { top, bottom }, store, me: "alice", canAct: true, clock,
  });
  const base = Date.parse(template.created_at);
  const alert = (i) => ({
    ...template,
    id: `held-${i}`,
    created_at: new Date(base + i * 1000).toISOString(),
    updated_at: new Date(base + i * 1000).toISOString(),
  });
  // Rendered: no frame or throttled redraw pending, nothing left to apply.
  const settled = async () => {
    for (let i = 0; i < 200; i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      if (!t._frame && !t._timer && !t._dirty.size) return;
    }
    throw new Error("the table never settled");
  };
  window.__held = { store, table: t, alert, settled };
}
"""


async def harness(page: Page, template: dict[str, Any], capacity: int) -> None:
    await page.evaluate(HARNESS, {"template": template, "capacity": capacity})


async def test_a_held_table_does_not_keep_the_id_of_every_alert_that_changed(
    browser: Browser, server: TestServer, http: aiohttp.ClientSession
) -> None:
    # Soak: the held page's heap grew with every alert that arrived while it was held. Among
    # what it kept: the id of every alert changed since the list was last rebuilt, kept to
    # find the cursor's place again, which only listed alerts can mark.
    template = await an_alert(server, http)
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    await harness(page, template, capacity=100_000)
    touched = await page.evaluate(
        """async () => {
          const { store, table, alert, settled } = window.__held;
          for (let i = 0; i < 40; i += 1) store.upsert(alert(i));
          await settled();
          table.setFrozen(true);
          for (let i = 40; i < 5040; i += 1) store.upsert(alert(i));
          await settled();
          // An update to a listed alert still counts (the release may move the cursor).
          store.upsert({ ...alert(3), status: "acknowledged", owner: "bob" });
          await settled();
          return { listed: table.length, touched: table._touched.size,
                   waiting: table._counts().waiting };
        }"""
    )
    assert touched["listed"] == 40
    assert touched["waiting"] == 5000
    assert touched["touched"] <= 40, touched
    assert alice.problems == []


async def test_a_held_table_past_the_memory_cap_keeps_what_the_page_holds_and_counts_the_rest(
    browser: Browser, server: TestServer, http: aiohttp.ClientSession
) -> None:
    # Soak: held for ten minutes at 60 alerts a second, the pill said "Paused · 36,000 new"
    # while the page held 20,000 alerts: the table kept the id of every alert that arrived,
    # those the page had let go of at its cap too, and promised them on release.
    template = await an_alert(server, http)
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    await harness(page, template, capacity=300)
    counts = await page.evaluate(
        """async () => {
          const { store, table, alert, settled } = window.__held;
          for (let i = 0; i < 20; i += 1) store.upsert(alert(i));
          await settled();
          table.setFrozen(true);
          for (let i = 20; i < 3020; i += 1) store.upsert(alert(i));
          await settled();
          const held = table._counts();
          table.setFrozen(false);
          await settled();
          return { held, released: table._counts(), store: store.size };
        }"""
    )
    held, released = counts["held"], counts["released"]
    assert held["waiting"] <= counts["store"], counts
    assert held["waiting"] + held["letGo"] == 3000, counts
    # Released, the list is what the page holds, and nothing more is promised.
    assert released["listed"] == counts["store"], counts
    assert released["letGo"] == 0 and released["waiting"] == 0, counts
    assert alice.problems == []


async def lower_the_cap(page: Page) -> None:
    await lower_store_cap(page, 300)


async def test_the_paused_pill_says_how_many_more_arrived_than_the_page_keeps(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    alice = await sign_in(browser, server, "alice", before_load=lower_the_cap)
    page = alice.page
    paused = page.locator("#alerts-paused")
    [first] = await ingest(impossible_travel("acct-first", "First Ltd"))
    await expect(alice.row(first)).to_be_visible()
    await page.keyboard.press("j")  # the keyboard in the table holds it
    await expect(paused).to_have_text("Paused")

    # 600 alerts (card testing, ten an account): at 501 (300 + the store's slack of 200) the
    # page lets go of its 201 oldest, the held row's and 200 waiting, down to 300; the last
    # 100 make 400.
    later = T0 + dt.timedelta(hours=1)
    batch = [t for k in range(60) for t in card_testing(f"acct-c{k:03d}", n=12, at=later)]
    assert len(await ingest(batch)) == 600
    await expect(paused).to_have_text("Paused · 400 new · 200 more on the server")

    # Released, the table lists the 400 the page holds.
    await page.keyboard.press("Escape")
    await expect(paused).to_be_hidden()
    await expect(page.locator("#alerts-table")).to_have_attribute("aria-rowcount", "401")
    assert alice.problems == []
