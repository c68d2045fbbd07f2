// Disclosure menus: a <details> whose panel floats over the page (notifications, saved
// views, delivery integrity). One open at a time; a click elsewhere or Esc closes it, and
// Esc hands focus back to its button.

export function installMenus(selector = "details.menu, details.integrity") {
  const openMenus = () => [...document.querySelectorAll(selector)].filter((menu) => menu.open);

  document.addEventListener("pointerdown", (event) => {
    for (const menu of openMenus()) if (!menu.contains(event.target)) menu.open = false;
  });
  // Capture phase, registered before the shortcuts: an Esc that closes a menu does nothing else.
  document.addEventListener(
    "keydown",
    (event) => {
      if (event.key !== "Escape" || event.defaultPrevented) return;
      const [menu] = openMenus();
      if (!menu) return;
      event.preventDefault();
      menu.open = false;
      menu.querySelector("summary")?.focus();
    },
    { capture: true },
  );
  // "toggle" does not bubble, but it does pass through the capture phase.
  document.addEventListener(
    "toggle",
    (event) => {
      if (!event.target.matches?.(selector) || !event.target.open) return;
      for (const menu of openMenus()) if (menu !== event.target) menu.open = false;
    },
    { capture: true },
  );
}
