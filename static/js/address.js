// The address bar holds what the analyst is looking at, so that a reload or a shared link
// shows it again: the view's filters (view.js, written by filter-bar.js) and the alert open
// in the details drawer, `alert=ID`, after them:
//
//   /?severity=critical,high&alert=1a2371f4d564116cde60e
//
// Filtering replaces the history entry (it is not navigation). Opening the drawer pushes
// one, so Back closes the drawer rather than leaving the page, as a phone's Back closes a
// panel over the page; j/k moving the open drawer along the queue replace it (Back is not
// a walk through every alert looked at). Closing the drawer takes the alert out of the
// address: by going back over the entry its opening pushed, when this page pushed it, so
// that Back then leaves the page as before; else (opened from a link, or a reload) by
// replacing the entry.

const PARAM = "alert";
// Entries this page pushed carry its mark: an entry pushed before a reload is the old
// page's, and going back over it would load the page again.
const MARK = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;

// The alert id in the address bar, or null.
export function alertInAddress() {
  return new URLSearchParams(location.search).get(PARAM) || null;
}

// The address for the view's query string (`?q=…`, or "": serializeView's, which never holds
// an alert) with `alertId` open (or none).
export function addressFor(query, alertId) {
  const alert = alertId ? `${query ? "&" : "?"}${PARAM}=${encodeURIComponent(alertId)}` : "";
  return `${location.pathname}${query}${alert}${location.hash}`;
}

export class DrawerAddress {
  // `query()`: the view's query string as it is now. `onChange(id)`: Back or Forward moved
  // to an entry with another alert open (id), or none (null): open or close the drawer.
  constructor({ query, onChange }) {
    this.query = query;
    this.onChange = onChange;
    this._shown = alertInAddress(); // what the drawer shows, as last told (show())
    this._back = false; // our own history.back(), not yet arrived
    addEventListener("popstate", () => {
      if (this._back) {
        // Closing went back over the entry it pushed. The drawer may have opened again
        // since (Esc, Enter): the address follows the drawer, not the entry.
        this._back = false;
        this._write(this._shown, { push: Boolean(this._shown) });
        return;
      }
      // Back or Forward. The filters are not history: the entry may hold older ones, and
      // the address keeps those in force, with the entry's alert.
      const id = alertInAddress();
      this._write(id);
      this._shown = id;
      this.onChange(id);
    });
  }

  // The drawer shows `id` now (null: it closed).
  show(id) {
    const before = this._shown;
    this._shown = id;
    if (this._back || id === before) return;
    if (id && !before) this._write(id, { push: true });
    else if (id) this._write(id);
    else if (history.state?.drawer === MARK) {
      // Back over the entry the opening pushed; popstate then writes the address.
      this._back = true;
      history.back();
    } else this._write(null);
  }

  _write(id, { push = false } = {}) {
    const url = addressFor(this.query(), id);
    const state = { ...history.state };
    delete state.drawer;
    if (push) history.pushState({ ...state, drawer: MARK }, "", url);
    else history.replaceState(id ? history.state : state, "", url);
  }
}
