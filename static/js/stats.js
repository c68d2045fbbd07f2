// The header's live counters and connection indicator.

import { formatCount, formatMs, formatRate } from "./format.js";
import { setText } from "./dom.js";

const CONNECTION_TEXT = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  offline: "Offline",
  stopped: "Offline",
  "signed-out": "Signed out",
};

export class Counters {
  constructor(section) {
    this.section = section;
    this.values = {};
    for (const node of section.querySelectorAll("[data-stat]")) {
      this.values[node.dataset.stat] = node;
    }
    this.openAlerts = null;
  }

  update(stats) {
    setText(this.values.tx_per_s, formatRate(stats.tx_per_s));
    setText(this.values.alerts_per_s, formatRate(stats.alerts_per_s));
    setText(this.values.open_alerts, formatCount(stats.open_alerts));
    // A quiet second has no latency sample: keep the last one rather than flicker to "—".
    const latency = stats.latency_ms ?? {};
    const p99 = this.values.latency_p99;
    if (Number.isFinite(latency.p99)) {
      setText(p99, formatMs(latency.p99));
      p99.title = `p50 ${formatMs(latency.p50)} · p99 ${formatMs(latency.p99)}, last second`;
    }
    this.openAlerts = Number.isFinite(stats.open_alerts) ? stats.open_alerts : null;
    this.section.classList.remove("is-stale");
  }

  // While the feed is down the last numbers stay visible but are marked as stale.
  setStale(stale) {
    this.section.classList.toggle("is-stale", stale);
    this.section.title = stale ? "Not live: these numbers are from the last update" : "";
  }
}

export class ConnectionIndicator {
  constructor(node) {
    this.node = node;
    this.text = node.querySelector(".conn-text");
  }

  set(state, delayMs = 0) {
    this.node.dataset.state = state;
    setText(this.text, CONNECTION_TEXT[state] ?? state);
    this.node.title =
      state === "reconnecting" && delayMs
        ? `Connection lost; next attempt in ${Math.ceil(delayMs / 1000)} s`
        : "";
  }
}
