// Small per-browser settings in localStorage. A browser that refuses storage (private mode,
// a full quota) just forgets them; nothing here is worth an error.

const PREFIX = "fraudwatch.";

export function loadPref(key, fallback) {
  try {
    const raw = localStorage.getItem(PREFIX + key);
    return raw === null ? fallback : JSON.parse(raw);
  } catch {
    return fallback;
  }
}

export function savePref(key, value) {
  try {
    localStorage.setItem(PREFIX + key, JSON.stringify(value));
    return true;
  } catch {
    return false;
  }
}
