// The one way this page builds DOM from data: createElement + textContent, never HTML strings.

const SVG_NS = "http://www.w3.org/2000/svg";

function fill(node, props, children, asAttribute) {
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "className" && !asAttribute) node.className = value;
    else if (key === "className") node.setAttribute("class", value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined && child !== false) {
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
  }
  return node;
}

export function h(tag, props = {}, children = []) {
  return fill(document.createElement(tag), props, children, false);
}

// The same for inline SVG (charts), which lives in its own namespace.
export function svg(tag, props = {}, children = []) {
  return fill(document.createElementNS(SVG_NS, tag), props, children, true);
}

export function setText(node, value) {
  const text = String(value ?? "");
  if (node.textContent !== text) node.textContent = text;
}
