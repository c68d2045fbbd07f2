// JSON from the server, with transaction amounts kept exact.
//
// The server keeps an amount as an exact decimal and sends it as a JSON number with every
// digit (`"amount":99999999999999.99`). A JavaScript number holds about 15 significant
// digits, so JSON.parse would round such an amount (to 99999999999999.98) before anything
// could show it. Where the amount has more digits than that, the parse keeps the number's
// own text (JSON.parse's source text access), a decimal string the formatters show digit
// for digit. The other amounts stay numbers, which hold them exactly; so does everything on
// a browser without source text access.

// An amount of 16 characters or more might not survive as a number; the regular expression
// costs a fraction of a millisecond on a 1,000-alert page, a reviver over every value
// several times the parse itself, so only such texts pay for one.
const LONG_AMOUNT = /"amount":\s*-?[0-9][0-9.eE+-]{15,}/;

// The objects whose amount is such a string: written back as a number (stringifyJson).
const exact = new WeakSet();

function keepAmountText(key, value, context) {
  if (key !== "amount" || typeof value !== "number") return value;
  const source = context?.source;
  if (typeof source !== "string") return value;
  exact.add(this);
  return source;
}

export function parseJson(text) {
  return LONG_AMOUNT.test(text) ? JSON.parse(text, keepAmountText) : JSON.parse(text);
}

// JSON text of what the server sent: an amount parseJson kept as a decimal string is
// written back as the number it was, not as a quoted string.
export function stringifyJson(value, indent = 2) {
  const raw = typeof JSON.rawJSON === "function" ? JSON.rawJSON : null;
  return JSON.stringify(
    value,
    function (key, item) {
      return raw && key === "amount" && exact.has(this) ? raw(item) : item;
    },
    indent,
  );
}
