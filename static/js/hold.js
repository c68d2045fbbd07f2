// When the live table holds still: while the pointer is over it (once it has moved there),
// while keyboard focus is in it, and while something else says so (the resolve dialog, the
// details drawer). Rows that slide away under the cursor at hundreds of alerts a second would
// make every click a gamble.

export function holdWhileWorking(container, table, alsoHold = () => false) {
  let pointerInside = false;
  let keyboardInside = false;
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
  // frozen long after the pointer has gone.
  container.addEventListener("focusin", (event) => {
    keyboardInside = event.target !== container && event.target.matches(":focus-visible");
    update();
  });
  container.addEventListener("focusout", (event) => {
    if (!container.contains(event.relatedTarget)) {
      keyboardInside = false;
      update();
    }
  });
  // Esc hands focus back to the container itself, which releases the table (unless a
  // shortcut already used this Esc, to close the details).
  container.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !event.defaultPrevented && event.target !== container) {
      container.focus();
    }
  });
  return update;
}
