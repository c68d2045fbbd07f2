// Non-blocking messages: short-lived notices in a polite live region, and a throttled
// screen-reader announcer that sums up new alerts instead of reading each one.

import { h } from "./dom.js";

const MAX_NOTICES = 4;
const NOTICE_MS = 8_000;
const ANNOUNCE_EVERY_MS = 10_000;
const ROOM_GAP_PX = 8;
// app.css's phone layout: the page scrolls, and the table is a window's height less the
// panel head.
const PAGE_SCROLLS = "(max-width: 760px)";

export class Notices {
  // `keepClear`: the element notices must leave clear, the queue's table. Notices sit
  // bottom-right, where the last rows' Ack / Fraud / Legitimate buttons were (after every
  // single resolve, the Undo notice over the next rows' buttons): while any shows, the
  // table gives up the room under them (--notice-room, app.css) rather than lie beneath.
  //
  // `drawer`: the details drawer's body, which notices must leave clear too: its note box
  // and Assign to field are at its foot when the keyboard is in them (scrolled into view),
  // where notices lay over them as the analyst typed. While notices lie over the drawer it
  // gives up the room under them (--notice-room-drawer, app.css), and onRoom keeps the
  // field in view.
  constructor(container, { keepClear = null, drawer = null } = {}) {
    this.container = container;
    this.keepClear = keepClear;
    this.drawer = drawer;
    this._room = 0;
    this._drawerRoom = 0;
    this._frame = 0;
    // Called once the room has changed: the table it shortened keeps the keyboard's row in
    // sight (app.js).
    this.onRoom = () => {};
    if (keepClear) {
      // In the next frame, not in the observer's callback: the room resizes the table, which
      // would call the observer again within the same frame.
      const observer = new ResizeObserver(() => {
        this._frame ||= requestAnimationFrame(() => this._fit());
      });
      observer.observe(container);
      observer.observe(keepClear);
      if (drawer) observer.observe(drawer);
      // Where the page scrolls, where the table starts decides which edge they take.
      addEventListener("scroll", () => this._place(), { passive: true });
    }
  }

  // How far the notices reach from the edge of the window they are at (the bottom, or the
  // top: _place), with their distance from it.
  _reach() {
    const box = this.container.getBoundingClientRect();
    const edge = this.container.classList.contains("is-top") ? box.top : innerHeight - box.bottom;
    return edge + box.height;
  }

  // On a phone the page scrolls, and higher up (its top: header, counters, filters) the table
  // starts low on the screen, where notices at the bottom lay over its first rows: there
  // they take the top of the screen, over what is above the table, and the bottom again
  // once the table reaches up to them: the edge where they would cover less of it.
  // Elsewhere, and with no notices, the bottom.
  // Over the open drawer (a phone's, as wide as the screen), the bottom: at the top they
  // lay over its title, close button and actions, and the drawer gives up its foot instead.
  _place() {
    let top = false;
    if (
      this.container.childElementCount &&
      matchMedia(PAGE_SCROLLS).matches &&
      !this._overDrawer(this.container.getBoundingClientRect())
    ) {
      const table = this.keepClear.getBoundingClientRect();
      const reach = this._reach() + ROOM_GAP_PX;
      top = reach - table.top < table.bottom - (innerHeight - reach);
    }
    if (top !== this.container.classList.contains("is-top")) {
      this.container.classList.toggle("is-top", top);
    }
  }

  // The room the table gives up: as far as the notices reach up over where it ends without
  // the room (nothing, when they lie beside it: over the drawer). Where the page scrolls, the
  // table is as tall as the window less the room the notices take from its bottom.
  _fit() {
    this._frame = 0;
    this._place();
    let room = 0;
    let drawerRoom = 0;
    if (this.container.childElementCount) {
      const box = this.container.getBoundingClientRect();
      if (matchMedia(PAGE_SCROLLS).matches) {
        room = this._reach() + ROOM_GAP_PX;
      } else {
        const table = this.keepClear.getBoundingClientRect();
        const beside = box.left >= table.right || box.right <= table.left;
        if (!beside) room = table.bottom + this._room - box.top + ROOM_GAP_PX;
      }
      // The drawer's foot, under notices at the bottom (_place keeps them there over it).
      if (this._overDrawer(box) && !this.container.classList.contains("is-top")) {
        const body = this.drawer.getBoundingClientRect();
        drawerRoom = body.bottom + this._drawerRoom - box.top + ROOM_GAP_PX;
      }
    }
    room = Math.max(0, Math.ceil(room));
    drawerRoom = Math.max(0, Math.ceil(drawerRoom));
    if (room === this._room && drawerRoom === this._drawerRoom) return;
    const style = document.documentElement.style;
    if (room !== this._room) style.setProperty("--notice-room", `${room}px`);
    if (drawerRoom !== this._drawerRoom) style.setProperty("--notice-room-drawer", `${drawerRoom}px`);
    this._room = room;
    this._drawerRoom = drawerRoom;
    this.onRoom();
  }

  // Whether notices in `box` lie across the open drawer's body, side to side.
  _overDrawer(box) {
    if (!this.drawer?.getClientRects().length) return false;
    const body = this.drawer.getBoundingClientRect();
    return box.right > body.left && box.left < body.right;
  }

  // kind: "info" | "warning" | "error". `sticky` notices stay until dismissed. `details`
  // is a list of lines shown under the message (per-item results of a bulk action).
  // `action` ({text, run}) is a button under the message that runs `run` and dismisses it.
  show(
    message,
    { kind = "info", sticky = false, link = null, key = null, details = [], action = null } = {},
  ) {
    if (key) this.container.querySelector(`[data-key="${CSS.escape(key)}"]`)?.remove();
    const dismiss = h("button", {
      type: "button",
      className: "notice-dismiss",
      "aria-label": "Dismiss",
      text: "×",
    });
    const button = action
      ? h("button", { type: "button", className: "btn btn-small notice-action", text: action.text })
      : null;
    const notice = h("div", { className: `notice notice-${kind}`, dataset: key ? { key } : {} }, [
      h("p", { className: "notice-text", text: message }),
      details.length
        ? h(
            "ul",
            { className: "notice-details" },
            details.map((line) => h("li", { text: line })),
          )
        : null,
      link ? h("a", { href: link.href, className: "notice-link", text: link.text }) : null,
      button,
      dismiss,
    ]);
    let timer = null;
    const remove = () => {
      clearTimeout(timer);
      notice.remove();
    };
    const arm = () => {
      if (!sticky) timer = setTimeout(remove, NOTICE_MS);
    };
    dismiss.addEventListener("click", remove);
    button?.addEventListener("click", () => {
      action.run();
      remove();
    });
    // Hold a notice while it is being read or reached by keyboard.
    notice.addEventListener("mouseenter", () => clearTimeout(timer));
    notice.addEventListener("mouseleave", arm);
    notice.addEventListener("focusin", () => clearTimeout(timer));
    notice.addEventListener("focusout", arm);
    this.container.append(notice);
    while (this.container.children.length > MAX_NOTICES) this.container.firstElementChild.remove();
    arm();
    return remove;
  }

  has(key) {
    return this.container.querySelector(`[data-key="${CSS.escape(key)}"]`) !== null;
  }

  clear(key) {
    this.container.querySelector(`[data-key="${CSS.escape(key)}"]`)?.remove();
  }
}

export class Announcer {
  constructor(region) {
    this.region = region;
    this._count = 0;
    this._timer = null;
    this._lastAt = 0;
  }

  newAlerts(n = 1) {
    this._count += n;
    if (this._timer !== null) return;
    const wait = Math.max(0, this._lastAt + ANNOUNCE_EVERY_MS - Date.now());
    this._timer = setTimeout(() => this._flush(), wait);
  }

  _flush() {
    this._timer = null;
    this._lastAt = Date.now();
    const n = this._count;
    this._count = 0;
    if (n > 0) this.region.textContent = n === 1 ? "1 new alert" : `${n} new alerts`;
  }
}
