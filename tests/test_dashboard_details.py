"""What the page says about one alert, in a real Chromium: each reason's observed value as
the server sent it (text as text, a dash when there is none), and amounts to the cent."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, expect

from server.app import create_app
from server.auth import create_user
from server.config import Settings
from server.detection.rules import default_pack
from server.state import STORE
from tests.browser_support import (
    API_KEY,
    LONDON,
    MERCHANT,
    NEW_YORK,
    PASSWORD,
    T0,
    Ingest,
    post_ndjson,
    sign_in,
    tx,
)

pytestmark = pytest.mark.browser

AMOUNT = 3  # the amount column, as a `td` index

# Beside the default pack: two weak rules that fire with new_merchant and report a field as
# observed, one the transaction carries as digits (its MCC) and one it lacks (its device).
# The first gives a number as its threshold, as the default pack's novelty rules did (the
# history they need): alerts raised then still carry it.
EXTRA_RULES = """
[[rules]]
name = "new_merchant_mcc"
score = 0.01
severity = "low"
observed = "mcc"
threshold = 5
all = [{ feature = "is_new_merchant", op = "==", value = true }]
reason = "A first purchase in this category"

[[rules]]
name = "new_merchant_device"
score = 0.01
severity = "low"
observed = "device_id"
all = [{ feature = "is_new_merchant", op = "==", value = true }]
reason = "A first purchase, from whatever device"

[[rules]]
name = "large_amount"
score = 0.01
severity = "low"
all = [{ feature = "amount", op = ">=", value = 1000 }]
reason = "A large amount"
"""


@pytest.fixture
async def rules_server(aiohttp_server: Any, tmp_path: Path) -> TestServer:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "default.toml").write_text(default_pack().read_text())
    (rules / "extra.toml").write_text(EXTRA_RULES)
    settings = Settings(
        data_dir=tmp_path / "data", api_key=API_KEY, batch_wait_ms=2.0, rules_path=rules
    )
    srv: TestServer = await aiohttp_server(create_app(settings))
    await create_user(srv.app[STORE], "alice", PASSWORD, "analyst")
    return srv


async def test_reasons_show_observed_text_as_text_and_absent_values_as_a_dash(
    browser: Browser, rules_server: TestServer
) -> None:
    # QA: new_merchant's observed value (the merchant id) read "observed —".
    alice = await sign_in(browser, rules_server, "alice")
    at = T0 - dt.timedelta(hours=1)
    history = [
        tx(f"nm-{i}", "acct-nm", at + dt.timedelta(minutes=i), 40.0, "m-deli", **NEW_YORK)
        for i in range(6)
    ]
    # Ten minutes later in London, at a shop the account never used: impossible travel
    # raises the alert, and the novelty rules add their reasons to it.
    away = tx(
        "nm-away",
        "acct-nm",
        at + dt.timedelta(minutes=15),
        1299.0,
        "m-new-777",
        merchant_name="Harrods",
        mcc="5411",
        **LONDON,
    )
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        [alert_id] = await post_ndjson(rules_server, http, [*history, away])
    await alice.cell(alert_id, MERCHANT).click()
    reasons = alice.drawer.locator(".reason-item")

    def reason(code: str) -> Any:
        return reasons.filter(has=alice.page.locator(f"code.reason-code:text-is('{code}')"))

    def figures(code: str) -> Any:
        return reason(code).locator(".reason-figures .figure")

    # Text, as the server sent it: the merchant id, the country, an MCC's digits ungrouped.
    # QA: "observed m-new-777 threshold 5", where 5 is the history the rule needs. A novelty
    # rule has no threshold, and a number beside text holds nothing: neither is shown.
    await expect(figures("new_merchant")).to_have_text(["observed m-new-777"])
    await expect(figures("new_country")).to_have_text(["observed GB"])
    await expect(figures("new_merchant_mcc")).to_have_text(["observed 5411"])
    # What the transaction lacks (a device) is a dash.
    await expect(figures("new_merchant_device")).to_have_text(["observed —"])
    # Numbers are still numbers, grouped, in their unit, with the bar against the threshold.
    await expect(figures("impossible_travel").first).to_have_text(
        re.compile(r"^observed \d{2},\d{3}(\.\d+)? km/h$")
    )
    await expect(figures("impossible_travel").nth(1)).to_have_text("threshold 900 km/h")
    await expect(reason("impossible_travel").locator("svg.threshold-bar")).to_have_count(1)
    await expect(reason("new_merchant").locator("svg")).to_have_count(0)
    assert alice.problems == []


async def test_reasons_give_their_figures_in_their_unit(
    browser: Browser, rules_server: TestServer
) -> None:
    # QA: "observed 33,421.5 threshold 900" and "observed 1,299 threshold 1,000": a speed
    # and an amount, and only the message said which.
    alice = await sign_in(browser, rules_server, "alice")
    trip = [
        tx("u-1", "acct-u", T0, 42.5, "m-deli", **NEW_YORK),
        # Ten minutes later in London, in pounds: impossible travel, and an amount over the
        # custom rule's 1,000, which takes its unit from the amount it observes.
        tx("u-2", "acct-u", T0 + dt.timedelta(minutes=10), "1299.00", "m-elec",
           merchant_name="Harrods", currency="GBP", **LONDON),
    ]  # fmt: skip
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        [alert_id] = await post_ndjson(rules_server, http, trip)
    await alice.cell(alert_id, MERCHANT).click()
    reasons = alice.drawer.locator(".reason-item")

    def figures(code: str) -> Any:
        has = alice.page.locator(f"code.reason-code:text-is('{code}')")
        return reasons.filter(has=has).locator(".reason-figures .figure")

    await expect(figures("impossible_travel")).to_have_text(
        [re.compile(r"^observed \d{1,2},\d{3}(\.\d+)? km/h$"), "threshold 900 km/h"]
    )
    await expect(figures("large_amount")).to_have_text(
        ["observed £1,299.00", "threshold £1,000.00"]
    )
    assert alice.problems == []


def big_purchase_abroad(
    account: str, amount: str, at: dt.datetime, **extra: Any
) -> list[dict[str, Any]]:
    """New York, then London ten minutes later for `amount` (a numeric string: Python's float
    would round it before it left the test)."""
    return [
        tx(f"{account}-1", account, at, 42.5, "m-deli", **NEW_YORK),
        tx(
            f"{account}-2",
            account,
            at + dt.timedelta(minutes=10),
            amount,
            "m-elec",
            merchant_name="Harrods",
            **LONDON,
            **extra,
        ),
    ]


async def test_huge_amounts_are_shown_to_the_cent(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    # QA: past about 15 significant digits the page rounded amounts ($99,999,999,999,999.98).
    # One arrives with the page's snapshot (HTTP), the others over the live feed.
    [loaded] = await ingest(big_purchase_abroad("acct-big", "99999999999999.99", T0))
    alice = await sign_in(browser, server, "alice")
    page = alice.page
    [live] = await ingest(
        big_purchase_abroad("acct-bigger", "987654321098765.43", T0 + dt.timedelta(hours=1))
    )
    [usual] = await ingest(
        big_purchase_abroad("acct-usual", "12345678901234.56", T0 + dt.timedelta(hours=2))
    )
    [dinars] = await ingest(
        big_purchase_abroad("acct-iqd", "1234.567", T0 + dt.timedelta(hours=3), currency="IQD")
    )
    await expect(alice.cell(loaded, AMOUNT)).to_have_text("$99,999,999,999,999.99")
    await expect(alice.cell(live, AMOUNT)).to_have_text("$987,654,321,098,765.43")
    await expect(alice.cell(usual, AMOUNT)).to_have_text("$12,345,678,901,234.56")

    # The drawer: under the title, the field (the amount as sent only where the formatted
    # one does not say it: here it does, digit for digit), the raw payload, and the
    # account's history (from its own endpoint).
    await alice.cell(loaded, MERCHANT).click()
    drawer = alice.drawer
    await expect(drawer.locator("#drawer-sub")).to_contain_text("Harrods · $99,999,999,999,999.99")
    await expect(drawer.locator("dt:text-is('Amount') + dd")).to_have_text("$99,999,999,999,999.99")
    await drawer.get_by_text("Raw payload").click()
    await expect(drawer.locator("pre.raw-json")).to_contain_text('"amount": 99999999999999.99,')
    history = drawer.locator('[data-section="account-history"]')
    await expect(history.locator('tr[data-tx="acct-big-2"] td').nth(2)).to_have_text(
        "$99,999,999,999,999.99"
    )
    # The resolve dialog names the alert by its amount too.
    await alice.press("f")
    await expect(page.locator("#resolve-summary")).to_have_text(
        "Account acct-big · Harrods · $99,999,999,999,999.99"
    )
    await alice.press("Escape")

    # A currency's minor units are ISO 4217's, as the server keeps them, in the row and the
    # drawer alike: Iraqi dinars to three decimals. Intl's own (CLDR's) are none: the row
    # read "IQD 1,235", the drawer "IQD 1,235 (as sent: 1234.567)".
    await expect(alice.cell(dinars, AMOUNT)).to_have_text(re.compile(r"^IQD\s1,234\.567$"))
    await alice.cell(dinars, MERCHANT).click()
    await expect(drawer.locator("dt:text-is('Amount') + dd")).to_have_text(
        re.compile(r"^IQD\s1,234\.567$")
    )
    await expect(drawer.locator("#drawer-sub")).to_contain_text(re.compile(r"IQD\s1,234\.567"))
    assert alice.problems == []


async def test_the_event_time_reads_as_the_table_s_in_the_analyst_s_zone(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    # QA: the drawer's "Event time" was the raw ISO string, microseconds and all
    # ("2026-03-02T14:10:00.123456+00:00"), where the table and the drawer's other times
    # read "Mar 2, 2026, 09:10:00" in the browser's time zone. The exact value stays in the
    # tooltip (and the raw payload).
    at = T0 + dt.timedelta(minutes=10, microseconds=123456)
    [alert_id] = await ingest(
        [
            tx("et-1", "acct-et", T0, 42.5, "m-deli", **NEW_YORK),
            tx("et-2", "acct-et", at, 1299.0, "m-elec", merchant_name="Harrods", **LONDON),
        ]
    )
    alice = await sign_in(browser, server, "alice", timezone_id="America/New_York")
    row_time = alice.cell(alert_id, 0).locator("time")
    await expect(row_time).to_have_text("09:10:00")
    exact = await row_time.get_attribute("datetime")
    assert exact is not None and exact.startswith("2026-03-02T14:10:00.123456")
    await alice.cell(alert_id, MERCHANT).click()
    event_time = alice.drawer.locator("dt:text-is('Event time') + dd")
    await expect(event_time).to_have_text("Mar 2, 2026, 09:10:00")
    shown = event_time.locator("time")
    await expect(shown).to_have_attribute("datetime", exact)
    await expect(shown).to_have_attribute("title", f"Event time {exact}")
    # Read as the drawer's other times are.
    raised = await alice.drawer.locator("dt:text-is('Raised') + dd").text_content()
    assert raised is not None and re.fullmatch(
        r"[A-Z][a-z]{2} \d{1,2}, \d{4}, \d\d:\d\d:\d\d", raised
    )
    assert alice.problems == []


# Where the row's age line puts each of its parts: whether it is on the age's line, inside
# the cell (a part that gives way wraps out of sight).
AGE_LINE = """(row) => {
  const cell = row.querySelector("td");
  const age = row.querySelector(".cell-sub > .age").getBoundingClientRect();
  const edge = cell.getBoundingClientRect();
  const shown = (el) => {
    if (!el) return null;
    const box = el.getBoundingClientRect();
    return Math.abs(box.top - age.top) <= 1 && box.left >= edge.left && box.right <= edge.right;
  };
  return {
    late: shown(row.querySelector(".cell-sub > .late")),
    lateText: row.querySelector(".cell-sub > .late")?.textContent ?? null,
    ageTitle: row.querySelector(".cell-sub > .age").title,
  };
}"""


async def test_an_alert_raised_well_after_its_transaction_says_so(
    browser: Browser, server: TestServer, ingest: Ingest
) -> None:
    # Demo: the warm-up scores the last 5 min of the stream at start, and those alerts read
    # "12 s" under event times up to 5 min back, as if the transactions had just happened.
    # The age is the alert's wait in the queue (the header's oldest unacknowledged counts
    # it so); such an alert now says it was raised late, and the drawer by how much.
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    [late] = await ingest(
        [
            tx("late-1", "acct-late", now - dt.timedelta(minutes=15), 42.5, "m-deli", **NEW_YORK),
            tx("late-2", "acct-late", now - dt.timedelta(minutes=5), 1299.0, "m-elec", **LONDON),
        ]
    )
    [live] = await ingest(
        [
            tx("live-1", "acct-live", now - dt.timedelta(minutes=10), 42.5, "m-deli", **NEW_YORK),
            tx("live-2", "acct-live", now, 1299.0, "m-elec", **LONDON),
        ]
    )
    alice = await sign_in(browser, server, "alice")
    await expect(alice.row(late)).to_be_visible()
    await expect(alice.row(live)).to_be_visible()

    late_line = await alice.row(late).evaluate(AGE_LINE)
    assert late_line["late"] is True, late_line
    assert late_line["lateText"] == "raised late ·", late_line
    assert re.search(r", 5 min after its transaction$", late_line["ageTitle"]), late_line
    live_line = await alice.row(live).evaluate(AGE_LINE)
    assert live_line["late"] is None, live_line
    assert "after its transaction" not in live_line["ageTitle"], live_line

    # The drawer says it in full; for an alert raised as its transaction came, as before.
    await alice.cell(late, MERCHANT).click()
    await expect(alice.drawer.locator("#drawer-sub")).to_have_text(
        re.compile(r"· raised \d+ s ago, 5 min after its transaction$")
    )
    await alice.press("Escape")
    await alice.cell(live, MERCHANT).click()
    await expect(alice.drawer.locator("#drawer-sub")).to_have_text(
        re.compile(r"· raised \d+ s ago$")
    )
    assert alice.problems == []
