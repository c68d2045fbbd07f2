// The live alert feed: one WebSocket that resumes from the last applied seq, with capped
// exponential backoff and jitter, and reports its state as events.
//
// Events (CustomEvent, payload in `detail`):
//   state   {state: "connecting"|"live"|"reconnecting"|"offline"|"stopped", attempt, delayMs}
//   hello   the server's hello message
//   alert   {type, seq, alert}: each alert/alert_updated exactly once, in seq order
//   stats   the server's stats message
//   server-error  the server's error message

const MIN_DELAY_MS = 500;
const MAX_DELAY_MS = 10_000;
// A connection that stayed up this long was healthy: the next failure starts backoff afresh.
const HEALTHY_AFTER_MS = 5_000;
// Stats arrive about once a second, so a quiet socket is probably half-open (a laptop that
// slept, a proxy that dropped it): ping after a while, give up on it a while later.
const PING_AFTER_MS = 15_000;
const DEAD_AFTER_MS = 40_000;
const WATCHDOG_MS = 5_000;

export function backoffDelay(attempt, min = MIN_DELAY_MS, max = MAX_DELAY_MS) {
  const cap = Math.min(max, min * 2 ** attempt);
  // "Equal jitter": never less than half the cap, so a crowd of dashboards spreads out
  // after a server restart without any of them hammering it.
  return Math.round(cap / 2 + Math.random() * (cap / 2));
}

export function socketUrl(path, since) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const url = new URL(path, `${scheme}//${location.host}`);
  if (since !== null && since !== undefined) url.searchParams.set("since", String(since));
  return url.href;
}

export class LiveSocket extends EventTarget {
  constructor({ path = "/ws" } = {}) {
    super();
    this.path = path;
    this.lastSeq = null;
    this.state = "stopped";
    this._ws = null;
    this._attempt = 0;
    this._timer = null;
    this._watchdog = null;
    this._liveSince = 0;
    this._lastMessageAt = 0;
    this._pinged = false;
    this._wanted = false;
    this._onOnline = () => this._retryNow();
    this._onOffline = () => {
      if (this.state !== "live") this._setState("offline");
    };
    this._onVisible = () => {
      if (document.visibilityState === "visible") this._retryNow();
    };
  }

  start() {
    if (this._wanted) return;
    this._wanted = true;
    window.addEventListener("online", this._onOnline);
    window.addEventListener("offline", this._onOffline);
    document.addEventListener("visibilitychange", this._onVisible);
    this._watchdog = setInterval(() => this._checkAlive(), WATCHDOG_MS);
    this._connect();
  }

  stop() {
    this._wanted = false;
    window.removeEventListener("online", this._onOnline);
    window.removeEventListener("offline", this._onOffline);
    document.removeEventListener("visibilitychange", this._onVisible);
    clearInterval(this._watchdog);
    clearTimeout(this._timer);
    this._timer = null;
    this._closeSocket();
    this._setState("stopped");
  }

  send(message) {
    if (this._ws?.readyState === WebSocket.OPEN) this._ws.send(JSON.stringify(message));
  }

  _connect() {
    this._timer = null;
    if (!this._wanted) return;
    if (this.state !== "reconnecting" && this.state !== "offline") this._setState("connecting");
    let ws;
    try {
      ws = new WebSocket(socketUrl(this.path, this.lastSeq));
    } catch {
      this._scheduleReconnect();
      return;
    }
    this._ws = ws;
    ws.addEventListener("message", (event) => {
      if (this._ws === ws) this._onMessage(event.data);
    });
    ws.addEventListener("close", () => {
      if (this._ws !== ws) return;
      this._ws = null;
      if (this._liveSince && Date.now() - this._liveSince >= HEALTHY_AFTER_MS) this._attempt = 0;
      this._liveSince = 0;
      this._scheduleReconnect();
    });
    // "error" is always followed by "close", where the reconnect happens.
  }

  _closeSocket() {
    const ws = this._ws;
    this._ws = null;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000);
  }

  _scheduleReconnect() {
    if (!this._wanted || this._timer !== null) return;
    const delayMs = backoffDelay(this._attempt);
    this._attempt += 1;
    this._timer = setTimeout(() => this._connect(), delayMs);
    this._setState(navigator.onLine === false ? "offline" : "reconnecting", delayMs);
  }

  _retryNow() {
    if (!this._wanted || this._timer === null) return;
    clearTimeout(this._timer);
    this._connect();
  }

  _checkAlive() {
    if (this.state !== "live" || !this._ws) return;
    const quiet = Date.now() - this._lastMessageAt;
    if (quiet >= DEAD_AFTER_MS) {
      const ws = this._ws;
      this._ws = null;
      ws.close(4000, "no messages");
      this._liveSince = 0;
      this._scheduleReconnect();
    } else if (quiet >= PING_AFTER_MS && !this._pinged) {
      this._pinged = true;
      this.send({ type: "ping" });
    }
  }

  _onMessage(raw) {
    this._lastMessageAt = Date.now();
    this._pinged = false;
    let message;
    try {
      message = JSON.parse(raw);
    } catch {
      return;
    }
    if (message === null || typeof message !== "object") return;
    switch (message.type) {
      case "hello":
        this._liveSince = Date.now();
        this._setState("live");
        this._emit("hello", message);
        break;
      case "alert":
      case "alert_updated":
        if (typeof message.seq !== "number" || !message.alert) return;
        // A replay after reconnect can overlap what was already applied: apply each seq once.
        if (this.lastSeq !== null && message.seq <= this.lastSeq) return;
        this.lastSeq = message.seq;
        this._emit("alert", message);
        break;
      case "stats":
        this._emit("stats", message);
        break;
      case "error":
        this._emit("server-error", message);
        break;
      default:
        // pong, verdicts and anything newer than this client: nothing to do.
        break;
    }
  }

  _setState(state, delayMs = 0) {
    const changed = state !== this.state;
    this.state = state;
    if (changed || state === "reconnecting" || state === "offline") {
      this._emit("state", { state, attempt: this._attempt, delayMs });
    }
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
