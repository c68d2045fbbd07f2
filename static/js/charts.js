// Small inline-SVG charts, built node by node: header sparklines, a reason's observed value
// against its threshold, and an account's amounts over time. No library, no HTML strings.

import { h, svg } from "./dom.js";

const SPARK_W = 300;
const SPARK_H = 40;
const SPARK_PAD = 3;
// Stats arrive about once a second; a longer silence is a gap the line must not bridge.
const GAP_MS = 5_000;
const MIN_SPAN_MS = 60_000;
const MIN_POINTS = 3;

export class Sparkline {
  constructor(container, { label, windowMs = 5 * 60_000, format = String }) {
    this.label = label;
    this.windowMs = windowMs;
    this.format = format;
    this.samples = [];
    this.area = svg("path", { className: "spark-area" });
    const base = SPARK_H - 0.5;
    this.base = svg("line", {
      className: "spark-base",
      x1: 0,
      x2: SPARK_W,
      y1: base,
      y2: base,
      "vector-effect": "non-scaling-stroke",
    });
    this.line = svg("path", { className: "spark-line", "vector-effect": "non-scaling-stroke" });
    this.svg = svg(
      "svg",
      {
        className: "spark-svg",
        viewBox: `0 0 ${SPARK_W} ${SPARK_H}`,
        preserveAspectRatio: "none",
        role: "img",
        "aria-label": label,
      },
      [this.base, this.area, this.line],
    );
    container.append(this.svg);
  }

  push(at, value) {
    if (!Number.isFinite(value)) return;
    this.samples.push([at, value]);
    const oldest = at - this.windowMs;
    let drop = 0;
    while (drop < this.samples.length && this.samples[drop][0] < oldest) drop += 1;
    if (drop) this.samples.splice(0, drop);
  }

  // Start again from these [at, value] samples, oldest first: a page that just connected
  // draws the server's recent history instead of what it saw before.
  replace(samples) {
    this.samples = [];
    for (const [at, value] of samples) this.push(at, value);
  }

  draw(now) {
    const { samples } = this;
    let peak = 0;
    for (const [, value] of samples) peak = Math.max(peak, value);
    const top = peak > 0 ? peak * 1.1 : 1;
    // The line grows from the left during its first minutes rather than hugging the right
    // edge; after that the axis is the last `windowMs`.
    const start = Math.max(
      now - this.windowMs,
      Math.min(samples[0]?.[0] ?? now, now - MIN_SPAN_MS),
    );
    const x = (at) => ((at - start) / (now - start)) * SPARK_W;
    const y = (value) => SPARK_H - SPARK_PAD - (value / top) * (SPARK_H - 2 * SPARK_PAD);
    let line = "";
    let area = "";
    let segment = [];
    const flush = () => {
      if (!segment.length) return;
      const [x0] = segment[0];
      const [x1] = segment[segment.length - 1];
      const points = segment.map(([px, py]) => `${px.toFixed(1)} ${py.toFixed(1)}`);
      line += `M${points.join("L")}`;
      area += `M${x0.toFixed(1)} ${SPARK_H}L${points.join("L")}L${x1.toFixed(1)} ${SPARK_H}Z`;
      segment = [];
    };
    let previous = null;
    // A line needs a few points before it says anything; until then, only the baseline.
    for (const [at, value] of samples.length >= MIN_POINTS ? samples : []) {
      if (previous !== null && at - previous > GAP_MS) flush();
      segment.push([x(at), y(value)]);
      previous = at;
    }
    flush();
    this.line.setAttribute("d", line || "M0 0");
    this.area.setAttribute("d", area || "M0 0");
    const last = samples.length ? samples[samples.length - 1][1] : null;
    this.svg.setAttribute(
      "aria-label",
      last === null
        ? `${this.label}: no data yet`
        : `${this.label}, last ${Math.round((now - start) / 60_000) || 1} min: ` +
            `now ${this.format(last)}, peak ${this.format(peak)}`,
    );
  }
}

// A reason's observed value on a track, with its threshold as a tick. The scale runs to a
// quarter past the larger of the two, so the tick never sits at the very end.
export function thresholdBar(observed, threshold) {
  const w = 120;
  const h = 10;
  const o = Number(observed);
  const t = Number(threshold);
  if (!Number.isFinite(o) || !Number.isFinite(t) || Math.max(o, t) <= 0) return null;
  const max = Math.max(o, t) * 1.25;
  const fill = Math.max(1, (o / max) * w);
  const tick = (t / max) * w;
  return svg(
    "svg",
    { className: "threshold-bar", viewBox: `0 0 ${w} ${h}`, "aria-hidden": "true" },
    [
      svg("rect", { className: "tb-track", x: 0, y: 2, width: w, height: h - 4, rx: 3 }),
      svg("rect", {
        className: o >= t ? "tb-fill tb-over" : "tb-fill",
        x: 0,
        y: 2,
        width: fill.toFixed(1),
        height: h - 4,
        rx: 3,
      }),
      svg("rect", { className: "tb-tick", x: (tick - 1).toFixed(1), y: 0, width: 2, height: h }),
    ],
  );
}

// Amounts over time for one account's alerts on this page; `current` is drawn larger. The
// labels give the scale: the largest amount over the chart, the first and last times under
// it. They are text beside the SVG, not in it: SVG text shrank with the chart (to 9 px in a
// 384 px drawer), and a contrast checker cannot tell what lies behind it.
export function amountChart(points, currentId, { label, money, time }) {
  const w = 400;
  const height = 64;
  const left = 8;
  const right = 8;
  const top = 6;
  const bottom = 6;
  const valid = points.filter((p) => Number.isFinite(p.at) && Number.isFinite(p.amount));
  if (valid.length < 2) return null;
  const t0 = Math.min(...valid.map((p) => p.at));
  const t1 = Math.max(...valid.map((p) => p.at));
  const peak = Math.max(...valid.map((p) => p.amount));
  const scale = peak > 0 ? peak : 1;
  const x = (at) =>
    left + (t1 > t0 ? ((at - t0) / (t1 - t0)) * (w - left - right) : (w - left - right) / 2);
  const y = (amount) => height - bottom - (amount / scale) * (height - top - bottom);
  const dots = valid.map((p) =>
    svg("circle", {
      className: p.id === currentId ? "ac-dot ac-current" : "ac-dot",
      cx: x(p.at).toFixed(1),
      cy: y(p.amount).toFixed(1),
      r: p.id === currentId ? 4.5 : 3,
    }),
  );
  const baseline = height - bottom;
  const chart = svg(
    "svg",
    { className: "amount-chart", viewBox: `0 0 ${w} ${height}`, role: "img", "aria-label": label },
    [
      svg("line", { className: "ac-axis", x1: left, x2: w - right, y1: baseline, y2: baseline }),
      svg("line", { className: "ac-axis ac-grid", x1: left, x2: w - right, y1: top, y2: top }),
      ...dots,
    ],
  );
  return h("div", { className: "amount-chart-box" }, [
    h("p", { className: "ac-label", text: `max ${money(peak)}` }),
    chart,
    h("p", { className: "ac-label ac-times" }, [
      h("span", { text: time(t0) }),
      h("span", { text: time(t1) }),
    ]),
  ]);
}
