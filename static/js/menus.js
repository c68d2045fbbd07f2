// Menus and panels that float over the page. Saved views and Notifications are menu buttons
// (MenuButton, below); the footer's delivery and detection panels are disclosures, a
// <details> each: a summary that shows a panel of figures, nothing to choose from. One open
// at a time; a click elsewhere or Esc closes it, and Esc hands focus back to its button.

const DETAILS = "details.integrity";
const menuButtons = new Set();

const openDetails = () => [...document.querySelectorAll(DETAILS)].filter((menu) => menu.open);

export function installMenus() {
  document.addEventListener("pointerdown", (event) => {
    for (const menu of openDetails()) if (!menu.contains(event.target)) menu.open = false;
  });
  // Capture phase, registered before the shortcuts: an Esc that closes a menu does nothing else.
  document.addEventListener(
    "keydown",
    (event) => {
      if (event.key !== "Escape" || event.defaultPrevented) return;
      const [menu] = openDetails();
      const button = [...menuButtons].find((item) => item.isOpen);
      if (!menu && !button) return;
      event.preventDefault();
      if (button) {
        button.close({ focus: true });
        return;
      }
      menu.open = false;
      menu.querySelector("summary")?.focus();
    },
    { capture: true },
  );
  // "toggle" does not bubble, but it does pass through the capture phase.
  document.addEventListener(
    "toggle",
    (event) => {
      if (!event.target.matches?.(DETAILS) || !event.target.open) return;
      for (const menu of openDetails()) if (menu !== event.target) menu.open = false;
      for (const button of menuButtons) button.close();
    },
    { capture: true },
  );
}

// A menu button: a <button aria-expanded aria-controls> and the panel it shows and hides.
// A <summary> is announced as a disclosure triangle, not a button, in some screen readers.
// Not role="menu": Saved views' panel holds a text field and a Save button beside its links,
// Notifications' two checkboxes, which a menu may not; by the keyboard it works as a menu
// button does. Enter, Space or ↓ open it with the keyboard on its first item (↑: its last),
// ↑ and ↓ move through its items (`items`, a selector: links by default), Esc closes it
// with the keyboard back on the button, and Tab out of it or a click elsewhere closes it.
export class MenuButton {
  constructor(button, panel, { onOpen = () => {}, items = "a[href]" } = {}) {
    this.button = button;
    this.panel = panel;
    this.onOpen = onOpen;
    this.items = items;
    menuButtons.add(this);
    button.addEventListener("click", () => {
      if (this.isOpen) this.close();
      else this.open();
    });
    button.addEventListener("keydown", (event) => {
      if (event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
      event.preventDefault();
      this.open({ last: event.key === "ArrowUp" });
    });
    panel.addEventListener("keydown", (event) => {
      if (event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
      const links = this._links();
      const at = links.indexOf(document.activeElement);
      if (at < 0) return;
      event.preventDefault();
      const step = event.key === "ArrowDown" ? 1 : -1;
      links[(at + step + links.length) % links.length].focus();
    });
    panel.addEventListener("focusout", (event) => {
      const to = event.relatedTarget;
      if (to && !panel.contains(to) && to !== button) this.close();
    });
    document.addEventListener("pointerdown", (event) => {
      if (this.isOpen && !panel.contains(event.target) && !button.contains(event.target)) {
        this.close();
      }
    });
  }

  get isOpen() {
    return this.button.getAttribute("aria-expanded") === "true";
  }

  open({ last = false } = {}) {
    if (!this.isOpen) {
      for (const menu of openDetails()) menu.open = false;
      for (const other of menuButtons) if (other !== this) other.close();
      this.panel.hidden = false;
      this.button.setAttribute("aria-expanded", "true");
      this.onOpen();
    }
    const links = this._links();
    (last ? links.at(-1) : links[0])?.focus();
  }

  close({ focus = false } = {}) {
    if (!this.isOpen) return;
    this.panel.hidden = true;
    this.button.setAttribute("aria-expanded", "false");
    if (focus) this.button.focus();
  }

  _links() {
    return [...this.panel.querySelectorAll(this.items)];
  }
}
