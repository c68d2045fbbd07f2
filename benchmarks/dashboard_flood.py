"""Hours of alerts through the dashboard in minutes: does a page at its cap keep growing?

    .venv/bin/python benchmarks/dashboard_flood.py --alerts 1000000 --every 100000

`benchmarks/dashboard_soak.py` feeds the pages through the real server at ~68 alerts a
second, so an hour costs an hour. This feeds them as fast as they can take them: it starts
`python -m server demo` from this checkout (for the page, the login and one real alert),
opens two signed-in pages as the soak does (**idle**, and **held** with the keyboard in the
table), and replaces their live feed's WebSocket by one in the page (an init script,
tests/fake_feed.js; the `/ws` socket only) that hands the page's own socket.js a `hello`,
then `alert` messages in seq order as text frames, copies of one real alert that differ only
in ids and times. Every alert is the same size, so whatever the page keeps per alert shows
as growth. A `stats` message comes once a wall-clock second, as the server sends them.
Everything from the socket's message event on is the page's real code with its real
20,000-alert cap (`--cap N` rewrites app.js as it is served, as tests/test_dashboard_held.py does).

It sends `--chunk` alerts (in tasks of 100 frames), waits until both pages have applied them
(their delivery panel's seq), and so on; every `--every` alerts it records per page, after
a forced GC, the JS heap used, DOM nodes, listeners and rows listed, and with `--snapshots`
takes a heap snapshot there too and prints what changed since the previous one by kind
(benchmarks/heap_snapshot.py). Everything goes to
`benchmarks/results/flood-<UTC time>.json`. Nothing acknowledges or opens the fake alerts
(the soak does that against the real server).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import heap_snapshot  # benchmarks/heap_snapshot.py, beside this script
from card_testing_load import card_testing
from dashboard_soak import CHROMIUM, ROOT, Demo, open_page
from playwright.async_api import BrowserContext, Page, Route, async_playwright
from results_file import commit, write_results  # benchmarks/results_file.py, beside this script

HELD_AFTER = 40  # alerts in the table before the held page's keyboard goes into it


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--alerts", type=int, default=100_000, help="alerts to send (100,000)")
    p.add_argument("--every", type=int, default=10_000, help="alerts between samples (10,000)")
    p.add_argument("--chunk", type=int, default=5_000, help="alerts sent before waiting (5,000)")
    p.add_argument("--cap", type=int, default=0, help="lower the page's cap to N (0: as shipped)")
    p.add_argument("--snapshots", action="store_true", help="a heap snapshot at every sample")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (and snapshots)")
    p.add_argument("--port", type=int, default=8150)
    return p.parse_args()


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# The page's live feed, faked in the page (shared with tests/test_dashboard_memory.py).
FAKE_FEED = ROOT / "tests" / "fake_feed.js"


async def a_real_alert(demo: Demo) -> dict[str, Any]:
    """One card-testing alert from the demo, as its API shows it: the flood's template."""
    headers = {"Authorization": f"Bearer {demo.api_key}"}
    base = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    lines = [json.dumps(charge) for charge in card_testing("template", "soak", base)]
    async with aiohttp.ClientSession(headers=headers) as http:
        url = f"{demo.url}/api/v1/transactions"
        body = "\n".join(lines) + "\n"
        async with http.post(url, data=body, headers={"Content-Type": "application/x-ndjson"}):
            pass
        async with http.get(f"{demo.url}/api/v1/alerts", params={"limit": "100"}) as r:
            alerts = [a for a in (await r.json())["alerts"] if a["account_id"] == "template"]
    if not alerts:
        raise SystemExit("the demo raised no alert for the template account")
    return max(alerts, key=lambda a: len(a.get("reasons") or []))


async def send(pages: dict[str, Any], template: dict[str, Any], sent: int, n: int) -> int:
    """Alerts `sent` .. `sent + n - 1` to every page, applied; returns how many are sent."""

    async def one(page: Page) -> None:
        seq: int = await page.evaluate(
            "([t, from, n]) => window.__flood.send(t, from, n)", [template, sent, n]
        )
        await wait_applied(page, seq)

    await asyncio.gather(*(one(p["page"]) for p in pages.values()))
    return sent + n


async def applied_seq(page: Page) -> int:
    text = await page.locator('[data-integrity="last_seq"]').text_content() or ""
    digits = re.sub(r"\D", "", text)
    return int(digits) if digits else -1


async def main() -> None:
    args = parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="fw-flood-"))
    demo = Demo(workdir, args.port, rate=5)
    samples: list[dict[str, Any]] = []
    snapshots: dict[str, Any] = {}
    try:
        await demo.ready()
        template = await a_real_alert(demo)
        size = len(json.dumps(template, separators=(",", ":")))
        reasons = [r["code"] for r in template.get("reasons") or []]
        print(f"template alert: {size} bytes as JSON, reasons {reasons}", flush=True)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            pages: dict[str, Any] = {}

            async def prepare(context: BrowserContext) -> None:
                await context.add_init_script(path=FAKE_FEED)
                if args.cap:
                    await context.route("**/static/js/app.js", lower_cap(args.cap))

            for name in ("idle", "held"):
                watched = await open_page(browser, demo, name, prepare)
                pages[name] = {"page": watched.page, "cdp": watched.cdp, "errors": watched.errors}
            started = time.monotonic()
            # A few alerts in the table, then the keyboard in the held page's.
            sent = await send(pages, template, 0, HELD_AFTER)
            held = pages["held"]["page"]
            await held.mouse.move(2, 2)
            await held.keyboard.press("j")
            previous: dict[str, Any] = {}
            next_sample = args.every
            while sent < args.alerts:
                n = min(args.chunk, next_sample - sent, args.alerts - sent)
                sent = await send(pages, template, sent, n)
                if sent == next_sample or sent == args.alerts:
                    next_sample += args.every
                    sample = await take_sample(pages, sent, time.monotonic() - started)
                    samples.append(sample)
                    if args.snapshots:
                        await snapshot_all(pages, workdir, sent, snapshots, previous, args.keep)
            await browser.close()
    finally:
        demo.stop()
    result = {
        "args": vars(args),
        "commit": await asyncio.to_thread(commit),
        "template": {"bytes": size, "reasons": reasons},
        "samples": samples,
        "snapshots": snapshots,
        "errors": {name: p["errors"] for name, p in pages.items()},
    }
    print(f"written to {write_results('flood', result)}")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)


def lower_cap(cap: int) -> Any:
    async def rewrite(route: Route) -> None:
        response = await route.fetch()
        body = await response.text()
        old = "const STORE_CAPACITY = 20_000;"
        if old not in body:
            raise SystemExit("app.js no longer declares STORE_CAPACITY = 20_000")
        await route.fulfill(
            response=response, body=body.replace(old, f"const STORE_CAPACITY = {cap};")
        )

    return rewrite


async def wait_applied(page: Page, seq: int, within_s: float = 300.0) -> None:
    # The delivery panel shows the last seq applied, once a second.
    deadline = time.monotonic() + within_s
    while await applied_seq(page) < seq:
        if time.monotonic() > deadline:
            raise SystemExit(f"a page did not apply seq {seq} in {within_s:.0f} s")
        await asyncio.sleep(0.2)


async def take_sample(pages: dict[str, Any], sent: int, t: float) -> dict[str, Any]:
    sample: dict[str, Any] = {"alerts": sent, "t": round(t, 1)}
    line = [f"{sent:8,} alerts  {t:6.0f} s"]
    for name, p in pages.items():
        await p["cdp"].send("HeapProfiler.collectGarbage")
        metrics = {
            m["name"]: m["value"]
            for m in (await p["cdp"].send("Performance.getMetrics"))["metrics"]
        }
        listed = await p["page"].evaluate(
            "() => Number(document.querySelector('#alerts-table')"
            ".getAttribute('aria-rowcount') || 1) - 1"
        )
        figures = {
            "heap_mb": round(metrics["JSHeapUsedSize"] / 2**20, 2),
            "nodes": int(metrics["Nodes"]),
            "listeners": int(metrics["JSEventListeners"]),
            "listed": listed,
        }
        sample[name] = figures
        line.append(
            f"{name} {figures['heap_mb']:6.2f} MB {figures['nodes']:5} nodes "
            f"{figures['listeners']:4} listeners {listed:6} listed"
        )
    print("  ".join(line), flush=True)
    return sample


async def snapshot_all(
    pages: dict[str, Any],
    workdir: Path,
    sent: int,
    into: dict[str, Any],
    previous: dict[str, Any],
    keep: bool,
) -> None:
    """A heap snapshot of each page, compared with its previous one; the summary is kept."""
    for name, p in pages.items():
        path = workdir / f"heap-{name}-{sent}.heapsnapshot"
        await heap_snapshot.take(p["cdp"], path)
        summary = await asyncio.to_thread(heap_snapshot.summarize, path)
        if not keep:
            path.unlink()
        print(
            f"  snapshot {name} at {sent:,}: {summary['total_bytes'] / 2**20:.2f} MB, "
            f"shapes {summary['shapes']}",
            flush=True,
        )
        if name in previous:
            for group, n, size in heap_snapshot.diff(previous[name], summary, 12):
                print(f"    {group[:60]:60} {n:+9,} {size:+12,}", flush=True)
        previous[name] = summary
        into.setdefault(name, {})[str(sent)] = heap_snapshot.brief(summary)


if __name__ == "__main__":
    asyncio.run(main())
