// The resolve dialog: a native <dialog> (focus trap and Esc for free) that asks for a
// disposition (preselected by whichever button or key opened it) and an optional note, and
// answers with {disposition, note} or null. Enter confirms; Shift+Enter starts a new line.

import { h } from "./dom.js";
import { capitalize, formatMoney } from "./format.js";

export class ResolveDialog {
  constructor(dialog) {
    this.dialog = dialog;
    this.form = dialog.querySelector("form");
    this.title = dialog.querySelector("#resolve-title");
    this.summary = dialog.querySelector("#resolve-summary");
    this.note = dialog.querySelector("#resolve-note");
    this.confirm = dialog.querySelector("#resolve-confirm");
    this.fieldset = dialog.querySelector(".disposition-choice");
    this.choices = [...dialog.querySelectorAll('input[name="disposition"]')];
    this.alertId = null;
    this._resolve = null;
    this._count = 1;
    // Buttons keep their own Enter (Cancel must cancel); anywhere else Enter confirms, where
    // the form's implicit submission would press its first button, Cancel.
    this.form.addEventListener("keydown", (event) => {
      if (event.key !== "Enter" || event.isComposing) return;
      if (event.target.closest("button")) return;
      if (event.shiftKey && event.target === this.note) return;
      event.preventDefault();
      this.dialog.close("confirm");
    });
    this.fieldset.addEventListener("change", () => this._label(this.disposition));
    dialog.addEventListener("close", () => {
      const answer =
        dialog.returnValue === "confirm"
          ? { disposition: this.disposition, note: this.note.value.trim() }
          : null;
      this.alertId = null;
      const resolve = this._resolve;
      this._resolve = null;
      resolve?.(answer);
    });
  }

  // The server's list (hello.dispositions), in its order; the page starts with the two
  // every server knows.
  setDispositions(names) {
    if (!Array.isArray(names) || !names.length) return;
    const current = this.choices.map((choice) => choice.value);
    if (current.join() === names.join()) return;
    const legend = this.fieldset.querySelector("legend");
    this.choices = names.map((name) =>
      h("input", { type: "radio", name: "disposition", value: name }),
    );
    const labels = this.choices.map((input, i) => {
      const kind = names[i] === "fraud" ? "fraud" : names[i] === "legitimate" ? "legit" : "other";
      return h("label", { className: `choice choice-${kind}` }, [
        input,
        ` ${capitalize(names[i])}`,
      ]);
    });
    this.fieldset.replaceChildren(legend, ...labels);
  }

  get isOpen() {
    return this.dialog.open;
  }

  get disposition() {
    return this.choices.find((choice) => choice.checked)?.value ?? "fraud";
  }

  // One alert, or several (bulk): `subject` is an alert or an array of alerts.
  ask(subject, disposition) {
    if (this.dialog.open) return Promise.resolve(null);
    const alerts = Array.isArray(subject) ? subject : [subject];
    this._count = alerts.length;
    this.alertId = alerts.length === 1 ? alerts[0].id : null;
    if (alerts.length === 1) {
      const [alert] = alerts;
      const tx = alert.transaction ?? {};
      this.summary.textContent = [
        `Account ${alert.account_id}`,
        tx.merchant_name || tx.merchant_id,
        formatMoney(tx.amount, tx.currency),
      ]
        .filter(Boolean)
        .join(" · ");
    } else {
      const accounts = alerts.slice(0, 4).map((alert) => alert.account_id);
      const more = alerts.length > 4 ? ` and ${alerts.length - 4} more` : "";
      this.summary.textContent =
        `${alerts.length} alerts: ${accounts.join(", ")}${more}. ` +
        "Each is resolved in turn; the note goes on every one.";
    }
    for (const choice of this.choices) choice.checked = choice.value === disposition;
    this._label(disposition);
    this.note.value = "";
    this.dialog.returnValue = "";
    return new Promise((resolve) => {
      this._resolve = resolve;
      this.dialog.showModal();
      this.note.focus();
    });
  }

  _label(disposition) {
    const label = disposition;
    const what = this._count === 1 ? "" : ` ${this._count} alerts`;
    this.dialog.dataset.disposition = disposition;
    this.title.textContent = `Resolve${what} as ${label}`;
    this.confirm.textContent = `Resolve${what} as ${label}`;
    this.confirm.classList.toggle("btn-fraud", disposition === "fraud");
    this.confirm.classList.toggle("btn-legit", disposition !== "fraud");
  }

  cancel() {
    if (this.dialog.open) this.dialog.close("cancel");
  }
}
