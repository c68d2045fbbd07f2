// The resolve dialog: a native modal <dialog> (Esc for free; Tab kept inside and focus given
// back by dialog-focus.js) that asks for a disposition (preselected by whichever button or
// key opened it) and an optional note, and answers with {disposition, note} or null. Enter
// confirms; Shift+Enter starts a new line.
//
// With a `submit` callback the dialog stays open while the call runs, and after a failure
// worth retrying it shows why, with the note still there: an analyst's write-up must not be
// lost to a network blip. Nor to another analyst: if someone else takes the alert while a
// note is typed, the dialog stays open with it and offers to add it to the alert's notes
// (taken()).

import { keepTabInside } from "./dialog-focus.js";
import { h } from "./dom.js";
import { capitalize, formatMoney } from "./format.js";

export class ResolveDialog {
  constructor(dialog) {
    this.dialog = dialog;
    keepTabInside(dialog);
    this.form = dialog.querySelector("form");
    this.title = dialog.querySelector("#resolve-title");
    this.summary = dialog.querySelector("#resolve-summary");
    this.note = dialog.querySelector("#resolve-note");
    this.confirm = dialog.querySelector("#resolve-confirm");
    this.error = dialog.querySelector("#resolve-error");
    this.fieldset = dialog.querySelector(".disposition-choice");
    this.choices = [...dialog.querySelectorAll('input[name="disposition"]')];
    this.alertId = null;
    this._resolve = null;
    this._count = 1;
    this._submit = null;
    this._taken = false;
    this._resolveSubmit = null; // the resolve call, put aside while the alert is taken
    this._pending = false;
    this._asked = 0;
    this.onWithdrawn = () => {};
    // Buttons keep their own Enter (Cancel must cancel); anywhere else Enter confirms, where
    // the form's implicit submission would press its first button, Cancel.
    this.form.addEventListener("keydown", (event) => {
      if (event.key !== "Enter" || event.isComposing) return;
      if (event.target.closest("button")) return;
      if (event.shiftKey && event.target === this.note) return;
      event.preventDefault();
      this._confirm();
    });
    this.form.addEventListener("submit", (event) => {
      if (event.submitter?.value !== "confirm" || !this._submit) return;
      event.preventDefault();
      this._confirm();
    });
    this.fieldset.addEventListener("change", () => this._label(this.disposition));
    dialog.addEventListener("close", () => {
      const answer = dialog.returnValue === "confirm" ? this._answer() : null;
      this.alertId = null;
      this._submit = null;
      this._setTaken(false);
      this._setPending(false);
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

  // A confirmed answer is on its way to the server.
  get pending() {
    return this._pending;
  }

  get disposition() {
    return this.choices.find((choice) => choice.checked)?.value ?? "fraud";
  }

  // What the analyst has typed in the note.
  get draft() {
    return this.note.value.trim();
  }

  // Someone else took the alert (see taken()).
  get isTaken() {
    return this._taken;
  }

  // One alert, or several (bulk): `subject` is an alert or an array of alerts. `submit`, if
  // given, is called with the answer on confirm; it resolves to null to close the dialog,
  // or to a message to show in it, keeping it open for another try. `aside` says what was
  // left out of a bulk resolve, and why.
  ask(subject, disposition, { submit = null, aside = "" } = {}) {
    if (this.dialog.open) return Promise.resolve(null);
    const alerts = Array.isArray(subject) ? subject : [subject];
    this.alertId = alerts.length === 1 ? alerts[0].id : null;
    this._describe(alerts, aside);
    for (const choice of this.choices) choice.checked = choice.value === disposition;
    this._label(disposition);
    this.note.value = "";
    this.dialog.returnValue = "";
    this._setTaken(false);
    this._submit = submit;
    this._asked += 1;
    this._setPending(false);
    this._showError("");
    return new Promise((resolve) => {
      this._resolve = resolve;
      this.dialog.showModal();
      this.note.focus();
    });
  }

  // Fewer alerts than it was asked about (someone else resolved the others meanwhile): the
  // count and the list change, with `aside` saying why; the choice and the note stay.
  retarget(alerts, aside = "") {
    if (!this.dialog.open) return;
    this._describe(alerts, aside);
    this._label(this.disposition);
  }

  // Someone else took the alert (acknowledged or resolved it) while the dialog was open with
  // a note typed. Closing would throw the note away, and keystrokes meant for it would land
  // on the page's shortcuts: the dialog stays, says why it cannot resolve (`message`), and
  // Enter calls `addNote` instead (answered as ask's submit is), Esc closes. The note and the
  // keyboard stay where they are.
  taken(message, addNote) {
    if (!this.dialog.open) return;
    if (!this.isTaken) this._resolveSubmit = this._submit;
    this._submit = addNote;
    this._setTaken(true);
    this.title.textContent = "Add your note to the alert";
    this.confirm.textContent = "Add as note";
    this.confirm.classList.remove("btn-fraud", "btn-legit");
    this._showError(message);
  }

  // The alert can be resolved again (released, or reopened): back to resolving it, with the
  // note as it is now.
  untaken() {
    if (!this.dialog.open || !this.isTaken) return;
    this._submit = this._resolveSubmit;
    this._setTaken(false);
    this._label(this.disposition);
    this._showError("");
  }

  _setTaken(taken) {
    this._taken = taken;
    if (!taken) this._resolveSubmit = null;
    // The disposition no longer applies; a radio that had the keyboard hands it to the note.
    if (taken && this.fieldset.contains(document.activeElement)) this.note.focus();
    this.fieldset.hidden = taken;
  }

  _describe(alerts, aside = "") {
    this._count = alerts.length;
    let text;
    if (alerts.length === 1) {
      const [alert] = alerts;
      const tx = alert.transaction ?? {};
      text = [
        `Account ${alert.account_id}`,
        tx.merchant_name || tx.merchant_id,
        formatMoney(tx.amount, tx.currency),
      ]
        .filter(Boolean)
        .join(" · ");
      if (aside) text += `. ${aside}`;
    } else {
      // Each account once, with its count: a burst on one card is several alerts.
      const perAccount = new Map();
      for (const alert of alerts) {
        perAccount.set(alert.account_id, (perAccount.get(alert.account_id) ?? 0) + 1);
      }
      const accounts = [...perAccount]
        .slice(0, 4)
        .map(([account, n]) => (n > 1 ? `${account} (${n})` : account));
      const rest = perAccount.size - accounts.length;
      const more = rest > 0 ? ` and ${rest} more account${rest === 1 ? "" : "s"}` : "";
      text =
        `${alerts.length} alerts: ${accounts.join(", ")}${more}. ` +
        (aside ? `${aside} ` : "") +
        "Each is resolved in turn; the note goes on every one.";
    }
    this.summary.textContent = text;
  }

  _answer() {
    return { disposition: this.disposition, note: this.note.value.trim() };
  }

  async _confirm() {
    if (!this._submit) {
      this.dialog.close("confirm");
      return;
    }
    if (this._pending) return;
    const asked = this._asked;
    this._showError("");
    this._setPending(true);
    let problem = null;
    try {
      problem = await this._submit(this._answer());
    } finally {
      if (asked === this._asked) this._setPending(false);
    }
    // Closed meanwhile (Esc, or the session ended): the caller has been told already.
    if (asked !== this._asked || !this.dialog.open) return;
    if (problem) {
      this._showError(problem);
      this.note.focus();
    } else {
      this.dialog.close("confirm");
    }
  }

  _setPending(pending) {
    this._pending = pending;
    this.form.toggleAttribute("aria-busy", pending);
    // aria-disabled, not disabled: a disabled button would drop keyboard focus.
    this.confirm.setAttribute("aria-disabled", String(pending));
  }

  _showError(message) {
    this.error.hidden = !message;
    this.error.textContent = message;
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

  // Closes the dialog under the analyst, who did not ask for it (someone else took the
  // alert, the session ended): `onWithdrawn` keeps the keys meant for it off the shortcuts.
  // Not while a confirmed answer is on its way: then it closes for the analyst's own Enter.
  withdraw() {
    if (!this.dialog.open) return;
    const confirmed = this._pending;
    this.dialog.close("cancel");
    if (!confirmed) this.onWithdrawn();
  }
}
