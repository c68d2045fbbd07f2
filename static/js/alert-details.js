// The details of one alert as DOM sections, for the drawer: pure builders from data to
// nodes, text only (markup in the data stays text, the raw payload included).

import { severityBadge, statusLabel, workable } from "./alert-row.js";
import { amountChart, thresholdBar } from "./charts.js";
import { h } from "./dom.js";
import { stringifyJson } from "./json.js";
import {
  amountAsSent,
  capitalize,
  formatDateTime,
  formatEventTime,
  formatMeasure,
  formatMoney,
  formatPercent,
  formatScore,
  ruleLabel,
} from "./format.js";

// Transaction fields in the order an analyst reads them; any others follow, sorted.
const TX_FIELDS = [
  ["id", "Transaction id"],
  ["timestamp", "Event time"],
  ["account_id", "Account"],
  ["amount", "Amount"],
  ["currency", "Currency"],
  ["merchant_id", "Merchant id"],
  ["merchant_name", "Merchant name"],
  ["mcc", "MCC"],
  ["channel", "Channel"],
  ["country", "Country"],
  ["lat", "Latitude"],
  ["lon", "Longitude"],
  ["device_id", "Device"],
  ["ip", "IP address"],
];
const ACTION_LABEL = {
  acknowledge: "Acknowledged",
  unacknowledge: "Released to the queue",
  assign: "Assigned",
  resolve: "Resolved",
  reopen: "Reopened",
  note: "Note",
};

function field(label, value, { mono = false } = {}) {
  const text = value === null || value === undefined || value === "" ? "—" : String(value);
  return [h("dt", { text: label }), h("dd", { className: mono ? "mono" : null, text })];
}

// The event time as the drawer's other times read (the browser's zone, to the second); the
// exact value as sent, microseconds and offset, in the tooltip, as in the table's column.
function eventTimeField(label, iso) {
  if (iso === null || iso === undefined || iso === "") return field(label, iso);
  return [
    h("dt", { text: label }),
    h("dd", {}, [
      h("time", { datetime: iso, title: `Event time ${iso}`, text: formatDateTime(iso) }),
    ]),
  ];
}

export function section(key, title, children, { className = "" } = {}) {
  const props = { className: `drawer-section ${className}`.trim(), dataset: { section: key } };
  return h("section", props, [h("h3", { text: title }), ...children]);
}

export function badgesAndActions(alert, { me, canAct }) {
  const badges = [
    severityBadge(alert.severity),
    h("span", { className: `status status-${alert.status}`, text: statusLabel(alert.status) }),
    alert.disposition
      ? h("span", {
          className: `disposition disposition-${alert.disposition}`,
          text: capitalize(alert.disposition),
        })
      : null,
    h("span", { className: "drawer-score", text: `Score ${formatScore(alert.score)}` }),
  ];
  const buttons = [];
  if (canAct && workable(alert, me)) {
    if (alert.status === "open") {
      buttons.push(
        h("button", {
          type: "button",
          className: "btn btn-small",
          dataset: { action: "ack" },
          "aria-keyshortcuts": "a",
          title: "Acknowledge: take ownership (a)",
          text: "Acknowledge",
        }),
      );
    }
    buttons.push(
      h("button", {
        type: "button",
        className: "btn btn-small btn-fraud",
        dataset: { action: "fraud" },
        "aria-keyshortcuts": "f",
        title: "Resolve as fraud (f)",
        text: "Fraud…",
      }),
      h("button", {
        type: "button",
        className: "btn btn-small btn-legit",
        dataset: { action: "legitimate" },
        "aria-keyshortcuts": "l",
        title: "Resolve as legitimate (l)",
        text: "Legitimate…",
      }),
    );
    if (alert.status === "acknowledged") {
      buttons.unshift(
        h("button", {
          type: "button",
          className: "btn btn-small btn-quiet",
          dataset: { action: "unack" },
          title: "Give it back to the queue, unowned",
          text: "Release",
        }),
      );
    }
  } else if (alert.status === "acknowledged") {
    buttons.push(h("span", { className: "drawer-held", text: `Held by ${alert.owner}` }));
  } else if (canAct && alert.status === "resolved") {
    buttons.push(
      h("button", {
        type: "button",
        className: "btn btn-small",
        dataset: { action: "reopen" },
        title: "Put it back in the queue, open and unowned",
        text: "Reopen",
      }),
    );
  }
  return [
    h("div", { className: "drawer-badges" }, badges),
    h("div", { className: "action-group" }, buttons),
  ];
}

export function reasonsSection(alert) {
  const reasons = Array.isArray(alert.reasons) ? alert.reasons : [];
  const items = reasons.map((reason) => {
    // Only numbers compare and draw a bar: text ("m-2231", "GB") is shown as it is.
    const observed = typeof reason?.observed === "number" ? reason.observed : Number.NaN;
    const threshold = typeof reason?.threshold === "number" ? reason.threshold : Number.NaN;
    const over = Number.isFinite(observed) && Number.isFinite(threshold) && observed >= threshold;
    // A threshold is what the observed value is held against: shown only when there is one
    // and it can be. Beside text a number holds nothing (the novelty rules' verdicts once
    // carried there the history they need, 5, which their message says in words).
    const given = reason?.threshold !== null && reason?.threshold !== undefined;
    const text = typeof reason?.observed === "string";
    const showThreshold = given && !(text && typeof reason.threshold === "number");
    // The model's figures are probabilities, and its message gives them in whole per cent
    // ("fraud probability 87% (review threshold 50%)"): beside it, 0.87 and 0.5 would read as
    // a second scale. Its stored alerts from before reasons had a unit say so by their code.
    const figure = (value) =>
      reason?.code === "model" && typeof value === "number"
        ? formatPercent(value)
        : formatMeasure(value, reason?.unit);
    return h("li", { className: "reason-item" }, [
      h("div", { className: "reason-head" }, [
        h("strong", { text: ruleLabel(reason?.code) }),
        h("code", { className: "reason-code", text: String(reason?.code ?? "") }),
        h("span", { className: "reason-weight", text: `weight ${formatScore(reason?.weight)}` }),
      ]),
      h("p", { className: "reason-message", text: String(reason?.message ?? "") }),
      h("div", { className: "reason-figures" }, [
        h("span", { className: over ? "figure figure-over" : "figure" }, [
          h("span", { className: "figure-label", text: "observed " }),
          figure(reason?.observed),
        ]),
        showThreshold
          ? h("span", { className: "figure" }, [
              h("span", { className: "figure-label", text: "threshold " }),
              figure(reason.threshold),
            ])
          : null,
        thresholdBar(observed, threshold),
      ]),
    ]);
  });
  return section("reasons", "Why it fired", [
    items.length
      ? h("ol", { className: "reason-list" }, items)
      : h("p", { text: "No reasons recorded." }),
  ]);
}

// The formatted amount, and the value as sent only where the two differ (a currency Intl
// gives fewer digits than the server keeps): beside every amount it read as an unexplained
// "$1,299.00 (1299)".
function amountField(tx) {
  const money = formatMoney(tx.amount, tx.currency);
  const sent = amountAsSent(tx.amount, tx.currency);
  return sent === null ? money : `${money} (as sent: ${sent})`;
}

export function transactionSection(tx) {
  const known = new Set(TX_FIELDS.map(([key]) => key));
  const rows = [];
  for (const [key, label] of TX_FIELDS) {
    if (!(key in tx)) continue;
    if (key === "timestamp") {
      rows.push(...eventTimeField(label, tx.timestamp));
      continue;
    }
    const value = key === "amount" ? amountField(tx) : tx[key];
    const mono = ["id", "account_id", "merchant_id", "device_id", "ip"].includes(key);
    rows.push(...field(label, value, { mono }));
  }
  for (const key of Object.keys(tx).sort()) {
    if (known.has(key)) continue;
    const value = tx[key];
    rows.push(
      ...field(key, typeof value === "object" ? JSON.stringify(value) : value, { mono: true }),
    );
  }
  return section("transaction", "Transaction", [
    h("dl", { className: "fields" }, rows),
    h("details", { className: "raw" }, [
      h("summary", { text: "Raw payload (JSON, as accepted)" }),
      h("pre", { className: "raw-json", text: stringifyJson(tx) }),
    ]),
  ]);
}

function relatedItem(other) {
  const tx = other.transaction ?? {};
  const { time, date } = formatEventTime(tx.timestamp);
  return h("li", {}, [
    h("button", { type: "button", className: "related-item", dataset: { open: other.id } }, [
      h("span", { className: "ri-time", text: date ? `${date} ${time}` : time }),
      h("span", { className: "ri-merchant", text: tx.merchant_name || tx.merchant_id || "—" }),
      h("span", { className: "ri-amount", text: formatMoney(tx.amount, tx.currency) }),
      severityBadge(other.severity),
      h("span", {
        className: `ri-status status-${other.status}`,
        text: statusLabel(other.status),
      }),
    ]),
  ]);
}

export function accountSection(alert, related) {
  const others = related.groups.account;
  return section(
    "account",
    "Other alerts for this account",
    [
      others.length
        ? h(
            "ul",
            { className: "related-list" },
            others.map((other) => relatedItem(other)),
          )
        : h("p", {
            className: "drawer-empty",
            text: "No other alerts for this account on this page.",
          }),
      related.counts.account > others.length
        ? h("p", {
            className: "drawer-note",
            text: `and ${related.counts.account - others.length} more`,
          })
        : null,
    ],
    { className: "account-activity" },
  );
}

// The account's recent transactions from the server (GET /api/v1/accounts/{id}/transactions):
// an amount-over-event-time chart and a table. `history` is null while loading, {error}, or
// the server's page.
export function accountHistorySection(alert, history) {
  const title = "Account history";
  if (history === null) {
    return section("account-history", title, [
      h("p", { className: "drawer-note", text: "Loading the account's transactions…" }),
    ]);
  }
  if (!Array.isArray(history.transactions)) {
    return section("account-history", title, [
      h("p", { className: "drawer-note", text: `Could not load the history: ${history.error}` }),
    ]);
  }
  const items = history.transactions;
  const currency = alert.transaction?.currency;
  const chart = amountChart(
    items.map((item) => ({
      id: item.transaction?.id,
      at: Date.parse(item.transaction?.timestamp),
      amount: Number(item.transaction?.amount),
    })),
    alert.transaction_id,
    {
      label: `Amounts of the last ${items.length} transactions of account ${alert.account_id} over event time`,
      money: (amount) => formatMoney(amount, currency),
      time: (ms) => {
        const { time, date } = formatEventTime(new Date(ms).toISOString());
        return date ? `${date} ${time}` : time;
      },
    },
  );
  const rows = items.map((item) => {
    const tx = item.transaction ?? {};
    const verdict = item.verdict ?? {};
    const current = tx.id === alert.transaction_id;
    return h("tr", { className: current ? "is-current" : null, dataset: { tx: tx.id } }, [
      h("td", { text: formatEventTime(tx.timestamp).time }),
      h("td", { text: tx.merchant_name || tx.merchant_id || "—" }),
      h("td", { className: "num", text: formatMoney(tx.amount, tx.currency) }),
      h("td", { className: "num", text: formatScore(verdict.score) }),
      h("td", { text: capitalize(verdict.decision ?? "") + (current ? " (this one)" : "") }),
    ]);
  });
  const table = h("table", { className: "history-table" }, [
    h("thead", {}, [
      h("tr", {}, [
        h("th", { scope: "col", text: "Time" }),
        h("th", { scope: "col", text: "Merchant" }),
        h("th", { scope: "col", className: "num", text: "Amount" }),
        h("th", { scope: "col", className: "num", text: "Score" }),
        h("th", { scope: "col", text: "Decision" }),
      ]),
    ]),
    h("tbody", {}, rows),
  ]);
  return section("account-history", title, [
    h("p", {
      className: "drawer-note",
      text: items.length
        ? `The last ${items.length} transactions of ${alert.account_id}, newest first${history.next_cursor ? " (older ones not shown)" : ""}.`
        : "No transactions stored for this account.",
    }),
    chart,
    items.length ? table : null,
  ]);
}

export function relatedSection(related) {
  const group = (key, label) => {
    const list = related.groups[key];
    if (!related.keys[key]) {
      return h("p", {
        className: "drawer-empty",
        text: `${label}: not given on this transaction.`,
      });
    }
    return h("div", { className: "related-group" }, [
      h("h4", { text: `${label} ${related.keys[key]} · ${related.counts[key]}` }),
      list.length
        ? h(
            "ul",
            { className: "related-list" },
            list.map((other) => relatedItem(other)),
          )
        : h("p", { className: "drawer-empty", text: "No other alerts on this page." }),
    ]);
  };
  return section("related", "Related on this page", [
    group("device", "Same device"),
    group("merchant", "Same merchant"),
  ]);
}

export function alertSection(alert, me) {
  const owner = alert.owner ? (alert.owner === me ? `${alert.owner} (you)` : alert.owner) : null;
  return section("alert", "Alert", [
    h("dl", { className: "fields" }, [
      ...field("Status", statusLabel(alert.status)),
      ...field("Owner", owner ?? "Unowned"),
      ...(alert.disposition ? field("Disposition", capitalize(alert.disposition)) : []),
      ...(alert.note ? field("Note", alert.note) : []),
      ...field("Score", formatScore(alert.score)),
      ...field("Decision", capitalize(alert.decision)),
      ...field("Severity", capitalize(alert.severity)),
      ...field("Raised", formatDateTime(alert.created_at)),
      ...field("Updated", formatDateTime(alert.updated_at)),
      ...field("Rules version", alert.rules_version, { mono: true }),
      ...field("Alert id", alert.id, { mono: true }),
    ]),
  ]);
}

// The audit trail: `audit` is null while loading, an array, or {error}.
export function historyTimeline(alert, audit) {
  const raised = h("li", {}, [
    h("time", { dateTime: alert.created_at, text: formatDateTime(alert.created_at) }),
    h("span", { text: "Raised by the detector" }),
  ]);
  if (audit === null) {
    return [
      h("ol", { className: "timeline" }, [raised]),
      h("p", { className: "drawer-note", text: "Loading the audit trail…" }),
    ];
  }
  if (!Array.isArray(audit)) {
    return [
      h("p", { className: "drawer-note", text: `Could not load the audit trail: ${audit.error}` }),
    ];
  }
  const entries = audit.map((entry) => {
    const detail = entry.detail ?? {};
    const what = [
      ACTION_LABEL[entry.action] ?? capitalize(entry.action),
      entry.action === "assign" && detail.to ? `to ${detail.to}` : null,
      entry.action === "resolve" && detail.disposition ? `as ${detail.disposition}` : null,
      entry.action === "reopen" && detail.disposition ? `(was ${detail.disposition})` : null,
      detail.via === "next" ? "(next)" : null,
      `by ${entry.actor}`,
    ]
      .filter(Boolean)
      .join(" ");
    const quoted = entry.action === "note" ? detail.text : detail.note;
    return h("li", { dataset: { action: entry.action } }, [
      h("time", { dateTime: entry.at, text: formatDateTime(entry.at) }),
      h("span", { text: what }),
      quoted ? h("q", { className: "timeline-note", text: quoted }) : null,
    ]);
  });
  return [h("ol", { className: "timeline" }, [raised, ...entries])];
}

// Notes (shared, kept on the server) and, for analysts, the forms to add one and to hand the
// alert to someone. `notes` is null while loading, an array, or {error}. The forms are the
// drawer's own nodes, kept across re-renders so typing and clicks are never lost.
export function notesSection(alert, notes, { me, canAct, forms }) {
  let list;
  if (notes === null) list = h("p", { className: "drawer-note", text: "Loading notes…" });
  else if (!Array.isArray(notes)) {
    list = h("p", { className: "drawer-note", text: `Could not load notes: ${notes.error}` });
  } else if (!notes.length) list = h("p", { className: "drawer-note", text: "No notes yet." });
  else {
    list = h(
      "ol",
      { className: "notes-list" },
      notes.map((note) =>
        h("li", { dataset: { note: note.id } }, [
          h("span", { className: "note-meta" }, [
            h("strong", { text: note.author === me ? `${note.author} (you)` : note.author }),
            " · ",
            h("time", { dateTime: note.at, text: formatDateTime(note.at) }),
          ]),
          h("p", { className: "note-text", text: note.text }),
        ]),
      ),
    );
  }
  const children = [list];
  if (canAct) {
    children.push(forms.note);
    if (workable(alert, me)) children.push(forms.assign);
  }
  return section("notes", "Notes", children);
}

export function noteForm() {
  return h("form", { className: "note-form", dataset: { form: "note" } }, [
    h("label", { className: "visually-hidden", for: "note-text", text: "New note" }),
    h("textarea", {
      id: "note-text",
      name: "text",
      rows: "2",
      maxlength: "2000",
      placeholder: "Add a note for everyone on this alert (c)",
      "aria-keyshortcuts": "c",
    }),
    h("button", { type: "submit", className: "btn btn-small", text: "Add note" }),
  ]);
}

export function assignForm() {
  return h("form", { className: "assign-form", dataset: { form: "assign" } }, [
    h("label", { for: "assign-owner", text: "Assign to" }),
    h("input", {
      id: "assign-owner",
      name: "owner",
      type: "text",
      maxlength: "64",
      autocomplete: "off",
      spellcheck: "false",
      placeholder: "analyst name",
    }),
    h("button", { type: "submit", className: "btn btn-small", text: "Assign" }),
  ]);
}
