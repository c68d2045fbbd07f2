// The alerts the page knows about: upsert by id, newest first, bounded in memory.
//
// Every WebSocket message carries an alert's full state, so an upsert replaces the whole
// record. Answers to our own REST calls arrive outside the seq order, so they are merged
// only when they are not older than what we hold (status only moves forward).

const STATUS_RANK = { open: 0, acknowledged: 1, resolved: 2 };
const EVICT_SLACK = 200;

function createdMs(alert) {
  const ms = Date.parse(alert.created_at);
  return Number.isNaN(ms) ? 0 : ms;
}

// The transaction's own time: alerts raised in the same millisecond keep their event order.
function eventMs(alert) {
  const ms = Date.parse(alert.transaction?.timestamp);
  return Number.isNaN(ms) ? 0 : ms;
}

// Newest first, the server's order: created_at, then id, both descending.
function newerFirst(a, b) {
  if (a.createdMs !== b.createdMs) return b.createdMs - a.createdMs;
  return a.alert.id < b.alert.id ? 1 : a.alert.id > b.alert.id ? -1 : 0;
}

export class AlertStore extends EventTarget {
  // `capacity` bounds memory on a tab left open for a shift at hundreds of alerts a second;
  // totals shown to the analyst come from the server's counters, not from this store.
  constructor({ capacity = 2000 } = {}) {
    super();
    this.capacity = capacity;
    this._entries = new Map();
    this._order = [];
    // The newest created_at (ms) of any alert the store has put, those it let go of too: one
    // number, so a table can tell what arrived after the list it drew without keeping ids.
    this.newestMs = -Infinity;
  }

  get size() {
    return this._entries.size;
  }

  get(id) {
    return this._entries.get(id)?.alert;
  }

  // The entry ({alert, createdMs, eventMs}) the store holds for `id`, or undefined.
  entry(id) {
    return this._entries.get(id);
  }

  // The newest `limit` alerts, newest first.
  newest(limit) {
    return this._order.slice(0, limit).map((entry) => entry.alert);
  }

  // Every entry ({alert, createdMs, eventMs}), newest first. Entries are stable objects: an update
  // replaces `entry.alert` in place. Read-only for callers.
  entries() {
    return this._order;
  }

  count(predicate) {
    let n = 0;
    for (const { alert } of this._entries.values()) if (predicate(alert)) n += 1;
    return n;
  }

  reset(alerts) {
    this._entries.clear();
    this._order = [];
    for (const alert of alerts) this._put(alert);
    this._evict();
    this._changed({ reset: true, ids: [], added: [], raised: false, evicted: [] });
  }

  // State from the WebSocket, which is authoritative and in order. `raised`: this is the
  // alert's first event (`alert`, not `alert_updated`), which the server sends once per alert.
  // An alert added otherwise is one the page let go of (or never loaded) coming back with a
  // change. The change names the alerts evicted to make room too, with their entries: a table
  // holding rows still must know it lost them, and what they were.
  upsert(alert, { raised = false } = {}) {
    const added = this._put(alert);
    // Trim in steps, not on every alert: eviction walks the whole list.
    const evicted = this._order.length > this.capacity + EVICT_SLACK ? this._evict() : [];
    this._changed({
      reset: false,
      ids: [alert.id, ...evicted.map((entry) => entry.alert.id)],
      added: added ? [alert.id] : [],
      raised,
      evicted,
    });
  }

  // State from a REST answer: keep it only if it is not older than ours. Alerts can go
  // back (release, reopen), so the change time decides; the status only breaks a tie.
  merge(alert) {
    const current = this.get(alert.id);
    if (current) {
      const newer = String(alert.updated_at);
      const older = String(current.updated_at);
      if (newer < older) return;
      const rankNew = STATUS_RANK[alert.status] ?? 0;
      const rankOld = STATUS_RANK[current.status] ?? 0;
      if (newer === older && rankNew < rankOld) return;
    }
    this.upsert(alert);
  }

  // Forget these alerts (those a view borrowed from the server, once it has gone).
  remove(ids) {
    const gone = ids.filter((id) => this._entries.has(id));
    if (!gone.length) return;
    const entries = new Set(gone.map((id) => this._entries.get(id)));
    this._order = this._order.filter((entry) => !entries.has(entry));
    for (const id of gone) this._entries.delete(id);
    this._changed({ reset: false, ids: gone, added: [], raised: false, evicted: [] });
  }

  _put(alert) {
    const existing = this._entries.get(alert.id);
    if (existing) {
      existing.alert = alert;
      return false;
    }
    const entry = { alert, createdMs: createdMs(alert), eventMs: eventMs(alert) };
    this._entries.set(alert.id, entry);
    if (entry.createdMs > this.newestMs) this.newestMs = entry.createdMs;
    let lo = 0;
    let hi = this._order.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (newerFirst(this._order[mid], entry) <= 0) lo = mid + 1;
      else hi = mid;
    }
    this._order.splice(lo, 0, entry);
    return true;
  }

  // Drop the oldest resolved alerts first, then the oldest of any status. Returns their
  // entries.
  _evict() {
    let over = this._order.length - this.capacity;
    if (over <= 0) return [];
    const dropped = new Set();
    for (let i = this._order.length - 1; i >= 0 && dropped.size < over; i -= 1) {
      if (this._order[i].alert.status === "resolved") dropped.add(this._order[i]);
    }
    over -= dropped.size;
    for (let i = this._order.length - 1; i >= 0 && over > 0; i -= 1) {
      if (!dropped.has(this._order[i])) {
        dropped.add(this._order[i]);
        over -= 1;
      }
    }
    this._order = this._order.filter((entry) => !dropped.has(entry));
    for (const entry of dropped) this._entries.delete(entry.alert.id);
    return [...dropped];
  }

  _changed(detail) {
    this.dispatchEvent(new CustomEvent("change", { detail }));
  }
}
