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
    Analyst,
    Ingest,
    an_alert,
    analyst_http,
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
  // Raised (the feed's `alert`), or changed by someone (its `alert_updated`).
  const raise = (i) => store.upsert(alert(i), { raised: true });
  const change = (i, fields) =>
    store.upsert({ ...alert(i), updated_at: new Date().toISOString(), ...fields });
  window.__held = { store, table: t, alert, settled, raise, change };
}
"""


async def held_harness(
    browser: Browser, server: TestServer, http: aiohttp.ClientSession, capacity: int
) -> Analyst:
    """alice's page with the harness installed, its alerts copies of a real alert."""
    template = await an_alert(server, http)
    alice = await sign_in(browser, server, "alice")
    await alice.page.evaluate(HARNESS, {"template": template, "capacity": capacity})
    return alice


async def test_a_held_table_does_not_keep_the_id_of_every_alert_that_changed(
    browser: Browser, server: TestServer, http: aiohttp.ClientSession
) -> None:
    # Soak: the held page's heap grew with every alert that arrived while it was held. Among
    # what it kept: the id of every alert changed since the list was last rebuilt, kept to
    # find the cursor's place again, which only listed alerts can mark.
    alice = await held_harness(browser, server, http, capacity=100_000)
    page = alice.page
    touched = await page.evaluate(
        """async () => {
          const { store, table, alert, settled } = window.__held;
          for (let i = 0; i < 40; i += 1) store.upsert(alert(i));
          await settled();
          table.setFrozen(true);
          for (let i = 40; i < 5040; i += 1) store.upsert(alert(i), { raised: true });
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
    alice = await held_harness(browser, server, http, capacity=300)
    page = alice.page
    counts = await page.evaluate(
        """async () => {
          const { store, table, alert, settled } = window.__held;
          for (let i = 0; i < 20; i += 1) store.upsert(alert(i));
          await settled();
          table.setFrozen(true);
          for (let i = 20; i < 3020; i += 1) store.upsert(alert(i), { raised: true });
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


# What the pill should say at each step: of the alerts arrived since the table was held
# (`from`..`to`), those the page holds wait (all match the view), the rest are on the server.
ORACLE = """
([from, to]) => {
  const { store, table } = window.__held;
  let held = 0;
  for (let i = from; i < to; i += 1) if (store.get(`held-${i}`)) held += 1;
  const { waiting, letGo } = table._counts();
  return { expected: [held, to - from - held], shown: [waiting, letGo] };
}
"""


async def test_more_on_the_server_counts_each_alert_let_go_of_once_whatever_happens_to_it(
    browser: Browser, server: TestServer, http: aiohttp.ClientSession
) -> None:
    # "M more on the server" counted an alert each time the page let go of it, and kept
    # counting one that came back (someone acknowledged or resolved it: the change brings it
    # back to the page, where it waits among the new): N + M grew past what had arrived.
    alice = await held_harness(browser, server, http, capacity=300)
    page = alice.page

    async def step(script: str, since: int = 20) -> dict[str, Any]:
        # `next` is the next alert to raise; the oracle covers those raised since `since`.
        upto = await page.evaluate(
            f"""async () => {{
              const {{ store, table, alert, settled, raise, change }} = window.__held;
              let next = window.__next ?? 0;
              {script}
              window.__next = next;
              await settled();
              return next;
            }}"""
        )
        counts: dict[str, Any] = await page.evaluate(ORACLE, [since, upto])
        return {**counts, "arrived": upto - since}

    listed = await step("for (; next < 20; next += 1) store.upsert(alert(next));")
    assert listed["shown"] == [0, 0], listed
    await page.evaluate("() => window.__held.table.setFrozen(true)")

    # Past the cap (300, evicting past 500): the 20 listed rows and the oldest arrivals go.
    counts = await step("for (; next < 521; next += 1) raise(next);")
    assert counts["shown"] == counts["expected"] == [320, 181], counts

    # Bob acknowledges one the page let go of, and resolves another: both come back.
    counts = await step(
        """change(30, { status: "acknowledged", owner: "bob" });
        change(40, { status: "resolved", owner: "bob", disposition: "fraud" });"""
    )
    assert counts["shown"] == counts["expected"] == [322, 179], counts

    # More arrive: the page lets go of them again (the resolved one first). Counted once.
    counts = await step("for (const stop = next + 200; next < stop; next += 1) raise(next);")
    assert counts["shown"] == counts["expected"], counts
    assert sum(counts["shown"]) == counts["arrived"] == 701, counts

    # A note on one let go of twice: back, and let go of again with the next arrivals.
    counts = await step('change(30, { note: "seen" });')
    assert counts["shown"] == counts["expected"], counts
    counts = await step("for (const stop = next + 201; next < stop; next += 1) raise(next);")
    assert counts["shown"] == counts["expected"], counts
    assert sum(counts["shown"]) == counts["arrived"], counts

    # One that comes back to a full page is let go of again in the same change (it is the
    # oldest): still one alert on the server.
    counts = await step(
        """while (store.size < 500) { raise(next); next += 1; }
        change(31, { note: "seen" });
        if (store.get("held-31") || store.size !== 300) throw new Error(`${store.size}`);"""
    )
    assert counts["shown"] == counts["expected"], counts
    assert sum(counts["shown"]) == counts["arrived"], counts

    # Released: the table lists what the page holds and promises nothing more; held again, it
    # counts from there, not from the last hold.
    released = await page.evaluate(
        """async () => {
          const { store, table, settled } = window.__held;
          table.setFrozen(false);
          await settled();
          const released = { ...table._counts(), store: store.size };
          table.setFrozen(true);
          return released;
        }"""
    )
    assert released["listed"] == released["store"], released
    assert (released["waiting"], released["letGo"]) == (0, 0), released
    since = await page.evaluate("() => window.__next")
    counts = await step(
        "for (const stop = next + 600; next < stop; next += 1) raise(next);", since=since
    )
    assert counts["shown"] == counts["expected"], counts
    assert counts["shown"][1] > 0, counts
    assert alice.problems == []


async def test_more_on_the_server_under_a_status_filter_counts_what_the_page_let_go_of(
    browser: Browser, server: TestServer, http: aiohttp.ClientSession
) -> None:
    # Under `status=open`, an alert let go of and then acknowledged by bob comes back to the
    # page but not to the view: it is the page's again, so no longer "on the server", though
    # it does not wait either. Let go of again, it counts again, once.
    alice = await held_harness(browser, server, http, capacity=300)
    page = alice.page
    counts = await page.evaluate(
        """async () => {
          const { matcher, lastingMatcher, comparator, emptyView } = await import(
            "/static/js/view.js"
          );
          const { store, table, alert, settled, raise, change } = window.__held;
          const view = { ...emptyView(), status: ["open"] };
          table.setView(matcher(view, "alice"), comparator(view.sort),
                        lastingMatcher(view, "alice"));
          for (let i = 0; i < 20; i += 1) store.upsert(alert(i));
          await settled();
          table.setFrozen(true);
          for (let i = 20; i < 521; i += 1) raise(i);
          await settled();
          const first = table._counts();
          change(30, { status: "acknowledged", owner: "bob" });
          await settled();
          const back = table._counts();
          for (let i = 521; i < 722; i += 1) raise(i);
          await settled();
          return { first, back, again: table._counts(), held30: Boolean(store.get("held-30")) };
        }"""
    )
    # Past 500 the page let go of the 20 listed rows and of the 181 oldest arrivals.
    assert (counts["first"]["waiting"], counts["first"]["letGo"]) == (320, 181), counts
    assert (counts["back"]["waiting"], counts["back"]["letGo"]) == (320, 180), counts
    # Let go of again (the oldest) with 200 others: of the 702 arrived the page holds 321.
    assert not counts["held30"], counts
    assert (counts["again"]["waiting"], counts["again"]["letGo"]) == (321, 381), counts
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


async def test_an_alert_let_go_of_and_changed_by_another_analyst_is_one_alert_on_the_server(
    browser: Browser, server: TestServer, http: aiohttp.ClientSession, ingest: Ingest
) -> None:
    # Through the server: the feed's `alert_updated` for an alert the page let go of brings it
    # back to the page (it waits among the new), and the page letting go of it again later
    # must not count it a second time.
    alice = await sign_in(browser, server, "alice", before_load=lower_the_cap)
    page = alice.page
    paused = page.locator("#alerts-paused")
    [first] = await ingest(impossible_travel("acct-first", "First Ltd"))
    await expect(alice.row(first)).to_be_visible()
    await page.keyboard.press("j")
    await expect(paused).to_have_text("Paused")

    later = T0 + dt.timedelta(hours=1)
    batch = [t for k in range(60) for t in card_testing(f"acct-c{k:03d}", n=12, at=later)]
    arrived = await ingest(batch)
    assert len(arrived) == 600
    await expect(paused).to_have_text("Paused · 400 new · 200 more on the server")

    # The oldest of them, which the page let go of (the server's newest-first order is the
    # page's): bob acknowledges it, and it is back among the new.
    async with http.get(server.make_url("/api/v1/alerts"), params={"limit": "1000"}) as r:
        listed = [alert["id"] for alert in (await r.json())["alerts"]]
    oldest = [alert_id for alert_id in listed if alert_id in set(arrived)][-1]
    bob, csrf = await analyst_http(server, "bob")
    async with bob:
        for action, body in (("ack", {}), ("resolve", {"disposition": "legitimate"})):
            async with bob.post(
                server.make_url(f"/api/v1/alerts/{oldest}/{action}"),
                json=body,
                headers={"X-CSRF-Token": csrf},
            ) as r:
                assert r.status == 200, await r.text()
            await expect(paused).to_have_text("Paused · 401 new · 199 more on the server")

    # 120 more: at 501 the page lets go of 201 again, the resolved one first; of the 720
    # that arrived it holds 320.
    even_later = T0 + dt.timedelta(hours=2)
    more = [t for k in range(12) for t in card_testing(f"acct-d{k:03d}", n=12, at=even_later)]
    assert len(await ingest(more)) == 120
    await expect(paused).to_have_text("Paused · 320 new · 400 more on the server")
    assert alice.problems == []
