// The view: which alerts the table lists and in what order. It lives in the address bar's
// query string, so a view can be shared as a link and survives a reload. Pure functions.
//
//   ?q=acct-7&status=open,acknowledged&severity=critical&rule=card_testing&owner=me&sort=newest
//   &from=2026-03-02T14:00:00.000Z&to=2026-03-02T15:00:00.000Z   (event time, UTC)
//
// `owner=me` means whoever opens the link, not whoever shared it.

export const STATUSES = ["open", "acknowledged", "resolved"];
export const SEVERITIES = ["critical", "high", "medium", "low"];
export const SORTS = ["priority", "newest"];

const SEVERITY_RANK = { critical: 0, high: 1, medium: 2, low: 3 };
const MAX_QUERY = 200;

export function emptyView() {
  return {
    q: "",
    status: [],
    severity: [],
    rule: "",
    owner: "",
    sort: "priority",
    from: "",
    to: "",
  };
}

// An instant as the URL keeps it (UTC, RFC 3339), or "" for anything that is not one.
export function normalizeInstant(value) {
  if (!value) return "";
  const ms = Date.parse(value);
  return Number.isFinite(ms) ? new Date(ms).toISOString() : "";
}

// Known values only, in canonical order, so equal views serialize equally.
function listParam(params, name, allowed) {
  const given = new Set(
    (params.get(name) ?? "")
      .split(",")
      .map((value) => value.trim().toLowerCase())
      .filter(Boolean),
  );
  return allowed.filter((value) => given.has(value));
}

export function parseView(search) {
  const params = new URLSearchParams(search);
  const sort = params.get("sort");
  return {
    q: (params.get("q") ?? "").trim().slice(0, MAX_QUERY),
    status: listParam(params, "status", STATUSES),
    severity: listParam(params, "severity", SEVERITIES),
    rule: (params.get("rule") ?? "").trim(),
    owner: (params.get("owner") ?? "").trim(),
    sort: SORTS.includes(sort) ? sort : "priority",
    from: normalizeInstant(params.get("from")),
    to: normalizeInstant(params.get("to")),
  };
}

// "?status=open,acknowledged&q=acct%207", or "" for the default view. Commas and colons
// (in times) stay readable.
export function serializeView(view) {
  const parts = [];
  const add = (key, value) => {
    if (value) {
      const text = encodeURIComponent(value).replaceAll("%2C", ",").replaceAll("%3A", ":");
      parts.push(`${key}=${text}`);
    }
  };
  add("q", view.q);
  add("status", view.status.join(","));
  add("severity", view.severity.join(","));
  add("rule", view.rule);
  add("owner", view.owner);
  if (view.sort !== "priority") add("sort", view.sort);
  add("from", view.from);
  add("to", view.to);
  return parts.length ? `?${parts.join("&")}` : "";
}

export function isFiltered(view) {
  return Boolean(
    view.q ||
      view.status.length ||
      view.severity.length ||
      view.rule ||
      view.owner ||
      view.from ||
      view.to,
  );
}

// Lower-cased ids and names the free-text search looks through, computed once per alert
// object (every update brings a new object, so the cache never goes stale).
const searchTexts = new WeakMap();

function searchText(alert) {
  let text = searchTexts.get(alert);
  if (text === undefined) {
    const tx = alert.transaction ?? {};
    text = [alert.id, alert.account_id, alert.transaction_id, tx.merchant_id, tx.merchant_name]
      .filter((value) => value !== null && value !== undefined)
      .join("\n")
      .toLowerCase();
    searchTexts.set(alert, text);
  }
  return text;
}

export function hasRule(alert, code) {
  return Array.isArray(alert.reasons) && alert.reasons.some((reason) => reason?.code === code);
}

export function matcher(view, me) {
  const statuses = view.status.length ? new Set(view.status) : null;
  const severities = view.severity.length ? new Set(view.severity) : null;
  const terms = view.q.toLowerCase().split(/\s+/).filter(Boolean);
  const { rule, owner } = view;
  const fromMs = view.from ? Date.parse(view.from) : null;
  const toMs = view.to ? Date.parse(view.to) : null;
  return (alert) => {
    if (fromMs !== null || toMs !== null) {
      const eventMs = Date.parse(alert.transaction?.timestamp);
      if (fromMs !== null && !(eventMs >= fromMs)) return false;
      if (toMs !== null && !(eventMs <= toMs)) return false;
    }
    if (statuses && !statuses.has(alert.status)) return false;
    if (severities && !severities.has(alert.severity)) return false;
    if (rule && !hasRule(alert, rule)) return false;
    if (owner === "me" && alert.owner !== me) return false;
    if (owner === "unowned" && alert.owner) return false;
    if (owner && owner !== "me" && owner !== "unowned" && alert.owner !== owner) return false;
    if (terms.length) {
      const text = searchText(alert);
      for (const term of terms) if (!text.includes(term)) return false;
    }
    return true;
  };
}

// The part of the view's filter that no change to an alert can alter: its search, severity,
// rule and time range, not its status or owner (which another analyst changes at any time).
export function lastingMatcher(view, me) {
  return matcher({ ...view, status: [], owner: "" }, me);
}

// Comparators over store entries ({alert, createdMs, eventMs}).
//
// "priority" (the default) is a work queue: unresolved before resolved, then severity
// (critical first), then the alert that has waited longest. Oldest-first within a severity
// means a steady stream of new alerts cannot bury one that has been waiting for an hour.
// "newest" is the raw feed, the server's own order.
function byId(a, b) {
  return a.alert.id < b.alert.id ? -1 : a.alert.id > b.alert.id ? 1 : 0;
}

function priority(a, b) {
  const doneA = a.alert.status === "resolved" ? 1 : 0;
  const doneB = b.alert.status === "resolved" ? 1 : 0;
  if (doneA !== doneB) return doneA - doneB;
  const sevA = SEVERITY_RANK[a.alert.severity] ?? 9;
  const sevB = SEVERITY_RANK[b.alert.severity] ?? 9;
  if (sevA !== sevB) return sevA - sevB;
  if (a.createdMs !== b.createdMs) return a.createdMs - b.createdMs;
  // Raised in the same batch (the same millisecond): in the order the transactions happened.
  if (a.eventMs !== b.eventMs) return a.eventMs - b.eventMs;
  return byId(a, b);
}

function newest(a, b) {
  if (a.createdMs !== b.createdMs) return b.createdMs - a.createdMs;
  return byId(b, a);
}

export function comparator(sort) {
  return sort === "newest" ? newest : priority;
}

export function describeSort(sort) {
  return sort === "newest" ? "newest first" : "by severity, oldest first";
}
