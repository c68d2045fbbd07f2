// One alert as table cells: pure builders from data to DOM, text only.

import { h } from "./dom.js";
import { capitalize, formatAge, formatEventTime, formatMoney, formatScore } from "./format.js";

const STATUS_LABEL = { open: "Open", acknowledged: "Acknowledged", resolved: "Resolved" };
const TOP_REASONS = 2;

export function statusLabel(status) {
  return STATUS_LABEL[status] ?? capitalize(status);
}

// The top reasons, one per line, with the full list in the tooltip. The model's reason
// ("Model: fraud probability 99% (review threshold 50%), …") weighs most on most alerts, and
// led nearly every row with the same words, cut short, hiding what tells the rows apart: the
// rules that fired. It restates the Score column, so it goes after them.
function reasonsCell(reasons) {
  const given = Array.isArray(reasons) ? reasons : [];
  const fromModel = (reason) => reason?.code === "model";
  const list = [...given.filter((r) => !fromModel(r)), ...given.filter(fromModel)];
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
  const label = statusLabel(alert.status);
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

function createdMs(alert) {
  const ms = Date.parse(alert.created_at);
  return Number.isNaN(ms) ? Number.NaN : ms;
}

// An alert raised this long or more after its transaction's event time was scored late: the
// demo's warm-up scores the stream's last minutes at start, a replay scores the past, a feed
// catches up after an outage. A live alert is raised within a second or so of its event.
const LATE_MS = 60_000;

// How long after its transaction the alert was raised (ms), when that makes it late; else
// null. Both times are the server's data, not the browser's clock.
export function raisedLateBy(alert) {
  const lag = createdMs(alert) - Date.parse(alert.transaction?.timestamp);
  return Number.isFinite(lag) && lag >= LATE_MS ? lag : null;
}

// How long the alert has been waiting (from when the server raised it), or, once resolved,
// how long it took. Rows re-run this on a timer to keep ages current.
export function ageText(alert, now) {
  if (alert.status === "resolved") {
    const took = Date.parse(alert.updated_at) - createdMs(alert);
    return Number.isFinite(took) ? `took ${formatAge(took)}` : "";
  }
  return formatAge(now - createdMs(alert));
}

// The first cell's text: event time (the transaction's own clock), the date when not
// today, and the alert's age. The cell itself, with its checkbox, belongs to the table.
// The date is a part of its own: where the line is short it gives way, not the age.
// An alert raised late (raisedLateBy) says so before them, `raised late · 12 s`: its age
// counts its wait in the queue, and read under its event time it passed for the
// transaction's, minutes younger than it was. That mark gives way first, before the date
// (which says as much of an older one); its title and the drawer say by how much.
export function timeContent(alert, now) {
  const iso = alert.transaction?.timestamp;
  const { time, date } = formatEventTime(iso);
  const lag = raisedLateBy(alert);
  const after = lag === null ? "" : `, ${formatAge(lag)} after its transaction`;
  const raised = `Alert raised ${alert.created_at}${after}`;
  return h("span", { className: "time-text" }, [
    h("time", { datetime: iso, title: `Event time ${iso}`, text: time }),
    " ",
    h("span", { className: "cell-sub" }, [
      lag === null ? null : h("span", { className: "late", title: raised, text: "raised late ·" }),
      lag === null ? null : " ",
      date ? h("span", { className: "date", text: `${date} ·` }) : null,
      date ? " " : null,
      h("span", { className: "age", title: raised, text: ageText(alert, now) }),
    ]),
  ]);
}

// Who else has the alert open (presence), as words; null when nobody.
export function presenceBadge(users) {
  if (!users?.length) return null;
  const names = users.length > 2 ? `${users[0]} +${users.length - 1}` : users.join(", ");
  return h("span", {
    className: "presence",
    title: `Also looking at this alert: ${users.join(", ")}`,
    text: `viewing: ${names}`,
  });
}

export function selectBox(alert) {
  return h("input", {
    type: "checkbox",
    className: "row-select",
    dataset: { select: "" },
    "aria-label": `Select alert for account ${alert.account_id}`,
  });
}

// Every cell of a row after the first and before the actions, in column order.
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
    h("td", { className: "mono", title: alert.account_id, text: alert.account_id }),
    h("td", { className: "merchant", title: merchantTitle, text: merchant }),
    h("td", { className: "num", text: formatMoney(tx.amount, tx.currency) }),
    h("td", { className: "num", text: formatScore(alert.score) }),
    h("td", {}, [severityBadge(alert.severity)]),
    reasonsCell(alert.reasons),
    statusCell(alert),
    h("td", { className: "owner", title: alert.owner, text: owner }),
  ];
}

export function severityBadge(severity) {
  return h("span", { className: `sev sev-${severity}`, text: capitalize(severity) });
}

/** Whether `me` may work this alert: it is open, or acknowledged by `me`. */
export function workable(alert, me) {
  return alert.status === "open" || (alert.status === "acknowledged" && alert.owner === me);
}

// Which buttons a row offers; rows rebuild their actions only when this changes.
export function actionsKey(alert, me, canAct) {
  if (!canAct || alert.status === "resolved") return "none";
  if (alert.status === "open") return "open";
  return workable(alert, me) ? "mine" : "held";
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
