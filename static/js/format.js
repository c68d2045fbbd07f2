// Formatting of money, time, scores and counters for display. Pure functions, no DOM.

const moneyFormats = new Map();

// ISO 4217 minor units of the currencies that do not have 2: the server's table
// (MINOR_UNITS in server/transactions.py, which tests/test_transactions.py holds this to).
// The server keeps every amount to them; Intl's own digits are CLDR's, fewer for some
// (IQD none, not 3), so on its own it rounded 1234.567 dinars to "IQD 1,235".
const MINOR_UNITS = new Map(
  Object.entries({
    0: "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF",
    3: "BHD IQD JOD KWD LYD OMR TND",
    4: "CLF UYW",
  }).flatMap(([units, codes]) => codes.split(" ").map((code) => [code, Number(units)])),
);

// The digits after the decimal point an amount in `currency` has, as the server keeps it.
export function minorUnits(currency) {
  return MINOR_UNITS.get(currency) ?? 2;
}

function moneyFormat(currency) {
  let fmt = moneyFormats.get(currency);
  if (fmt === undefined) {
    const digits = minorUnits(currency);
    try {
      fmt = new Intl.NumberFormat(undefined, {
        style: "currency",
        currency,
        minimumFractionDigits: digits,
        maximumFractionDigits: digits,
      });
    } catch {
      // An unknown ISO code must not break the row: fall back to "1,234.50 XYZ".
      fmt = null;
    }
    moneyFormats.set(currency, fmt);
  }
  return fmt;
}

const plainAmount = new Intl.NumberFormat(undefined, {
  minimumFractionDigits: 2,
  maximumFractionDigits: 2,
});

// A decimal string (an amount json.js kept exact) goes to Intl as it is: Intl formats a
// string digit for digit, where Number() would round it past 15 significant digits.
const DECIMAL = /^-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$/;

export function formatMoney(amount, currency) {
  const exact = typeof amount === "string" && DECIMAL.test(amount);
  const value = exact ? amount : Number(amount);
  if (!exact && !Number.isFinite(value)) return String(amount ?? "");
  const code = typeof currency === "string" ? currency : "";
  const fmt = code ? moneyFormat(code) : null;
  return fmt ? fmt.format(value) : `${plainAmount.format(value)} ${code}`.trim();
}

// The amount as sent, where the formatted one does not say it digit for digit; else null.
// Amounts are formatted to their currency's ISO 4217 minor units, as the server keeps them,
// and past 15 significant digits from the exact string (json.js), so this shows only if the
// page's table and the server's (which refuses more digits) ever disagree.
export function amountAsSent(amount, currency) {
  const sent = String(amount ?? "");
  if (!DECIMAL.test(sent)) return null;
  const code = typeof currency === "string" ? currency : "";
  const fmt = (code && moneyFormat(code)) || plainAmount;
  const exact = typeof amount === "string" ? amount : Number(amount);
  let shown = "";
  for (const part of fmt.formatToParts(exact)) {
    if (part.type === "integer" || part.type === "fraction") shown += part.value;
    else if (part.type === "decimal") shown += ".";
  }
  return sameDecimal(shown, sent) ? null : sent;
}

// Two plain decimal strings ("1299", "1299.00") that name the same value.
function sameDecimal(a, b) {
  if (/[eE]/.test(a) || /[eE]/.test(b)) return false;
  const canonical = (text) => {
    const [whole, fraction = ""] = text.replace(/^-/, "").split(".");
    const digits = `${whole.replace(/^0+/, "")}.${fraction.replace(/0+$/, "")}`;
    return digits.endsWith(".") ? digits.slice(0, -1) : digits;
  };
  return canonical(a) === canonical(b);
}

// An alert as an analyst recognises it in a sentence: "account acct-7 (Harrods · £1,299.00)".
export function describeAlert(alert) {
  const tx = alert.transaction ?? {};
  const merchant = tx.merchant_name || tx.merchant_id;
  const known = tx.amount !== undefined && tx.amount !== null;
  const amount = known ? formatMoney(tx.amount, tx.currency) : "";
  const detail = [merchant, amount].filter(Boolean).join(" · ");
  return `account ${alert.account_id}${detail ? ` (${detail})` : ""}`;
}

// Who holds an alert, in a sentence: "you" for the analyst's own, as the owner column says
// "(you)". A notice that named them ("already resolved by analyst") read as someone else.
export function holderName(owner, me) {
  return owner === me ? "you" : owner;
}

// 24-hour clock whatever the locale: unambiguous, and the column stays narrow.
const timeOfDay = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  hourCycle: "h23",
});
const dayOfYear = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
const yearDay = new Intl.DateTimeFormat(undefined, {
  year: "numeric",
  month: "short",
  day: "numeric",
});

// Event time in the analyst's time zone: {time, date}, where date is "" for today.
export function formatEventTime(iso, now = new Date()) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return { time: String(iso ?? ""), date: "" };
  const sameDay =
    date.getFullYear() === now.getFullYear() &&
    date.getMonth() === now.getMonth() &&
    date.getDate() === now.getDate();
  const day = date.getFullYear() === now.getFullYear() ? dayOfYear : yearDay;
  return { time: timeOfDay.format(date), date: sameDay ? "" : day.format(date) };
}

// null and undefined mean "no value", not zero.
const toNumber = (value) => (value === null || value === undefined ? Number.NaN : Number(value));

export function formatScore(score) {
  const value = toNumber(score);
  return Number.isFinite(value) ? value.toFixed(2) : "—";
}

const rate = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const count = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });

export function formatRate(value) {
  const n = toNumber(value);
  if (!Number.isFinite(n)) return "—";
  return n >= 100 ? count.format(n) : rate.format(n);
}

export function formatCount(value) {
  const n = toNumber(value);
  return Number.isFinite(n) ? count.format(n) : "—";
}

export function formatMs(value) {
  const n = toNumber(value);
  if (!Number.isFinite(n)) return "—";
  return n >= 100 ? `${count.format(n)} ms` : `${rate.format(n)} ms`;
}

export function capitalize(word) {
  const text = String(word ?? "");
  return text ? text[0].toUpperCase() + text.slice(1) : text;
}

// How long something has waited: "42 s", "7 min", "3 h 5 min", "2 d 4 h".
export function formatAge(ms) {
  const n = toNumber(ms);
  if (!Number.isFinite(n)) return "—";
  const s = Math.max(0, Math.floor(n / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const hours = Math.floor(m / 60);
  if (hours < 24) return m % 60 ? `${hours} h ${m % 60} min` : `${hours} h`;
  const d = Math.floor(hours / 24);
  return hours % 24 ? `${d} d ${hours % 24} h` : `${d} d`;
}

// A wall-clock time in the analyst's zone, 24-hour: "14:02:11".
export function formatClock(ms) {
  const n = toNumber(ms);
  return Number.isFinite(n) ? timeOfDay.format(new Date(n)) : "—";
}

// A full timestamp for the details: "Mar 2, 2026, 14:02:11".
export function formatDateTime(iso) {
  if (iso === null || iso === undefined) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return `${yearDay.format(date)}, ${timeOfDay.format(date)}`;
}

// A number as the detector reported it: up to two decimals, grouped.
const plainNumber = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });

export function formatNumber(value) {
  const n = toNumber(value);
  return Number.isFinite(n) ? plainNumber.format(n) : "—";
}

// A fraction in per cent, as Python's `:.0%` words it by default: 0.8712 → "87%".
export function formatPercent(value, digits = 0) {
  return `${(value * 100).toLocaleString(undefined, { maximumFractionDigits: digits })}%`;
}

// A reason's observed value or threshold: a rule may report a number (a speed, a count) or
// text (the merchant id of new_merchant, a country), and text stays text, digits and all (an
// MCC is a code, not a quantity). Absent, a dash.
export function formatFigure(value) {
  if (typeof value === "number") return formatNumber(value);
  if (value === null || value === undefined) return "—";
  const text = String(value).trim();
  return text || "—";
}

const CURRENCY_CODE = /^[A-Z]{3}$/;

// A reason's figure in the unit the server says it is in (docs/api.md, "Reasons"): an
// amount in its currency, a duration in words, a ratio as "2.5×". Text, and a number
// without a unit (alerts stored before reasons carried one), read as formatFigure has them.
export function formatMeasure(value, unit) {
  if (typeof value !== "number" || typeof unit !== "string" || !unit) return formatFigure(value);
  if (CURRENCY_CODE.test(unit)) return formatMoney(value, unit);
  switch (unit) {
    case "count":
      return formatNumber(value);
    case "fraction":
      return formatPercent(value, 1);
    case "ratio":
      return `${formatNumber(value)}×`;
    case "sd":
      return `${formatNumber(value)} σ`;
    case "s":
      return formatAge(value * 1000);
    default: // km, km/h, and any unit a later server adds
      return `${formatNumber(value)} ${unit}`;
  }
}

// "card_testing" → "Card testing": rule codes are snake_case identifiers.
export function ruleLabel(code) {
  return capitalize(String(code ?? "").replaceAll("_", " "));
}
