// Message routes and status-change callbacks: the same page for both kinds of target (list with counters,
// add, change, enable, delete, the signing secret shown once on create and rotate, recent deliveries,
// dead letters and replay). `ROUTES` and `CALLBACKS` say what differs.

import { ApiError, del, get, post, put } from "./api.js";
import { badge, errorBox, field, h, keyValues, noteBox, replace, table, time } from "./dom.js";

const OUTCOMES = ["", "success", "retry", "failed", "dead"];
const REFRESH_MS = 3000;

const text = (name, attrs = {}) => h("input", { type: "text", name, autocomplete: "off", ...attrs });

export const ROUTES = {
  page: "routes",
  title: "Message routes",
  noun: "route",
  base: "/msgroute/configs",
  // the seed's route answers carry no `enabled`: the page offers both switches
  columns: [{ title: "Name", cell: (t) => t.name }, { title: "Topic filter", cell: (t) => t.topic, class: "mono" }],
  createFields: () => ({ name: text("name", { required: true, maxlength: 128 }),
    topic: text("topic", { required: true, placeholder: "dma/resp/cmd" }),
    url: h("input", { type: "url", name: "url", required: true, placeholder: "https://example.com/hook" }) }),
  labels: { name: "Name", topic: "Topic filter (+ one level, # the rest)", url: "URL", type: "Type" },
  editable: ["name", "topic", "url"],
  enable: (id, enabled) => put("/msgroute/configs", { id, enabled }),
  statsTypes: [],
};

export const CALLBACKS = {
  page: "callbacks",
  title: "Status change callbacks",
  noun: "callback",
  base: "/monitor/devices/callbacks",
  columns: [{ title: "Type", cell: (t) => t.type },
    { title: "Enabled", cell: (t) => (t.enabled ? badge("enabled", "on") : badge("disabled", "off")) }],
  createFields: () => ({ type: h("select", { name: "type" }, ["device", "peripheral"].map((v) => h("option", { value: v }, v))),
    url: h("input", { type: "url", name: "url", required: true, placeholder: "https://example.com/hook" }) }),
  labels: { type: "Type", url: "URL" },
  editable: ["url"],
  enable: (id, enabled) => post("/monitor/devices/callbacks/enable", { id, enabled }),
  statsTypes: ["device", "peripheral"],
};

let pendingSecret = null; // {id, secret}: shown once, by the next render of the page

function secretBox(kind, shown) {
  return h("div", { class: "secret", role: "status" },
    h("p", {}, h("strong", {}, `Signing secret of ${kind.noun} ${shown.id}`),
      " — shown only now: store it where the receiver checks signatures."),
    field("Secret", h("input", { type: "text", readonly: true, value: shown.secret, "aria-label": "signing secret" })));
}

export async function render(ctx, kind) {
  const openId = ctx.args[0] ? Number(ctx.args[0]) : null;
  const listBox = h("div", { "aria-live": "polite" });
  const error = errorBox();
  const note = noteBox();
  const secret = h("div");
  if (pendingSecret) {
    secret.append(secretBox(kind, pendingSecret));
    pendingSecret = null;
  }
  const statsBox = h("div", { class: "grid" });

  async function loadList() {
    const data = await get(kind.base);
    replace(listBox, table(kind.title, [
      { title: "id", cell: (t) => t.id, class: "mono" }, ...kind.columns,
      { title: "URL", cell: (t) => t.url, class: "mono wrap" },
      { title: "Delivered", cell: (t) => t.succCount }, { title: "Failed", cell: (t) => t.failedCount },
      { title: "Updated", cell: (t) => time(t.updateTime) },
      { title: "Details", cell: (t) => h("a", { href: `#/${kind.page}/${t.id}`, "aria-label": `Open ${kind.noun} ${t.id}` }, "Open") },
    ], data.list, `no ${kind.noun} yet.`));
    if (kind.statsTypes.length) {
      const stats = await Promise.all(kind.statsTypes.map((t) => get(`${kind.base}/${t}/stats`)));
      replace(statsBox, kind.statsTypes.map((t, i) => h("section", { class: "card", "aria-labelledby": `stats-${t}` },
        h("h2", { id: `stats-${t}` }, `${t} callbacks`),
        h("dl", { class: "stats" }, h("div", {}, h("dt", {}, "Delivered"), h("dd", {}, stats[i].succ)),
          h("div", {}, h("dt", {}, "Failed"), h("dd", {}, stats[i].failed))))));
    }
    return data.list;
  }

  const create = ctx.admin ? createForm(ctx, kind) : null;
  ctx.main.append(h("h1", {}, kind.title), secret, statsBox,
    h("section", { class: "card", "aria-labelledby": "targets-title" }, h("h2", { id: "targets-title" }, kind.title),
      note, error, listBox),
    create);
  let items = [];
  try {
    items = await loadList();
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    error.textContent = e.message;
  }
  if (openId !== null) {
    const item = items.find((t) => t.id === openId);
    const detail = h("section", { class: "card", "aria-labelledby": "detail-title" });
    ctx.main.insertBefore(detail, create);
    if (!item) replace(detail, h("p", { class: "error", role: "alert" }, `no ${kind.noun} ${openId}`));
    else {
      const reload = () => loadList().then((list) => list.find((t) => t.id === openId));
      const showSecret = (made) => { replace(secret, secretBox(kind, made)); secret.scrollIntoView(); };
      renderDetail(ctx, kind, item, detail, reload, showSecret);
    }
  }
}

function createForm(ctx, kind) {
  const inputs = kind.createFields();
  const enabled = h("input", { type: "checkbox", name: "enabled", checked: true });
  const error = errorBox();
  const submit = h("button", { type: "submit", class: "primary" }, `Add ${kind.noun}`);
  const form = h("form", { class: "stack", "aria-label": `Add a ${kind.noun}` },
    Object.entries(inputs).map(([name, input]) => field(kind.labels[name], input)),
    h("label", { class: "check" }, enabled, "Enabled"), error, h("div", {}, submit));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.textContent = "";
    const body = Object.fromEntries(Object.entries(inputs).map(([name, input]) => [name, input.value.trim()]));
    body.enabled = enabled.checked;
    submit.disabled = true;
    try {
      const made = await post(kind.base, body);
      pendingSecret = { id: made.id, secret: made.secret };
      ctx.go(`#/${kind.page}/${made.id}`);
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      error.textContent = err.message;
    } finally {
      submit.disabled = false;
    }
  });
  return h("section", { class: "card", "aria-labelledby": "create-title" }, h("h2", { id: "create-title" }, `Add a ${kind.noun}`), form);
}

function renderDetail(ctx, kind, item, box, reload, showSecret) {
  const error = errorBox();
  const note = noteBox();
  const info = h("div");
  const deliveries = h("div", { "aria-live": "polite" });
  const dead = h("div");
  const outcome = h("select", { name: "outcome" }, OUTCOMES.map((o) => h("option", { value: o }, o || "all")));
  const act = (fn) => async () => {
    error.textContent = "";
    note.textContent = "";
    try {
      await fn();
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      error.textContent = e.message;
    }
  };
  const drawInfo = (t) => replace(info, keyValues(`${kind.noun} ${t.id}`, [
    ["id", t.id], ...kind.columns.map((c) => [c.title, c.cell(t)]), ["URL", t.url], ["Delivered", t.succCount],
    ["Failed", t.failedCount], ["Created", time(t.createTime)], ["Updated", time(t.updateTime)]]));
  drawInfo(item);

  let controls = null;
  if (ctx.admin) {
    const inputs = Object.fromEntries(kind.editable.map((name) => [name, h("input", {
      type: name === "url" ? "url" : "text", name, value: item[name], required: true })]));
    const save = h("form", { class: "stack", "aria-label": `Change ${kind.noun} ${item.id}` },
      kind.editable.map((name) => field(kind.labels[name], inputs[name])),
      h("div", {}, h("button", { type: "submit" }, "Save changes")));
    save.addEventListener("submit", (e) => {
      e.preventDefault();
      act(async () => {
        const body = { id: item.id };
        for (const name of kind.editable) body[name] = inputs[name].value.trim();
        await put(kind.base, body);
        drawInfo(await reload());
        note.textContent = "Saved.";
      })();
    });
    const confirmDelete = h("button", { type: "button", class: "danger", hidden: true,
      onclick: act(async () => { await del(kind.base, { id: item.id }); ctx.go(`#/${kind.page}`); }) },
    `Yes, delete ${kind.noun} ${item.id}`);
    controls = h("div", {},
      h("div", { class: "actions", role: "group", "aria-label": "Actions" },
        h("button", { type: "button", onclick: act(async () => {
          await kind.enable(item.id, true); drawInfo(await reload()); note.textContent = "Enabled.";
        }) }, "Enable"),
        h("button", { type: "button", onclick: act(async () => {
          await kind.enable(item.id, false); drawInfo(await reload()); note.textContent = "Disabled.";
        }) }, "Disable"),
        h("button", { type: "button", onclick: act(async () => {
          showSecret(await post(`${kind.base}/secret`, { id: item.id }));
        }) }, "Rotate secret"),
        h("button", { type: "button", class: "danger", onclick: () => { confirmDelete.hidden = false; confirmDelete.focus(); } },
          "Delete"),
        confirmDelete),
      h("h3", {}, "Change"), save);
  }

  const deadActions = (row) => (ctx.admin ? h("button", { type: "button", "aria-label": `Replay ${row.deliveryId}`,
    onclick: act(async () => {
      const r = await post(`${kind.base}/replay`, { id: item.id, deliveryId: row.deliveryId });
      note.textContent = `Replayed ${r.replayed}.`;
    }) }, "Replay") : "");
  async function loadDeliveries() {
    const [attempts, letters, now] = await Promise.all([
      get(`${kind.base}/deliveries`, { id: item.id, status: outcome.value }),
      get(`${kind.base}/dead`, { id: item.id }), reload()]);
    if (now) drawInfo(now);
    replace(deliveries, table("Deliveries", [
      { title: "Time", cell: (a) => time(a.time) }, { title: "Delivery", cell: (a) => a.deliveryId, class: "mono" },
      { title: "Attempt", cell: (a) => a.attempt }, { title: "Outcome", cell: (a) => badge(a.outcome, a.outcome) },
      { title: "HTTP", cell: (a) => a.status ?? "" },
      { title: "ms", cell: (a) => (a.durationMs === null || a.durationMs === undefined ? "" : Math.round(a.durationMs)) },
      { title: "Error", cell: (a) => a.error ?? "" }, { title: "Answer", cell: (a) => a.excerpt ?? "", class: "mono wrap" },
    ], attempts.list, "no attempt yet."));
    replace(dead, table("Dead letters", [
      { title: "Time", cell: (d) => time(d.time) }, { title: "Delivery", cell: (d) => d.deliveryId, class: "mono" },
      { title: "Attempts", cell: (d) => d.attempts ?? "" }, { title: "Last error", cell: (d) => d.lastError ?? "" },
      { title: "Body", cell: (d) => d.body ?? "", class: "mono wrap" }, ...(ctx.admin ? [{ title: "Replay", cell: deadActions }] : []),
    ], letters.list, "none."),
    ctx.admin && letters.list.length ? h("button", { type: "button", onclick: act(async () => {
      const r = await post(`${kind.base}/replay`, { id: item.id });
      note.textContent = `Replayed ${r.replayed}.`;
    }) }, "Replay all") : null);
    return true;
  }
  outcome.addEventListener("change", () => loadDeliveries());

  replace(box, h("h2", { id: "detail-title" }, `${kind.noun[0].toUpperCase()}${kind.noun.slice(1)} ${item.id}`),
    note, error, info, controls,
    h("h3", {}, "Recent deliveries"), h("form", { class: "inline", "aria-label": "Filter deliveries" }, field("Outcome", outcome)),
    deliveries, h("h3", {}, "Dead letters"), dead);
  ctx.live(loadDeliveries, REFRESH_MS);
}
