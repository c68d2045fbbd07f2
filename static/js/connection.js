// The connection indicator: a pill with the state word (a status region, so changes are
// announced) and, beside it, the detail that changes every second and so is not announced:
// when the next attempt is, since when the feed has been down, how old the data is. It reads
// the feed (the LiveSocket) for when the last message came and whether it is caught up.

import { setText } from "./dom.js";
import { formatAge, formatClock } from "./format.js";

const CONNECTION_TEXT = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  offline: "Offline",
  stopped: "Offline",
  "signed-out": "Signed out",
};
// Stats arrive about once a second, so under this the data is as fresh as it gets.
const FRESH_MS = 2_500;

export class ConnectionIndicator {
  constructor(node, detail, feed) {
    this.node = node;
    this.text = node.querySelector(".conn-text");
    this.detail = detail;
    this.feed = feed;
    this.state = node.dataset.state;
    this.attempt = 0;
    this.nextAt = 0;
    this.downSince = 0;
  }

  set(state, { attempt = 0, nextAt = 0 } = {}) {
    if (state === "live") this.downSince = 0;
    else if (!this.downSince && state !== "connecting") this.downSince = Date.now();
    this.state = state;
    this.attempt = attempt;
    this.nextAt = nextAt;
    this.node.dataset.state = state;
    setText(this.text, CONNECTION_TEXT[state] ?? state);
    this.tick();
  }

  get isLive() {
    return this.state === "live";
  }

  // Once a second, and on every state change. "Just now" only while live and caught up: the
  // last message before a drop is no news of now, however recent, and after a reconnect
  // neither is the feed until the events missed meanwhile have come in.
  tick() {
    const { lastMessageAt } = this.feed;
    const now = Date.now();
    const quiet = lastMessageAt ? now - lastMessageAt : null;
    // At least "1 s": a page that is not live never reads "0 s ago".
    const updated = quiet === null ? null : `last update ${formatAge(Math.max(quiet, 1000))} ago`;
    const parts = [];
    switch (this.state) {
      case "live":
        if (this.feed.catchingUp) parts.push("catching up");
        else parts.push(quiet !== null && quiet < FRESH_MS ? "updated just now" : updated);
        break;
      case "reconnecting": {
        const wait = Math.ceil((this.nextAt - now) / 1000);
        parts.push(`attempt ${this.attempt}`, wait > 0 ? `next try in ${wait} s` : "trying now");
        if (this.downSince) parts.push(`down since ${formatClock(this.downSince)}`);
        parts.push(updated);
        break;
      }
      case "offline":
      case "stopped":
        parts.push(this.downSince ? `since ${formatClock(this.downSince)}` : null, updated);
        break;
      case "signed-out":
        parts.push("sign in again to resume", updated);
        break;
      default:
        break;
    }
    const text = parts.filter(Boolean).join(" · ");
    setText(this.detail, text);
  }
}
