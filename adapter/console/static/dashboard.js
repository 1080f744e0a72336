// Dashboard: the broker's counters and nodes, device and peripheral counts (refreshed every few seconds), and
// charts of the service's per-minute series over the last hour or day.

import { ApiError, get } from "./api.js";
import { chartCard } from "./chart.js";
import { add, h, loading, table, update } from "./dom.js";

const REFRESH_MS = 5000;
const CHARTS_MS = 15000;

const CHARTS = [
  { title: "Devices online", lines: [{ name: "online", metric: "devices.online" }] },
  { title: "Messages received", bars: true, lines: [{ name: "messages", metric: "ingest.messages" },
    { name: "all EMQX events", metric: "ingest.events" }] },
  { title: "Deliveries", bars: true, lines: [{ name: "delivered", metric: "deliveries.delivered" },
    { name: "failed", metric: "deliveries.failed" }] },
  { title: "Commands", bars: true, lines: [{ name: "succeeded", metric: "commands.succeeded" },
    { name: "failed", metric: "commands.failed" }] },
];

function stats(label, pairs) {
  return h("dl", { class: "stats", "aria-label": label },
    pairs.map(([name, value]) => h("div", {}, h("dt", {}, name), h("dd", {}, value ?? "—"))));
}

// Fills `box` with `draw(data)`, or with the API's message when the call fails.
async function fill(box, load, draw) {
  try {
    update(box, draw(await load()));
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    update(box, h("p", { class: "error", role: "alert" }, e.message));
  }
}

export async function render(ctx) {
  const devicesBox = h("div", { "aria-live": "polite" }, loading());
  const peripheralsBox = h("div", { "aria-live": "polite" }, loading());
  const brokerBox = h("div", {}, loading());
  const nodesBox = h("div", {}, loading());
  const updated = h("p", { class: "muted" });
  const charts = chartCard("dash-charts", "Activity", CHARTS);
  add(ctx.main,
    h("h1", {}, "Dashboard"),
    h("div", { class: "grid" },
      h("section", { class: "card", "aria-labelledby": "dash-devices" },
        h("h2", { id: "dash-devices" }, "Devices"), devicesBox, h("a", { href: "#/devices" }, "All devices")),
      h("section", { class: "card", "aria-labelledby": "dash-peripherals" },
        h("h2", { id: "dash-peripherals" }, "Peripherals"), peripheralsBox),
      h("section", { class: "card", "aria-labelledby": "dash-broker" },
        h("h2", { id: "dash-broker" }, "Broker"), brokerBox, h("a", { href: "#/clients" }, "Connections and sessions"))),
    charts.card,
    h("section", { class: "card", "aria-labelledby": "dash-nodes" },
      h("h2", { id: "dash-nodes" }, "Broker nodes"), nodesBox),
    updated);
  const counts = (c) => stats("counts", [["Online", c.online], ["Offline", c.offline], ["Total", c.total]]);
  ctx.live(async () => {
    await Promise.all([
      fill(devicesBox, () => get("/monitor/devices/count"), counts),
      fill(peripheralsBox, () => get("/monitor/devices/peripherals/count"), counts),
      fill(brokerBox, () => get("/monitor/brokers/stats"), (s) => h("div", {},
        stats("broker counts", [["Nodes", s.stats.nodeCount], ["Connections", s.stats.connectionCount],
          ["Sessions", s.stats.sessionCount]]),
        stats("broker messages", [["Messages in", s.metrics.messageReceivedCount],
          ["Messages out", s.metrics.messageSentCount], ["Bytes in", s.metrics.byteReceivedCount],
          ["Bytes out", s.metrics.byteSentCount]]))),
      fill(nodesBox, () => get("/monitor/brokers"), (n) => table("Nodes", [
        { title: "Node", cell: (r) => r.node, class: "mono" },
        { title: "Status", cell: (r) => r.node_status },
        { title: "Version", cell: (r) => r.version ?? "" },
        { title: "Uptime", cell: (r) => r.uptime ?? "" },
        { title: "Connections", cell: (r) => r.connections ?? "" },
        { title: "System", cell: (r) => r.sysdescr },
      ], n.list, "none.", (r) => r.node)),
    ]);
    updated.textContent = `Updated ${new Date().toLocaleTimeString()}; refreshes every ${REFRESH_MS / 1000} s.`;
  }, REFRESH_MS);
  ctx.live(charts.refresh, CHARTS_MS);
}
