// Charts of the service's per-minute series (GET /stats/series): a small SVG of our own (no library, no CDN,
// nothing inline for the CSP: colours come from console.css classes). Every chart is a <figure> named by its
// caption, its SVG says what it shows in words (role="img", a label with the latest, highest and lowest values),
// and a "Table" disclosure below it holds every point as a table.

import { ApiError, get } from "./api.js";
import { clock, h, offsetOf, time, update } from "./dom.js";

const NS = "http://www.w3.org/2000/svg";
const W = 480;
const H = 150;
const PAD = { left: 40, right: 8, top: 8, bottom: 22 };

export const RANGES = {
  hour: { label: "Last hour", seconds: 3600, step: 60 },
  day: { label: "Last day", seconds: 86400, step: 600 },
};

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const child of children) if (child) el.append(child);
  return el;
}

// The points of `metric` (and its target's `id` or its device's `sn`) over `range`: [[time s, value or null], …].
export async function series(metric, range, id, sn) {
  const r = RANGES[range];
  const to = Math.floor(Date.now() / 1000);
  const data = await get("/stats/series", { metric, id, sn, from: to - r.seconds, to, step: r.step });
  return data.points;
}

function niceMax(max) {
  if (max <= 0) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * magnitude >= max) return m * magnitude;
  return 10 * magnitude;
}

function summary(title, lines, rangeLabel) {
  const parts = lines.map(({ name, points }) => {
    const values = points.map(([, v]) => v).filter((v) => v !== null);
    if (!values.length) return `${name}: no data`;
    return `${name}: latest ${values[values.length - 1]}, highest ${Math.max(...values)}, lowest ${Math.min(...values)}`;
  });
  return `${title}, ${rangeLabel.toLowerCase()}. ${parts.join("; ")}.`;
}

// `lines`: [{name, points}] sharing one time axis; `bars`: draw bars (counts per step) rather than lines.
export function chart(title, lines, { range = "hour", bars = false } = {}) {
  const points = lines[0]?.points ?? [];
  const max = niceMax(Math.max(0, ...lines.flatMap((l) => l.points.map(([, v]) => v ?? 0))));
  const x0 = points.length ? points[0][0] : 0;
  const span = Math.max(1, (points.length ? points[points.length - 1][0] : 1) - x0);
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const x = (t) => PAD.left + ((t - x0) / span) * plotW;
  const y = (v) => PAD.top + plotH - (v / max) * plotH;
  const grid = [0, max / 2, max].map((v) => svg("g", { class: "tick" },
    svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v) }),
    svg("text", { x: PAD.left - 4, y: y(v) + 4, "text-anchor": "end" }, document.createTextNode(fmt(v)))));
  const labels = points.length ? [points[0], points[Math.floor(points.length / 2)], points[points.length - 1]]
    .map(([t], i) => svg("text", { class: "axis", x: x(t), y: H - 6, "text-anchor": ["start", "middle", "end"][i] },
      document.createTextNode(clock(t)))) : [];
  const marks = lines.map((line, n) => (bars ? barsOf(line, n, lines.length, x, y, plotW, points.length)
    : lineOf(line, n, x, y)));
  const rangeLabel = RANGES[range].label;
  const caption = h("figcaption", {}, title, h("span", { class: "muted" }, ` · ${rangeLabel.toLowerCase()}`));
  return h("figure", { class: "chart", "data-key": title },
    caption,
    h("ul", { class: "legend" }, lines.map((l, n) => h("li", {}, h("span", { class: `swatch s${n}` }), l.name))),
    svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": summary(title, lines, rangeLabel) },
      ...grid, ...labels, ...marks),
    h("details", {}, h("summary", {}, "Table"), pointsTable(title, lines)));
}

function fmt(v) {
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

function lineOf(line, n, x, y) {
  const runs = [];
  let run = [];
  for (const [t, v] of line.points) {
    if (v === null) {
      if (run.length) runs.push(run);
      run = [];
    } else {
      run.push(`${x(t).toFixed(1)},${y(v).toFixed(1)}`);
    }
  }
  if (run.length) runs.push(run);
  return svg("g", { class: `series s${n}` }, ...runs.map((r) => (r.length === 1
    ? svg("circle", { cx: r[0].split(",")[0], cy: r[0].split(",")[1], r: 2 })
    : svg("polyline", { points: r.join(" ") }))));
}

function barsOf(line, n, count, x, y, plotW, total) {
  const slot = plotW / Math.max(1, total);
  const width = Math.max(1, (slot * 0.8) / count);
  return svg("g", { class: `series bars s${n}` }, ...line.points.filter(([, v]) => v).map(([t, v]) => svg("rect", {
    x: (x(t) - (slot * 0.4) + n * width).toFixed(1), y: y(v).toFixed(1), width: width.toFixed(1),
    height: Math.max(0, y(0) - y(v)).toFixed(1) })));
}

// The chart as a table: a row per point that has a value (the steps nothing was sampled in are left out).
function pointsTable(title, lines) {
  const rows = (lines[0]?.points ?? []).map(([t], i) => [t, lines.map((l) => l.points[i]?.[1] ?? null)])
    .filter(([, values]) => values.some((v) => v !== null));
  if (!rows.length) return h("p", { class: "muted" }, "No data in this range yet.");
  const zone = offsetOf(new Date(rows[0][0] * 1000));
  return h("table", { class: "points" }, h("caption", {}, `${title}: its points`),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, `From (${zone})`),
      lines.map((l) => h("th", { scope: "col" }, l.name)))),
    h("tbody", {}, rows.map(([t, values]) => h("tr", { "data-key": String(t) }, h("td", {}, time(t)),
      values.map((v) => h("td", {}, v === null ? "—" : String(v)))))));
}

// A card of charts with a range switch ("Last hour", "Last day"); `specs`: [{title, lines: [{name, metric, id, sn}],
// bars}]. `refresh()` draws them (now, on a range change, and on the caller's live timer).
export function chartCard(headingId, heading, specs) {
  let range = "hour";
  const buttons = {};
  const body = h("div", { class: "charts" }, h("p", { class: "muted loading", role: "status" }, "Loading charts…"));
  async function refresh() {
    try {
      const figures = await Promise.all(specs.map(async (spec) => chart(spec.title, await Promise.all(
        spec.lines.map(async (l) => ({ name: l.name, points: await series(l.metric, range, l.id, l.sn) }))),
      { range, bars: spec.bars })));
      update(body, figures);
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      update(body, h("p", { class: "error", role: "alert" }, e.message));
    }
  }
  function pick(name) {
    range = name;
    for (const [n, b] of Object.entries(buttons)) b.setAttribute("aria-pressed", String(n === name));
    return refresh();
  }
  for (const [name, r] of Object.entries(RANGES)) {
    buttons[name] = h("button", { type: "button", "aria-pressed": String(name === range), onclick: () => pick(name) },
      r.label);
  }
  const card = h("section", { class: "card", "aria-labelledby": headingId },
    h("div", { class: "card-head" }, h("h2", { id: headingId }, heading),
      h("div", { class: "actions", role: "group", "aria-label": `${heading}: time range` }, Object.values(buttons))),
    body);
  return { card, refresh };
}
