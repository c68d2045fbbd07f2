"""A table held for a long time (the keyboard in it for an hour at hundreds of alerts a second)
keeps bounded state: benchmarks/dashboard_soak.py found what grew, these keep it fixed.

Thousands of alerts through the server take a while, so these run the page's own modules
in the page: a table over a store of its own, fed alerts copied from a real one.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page

from tests.browser_support import impossible_travel, post_ndjson, sign_in

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


async def an_alert(server: TestServer, http: aiohttp.ClientSession) -> dict[str, Any]:
    await post_ndjson(server, http, impossible_travel("acct-template", "Template Ltd"))
    async with http.get(server.make_url("/api/v1/alerts"), params={"limit": "1"}) as r:
        assert r.status == 200, await r.text()
        alert: dict[str, Any] = (await r.json())["alerts"][0]
    return alert


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
