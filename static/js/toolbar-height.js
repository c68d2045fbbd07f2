// The filter toolbar keeps one height whether the details drawer is open or not. Beside the
// drawer (from 960 px, app.css) its items are laid out anew in less room, the date fields
// behind a button: with filters set it took a line more at 1024 px, and a line less from
// 1600 px up to 1920, and the column headings and a short queue's rows (which the view
// cannot scroll by as much) jumped 38 px as the drawer opened and closed. How many lines
// each layout takes depends on the fonts, the filters set and the rules' names, so it is
// measured, not guessed: the toolbar is as tall as the taller of the two, open or closed.

export function keepToolbarHeight(toolbar) {
  const body = document.body;
  const measure = () => {
    const beside = body.classList.contains("has-drawer");
    toolbar.style.minHeight = "";
    const here = toolbar.getBoundingClientRect().height;
    // The other layout, laid out and measured in the same task: nothing is drawn between.
    body.classList.toggle("has-drawer", !beside);
    const there = toolbar.getBoundingClientRect().height;
    body.classList.toggle("has-drawer", beside);
    toolbar.style.minHeight = `${Math.max(here, there)}px`;
  };
  // Measured again before the next frame is drawn when an item changes size (a filter set,
  // a rule's name added to its menu, the drawer's narrower chips) or the panel's width does
  // (the window, the drawer): the head's width is the panel's, its height not the toolbar's.
  const observer = new ResizeObserver(measure);
  for (const item of toolbar.querySelectorAll(":scope > *, :scope > .range > *")) {
    observer.observe(item);
  }
  const head = toolbar.parentElement.querySelector(".panel-head");
  if (head) observer.observe(head);
  measure();
  return measure;
}
