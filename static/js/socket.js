// The live alert feed: one WebSocket that resumes from the last applied seq, with capped
// exponential backoff and jitter, and reports its state as events.
//
// Events (CustomEvent, payload in `detail`):
//   state   {state: "connecting"|"live"|"reconnecting"|"offline"|"stopped", attempt, delayMs,
//            nextAt (ms epoch of the next attempt, or 0)}
//   hello   the server's hello message
//   alert   {type, seq, alert}: each alert/alert_updated exactly once, in seq order
//   gap     {after, seq}: seq jumped past events this page never received
//   caught-up  {seq}: the replay of events committed before this socket has ended
//   unauthorized  the server closed the socket because the session ended
//   reset   {since, reason}: the server's log never reached `since` (a restart on a fresh
//           store): the socket has stopped; start it again from a fresh snapshot's seq
//   stats   the server's stats message
//   server-error  the server's error message

import { parseJson } from "./json.js";

const MIN_DELAY_MS = 500;
const MAX_DELAY_MS = 10_000;
// A connection that stayed up this long was healthy: the next failure starts backoff afresh.
const HEALTHY_AFTER_MS = 5_000;
// Stats arrive about once a second, so a quiet socket is probably half-open (a laptop that
// slept, a proxy that dropped it): ping after a while, give up on it a while later.
const PING_AFTER_MS = 15_000;
const DEAD_AFTER_MS = 40_000;
const WATCHDOG_MS = 5_000;
// The server's close code for a socket whose credentials ended (echoes HTTP 401).
const CLOSE_UNAUTHORIZED = 4401;
// The server's close code for a `since` past its log's last seq: retrying it cannot help.
const CLOSE_SINCE_AHEAD = 4409;
// Frames are queued as they arrive and handled in slices of this much main-thread time. The
// browser can hand over hundreds of frames in one task during a burst; parsing them all there
// would freeze the page for as long.
const SLICE_MS = 8;
// How much of a frame that is not JSON the console shows.
const FRAME_EXCERPT = 120;

// What a failure was handling, for the console: the message's type (and seq), else the event.
function describeEvent(type, detail) {
  const kind = typeof detail?.type === "string" ? detail.type : null;
  if (!kind) return `the "${type}" event`;
  const seq = Number.isInteger(detail.seq) ? ` (seq ${detail.seq})` : "";
  return `a "${kind}" message${seq}`;
}

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
    this._inbox = [];
    this._draining = false;
    this._wake = new MessageChannel();
    this._wake.port1.onmessage = () => this._drain();
    // What the delivery-integrity panel shows. seq is gapless on the server (every alert
    // event gets the next number), so a jump of more than one is an event this page missed.
    this.delivery = { gaps: 0, missed: 0, duplicates: 0, connects: 0, reconnects: 0 };
    this._onOnline = () => this._retryNow();
    this._onOffline = () => {
      if (this.state !== "live") this._setState("offline");
    };
    this._onVisible = () => {
      if (document.visibilityState === "visible") this._retryNow();
    };
    // listener -> (type -> its guarded wrapper), so removeEventListener finds the wrapper.
    this._guards = new WeakMap();
  }

  // Every listener runs guarded: one that throws is logged with the message it was handling
  // and costs nothing else. (dispatchEvent would report it too, but without saying which
  // message, and an error in the feed's own handling left the frame queue stuck, so no
  // later frame, the next hello included, was handled: the page sat in "Reconnecting…" on a
  // socket that was fine.)
  addEventListener(type, listener, options) {
    if (!listener) return;
    let byType = this._guards.get(listener);
    if (!byType) {
      byType = new Map();
      this._guards.set(listener, byType);
    }
    let guarded = byType.get(type);
    if (!guarded) {
      guarded = (event) => {
        try {
          if (typeof listener === "function") listener.call(this, event);
          else listener.handleEvent(event);
        } catch (error) {
          console.error(`Live feed: handling ${describeEvent(type, event.detail)} failed:`, error);
        }
      };
      byType.set(type, guarded);
    }
    super.addEventListener(type, guarded, options);
  }

  removeEventListener(type, listener, options) {
    const guarded = listener && this._guards.get(listener)?.get(type);
    super.removeEventListener(type, guarded ?? listener, options);
  }

  // When the last message of any kind arrived (stats come about once a second), or 0.
  get lastMessageAt() {
    return this._lastMessageAt;
  }

  // Live, but the events committed before this socket (hello.seq) are still being replayed:
  // what the page shows is older than the feed.
  get catchingUp() {
    return this.state === "live" && this.lastSeq !== null && this.lastSeq < (this._helloSeq ?? 0);
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
    } catch (error) {
      console.error("Live feed: could not open the WebSocket:", error);
      this._scheduleReconnect();
      return;
    }
    this._ws = ws;
    ws.addEventListener("message", (event) => {
      if (this._ws !== ws) return;
      this._lastMessageAt = Date.now();
      this._inbox.push(event.data);
      if (!this._draining) {
        this._draining = true;
        this._wake.port2.postMessage(null);
      }
    });
    ws.addEventListener("close", (event) => {
      if (this._ws !== ws) return;
      this._ws = null;
      // Everything received counts before the resume point is taken.
      this._drain(Number.POSITIVE_INFINITY);
      // The server ended this session (logged out, expired): reconnecting cannot help.
      if (event.code === CLOSE_UNAUTHORIZED) {
        this.stop();
        this._emit("unauthorized", { reason: event.reason });
        return;
      }
      if (event.code === CLOSE_SINCE_AHEAD) {
        this.stop();
        this._emit("reset", { since: this.lastSeq, reason: event.reason });
        return;
      }
      if (this._liveSince && Date.now() - this._liveSince >= HEALTHY_AFTER_MS) this._attempt = 0;
      this._liveSince = 0;
      this._scheduleReconnect();
    });
    // "error" is always followed by "close", where the reconnect happens.
  }

  // Handle queued frames for up to `budgetMs`, then yield to the page and continue after.
  _drain(budgetMs = SLICE_MS) {
    const deadline = performance.now() + budgetMs;
    let i = 0;
    while (i < this._inbox.length && performance.now() < deadline) {
      const raw = this._inbox[i];
      i += 1;
      // A frame that breaks the feed's own handling is logged and passed over: thrown out of
      // here, it left `_draining` set, and no frame after it was ever handled.
      try {
        this._onMessage(raw);
      } catch (error) {
        console.error("Live feed: handling a message failed:", error);
      }
    }
    this._inbox.splice(0, i);
    this._draining = this._inbox.length > 0;
    if (this._draining) this._wake.port2.postMessage(null);
  }

  _closeSocket() {
    // Stopping drops what is queued: whoever stops either gives up or reloads a snapshot.
    this._inbox = [];
    this._draining = false;
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
      this._drain(Number.POSITIVE_INFINITY);
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
    this._pinged = false;
    let message;
    try {
      message = parseJson(raw);
    } catch (error) {
      const text = typeof raw === "string" ? raw.slice(0, FRAME_EXCERPT) : String(raw);
      console.error(`Live feed: dropped a frame that is not JSON (${error.message}): ${text}`);
      return;
    }
    if (message === null || typeof message !== "object") {
      console.error("Live feed: dropped a frame that is not a JSON object:", message);
      return;
    }
    switch (message.type) {
      case "hello":
        this.delivery.connects += 1;
        if (this.delivery.connects > 1) this.delivery.reconnects += 1;
        this._liveSince = Date.now();
        // Events up to hello.seq were committed before this socket: a replay, not live.
        this._helloSeq = Number.isInteger(message.seq) ? message.seq : 0;
        this._setState("live");
        this._emit("hello", message);
        break;
      case "alert":
      case "alert_updated": {
        if (typeof message.seq !== "number" || !message.alert) return;
        // A replay after reconnect can overlap what was already applied: apply each seq once.
        if (this.lastSeq !== null && message.seq <= this.lastSeq) {
          this.delivery.duplicates += 1;
          return;
        }
        if (this.lastSeq !== null && message.seq > this.lastSeq + 1) {
          this.delivery.gaps += 1;
          this.delivery.missed += message.seq - this.lastSeq - 1;
          this._emit("gap", { after: this.lastSeq, seq: message.seq });
        }
        const wasCatchingUp = this.catchingUp;
        this.lastSeq = message.seq;
        message.replayed = message.seq <= (this._helloSeq ?? 0);
        this._emit("alert", message);
        // Said at once: whoever shows "catching up" should not wait for its next tick.
        if (wasCatchingUp && this.state === "live" && !this.catchingUp) {
          this._emit("caught-up", { seq: message.seq });
        }
        break;
      }
      case "stats":
        this._emit("stats", message);
        break;
      case "presence":
        this._emit("presence", message);
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
      const nextAt = delayMs ? Date.now() + delayMs : 0;
      this._emit("state", { state, attempt: this._attempt, delayMs, nextAt });
    }
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
