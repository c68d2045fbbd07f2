// The details drawer: everything about one alert, beside the queue (the sections come from
// alert-details.js). A side panel rather than a modal: j/k keep moving through the queue and
// the drawer follows; the audit trail is fetched from the server for each alert shown.

import {
  accountHistorySection,
  accountSection,
  assignForm,
  noteForm,
  alertSection,
  badgesAndActions,
  historyTimeline,
  notesSection,
  reasonsSection,
  relatedSection,
  section,
  transactionSection,
} from "./alert-details.js";
import { raisedLateBy } from "./alert-row.js";
import { h, setText } from "./dom.js";
import { formatAge, formatMoney } from "./format.js";
import { loadPref, savePref } from "./prefs.js";
import { relatedAlerts } from "./related.js";

export class Drawer {
  constructor(root, { store, me, canAct, clock, loadAudit, loadHistory }) {
    this.root = root;
    this.title = root.querySelector("#drawer-title");
    this.sub = root.querySelector("#drawer-sub");
    this.presenceNode = root.querySelector("#drawer-presence");
    this.presence = new Map();
    // Called with the alert id on display (null when closed), to tell the server.
    this.onViewing = () => {};
    this.actions = root.querySelector("#drawer-actions");
    this.body = root.querySelector("#drawer-body");
    this.store = store;
    this.me = me;
    this.canAct = canAct;
    this.clock = clock;
    this.loadAudit = loadAudit;
    this.loadHistory = loadHistory;
    this._accountHistory = null;
    this._historyAccount = null;
    this._historyToken = 0;
    this.alert = null;
    this.onAction = () => {};
    this.onSelect = () => {};
    this.onClose = () => {};
    this.onBeforeToggle = () => {}; // about to open or close: the layout is still as it was
    this.onNote = () => {};
    this.forms = { note: noteForm(), assign: assignForm() };
    // What was typed but not sent in those forms, per alert, while the drawer shows another:
    // j/k past an alert (to compare it with the next, say) must not throw a half-written
    // note away, nor leave it in the box under another alert.
    // They outlive a reload of the tab too (sessionStorage, per analyst): a reload mid-note
    // (F5, a stale page's reload prompt, a crashed tab brought back) threw the note away.
    this._drafts = loadDrafts(me); // alert id -> {note: "…", assign: "…"}
    window.addEventListener("pagehide", () => {
      if (this.isOpen) this._putDraftsAside();
      saveDrafts(me, this._drafts);
    });
    this.onAssign = () => {};
    this._auditFor = null;
    this._audit = null;
    this._notes = null;
    this._auditToken = 0;

    root.querySelector("#drawer-close").addEventListener("click", () => this.close());
    this.actions.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action]");
      if (button && this.alert && button.getAttribute("aria-disabled") !== "true") {
        this.onAction(button.dataset.action, this.alert);
      }
    });
    // Notes and assignment are forms in the body; a failed call keeps what was typed.
    this.body.addEventListener("submit", async (event) => {
      const form = event.target.closest("form[data-form]");
      if (!form || !this.alert) return;
      event.preventDefault();
      const input = form.querySelector("textarea, input");
      const value = input.value.trim();
      if (!value) return;
      const handler = form.dataset.form === "note" ? this.onNote : this.onAssign;
      const alertId = this.alert.id;
      const kind = form.dataset.form;
      const outcome = await handler(this.alert, value);
      // Cleared only if the drawer still shows that alert and nobody typed something else;
      // put aside meanwhile (j before the answer), it is no longer a draft either.
      if (!outcome?.ok) return;
      if (this.alert?.id === alertId && input.value.trim() === value) input.value = "";
      const aside = this._drafts.get(alertId);
      if (aside?.[kind]?.trim() === value) {
        delete aside[kind];
        if (!Object.keys(aside).length) this._drafts.delete(alertId);
      }
    });
    this.body.addEventListener("keydown", (event) => {
      // Enter sends a note (Shift+Enter: a new line), as in the resolve dialog.
      if (event.key === "Enter" && !event.shiftKey && event.target.id === "note-text") {
        event.preventDefault();
        event.target.form.requestSubmit();
      }
      // Esc leaves a field for the drawer, keeping what was typed (as it leaves the search),
      // so the shortcuts work again rather than typing into a note everyone will read.
      if (event.key === "Escape" && event.target.closest("form[data-form]")) {
        event.preventDefault();
        this.root.focus({ preventScroll: true });
      }
    });
    this.body.addEventListener("click", (event) => {
      const item = event.target.closest("[data-open]");
      if (item) this.onSelect(item.dataset.open);
    });
    // The panel's top moves when the window is resized (the counters go compact under
    // 820 px, the header wraps on a phone) or what is above it changes height: the drawer
    // follows it while open. The panel itself resizes with the window, and the elements
    // above it with their content.
    this._panel = document.querySelector("#alerts-panel");
    if (this._panel) {
      const follow = new ResizeObserver(() => {
        if (this.isOpen) this._place();
      });
      for (let node = this._panel; node; node = node.previousElementSibling) follow.observe(node);
    }
  }

  get isOpen() {
    return !this.root.hidden;
  }

  get alertId() {
    return this.isOpen ? (this.alert?.id ?? null) : null;
  }

  // `details`: the server's answer for this alert (GET /api/v1/alerts/{id}: its audit trail
  // and notes), when the caller has it already: the drawer does not ask for it again.
  open(alert, { focus = true, details = null } = {}) {
    const wasOpen = this.isOpen;
    if (!wasOpen) this.onBeforeToggle();
    this.show(alert, details);
    this._place();
    this.root.hidden = false;
    document.body.classList.add("has-drawer");
    this.onViewing(this.alert.id);
    if (focus) this.root.focus({ preventScroll: true });
    if (!wasOpen) this.root.dispatchEvent(new Event("drawer-toggle"));
  }

  // The keyboard into the note box (the c shortcut), scrolled into view: it is the body's
  // last but two sections, some thirty Tab presses down. False when there is none (a viewer).
  focusNote() {
    const field = this.forms.note.querySelector("textarea");
    if (!this.isOpen || !this.root.contains(field)) return false;
    field.scrollIntoView({ block: "nearest" });
    field.focus({ preventScroll: true });
    return true;
  }

  // Below the header and counters, level with the panel's top: they stay visible while the
  // analyst reads. Unless that leaves the drawer less than half the window: at 200% zoom on
  // a laptop (683x384 CSS px) the panel starts 270 px down, and the drawer was a strip of
  // 114 px, its heading and no body. Then it takes the window's whole height.
  _place() {
    const top = Math.max(0, Math.round(this._panel?.getBoundingClientRect().top ?? 0));
    this.root.style.top = `${top <= window.innerHeight / 2 ? top : 0}px`;
  }

  close() {
    if (!this.isOpen) return;
    this.onBeforeToggle();
    this.root.hidden = true;
    document.body.classList.remove("has-drawer");
    this.onViewing(null);
    this.root.dispatchEvent(new Event("drawer-toggle"));
    this.onClose();
  }

  // Another alert in the open drawer (the cursor moved). `details`: as for open().
  show(alert, details = null) {
    const same = this.alert?.id === alert.id;
    if (!same) this._putDraftsAside();
    this.alert = alert;
    if (!same) {
      this._audit = null;
      this._notes = null;
      this._takeDraftsBack(alert.id);
      this.body.scrollTop = 0;
    }
    const stale = !same || this._auditFor !== alert.updated_at;
    if (stale && details) this._takeAudit(alert, details);
    // The body is rebuilt on every change to the alert (the forms are moved, not rebuilt):
    // keep the keyboard where it was.
    const focused = this._focusedField();
    if (!same && this.isOpen) this.onViewing(alert.id);
    this._render();
    if (same) this._refocus(focused);
    if (stale && !details) this._fetchAudit(alert);
    if (!same) this._fetchHistory(alert);
  }

  _fields() {
    return Object.entries(this.forms).map(([kind, form]) => [
      kind,
      form.querySelector("textarea, input"),
    ]);
  }

  _putDraftsAside() {
    if (!this.alert) return;
    const drafts = {};
    for (const [kind, field] of this._fields()) if (field.value.trim()) drafts[kind] = field.value;
    if (Object.keys(drafts).length) this._drafts.set(this.alert.id, drafts);
    else this._drafts.delete(this.alert.id);
  }

  _takeDraftsBack(alertId) {
    const drafts = this._drafts.get(alertId) ?? {};
    this._drafts.delete(alertId);
    for (const [kind, field] of this._fields()) field.value = drafts[kind] ?? "";
  }

  // Who else has the alert open: shown under the title while it is on display.
  setPresence(alertId, users) {
    const others = (users ?? []).filter((user) => user !== this.me);
    if (others.length) this.presence.set(alertId, others);
    else this.presence.delete(alertId);
    if (alertId === this.alert?.id) this._renderPresence();
  }

  clearPresence() {
    this.presence.clear();
    this._renderPresence();
  }

  _renderPresence() {
    const others = this.alert ? this.presence.get(this.alert.id) : null;
    this.presenceNode.hidden = !others;
    setText(this.presenceNode, others ? `Also looking at this alert: ${others.join(", ")}` : "");
  }

  // The store has a newer state of the alert on display.
  refresh(alert) {
    if (!this.isOpen || this.alert?.id !== alert.id || this.alert === alert) return;
    const scroll = this.body.scrollTop;
    // Its buttons and lists are rebuilt: keep the keyboard in the drawer, not on <body>.
    const hadFocus = this.root.contains(document.activeElement);
    this.show(alert);
    this.body.scrollTop = scroll;
    if (hadFocus && !this.root.contains(document.activeElement)) {
      this.root.focus({ preventScroll: true });
    }
  }

  async _fetchHistory(alert) {
    const token = ++this._historyToken;
    if (this._historyAccount !== alert.account_id) {
      this._accountHistory = null;
      this._renderAccountHistory();
    }
    this._historyAccount = alert.account_id;
    try {
      const data = await this.loadHistory(alert.account_id);
      if (token !== this._historyToken) return;
      this._accountHistory = data;
    } catch (error) {
      if (token !== this._historyToken) return;
      this._accountHistory = { error: error.message };
    }
    this._renderAccountHistory();
  }

  _renderAccountHistory() {
    if (!this._accountNode || !this.alert) return;
    this._accountNode.replaceChildren(accountHistorySection(this.alert, this._accountHistory));
    this.keepFieldInView();
  }

  // The account's history and the notes arrive after the drawer opens, above the note box
  // (and in it): a field the analyst is typing in must not slide out of sight under them,
  // nor stay under the room the drawer gives notices (notices.js).
  keepFieldInView() {
    const active = document.activeElement;
    if (this._fields().some(([, field]) => field === active)) {
      active.scrollIntoView({ block: "nearest" });
    }
  }

  // The audit trail and notes as given (`data`, the server's answer for `alert`); a fetch
  // still under way for an older state is dropped.
  _takeAudit(alert, data) {
    ++this._auditToken;
    this._auditFor = alert.updated_at;
    this._audit = Array.isArray(data.audit) ? data.audit : [];
    this._notes = Array.isArray(data.notes) ? data.notes : [];
  }

  async _fetchAudit(alert) {
    const token = ++this._auditToken;
    this._auditFor = alert.updated_at;
    try {
      const data = await this.loadAudit(alert.id);
      if (token !== this._auditToken) return;
      this._audit = Array.isArray(data.audit) ? data.audit : [];
      this._notes = Array.isArray(data.notes) ? data.notes : [];
    } catch (error) {
      if (token !== this._auditToken) return;
      this._audit = { error: error.message };
      this._notes = { error: error.message };
    }
    this._renderHistory();
    this._renderNotes();
  }

  // Once a second: "raised 2 min ago" keeps counting, as the rows' ages do.
  tick() {
    if (this.isOpen && this.alert) this._renderSub();
  }

  // "raised 12 s ago", and for an alert raised late (the demo's warm-up, a replay) by how
  // much: ", 5 min after its transaction". Read alone, the wait passed for the
  // transaction's age.
  _renderSub() {
    const alert = this.alert;
    const tx = alert.transaction ?? {};
    const raised = Date.parse(alert.created_at);
    const lag = raisedLateBy(alert);
    const after = lag === null ? "" : `, ${formatAge(lag)} after its transaction`;
    setText(
      this.sub,
      [
        tx.merchant_name || tx.merchant_id,
        formatMoney(tx.amount, tx.currency),
        Number.isFinite(raised)
          ? `raised ${formatAge(this.clock.now() - raised)} ago${after}`
          : null,
      ]
        .filter(Boolean)
        .join(" · "),
    );
  }

  _render() {
    const alert = this.alert;
    const tx = alert.transaction ?? {};
    setText(this.title, `Account ${alert.account_id}`);
    this._renderSub();
    this._renderPresence();
    this.actions.replaceChildren(...badgesAndActions(alert, { me: this.me, canAct: this.canAct }));
    const related = relatedAlerts(this.store.entries(), alert);
    this.body.replaceChildren(
      reasonsSection(alert),
      transactionSection(tx),
      this._accountHolder(),
      accountSection(alert, related),
      relatedSection(related),
      this._notesHolder(),
      alertSection(alert, this.me),
      this._history(),
    );
  }

  _accountHolder() {
    this._accountNode = h("div", { className: "account-holder" });
    this._renderAccountHistory();
    return this._accountNode;
  }

  _notesHolder() {
    this._notesNode = h("div", { className: "notes-holder" });
    this._renderNotes();
    return this._notesNode;
  }

  _renderNotes() {
    if (!this._notesNode || !this.alert) return;
    const focused = this._focusedField();
    const opts = { me: this.me, canAct: this.canAct, forms: this.forms };
    this._notesNode.replaceChildren(notesSection(this.alert, this._notes, opts));
    this._refocus(focused);
    this.keepFieldInView();
  }

  _focusedField() {
    const active = document.activeElement;
    return active && active !== this.body && this.body.contains(active) ? active : null;
  }

  // Moving a node out of the document and back drops its focus: put it back.
  _refocus(node) {
    if (node?.isConnected && document.activeElement !== node) node.focus({ preventScroll: true });
  }

  _history() {
    this._historyNode = h("div", { className: "history" });
    this._renderHistory();
    return section("history", "History", [this._historyNode]);
  }

  _renderHistory() {
    if (this._historyNode && this.alert) {
      this._historyNode.replaceChildren(...historyTimeline(this.alert, this._audit));
    }
  }
}

// Drafts by analyst, in this tab's sessionStorage: kept across a reload, gone with the tab,
// and never shown to someone else signing in on it. Storage refused: only the reload loses.
function loadDrafts(me) {
  const saved = loadPref(`drafts.${me}`, [], { tab: true });
  return new Map(Array.isArray(saved) ? saved : []);
}

const saveDrafts = (me, drafts) => savePref(`drafts.${me}`, [...drafts], { tab: true });
