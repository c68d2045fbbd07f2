// Entry point: wires the snapshot, the live socket, the store, the table and the header.
//
// Start-up without gaps: load the alert snapshot, remember its seq, then open
// /ws?since=<seq>; the socket keeps the last applied seq and resumes from it.

import * as api from "./api.js";
import { AlertStore } from "./alert-store.js";
import { AlertTable } from "./alert-table.js";
import { setText } from "./dom.js";
import { formatCount } from "./format.js";
import { holdWhileWorking } from "./hold.js";
import { Announcer, Notices } from "./notices.js";
import { ResolveDialog } from "./resolve-dialog.js";
import { LiveSocket, backoffDelay } from "./socket.js";
import { ConnectionIndicator, Counters } from "./stats.js";

const MAX_ROWS = 500;
const STORE_CAPACITY = 2000;
const SESSION_CHECK_AFTER_ATTEMPTS = 2;
const SESSION_CHECK_EVERY_MS = 30_000;

const $ = (selector) => document.querySelector(selector);
const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content ?? "";
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const me = meta("fw-user");
// The API lets analysts and admins change alerts; a viewer's page offers no buttons.
const canAct = ["analyst", "admin"].includes(meta("fw-role"));

const store = new AlertStore({ capacity: STORE_CAPACITY });
const notices = new Notices($("#notices"));
const announcer = new Announcer($("#announcer"));
const counters = new Counters($("#stats"));
const indicator = new ConnectionIndicator($("#connection"));
const dialog = new ResolveDialog($("#resolve-dialog"));
const socket = new LiveSocket({ path: "/ws" });
const summary = $("#alerts-summary");
const paused = $("#alerts-paused");
const empty = $("#alerts-empty");
const tableWrap = $("#table-wrap");
let olderNotShown = false;
let signedOutAlready = false;
let lastSessionCheck = 0;

const table = new AlertTable({
  tbody: $("#alert-rows"),
  store,
  me,
  canAct,
  maxRows: MAX_ROWS,
  onRender: renderSummary,
});

function renderSummary({ shown, held, waiting }) {
  empty.hidden = shown > 0;
  paused.hidden = !table.frozen;
  setText(paused, waiting > 0 ? `Paused · ${formatCount(waiting)} new` : "Paused");
  if (shown === 0) {
    setText(summary, "Nothing to triage right now.");
    return;
  }
  const mine = store.count((alert) => alert.status === "acknowledged" && alert.owner === me);
  const parts = [`${formatCount(shown)} shown, newest first`];
  if (held > shown || olderNotShown) parts.push("older alerts not listed");
  if (mine) parts.push(`${formatCount(mine)} held by you`);
  setText(summary, parts.join(" · "));
}

// Rows hold still while the analyst works in the table or the resolve dialog is open.
const updateHold = holdWhileWorking(tableWrap, table, () => dialog.isOpen);

function renderTitle(openAlerts) {
  document.title =
    Number.isFinite(openAlerts) && openAlerts > 0
      ? `(${formatCount(openAlerts)}) Alerts · FraudWatch`
      : "Alerts · FraudWatch";
}

function signedOut() {
  if (signedOutAlready) return;
  signedOutAlready = true;
  socket.stop();
  dialog.cancel();
  indicator.set("signed-out");
  counters.setStale(true);
  notices.show("Your session has ended, so the table is no longer live.", {
    kind: "error",
    sticky: true,
    key: "session",
    link: { href: "/login", text: "Sign in again" },
  });
}

// A socket that keeps failing may just be a server restart, or an expired session; only
// a plain request can tell them apart, since a failed WebSocket handshake hides the status.
async function checkSession() {
  if (Date.now() - lastSessionCheck < SESSION_CHECK_EVERY_MS) return;
  lastSessionCheck = Date.now();
  try {
    await api.listAlerts({ limit: 1 });
  } catch (error) {
    if (error.unauthenticated) signedOut();
    // No answer at all (server down) tells nothing: ask again on the next failed attempt.
    else if (error.status === 0) lastSessionCheck = 0;
  }
}

async function loadSnapshot() {
  for (let attempt = 0; ; attempt += 1) {
    try {
      const page = await api.listAlerts({ statuses: ["open", "acknowledged"], limit: MAX_ROWS });
      store.reset(Array.isArray(page.alerts) ? page.alerts : []);
      olderNotShown = Boolean(page.next_cursor);
      socket.lastSeq = Number.isInteger(page.seq) ? page.seq : null;
      notices.clear("load");
      return true;
    } catch (error) {
      if (error.unauthenticated) {
        signedOut();
        return false;
      }
      indicator.set(attempt === 0 && !store.size ? "connecting" : "reconnecting");
      notices.show(`Could not load alerts: ${error.message}`, {
        kind: "error",
        sticky: true,
        key: "load",
      });
      await sleep(backoffDelay(attempt));
    }
  }
}

async function resync() {
  socket.stop();
  indicator.set("reconnecting");
  if (await loadSnapshot()) socket.start();
}

function cancelDialogIfStale(alert) {
  if (dialog.alertId !== alert.id) return;
  const stillMine =
    alert.status === "open" || (alert.status === "acknowledged" && alert.owner === me);
  if (stillMine) return;
  dialog.cancel();
  const who = alert.owner ? ` by ${alert.owner}` : "";
  notices.show(`Alert for account ${alert.account_id} was ${alert.status}${who} meanwhile.`, {
    kind: "warning",
  });
}

socket.addEventListener("state", (event) => {
  const { state, attempt, delayMs } = event.detail;
  indicator.set(state, delayMs);
  counters.setStale(state !== "live");
  if (state === "reconnecting" && attempt >= SESSION_CHECK_AFTER_ATTEMPTS) checkSession();
});

socket.addEventListener("hello", (event) => {
  const { seq, user } = event.detail;
  // Signed in as someone else in another tab: this page's CSRF token and "you" are stale.
  if (typeof user === "string" && me && user !== me) {
    signedOut();
    return;
  }
  if (Number.isInteger(seq) && socket.lastSeq !== null && seq < socket.lastSeq) checkReset();
});

// hello.seq behind what we applied means the server's log was reset (a fresh data dir) and
// our seq would skip every new event. It can also lag the store for an instant after a
// commit, so ask the store itself before throwing the table away.
async function checkReset() {
  try {
    const page = await api.listAlerts({ limit: 1 });
    if (Number.isInteger(page.seq) && page.seq < socket.lastSeq) {
      notices.show("The server's alert log was reset; reloading alerts.", { kind: "info" });
      await resync();
    }
  } catch (error) {
    if (error.unauthenticated) signedOut();
  }
}

socket.addEventListener("alert", (event) => {
  const { type, alert } = event.detail;
  store.upsert(alert);
  if (type === "alert") announcer.newAlerts(1);
  cancelDialogIfStale(alert);
});

socket.addEventListener("stats", (event) => {
  counters.update(event.detail);
  renderTitle(event.detail.open_alerts);
});

socket.addEventListener("server-error", (event) => {
  notices.show(event.detail.message || "The server reported an error.", { kind: "warning" });
});

async function runAction(alert, call) {
  table.setPending(alert.id, true);
  try {
    const data = await call();
    if (data.alert) store.merge(data.alert);
  } catch (error) {
    if (error.unauthenticated) {
      signedOut();
    } else if (error.status === 409) {
      if (error.body?.alert) store.merge(error.body.alert);
      notices.show(error.message, { kind: "warning" });
    } else {
      notices.show(`Could not update the alert: ${error.message}`, { kind: "error" });
    }
  } finally {
    table.setPending(alert.id, false);
  }
}

table.onAction = async (action, alert) => {
  if (action === "ack") {
    await runAction(alert, () => api.acknowledgeAlert(alert.id));
    return;
  }
  const asked = dialog.ask(alert, action);
  updateHold();
  const answer = await asked;
  updateHold();
  table.focusRow(alert.id, action);
  if (answer) await runAction(alert, () => api.resolveAlert(alert.id, action, answer.note));
};

async function main() {
  if (await loadSnapshot()) socket.start();
}

main();
