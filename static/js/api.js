// fetch helpers: same-origin credentials, CSRF header on every state change, one error shape.

import { parseJson } from "./json.js";

export class ApiError extends Error {
  constructor(status, code, message, { field = null, body = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.field = field;
    this.body = body;
  }

  get unauthenticated() {
    return this.status === 401;
  }
}

function csrfToken() {
  return document.querySelector('meta[name="csrf-token"]')?.content ?? "";
}

async function request(method, url, body) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (method !== "GET") {
    init.headers["Content-Type"] = "application/json";
    init.headers["X-CSRF-Token"] = csrfToken();
    init.body = JSON.stringify(body ?? {});
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch {
    throw new ApiError(0, "network", "The server could not be reached. Check your connection.");
  }
  // An expired session may answer with a redirect to the login page rather than JSON.
  if (response.redirected && new URL(response.url).pathname === "/login") {
    throw new ApiError(401, "unauthenticated", "Your session has ended. Sign in again.");
  }
  let data = null;
  if ((response.headers.get("Content-Type") ?? "").includes("application/json")) {
    try {
      data = parseJson(await response.text());
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const error = data?.error ?? {};
    throw new ApiError(
      response.status,
      error.code ?? `http_${response.status}`,
      error.message ?? `The server answered ${response.status} ${response.statusText}.`.trim(),
      { field: error.field ?? null, body: data },
    );
  }
  if (data === null) {
    throw new ApiError(response.status, "bad_response", "The server sent an unexpected answer.");
  }
  return data;
}

export function listAlerts({
  statuses = ["open", "acknowledged"],
  limit = 500,
  cursor = null,
  filters = {},
} = {}) {
  const query = new URLSearchParams({ status: statuses.join(","), limit: String(limit) });
  if (cursor) query.set("cursor", cursor);
  // Server-side filters: severity, rule, owner, q, from, to (see docs/api.md).
  for (const [key, value] of Object.entries(filters)) if (value) query.set(key, value);
  return request("GET", `/api/v1/alerts?${query}`);
}

// {alert, audit: [{at, actor, action, alert_id, detail}]}
export function getAlert(id) {
  return request("GET", `/api/v1/alerts/${encodeURIComponent(id)}`);
}

export function acknowledgeAlert(id) {
  return request("POST", `/api/v1/alerts/${encodeURIComponent(id)}/ack`, {});
}

export function resolveAlert(id, disposition, note) {
  const body = { disposition };
  if (note) body.note = note;
  return request("POST", `/api/v1/alerts/${encodeURIComponent(id)}/resolve`, body);
}

const alertUrl = (id, action) => `/api/v1/alerts/${encodeURIComponent(id)}/${action}`;

export function unacknowledgeAlert(id) {
  return request("POST", alertUrl(id, "unack"), {});
}

export function assignAlert(id, owner) {
  return request("POST", alertUrl(id, "assign"), { owner });
}

export function reopenAlert(id, note) {
  return request("POST", alertUrl(id, "reopen"), note ? { note } : {});
}

// {account_id, transactions: [{transaction, verdict, received_at}], next_cursor}
export function accountTransactions(accountId, limit = 50) {
  const query = new URLSearchParams({ limit: String(limit) });
  return request("GET", `/api/v1/accounts/${encodeURIComponent(accountId)}/transactions?${query}`);
}

// {note, alert, seq}
export function addNote(id, text) {
  return request("POST", alertUrl(id, "notes"), { text });
}

// {alert, seq}; alert is null when nothing is left to take.
export function claimNext() {
  return request("POST", "/api/v1/alerts/next", {});
}

// ---- admin (an admin's session only) ----

// {users: [{name, role, created_at, updated_at}]}
export function listUsers() {
  return request("GET", "/api/v1/users");
}

// {user}; password may be omitted for an existing user (it is kept).
export function putUser(name, role, password) {
  const body = { role };
  if (password) body.password = password;
  return request("PUT", `/api/v1/users/${encodeURIComponent(name)}`, body);
}

export function deleteUser(name) {
  return request("DELETE", `/api/v1/users/${encodeURIComponent(name)}`, {});
}

// {settings: {name: value}, hidden: [names]}
export function getSettings() {
  return request("GET", "/api/v1/settings");
}

// {rules_version, files, rules, settings, lists}
export function getRules() {
  return request("GET", "/api/v1/rules");
}

// The same object as getRules() plus previous_version. A refused reload is an ApiError
// with code "invalid_rules" whose body holds `errors`, one line per problem.
export function reloadRules() {
  return request("POST", "/api/v1/rules/reload", {});
}
