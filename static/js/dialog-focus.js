// Keyboard focus in the page's modal dialogs (the resolve dialog, single and bulk, and the
// shortcuts list), the same in each.
//
// showModal() makes the page behind inert, but it does not keep Tab in the dialog: from the
// last control (Shift+Tab from the first) Chromium hands focus to its own toolbar, and back
// in the page it is on <body>, behind the dialog, where Enter confirms nothing. Here Tab
// wraps round instead. Closing gives focus back to the element that had it when the dialog
// opened (the row, the button): Chromium does that itself, an older engine may leave it on
// <body>, and then this does.

// What Tab stops on, before the checks in tabStops(): disabled controls and tabindex="-1"
// are left out here; hidden ones and all but one radio of a group there.
const FOCUSABLE = [
  "a[href]",
  "button:not([disabled])",
  "input:not([disabled]):not([type='hidden'])",
  "select:not([disabled])",
  "textarea:not([disabled])",
  "summary",
  "[tabindex]",
]
  .map((selector) => `${selector}:not([tabindex^='-'])`)
  .join(", ");

// The dialog's Tab stops in order. A radio group is one stop, at its checked radio (its
// first when none is): the one Tab lands on, and so the one that must wrap.
export function tabStops(dialog) {
  const stops = [];
  const groups = new Set();
  for (const el of dialog.querySelectorAll(FOCUSABLE)) {
    if (!el.getClientRects().length || el.closest("[inert]")) continue;
    if (el.type === "radio" && el.name) {
      if (groups.has(el.name)) continue;
      groups.add(el.name);
      const group = [...dialog.querySelectorAll("input[type='radio']")].filter(
        (radio) => radio.name === el.name && !radio.disabled,
      );
      stops.push(group.find((radio) => radio.checked) ?? el);
      continue;
    }
    stops.push(el);
  }
  return stops;
}

export function keepTabInside(dialog) {
  let opener = null;
  let entered = false;

  // Focus comes in from outside once per opening: what it left is what opened the dialog.
  dialog.addEventListener("focusin", (event) => {
    if (entered) return;
    entered = true;
    const from = event.relatedTarget;
    opener = from instanceof HTMLElement && !dialog.contains(from) ? from : null;
  });

  dialog.addEventListener("keydown", (event) => {
    if (event.key !== "Tab" || event.altKey || event.ctrlKey || event.metaKey) return;
    const stops = tabStops(dialog);
    const active = document.activeElement;
    const at = stops.indexOf(active);
    // Focus on something Tab would not stop on (the dialog's text, clicked): the way in
    // from the end the key points to. Otherwise only the ends wrap; the browser does the rest.
    if (at !== -1 && at !== (event.shiftKey ? 0 : stops.length - 1)) return;
    event.preventDefault();
    if (!stops.length) return;
    (event.shiftKey ? stops.at(-1) : stops[0]).focus();
  });

  dialog.addEventListener("close", () => {
    const back = opener;
    opener = null;
    entered = false;
    // Given back already (Chromium), or put elsewhere on purpose: leave it. A row redrawn
    // while the dialog was open is a new element; the page puts focus on it (actions.js).
    const active = document.activeElement;
    if (!back?.isConnected || (active && active !== document.body && !dialog.contains(active))) {
      return;
    }
    back.focus({ preventScroll: true });
  });
}
