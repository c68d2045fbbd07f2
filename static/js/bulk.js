// Bulk selection: the bar that appears once alerts are selected (x, or a row's checkbox),
// and the header checkbox that selects every listed alert still to be resolved.

import { setText } from "./dom.js";
import { formatCount } from "./format.js";

// Bulk actions call the API once per alert; a few hundred is a minute's work at most.
export const SELECT_ALL_MAX = 500;

export class BulkBar {
  constructor(bar, { table, actions, selectAll, notices, me, onDone = () => {} }) {
    this.me = me;
    this.onDone = onDone;
    this.bar = bar;
    this.table = table;
    this.actions = actions;
    this.selectAll = selectAll;
    this.notices = notices;
    this.count = bar.querySelector("#bulk-count");
    this.progress = bar.querySelector("#bulk-progress");
    // The bar lies over the column headings (app.css): it follows their place and height as
    // the layout changes (the drawer, the window, a zoom, the paused pill taking a line on a
    // phone): the panel's parts above the table move it, the table's own box sizes it.
    const observer = new ResizeObserver(() => this._place());
    for (const part of bar.parentElement.children) if (part !== bar) observer.observe(part);

    bar.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-bulk]");
      if (button) this.run(button.dataset.bulk);
    });
    selectAll.addEventListener("change", () => {
      if (!selectAll.checked) {
        table.clearSelection();
        return;
      }
      const open = table.listedAlerts().filter((alert) => alert.status !== "resolved");
      table.selectIds(open.slice(0, SELECT_ALL_MAX).map((alert) => alert.id));
      if (open.length > SELECT_ALL_MAX) {
        const first = formatCount(SELECT_ALL_MAX);
        notices.show(
          `Selected the first ${first} of ${formatCount(open.length)}: bulk actions go one by one.`,
          { kind: "info" },
        );
      }
    });
  }

  selectedAlerts() {
    return [...this.table.selected].map((id) => this.table.alert(id)).filter(Boolean);
  }

  async run(kind) {
    if (kind === "clear") {
      this.table.clearSelection();
      return;
    }
    const alerts = this.selectedAlerts();
    const progress = (done, total) => {
      setText(this.progress, done < total ? `Working: ${done + 1} of ${total}…` : "");
    };
    const results = await this.actions.bulk(kind, alerts, progress, this.me);
    if (!results) return;
    // What went through, or was lost to someone else, leaves the selection. What failed, or
    // was never tried (Esc stopped the run), stays selected: the bulk action tries it again.
    const settled = new Set(results.filter((r) => r.ok || r.conflict).map((r) => r.alert.id));
    this.table.clearSelection();
    this.table.selectIds(alerts.map((alert) => alert.id).filter((id) => !settled.has(id)));
    // The bar hides once nothing is left selected, taking the focused button (or the closed
    // dialog's return point) with it: focus would fall to the page, and j/k would do nothing.
    // (A hidden element can keep focus until the browser's next rendering: checked here.)
    const focused = document.activeElement;
    const lost = !focused || focused === document.body;
    if (lost || (this.bar.hidden && this.bar.contains(focused))) this.onDone();
  }

  // After every selection change and every table render.
  update() {
    const n = this.table.selected.size;
    const showing = this.bar.hidden && n > 0;
    this.bar.hidden = n === 0;
    if (showing) this._place();
    setText(this.count, `${formatCount(n)} selected`);
    const listed = this.table.length;
    this.selectAll.checked = n > 0 && n >= Math.min(listed, SELECT_ALL_MAX);
    this.selectAll.indeterminate = n > 0 && !this.selectAll.checked;
  }

  // Over the table's header row, from just right of the header checkbox (still there to
  // select every listed alert, or none). CSSOM, not a style attribute: the page's CSP.
  _place() {
    if (this.bar.hidden) return;
    const panel = this.bar.offsetParent;
    const head = this.table.table.tHead?.getBoundingClientRect();
    if (!panel || !head) return;
    const origin = panel.getBoundingClientRect();
    const wrap = this.table.wrap;
    const top = wrap.getBoundingClientRect().top + wrap.clientTop - origin.top - panel.clientTop;
    const box = this.selectAll.getBoundingClientRect();
    const left = box.width ? Math.max(0, box.right - origin.left - panel.clientLeft + 6) : 0;
    this.bar.style.setProperty("--bulk-top", `${top}px`);
    this.bar.style.setProperty("--bulk-left", `${Math.round(left)}px`);
    this.bar.style.setProperty("--bulk-height", `${head.height}px`);
  }
}
