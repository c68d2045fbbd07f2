// When the live table holds still: while the pointer is over it (once it has moved there),
// while keyboard focus is in it, and while something else says so (the resolve dialog, the
// details drawer). Rows that slide away under the cursor at hundreds of alerts a second would
// make every click a gamble.

export function holdWhileWorking(container, table, alsoHold = () => false) {
  let pointerInside = false;
  let keyboardInside = false;
  let keyboardLeft = false; // the keyboard was in the table when focus last left it
  let keyboardBefore = false; // the same, when the open dialog took focus from the table
  let givenBack = false; // a dialog has closed, and the analyst has not pressed or clicked since
  const update = () => table.setFrozen(pointerInside || keyboardInside || alsoHold());

  // The pointer holds the table once it moves (or presses) over it, not when the table moves
  // under a still pointer: after a bulk action the bar hides, the rows move up under where the
  // mouse was left, and the browser reports an enter with no move. Held for that, the table
  // said "Paused" until the mouse moved, with nobody reading it.
  const pointerHere = () => {
    if (pointerInside) return;
    pointerInside = true;
    update();
  };
  container.addEventListener("pointermove", pointerHere);
  container.addEventListener("pointerdown", pointerHere);
  container.addEventListener("pointerleave", () => {
    pointerInside = false;
    update();
  });
  // Keyboard focus counts; a mouse click's leftover focus does not, or the table would stay
  // frozen long after the pointer has gone. Focus the table moves from a row to itself (the
  // row scrolled out of the drawn window: AlertTable._parkFocus) stays what it was; the Esc
  // that releases the table says so itself (below).
  container.addEventListener("focusin", (event) => {
    if (event.target === container && container.contains(event.relatedTarget)) return;
    keyboardInside =
      event.target !== container &&
      (givenBack ? keyboardBefore : event.target.matches(":focus-visible"));
    update();
  });
  container.addEventListener("focusout", (event) => {
    if (!container.contains(event.relatedTarget)) {
      keyboardLeft = keyboardInside;
      keyboardInside = false;
      update();
    }
  });

  // A modal dialog (resolve, bulk resolve, the shortcuts list) takes the keyboard and gives it
  // back as it closes: the browser returns focus to where it was, or the page puts it on the
  // cursor's row. That is the page's doing, not the analyst moving into the table, but after
  // the key that closed the dialog (Enter, Esc) Chromium marks it :focus-visible. So until the
  // analyst's next key or click, focus arriving in the table holds it only if the keyboard was
  // in the table when the dialog opened: j f Enter keeps it held for the next j, while Fraud…
  // (or the bulk bar's button) clicked and then Enter leaves it free, as the dialog's button
  // does. Held for nothing, the table said "Paused" and kept new alerts out.
  document.addEventListener("focusin", (event) => {
    const into = event.target instanceof Element && event.target.closest("dialog");
    const from = event.relatedTarget instanceof Element && event.relatedTarget.closest("dialog");
    if (into && !from) {
      keyboardBefore = container.contains(event.relatedTarget) && keyboardLeft;
      givenBack = false;
    }
  });
  // `close` does not bubble; the browser has already given focus back when it fires.
  document.addEventListener(
    "close",
    (event) => {
      if (!(event.target instanceof HTMLDialogElement)) return;
      givenBack = true;
      const active = document.activeElement;
      if (active && active !== container && container.contains(active)) {
        keyboardInside = keyboardBefore;
        update();
      }
    },
    { capture: true },
  );
  // A key pressed in the table is the keyboard in the table, however focus got there: focus
  // left by a mouse press on a row is not :focus-visible, and focus the page puts back where
  // it already is (the drawer's Esc, focusTable) fires no focusin to say so. Esc on a row
  // while the drawer was open closed it, let the table go on that stale flag, and the next
  // frame re-sorted the rows under the focused one: focus fell to the page.
  // Only while focus is still in the table once the key has done its work (Enter opened the
  // drawer, / went to the search: the keyboard has left), and not for the Esc that releases
  // the table (below).
  container.addEventListener("keydown", (event) => {
    const active = document.activeElement;
    if (keyboardInside || active === container || !container.contains(active)) return;
    if (event.key === "Escape" && !event.defaultPrevented) return;
    keyboardInside = true;
    update();
  });
  const analystActs = () => {
    givenBack = false;
  };
  document.addEventListener("keydown", analystActs, { capture: true });
  document.addEventListener("pointerdown", analystActs, { capture: true });
  // Esc hands focus back to the container itself and releases the table (unless a shortcut
  // already used this Esc, to close the details); so does Esc on the container, which holds
  // the table when focus was moved there from a row that scrolled out of the window.
  container.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || event.defaultPrevented) return;
    if (event.target !== container) container.focus();
    keyboardInside = false;
    update();
  });
  // The paused pill's button: what the pointer and keyboard held goes, as on Esc; what
  // `alsoHold` says (a dialog, the drawer) is the caller's to close first.
  const release = () => {
    pointerInside = false;
    keyboardInside = false;
    update();
  };
  // Whether the pointer holds the table: rows must not move under it, whatever else let go.
  const pointerHolds = () => pointerInside;
  return { update, release, pointerHolds };
}
