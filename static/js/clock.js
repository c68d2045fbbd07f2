// The server's clock as seen from this page. Alert ages are measured from server timestamps
// (created_at), so a laptop clock that is a few minutes off must not age every alert.

export class Clock {
  constructor() {
    this.offsetMs = 0;
  }

  // hello.server_time, taken when the message arrived: good to the socket's one-way delay.
  sync(serverIso, receivedAt = Date.now()) {
    const server = Date.parse(serverIso);
    if (!Number.isNaN(server)) this.offsetMs = server - receivedAt;
  }

  now() {
    return Date.now() + this.offsetMs;
  }
}
