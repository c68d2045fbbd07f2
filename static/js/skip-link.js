// Every page's skip link (base.html): focus to its target, as the browser's own jump does,
// but without the target's `#id` in the address bar, where a copied link (a dashboard view
// with its filters and open alert, address.js) carried `#alerts-panel` along.

for (const link of document.querySelectorAll("a.skip-link[href^='#']")) {
  const id = link.getAttribute("href").slice(1);
  // A link copied before this carries it: the page is the same without it.
  if (location.hash === `#${id}`) {
    history.replaceState(history.state, "", `${location.pathname}${location.search}`);
  }
  link.addEventListener("click", (event) => {
    const target = document.getElementById(id);
    if (!target || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) {
      return;
    }
    event.preventDefault();
    target.scrollIntoView({ block: "start" });
    target.focus({ preventScroll: true });
  });
}
