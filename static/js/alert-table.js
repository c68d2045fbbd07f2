// The alert table: keyed rows over the filtered, sorted list of alerts the page holds.
//
// Only the rows on screen (plus a margin) exist in the DOM, so ten thousand alerts cost
// what forty do; a spacer body above and below gives the scrollbar its true length. Rows
// have one fixed height (measured once), which makes "which rows are visible" arithmetic.
// Redrawn at most once per animation frame (a few times a second under a burst), and held
// still while the analyst is working in it.

import {
  actionButtons,
  actionsKey,
  ageText,
  dataCells,
  presenceBadge,
  selectBox,
  timeContent,
} from "./alert-row.js";
import { h, setText } from "./dom.js";

// Arrivals are highlighted only when they trickle in; a flashing wall of rows is not calm.
const HIGHLIGHT_MAX_ROWS = 5;
// Under a burst (hundreds of alerts a second) the table redraws a few times a second rather
// than every frame: nobody can read faster, and the page stays responsive to input.
const BURST_ROWS = 20;
const BURST_INTERVAL_MS = 250;
// Re-sorting a big list costs a few milliseconds; past this, redraw a few times a second
// rather than every frame even when alerts only trickle in.
const EXPENSIVE_REBUILD_MS = 4;
// Rows kept beyond each edge of the viewport, so a short scroll never shows blank space.
const OVERSCAN = 8;
const FALLBACK_ROW_PX = 53;
// Ages read in seconds for their first minute, and the header's oldest-unacknowledged counts
// every second: a row lagging ten seconds behind it would read as a different alert.
const AGE_EVERY_MS = 1_000;

// What the paused pill and the "new above" button call urgent: a critical alert nobody has
// taken yet (acknowledged, someone is on it; resolved, it is done).
export const urgent = (alert) => alert?.severity === "critical" && alert.status === "open";

export class AlertTable {
  constructor({ wrap, table, tbody, spacers, store, me, canAct, clock, onRender = () => {} }) {
    this.wrap = wrap;
    this.table = table;
    this.tbody = tbody;
    this.spacers = spacers;
    this.store = store;
    this.me = me;
    this.canAct = canAct;
    this.clock = clock;
    this.presence = new Map();
    this.onRender = onRender;
    this.onAction = () => {};
    this.onOpen = () => {};
    this.onCursor = () => {};
    this.onSelection = () => {};
    this.filter = () => true;
    this.lasting = () => true; // the part of the filter no change to an alert can alter
    this.compare = () => 0;
    this.cursorId = null;
    // The alert the page put the cursor on (the one that took the place of an alert that
    // moved away), until the analyst moves to it or acts on it: see moveCursor.
    this._placedId = null;
    this.selected = new Set();

    this._list = []; // store entries ({alert, createdMs}) in display order
    this._positions = new Map(); // alert id → index in _list
    this._rows = new Map(); // alert id → rendered row
    this._dirty = new Set();
    this._added = new Set();
    this._waiting = new Set(); // held: ids of alerts the page holds that would join the list
    this._waitingUrgent = new Set(); // those of them that are urgent (critical, open)
    this._letGo = 0; // alerts that arrived since the list was built and the page let go of
    this._sinceMs = -Infinity; // the newest created_at the page had seen when it was built
    this._pending = new Set();
    this._touched = new Set(); // alert ids changed since the list was last rebuilt
    this._reset = true;
    this._stale = true;
    this._forced = false;
    this._releasing = false; // a held table's one release, the keyboard still in it: finished()
    this._keepCursor = false; // see refreshView
    this._fromTop = false; // the analyst's own new view, shown from its top (setView)
    this._kept = null; // the id of the cursor's row, kept listed though the page let it go
    this._unmatched = new Set(); // listed ids held in place that the view no longer matches
    this._above = new Set(); // listed ids that arrived above the view scrolled down: unseen
    this._frozen = false;
    this._frame = 0;
    this._scrollFrame = 0;
    this._timer = 0;
    this._lastRenderAt = 0;
    this._minInterval = 0;
    this._rebuildMs = 0;
    this._rowPx = FALLBACK_ROW_PX;
    this._headPx = 0;
    this._measured = false;
    this._spacerPx = new Map();

    store.addEventListener("change", (event) => {
      const { reset, ids, added, raised, evicted } = event.detail;
      if (reset) this._reset = true;
      else this._countLetGo(evicted, raised ? [] : added);
      for (const id of ids) {
        this._dirty.add(id);
        // Only a listed alert's change can move the cursor's place (_keepPlace), and the list
        // changes only on a rebuild, which empties this set. While the table is held there is
        // no rebuild: every alert arriving would pile up here for as long as it is held.
        if (this._positions.has(id)) this._touched.add(id);
        else if (this._frozen && !reset) this._noteWaitingId(id);
      }
      for (const id of added) this._added.add(id);
      this._stale = true;
      this.schedule();
    });
    // One delegated listener per event type: rows come and go hundreds of times a second.
    tbody.addEventListener("click", (event) => this._onClick(event));
    tbody.addEventListener("change", (event) => {
      const box = event.target.closest("input[data-select]");
      const id = box?.closest("tr[data-id]")?.dataset.id;
      if (id) this.toggleSelected(id, box.checked);
    });
    // Tabbing into a row moves the cursor there too, so j/k continue from where focus is.
    tbody.addEventListener("focusin", (event) => {
      const id = event.target.closest("tr[data-id]")?.dataset.id;
      if (id && id !== this.cursorId) this.setCursor(id, { scroll: false });
    });
    wrap.addEventListener("scroll", () => this._paintSoon(), { passive: true });
    window.addEventListener("resize", () => {
      this._measured = false;
      this._paintSoon();
    });
    setInterval(() => this._refreshAges(), AGE_EVERY_MS);
  }

  // ---- what is listed -------------------------------------------------------------------

  // A new filter or order is the analyst's own doing: it applies even while rows are held.
  // `lasting` is the part of `filter` that no change to an alert can alter (its search,
  // severity, rule and time range; not its status or owner): see _countLetGo.
  setView(filter, compare, lasting = () => true) {
    this.filter = filter;
    this.lasting = lasting;
    this.compare = compare;
    this._stale = true;
    this._forced = true;
    this._fromTop = true;
    this._above.clear();
    this.wrap.scrollTop = 0;
    this._requestFrame();
  }

  // The rest of the analyst's view change, once the server has answered for it: what a
  // server view loaded, and what it gave back. Like the view itself it applies even while
  // rows are held, or the view would show rows the page no longer has and wait to show
  // those it asked for. One row stays: the cursor's (open in the drawer, or focused), if the
  // view still matches it, until the table is released. It was in this view already, and
  // must not vanish under the analyst because an answer came later.
  refreshView() {
    this._stale = true;
    this._forced = true;
    this._keepCursor = true;
    this._requestFrame();
  }

  get length() {
    return this._list.length;
  }

  listedAlerts() {
    return this._list.map((entry) => entry.alert);
  }

  alertAt(index) {
    return this._list[index]?.alert ?? null;
  }

  indexOf(id) {
    return this._positions.get(id) ?? -1;
  }

  // The row's own copy wins: the store may have evicted an alert still on screen.
  alert(id) {
    return this._rows.get(id)?.alert ?? this.store.get(id) ?? null;
  }

  // ---- holding still --------------------------------------------------------------------

  // While the analyst works in the table, rows must not slide away under the pointer or the
  // keyboard: updates still land in place, and new alerts wait until the table is released.
  setFrozen(frozen) {
    if (frozen === this._frozen) return;
    this._frozen = frozen;
    // A row kept for the cursor goes now; the cursor keeps its place (see _keepPlace).
    if (!frozen && this._kept) {
      this._stale = true;
      this._touched.add(this._kept);
    }
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
        this._requestFrame();
      }, wait);
    } else {
      this._requestFrame();
    }
  }

  _requestFrame() {
    if (!this._frame) this._frame = requestAnimationFrame(() => this._render());
  }

  // Scrolling only moves the window over the same list: no rebuild, no throttle.
  _paintSoon() {
    if (this._frame || this._scrollFrame) return;
    this._scrollFrame = requestAnimationFrame(() => {
      this._scrollFrame = 0;
      this._paint(new Set());
      const above = this._above.size;
      if (!above) return;
      this._pruneAbove();
      if (this._above.size !== above) this.onRender(this._counts());
    });
  }

  // ---- the cursor and the selection -----------------------------------------------------

  // `placed`: the page, not the analyst, put the cursor there (see moveCursor). Any other
  // move to another alert forgets that; giving the same alert focus again (focusTable) does
  // not.
  setCursor(id, { focus = false, scroll = true, placed = false } = {}) {
    if (placed) this._placedId = id;
    else if (this.cursorId !== id) this._placedId = null;
    if (this.cursorId !== id) {
      this._rows.get(this.cursorId)?.tr.classList.remove("is-cursor");
      this.cursorId = id;
    }
    const index = this._positions.get(id);
    if (scroll && index !== undefined) this._scrollIntoView(index);
    const row = this._rows.get(id);
    row?.tr.classList.add("is-cursor");
    if (focus) row?.tr.focus({ preventScroll: true });
    this.onCursor(id);
  }

  // The table's top moved by `by` pixels on screen (the layout above it changed): the view
  // moves with it, so the rows stay where they were. A short list has no room to: it moves.
  keepRowsStill(by) {
    if (Math.abs(by) < 0.5) return;
    this.wrap.scrollTop += by;
    this._paint(new Set());
  }

  // The table grew shorter under the keyboard's row (a notice took room, notices.js): the row
  // stays in sight, as PageDown left it at the edge. Rows the keyboard is not on stay put.
  keepFocusedRowInSight() {
    const index = this._positions.get(this.cursorId);
    const row = this._rows.get(this.cursorId)?.tr;
    if (index !== undefined && row && row === document.activeElement) this._scrollIntoView(index);
  }

  // j/k: the next or previous listed alert, focused. From no cursor, both start at the top.
  // PageDown/PageUp move by pageRows. The row is drawn (scrolled into view) before it is
  // focused: focus on a row the window has not drawn would fall to the page.
  // A cursor the page placed (on the alert that took the place of one that moved away: the
  // analyst resolved it and closed the details, or released the table) stands in the gap
  // before that alert, which the analyst has not been on yet: j lands on it rather than
  // moving past it (a habitual j after Esc skipped an alert every time), and k goes to the
  // one before the gap. Once moved to, or acted on (cursorSeen), it is an ordinary cursor.
  moveCursor(delta) {
    const at = this._positions.get(this.cursorId) ?? -1;
    const from = delta > 0 && at >= 0 && this._placedId === this.cursorId ? at - 1 : at;
    return this.moveCursorTo(from + delta);
  }

  // Home/End: the first or last listed alert; any index is clamped to the list.
  moveCursorTo(index) {
    const n = this._list.length;
    if (!n) return null;
    const alert = this._list[Math.max(0, Math.min(n - 1, index))].alert;
    this._placedId = null;
    this.setCursor(alert.id, { focus: true });
    return alert;
  }

  // The analyst acted on the cursor's alert (opened it, a key on it): no longer just placed.
  cursorSeen() {
    this._placedId = null;
  }

  // The cursor is on the last alert listed, there by the analyst's own doing: the next j
  // has nowhere to go.
  get atEnd() {
    const at = this._positions.get(this.cursorId);
    return at !== undefined && at === this._list.length - 1 && this._placedId !== this.cursorId;
  }

  // The details close on an alert that changed so that it leaves its place (resolved from the
  // drawer, to the end of the queue; out of the view): the cursor steps now to the alert that
  // will take that place, as the release would put it (_keepPlace), while the row stays drawn
  // where it is until the table is released. Left to the release, the cursor landed on the
  // resolved row or on the next one, as the release and the keyboard's return raced.
  leaveMovedAlert() {
    const id = this.cursorId;
    const at = this._positions.get(id);
    if (at === undefined || !this._touched.has(id)) return;
    const current = (i) => this.store.entry(this._list[i].alert.id) ?? this._list[i];
    const steady = (i) => (this._touched.has(this._list[i].alert.id) ? null : current(i));
    let next = null;
    for (let i = at + 1; i < this._list.length && next === null; i += 1) next = steady(i);
    let prev = null;
    for (let i = at - 1; i >= 0 && prev === null; i -= 1) prev = steady(i);
    const entry = this.store.entry(id);
    const inPlace =
      entry !== undefined &&
      this.filter(entry.alert) &&
      (next === null || this.compare(entry, next) < 0) &&
      (prev === null || this.compare(prev, entry) < 0);
    const target = next ?? prev;
    if (!inPlace && target !== null) {
      this.setCursor(target.alert.id, { scroll: false, placed: true });
    }
  }

  // The details closed on the cursor's alert, resolved while they were open: the analyst has
  // finished with it, and is back at the queue before picking the next. The natural moment
  // for a table the keyboard has held for an hour to catch up, once: what waited is listed
  // in its place, the resolved row goes to its own, and the cursor is at its place in the
  // queue (_keepPlace), its row where the resolved one was on screen (_offsetInSight). Then
  // the table holds still again, the keyboard still in it. Drawn now, not on the next frame:
  // the key after the Esc must find the rows where they are shown. Returns whether it did.
  finished() {
    const id = this.cursorId;
    if (!this._frozen || !this._touched.has(id)) return false;
    if ((this.store.get(id) ?? this.alert(id))?.status !== "resolved") return false;
    if (this._kept) this._touched.add(this._kept);
    this._stale = true;
    this._releasing = true;
    cancelAnimationFrame(this._frame);
    clearTimeout(this._timer);
    this._timer = 0;
    this._render();
    return true;
  }

  // A page of rows for PageDown/PageUp: the rows the viewport shows whole, less one, so the
  // row the cursor leaves stays in sight at the edge it scrolls to, as a browser's page does.
  get pageRows() {
    const room = (this.wrap.clientHeight || 800) - this._headPx;
    return Math.max(1, Math.floor(room / this._rowPx) - 1);
  }

  toggleSelected(id, on = !this.selected.has(id)) {
    if (on === this.selected.has(id)) return;
    if (on) this.selected.add(id);
    else this.selected.delete(id);
    const row = this._rows.get(id);
    if (row) this._mark(row);
    this.onSelection(this.selected);
  }

  selectIds(ids) {
    for (const id of ids) this.selected.add(id);
    for (const row of this._rows.values()) this._mark(row);
    this.onSelection(this.selected);
  }

  clearSelection() {
    if (!this.selected.size) return;
    this.selected.clear();
    for (const row of this._rows.values()) this._mark(row);
    this.onSelection(this.selected);
  }

  // ---- busy rows and focus --------------------------------------------------------------

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
    const index = this._positions.get(id);
    if (!this._rows.has(id) && index !== undefined) this._scrollIntoView(index);
    const row = this._rows.get(id);
    if (!row) return false;
    const buttons = [...row.tr.querySelectorAll("button[data-action]")];
    const target =
      buttons.find((button) => button.dataset.action === preferredAction) ?? buttons[0] ?? row.tr;
    target.focus({ preventScroll: true });
    return true;
  }

  // ---- drawing --------------------------------------------------------------------------

  _render() {
    this._frame = 0;
    const initial = this._reset;
    // A fresh snapshot (a reload after a gap or a reset) draws every row anew: the keyboard
    // waits on the table meanwhile and goes back to the cursor's row once it is drawn.
    let refocus = false;
    if (this._reset) {
      this._reset = false;
      this._above.clear();
      this._touched.clear();
      this._rows.clear();
      refocus = this.tbody.contains(document.activeElement);
      if (refocus) this._parkFocus();
      this.tbody.replaceChildren();
    }
    const fresh = this._added.size;
    let place = null;
    if (this._stale && (!this._frozen || initial || this._forced || this._releasing)) {
      // The analyst's own new view starts afresh; anything else keeps their place.
      const keep = !initial && !this._forced;
      const before = this._list;
      const at = this._positions.get(this.cursorId);
      const offset = this._fromTop ? null : this._offsetInSight(at, refocus);
      const anchor = offset === null && !this._fromTop ? this._anchorInView() : null;
      // Before the rebuild empties _waiting: what the release lists is new too.
      const arrived = keep ? [...this._added, ...this._waiting] : [];
      this._rebuild();
      if (keep) place = this._keepPlace(before, at);
      if (offset !== null) this._keepOnScreen(place?.id ?? this.cursorId, offset);
      else if (anchor) this._keepOnScreen(anchor.id, anchor.offset);
      this._noteArrivedAbove(arrived);
      this._touched.clear();
    } else if (this._stale) {
      this._adopt();
      this._noteWaiting();
      this._noteUnmatched();
    }
    const highlight = !initial && fresh <= HIGHLIGHT_MAX_ROWS ? this._added : new Set();
    this._paint(highlight);
    if (this._above.size) this._pruneAbove();
    if (place) this.setCursor(place.id, { scroll: false, focus: place.focus, placed: true });
    else if (refocus && document.activeElement === this.wrap) {
      this._rows.get(this.cursorId)?.tr.focus({ preventScroll: true });
    }
    this._dirty.clear();
    this._added.clear();
    this._lastRenderAt = performance.now();
    const busy = fresh > BURST_ROWS || this._rebuildMs > EXPENSIVE_REBUILD_MS;
    this._minInterval = busy && !initial ? BURST_INTERVAL_MS : 0;
    this.onRender(this._counts());
  }

  // What the summary says, consistent with the rows: `listed` is every row in the list, `matching`
  // only those the view matches now (a row held in place after it stopped matching is drawn
  // but not counted), and `held` the alerts the page has, the row kept for the cursor too.
  // `urgent` and `aboveUrgent`: how many of those waiting, and of those listed above the
  // view unseen, are urgent (critical, and nobody has taken them).
  _counts() {
    const kept = this._kept !== null && !this.store.get(this._kept) ? 1 : 0;
    let aboveUrgent = 0;
    for (const id of this._above) if (urgent(this.alert(id))) aboveUrgent += 1;
    return {
      listed: this._list.length,
      matching: this._list.length - this._unmatched.size,
      held: this.store.size + kept,
      waiting: this._waiting.size,
      urgent: this._waitingUrgent.size,
      letGo: this._letGo,
      above: this._above.size,
      aboveUrgent,
    };
  }

  _rebuild() {
    const started = performance.now();
    const list = [];
    for (const entry of this.store.entries()) if (this.filter(entry.alert)) list.push(entry);
    const kept = this._keeping();
    if (kept) list.push(kept);
    this._kept = kept?.alert.id ?? null;
    this._keepCursor = false;
    this._fromTop = false;
    this._releasing = false;
    list.sort(this.compare);
    this._list = list;
    this._positions = new Map();
    list.forEach((entry, i) => this._positions.set(entry.alert.id, i));
    this._waiting.clear();
    this._waitingUrgent.clear();
    this._letGo = 0;
    this._sinceMs = this.store.newestMs;
    this._unmatched.clear();
    this._stale = false;
    this._forced = false;
    this._rebuildMs = performance.now() - started;
  }

  // The cursor's row, if the page has let go of its alert while the table is held and the
  // view still matches it (see refreshView). Once kept, it stays through any rebuild until
  // the table is released: a search typed with the drawer open must not drop it either.
  _keeping() {
    if (this._releasing || !this._frozen) return null;
    if (!(this._keepCursor || this._kept === this.cursorId)) return null;
    const entry = this._list[this._positions.get(this.cursorId)];
    if (!entry || this.store.get(entry.alert.id) || !this.filter(entry.alert)) return null;
    return entry;
  }

  // The cursor's alert changed and moved away (resolved to the end of the queue, or out of
  // the view): the cursor keeps its place in the queue, on the alert that took it, so the
  // analyst goes on from where they were rather than from wherever that alert went. The
  // neighbours that mark the place are the nearest that did not change themselves. The place
  // is right after the one before it (the top of the queue, with none): the next alert, or
  // one that waited and sorts in there, as a critical alert raised meanwhile does at the top
  // of a queue worked from the top. Taking the next alert always, the cursor went past it,
  // and the view moved with the cursor's row: the critical alerts were above it, out of sight.
  _keepPlace(before, at) {
    const id = this.cursorId;
    if (at === undefined || !this._touched.has(id)) return null;
    const steady = (i) => {
      const other = before[i].alert.id;
      return !this._touched.has(other) && this._positions.has(other) ? other : null;
    };
    let next = null;
    for (let i = at + 1; i < before.length && next === null; i += 1) next = steady(i);
    let prev = null;
    for (let i = at - 1; i >= 0 && prev === null; i -= 1) prev = steady(i);
    const now = this._positions.get(id);
    const inPlace =
      now !== undefined &&
      (next === null || now < this._positions.get(next)) &&
      (prev === null || now > this._positions.get(prev));
    if (inPlace) return null;
    const after = prev === null ? 0 : this._positions.get(prev) + 1;
    let target = this._list[after]?.alert.id ?? null;
    if (target === null || target === id) target = next ?? prev;
    if (target === null) return null;
    const focus = this._rows.get(id)?.tr.contains(document.activeElement) ?? false;
    return { id: target, focus };
  }

  // Alerts listed above the cursor's row (a reload's, a release's, a live update's) push it
  // down the list, and with the view left where it was, out of sight: after PageDown it sits
  // at the foot of the view, and two critical alerts sorting above it took it two rows under
  // the edge. The view moves with the row instead, so it stays where it was on screen, as the
  // browser's scroll anchoring keeps a row of a real list. Only for the keyboard's row (the
  // cursor's, focused, or about to be again after a reload) or the held table's cursor, in
  // sight before: a feed nobody is working in still shows its new alerts at the top.
  // `keepFocus` is the reload's (see _render): the row is not drawn any more, focus waits.
  _offsetInSight(index, keepFocus) {
    if (index === undefined) return null;
    const row = this._rows.get(this.cursorId)?.tr;
    const keyboard = keepFocus || (row?.contains(document.activeElement) ?? false);
    if (!keyboard && !this._frozen) return null;
    const offset = index * this._rowPx - this.wrap.scrollTop;
    const room = this.wrap.clientHeight - this._headPx;
    return offset + this._rowPx > 0 && offset < room ? offset : null;
  }

  // A table scrolled down that nobody is working in: the rows the analyst is reading stay
  // where they are on screen, as the browser's scroll anchoring keeps a real list, however
  // many alerts are listed above them (a live one, the release of a held table, one resolved
  // by someone else leaving from above). They moved down a row with each, out of sight in a
  // burst. The anchor is the top row in view that did not change itself (a row resolved
  // meanwhile leaves its place); at the very top nothing is anchored, and new alerts show
  // there (_noteArrivedAbove counts the others).
  _anchorInView() {
    const top = this.wrap.scrollTop;
    const n = this._list.length;
    if (top <= 0 || !n) return null;
    const first = Math.min(n - 1, Math.floor(top / this._rowPx));
    const room = this.wrap.clientHeight - this._headPx;
    const last = Math.min(n, Math.ceil((top + room) / this._rowPx));
    let at = first;
    for (let i = first; i < last; i += 1) {
      if (!this._touched.has(this._list[i].alert.id)) {
        at = i;
        break;
      }
    }
    return { id: this._list[at].alert.id, offset: at * this._rowPx - top };
  }

  // Alerts newly listed wholly above the view: the analyst does not see them arrive, so the
  // page says how many (`3 new above`) until they are scrolled to (or shown: showAbove).
  _noteArrivedAbove(ids) {
    const top = this.wrap.scrollTop;
    if (top <= 0) return;
    for (const id of ids) {
      const at = this._positions.get(id);
      if (at !== undefined && (at + 1) * this._rowPx <= top) this._above.add(id);
    }
  }

  // Those listed above the view any more: scrolled into it (or past), or gone from the list.
  _pruneAbove() {
    const top = this.wrap.scrollTop;
    for (const id of this._above) {
      const at = this._positions.get(id);
      if (at === undefined || (at + 1) * this._rowPx > top) this._above.delete(id);
    }
  }

  // The "new above" button: the view scrolls up to the highest of them.
  showAbove() {
    let first = Infinity;
    for (const id of this._above) first = Math.min(first, this._positions.get(id) ?? Infinity);
    this._above.clear();
    if (first !== Infinity) this.wrap.scrollTop = first * this._rowPx;
    this._paint(new Set());
    this.onRender(this._counts());
  }

  // The row `id` back at `offset` from the top of the view, where the cursor's row was (the
  // alert that took the cursor's place, if its own moved away: _keepPlace).
  _keepOnScreen(id, offset) {
    const index = this._positions.get(id);
    if (index === undefined) return;
    const top = Math.max(0, index * this._rowPx - offset);
    if (Math.abs(top - this.wrap.scrollTop) < 1) return;
    // The spacers still measure the list as it was drawn: room first, or the browser would
    // clamp the scroll to the old length (_paint sets them right next).
    this._setSpacer(this.spacers.bottom, this._list.length * this._rowPx);
    this.wrap.scrollTop = top;
  }

  // Held: a listed row whose alert the page had let go of (the drawer's kept row) and holds
  // again, brought back by an update, takes the page's entry, so the row, and what the
  // keyboard acts on, is the alert as it is now rather than the copy it was drawn from.
  _adopt() {
    for (const id of this._dirty) {
      const at = this._positions.get(id);
      if (at === undefined) continue;
      const entry = this.store.entry(id);
      if (entry && entry !== this._list[at]) this._list[at] = entry;
    }
  }

  // Held: count what would join the list, without moving anything.
  _noteWaiting() {
    for (const id of this._dirty) this._noteWaitingId(id);
  }

  // Only alerts the page still holds wait: held for an hour at hundreds of alerts a second,
  // the page lets go of the oldest at its memory cap (AlertStore), and their ids must not
  // pile up here, nor be promised as "new" when the release cannot show them (they are
  // counted instead: _countLetGo). Called as each change arrives while held, since an alert
  // can arrive and be let go of before the next frame; and for what changed before the
  // table was held, on the next frame.
  _noteWaitingId(id) {
    if (this._positions.has(id)) return;
    const alert = this.store.get(id);
    if (alert && this.filter(alert)) this._waiting.add(id);
    else this._waiting.delete(id);
    if (this._waiting.has(id) && urgent(alert)) this._waitingUrgent.add(id);
    else this._waitingUrgent.delete(id);
  }

  // "M more on the server": the alerts that arrived since the list was built, that the view
  // would list, and that the page no longer holds, each once. Counted as the store lets them
  // go at its cap and uncounted as they come back (someone acknowledged, resolved or
  // reopened one: the change brings it back to the page, and it waits among the new), so an
  // alert let go of, updated and let go of again is one alert, not two. Without keeping the
  // id of each alert let go of (an hour held is a million of them), that needs a test of
  // "counted" that gives the same answer when an alert leaves as when it comes back:
  // - arrived since the list was built: created no earlier than the newest alert the page
  //   had seen then (the server raises alerts in created_at order), and not listed;
  // - in the view: the filter's lasting part only. Once let go of, an alert's status and
  //   owner change on the server unseen, so they cannot decide whether it was counted.
  // An alert raised and let go of in the same change (created before all the page holds) is
  // let go of without coming back: counted.
  _countLetGo(evicted, returned) {
    const left = new Map(evicted.map((entry) => [entry.alert.id, entry]));
    for (const entry of evicted) if (this._arrived(entry)) this._letGo += 1;
    for (const id of returned) {
      // Back, and perhaps let go of again in the same change (it is among the oldest).
      const entry = this.store.entry(id) ?? left.get(id);
      if (entry && this._arrived(entry) && this._letGo > 0) this._letGo -= 1;
    }
  }

  _arrived(entry) {
    return (
      entry.createdMs >= this._sinceMs &&
      !this._positions.has(entry.alert.id) &&
      this.lasting(entry.alert)
    );
  }

  // Held: a listed row that changed stays in place, matching the view or not. One whose alert
  // the page let go of (evicted at the memory cap) stays too, but it is no longer among the
  // alerts the page holds (`held` in _counts), so it does not count as matching either. The
  // row kept for the drawer is the exception: it is counted as held (see _keeping).
  _noteUnmatched() {
    for (const id of this._dirty) {
      const entry = this._list[this._positions.get(id)];
      if (!entry) continue;
      const held = id === this._kept || this.store.get(id) !== undefined;
      if (held && this.filter(entry.alert)) this._unmatched.delete(id);
      else this._unmatched.add(id);
    }
  }

  _window() {
    const n = this._list.length;
    const rowPx = this._rowPx;
    const top = Math.max(0, this.wrap.scrollTop - this._headPx);
    const height = this.wrap.clientHeight || 800;
    const visible = Math.ceil(height / rowPx);
    let first = Math.max(0, Math.floor(top / rowPx) - OVERSCAN);
    // A list that just shrank under a deep scroll: show its end until the browser clamps.
    first = Math.min(first, Math.max(0, n - visible - 2 * OVERSCAN));
    const last = Math.min(n, Math.floor(top / rowPx) + visible + OVERSCAN);
    return [first, Math.max(first, last)];
  }

  _paint(highlight) {
    const [first, last] = this._window();
    const wanted = new Set();
    for (let i = first; i < last; i += 1) wanted.add(this._list[i].alert.id);
    const leaving = [...this._rows].filter(([id]) => !wanted.has(id));
    // Before any row goes: focusing lays the page out, and a layout with rows gone and the
    // spacers not yet grown would clamp a scroll just set far down (_scrollIntoView): the
    // row it was for would land out of sight.
    if (leaving.some(([, row]) => row.tr.contains(document.activeElement))) this._parkFocus();
    // Remove leavers first, so the rows that stay never move (moving drops their focus).
    for (const [id, row] of leaving) {
      row.tr.remove();
      this._rows.delete(id);
    }
    let cursor = this.tbody.firstElementChild;
    for (let i = first; i < last; i += 1) {
      const alert = this._list[i].alert;
      let row = this._rows.get(alert.id);
      if (!row) {
        row = this._createRow(alert, highlight.has(alert.id));
        this._rows.set(alert.id, row);
      } else if (row.alert !== alert) {
        this._updateRow(row, alert);
      }
      if (row.index !== i) {
        row.index = i;
        row.tr.setAttribute("aria-rowindex", String(i + 2));
      }
      if (row.tr === cursor) cursor = cursor.nextElementSibling;
      else this.tbody.insertBefore(row.tr, cursor);
    }
    this._setSpacer(this.spacers.top, first * this._rowPx);
    this._setSpacer(this.spacers.bottom, (this._list.length - last) * this._rowPx);
    this.table.setAttribute("aria-rowcount", String(this._list.length + 1));
    if (!this._measured && this._rows.size) this._measure();
  }

  // The focused row scrolled out of the drawn window (the wheel, the scrollbar) or is
  // drawn afresh: the keyboard stays in the table, not on the page, and j/k go on from
  // the cursor. The table stays held as it was (hold.js).
  _parkFocus() {
    this.wrap.focus({ preventScroll: true });
  }

  // Row height comes from the stylesheet; measuring once keeps the arithmetic true at any
  // zoom level or font size. A wrong guess only costs one repaint.
  _measure() {
    this._measured = true;
    const rowPx = this.tbody.firstElementChild.getBoundingClientRect().height;
    this._headPx = this.table.tHead?.getBoundingClientRect().height ?? 0;
    if (rowPx > 0 && Math.abs(rowPx - this._rowPx) > 0.25) {
      this._rowPx = rowPx;
      this._paint(new Set());
    }
  }

  _setSpacer(body, px) {
    if (this._spacerPx.get(body) === px) return;
    this._spacerPx.set(body, px);
    body.hidden = px <= 0;
    // CSSOM, not a style attribute: the page's CSP allows no inline styles.
    body.querySelector("td").style.height = `${px}px`;
  }

  _scrollIntoView(index) {
    const rowTop = index * this._rowPx;
    const room = this.wrap.clientHeight - this._headPx;
    if (rowTop < this.wrap.scrollTop) this.wrap.scrollTop = rowTop;
    else if (rowTop + this._rowPx > this.wrap.scrollTop + room) {
      this.wrap.scrollTop = rowTop + this._rowPx - room;
    }
    // Now, not on the scroll event: the caller is about to focus the row.
    this._paint(new Set());
  }

  _refreshAges() {
    const now = this.clock.now();
    for (const row of this._rows.values()) setText(row.ageNode, ageText(row.alert, now));
  }

  _onClick(event) {
    const row = event.target.closest("tr[data-id]");
    if (!row) return;
    const button = event.target.closest("button[data-action]");
    const alert = this._rows.get(row.dataset.id)?.alert;
    if (!alert) return;
    if (button) {
      if (button.getAttribute("aria-disabled") !== "true") {
        this.onAction(button.dataset.action, alert, button);
      }
      return;
    }
    // The checkbox selects; anywhere else on the row opens the details.
    if (event.target.closest("input, label, a, button")) return;
    this.setCursor(alert.id, { scroll: false });
    this.onOpen(alert);
  }

  _createRow(alert, isNew) {
    const tr = h("tr", { tabindex: "-1", className: isNew ? "is-new" : null });
    const check = this.canAct ? selectBox(alert) : null;
    const slot = h("span", { className: "select-cell" }, [check]);
    tr.append(h("td", { className: "time" }, [slot]));
    const row = {
      tr,
      alert: null,
      index: -1,
      check,
      slot,
      timeText: null,
      ageNode: null,
      cells: null,
      presenceNode: null,
      actionsKey: null,
      actionsCell: h("td", { className: "actions" }),
    };
    this._updateRow(row, alert);
    return row;
  }

  // Others looking at an alert right now (the server's presence messages; never "me").
  setPresence(alertId, users) {
    const others = (users ?? []).filter((user) => user !== this.me);
    if (others.length) this.presence.set(alertId, others);
    else this.presence.delete(alertId);
    const row = this._rows.get(alertId);
    if (row) this._paintPresence(row);
  }

  clearPresence() {
    for (const id of [...this.presence.keys()]) this.setPresence(id, []);
  }

  _paintPresence(row) {
    // Under the account id (a second line; rows have one fixed height).
    const badge = presenceBadge(this.presence.get(row.alert.id));
    if (row.presenceNode) row.presenceNode.remove();
    row.presenceNode = badge;
    if (badge && row.cells) row.cells[0].append(badge);
  }

  _mark(row) {
    const selected = this.selected.has(row.alert.id);
    row.tr.classList.toggle("is-selected", selected);
    row.tr.classList.toggle("is-cursor", row.alert.id === this.cursorId);
    if (row.check && row.check.checked !== selected) row.check.checked = selected;
  }

  _updateRow(row, alert) {
    const { tr } = row;
    row.alert = alert;
    tr.dataset.id = alert.id;
    tr.dataset.status = alert.status;
    tr.dataset.severity = alert.severity;
    tr.classList.toggle("is-resolved", alert.status === "resolved");
    tr.classList.toggle("is-mine", Boolean(alert.owner) && alert.owner === this.me);

    // Replace cells' contents one by one and never detach the checkbox or the actions
    // cell: moving a focused control out of the document would throw the keyboard away.
    const text = timeContent(alert, this.clock.now());
    if (row.timeText) row.timeText.replaceWith(text);
    else row.slot.append(text);
    row.timeText = text;
    row.ageNode = text.querySelector(".age");
    const cells = dataCells(alert, this.me);
    if (row.cells) {
      row.cells.forEach((cell, i) => cell.replaceWith(cells[i]));
    } else {
      tr.append(...cells, row.actionsCell);
    }
    row.cells = cells;
    this._paintPresence(row);
    this._mark(row);

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
