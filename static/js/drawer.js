// The details drawer: everything about one alert, beside the queue (the sections come from
// alert-details.js). A side panel rather than a modal: j/k keep moving through the queue and
// the drawer follows; the audit trail is fetched from the server for each alert shown.

import {
  accountSection,
  alertSection,
  badgesAndActions,
  historyTimeline,
  notesSection,
  reasonsSection,
  relatedSection,
  section,
  transactionSection,
} from "./alert-details.js";
import { h, setText } from "./dom.js";
import { formatAge, formatMoney } from "./format.js";
import { relatedAlerts } from "./related.js";

export class Drawer {
  constructor(root, { store, me, canAct, clock, loadAudit }) {
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
    this.alert = null;
    this.onAction = () => {};
    this.onSelect = () => {};
    this.onClose = () => {};
    this.onNote = () => {};
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
      const outcome = await handler(this.alert, value);
      // The answer may have rebuilt the form (the alert changed): clear the field now there.
      const current = this.body.querySelector(`#${input.id}`);
      if (outcome?.ok && current) current.value = "";
    });
    this.body.addEventListener("keydown", (event) => {
      // Enter sends a note (Shift+Enter: a new line), as in the resolve dialog.
      if (event.key === "Enter" && !event.shiftKey && event.target.id === "note-text") {
        event.preventDefault();
        event.target.form.requestSubmit();
      }
    });
    this.body.addEventListener("click", (event) => {
      const item = event.target.closest("[data-open]");
      if (item) this.onSelect(item.dataset.open);
    });
  }

  get isOpen() {
    return !this.root.hidden;
  }

  get alertId() {
    return this.isOpen ? (this.alert?.id ?? null) : null;
  }

  open(alert, { focus = true } = {}) {
    const wasOpen = this.isOpen;
    this.show(alert);
    // Below the header and counters: they stay visible while the analyst reads.
    const top = document.querySelector("#alerts-panel")?.getBoundingClientRect().top ?? 0;
    this.root.style.top = `${Math.max(0, Math.round(top))}px`;
    this.root.hidden = false;
    document.body.classList.add("has-drawer");
    this.onViewing(this.alert.id);
    if (focus) this.root.focus({ preventScroll: true });
    if (!wasOpen) this.root.dispatchEvent(new Event("drawer-toggle"));
  }

  close() {
    if (!this.isOpen) return;
    this.root.hidden = true;
    document.body.classList.remove("has-drawer");
    this.onViewing(null);
    this.root.dispatchEvent(new Event("drawer-toggle"));
    this.onClose();
  }

  // Another alert in the open drawer (the cursor moved).
  show(alert) {
    const same = this.alert?.id === alert.id;
    this.alert = alert;
    if (!same) {
      this._audit = null;
      this._notes = null;
      this.body.scrollTop = 0;
    }
    // The body is rebuilt on every change to the alert: keep what is being typed in it.
    const kept = same ? this._formState() : null;
    if (!same && this.isOpen) this.onViewing(alert.id);
    this._render();
    if (kept) this._restoreForms(kept);
    if (!same || this._auditFor !== alert.updated_at) this._fetchAudit(alert);
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

  _render() {
    const alert = this.alert;
    const tx = alert.transaction ?? {};
    setText(this.title, `Account ${alert.account_id}`);
    const raised = Date.parse(alert.created_at);
    setText(
      this.sub,
      [
        tx.merchant_name || tx.merchant_id,
        formatMoney(tx.amount, tx.currency),
        Number.isFinite(raised) ? `raised ${formatAge(this.clock.now() - raised)} ago` : null,
      ]
        .filter(Boolean)
        .join(" · "),
    );
    this._renderPresence();
    this.actions.replaceChildren(...badgesAndActions(alert, { me: this.me, canAct: this.canAct }));
    const related = relatedAlerts(this.store.entries(), alert);
    this.body.replaceChildren(
      reasonsSection(alert),
      transactionSection(tx),
      accountSection(alert, related),
      relatedSection(related),
      this._notesHolder(),
      alertSection(alert, this.me),
      this._history(),
    );
  }

  _notesHolder() {
    this._notesNode = h("div", { className: "notes-holder" });
    this._renderNotes();
    return this._notesNode;
  }

  _renderNotes() {
    if (!this._notesNode || !this.alert) return;
    const kept = this._formState();
    const opts = { me: this.me, canAct: this.canAct };
    this._notesNode.replaceChildren(notesSection(this.alert, this._notes, opts));
    this._restoreForms(kept);
  }

  // What is typed in the drawer's forms, and which field has focus.
  _formState() {
    const values = {};
    for (const field of this.body.querySelectorAll("form[data-form] [id]")) {
      values[field.id] = field.value;
    }
    const active = document.activeElement;
    return { values, focused: this.body.contains(active) && active.id ? active.id : null };
  }

  _restoreForms({ values, focused }) {
    for (const [id, value] of Object.entries(values)) {
      const field = this.body.querySelector(`#${id}`);
      if (field) field.value = value;
    }
    if (focused) this.body.querySelector(`#${focused}`)?.focus({ preventScroll: true });
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
