// The details drawer: everything about one alert, beside the queue (the sections come from
// alert-details.js). A side panel rather than a modal: j/k keep moving through the queue and
// the drawer follows; the audit trail is fetched from the server for each alert shown.

import {
  accountSection,
  alertSection,
  badgesAndActions,
  historyTimeline,
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
    this._auditFor = null;
    this._audit = null;
    this._auditToken = 0;

    root.querySelector("#drawer-close").addEventListener("click", () => this.close());
    this.actions.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action]");
      if (button && this.alert && button.getAttribute("aria-disabled") !== "true") {
        this.onAction(button.dataset.action, this.alert);
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
    if (focus) this.root.focus({ preventScroll: true });
    if (!wasOpen) this.root.dispatchEvent(new Event("drawer-toggle"));
  }

  close() {
    if (!this.isOpen) return;
    this.root.hidden = true;
    document.body.classList.remove("has-drawer");
    this.root.dispatchEvent(new Event("drawer-toggle"));
    this.onClose();
  }

  // Another alert in the open drawer (the cursor moved).
  show(alert) {
    const same = this.alert?.id === alert.id;
    this.alert = alert;
    if (!same) {
      this._audit = null;
      this.body.scrollTop = 0;
    }
    this._render();
    if (!same || this._auditFor !== alert.updated_at) this._fetchAudit(alert);
  }

  // The store has a newer state of the alert on display.
  refresh(alert) {
    if (!this.isOpen || this.alert?.id !== alert.id || this.alert === alert) return;
    const scroll = this.body.scrollTop;
    // Its buttons and lists are rebuilt: keep the keyboard in the drawer, not on <body>.
    const hadFocus = this.root.contains(document.activeElement);
    this.show(alert);
    this.body.scrollTop = scroll;
    if (hadFocus) this.root.focus({ preventScroll: true });
  }

  async _fetchAudit(alert) {
    const token = ++this._auditToken;
    this._auditFor = alert.updated_at;
    try {
      const data = await this.loadAudit(alert.id);
      if (token !== this._auditToken) return;
      this._audit = Array.isArray(data.audit) ? data.audit : [];
    } catch (error) {
      if (token !== this._auditToken) return;
      this._audit = { error: error.message };
    }
    this._renderHistory();
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
    this.actions.replaceChildren(...badgesAndActions(alert, { me: this.me, canAct: this.canAct }));
    const related = relatedAlerts(this.store.entries(), alert);
    this.body.replaceChildren(
      reasonsSection(alert),
      transactionSection(tx),
      accountSection(alert, related),
      relatedSection(related),
      alertSection(alert, this.me),
      this._history(),
    );
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
