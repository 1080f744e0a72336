// Devices: the server's pages (never the whole fleet in the page), an online filter and an sn prefix search;
// one device with its reports (procs, sys, versions: JSON strings shown as tables), its peripherals and a chart of
// its time online (from its presence log). Both refresh live: the new content is morphed into the old (dom.update), so focus, scroll and ticks stay.

import { ApiError, get } from "./api.js";
import { chartCard } from "./chart.js";
import { commandText, stateBadge } from "./commands.js";
import { add, field, h, jsonTable, keyValues, loading, onlineBadge, pager as pages, table, time, update } from "./dom.js";

const REFRESH_MS = 5000;
const CHARTS_MS = 15000;
const LIMITS = [20, 50, 100, 500];
const selected = new Set();

function query(params) {
  const limit = Number(params.get("limit")) || LIMITS[0];
  return { page: Math.max(1, Number(params.get("page")) || 1), limit, online: params.get("online") || "",
    sn: params.get("sn") || "" };
}

function hashOf(q) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== "" && v !== undefined) p.set(k, String(v));
  return `#/devices?${p}`;
}

export async function render(ctx) {
  const q = query(ctx.params);
  const sn = h("input", { type: "search", name: "sn", value: q.sn, placeholder: "e.g. SIM00", autocomplete: "off" });
  const online = h("select", { name: "online" },
    [["", "all"], ["true", "online"], ["false", "offline"]].map(([v, t]) => h("option", { value: v, selected: v === q.online }, t)));
  const limit = h("select", { name: "limit" }, LIMITS.map((n) => h("option", { value: n, selected: n === q.limit }, n)));
  const filter = h("form", { class: "inline", role: "search", "aria-label": "Filter devices" },
    field("sn starts with", sn), field("Status", online), field("Per page", limit),
    h("button", { type: "submit" }, "Search"));
  filter.addEventListener("submit", (e) => {
    e.preventDefault();
    ctx.go(hashOf({ ...q, page: 1, sn: sn.value.trim(), online: online.value, limit: limit.value }));
  });

  const list = h("div", {}, loading("devices"));
  const pager = h("div");
  const error = h("p", { class: "error", role: "alert" });
  const send = ctx.admin ? h("button", { type: "button", class: "primary", disabled: !selected.size }, "") : null;
  const label = () => {
    if (!send) return;
    send.textContent = `Send a command to ${selected.size} selected`;
    send.disabled = !selected.size;
  };
  label();
  send?.addEventListener("click", () => ctx.go(`#/commands?to=${encodeURIComponent([...selected].join(","))}`));
  const clear = ctx.admin ? h("button", { type: "button", onclick: () => { selected.clear(); label(); draw(last); } },
    "Clear selection") : null;

  let last = null;
  const columns = [
    ...(ctx.admin ? [{ title: "Select", cell: (d) => h("input", { type: "checkbox", checked: selected.has(d.sn),
      "aria-label": `select ${d.sn}`,
      onchange: (e) => { if (e.target.checked) selected.add(d.sn); else selected.delete(d.sn); label(); } }) }] : []),
    { title: "sn", cell: (d) => h("a", { href: `#/device/${encodeURIComponent(d.sn)}` }, d.sn), class: "mono" },
    { title: "Status", cell: (d) => onlineBadge(d.online) },
    { title: "Online since", cell: (d) => (d.online ? time(d.onlineTime) : "—") },
    { title: "Offline since", cell: (d) => (d.online ? "—" : time(d.offlineTime)) },
    { title: "Last active", cell: (d) => time(d.activeTime) },
    { title: "Booted", cell: (d) => time(d.bootTime) },
    { title: "Heartbeat (s)", cell: (d) => d.dur || "—" },
  ];
  function draw(page) {
    if (!page) return;
    update(list, table("Devices", columns, page.list, "no device matches.", (d) => d.sn));
    update(pager, pages("Device pages", q.page, page.limit, page.total, "device",
      (n) => ctx.go(hashOf({ ...q, page: n }))));
  }

  add(ctx.main, h("h1", {}, "Devices"),
    h("section", { class: "card" }, filter, ctx.admin ? h("div", { class: "actions" }, send, clear) : null,
      error, list, pager));
  ctx.live(async () => {
    try {
      last = await get("/monitor/devices", q);
      error.textContent = "";
      draw(last);
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      error.textContent = e.message;
    }
    return true;
  }, REFRESH_MS);
}

function report(caption, text) {
  if (!text) return h("p", { class: "muted" }, caption, ": no report yet.");
  let value;
  try {
    value = JSON.parse(text);
  } catch {
    return h("div", {}, h("h3", {}, caption), h("pre", { class: "output" }, text));
  }
  const rows = value && typeof value === "object" && "d" in value ? value.d : value;
  const at = value && typeof value === "object" && "time" in value ? ` (device time ${value.time})` : "";
  return h("div", { class: "report" }, h("h3", {}, caption, h("span", { class: "muted" }, at)), jsonTable(caption, rows));
}

export async function renderDevice(ctx) {
  const sn = ctx.args[0] || "";
  const body = h("div", {}, loading("the device"));
  // its share of each step online, from its presence log (GET /stats/series?metric=device.online&sn=)
  const charts = chartCard("device-charts", "Presence over time", [{ title: `Time online of ${sn}`,
    lines: [{ name: "online (share)", metric: "device.online", sn }] }]);
  add(ctx.main, h("p", {}, h("a", { href: "#/devices" }, "← Devices")), h("h1", {}, "Device ", h("span", { class: "mono" }, sn)),
    ctx.admin ? h("p", {}, h("a", { href: `#/commands?to=${encodeURIComponent(sn)}` }, "Send a command to this device")) : null,
    charts.card, body);
  ctx.live(async () => {
    let device;
    try {
      device = await get(`/monitor/devices/${encodeURIComponent(sn)}`);
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      update(body, h("p", { class: "error", role: "alert" }, e.message));
      return e.status !== 404;
    }
    const [peripherals, recent] = await Promise.all([
      get("/monitor/devices/peripherals", { sn, limit: 100 }),
      get("/remotectl/commands", { sn, limit: 10 }),
    ]);
    update(body,
      h("section", { class: "card" }, h("h2", {}, "Presence"), keyValues("Presence", [
        ["Status", onlineBadge(device.online)], ["Online since", time(device.onlineTime)],
        ["Offline since", time(device.offlineTime)], ["Last active", time(device.activeTime)],
        ["Booted", time(device.bootTime)], ["Heartbeat (s)", device.dur || "—"],
        ["Presence version", device.version], ["Peripherals", device.peripherals]])),
      h("section", { class: "card" }, h("h2", {}, "Reports"), report("Processes", device.procs),
        report("System", device.sys), report("Versions", device.versions)),
      h("section", { class: "card" }, h("h2", {}, "Peripherals"), table("Peripherals", [
        { title: "nId", cell: (p) => p.nId, class: "mono" }, { title: "Gateway", cell: (p) => p.gwId, class: "mono" },
        { title: "Status", cell: (p) => onlineBadge(p.online) }, { title: "Last active", cell: (p) => time(p.activeTime) },
        { title: "Received", cell: (p) => time(p.revTime) }, { title: "Message", cell: (p) => p.msg, class: "mono wrap" },
      ], peripherals.list, "none reported.", (p) => `${p.sn}/${p.nId}`), peripherals.total > peripherals.count
        ? h("p", { class: "muted" }, `first ${peripherals.count} of ${peripherals.total}`) : null),
      h("section", { class: "card" }, h("h2", {}, "Recent commands"), table("Recent commands", [
        { title: "id", cell: (c) => c.idStr, class: "mono" }, { title: "Command", cell: (c) => commandText(c) },
        { title: "From", cell: (c) => c.from }, { title: "State", cell: (c) => stateBadge(c.state) },
        { title: "Reason", cell: (c) => c.reason }, { title: "Created", cell: (c) => time(c.createTime) },
      ], recent.list, "none.", (c) => c.idStr), h("a", { href: `#/commands?sn=${encodeURIComponent(sn)}` }, "All commands of this device")));
    return true;
  }, REFRESH_MS);
  ctx.live(charts.refresh, CHARTS_MS);
}
