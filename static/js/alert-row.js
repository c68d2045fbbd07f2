// One alert as table cells: pure builders from data to DOM, text only.

import { h } from "./dom.js";
import { capitalize, formatEventTime, formatMoney, formatScore } from "./format.js";

const STATUS_LABEL = { open: "Open", acknowledged: "Acknowledged", resolved: "Resolved" };
const TOP_REASONS = 2;

// The top reasons, one per line, with the full list in the tooltip.
function reasonsCell(reasons) {
  const list = Array.isArray(reasons) ? reasons : [];
  const messages = list.map((reason) => String(reason?.message ?? reason?.code ?? ""));
  const more = messages.length - TOP_REASONS;
  const lines = messages
    .slice(0, TOP_REASONS)
    .map((message, i) =>
      h("span", { className: "reason" }, [
        h("span", { className: "reason-text", text: message }),
        i === 0 && more > 0 ? h("span", { className: "reasons-more", text: `+${more}` }) : null,
      ]),
    );
  return h(
    "td",
    { className: "reasons", title: messages.join("\n") || null },
    lines.length ? lines : ["—"],
  );
}

function statusCell(alert) {
  const label = STATUS_LABEL[alert.status] ?? capitalize(alert.status);
  const children = [h("span", { className: `status status-${alert.status}`, text: label })];
  if (alert.status === "resolved" && alert.disposition) {
    // The space keeps the cell's text "Resolved Fraud" for screen readers and copy-paste.
    children.push(
      " ",
      h("span", { className: "cell-sub" }, [
        h("span", {
          className: `disposition disposition-${alert.disposition}`,
          text: capitalize(alert.disposition),
        }),
      ]),
    );
  }
  return h(
    "td",
    { className: "status-cell", title: alert.note ? `Note: ${alert.note}` : null },
    children,
  );
}

function timeCell(iso) {
  const { time, date } = formatEventTime(iso);
  return h("td", { className: "time" }, [
    h("time", { datetime: iso, title: iso, text: time }),
    date ? " " : null,
    date ? h("span", { className: "cell-sub", text: date }) : null,
  ]);
}

// Every cell of a row but the actions, in column order.
export function dataCells(alert, me) {
  const tx = alert.transaction ?? {};
  const merchant = tx.merchant_name || tx.merchant_id || "—";
  const merchantTitle = [
    tx.merchant_name ? `${tx.merchant_name} (${tx.merchant_id})` : tx.merchant_id,
    tx.mcc ? `MCC ${tx.mcc}` : null,
    tx.country ?? null,
    tx.channel ?? null,
  ]
    .filter(Boolean)
    .join(" · ");
  const owner = alert.owner ? (alert.owner === me ? `${alert.owner} (you)` : alert.owner) : "—";

  return [
    timeCell(tx.timestamp),
    h("td", { className: "mono", title: alert.account_id, text: alert.account_id }),
    h("td", { className: "merchant", title: merchantTitle, text: merchant }),
    h("td", { className: "num", text: formatMoney(tx.amount, tx.currency) }),
    h("td", { className: "num", text: formatScore(alert.score) }),
    h("td", {}, [
      h("span", {
        className: `sev sev-${alert.severity}`,
        text: capitalize(alert.severity),
      }),
    ]),
    reasonsCell(alert.reasons),
    statusCell(alert),
    h("td", { className: "owner", title: alert.owner, text: owner }),
  ];
}

// Which buttons a row offers; rows rebuild their actions only when this changes.
export function actionsKey(alert, me, canAct) {
  if (!canAct || alert.status === "resolved") return "none";
  if (alert.status === "open") return "open";
  return alert.owner === me ? "mine" : "held";
}

export function actionButtons(alert, key) {
  if (key === "none" || key === "held") return [];
  const account = alert.account_id;
  const buttons = [];
  if (key === "open") {
    buttons.push(
      h("button", {
        type: "button",
        className: "btn btn-small",
        dataset: { action: "ack" },
        "aria-label": `Acknowledge alert for account ${account}`,
        title: "Acknowledge: take ownership",
        text: "Ack",
      }),
    );
  }
  buttons.push(
    h("button", {
      type: "button",
      className: "btn btn-small btn-fraud",
      dataset: { action: "fraud" },
      "aria-label": `Resolve alert for account ${account} as fraud`,
      title: "Resolve as fraud",
      text: "Fraud",
    }),
    h("button", {
      type: "button",
      className: "btn btn-small btn-legit",
      dataset: { action: "legitimate" },
      "aria-label": `Resolve alert for account ${account} as legitimate`,
      title: "Resolve as legitimate",
      text: "Legitimate",
    }),
  );
  return [h("div", { className: "action-group" }, buttons)];
}
