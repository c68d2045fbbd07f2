// The delivery-integrity panel: evidence that nothing was lost between the store and this
// screen. The socket counts seq gaps, suppressed duplicates and reconnects; the server's
// count of refused input records comes from /metrics (Prometheus text).

import { h, setText } from "./dom.js";
import { formatClock, formatCount } from "./format.js";

const METRICS_EVERY_MS = 15_000;

const plural = (n, word) => `${formatCount(n)} ${word}${n === 1 ? "" : "s"}`;

// The value of an unlabelled sample `name` in Prometheus text exposition, or null.
export function parseMetric(text, name) {
  for (const line of String(text).split("\n")) {
    if (line.startsWith("#")) continue;
    const [metric, value] = line.trim().split(/\s+/);
    if (metric === name) {
      const n = Number(value);
      return Number.isFinite(n) ? n : null;
    }
  }
  return null;
}

export class IntegrityPanel {
  constructor(details, socket) {
    this.details = details;
    this.socket = socket;
    this.summary = details.querySelector("#integrity-summary");
    this.hint = details.querySelector("#integrity-hint");
    this.fields = {};
    for (const node of details.querySelectorAll("[data-integrity]")) {
      this.fields[node.dataset.integrity] = node;
    }
    // What the footer says before the first seq is the template's, shown before any script
    // runs: kept from there (one wording, not a copy here), and put back while no seq is.
    this.waiting = [...this.summary.childNodes].map((node) => node.cloneNode(true));
    this.waitingText = this.summary.textContent;
    this.rejected = null;
    this.metricsAt = 0;
    this.metricsError = null;
    this.fromStats = false;
    details.addEventListener("toggle", () => {
      if (details.open && !this.fromStats) this.pollMetrics();
    });
    // Servers that send rejected_total in `stats` need no polling; older ones do.
    setInterval(() => this.fromStats || this.pollMetrics(), METRICS_EVERY_MS);
    this.pollMetrics();
  }

  // A `stats` message with the server's rejected total (about once a second).
  setRejected(total) {
    if (!Number.isFinite(total)) return;
    this.fromStats = true;
    this.rejected = total;
    this.metricsAt = Date.now();
    this.metricsError = null;
  }

  async pollMetrics() {
    try {
      const response = await fetch("/metrics", { credentials: "same-origin" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      this.rejected = parseMetric(await response.text(), "fraudwatch_rejected_total");
      this.metricsAt = Date.now();
      this.metricsError = null;
    } catch (error) {
      this.metricsError = error.message || "unreachable";
    }
    this.refresh();
  }

  // Once a second, from the socket's counters.
  refresh() {
    const { delivery, lastSeq } = this.socket;
    setText(this.fields.last_seq, lastSeq === null ? "—" : formatCount(lastSeq));
    setText(
      this.fields.gaps,
      delivery.gaps ? `${formatCount(delivery.gaps)} (${plural(delivery.missed, "event")})` : "0",
    );
    setText(this.fields.duplicates, formatCount(delivery.duplicates));
    setText(this.fields.reconnects, formatCount(delivery.reconnects));
    const rejected = this.fields.rejected;
    setText(rejected, this.rejected === null ? "—" : formatCount(this.rejected));
    rejected.title = this.metricsError
      ? `Could not read /metrics: ${this.metricsError}`
      : this.metricsAt
        ? `Server total since start, read at ${formatClock(this.metricsAt)}`
        : "";

    const ok = delivery.gaps === 0;
    this.details.dataset.health = ok ? "ok" : "gap";
    if (lastSeq === null) {
      if (this.summary.textContent !== this.waitingText) {
        this.summary.replaceChildren(...this.waiting.map((node) => node.cloneNode(true)));
      }
      return;
    }
    // The seq apart: beside the drawer on a small laptop the footer shows the verdict alone
    // (app.css), and the panel this opens lists the seq and the gaps. The template's
    // "Waiting" is alone there too: the whole phrase took the footer to two lines at 1024 px.
    const [verdict, detail] = ok
      ? ["Delivery OK", ` · seq ${formatCount(lastSeq)} · no gaps`]
      : [`Delivery: ${plural(delivery.gaps, "gap")}`, ` · seq ${formatCount(lastSeq)}`];
    if (this.summary.textContent !== verdict + detail) {
      const more = detail ? [h("span", { className: "integrity-detail", text: detail })] : [];
      this.summary.replaceChildren(verdict, ...more);
    }
  }
}
