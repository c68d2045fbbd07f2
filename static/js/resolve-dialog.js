// The resolve dialog: a native <dialog> (focus trap and Esc for free) that asks for an
// optional note and answers with {note} or null.

import { formatMoney } from "./format.js";

export class ResolveDialog {
  constructor(dialog) {
    this.dialog = dialog;
    this.form = dialog.querySelector("form");
    this.title = dialog.querySelector("#resolve-title");
    this.summary = dialog.querySelector("#resolve-summary");
    this.note = dialog.querySelector("#resolve-note");
    this.confirm = dialog.querySelector("#resolve-confirm");
    this.alertId = null;
    this._resolve = null;
    this.note.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        this.dialog.close("confirm");
      }
    });
    dialog.addEventListener("close", () => {
      const answer = dialog.returnValue === "confirm" ? { note: this.note.value.trim() } : null;
      this.alertId = null;
      const resolve = this._resolve;
      this._resolve = null;
      resolve?.(answer);
    });
  }

  get isOpen() {
    return this.dialog.open;
  }

  ask(alert, disposition) {
    if (this.dialog.open) return Promise.resolve(null);
    const tx = alert.transaction ?? {};
    const label = disposition === "fraud" ? "fraud" : "legitimate";
    this.alertId = alert.id;
    this.dialog.dataset.disposition = disposition;
    this.title.textContent = `Resolve as ${label}`;
    this.summary.textContent = [
      `Account ${alert.account_id}`,
      tx.merchant_name || tx.merchant_id,
      formatMoney(tx.amount, tx.currency),
    ]
      .filter(Boolean)
      .join(" · ");
    this.confirm.textContent = `Resolve as ${label}`;
    this.confirm.classList.toggle("btn-fraud", disposition === "fraud");
    this.confirm.classList.toggle("btn-legit", disposition !== "fraud");
    this.note.value = "";
    this.dialog.returnValue = "";
    return new Promise((resolve) => {
      this._resolve = resolve;
      this.dialog.showModal();
      this.note.focus();
    });
  }

  cancel() {
    if (this.dialog.open) this.dialog.close("cancel");
  }
}
