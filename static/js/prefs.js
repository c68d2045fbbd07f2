// Small per-browser settings in localStorage, and with `{ tab: true }` per-tab state in
// sessionStorage (kept across a reload, gone with the tab). A browser that refuses storage
// (private mode, a full quota) just forgets them; nothing here is worth an error.

const PREFIX = "fraudwatch.";

// Inside the callers' try: reading either property can itself throw where storage is refused.
const storage = (tab) => (tab ? sessionStorage : localStorage);

export function loadPref(key, fallback, { tab = false } = {}) {
  try {
    const raw = storage(tab).getItem(PREFIX + key);
    return raw === null ? fallback : JSON.parse(raw);
  } catch {
    return fallback;
  }
}

export function savePref(key, value, { tab = false } = {}) {
  try {
    storage(tab).setItem(PREFIX + key, JSON.stringify(value));
    return true;
  } catch {
    return false;
  }
}
