// The dashboard's live feed, faked in the page (an init script): `new WebSocket(".../ws")`
// gets an object that speaks the socket's API (events, readyState, send, close) and whose
// frames come from window.__flood, so that alerts reach the page's own socket.js as text
// frames as fast as the page can take them, without a server to raise them. Any other
// WebSocket is the browser's own. Used by tests/test_dashboard_memory.py and
// benchmarks/dashboard_flood.py.
//
//   await __flood.send(template, from, n)   alerts from .. from + n - 1, copies of `template`
//                                           with their own ids and times; returns the last seq
(() => {
  const Real = window.WebSocket;
  const now = () => new Date().toISOString();

  class FakeFeed extends EventTarget {
    constructor(url) {
      super();
      this.url = url;
      this.readyState = 0;
      // Resume where the page's snapshot left off: its hello says nothing was missed.
      this.seq = Number(new URL(url).searchParams.get("since") ?? 0);
      window.__flood.socket = this;
      setTimeout(() => {
        this.readyState = 1;
        this.dispatchEvent(new Event("open"));
        this.frame({
          type: "hello",
          seq: this.seq,
          user: document.querySelector('meta[name="fw-user"]')?.content ?? "",
          simulated: true,
          verdicts: false,
          dispositions: ["fraud", "legitimate", "duplicate"],
          recent_stats: [],
          stats: null,
          server_time: now(),
        });
      }, 0);
    }

    frame(message) {
      this.dispatchEvent(new MessageEvent("message", { data: JSON.stringify(message) }));
    }

    send() {}

    close(code = 1000, reason = "") {
      if (this.readyState === 3) return;
      this.readyState = 3;
      this.dispatchEvent(new CloseEvent("close", { code, reason }));
    }
  }

  function WebSocket(url, protocols) {
    return new URL(url, location.href).pathname === "/ws"
      ? new FakeFeed(url)
      : new Real(url, protocols);
  }
  Object.assign(WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
  window.WebSocket = WebSocket;

  window.__flood = {
    socket: null,
    // 100 frames a task: the browser hands a busy socket's frames over in bursts too.
    async send(template, from, n) {
      const ws = this.socket;
      for (let i = from; i < from + n; i += 1) {
        const at = now();
        const id = String(i).padStart(8, "0");
        const account = `flood-acct-${String(Math.floor(i / 10)).padStart(7, "0")}`;
        const transaction = {
          ...template.transaction,
          id: `flood-tx-${id}`,
          account_id: account,
          timestamp: at,
        };
        ws.seq += 1;
        ws.frame({
          type: "alert",
          seq: ws.seq,
          alert: {
            ...template,
            id: `flood-${id}`,
            transaction_id: transaction.id,
            account_id: account,
            created_at: at,
            updated_at: at,
            received_at: at,
            transaction,
          },
        });
        if ((i - from) % 100 === 99) await new Promise((resolve) => setTimeout(resolve, 0));
      }
      return ws.seq;
    },
  };

  // A stats message every second, as the server sends them.
  setInterval(
    () =>
      window.__flood.socket?.frame({
        type: "stats",
        server_time: now(),
        tx_per_s: 300,
        alerts_per_s: 68,
        alerts: 68,
        open_alerts: 20000,
        rejected_total: 0,
      }),
    1000,
  );
})();
