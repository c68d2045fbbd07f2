// Entry point: wires the snapshot, the live socket, the store, the table, the drawer and the
// header. Each part lives in its own module; this one only connects them.
//
// Start-up without gaps: load the alert snapshot (page by page), remember the first page's
// seq, then open /ws?since=<seq>; the socket keeps the last applied seq and resumes from it.

import { Actions } from "./actions.js";
import { DrawerAddress, alertInAddress } from "./address.js";
import * as api from "./api.js";
import { AlertStore } from "./alert-store.js";
import { workable } from "./alert-row.js";
import { AlertTable } from "./alert-table.js";
import { BulkBar } from "./bulk.js";
import { Clock } from "./clock.js";
import { ConnectionIndicator } from "./connection.js";
import { keepTabInside } from "./dialog-focus.js";
import { h, setText } from "./dom.js";
import { Drawer } from "./drawer.js";
import { FilterBar } from "./filter-bar.js";
import { describeAlert, formatClock, formatCount, holderName } from "./format.js";
import { holdWhileWorking } from "./hold.js";
import { IntegrityPanel } from "./integrity.js";
import { ScorecardPanel } from "./scorecard.js";
import { installShortcuts } from "./keyboard.js";
import { MenuButton, installMenus } from "./menus.js";
import { Announcer, Notices } from "./notices.js";
import { CriticalAlerts } from "./notify.js";
import { ResolveDialog } from "./resolve-dialog.js";
import { SavedViews } from "./saved-views.js";
import { LiveSocket, backoffDelay } from "./socket.js";
import { Counters } from "./stats.js";
import { keepToolbarHeight } from "./toolbar-height.js";
import { comparator, describeSort, isFiltered, lastingMatcher, matcher } from "./view.js";

// Ten thousand open alerts is a bad day, not a broken page: the table only draws what is on
// screen. Past this the oldest resolved alerts leave memory first.
const STORE_CAPACITY = 20_000;
const SNAPSHOT_PAGE = 1000;
const SNAPSHOT_MAX = 10_000;
const SESSION_CHECK_AFTER_ATTEMPTS = 2;
const SESSION_CHECK_EVERY_MS = 30_000;
const LOCAL_COUNTS_MS = 500;
const SNAPSHOT_STATUSES = ["open", "acknowledged"];

const $ = (selector) => document.querySelector(selector);
const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content ?? "";
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const me = meta("fw-user");
// The API lets analysts and admins change alerts; a viewer's page offers no buttons.
const canAct = ["analyst", "admin"].includes(meta("fw-role"));

const clock = new Clock();
const store = new AlertStore({ capacity: STORE_CAPACITY });
const notices = new Notices($("#notices"), {
  keepClear: $("#table-wrap"),
  drawer: $("#drawer-body"),
});
const announcer = new Announcer($("#announcer"));
const counters = new Counters($("#stats"), { clock });
const socket = new LiveSocket({ path: "/ws" });
const indicator = new ConnectionIndicator($("#connection"), $("#connection-detail"), socket);
const dialog = new ResolveDialog($("#resolve-dialog"));
const shortcuts = $("#shortcuts");
keepTabInside(shortcuts);
const integrity = new IntegrityPanel($("#integrity"), socket);
const scorecard = new ScorecardPanel($("#scorecard"));
const summary = $("#alerts-summary");
const paused = $("#alerts-paused");
const pausedButton = $("#paused-button");
const pausedAction = $("#paused-button .paused-action");
const heldAnnouncer = $("#held-announcer");
const newAbove = $("#new-above");
const newAboveButton = $("#new-above-button");
const empty = $("#alerts-empty");
const staleNote = $("#stale-note");
const tableWrap = $("#table-wrap");
let olderNotShown = false;
let snapshotLoaded = false;
let signedOutAlready = false;
let lastSessionCheck = 0;
let heldByMe = 0;
let localTimer = 0;
let urgentWaiting = 0;
let counts = { waiting: 0, urgent: 0 };

const table = new AlertTable({
  wrap: tableWrap,
  table: $("#alerts-table"),
  tbody: $("#alert-rows"),
  spacers: { top: $("#spacer-top"), bottom: $("#spacer-bottom") },
  store,
  me,
  canAct,
  clock,
  onRender: renderSummary,
});
const drawer = new Drawer($("#drawer"), {
  store,
  me,
  canAct,
  clock,
  loadAudit: api.getAlert,
  loadHistory: (accountId) => api.accountTransactions(accountId),
});

// Rows hold still while the analyst works in the table, a dialog or the details drawer. The
// shortcuts list counts as a dialog: a glance at it must not re-sort the queue behind it,
// and closing it gives focus back to the row the analyst left.
const {
  update: updateHold,
  release: releaseHold,
  pointerHolds,
} = holdWhileWorking(
  tableWrap,
  table,
  () => dialog.isOpen || drawer.isOpen || shortcuts.open,
);

const actions = new Actions({ store, table, dialog, notices, signedOut, updateHold, me });
const bulk = new BulkBar($("#bulk-bar"), {
  table,
  actions,
  selectAll: $("#select-all"),
  notices,
  me,
  onDone: () => focusTable(),
});
$("#select-all").hidden = !canAct;
const filters = new FilterBar($("#filters"), {
  onChange: applyView,
  onLeave: () => focusTable(),
});
// One height, the drawer open or closed: the rows below stay where they are.
const measureToolbar = keepToolbarHeight($("#filters"));
// The drawer's alert beside the filters in the address bar (openFromAddress, below).
const address = new DrawerAddress({ query: () => filters.query, onChange: openFromAddress });
const views = new SavedViews($("#views-menu"), {
  currentQuery: () => filters.query,
  apply: (query) => filters.applyQuery(query),
  notices,
  onChosen: () => focusTable(),
});
new MenuButton($("#notify-button"), $("#notify-panel"), { items: 'input[type="checkbox"]' });
const critical = new CriticalAlerts({
  soundBox: $("#notify-sound"),
  desktopBox: $("#notify-desktop"),
  stateNode: $("#notify-state"),
  notices,
});

function applyView(view) {
  table.setView(matcher(view, me), comparator(view.sort), lastingMatcher(view, me));
  views.render();
  if (snapshotLoaded) loadFromServer(view);
}

// The snapshot holds only unresolved alerts, and filters act on what the page holds. A view
// that reaches past that asks the server for it, with the other filters it understands, and
// adds what it finds: a time range (resolved alerts, older ones), or a status filter that
// includes resolved alerts. Asked again only when one of those filters changes (not on every
// keystroke in the search box), or after a fresh snapshot (`force`).
//
// What such a view adds is only lent to the page: it leaves with the view, so that a view
// shows the same rows whichever views were opened before it (Everything is every unresolved
// alert and whatever the feed brought since, not 1,000 resolved ones the page once looked
// at). An alert the feed brings meanwhile is the page's own, as it would have been anyway.
const SERVER_LIMIT = 1000;
let serverToken = 0;
let serverKey = "";
const borrowed = new Set();

// Gives back what server views lent, but for the ids in `keep` (the next view has them too).
function giveBack(keep = new Set()) {
  const gone = [...borrowed].filter((id) => !keep.has(id));
  for (const id of gone) borrowed.delete(id);
  store.remove(gone);
}

function serverQuery(view) {
  const range = Boolean(view.from || view.to);
  if (!range && !view.status.includes("resolved")) return null;
  // Without a range the page already holds every unresolved alert: ask only for the rest.
  const statuses = range
    ? view.status.length
      ? view.status
      : ["open", "acknowledged", "resolved"]
    : ["resolved"];
  const filters = {
    from: view.from,
    to: view.to,
    severity: view.severity.join(","),
    rule: view.rule,
    owner: view.owner,
  };
  return { range, statuses, filters };
}

async function loadFromServer(view, { force = false } = {}) {
  const query = serverQuery(view);
  const key = query ? JSON.stringify(query) : "";
  if (key === serverKey && !force) return;
  serverKey = key;
  const token = ++serverToken;
  notices.clear("server-view");
  if (!query) {
    giveBack();
    return;
  }
  const { range, statuses, filters: params } = query;
  try {
    const page = await api.listAlerts({ statuses, limit: SERVER_LIMIT, filters: params });
    if (token !== serverToken) return;
    const alerts = page.alerts ?? [];
    giveBack(new Set(alerts.map((alert) => alert.id)));
    for (const alert of alerts) {
      if (!store.get(alert.id)) borrowed.add(alert.id);
      store.merge(alert);
      filters.noteAlert(alert);
    }
    table.refreshView();
    if (page.next_cursor) {
      const limit = formatCount(SERVER_LIMIT);
      const text = range
        ? `More than ${limit} alerts in this range: narrow it.`
        : `Showing the newest ${limit} resolved alerts: a time range reaches older ones.`;
      notices.show(text, { kind: "info", key: "server-view" });
    }
  } catch (error) {
    if (token !== serverToken) return;
    // Not loaded: the next change of view (or a fresh snapshot) asks again.
    serverKey = "";
    giveBack();
    table.refreshView();
    if (!(error instanceof api.ApiError)) console.error("Dashboard: a server view failed:", error);
    if (error.unauthenticated) signedOut();
    else {
      const what = range ? "that time range" : "resolved alerts";
      notices.show(`Could not load ${what}: ${error.message}`, { kind: "error" });
    }
  }
}

// Past the page's memory cap a held table keeps only what the page holds, and says how many
// more arrived meanwhile: they are on the server (a time range brings them back). Each part
// in a span that keeps to one line, so a narrow line breaks between them (app.css).
// How many of those waiting are critical and nobody's yet is said too, the pill in the
// danger colours: working by the keyboard holds the table for hours, and the pill read
// `Paused · 35 new` over 17 critical alerts unseen.
function renderPaused(waiting, letGo, urgentNow) {
  pausedButton.hidden = !table.frozen;
  if (!table.frozen) notices.clear("list-end");
  const parts = ["Paused"];
  if (waiting > 0 || letGo > 0) parts[0] += ` · ${formatCount(waiting)} new`;
  if (urgentNow > 0) parts.push(`· ${formatCount(urgentNow)} critical`);
  if (letGo > 0) parts.push(`· ${formatCount(letGo)} more on the server`);
  pausedButton.classList.toggle("is-urgent", urgentNow > 0);
  announceUrgent(urgentNow);
  // Nothing waiting, it lets the table move again; else it shows what waits.
  setText(pausedAction, waiting > 0 ? "— show" : "— resume");
  if (paused.textContent === parts.join(" ")) return;
  const spans = parts.map((part) => h("span", { text: part }));
  // On a phone held upright `Paused · ` goes from sight (app.css), the counts staying: the
  // pill then keeps to the heading's line. Its name keeps every word.
  if (parts[0] !== "Paused") {
    spans[0].replaceChildren(
      h("span", { className: "paused-lead", text: "Paused · " }),
      parts[0].slice("Paused · ".length),
    );
  }
  paused.replaceChildren(...spans.flatMap((span, i) => (i ? [" ", span] : [span])));
}

// Once per hold, as the first critical alert starts to wait, a screen reader hears it (a
// polite region of its own: the new-alerts count must not overwrite it). One per alert
// would talk over the analyst's work; the pill has the count. Emptied when none waits, so
// the next hold's first is heard again.
function announceUrgent(urgentNow) {
  if (urgentNow > 0 && urgentWaiting === 0) {
    setText(heldAnnouncer, "Critical alert waiting while the table is paused.");
  } else if (urgentNow === 0 && urgentWaiting > 0) {
    setText(heldAnnouncer, "");
  }
  urgentWaiting = urgentNow;
}

// Scrolled down, the rows in view stay put as alerts are listed above them (AlertTable):
// this says that they came, and how many are critical, and shows the first of them.
function renderAbove(above, aboveUrgent) {
  newAboveButton.hidden = above === 0;
  newAboveButton.classList.toggle("is-urgent", aboveUrgent > 0);
  let text = `${formatCount(above)} new above`;
  if (aboveUrgent > 0) text += ` · ${formatCount(aboveUrgent)} critical`;
  if (above > 0 && newAbove.textContent !== text) setText(newAbove, text);
}

function renderSummary({ listed, matching, held, waiting, urgent, letGo, above, aboveUrgent }) {
  counts = { waiting, urgent };
  const filtered = isFiltered(filters.view);
  empty.hidden = listed > 0;
  // Its advice is spent once rows are listed (Clear filters pressed, the first alerts in):
  // left for its full time, it said "the filters match none" over 241 rows.
  if (listed > 0) notices.clear("nothing-listed");
  setText(
    empty,
    filtered && held > 0
      ? "No alerts match these filters."
      : "No open alerts. New ones appear here as they are raised.",
  );
  renderPaused(waiting, letGo, urgent);
  renderAbove(above, aboveUrgent);
  bulk.update();
  scheduleLocalCounts();
  if (held === 0) {
    setText(summary, "Nothing to triage right now.");
    return;
  }
  const parts = [
    filtered
      ? `${formatCount(matching)} of ${formatCount(held)} match`
      : `${formatCount(listed)} shown`,
    ` · ${describeSort(filters.view.sort)}`,
  ];
  if (olderNotShown) parts.push(" · older alerts not loaded");
  if (heldByMe) parts.push(` · ${formatCount(heldByMe)} held by you`);
  if (summary.textContent === parts.join("")) return;
  // The order on its own: beside the drawer on a laptop the sort menu under it names it, and
  // the head keeps to one line without it (app.css).
  parts[1] = h("span", { className: "summary-sort", text: parts[1] });
  summary.replaceChildren(...parts);
}

// Counts from the page's own alerts, at most twice a second however fast they arrive.
function scheduleLocalCounts() {
  if (!localTimer) localTimer = setTimeout(computeLocalCounts, LOCAL_COUNTS_MS);
}

function computeLocalCounts() {
  localTimer = 0;
  const bySeverity = {};
  let oldest = null;
  let mine = 0;
  for (const entry of store.entries()) {
    const { alert } = entry;
    if (alert.status === "resolved") continue;
    bySeverity[alert.severity] = (bySeverity[alert.severity] ?? 0) + 1;
    if (alert.owner === me) mine += 1;
    // Ties (one batch, one millisecond) go to the earlier transaction, as in the queue.
    if (
      alert.status === "open" &&
      (!oldest ||
        entry.createdMs < oldest.createdMs ||
        (entry.createdMs === oldest.createdMs && entry.eventMs < oldest.eventMs))
    ) {
      oldest = entry;
    }
  }
  counters.setLocal({ bySeverity, oldest: oldest?.alert ?? null });
  if (mine !== heldByMe) {
    heldByMe = mine;
    table.schedule();
  }
}

function renderTitle(openAlerts) {
  document.title =
    Number.isFinite(openAlerts) && openAlerts > 0
      ? `(${formatCount(openAlerts)}) Alerts · FraudWatch`
      : "Alerts · FraudWatch";
}

function renderStale() {
  const live = indicator.isLive;
  document.body.dataset.live = String(live);
  staleNote.hidden = live || !socket.lastMessageAt;
  if (!live && socket.lastMessageAt) {
    setText(staleNote, `Not live · alerts as of ${formatClock(socket.lastMessageAt)}`);
  }
}

function signedOut() {
  if (signedOutAlready) return;
  signedOutAlready = true;
  socket.stop();
  dialog.withdraw();
  indicator.set("signed-out");
  counters.setStale(true);
  renderStale();
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
    if (!(error instanceof api.ApiError)) console.error("Dashboard: session check failed:", error);
    else if (error.unauthenticated) signedOut();
    // No answer at all (server down) tells nothing: ask again on the next failed attempt.
    else if (error.status === 0) lastSessionCheck = 0;
  }
}

// Every unresolved alert, newest first, page by page. The first page's seq is where the
// socket resumes: anything that changes while later pages load is replayed after it.
async function fetchSnapshot() {
  let page = await api.listAlerts({ statuses: SNAPSHOT_STATUSES, limit: SNAPSHOT_PAGE });
  const seq = page.seq;
  const alerts = Array.isArray(page.alerts) ? [...page.alerts] : [];
  while (page.next_cursor && alerts.length < SNAPSHOT_MAX) {
    page = await api.listAlerts({
      statuses: SNAPSHOT_STATUSES,
      limit: SNAPSHOT_PAGE,
      cursor: page.next_cursor,
    });
    if (Array.isArray(page.alerts)) alerts.push(...page.alerts);
  }
  return { alerts, seq, more: Boolean(page.next_cursor) };
}

async function loadSnapshot() {
  for (let attempt = 0; ; attempt += 1) {
    try {
      const { alerts, seq, more } = await fetchSnapshot();
      store.reset(alerts);
      borrowed.clear();
      for (const alert of alerts) filters.noteAlert(alert);
      olderNotShown = more;
      socket.lastSeq = Number.isInteger(seq) ? seq : null;
      notices.clear("load");
      snapshotLoaded = true;
      loadFromServer(filters.view, { force: true });
      return true;
    } catch (error) {
      if (error.unauthenticated) {
        signedOut();
        return false;
      }
      // Not the server's answer but a fault in the page (a handler that threw on what it
      // was given): said as such, in the console too. Shown as "Could not load alerts"
      // under "Reconnecting…", it read as a network problem and left no trace.
      const fault = !(error instanceof api.ApiError);
      if (fault) console.error("Dashboard: showing the alerts failed:", error);
      indicator.set(attempt === 0 && !store.size ? "connecting" : "reconnecting");
      const text = fault
        ? `Could not show the alerts: ${error.message}. The browser console has the details.`
        : `Could not load alerts: ${error.message}`;
      notices.show(text, {
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

socket.addEventListener("state", (event) => {
  const { state, attempt, nextAt } = event.detail;
  indicator.set(state, { attempt, nextAt });
  counters.setStale(state !== "live");
  renderStale();
  if (state === "reconnecting" && attempt >= SESSION_CHECK_AFTER_ATTEMPTS) checkSession();
});

socket.addEventListener("hello", (event) => {
  const { seq, user, server_time: serverTime, dispositions } = event.detail;
  clock.sync(serverTime);
  counters.seed(event.detail.recent_stats);
  // The newest tick in full (null before the server's first; absent from an older server):
  // its figures at once, not a dash until the next tick. Its server_time is up to a second
  // old, so it is no clock sample, and its alerts are already counted by seed().
  const latest = event.detail.stats;
  if (latest && typeof latest === "object") {
    counters.show(latest);
    showStats(latest);
  }
  dialog.setDispositions(dispositions);
  // A new socket starts with no presence: forget what the old one said (the server sends
  // who is looking now), and say again what this page has open.
  table.clearPresence();
  drawer.clearPresence();
  if (viewing) socket.send({ type: "viewing", alert_id: viewing });
  // Signed in as someone else in another tab: this page's CSRF token and "you" are stale.
  if (typeof user === "string" && me && user !== me) {
    signedOut();
    return;
  }
  if (Number.isInteger(seq) && socket.lastSeq !== null && seq < socket.lastSeq) checkReset();
});

socket.addEventListener("unauthorized", () => signedOut());
socket.addEventListener("caught-up", () => indicator.tick());

// The server's log never reached our seq (a restart on a fresh data dir): what we hold is
// from another history, and only a fresh snapshot gives a seq to resume from.
socket.addEventListener("reset", () => {
  notices.show("The server's alert log was reset; reloading alerts.", { kind: "info" });
  resync();
});

// An older server accepts such a socket: hello.seq behind what we applied says the same, and
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
    if (!(error instanceof api.ApiError)) console.error("Dashboard: reset check failed:", error);
    else if (error.unauthenticated) signedOut();
  }
}

// The server numbers events without holes, so a jump means this page missed some: its
// copy may be wrong, and only a fresh snapshot makes it right again.
socket.addEventListener("gap", (event) => {
  const { after, seq } = event.detail;
  notices.show(`The live feed skipped events ${after + 1}–${seq - 1}; reloading alerts.`, {
    kind: "warning",
  });
  resync();
});

socket.addEventListener("alert", (event) => {
  const { type, alert } = event.detail;
  borrowed.delete(alert.id);
  store.upsert(alert, { raised: type === "alert" });
  filters.noteAlert(alert);
  if (type === "alert") {
    announcer.newAlerts(1);
    counters.noteArrival(alert, event.detail.replayed === true);
  }
  // Not while our own calls run: what they meet, they report (our own resolve, seen on the
  // feed before its answer, closes the dialog on the answer).
  if (!dialog.pending) {
    actions.resolveMeanwhile(alert);
    actions.bulkMeanwhile();
  }
  critical.observe(type, alert);
});

socket.addEventListener("stats", (event) => {
  clock.observe(event.detail.server_time);
  counters.update(event.detail);
  showStats(event.detail);
});

// What a stats message (or hello's latest) states, past the header's own counters.
function showStats(stats) {
  integrity.setRejected(stats.rejected_total);
  scorecard.update(stats.scorecard);
  renderTitle(stats.open_alerts);
}

socket.addEventListener("server-error", (event) => {
  notices.show(event.detail.message || "The server reported an error.", { kind: "warning" });
});

// The drawer follows the alert it shows, whoever changed it (the feed or our own call).
store.addEventListener("change", (event) => {
  const id = drawer.alertId;
  const alert = id && event.detail.ids.includes(id) ? store.get(id) : null;
  // Gone from the store (a server view's alert, given back): the drawer keeps its copy.
  if (alert) drawer.refresh(alert);
});

// ---- acting on alerts -------------------------------------------------------------------

function focusTable() {
  if (table.cursorId && table.indexOf(table.cursorId) >= 0) {
    table.setCursor(table.cursorId, { focus: true });
  } else {
    tableWrap.focus();
  }
}

// The alert the keyboard acts on: the focused row's, else the cursor's.
// The focused row's alert, else the cursor's: the drawer's while it is open, else only one
// listed. A search or filter that hides the cursor's alert keeps the cursor on it (to come
// back to), and a, f, l and Enter acted on that alert, out of sight.
// The drawer's alert may be one the page does not hold (opened from a link): its own copy.
function currentAlert() {
  const id = document.activeElement?.closest?.("tr[data-id]")?.dataset.id ?? table.cursorId;
  if (!id || (!drawer.isOpen && table.indexOf(id) < 0)) return null;
  return table.alert(id) ?? (drawer.alertId === id ? drawer.alert : null);
}

function openDetails(alert, { focus = true, details = null } = {}) {
  table.setCursor(alert.id, { scroll: table.indexOf(alert.id) >= 0 });
  table.cursorSeen();
  drawer.open(alert, { focus, details });
  updateHold();
}

// One notice, replaced by the next: f, l or a pressed again on such a row (working down a
// held queue onto one's own resolved rows) stacked copies of it until four filled the corner.
function explainNoAction(alert) {
  const who = alert.owner ? ` by ${holderName(alert.owner, me)}` : "";
  notices.show(`Alert for ${describeAlert(alert)} is already ${alert.status}${who}.`, {
    kind: "info",
    key: "no-action",
  });
}

function acknowledge(alert) {
  if (!canAct) return;
  if (alert.status === "open") actions.acknowledge(alert);
  else if (alert.owner !== me || alert.status === "resolved") explainNoAction(alert);
}

// Resolved from the table (f or l, the drawer closed), the analyst has finished that alert,
// as when the details close on one resolved in them: the table lets in what waited, once,
// the cursor at its place in the queue where the resolved row was on screen, and holds
// still again (table.finished). Working from the table alone never let it go. Now, as the
// dialog closes on the server's answer: the dialog held the keys until then, so no key of a
// sequence is pressed between the answer and the rows moving. Not under the pointer.
async function resolve(alert, disposition, refocus) {
  if (!canAct) return;
  if (!workable(alert, me)) {
    explainNoAction(alert);
    // No dialog opened: the note typed on for it, without looking, would run shortcuts (n
    // claims an alert, u reopens the last one resolved). Dropped, as for a dialog the page
    // closed itself, until the keyboard has been still a second.
    shortcutKeys.settle();
    return;
  }
  const fromTable = !drawer.isOpen;
  const outcome = await actions.resolve(alert, disposition, refocus);
  if (fromTable && outcome?.ok && !drawer.isOpen && !pointerHolds()) table.finished();
}

table.onAction = (action, alert) => {
  if (action === "ack") actions.acknowledge(alert);
  else actions.resolve(alert, action);
};
table.onOpen = (alert) => openDetails(alert);
table.onSelection = () => bulk.update();
notices.onRoom = () => {
  table.keepFocusedRowInSight();
  drawer.keepFieldInView();
};

table.onCursor = (id) => {
  if (drawer.isOpen && id !== drawer.alertId) {
    const alert = table.alert(id);
    if (alert) drawer.show(alert);
  }
};

const backToDrawer = () => drawer.root.focus({ preventScroll: true });
drawer.onAction = (action, alert) => {
  if (action === "ack") acknowledge(alert);
  else if (action === "unack") actions.unacknowledge(alert);
  else if (action === "reopen") actions.reopen(alert);
  else resolve(alert, action, backToDrawer);
};
drawer.onNote = (alert, text) => actions.addNote(alert, text);

// Presence: tell the server which alert the drawer shows, once the cursor settles (j/k
// through the queue must not flood the socket's rate limit), and again after a reconnect.
const VIEWING_SETTLE_MS = 250;
let viewing = null;
let viewingTimer = 0;
drawer.onViewing = (id) => {
  address.show(id);
  viewing = id;
  clearTimeout(viewingTimer);
  viewingTimer = setTimeout(() => socket.send({ type: "viewing", alert_id: viewing }), VIEWING_SETTLE_MS);
};
socket.addEventListener("presence", (event) => {
  const { alert_id: alertId, users } = event.detail;
  if (typeof alertId !== "string" || !Array.isArray(users)) return;
  table.setPresence(alertId, users);
  drawer.setPresence(alertId, users);
});
drawer.onAssign = (alert, owner) => actions.assign(alert, owner);

// The paused pill shows what waits, as Esc does: the details close (they hold the table),
// and the keyboard stays with the table without holding it (on the table itself, as after
// Esc, rather than on the pill, which goes as the table is released).
pausedButton.addEventListener("click", () => {
  if (drawer.isOpen) drawer.close();
  if (!tableWrap.contains(document.activeElement)) tableWrap.focus({ preventScroll: true });
  releaseHold();
});

// The button goes once they are shown: the keyboard stays with the table, as after the
// paused pill, rather than fall to the page.
newAboveButton.addEventListener("click", () => {
  tableWrap.focus({ preventScroll: true });
  table.showAbove();
});

// "Next": the server picks and claims the most urgent unowned alert; open it to work on.
// One claim at a time: n pressed again before the answer (a slow network, an impatient
// second press, the button clicked twice) claimed a second alert, and a third, each taken
// from the others' queue while the drawer showed only the last.
let taking = false;
async function takeNext() {
  if (!canAct || taking) return;
  taking = true;
  nextButton.setAttribute("aria-busy", "true");
  try {
    const alert = await actions.next();
    if (alert) openDetails(store.get(alert.id) ?? alert);
  } finally {
    taking = false;
    nextButton.removeAttribute("aria-busy");
  }
}
const nextButton = $("#next-button");
nextButton.hidden = !canAct;
nextButton.addEventListener("click", takeNext);
drawer.onSelect = (id) => {
  const alert = store.get(id);
  if (alert) openDetails(alert);
};
// Closed on an alert resolved in them, the table lets in what waited (table.finished);
// closed on one that moved otherwise, the cursor steps to the alert that took its place.
drawer.onClose = () => {
  if (!table.finished()) table.leaveMovedAlert();
  updateHold();
  focusTable();
};
// Beside the drawer the toolbar is laid out anew. With no filter set the CSS keeps its height
// (tests/test_dashboard_still.py); with filters set it can still gain or lose a line, and a
// drawer opened by a click then moved every row 26 to 38 px under the pointer, so a second
// click (a double click) opened the row above. The rows stay where they were on screen.
let tableTop = 0;
drawer.onBeforeToggle = () => {
  tableTop = tableWrap.getBoundingClientRect().top;
};
drawer.root.addEventListener("drawer-toggle", () => {
  measureToolbar();
  table.keepRowsStill(tableWrap.getBoundingClientRect().top - tableTop);
});
critical.onOpen = (alert) => openDetails(store.get(alert.id) ?? alert);

// With nothing listed, why: the filters, or an empty queue (j and k have nothing to move
// through, so the keys that need an alert must not send the analyst to them).
function sayNothingListed() {
  const text = isFiltered(filters.view)
    ? "No alerts listed: the filters match none. Clear filters to see the queue."
    : "No alerts listed: nothing to act on yet.";
  notices.clear("pick"); // "Pick an alert first" is wrong now too
  notices.show(text, { key: "nothing-listed" });
}

function withCurrent(fn) {
  const alert = currentAlert();
  if (!alert) {
    if (!table.length) sayNothingListed();
    else notices.show("Pick an alert first: j and k move through the list.", { key: "pick" });
    return;
  }
  table.cursorSeen();
  fn(alert);
}

// j and k on an empty list said nothing at all: the analyst could not tell a dead key from
// an empty queue.
function moveCursor(delta, event) {
  if (!table.length) sayNothingListed();
  else moveOn(delta, event);
}

// j (↓, PageDown, Space) on the last alert listed said nothing either, while a held table
// kept new alerts (critical ones too) out of the list below it. Once per press: a held key's
// repeats leave the notice showing, and a press replaces it rather than adding a copy.
function moveOn(delta, event) {
  const stuck = delta > 0 && table.atEnd;
  table.moveCursor(delta);
  if (!stuck || (event?.repeat && notices.has("list-end"))) return;
  const { waiting, urgent } = counts;
  let text = "Last alert listed.";
  if (table.frozen && waiting > 0) {
    const critical = urgent > 0 ? `, ${formatCount(urgent)} critical` : "";
    const how = drawer.isOpen ? "Esc closes the details, and Esc again shows them" : "Esc shows them";
    text = `Last alert listed — ${formatCount(waiting)} new waiting${critical}: ${how}.`;
  }
  notices.show(text, { key: "list-end" });
}

// c: the note box of the alert in the drawer, or of the current one (the drawer opens on it).
// Esc leaves the box for the drawer, as from its other fields, and the next Esc closes it.
function writeNote() {
  if (!canAct) return false;
  if (drawer.isOpen) return drawer.focusNote();
  withCurrent((alert) => {
    openDetails(alert, { focus: false });
    if (!drawer.focusNote()) drawer.root.focus({ preventScroll: true });
  });
  return true;
}

// a, f and l act on the checked alerts when there are some, as the bulk bar's buttons do (as
// in a mail client: x ticks, the action key acts on what is ticked); else on the current
// alert. The open drawer shows one alert and its buttons act on it: so do the keys there.
function onCheckedOr(kind, single) {
  return () => {
    if (canAct && !drawer.isOpen && table.selected.size) bulk.run(kind);
    else withCurrent(single);
  };
}

// After a keyboard action, focus goes back where the keyboard was: the drawer or the row.
const refocusAfter = (alert) =>
  drawer.isOpen ? backToDrawer : () => table.setCursor(alert.id, { focus: true });

// The arrows, PageDown, PageUp, Home, End and Space move the cursor as j/k do, but only from
// the table: on the rest of the page (the drawer, a menu) they scroll it as usual.
const inTable = (move) => (event) => (tableWrap.contains(event.target) ? move(event) : false);

installMenus();
const shortcutKeys = installShortcuts({
  j: (event) => moveCursor(1, event),
  k: (event) => moveCursor(-1, event),
  ArrowDown: inTable((event) => moveOn(1, event)),
  ArrowUp: inTable(() => table.moveCursor(-1)),
  PageDown: inTable((event) => moveOn(table.pageRows, event)),
  PageUp: inTable(() => table.moveCursor(-table.pageRows)),
  Home: inTable(() => table.moveCursorTo(0)),
  End: inTable(() => table.moveCursorTo(table.length - 1)),
  " ": inTable((event) => moveOn(event.shiftKey ? -table.pageRows : table.pageRows, event)),
  Enter: () => withCurrent((alert) => openDetails(alert)),
  a: onCheckedOr("ack", acknowledge),
  f: onCheckedOr("fraud", (alert) => resolve(alert, "fraud", refocusAfter(alert))),
  l: onCheckedOr("legitimate", (alert) => resolve(alert, "legitimate", refocusAfter(alert))),
  x: () => withCurrent((alert) => canAct && table.toggleSelected(alert.id)),
  n: () => takeNext(), // a held n's repeats are dropped with every acting key's (keyboard.js)
  c: () => writeNote(),
  u: () => canAct && actions.undo(),
  "/": () => filters.focusSearch(),
  "?": () => showShortcuts(),
  Escape: () => {
    if (filters.closeRange()) return true;
    if (!drawer.isOpen) return false;
    drawer.close();
    return true;
  },
});
dialog.onWithdrawn = () => shortcutKeys.settle();
$("#shortcuts-button").addEventListener("click", () => showShortcuts());
shortcuts.addEventListener("close", () => updateHold());

function showShortcuts() {
  shortcuts.showModal();
  updateHold();
}

// ---- once a second ----------------------------------------------------------------------

setInterval(() => {
  indicator.tick();
  counters.tick();
  drawer.tick();
  integrity.refresh();
  renderStale();
}, 1000);

// The alert in the address bar (address.js): after a reload, from a shared link, or Back and
// Forward. One the page does not hold (resolved before it loaded, say) comes from the
// server; one the server does not know is said calmly, and leaves the address.
async function openFromAddress(id) {
  if (!id) {
    drawer.close();
    return;
  }
  if (drawer.alertId === id) return;
  let alert = store.get(id);
  let details = null;
  if (!alert) {
    try {
      details = await api.getAlert(id);
      alert = details.alert;
    } catch (error) {
      if (!(error instanceof api.ApiError)) console.error("Dashboard: opening an alert failed:", error);
      if (error.unauthenticated) {
        signedOut();
        return;
      }
      const named = id.length > 40 ? `${id.slice(0, 40)}…` : id;
      const text =
        error.status === 404
          ? `The alert in the link (${named}) is not on the server: the link may be mistyped, or from another server.`
          : `Could not open the alert in the link (${named}): ${error.message}`;
      notices.show(text, { kind: error.status === 404 ? "info" : "error", key: "address" });
      if (alertInAddress() === id && !drawer.isOpen) address.show(null);
      return;
    }
    // The analyst moved on meanwhile (Back, another alert opened).
    if (alertInAddress() !== id) return;
    // The page holds every unresolved alert, so one it lacked (past its cap) joins them and
    // is listed where the view puts it, if it does. A resolved one is the drawer's alone:
    // the page's own views list what the feed brought and what a view asked the server for,
    // not what a link opened (at the end of Everything, after the drawer had closed). The
    // feed brings it in if it changes, as it would any alert.
    if (alert.status !== "resolved") {
      store.merge(alert);
      alert = store.get(id) ?? alert;
    }
  }
  // What the server answered (audit trail and notes) is the drawer's: not asked for again.
  const known = details && details.alert.updated_at === alert.updated_at ? details : null;
  openDetails(alert, { details: known });
}

async function main() {
  applyView(filters.view);
  if (await loadSnapshot()) {
    socket.start();
    const id = alertInAddress();
    if (id) openFromAddress(id);
  }
}

main();
