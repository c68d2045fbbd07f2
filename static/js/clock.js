// The server's clock as seen from this page. Alert ages are measured from server timestamps
// (created_at), so a laptop clock that is a few minutes off must not age every alert.

export class Clock {
  constructor() {
    this.offsetMs = 0;
  }

  // hello.server_time, taken when the message arrived: good to the socket's one-way delay.
  sync(serverIso, receivedAt = Date.now()) {
    const server = Date.parse(serverIso);
    if (Number.isNaN(server)) return;
    this.offsetMs = server - receivedAt;
    this._samples = [this.offsetMs];
  }

  // stats.server_time, about once a second. Each sample reads low by its message's delay,
  // so the largest of the recent ones is the closest to the truth.
  observe(serverIso, receivedAt = Date.now()) {
    const server = Date.parse(serverIso);
    if (Number.isNaN(server)) return;
    this._samples = [...(this._samples ?? []), server - receivedAt].slice(-60);
    this.offsetMs = Math.max(...this._samples);
  }

  now() {
    return Date.now() + this.offsetMs;
  }

  // A server timestamp on this page's clock (ms), or NaN.
  toLocal(serverIso) {
    return Date.parse(serverIso) - this.offsetMs;
  }
}
