// The live alert table: keyed rows, newest first, capped at `maxRows` however many alerts the
// store holds. Redrawn at most once per animation frame (a few times a second under a burst),
// and held still while the analyst is working in it.

import { actionButtons, actionsKey, dataCells } from "./alert-row.js";
import { h } from "./dom.js";

// Arrivals are highlighted only when they trickle in; a flashing wall of rows is not calm.
const HIGHLIGHT_MAX_ROWS = 5;
// Under a burst (hundreds of alerts a second) the table redraws a few times a second rather
// than every frame: nobody can read faster, and the page stays responsive to input.
const BURST_ROWS = 20;
const BURST_INTERVAL_MS = 250;

export class AlertTable {
  constructor({ tbody, store, me, canAct, maxRows = 500, onRender = () => {} }) {
    this.tbody = tbody;
    this.store = store;
    this.me = me;
    this.canAct = canAct;
    this.maxRows = maxRows;
    this.onRender = onRender;
    this.onAction = () => {};
    this._rows = new Map();
    this._dirty = new Set();
    this._pending = new Set();
    this._reset = true;
    this._frozen = false;
    this._frame = 0;
    this._timer = 0;
    this._lastRenderAt = 0;
    this._minInterval = 0;
    store.addEventListener("change", (event) => {
      if (event.detail.reset) this._reset = true;
      for (const id of event.detail.ids) this._dirty.add(id);
      this.schedule();
    });
    // One delegated listener: rows come and go hundreds of times a second.
    tbody.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action]");
      const row = button?.closest("tr[data-id]");
      if (!button || !row || button.getAttribute("aria-disabled") === "true") return;
      // The row's own copy: the store may have evicted an old alert that is still on screen.
      const alert = this._rows.get(row.dataset.id)?.alert;
      if (alert) this.onAction(button.dataset.action, alert, button);
    });
  }

  // While the analyst works in the table, rows must not slide away under the pointer or the
  // keyboard: updates still land in place, and new alerts wait until the table is released.
  setFrozen(frozen) {
    if (frozen === this._frozen) return;
    this._frozen = frozen;
    this.schedule();
  }

  get frozen() {
    return this._frozen;
  }

  schedule() {
    if (this._frame || this._timer) return;
    const wait = this._lastRenderAt + this._minInterval - performance.now();
    if (wait > 0) {
      this._timer = setTimeout(() => {
        this._timer = 0;
        this._frame = requestAnimationFrame(() => this._render());
      }, wait);
    } else {
      this._frame = requestAnimationFrame(() => this._render());
    }
  }

  setPending(id, pending) {
    if (pending) this._pending.add(id);
    else this._pending.delete(id);
    const row = this._rows.get(id);
    if (row) this._markPending(row, pending);
  }

  _markPending(row, pending) {
    row.tr.toggleAttribute("aria-busy", pending);
    for (const button of row.actionsCell.querySelectorAll("button[data-action]")) {
      // aria-disabled, not disabled: a disabled button drops keyboard focus.
      button.setAttribute("aria-disabled", String(pending));
    }
  }

  // Focus something sensible in a row after it changed under the keyboard user.
  focusRow(id, preferredAction = null) {
    const row = this._rows.get(id);
    if (!row) return false;
    const buttons = [...row.tr.querySelectorAll("button[data-action]")];
    const target =
      buttons.find((button) => button.dataset.action === preferredAction) ?? buttons[0] ?? row.tr;
    target.focus();
    return true;
  }

  _render() {
    this._frame = 0;
    const initial = this._reset;
    if (this._reset) {
      this._reset = false;
      this._rows.clear();
      this.tbody.replaceChildren();
    }
    const alerts = this.store.newest(this.maxRows);
    if (this._frozen && !initial) {
      this._renderFrozen(alerts);
      return;
    }
    let fresh = 0;
    for (const alert of alerts) if (!this._rows.has(alert.id)) fresh += 1;
    const highlight = !initial && fresh <= HIGHLIGHT_MAX_ROWS;
    const wanted = new Set();
    let cursor = this.tbody.firstElementChild;
    for (const alert of alerts) {
      wanted.add(alert.id);
      let row = this._rows.get(alert.id);
      if (!row) {
        row = this._createRow(alert, highlight);
        this._rows.set(alert.id, row);
      } else if (this._dirty.has(alert.id) && row.alert !== alert) {
        this._updateRow(row, alert);
      }
      if (row.tr === cursor) cursor = cursor.nextElementSibling;
      else this.tbody.insertBefore(row.tr, cursor);
    }
    for (const [id, row] of this._rows) {
      if (!wanted.has(id)) {
        row.tr.remove();
        this._rows.delete(id);
      }
    }
    this._dirty.clear();
    this._lastRenderAt = performance.now();
    this._minInterval = fresh > BURST_ROWS && !initial ? BURST_INTERVAL_MS : 0;
    this.onRender({ shown: alerts.length, held: this.store.size, waiting: 0 });
  }

  _renderFrozen(alerts) {
    for (const id of this._dirty) {
      const row = this._rows.get(id);
      const alert = this.store.get(id);
      if (row && alert && row.alert !== alert) this._updateRow(row, alert);
    }
    this._dirty.clear();
    let waiting = 0;
    for (const alert of alerts) if (!this._rows.has(alert.id)) waiting += 1;
    this.onRender({ shown: this._rows.size, held: this.store.size, waiting });
  }

  _createRow(alert, isNew) {
    const tr = h("tr", { tabindex: "-1", className: isNew ? "is-new" : null });
    const row = {
      tr,
      alert: null,
      cells: null,
      actionsKey: null,
      actionsCell: h("td", { className: "actions" }),
    };
    this._updateRow(row, alert);
    return row;
  }

  _updateRow(row, alert) {
    const { tr } = row;
    row.alert = alert;
    tr.dataset.id = alert.id;
    tr.dataset.status = alert.status;
    tr.dataset.severity = alert.severity;
    tr.classList.toggle("is-resolved", alert.status === "resolved");
    tr.classList.toggle("is-mine", Boolean(alert.owner) && alert.owner === this.me);

    // Replace the data cells one by one and never detach the actions cell: moving a
    // focused button out of the document would throw the keyboard user's focus away.
    const cells = dataCells(alert, this.me);
    if (row.cells) {
      row.cells.forEach((cell, i) => cell.replaceWith(cells[i]));
    } else {
      tr.append(...cells, row.actionsCell);
    }
    row.cells = cells;

    const key = actionsKey(alert, this.me, this.canAct);
    if (key !== row.actionsKey) {
      const hadFocus = row.actionsCell.contains(document.activeElement);
      const focusedAction = hadFocus ? document.activeElement.dataset.action : null;
      row.actionsCell.replaceChildren(...actionButtons(alert, key));
      row.actionsKey = key;
      this._markPending(row, this._pending.has(alert.id));
      if (hadFocus) this.focusRow(alert.id, focusedAction);
    }
  }
}
