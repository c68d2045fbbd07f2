"""The backtest report as one self-contained HTML page: inline CSS and SVG charts, no scripts."""

from __future__ import annotations

import html
from collections.abc import Collection, Sequence
from typing import Any

from server.backtest_report import delay_text, memory_warning
from server.wording import counted

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c")
FRAUD = "#dc2626"
LEGIT = "#9ca3af"
W, H = 640, 260
PAD_L, PAD_R, PAD_T, PAD_B = 48, 16, 16, 40

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 980px;
       color: #111827; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .25rem; }
h2 { font-size: 1.15rem; margin-top: 2.2rem; border-bottom: 1px solid #e5e7eb; }
.sub { color: #6b7280; margin-top: 0; }
.cards { display: flex; flex-wrap: wrap; gap: .75rem; margin: 1rem 0; }
.card { border: 1px solid #e5e7eb; border-radius: 8px; padding: .6rem .9rem; min-width: 8.5rem; }
.card b { display: block; font-size: 1.4rem; }
.card span { color: #6b7280; font-size: .8rem; }
table { border-collapse: collapse; margin: .75rem 0; font-variant-numeric: tabular-nums; }
th, td { padding: .2rem .5rem; text-align: right; border-bottom: 1px solid #f3f4f6; }
td { white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
tr.mark td { background: #fef3c7; }
svg { display: block; margin: .5rem 0; max-width: 100%; height: auto; }
svg text { font: 11px system-ui, sans-serif; fill: #374151; }
.note { color: #4b5563; font-size: .9rem; max-width: 75ch; }
.warn { background: #fef3c7; border-left: 3px solid #d97706; padding: .4rem .7rem;
        max-width: 75ch; }
.legend span { display: inline-block; margin-right: 1rem; font-size: .85rem; }
.legend i { display: inline-block; width: .8rem; height: .8rem; margin-right: .3rem;
            vertical-align: -1px; border-radius: 2px; }
.legend i.dash { height: 0; border-top: 2px dashed; border-radius: 0; background: none;
                 vertical-align: 3px; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float | int | None, places: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{places}f}"


def _legend(items: Sequence[tuple[str, str]], dashed: Collection[str] = ()) -> str:
    """A swatch and a name per item; names in `dashed` get a dashed line, as drawn."""
    spans = "".join(
        f'<span><i class="dash" style="color:{c}"></i>{_e(name)}</span>'
        if name in dashed
        else f'<span><i style="background:{c}"></i>{_e(name)}</span>'
        for name, c in items
    )
    return f'<div class="legend">{spans}</div>'


class _Plot:
    """A plot area with axes; maps data coordinates to SVG pixels."""

    def __init__(self, x_max: float, y_max: float, x_title: str, y_title: str) -> None:
        self.x_max = x_max or 1.0
        self.y_max = y_max or 1.0
        self.parts: list[str] = []
        self.x_title, self.y_title = x_title, y_title

    def x(self, value: float) -> float:
        return PAD_L + value / self.x_max * (W - PAD_L - PAD_R)

    def y(self, value: float) -> float:
        return H - PAD_B - value / self.y_max * (H - PAD_T - PAD_B)

    def axes(self, y_ticks: Sequence[float], y_fmt: str = "{:.1f}") -> None:
        for tick in y_ticks:
            py = self.y(tick)
            self.parts.append(
                f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{py:.1f}" y2="{py:.1f}" '
                f'stroke="#f3f4f6"/><text x="{PAD_L - 6}" y="{py + 4:.1f}" '
                f'text-anchor="end">{_e(y_fmt.format(tick))}</text>'
            )
        self.parts.append(
            f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{H - PAD_B}" y2="{H - PAD_B}" '
            f'stroke="#9ca3af"/><line x1="{PAD_L}" x2="{PAD_L}" y1="{PAD_T}" y2="{H - PAD_B}" '
            f'stroke="#9ca3af"/>'
            f'<text x="{(PAD_L + W - PAD_R) / 2}" y="{H - 6}" text-anchor="middle">'
            f"{_e(self.x_title)}</text>"
            f'<text transform="translate(12 {(PAD_T + H - PAD_B) / 2}) rotate(-90)" '
            f'text-anchor="middle">{_e(self.y_title)}</text>'
        )

    def svg(self, label: str) -> str:
        return (
            f'<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
            f'aria-label="{_e(label)}">{"".join(self.parts)}</svg>'
        )


def _pr_chart(report: dict[str, Any]) -> str:
    curve = report["pr_curve"]
    plot = _Plot(1.0, 1.0, "recall", "precision")
    plot.axes([0, 0.25, 0.5, 0.75, 1.0], "{:.2f}")
    for tick in (0.25, 0.5, 0.75, 1.0):
        plot.parts.append(
            f'<text x="{plot.x(tick):.1f}" y="{H - PAD_B + 14}" text-anchor="middle">'
            f"{tick:.2f}</text>"
        )
    rate = report["overall"]["fraud_rate"]
    if rate is not None:
        plot.parts.append(
            f'<line x1="{plot.x(0):.1f}" x2="{plot.x(1):.1f}" y1="{plot.y(rate):.1f}" '
            f'y2="{plot.y(rate):.1f}" stroke="{LEGIT}" stroke-dasharray="4 3">'
            f"<title>no skill: precision = fraud rate {rate:.4f}</title></line>"
        )
    if curve:
        # Steps as average precision counts them: recall moves right at each threshold's precision.
        points = [(0.0, curve[0]["precision"])]
        for p in curve:
            points += [(points[-1][0], p["precision"]), (p["recall"], p["precision"])]
        path = " ".join(f"{plot.x(r):.1f},{plot.y(q):.1f}" for r, q in points)
        plot.parts.append(
            f'<polyline points="{path}" fill="none" stroke="{PALETTE[0]}" stroke-width="2"/>'
        )
    for row in report["thresholds"]:
        if row["role"] and row["precision"] is not None:
            px, py = plot.x(row["recall"]), plot.y(row["precision"])
            plot.parts.append(
                f'<circle cx="{px:.1f}" cy="{py:.1f}" r="5" fill="{FRAUD}"><title>'
                f"{_e(row['role'])} threshold {row['threshold']}: precision "
                f"{row['precision']}, recall {row['recall']}</title></circle>"
                f'<text x="{px + 8:.1f}" y="{py - 6:.1f}">{_e(row["role"])} '
                f"{_e(row['threshold'])}</text>"
            )
    return plot.svg("precision-recall curve")


def _day_ticks(plot: _Plot, days: Sequence[str], at: Sequence[float]) -> None:
    every = max(1, len(days) // 10)
    for i, day in enumerate(days):
        if i % every == 0:
            plot.parts.append(
                f'<text x="{at[i]:.1f}" y="{H - PAD_B + 14}" text-anchor="middle">'
                f"{_e(day[5:])}</text>"
            )


_TOP_K = ("precision_at_k", "card_precision_at_k", "card_precision_at_k_ceiling")


def _shown(day: dict[str, Any], key: str) -> float | None:
    """A day's metric as the chart and table show it: precision in the top k of a day without
    fraud is 0 by definition (and counts 0 in the mean) but says nothing about the ranking,
    so it is left blank rather than drawn as a fall to 0."""
    if key in _TOP_K and not day["frauds"]:
        return None
    value: float | None = day.get(key)
    return value


_CEILING = "best possible card precision@{k}"
"""Each day's compromised cards not yet detected, over k: what a perfect ranking would score."""


def _daily_chart(report: dict[str, Any]) -> tuple[str, str]:
    days = report["per_day"]
    k = report["meta"]["k"]
    series = [
        ("ROC AUC", "roc_auc"),
        ("average precision", "average_precision"),
        (f"precision@{k}", "precision_at_k"),
        (f"card precision@{k}", "card_precision_at_k"),
        # Dashed, in card precision's colour: the most that day's cards allow.
        (_CEILING.format(k=k), "card_precision_at_k_ceiling"),
    ]
    colors = [*PALETTE[:4], PALETTE[3]]
    dashed = {_CEILING.format(k=k)}
    plot = _Plot(max(len(days) - 1, 1), 1.0, "day", "metric")
    plot.axes([0, 0.25, 0.5, 0.75, 1.0], "{:.2f}")
    xs = [plot.x(i) for i in range(len(days))]
    _day_ticks(plot, [d["day"] for d in days], xs)
    for (name, key), color in zip(series, colors, strict=True):
        dash = ' stroke-dasharray="5 4"' if name in dashed else ""
        run: list[str] = []
        for i, d in enumerate([*days, None]):
            value = None if d is None else _shown(d, key)
            if value is None:
                if len(run) > 1:
                    plot.parts.append(
                        f'<polyline points="{" ".join(run)}" fill="none" stroke="{color}" '
                        f'stroke-width="1.8"{dash}><title>{_e(name)}</title></polyline>'
                    )
                elif run:
                    cx, cy = run[0].split(",")
                    plot.parts.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{color}"/>')
                run = []
                continue
            run.append(f"{xs[i]:.1f},{plot.y(value):.1f}")
            plot.parts.append(
                f'<circle cx="{xs[i]:.1f}" cy="{plot.y(value):.1f}" r="6" fill="transparent">'
                f"<title>{_e(d['day'])} {_e(name)}: {value}</title></circle>"
            )
    legend = _legend([(name, c) for (name, _), c in zip(series, colors, strict=True)], dashed)
    return plot.svg("metrics per day"), legend


def _alerts_chart(report: dict[str, Any]) -> str:
    days = report["per_day"]
    top = max([max(d["alerts"], d["frauds"]) for d in days] + [1])
    plot = _Plot(len(days), top * 1.1, "day", "transactions")
    plot.axes([top * f for f in (0, 0.25, 0.5, 0.75, 1.0)], "{:,.0f}")
    slot = (W - PAD_L - PAD_R) / max(len(days), 1)
    centres = [PAD_L + slot * (i + 0.5) for i in range(len(days))]
    _day_ticks(plot, [d["day"] for d in days], centres)
    bar = max(slot * 0.7, 1.0)
    for d, cx in zip(days, centres, strict=True):
        true, false = d["true_alerts"], d["alerts"] - d["true_alerts"]
        y_true, y_all = plot.y(true), plot.y(true + false)
        x0 = cx - bar / 2
        tip = (
            f"{d['day']}: {d['alerts']:,} alerts, {true:,} fraudulent, {false:,} legitimate; "
            f"{d['frauds']:,} frauds that day, {d['frauds'] - true:,} not alerted"
        )
        plot.parts.append(
            f"<g><title>{_e(tip)}</title>"
            f'<rect x="{x0:.1f}" y="{y_true:.1f}" width="{bar:.1f}" '
            f'height="{plot.y(0) - y_true:.1f}" fill="{FRAUD}"/>'
            f'<rect x="{x0:.1f}" y="{y_all:.1f}" width="{bar:.1f}" height="{y_true - y_all:.1f}" '
            f'fill="{LEGIT}"/>'
            f'<line x1="{x0 - 1:.1f}" x2="{x0 + bar + 1:.1f}" y1="{plot.y(d["frauds"]):.1f}" '
            f'y2="{plot.y(d["frauds"]):.1f}" stroke="#111827" stroke-width="2"/></g>'
        )
    return plot.svg("alerts per day")


def _hbars(rows: Sequence[tuple[str, float, str]], x_max: float, color: str, label: str) -> str:
    """Horizontal bars: (name, value, text shown after the bar)."""
    height = 22 * len(rows) + 10
    left, width = 150, 330
    parts = []
    for i, (name, value, text) in enumerate(rows):
        y = 6 + 22 * i
        length = 0.0 if not x_max else value / x_max * width
        parts.append(
            f'<text x="{left - 8}" y="{y + 13}" text-anchor="end">{_e(name)}</text>'
            f'<rect x="{left}" y="{y}" width="{length:.1f}" height="16" fill="{color}"/>'
            f'<text x="{left + length + 6:.1f}" y="{y + 13}">{_e(text)}</text>'
        )
    return (
        f'<svg viewBox="0 0 {W} {height}" width="{W}" height="{height}" role="img" '
        f'aria-label="{_e(label)}">{"".join(parts)}</svg>'
    )


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], marks: Sequence[bool] = ()) -> str:
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = []
    for i, row in enumerate(rows):
        cls = ' class="mark"' if i < len(marks) and marks[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>")
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _cards(report: dict[str, Any]) -> str:
    o, k = report["overall"], report["meta"]["k"]
    cards = [
        ("average precision", _num(o["average_precision"])),
        ("ROC AUC", _num(o["roc_auc"])),
        (f"card precision@{k}", _num(o["card_precision_at_k"])),
        (f"best possible card precision@{k}", _num(o.get("card_precision_at_k_ceiling"))),
        (f"precision@{k}", _num(o["precision_at_k"])),
        ("alerts per day", _num(o["alerts_per_day"], 1)),
        ("alert precision", _num(o["alert_precision"])),
        ("fraud caught (recall)", _num(o["alert_recall"])),
    ]
    inner = "".join(f'<div class="card"><b>{_e(v)}</b><span>{_e(n)}</span></div>' for n, v in cards)
    return f'<div class="cards">{inner}</div>'


def render(report: dict[str, Any]) -> str:
    """The whole page; every piece of text from the data goes through html.escape."""
    meta, k = report["meta"], report["meta"]["k"]
    o = report["overall"]
    days, rules = report["per_day"], report["rules"]
    daily_svg, daily_legend = _daily_chart(report)
    subtitle = (
        f"{meta['file']} · {counted(o['transactions'], 'labelled transaction')} over "
        f"{counted(meta['days'], 'day')} ({meta['first_event']} → {meta['last_event']}) · "
        f"{counted(o['frauds'], 'fraud')} "
        f"({(o['fraud_rate'] or 0):.2%}) · rules {meta['rules_version']} · label delay "
        f"{delay_text(meta['label_delay_s'])} · days in {meta['timezone']}"
    )
    by_precision = [
        (r["code"], r["precision"] or 0.0, f"{_num(r['precision'])} of {r['fired']:,} fired")
        for r in rules
    ]
    by_sole = sorted(rules, key=lambda r: (-r["sole_reason_frauds"], r["code"]))
    sole_max = max([r["sole_reason_frauds"] for r in rules] + [1])
    throughput = report.get("throughput") or {}
    notes = report.get("notes", [])
    noted = {n["code"] for n in notes}
    sections = [
        f"<h1>Backtest report</h1><p class='sub'>{_e(subtitle)}</p>",
        _cards(report),
        *(["<h2>Rules to check</h2>"] if notes else []),
        *(f"<p class='warn'>{_e(n['text'])}</p>" for n in notes),
        "<h2>Precision–recall curve</h2>",
        _pr_chart(report),
        "<p class='note'>Every transaction scoring at or above a threshold is flagged; the curve "
        "shows, for each threshold, the share of flags that are fraud (precision) against the "
        "share of fraud flagged (recall). The dashed line is a random ranking. Average precision "
        "is the area under these steps. Red dots: the review and block thresholds.</p>",
        "<h2>Metrics per day</h2>",
        daily_svg,
        daily_legend,
        _table(
            [
                "day",
                "transactions",
                "frauds",
                "alerts",
                "ROC AUC",
                "AP",
                f"P@{k}",
                f"CP@{k}",
                f"best CP@{k}",
                "compromised cards",
                "detected",
            ],
            [
                [
                    d["day"],
                    _num(d["transactions"]),
                    _num(d["frauds"]),
                    _num(d["alerts"]),
                    _num(d["roc_auc"]),
                    _num(d["average_precision"]),
                    _num(_shown(d, "precision_at_k")),
                    _num(_shown(d, "card_precision_at_k")),
                    _num(_shown(d, "card_precision_at_k_ceiling")),
                    _num(d["compromised_cards"]),
                    _num(d["cards_detected"]),
                ]
                for d in days
            ],
        ),
        f"<h2>Alerts per day at the review threshold ({_e(meta['review_threshold'])})</h2>",
        _alerts_chart(report),
        _legend(
            [
                ("fraudulent alerts", FRAUD),
                ("legitimate alerts", LEGIT),
                ("frauds that day", "#111827"),
            ]
        ),
        "<p class='note'>What the alert volume and quality would be at other thresholds:</p>",
        _table(
            ["threshold", "alerts", "per day", "precision", "recall"],
            [
                [
                    f"{r['threshold']:g} {r['role']}".strip(),
                    _num(r["flagged"]),
                    _num(r["per_day"], 1),
                    _num(r["precision"]),
                    _num(r["recall"]),
                ]
                for r in report["thresholds"]
            ],
            [bool(r["role"]) for r in report["thresholds"]],
        ),
        "<h2>Rules ranked by precision</h2>",
        _hbars(by_precision, 1.0, PALETTE[0], "rules by precision"),
        "<h2>Frauds only one rule caught</h2>",
        "<p class='note'>Fraudulent transactions that raised an alert with this rule as the "
        "only reason: without it, they would have gone unflagged.</p>",
        _hbars(
            [(r["code"], r["sole_reason_frauds"], f"{r['sole_reason_frauds']:,}") for r in by_sole],
            sole_max,
            FRAUD,
            "frauds only one rule caught",
        ),
        _table(
            [
                "rule",
                "fired",
                "precision",
                "alerts",
                "alert precision",
                "frauds alerted",
                "sole-reason frauds",
            ],
            [
                [
                    r["code"],
                    _num(r["fired"]),
                    _num(r["precision"]),
                    _num(r["alerts"]),
                    _num(r["alert_precision"]),
                    _num(r["frauds_flagged"]),
                    _num(r["sole_reason_frauds"]),
                ]
                for r in rules
            ],
            [r["code"] in noted for r in rules],
        ),
        "<h2>Run</h2>",
        _table(
            ["", ""],
            [
                ["rows read", _num(meta["rows_read"])],
                ["invalid rows (skipped)", _num(meta["invalid_rows"])],
                ["unlabelled rows (scored, not measured)", _num(meta["unlabelled_rows"])],
                ["labels revealed during the run", _num(meta["labels_revealed"])],
                ["labels not yet due at the end", _num(meta["labels_not_yet_due"])],
                ["detector learns from labels", "yes" if meta["detector_learns_labels"] else "no"],
                ["throughput, end to end (tx/s)", _num(throughput.get("tx_per_s"))],
            ],
        ),
        *(f"<p class='note'>{_e(example)}</p>" for example in meta["invalid_examples"]),
        *([f"<p class='warn'>{_e(warning)}</p>"] if (warning := memory_warning(meta)) else []),
    ]
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Backtest: {_e(meta['file'])}</title><style>{CSS}</style></head>"
        f"<body>{''.join(sections)}</body></html>\n"
    )
