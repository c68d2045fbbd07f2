"""A dashboard at its memory cap keeps nothing per alert beyond the alerts it holds.

Analysts leave the page open for a shift: past its cap (20,000 alerts) every alert that
arrives pushes an older one out, so the heap must stay level however many pass through.
benchmarks/dashboard_soak.py measures that through the real server over minutes,
benchmarks/dashboard_flood.py over a million alerts; this is the same check, small enough
for every run: the page's cap lowered to 500 (app.js rewritten as it is served) and its live
feed faked in the page (tests/fake_feed.js), which hands the page's own socket.js thousands
of alert frames a second, copies of one real alert that differ only in ids and times.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, CDPSession, Page, expect
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from tests.browser_support import Analyst, an_alert, lower_store_cap, sign_in

pytestmark = pytest.mark.browser

FAKE_FEED = Path(__file__).resolve().parent / "fake_feed.js"
CAP = 500
# The store trims to CAP once it holds CAP + 200 (alert-store.js, EVICT_SLACK): it holds the
# same number of alerts again every 201 alerts, where the heap is compared.
TRIM_PERIOD = 201
# Alerts before the first measure: past the cap, and long enough for V8 to have compiled
# the page's hot code (tens of KB of machine code, which a first measure would count).
WARM_UP = 10_000
# Measured over 120 trims (24,120 alerts). With nothing kept per alert the heap after a
# forced GC still gains a little: more compiled code, and Chromium's long-task and long-
# animation-frame entries (a buffer of 200 each, ~0.1 MB full), which a flood of frames
# makes. At this cap benchmarks/dashboard_flood.py saw the heap snapshot grow 0.24 MB from
# 60,300 to 180,900 alerts and stay level to 300,000 (results/flood-20261130T112743Z.json).
# Anything kept per alert would add its size 24,120 times: the held table's set of changed
# ids (fixed in 8cc5db3), ~40 bytes an alert, added 1.16 MB here.
TRIMS = 120
ALLOWED_BYTES = 200_000


async def fed_fast_with_a_low_cap(page: Page) -> None:
    await lower_store_cap(page, CAP)
    await page.add_init_script(path=FAKE_FEED)


async def flood(page: Page, template: dict[str, Any], start: int, n: int) -> None:
    """Alerts start .. start + n - 1, applied by the page and drawn."""
    seq: int = await page.evaluate(
        "([t, from, n]) => window.__flood.send(t, from, n)", [template, start, n]
    )
    # The delivery panel shows the last seq applied, once a second.
    try:
        await page.wait_for_function(
            """(seq) => {
                const text = document.querySelector('[data-integrity="last_seq"]').textContent;
                return Number(text.replace(/\\D/g, "") || -1) >= seq;
            }""",
            arg=seq,
            timeout=30_000,
        )
    except PlaywrightTimeoutError:
        raise AssertionError(f"the page never applied seq {seq}") from None
    await page.wait_for_timeout(500)  # the table's next (throttled) redraw: nothing shows it


async def heap_used(cdp: CDPSession) -> int:
    await cdp.send("HeapProfiler.collectGarbage")
    metrics = (await cdp.send("Performance.getMetrics"))["metrics"]
    return int(next(m["value"] for m in metrics if m["name"] == "JSHeapUsedSize"))


async def listed(analyst: Analyst) -> int:
    count = await analyst.page.locator("#alerts-table").get_attribute("aria-rowcount")
    return int(count or 1) - 1


@pytest.mark.parametrize("held", [False, True], ids=["idle", "held"])
async def test_a_page_at_its_cap_keeps_its_heap_level_as_alerts_pass_through(
    browser: Browser, server: TestServer, http: aiohttp.ClientSession, held: bool
) -> None:
    template = await an_alert(server, http)
    alice = await sign_in(browser, server, "alice", before_load=fed_fast_with_a_low_cap)
    page = alice.page
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Performance.enable")

    await flood(page, template, 0, 40)
    if held:
        await page.mouse.move(2, 2)
        await page.keyboard.press("j")  # the keyboard in the table holds it
        await expect(page.locator("#alerts-paused")).to_be_visible()
    # Past the cap, then as many alerts held again after TRIMS more trims.
    await flood(page, template, 40, WARM_UP)
    before = await heap_used(cdp)
    rows_before = await listed(alice)
    await flood(page, template, 40 + WARM_UP, TRIMS * TRIM_PERIOD)
    after = await heap_used(cdp)

    assert await listed(alice) == rows_before
    grown = after - before
    print(f"heap {before / 2**20:.2f} -> {after / 2**20:.2f} MB ({grown:+,} bytes)")
    assert grown < ALLOWED_BYTES, f"grew {grown:,} bytes over {TRIMS * TRIM_PERIOD:,} alerts"
    assert alice.problems == []
