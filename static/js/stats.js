// The header's counters and sparklines, from the server's `stats` message (on connect, the
// rates start from the recent ticks in `hello` and the rest from its newest tick, so a
// fresh page shows them at once): rates, open alerts in total and by severity, the oldest
// one nobody has acknowledged, its latency. The page's own alerts name that oldest one when
// the page holds it, and the alerts arriving live give the ingest -> screen latency (their
// `received_at` against the server's clock).

import { Sparkline } from "./charts.js";
import { h, setText } from "./dom.js";
import { capitalize, formatAge, formatCount, formatMs, formatRate } from "./format.js";

const MINUTE_MS = 60_000;
// A tick counts the second or so before its time, so a record whose first tick is this far
// before a point covers the whole minute that point sums.
const FULL_MINUTE_MS = MINUTE_MS - 1_000;
const LATENCY_SAMPLES = 200;

function percentile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.round(q * (sorted.length - 1)))];
}
const SEVERITY_ORDER = ["critical", "high", "medium", "low"];

export class Counters {
  constructor(section, { clock }) {
    this.section = section;
    this.clock = clock;
    this.values = {};
    for (const node of section.querySelectorAll("[data-stat]")) {
      this.values[node.dataset.stat] = node;
    }
    const spark = (name) => section.querySelector(`[data-spark="${name}"]`);
    this.txSpark = new Sparkline(spark("tx_per_s"), {
      label: "Transactions per second",
      format: formatRate,
    });
    this.alertSpark = new Sparkline(spark("alerts_per_min"), {
      label: "Alerts per minute",
      format: formatRate,
    });
    this.severityCounts = section.querySelector("#severity-counts");
    this.oldestDetail = section.querySelector("#oldest-open-detail");
    // Two pieces, so that a narrow card breaks the line between them, not inside either.
    this.latencyP50 = section.querySelector("#latency-p50");
    this.screenDetail = section.querySelector("#screen-latency-detail");
    this.screenSamples = [];
    this.serverBySeverity = null;
    this.serverOldest = null;
    this.alertCounts = []; // [at, alerts], from the last minute's stats messages
    this.openAlerts = null;
    this.oldest = null;
    this._severityKey = "";
  }

  // A `stats` message: about once a second while live.
  update(stats) {
    const now = Date.now();
    setText(this.values.tx_per_s, formatRate(stats.tx_per_s));
    this.txSpark.push(now, Number(stats.tx_per_s));

    // Alerts in the last minute: each stats message gives the rate over the second or so
    // since the previous one, so rate × interval is a count; their sum over the last minute
    // is what happened, not an extrapolation from a few seconds.
    // A server that sends the tick's count (`alerts`) makes the sum exact; from an older one,
    // rate × interval is an estimate that drifts when messages arrive unevenly.
    const rate = Number(stats.alerts_per_s);
    const previous = this.alertCounts.at(-1)?.[0];
    const interval = previous ? Math.min(2, Math.max(0.5, (now - previous) / 1000)) : 1;
    if (Number.isInteger(stats.alerts)) this.alertCounts.push([now, stats.alerts]);
    else if (Number.isFinite(rate)) this.alertCounts.push([now, rate * interval]);
    while (this.alertCounts.length && this.alertCounts[0][0] <= now - MINUTE_MS) {
      this.alertCounts.shift();
    }
    const lastMinute = this.alertCounts.reduce((sum, [, n]) => sum + n, 0);
    setText(this.values.alerts_per_min, formatRate(lastMinute));
    this.alertSpark.push(now, lastMinute);

    this.show(stats);
    this.txSpark.draw(now);
    this.alertSpark.draw(now);
    this.section.classList.remove("is-stale");
  }

  // The figures a `stats` message states rather than counts: open alerts, by severity, the
  // oldest unacknowledged, latency. Also hello.stats, the newest tick as the page connects:
  // its `alerts` is already in recent_stats (seed), so it must not reach the sums above.
  show(stats) {
    setText(this.values.open_alerts, formatCount(stats.open_alerts));
    // A quiet second has no latency sample: keep the last one rather than flicker to "—".
    const latency = stats.latency_ms ?? {};
    const p99 = this.values.latency_p99;
    if (Number.isFinite(latency.p99)) {
      setText(p99, formatMs(latency.p99));
      setText(this.latencyP50, `p50 ${formatMs(latency.p50)}`);
      this.latencyP50.hidden = false;
    }
    this.openAlerts = Number.isFinite(stats.open_alerts) ? stats.open_alerts : null;
    // Server-wide counts when the server sends them; the page's own otherwise.
    if (stats.open_by_severity && typeof stats.open_by_severity === "object") {
      this.serverBySeverity = stats.open_by_severity;
      this._showSeverity(this.serverBySeverity, "");
    }
    if ("oldest_open_created_at" in stats) {
      this.serverOldest = stats.oldest_open_created_at ?? "";
      this.tick();
    }
  }

  // hello.recent_stats: the server's last minutes of ticks, oldest first. They replace what
  // the page had (after a reconnect they also cover the outage), so the rates and sparklines
  // show the last minute at once rather than counting up from zero. An older server sends
  // none: then the page counts from here, as before.
  seed(ticks) {
    if (!Array.isArray(ticks)) return;
    const points = [];
    for (const tick of ticks) {
      const at = this.clock.toLocal(tick?.server_time);
      if (Number.isFinite(at) && Number.isInteger(tick.alerts)) points.push([at, tick]);
    }
    if (!points.length) return;
    const txSamples = [];
    const alertSamples = [];
    let first = 0;
    let sum = 0;
    for (const [at, tick] of points) {
      sum += tick.alerts;
      while (points[first][0] <= at - MINUTE_MS) sum -= points[first++][1].alerts;
      if (Number.isFinite(tick.tx_per_s)) txSamples.push([at, tick.tx_per_s]);
      // The record's first minute has no whole minute before it: a sum there would be low.
      if (at - points[0][0] >= FULL_MINUTE_MS) alertSamples.push([at, sum]);
    }
    const now = Date.now();
    this.alertCounts = points
      .filter(([at]) => at > now - MINUTE_MS)
      .map(([at, tick]) => [at, tick.alerts]);
    const lastMinute = this.alertCounts.reduce((total, [, n]) => total + n, 0);
    setText(this.values.alerts_per_min, formatRate(lastMinute));
    const lastTx = points.at(-1)[1].tx_per_s;
    if (Number.isFinite(lastTx)) setText(this.values.tx_per_s, formatRate(lastTx));
    // A server up for less than a minute has no whole minute to draw: the page keeps the
    // line it drew before (a reconnect after a restart) rather than blanking it.
    if (txSamples.length) this.txSpark.replace(txSamples);
    if (alertSamples.length) this.alertSpark.replace(alertSamples);
    this.txSpark.draw(now);
    this.alertSpark.draw(now);
  }

  // From the page's own alerts: {bySeverity: {critical: n, ...}, oldest: alert | null}.
  setLocal({ bySeverity, oldest }) {
    if (!this.serverBySeverity) this._showSeverity(bySeverity, " on this page");
    this.oldest = oldest;
    this.tick();
  }

  // A new alert as it arrived live: how long from the server receiving its transaction to
  // this screen, on the server's clock (offset from hello). Replays are not live: skipped.
  noteArrival(alert, replayed) {
    if (replayed || !alert.received_at) return;
    // The page's idea of the server clock lags by the hello's one-way delay, so a fast
    // delivery can come out below zero: that is "about as fast as we can tell", i.e. 0.
    const ms = Math.max(0, this.clock.now() - Date.parse(alert.received_at));
    if (!Number.isFinite(ms)) return;
    this.screenSamples.push(ms);
    if (this.screenSamples.length > LATENCY_SAMPLES) this.screenSamples.shift();
    const sorted = [...this.screenSamples].sort((a, b) => a - b);
    setText(this.values.screen_p99, formatMs(percentile(sorted, 0.99)));
    const n = sorted.length;
    const last = `last ${formatCount(n)} alert${n === 1 ? "" : "s"}`;
    setText(this.screenDetail, `p50 ${formatMs(percentile(sorted, 0.5))} · ${last}`);
  }

  _showSeverity(bySeverity, where) {
    const key = SEVERITY_ORDER.map((s) => bySeverity[s] ?? 0).join(",") + where;
    if (key !== this._severityKey) {
      this._severityKey = key;
      // Spaces between the parts, so the text reads "1 critical 2 high" to a screen reader.
      const parts = SEVERITY_ORDER.filter((s) => bySeverity[s]).flatMap((s, i) => [
        i ? " " : null,
        h("span", { className: `sev-count sev-count-${s}` }, [
          h("span", { className: `chip-dot sev-dot-${s}`, "aria-hidden": "true" }),
          `${formatCount(bySeverity[s])} ${s}`,
        ]),
      ]);
      this.severityCounts.replaceChildren(
        ...(parts.length ? parts.filter(Boolean) : [`none${where}`]),
      );
    }
  }

  // Once a second: the oldest unacknowledged alert keeps ageing while nothing arrives.
  tick() {
    const alert = this.oldest;
    // The server's oldest ("" when none) wins over the page's; the page names it if it can.
    const since = this.serverOldest !== null ? this.serverOldest : alert?.created_at;
    if (!since) {
      setText(this.values.oldest_open, "—");
      setText(this.oldestDetail, "nothing waiting");
      return;
    }
    const age = this.clock.now() - Date.parse(since);
    setText(this.values.oldest_open, formatAge(age));
    setText(
      this.oldestDetail,
      alert && alert.created_at === since
        ? `${capitalize(alert.severity)} · ${alert.account_id}`
        : "not loaded on this page",
    );
  }

  // While the feed is down the last numbers stay visible but are marked as stale.
  setStale(stale) {
    this.section.classList.toggle("is-stale", stale);
    this.section.title = stale ? "Not live: these numbers are from the last update" : "";
  }
}
