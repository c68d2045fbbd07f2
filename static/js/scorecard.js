// The live detection scorecard: how well the detector does where the truth is known (the
// simulator's ground truth, analysts' resolutions, labels posted to the API). The server
// sends it in `stats` as `scorecard` (null until a labelled transaction has a verdict).
// Hidden while there is nothing to show; never claims a figure it was not given.

import { setText } from "./dom.js";
import { formatCount } from "./format.js";

const percent = (value) => (value === null || value === undefined ? "—" : `${Math.round(value * 1000) / 10} %`);

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${Math.round(seconds / 360) / 10} h`;
}

const label = (name) => name.replaceAll("_", " ");

export class ScorecardPanel {
  constructor(details) {
    this.details = details;
    this.summary = details.querySelector("#scorecard-summary");
    this.body = details.querySelector("#scorecard-rows");
    this.note = details.querySelector("#scorecard-note");
    this.last = null;
  }

  update(scorecard) {
    if (!scorecard) {
      this.details.hidden = true;
      return;
    }
    this.details.hidden = false;
    const key = JSON.stringify(scorecard);
    if (key === this.last) return;
    this.last = key;
    const overall = scorecard.overall;
    setText(
      this.summary,
      `Detection: precision ${percent(overall.precision)} · recall ${percent(overall.recall)}`,
    );
    setText(
      this.note,
      `${formatCount(scorecard.labelled)} labelled transactions over ${duration(scorecard.hours * 3600)} of event time. ` +
        "Delay: from an episode's first fraudulent transaction to its first alert (median / p90).",
    );
    const rows = scorecard.scenarios.map((s) => {
      const tr = document.createElement("tr");
      tr.dataset.scenario = s.scenario;
      tr.dataset.kind = s.kind;
      const delay = s.detection_delay_s || {};
      const cells = [
        label(s.scenario),
        s.kind === "fraud" ? "fraud" : "legitimate",
        formatCount(s.frauds),
        formatCount(s.alerts),
        percent(s.precision),
        s.kind === "fraud" ? percent(s.recall) : "—",
        String(s.alerts_per_hour),
        s.kind === "fraud" ? `${duration(delay.median)} / ${duration(delay.p90)}` : "—",
      ];
      for (const text of cells) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.append(td);
      }
      return tr;
    });
    this.body.replaceChildren(...rows);
  }
}
