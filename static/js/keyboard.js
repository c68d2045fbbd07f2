// Keyboard shortcuts for triage, on one document listener. They stay out of the way of
// typing (text fields, selects, editable content), of modal dialogs (which own their keys,
// even those still held or on their way once the dialog has closed), and of browser and
// system shortcuts (any Ctrl, Cmd or Alt chord).
//
//   j / k   next / previous alert        a  acknowledge       x  select for bulk
//   Enter   open the details             f  resolve fraud     /  search
//   Esc     close the details            l  resolve legit     ?  this list
//   n       take the next alert          c  write a note (the drawer's note box)
//   u       undo the resolve just made (reopen it, or a bulk resolve's, while its notice shows)
//   PageDown / PageUp   a page of alerts down / up    Home / End   the first / last alert
//   ↓ / ↑   next / previous alert, as j / k       Space / Shift+Space   as PageDown / PageUp
//
// The arrows, PageDown, PageUp, Home and End move the cursor only while the keyboard is in the table
// (a row, a control in one, the table itself); elsewhere they scroll as usual. Scrolled
// natively, the table drew a window without the focused row, and focus fell to the page.
// Space and Shift+Space likewise, from a row or the table itself: on a row's checkbox or
// button, Space is the control's (it ticks the box, presses the button).
//
// a, f and l act on the current alert (the focused row's, else the cursor's), or, while any
// alerts are checked (x), on the checked alerts, as the bulk bar's buttons do. With the
// drawer open they act on the drawer's alert, checked alerts or not, as its buttons do.

const TEXT_INPUTS = new Set([
  "text",
  "search",
  "email",
  "number",
  "password",
  "url",
  "tel",
  "date",
  "datetime-local",
  "month",
  "time",
  "week",
]);

export function isTyping(target) {
  if (!(target instanceof Element)) return false;
  if (target.isContentEditable) return true;
  if (target.matches("textarea, select")) return true;
  return target.matches("input") && TEXT_INPUTS.has(target.type);
}

// Enter and Space belong to whatever control has focus; Enter opens the details, and Space
// pages the table, only from a row or from nowhere in particular.
function enterIsFree(target) {
  return (
    !(target instanceof Element) || !target.closest("button, a, summary, input, select, textarea")
  );
}

// A dialog the page closed under the analyst (someone else took the alert, no note typed):
// keys already on their way to it (Enter to confirm, Esc, the start of a note) must not run
// shortcuts, where "n" takes an alert and Enter opens the details. They are dropped until
// the keyboard has been still this long; the notice says what happened meanwhile.
const SETTLE_MS = 1000;

// Keys that neither run shortcuts nor belong to a dialog: they keep working while settling.
const PASSING_KEYS = new Set(["Tab", "Shift", "CapsLock", "Control", "Alt", "Meta"]);

// Keys that act on an alert, once per press: held down, a key repeats, and each repeat
// ticked and unticked a row in turn (x) or sent the server the same call again (a, u).
// Keys that move the cursor (j, k, the arrows, the page keys) repeat as they always do.
const ONCE_KEYS = new Set(["a", "f", "l", "x", "n", "c", "u"]);

// Returns {settle}: call it when the page closes a dialog the analyst did not close.
export function installShortcuts(handlers) {
  let settleUntil = 0;
  // A key first pressed in a dialog belongs to it while held: Enter held a moment too long
  // repeats after the dialog has closed, and opened the details of the row it went back to.
  const heldFromDialog = new Set();
  document.addEventListener("keyup", (event) => heldFromDialog.delete(event.code), {
    capture: true,
  });
  window.addEventListener("blur", () => heldFromDialog.clear());

  // Capture phase: a handled key is marked (preventDefault) before the table's own Esc
  // handler sees it, so one Esc closes the details without also releasing the table.
  document.addEventListener(
    "keydown",
    (event) => {
      if (document.querySelector("dialog[open]")) {
        heldFromDialog.add(event.code);
        return;
      }
      if (event.repeat && heldFromDialog.has(event.code)) {
        event.preventDefault();
        return;
      }
      if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
      if (event.isComposing || isTyping(event.target)) return;
      if (event.repeat && ONCE_KEYS.has(event.key)) {
        event.preventDefault();
        return;
      }
      if (performance.now() < settleUntil && !PASSING_KEYS.has(event.key)) {
        settleUntil = performance.now() + SETTLE_MS;
        event.preventDefault();
        return;
      }
      let handler = null;
      switch (event.key) {
        case "j":
        case "k":
        case "a":
        case "f":
        case "l":
        case "x":
        case "n":
        case "c":
        case "u":
        case "/":
        case "?":
        case "ArrowDown":
        case "ArrowUp":
        case "PageDown":
        case "PageUp":
        case "Home":
        case "End":
          handler = handlers[event.key];
          break;
        case "Enter":
          if (enterIsFree(event.target)) handler = handlers.Enter;
          break;
        case " ":
          if (enterIsFree(event.target)) handler = handlers[" "];
          break;
        case "Escape":
          handler = handlers.Escape;
          break;
        default:
          return;
      }
      if (handler && handler(event) !== false) event.preventDefault();
    },
    { capture: true },
  );
  return {
    settle() {
      settleUntil = performance.now() + SETTLE_MS;
    },
  };
}
