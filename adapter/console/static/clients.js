// Clients: the broker's connections and sessions (GET /monitor/brokers/connections and …/sessions, read from
// EMQX), a page at a time, searched by client id (EMQX's like_clientid: any part of the id), refreshed live.

import { ApiError, get } from "./api.js";
import { add, field, h, loading, pager, table, time, update } from "./dom.js";

const REFRESH_MS = 5000;
const LIMITS = [10, 20, 50, 100];

const flag = (v) => (v ? "yes" : "no");

// The API's broker times ("YYYY-MM-DD HH:MM:SS", UTC) in the browser's zone, like every other time.
function brokerTime(text) {
  const at = Date.parse(`${String(text).replace(" ", "T")}Z`);
  return Number.isNaN(at) ? (text ?? "—") : time(at / 1000);
}

const LISTS = [
  {
    id: "connections", title: "Connections", path: "/monitor/brokers/connections", noun: "connection",
    columns: [
      { title: "Client id", cell: (c) => c.client_id, class: "mono" },
      { title: "User", cell: (c) => c.username, class: "mono" },
      { title: "Address", cell: (c) => `${c.ipaddress}:${c.port}`, class: "mono" },
      { title: "Node", cell: (c) => c.node, class: "mono" },
      { title: "Connected at", cell: (c) => brokerTime(c.connected_at) },
      { title: "Keepalive (s)", cell: (c) => c.keepalive },
      { title: "Protocol", cell: (c) => `${c.proto_name} ${c.proto_ver}` },
      { title: "Clean start", cell: (c) => flag(c.clean_start) },
    ],
  },
  {
    id: "sessions", title: "Sessions", path: "/monitor/brokers/sessions", noun: "session",
    columns: [
      { title: "Client id", cell: (c) => c.client_id, class: "mono" },
      { title: "Connected", cell: (c) => flag(c.connected) },
      { title: "Created at", cell: (c) => brokerTime(c.created_at) },
      { title: "Subscriptions", cell: (c) => c.subscriptions_count },
      { title: "Queued", cell: (c) => `${c.mqueue_len} / ${c.max_mqueue}` },
      { title: "Dropped", cell: (c) => c.mqueue_dropped },
      { title: "In flight", cell: (c) => `${c.inflight_len} / ${c.max_inflight}` },
      { title: "Expiry (s)", cell: (c) => c.expiry_interval },
      { title: "Node", cell: (c) => c.node, class: "mono" },
    ],
  },
];

export async function render(ctx) {
  const search = h("input", { type: "search", name: "client", autocomplete: "off", value: ctx.params.get("q") || "",
    placeholder: "e.g. SIM00" });
  const limit = h("select", { name: "limit" }, LIMITS.map((n) => h("option", { value: n, selected: n === 20 }, n)));
  const form = h("form", { class: "inline", role: "search", "aria-label": "Search clients" },
    field("Client id contains", search), field("Per page", limit), h("button", { type: "submit" }, "Search"));
  const state = Object.fromEntries(LISTS.map((l) => [l.id, { page: 1, box: h("div", {}, loading(l.noun + "s")),
    pages: h("div"), error: h("p", { class: "error", role: "alert" }) }]));

  async function load(list) {
    const s = state[list.id];
    const mine = s.asked = (s.asked ?? 0) + 1; // a later call's answer wins, whichever comes back first
    try {
      const data = await get(list.path, { page: s.page, limit: limit.value, like_client_id: search.value.trim() });
      if (mine !== s.asked) return;
      s.error.textContent = "";
      update(s.box, table(list.title, list.columns, data.list, search.value.trim() ? "no client id matches." : "none.",
        (c) => c.client_id));
      update(s.pages, pager(`${list.title} pages`, s.page, data.limit, data.total, list.noun,
        (n) => { s.page = n; load(list); }));
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      if (mine === s.asked) s.error.textContent = e.message;
    }
  }
  const loadAll = () => Promise.all(LISTS.map(load));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    for (const s of Object.values(state)) s.page = 1;
    loadAll();
  });

  add(ctx.main, h("h1", {}, "Clients"),
    h("section", { class: "card", "aria-label": "Search" }, form,
      h("p", { class: "muted" }, "MQTT clients as the broker (EMQX) lists them: devices and any other client.")),
    LISTS.map((l) => h("section", { class: "card", "aria-labelledby": `${l.id}-title` },
      h("h2", { id: `${l.id}-title` }, l.title), state[l.id].error, state[l.id].box, state[l.id].pages)));
  ctx.live(loadAll, REFRESH_MS);
}
