// The filter toolbar: search, severity and status chips, rule, owner, sort and the event time
// range (behind a button beside the drawer on a laptop, see app.css). It reads and
// writes the view in the address bar (replaceState: filtering is not navigation, so Back
// still leaves the page), beside the alert the drawer shows (address.js), and reports every
// change.

import { addressFor, alertInAddress } from "./address.js";
import { h } from "./dom.js";
import { ruleLabel } from "./format.js";
import { emptyView, isFiltered, normalizeInstant, parseView, serializeView } from "./view.js";

// <input type="datetime-local"> speaks the browser's local time; the URL keeps UTC.
function toLocalInput(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  const local = new Date(date.getTime() - date.getTimezoneOffset() * 60_000);
  return local.toISOString().slice(0, 16);
}

const SEARCH_DEBOUNCE_MS = 150;

// The range on its button, in the analyst's zone: "Since 11/30 09:00", "11/30 09:00–18:00".
const monthDay = new Intl.DateTimeFormat(undefined, { month: "numeric", day: "numeric" });
const hourMinute = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit",
  minute: "2-digit",
  hourCycle: "h23",
});

// As parts: the times on their own, so that where the toolbar is short of room (beside the
// drawer on a small laptop, app.css) the button shows the days and its title the whole range.
function describeRange(from, to) {
  const day = (iso) => monthDay.format(new Date(iso));
  const time = (iso, before = " ") =>
    h("span", { className: "range-time", text: `${before}${hourMinute.format(new Date(iso))}` });
  if (from && to) {
    const end = day(from) === day(to) ? [time(to, "–")] : ["–", day(to), time(to)];
    return [day(from), time(from), ...end];
  }
  if (from) return ["Since ", day(from), time(from)];
  if (to) return ["Until ", day(to), time(to)];
  return ["Dates"];
}

export class FilterBar {
  constructor(form, { onChange, onLeave }) {
    this.form = form;
    this.onChange = onChange;
    this.onLeave = onLeave;
    this.view = parseView(location.search);
    this.search = form.querySelector("#filter-q");
    this.rule = form.querySelector("#filter-rule");
    this.owner = form.querySelector("#filter-owner");
    this.sort = form.querySelector("#filter-sort");
    this.from = form.querySelector("#filter-from");
    this.to = form.querySelector("#filter-to");
    this.clear = form.querySelector("#filter-clear");
    this.range = form.querySelector("#filter-range");
    this.rangeToggle = form.querySelector("#filter-range-toggle");
    this.rangeText = form.querySelector("#filter-range-text");
    this.chips = [...form.querySelectorAll(".chip[data-filter]")];
    this.rules = new Set();
    this.owners = new Set();
    this._timer = 0;

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this._takeSearch();
    });
    this.search.addEventListener("input", () => {
      clearTimeout(this._timer);
      this._timer = setTimeout(() => this._takeSearch(), SEARCH_DEBOUNCE_MS);
    });
    // Esc leaves the field for the table; it does not clear what was typed.
    this.search.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        this._takeSearch();
        this.onLeave();
      }
    });
    for (const chip of this.chips) {
      chip.addEventListener("click", () => {
        const { filter, value } = chip.dataset;
        const values = new Set(this.view[filter]);
        if (values.has(value)) values.delete(value);
        else values.add(value);
        this._commit({ ...this.view, [filter]: [...values] });
      });
    }
    this.rule.addEventListener("change", () =>
      this._commit({ ...this.view, rule: this.rule.value }),
    );
    this.owner.addEventListener("change", () =>
      this._commit({ ...this.view, owner: this.owner.value }),
    );
    for (const [input, key] of [
      [this.from, "from"],
      [this.to, "to"],
    ]) {
      input.addEventListener("change", () =>
        this._commit({ ...this.view, [key]: normalizeInstant(input.value) }),
      );
    }
    this._listenToRange();
    this.sort.addEventListener("change", () =>
      this._commit({ ...this.view, sort: this.sort.value }),
    );
    // The button hides as the filters go: the keyboard goes back to the table, so j, k and x
    // go on at once (in the search box they would be typed into a new filter).
    this.clear.addEventListener("click", () => {
      this._commit({ ...emptyView(), sort: this.view.sort });
      this.onLeave();
    });
    this._show();
  }

  get rangeOpen() {
    return this.range.classList.contains("is-open");
  }

  // Esc in the open range closes it and gives the button its focus back; true if it did.
  // (app.js asks first on Esc, so that the key closes this and not the drawer behind it.)
  // Left open as the drawer closed or the window widened, the fields are in the toolbar and
  // the button is gone: the Esc is then not this one's.
  closeRange() {
    if (!this.rangeOpen) return false;
    this._setRangeOpen(false);
    if (this.rangeToggle.getClientRects().length === 0) return false;
    this.rangeToggle.focus();
    return true;
  }

  _listenToRange() {
    // Shown only where the fields are hidden: opening moves the keyboard to the first field.
    this.rangeToggle.addEventListener("click", () => {
      this._setRangeOpen(!this.rangeOpen);
      if (this.rangeOpen) this.from.focus();
    });
    // The fields are text fields to the shortcuts, which leave their Esc alone.
    this.range.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.closeRange()) {
        event.preventDefault();
        event.stopPropagation();
      }
    });
    // Leaving it by Tab or by a click elsewhere closes it, without taking the focus back.
    this.range.addEventListener("focusout", (event) => {
      if (event.relatedTarget && !this.range.contains(event.relatedTarget)) {
        this._setRangeOpen(false);
      }
    });
    document.addEventListener("pointerdown", (event) => {
      if (this.rangeOpen && !this.range.contains(event.target)) this._setRangeOpen(false);
    });
  }

  _setRangeOpen(open) {
    this.range.classList.toggle("is-open", open);
    this.rangeToggle.setAttribute("aria-expanded", String(open));
  }

  get query() {
    return serializeView(this.view);
  }

  focusSearch() {
    this.search.focus();
    this.search.select();
  }

  // A saved view, or any query string.
  applyQuery(query) {
    this._commit(parseView(query));
  }

  // Rule codes and owners seen in the data, offered in the menus as they appear.
  noteAlert(alert) {
    for (const reason of alert.reasons ?? []) {
      if (reason?.code && !this.rules.has(reason.code))
        this._addOption(this.rule, this.rules, reason.code, ruleLabel(reason.code));
    }
    const owner = alert.owner;
    if (owner && !this.owners.has(owner) && owner !== "me" && owner !== "unowned") {
      this._addOption(this.owner, this.owners, owner, owner);
    }
  }

  _addOption(select, known, value, label) {
    known.add(value);
    // Keep the options sorted after the fixed ones (those with no data-seen).
    const option = h("option", { value, text: label, dataset: { seen: "" } });
    const after = [...select.options].find((o) => "seen" in o.dataset && o.textContent > label);
    select.insertBefore(option, after ?? null);
    if (this.view[select.name] === value) select.value = value;
  }

  _takeSearch() {
    clearTimeout(this._timer);
    const q = this.search.value.trim();
    if (q !== this.view.q) this._commit({ ...this.view, q });
  }

  _commit(view) {
    this.view = view;
    history.replaceState(history.state, "", addressFor(serializeView(view), alertInAddress()));
    this._show();
    this.onChange(view);
  }

  // Controls follow the view (after a saved view, a reload, or a value from the URL).
  _show() {
    const { view } = this;
    if (this.search.value.trim() !== view.q) this.search.value = view.q;
    for (const chip of this.chips) {
      const on = view[chip.dataset.filter].includes(chip.dataset.value);
      chip.setAttribute("aria-pressed", String(on));
    }
    if (view.rule && !this.rules.has(view.rule)) {
      this._addOption(this.rule, this.rules, view.rule, ruleLabel(view.rule));
    }
    if (view.owner && !["me", "unowned"].includes(view.owner) && !this.owners.has(view.owner)) {
      this._addOption(this.owner, this.owners, view.owner, view.owner);
    }
    this.rule.value = view.rule;
    this.owner.value = view.owner;
    this.sort.value = view.sort;
    if (normalizeInstant(this.from.value) !== view.from) this.from.value = toLocalInput(view.from);
    if (normalizeInstant(this.to.value) !== view.to) this.to.value = toLocalInput(view.to);
    this.rangeText.replaceChildren(...describeRange(view.from, view.to));
    this.rangeToggle.title = view.from || view.to ? this.rangeText.textContent : "";
    this.rangeToggle.classList.toggle("is-set", Boolean(view.from || view.to));
    this.clear.hidden = !isFiltered(view);
  }
}
