// Dashboard: the broker's counters and nodes, device and peripheral counts, refreshed every few seconds.

import { ApiError, get } from "./api.js";
import { h, replace, table } from "./dom.js";

const REFRESH_MS = 5000;

function stats(label, pairs) {
  return h("dl", { class: "stats", "aria-label": label },
    pairs.map(([name, value]) => h("div", {}, h("dt", {}, name), h("dd", {}, value ?? "—"))));
}

// Fills `box` with `draw(data)`, or with the API's message when the call fails.
async function fill(box, load, draw) {
  try {
    replace(box, draw(await load()));
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    replace(box, h("p", { class: "error", role: "alert" }, e.message));
  }
}

export async function render(ctx) {
  const devicesBox = h("div", { "aria-live": "polite" });
  const peripheralsBox = h("div", { "aria-live": "polite" });
  const brokerBox = h("div");
  const nodesBox = h("div");
  const updated = h("p", { class: "muted" });
  ctx.main.append(
    h("h1", {}, "Dashboard"),
    h("div", { class: "grid" },
      h("section", { class: "card", "aria-labelledby": "dash-devices" },
        h("h2", { id: "dash-devices" }, "Devices"), devicesBox, h("a", { href: "#/devices" }, "All devices")),
      h("section", { class: "card", "aria-labelledby": "dash-peripherals" },
        h("h2", { id: "dash-peripherals" }, "Peripherals"), peripheralsBox),
      h("section", { class: "card", "aria-labelledby": "dash-broker" },
        h("h2", { id: "dash-broker" }, "Broker"), brokerBox)),
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
      ], n.list)),
    ]);
    updated.textContent = `Updated ${new Date().toLocaleTimeString()}; refreshes every ${REFRESH_MS / 1000} s.`;
  }, REFRESH_MS);
}
