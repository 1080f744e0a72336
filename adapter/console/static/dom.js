// Small DOM helpers: elements are built with text nodes only (never innerHTML), so device data can't inject markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name === "value") el.value = value;
    else if (name === "checked") el.checked = Boolean(value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
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

// `columns`: [{title, cell(row) -> node|text, class?}]; `caption` names the table for screen readers and tests.
export function table(caption, columns, rows, empty = "Nothing yet.") {
  if (!rows.length) return h("p", { class: "muted" }, caption, ": ", empty);
  return h("table", {},
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c.title)))),
    h("tbody", {}, rows.map((row) => h("tr", {},
      columns.map((c) => h("td", { class: c.class }, c.cell(row)))))));
}

export function keyValues(caption, pairs) {
  return h("table", { class: "kv" }, h("caption", {}, caption),
    h("tbody", {}, pairs.map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, v)))));
}

export function time(seconds) {
  if (!seconds) return "—";
  const iso = new Date(Number(seconds) * 1000).toISOString();
  return h("time", { datetime: iso }, iso.slice(0, 19).replace("T", " "));
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
