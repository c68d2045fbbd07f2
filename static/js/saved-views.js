// Saved views: named query strings kept in this browser, listed in a menu next to a few
// built-in ones. Each entry is an ordinary link, so it can also be opened in a new tab or
// copied and shared.

import { h } from "./dom.js";
import { MenuButton } from "./menus.js";
import { loadPref, savePref } from "./prefs.js";

const BUILT_IN = [
  { name: "Everything", query: "" },
  { name: "Unowned critical and high", query: "?status=open&severity=critical,high" },
  { name: "Held by me", query: "?status=acknowledged&owner=me" },
  { name: "Resolved, newest first", query: "?status=resolved&sort=newest" },
];
const MAX_SAVED = 30;

function loadSaved() {
  const saved = loadPref("views", []);
  return Array.isArray(saved)
    ? saved.filter((v) => typeof v?.name === "string" && typeof v?.query === "string")
    : [];
}

export class SavedViews {
  constructor(menu, { currentQuery, apply, notices, onChosen = () => {} }) {
    this.list = menu.querySelector("#view-list");
    this.nameInput = menu.querySelector("#view-name");
    this.saveButton = menu.querySelector("#view-save");
    this.currentQuery = currentQuery;
    this.apply = apply;
    this.notices = notices;
    this.saved = loadSaved();
    const button = menu.querySelector("#views-button");
    const panel = menu.querySelector("#views-panel");
    this.button = new MenuButton(button, panel, { onOpen: () => this.render() });

    this.saveButton.addEventListener("click", () => this.saveCurrent());
    this.nameInput.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        this.saveCurrent();
      }
    });
    this.list.addEventListener("click", (event) => {
      const remove = event.target.closest("button[data-remove]");
      if (remove) {
        this.remove(remove.dataset.remove);
        return;
      }
      const link = event.target.closest("a[data-query]");
      if (!link || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) return;
      event.preventDefault();
      this.apply(link.dataset.query);
      this.button.close();
      // The closed menu takes the focused link with it: hand the keyboard to the table.
      onChosen();
    });
    this.render();
  }

  saveCurrent() {
    const name = this.nameInput.value.trim();
    if (!name) {
      this.nameInput.focus();
      return;
    }
    const query = this.currentQuery();
    this.saved = [{ name, query }, ...this.saved.filter((v) => v.name !== name)].slice(
      0,
      MAX_SAVED,
    );
    if (!savePref("views", this.saved)) {
      this.notices.show("This browser would not store the view.", { kind: "warning" });
    }
    this.nameInput.value = "";
    this.render();
  }

  remove(name) {
    this.saved = this.saved.filter((v) => v.name !== name);
    savePref("views", this.saved);
    this.render();
  }

  render() {
    const current = this.currentQuery();
    const item = ({ name, query }, removable) =>
      h("li", { className: "view-item" }, [
        h("a", {
          href: `/${query}`,
          dataset: { query },
          "aria-current": query === current ? "true" : null,
          text: name,
        }),
        removable
          ? h("button", {
              type: "button",
              className: "btn btn-quiet btn-icon btn-tiny",
              dataset: { remove: name },
              "aria-label": `Delete saved view ${name}`,
              title: "Delete",
              text: "×",
            })
          : null,
      ]);
    // No null among them: replaceChildren writes it out as the text "null".
    const separator = this.saved.length
      ? [h("li", { className: "view-sep", role: "separator" })]
      : [];
    this.list.replaceChildren(
      ...BUILT_IN.map((v) => item(v, false)),
      ...separator,
      ...this.saved.map((v) => item(v, true)),
    );
  }
}
