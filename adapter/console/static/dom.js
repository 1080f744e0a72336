// Small DOM helpers: elements are built with text nodes only (never innerHTML), so device data can't inject markup.
// Live pages build their content afresh on every refresh and `morph` it into what is shown: nodes that match stay
// (so focus, scroll, selection and an opened <details> stay), only what changed is touched.

const handlers = new WeakMap(); // element -> {event type: the newest listener}

// Listeners go through one dispatcher per element and type, so that `morph` can hand a kept element the
// listeners of its new build (their closures see the new data).
function listen(el, type, fn) {
  let map = handlers.get(el);
  if (!map) handlers.set(el, map = {});
  if (!(type in map)) el.addEventListener(type, (event) => handlers.get(el)?.[type]?.(event));
  map[type] = fn;
}

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") listen(el, name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name === "value") el.value = value;
    else if (name === "checked") el.checked = Boolean(value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  add(el, ...children);
  return el;
}

// Appends children, skipping null, undefined and false (Element.append would write "null").
export function add(el, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function replace(el, ...children) {
  el.replaceChildren();
  return add(el, ...children);
}

// Makes `el`'s children those of `children` (as `replace` would), keeping every node that matches.
export function update(el, ...children) {
  morph(el, add(el.cloneNode(false), ...children));
  return el;
}

const KEPT_ATTRIBUTES = new Set(["open"]); // what the user changes on an element: a refresh leaves it
const keyOf = (node) => (node.nodeType === Node.ELEMENT_NODE ? node.getAttribute("data-key") : null);

// Turns `from` into `to`: the same node when tag and key (`data-key`) match (attributes, value, listeners and
// children brought over), else `to` in its place. Answers the node now in the document.
export function morph(from, to) {
  if (from.nodeType !== to.nodeType || from.nodeName !== to.nodeName || keyOf(from) !== keyOf(to)) {
    from.replaceWith(to);
    return to;
  }
  if (from.nodeType === Node.TEXT_NODE) {
    if (from.data !== to.data) from.data = to.data;
    return from;
  }
  if (from.nodeType !== Node.ELEMENT_NODE) {
    from.replaceWith(to);
    return to;
  }
  for (const { name } of [...from.attributes]) {
    if (!to.hasAttribute(name) && !KEPT_ATTRIBUTES.has(name)) from.removeAttribute(name);
  }
  for (const { name, value } of [...to.attributes]) {
    if (from.getAttribute(name) !== value) from.setAttribute(name, value);
  }
  if ("checked" in from && from.checked !== to.checked) from.checked = to.checked;
  if ("value" in from && from.tagName !== "SELECT" && from !== document.activeElement && from.value !== to.value) {
    from.value = to.value;
  }
  const theirs = handlers.get(to);
  if (theirs) for (const [type, fn] of Object.entries(theirs)) listen(from, type, fn);
  morphChildren(from, to);
  return from;
}

function morphChildren(from, to) {
  const next = [...to.childNodes];
  const old = [...from.childNodes];
  const keyed = new Map();
  const plain = []; // unkeyed nodes, and any repeat of a key (so that it goes unless matched)
  for (const n of old) {
    if (keyOf(n) && !keyed.has(keyOf(n))) keyed.set(keyOf(n), n);
    else plain.push(n);
  }
  const matches = next.map((node) => {
    if (keyOf(node)) {
      const found = keyed.get(keyOf(node));
      keyed.delete(keyOf(node));
      return found ?? null;
    }
    const at = plain.findIndex((n) => n.nodeName === node.nodeName);
    return at < 0 ? null : plain.splice(at, 1)[0];
  });
  // first what goes (so that what stays needs no move: moving a focused node would blur it), then in order
  for (const node of [...keyed.values(), ...plain]) node.remove();
  next.forEach((node, i) => {
    const kept = matches[i] ? morph(matches[i], node) : node;
    const at = from.childNodes[i];
    if (at !== kept) from.insertBefore(kept, at ?? null);
  });
}

let uid = 0;
export function nextId(prefix) {
  uid += 1;
  return `${prefix}-${uid}`;
}

// A labelled form control: `control` is an input, select or textarea element.
export function field(text, control, hint) {
  return h("label", {}, text, control, hint ? h("span", { class: "muted" }, hint) : null);
}

// `columns`: [{title, cell(row) -> node|text, class?}]; `caption` names the table for screen readers and tests;
// `key(row)` (optional) keys its rows, so that a refresh keeps each row's nodes whatever moved.
export function table(caption, columns, rows, empty = "Nothing yet.", key = null) {
  if (!rows.length) return h("p", { class: "muted" }, caption, ": ", empty);
  return h("table", {},
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c.title)))),
    h("tbody", {}, rows.map((row) => h("tr", { "data-key": key ? String(key(row)) : null },
      columns.map((c) => h("td", { class: c.class }, c.cell(row)))))));
}

export function keyValues(caption, pairs) {
  return h("table", { class: "kv" }, h("caption", {}, caption),
    h("tbody", {}, pairs.map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, v)))));
}

export const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone;
const LOCAL = new Intl.DateTimeFormat("sv-SE", { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit",
  minute: "2-digit", second: "2-digit", hourCycle: "h23" });
const OFFSET = new Intl.DateTimeFormat("en-US", { timeZoneName: "shortOffset" });
const CLOCK = new Intl.DateTimeFormat("sv-SE", { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });

// The browser's offset from UTC on that date, as "GMT+5:30" ("GMT" for UTC itself).
export function offsetOf(date) {
  return OFFSET.formatToParts(date).find((p) => p.type === "timeZoneName")?.value ?? "";
}

// "2025-01-02 13:04:05 GMT+1": the browser's zone, shown (the title names it; `datetime` is UTC).
export function time(seconds) {
  if (!seconds) return "—";
  const date = new Date(Number(seconds) * 1000);
  return h("time", { datetime: date.toISOString(), title: ZONE }, `${LOCAL.format(date)} ${offsetOf(date)}`);
}

export function clock(seconds) {
  return CLOCK.format(new Date(Number(seconds) * 1000));
}

export function badge(text, kind) {
  return h("span", { class: `badge ${kind}` }, text);
}

export function onlineBadge(online) {
  return online ? badge("online", "on") : badge("offline", "off");
}

export function errorBox() {
  return h("p", { class: "error", role: "alert" });
}

export function noteBox() {
  return h("p", { class: "note", role: "status" });
}

export function loading(what = "") {
  return h("p", { class: "muted loading", role: "status" }, `Loading${what ? ` ${what}` : ""}…`);
}

// A pager for `total` items, `limit` a page, now on `page`; `go(n)` shows page n. `label` names it.
export function pager(label, page, limit, total, noun, go) {
  const pages = Math.max(1, Math.ceil(total / limit));
  return h("nav", { class: "pager", "aria-label": label },
    h("button", { type: "button", disabled: page <= 1, onclick: () => go(page - 1) }, "Previous page"),
    h("span", {}, `Page ${page} of ${pages} · ${total} ${noun}${total === 1 ? "" : "s"}`),
    h("button", { type: "button", disabled: page >= pages, onclick: () => go(page + 1) }, "Next page"));
}

// Any JSON value as a table: an array of objects gets a column per key, an object a row per key.
export function jsonTable(caption, value) {
  if (Array.isArray(value) && value.length && value.every((v) => v && typeof v === "object" && !Array.isArray(v))) {
    const keys = [...new Set(value.flatMap((v) => Object.keys(v)))];
    return table(caption, keys.map((k) => ({ title: k, cell: (row) => scalar(row[k]) })), value);
  }
  if (value && typeof value === "object" && !Array.isArray(value)) {
    return keyValues(caption, Object.entries(value).map(([k, v]) => [k, scalar(v)]));
  }
  return h("p", {}, h("strong", {}, caption, ": "), scalar(value));
}

function scalar(v) {
  if (v === undefined || v === null) return "";
  if (typeof v === "object") return h("span", { class: "mono" }, JSON.stringify(v));
  return String(v);
}
