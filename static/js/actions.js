// Acting on alerts: acknowledge and resolve, one at a time or in bulk. The store takes the
// server's answer (or, on a 409, the winning state the answer carries), so a row is right
// before the live feed catches up. There is no bulk endpoint: a bulk action is the single
// calls one after another, each answered on its own, and summed up at the end (a 409 names
// who holds the alert, from the winning state the answer carries).

import { workable } from "./alert-row.js";
import * as api from "./api.js";
import { describeAlert, holderName } from "./format.js";

// No answer at all, or the server's own failure: the same request may well succeed later.
// Not an alert whose stored row is damaged: the same request meets the same row.
const retryable = (error) =>
  error.status === 0 || (error.status >= 500 && error.code !== "stored_row_damaged");

// What the resolve dialog says after such a failure, with the note still in it.
const tryAgain = (what, error) =>
  `Could not resolve ${what}: ${error.message} Enter to try again, Esc to cancel.`;

export class Actions {
  constructor({ store, table, dialog, notices, signedOut, updateHold, me = "" }) {
    this.me = me;
    this.store = store;
    this.table = table;
    this.dialog = dialog;
    this.notices = notices;
    this.signedOut = signedOut;
    this.updateHold = updateHold;
    this.busy = false;
    this._bulk = null; // the bulk resolve whose dialog is open
    this._single = null; // the single resolve whose dialog is open: {alert, addNote}
    // The latest resolve u would undo, while its notice (`key`) shows: {key, alerts, bulk},
    // `alerts` as the resolve's answers left them.
    this._undo = null;
  }

  acknowledge(alert) {
    return this._run(alert, () => api.acknowledgeAlert(alert.id));
  }

  unacknowledge(alert) {
    return this._run(alert, () => api.unacknowledgeAlert(alert.id));
  }

  assign(alert, owner) {
    return this._run(alert, () => api.assignAlert(alert.id, owner));
  }

  reopen(alert, note) {
    return this._run(alert, () => api.reopenAlert(alert.id, note));
  }

  // Enter confirms the resolve dialog, so a slip (f for l, Enter on the wrong row) resolves
  // at once. Its notice says what was resolved and offers to reopen it, with a button and
  // with u, for as long as the notice shows.
  _offerUndo(alert, disposition) {
    const offer = { key: "undo", alerts: [alert], bulk: false };
    this._undo = offer;
    this.notices.show(`Resolved as ${disposition}: alert for ${describeAlert(alert)}.`, {
      key: "undo",
      action: this._undoAction(offer),
    });
  }

  // The notice's button undoes the resolve it tells of; u, the latest.
  _undoAction(offer) {
    return { text: "Undo (u)", run: () => this.undo(offer) };
  }

  // u: reopens what the resolve just made resolved (one alert, or a bulk resolve's), while
  // its notice shows. Returns whether there was anything to undo.
  undo(offer = this._undo) {
    const live = offer && this.notices.has(offer.key) ? offer : null;
    if (live) this.notices.clear(live.key);
    if (offer === this._undo) this._undo = null;
    if (live?.bulk) {
      this._undoBulk(live.alerts);
      return true;
    }
    const alert = live ? this.store.get(live.alerts[0].id) : null;
    if (!alert || alert.status !== "resolved") {
      this.notices.show("Nothing to undo: u reopens the alert you just resolved.", {
        key: "undo-none",
      });
      return false;
    }
    this.reopen(alert).then((outcome) => {
      if (outcome.ok) this.notices.show(`Reopened: alert for ${describeAlert(outcome.alert)}.`);
    });
    return true;
  }

  // A bulk resolve undone: reopens the alerts it resolved that are still as it left them
  // (resolved, by whom, as what, and not changed since: `updated_at`), one call each as it
  // resolved them; one another analyst has changed meanwhile (reopened, resolved again,
  // noted) is left as it is, and the summary names it, with any call that failed.
  async _undoBulk(resolved) {
    const still = [];
    const changed = [];
    for (const mine of resolved) {
      const now = this.store.get(mine.id) ?? mine;
      const same =
        now.status === "resolved" &&
        now.owner === mine.owner &&
        now.disposition === mine.disposition &&
        now.updated_at === mine.updated_at;
      (same ? still : changed).push(now);
    }
    const results = still.length
      ? await this._each(still, (alert) => api.reopenAlert(alert.id), () => {})
      : [];
    const { done, conflicts, failed, counts } = this._tally(results, still.length);
    const n = resolved.length;
    const parts = [`Reopened ${done} of the ${n} alert${n > 1 ? "s" : ""} just resolved.`];
    if (changed.length) {
      const them = changed.length > 1 ? "they are" : "it is";
      parts.push(`${changed.length} changed by others meanwhile, left as ${them}.`);
    }
    parts.push(...counts);
    const by = (now) => (now.owner ? ` by ${holderName(now.owner, this.me)}` : "");
    const details = [
      ...changed.map((now) => {
        let what = now.status === "open" ? "reopened" : `${now.status}${by(now)}`;
        if (now.status === "resolved" && now.disposition) {
          what = `resolved as ${now.disposition}${by(now)}`;
        }
        return `Account ${now.account_id}: ${what} meanwhile, left as it is`;
      }),
      ...[...conflicts, ...failed].map((r) => {
        const now = r.error.body?.alert;
        const why = r.conflict && now?.status ? `already ${now.status}${by(now)}` : r.error.message;
        return `Account ${r.alert.account_id}: not reopened, ${why}`;
      }),
    ];
    this.notices.show(parts.join(" "), {
      kind: details.length ? "warning" : "info",
      sticky: details.length > 0,
      key: "bulk",
      details,
    });
  }

  addNote(alert, text) {
    return this._run(alert, () => api.addNote(alert.id, text));
  }

  // Takes the most urgent alert nobody holds; the server picks and claims it in one step,
  // so two analysts pressing at once get different alerts. Returns the alert, or null.
  async next() {
    try {
      const data = await api.claimNext();
      if (!data.alert) {
        this.notices.show("Nothing left to take: every open alert has an owner.", {
          kind: "info",
          key: "next",
        });
        return null;
      }
      this.store.merge(data.alert);
      return data.alert;
    } catch (error) {
      if (error.unauthenticated) this.signedOut();
      else this.notices.show(`Could not take the next alert: ${error.message}`, { kind: "error" });
      return null;
    }
  }

  // Opens the dialog with `disposition` preselected; `refocus` puts focus back afterwards.
  // The dialog stays open while the call runs; a failure worth retrying (no answer, or the
  // server's own error) is shown in it with the note kept. A 409 (someone else acted first)
  // closes it with a notice naming who won, as anywhere else, unless a note was typed: then
  // the dialog stays, with the note, and offers to add it to the alert's notes (see
  // resolveMeanwhile, for the same found out from the live feed).
  async resolve(alert, disposition, refocus = () => this.table.focusRow(alert.id, disposition)) {
    let outcome = null;
    if (this.dialog.isOpen) return outcome; // one dialog at a time (it is modal)
    const open = () => this.dialog.alertId === alert.id;
    const submit = async (answer) => {
      outcome = await this._run(
        alert,
        () => api.resolveAlert(alert.id, answer.disposition, answer.note),
        { quiet: true },
      );
      if (outcome.ok) this._offerUndo(outcome.alert, answer.disposition);
      if (outcome.ok || outcome.stop) return null;
      // Closed while the call ran (Esc): the dialog cannot say it, a notice must.
      if (retryable(outcome.error) && open()) return tryAgain("the alert", outcome.error);
      const now = outcome.error.body?.alert;
      if (outcome.conflict && now && !workable(now, this.me) && answer.note && open()) {
        return this._taken(now);
      }
      this._explain(outcome, alert);
      return null;
    };
    // Enter once the alert is taken: the note goes on the alert, where its owner reads it.
    const addNote = async (answer) => {
      if (!answer.note) return null;
      const noted = await this._run(alert, () => api.addNote(alert.id, answer.note), {
        quiet: true,
      });
      if (noted.ok) {
        this.notices.show(`Your note is on the alert for ${describeAlert(noted.alert)}.`, {
          kind: "info",
        });
        return null;
      }
      if (noted.stop) return null;
      if (open()) return `Could not add the note: ${noted.error.message} Enter to try again.`;
      this._explain(noted, alert);
      return null;
    };
    this._single = { alert, addNote };
    try {
      await this._ask(alert, disposition, submit);
    } finally {
      this._single = null;
    }
    // Closing the dialog gives focus back to what had it. Put it back only if that went
    // missing (the row was redrawn meanwhile), never over where the analyst has moved it
    // since: an Esc pressed right after closing releases the table, and must stay so.
    const active = document.activeElement;
    if (!active || active === document.body || this.dialog.dialog.contains(active)) refocus();
    return outcome;
  }

  // The live feed changed an alert while the single resolve dialog is open and not waiting
  // for the server. If it is the dialog's alert and someone else has taken it (acknowledged
  // or resolved it), a typed note keeps the dialog open (see _taken); with none, it closes
  // with a notice saying who. If the alert can be resolved again (released, reopened), a
  // dialog kept open for its note goes back to resolving it.
  resolveMeanwhile(alert) {
    const single = this._single;
    if (!single || single.alert.id !== alert.id || !this.dialog.isOpen) return;
    if (workable(alert, this.me)) {
      this.dialog.untaken();
    } else if (this.dialog.draft) {
      this._taken(alert);
    } else {
      this.dialog.withdraw();
      const who = alert.owner ? ` by ${alert.owner}` : "";
      this.notices.show(`Alert for ${describeAlert(alert)} was ${alert.status}${who} meanwhile.`, {
        kind: "warning",
      });
    }
  }

  // The single resolve dialog, its alert taken by someone else (`now`, as they left it):
  // it says so and offers to add the note instead. Returns what it says.
  _taken(now) {
    const who = now.owner ?? "someone else";
    const why =
      now.status === "resolved"
        ? `Resolved${now.disposition ? ` as ${now.disposition}` : ""} by ${who} meanwhile.`
        : `Acknowledged by ${who} meanwhile: only they can resolve it now.`;
    const message =
      `${why} Your note is kept: Enter adds it to the alert's notes, ` +
      "Esc closes without it.";
    this.dialog.taken(message, this._single.addNote);
    return message;
  }

  // The resolve dialog, one alert or several, open until `submit` lets it close (see
  // ResolveDialog.ask); the table holds still meanwhile.
  async _ask(subject, disposition, submit, aside = "") {
    const asked = this.dialog.ask(subject, disposition, { submit, aside });
    this.updateHold();
    await asked;
    this.updateHold();
  }

  // One call. Problems become a notice unless `quiet`; the outcome is returned either way.
  async _run(alert, call, { quiet = false } = {}) {
    this.table.setPending(alert.id, true);
    try {
      const data = await call();
      if (data.alert) this.store.merge(data.alert);
      return { ok: true, alert: data.alert ?? alert };
    } catch (error) {
      if (error.unauthenticated) {
        this.signedOut();
        return { ok: false, stop: true, error };
      }
      const outcome =
        error.status === 409
          ? { ok: false, conflict: true, owner: error.body?.owner ?? null, error }
          : { ok: false, error };
      if (outcome.conflict && error.body?.alert) this.store.merge(error.body.alert);
      if (!quiet) this._explain(outcome, alert);
      return outcome;
    } finally {
      this.table.setPending(alert.id, false);
    }
  }

  // The notice for a single call that did not go through. A 409 carries the winning state:
  // name the alert as the analyst knows it (the server's message names its raw id).
  _explain({ conflict, error }, alert) {
    if (!conflict) {
      this.notices.show(`Could not update the alert: ${error.message}`, { kind: "error" });
      return;
    }
    const now = error.body?.alert;
    const text = now?.status
      ? `Alert for ${describeAlert(now)} is already ${now.status}` +
        `${now.owner ? ` by ${holderName(now.owner, this.me)}` : ""}.`
      : `Alert for ${describeAlert(alert)}: ${error.message}`;
    this.notices.show(text, { kind: "warning" });
  }

  // `kind` is "ack", "assign-me" or a disposition. Resolving asks once, for every alert.
  async bulk(kind, alerts, onProgress = () => {}, me = "") {
    if (this.busy || !alerts.length) return null;
    if (kind !== "ack" && kind !== "assign-me") {
      return this._bulkResolve(kind, alerts, onProgress, me);
    }
    const call =
      kind === "ack"
        ? (alert) => api.acknowledgeAlert(alert.id)
        : (alert) => api.assignAlert(alert.id, me);
    const results = await this._each(alerts, call, onProgress);
    this._summarise(kind === "ack" ? "Acknowledged" : "Assigned to you", alerts, results);
    return results;
  }

  // As with a single alert, the dialog stays open while the calls run. The alerts that
  // failed for a reason worth retrying are counted in it, with the note kept, and Enter
  // tries those again (never one already resolved or lost to a conflict). Esc stops before
  // the next call. The summary comes once the dialog has closed, over every call made.
  //
  // Alerts another analyst has acknowledged are left out before the dialog opens, and it
  // says so by name: only their owner may resolve them (docs/api.md), so a call would only
  // come back as a conflict, and the analyst should know before confirming, not after.
  async _bulkResolve(disposition, alerts, onProgress, me) {
    const results = new Map(); // alert id → its latest outcome
    // `targets`: what the dialog is still about (those someone else holds, or resolves
    // meanwhile, leave it: see _leaveOut).
    const bulk = { results, targets: alerts, me };
    this._leaveOut(bulk);
    if (!bulk.targets.length) {
      this._allTaken(bulk);
      return [...results.values()];
    }
    let closed = false;
    let running = null;
    const submit = async (answer) => {
      ({ disposition } = answer);
      const todo = bulk.targets.filter((alert) => {
        const last = results.get(alert.id);
        return !last || (!last.ok && retryable(last.error));
      });
      const call = (alert) => api.resolveAlert(alert.id, answer.disposition, answer.note);
      running = this._each(todo, call, onProgress, () => closed).then((outcomes) => {
        for (const outcome of outcomes) results.set(outcome.alert.id, outcome);
        return outcomes;
      });
      const outcomes = await running;
      if (closed || outcomes.some((outcome) => outcome.stop)) return null;
      // What failed may have been resolved by someone else while the calls ran.
      this.bulkMeanwhile();
      if (!this.dialog.isOpen) return null;
      // Not those since resolved by someone else: their outcome is no longer the latest.
      const failed = outcomes.filter(
        (outcome) =>
          !outcome.ok && retryable(outcome.error) && results.get(outcome.alert.id) === outcome,
      );
      if (!failed.length) return null;
      const n = bulk.targets.length;
      const what = n === 1 ? "the alert" : `${failed.length} of the ${n} alerts`;
      return tryAgain(what, failed[0].error);
    };
    this._bulk = bulk;
    try {
      await this._ask(bulk.targets, disposition, submit, this._aside(bulk));
    } finally {
      this._bulk = null;
    }
    closed = true;
    await running;
    if (!results.size) return null;
    const done = [...results.values()];
    // All taken by others: bulkMeanwhile's notice said so, there is nothing to summarise.
    if (bulk.targets.length) {
      // Undone as a single resolve is, for as long as its notice would show: all resolved,
      // from the summary; with conflicts or failures the summary stays until dismissed, and
      // a notice of its own, timed as the single resolve's, offers to reopen those that
      // went through.
      const resolved = done.filter((r) => r.ok).map((r) => r.alert);
      const sticky = done.some((r) => !r.ok);
      const offer = resolved.length
        ? { key: sticky ? "undo" : "bulk", alerts: resolved, bulk: true }
        : null;
      const action = offer && !sticky ? this._undoAction(offer) : null;
      this._summarise(`Resolved as ${disposition}`, alerts, done, action);
      if (offer) this._offerBulkUndo(offer, disposition);
    }
    return done;
  }

  _offerBulkUndo(offer, disposition) {
    this._undo = offer;
    if (offer.key !== "undo") {
      this.notices.clear("undo"); // an older single resolve's offer: u now undoes this one
      return;
    }
    const n = offer.alerts.length;
    const what = n === 1 ? `alert for ${describeAlert(offer.alerts[0])}` : `${n} alerts`;
    this.notices.show(`Resolved as ${disposition}: ${what}.`, {
      key: "undo",
      action: this._undoAction(offer),
    });
  }

  // The live feed changed alerts while the bulk resolve dialog is open and not waiting for
  // the server. Those it was about to resolve that someone else has taken meanwhile (resolved,
  // or acknowledged) leave it: it counts the rest and says why, and the summary names them as
  // conflicts (what a 409 would have said). Once nothing is left for it to do it closes, as
  // the single-alert dialog does; with a notice, if others took all of them.
  bulkMeanwhile() {
    const bulk = this._bulk;
    if (!bulk || !this.dialog.isOpen) return;
    if (!this._leaveOut(bulk)) return;
    if (!bulk.targets.length) {
      this.dialog.withdraw();
      this._allTaken(bulk);
    } else if (bulk.targets.every((alert) => bulk.results.get(alert.id)?.ok)) {
      // The rest went through already: nothing left to retry; the summary says it all.
      this.dialog.withdraw();
    } else {
      this.dialog.retarget(bulk.targets, this._aside(bulk));
    }
  }

  // Moves what someone else has taken, as the page knows it, out of the bulk resolve's
  // targets and into its results as a conflict, without a call: resolved since it was
  // selected, or acknowledged by another analyst (one's own held alerts stay). Returns
  // whether any left.
  _leaveOut(bulk) {
    const taken = [];
    for (const alert of bulk.targets) {
      if (bulk.results.get(alert.id)?.ok) continue;
      const now = this.store.get(alert.id) ?? alert;
      let left = null;
      if (now.status === "resolved" && alert.status !== "resolved") left = "resolved";
      else if (now.status === "acknowledged" && now.owner !== bulk.me) left = "held";
      if (!left) continue;
      const message = `already ${now.status} by ${now.owner}`;
      const error = { status: 409, message, body: { alert: now } };
      bulk.results.set(alert.id, { alert, ok: false, conflict: true, left, error });
      taken.push(alert);
    }
    bulk.targets = bulk.targets.filter((alert) => !taken.includes(alert));
    return taken.length > 0;
  }

  // What the dialog says about the alerts it left out: those others hold by account (and
  // whose), then those resolved meanwhile by whom.
  _aside(bulk) {
    const left = [...bulk.results.values()].filter((r) => r.left);
    const now = (r) => r.error.body.alert;
    const parts = [];
    const held = left.filter((r) => r.left === "held");
    if (held.length === 1) {
      const alert = now(held[0]);
      parts.push(`${alert.account_id} is acknowledged by ${alert.owner}, so it is left out.`);
    } else if (held.length) {
      const perAccount = new Map();
      for (const r of held) {
        const key = `${now(r).account_id} (${now(r).owner}`;
        perAccount.set(key, (perAccount.get(key) ?? 0) + 1);
      }
      const named = [...perAccount]
        .slice(0, 4)
        .map(([key, n]) => (n > 1 ? `${key}, ${n})` : `${key})`));
      const rest = perAccount.size - named.length;
      const more = rest > 0 ? ` and ${rest} more` : "";
      parts.push(`Left out, acknowledged by others: ${named.join(", ")}${more}.`);
    }
    const resolved = left.filter((r) => r.left === "resolved");
    if (resolved.length) {
      const were = resolved.length === 1 ? "1 was" : `${resolved.length} were`;
      parts.push(`${were} resolved${this._by(resolved)} meanwhile.`);
    }
    return parts.join(" ");
  }

  // " by bob, carol": who holds those alerts now, as the page knows it.
  _by(results) {
    const owner = (r) => (this.store.get(r.alert.id) ?? r.error.body.alert).owner;
    const names = [...new Set(results.map(owner))].filter(Boolean);
    return names.length ? ` by ${names.join(", ")}` : "";
  }

  // Nothing left for a bulk resolve to do: others took every alert it was about.
  _allTaken(bulk) {
    if (this._undo?.key === "bulk") this._undo = null; // its notice goes
    const left = [...bulk.results.values()].filter((r) => r.left);
    let text;
    if (left.every((r) => r.left === "resolved")) {
      const who = this._by(left);
      text =
        left.length === 1
          ? `Alert for ${describeAlert(left[0].alert)} was resolved${who} meanwhile.`
          : `All ${left.length} alerts were resolved${who} meanwhile.`;
    } else if (left.length === 1) {
      const now = left[0].error.body.alert;
      text = `Alert for ${describeAlert(now)} is already ${now.status} by ${now.owner}.`;
    } else {
      text = `Nothing left to resolve. ${this._aside(bulk)}`;
    }
    this.notices.show(text, { kind: "warning", key: "bulk" });
  }

  // The calls one after another, each answered on its own; stops early if the session ended
  // or `stopped()` says so.
  async _each(alerts, call, onProgress, stopped = () => false) {
    this.busy = true;
    const results = [];
    try {
      for (const [i, alert] of alerts.entries()) {
        if (stopped()) break;
        onProgress(i, alerts.length);
        const outcome = await this._run(alert, () => call(alert), { quiet: true });
        results.push({ alert, ...outcome });
        if (outcome.stop) break;
      }
    } finally {
      this.busy = false;
      onProgress(alerts.length, alerts.length);
    }
    return results;
  }

  // How the calls for `tried` alerts went (`_each`'s results): how many went through, the
  // conflicts and the failures, and the summary's sentences counting those and the calls
  // not made.
  _tally(results, tried) {
    const conflicts = results.filter((r) => r.conflict);
    const failed = results.filter((r) => !r.ok && !r.conflict);
    const skipped = tried - results.length;
    const counts = [];
    if (conflicts.length)
      counts.push(`${conflicts.length} conflict${conflicts.length > 1 ? "s" : ""}.`);
    if (failed.length) counts.push(`${failed.length} failed.`);
    if (skipped) counts.push(`${skipped} not tried.`);
    return { done: results.filter((r) => r.ok).length, conflicts, failed, counts };
  }

  // `action`: a button for the notice (a bulk resolve's Undo).
  _summarise(verb, alerts, results, action = null) {
    if (this._undo?.key === "bulk") this._undo = null; // its notice goes
    const { done, conflicts, failed, counts } = this._tally(results, alerts.length);
    const parts = [`${verb} ${done} of ${alerts.length}.`, ...counts];
    const details = [...conflicts, ...failed].map((r) => {
      // A 409 carries the winning state: say who holds it rather than echo the id.
      const now = r.error.body?.alert;
      const why =
        r.conflict && now?.owner ? `already ${now.status} by ${now.owner}` : r.error.message;
      return `Account ${r.alert.account_id}: ${why}`;
    });
    this.notices.show(parts.join(" "), {
      kind: conflicts.length || failed.length ? "warning" : "info",
      sticky: details.length > 0,
      key: "bulk",
      details,
      action,
    });
  }
}
