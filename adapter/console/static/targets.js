// Message routes and status-change callbacks: the same page for both kinds of target. The list shows each one's
// state (enabled or not) and health (GET …/health: breaker, failing, retrying, held, dead letters, last error)
// and filters those that need attention; a target's page adds add, change, enable, delete, the signing secret
// shown once on create and rotate, charts of its deliveries, its recent attempts and its dead letters (inspect,
// replay one or all). Everything refreshes live. `ROUTES` and `CALLBACKS` say what differs.

import { ApiError, del, get, post, put } from "./api.js";
import { chartCard } from "./chart.js";
import { add, badge, errorBox, field, h, keyValues, loading, noteBox, pager, replace, table, time,
  update } from "./dom.js";

const OUTCOMES = ["", "success", "retry", "failed", "dead"];
const LIST_MS = 5000;
const DETAIL_MS = 3000;
const CHARTS_MS = 15000;
const ATTEMPTS_PAGE = 20;
const DEAD_PAGE = 20;

const text = (name, attrs = {}) => h("input", { type: "text", name, autocomplete: "off", ...attrs });

export const ROUTES = {
  page: "routes",
  title: "Message routes",
  noun: "route",
  base: "/msgroute/configs",
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
  columns: [{ title: "Type", cell: (t) => t.type }],
  createFields: () => ({ type: h("select", { name: "type" }, ["device", "peripheral"].map((v) => h("option", { value: v }, v))),
    url: h("input", { type: "url", name: "url", required: true, placeholder: "https://example.com/hook" }) }),
  labels: { type: "Type", url: "URL" },
  editable: ["url"],
  enable: (id, enabled) => post("/monitor/devices/callbacks/enable", { id, enabled }),
  statsTypes: ["device", "peripheral"],
};

const REASON_TEXT = {
  breaker_open: ["breaker open", "failed"], failing: ["failing", "failed"], retrying: ["retrying", "retry"],
  held: ["held", "retry"], dead_letters: ["dead letters", "dead"],
};

export function enabledBadge(t) {
  if (t.enabled === undefined) return "…";
  return t.enabled ? badge("enabled", "on") : badge("disabled", "off");
}

// The target's health as badges: "healthy", or why it needs attention (with counts).
export function healthBadges(hl) {
  if (!hl) return "…";
  if (!hl.attention.length) return badge("healthy", "on");
  const counts = { retrying: hl.retrying, held: hl.held, dead_letters: hl.dead };
  return h("span", { class: "badges" }, hl.attention.map((reason) => {
    const [label, kind] = REASON_TEXT[reason] ?? [reason, "failed"];
    return badge(counts[reason] ? `${label} ${counts[reason]}` : label, kind);
  }));
}

function attemptError(a) {
  return a.error || (a.status ? `HTTP ${a.status}` : a.outcome);
}

function lastError(hl) {
  if (!hl?.lastError) return "—";
  return h("span", {}, attemptError(hl.lastError), " · ", time(hl.lastError.time));
}

let pendingSecret = null; // {id, secret}: shown once, by the next render of the page

function secretBox(kind, shown) {
  return h("div", { class: "secret", role: "status" },
    h("p", {}, h("strong", {}, `Signing secret of ${kind.noun} ${shown.id}`),
      " — shown only now: store it where the receiver checks signatures."),
    field("Secret", h("input", { type: "text", readonly: true, value: shown.secret, "aria-label": "signing secret" })));
}

export async function render(ctx, kind) {
  const openId = ctx.args[0] ? Number(ctx.args[0]) : null;
  const listBox = h("div", {}, loading(`${kind.noun}s`));
  const error = errorBox();
  const note = noteBox();
  const secret = h("div");
  if (pendingSecret) {
    secret.append(secretBox(kind, pendingSecret));
    pendingSecret = null;
  }
  const statsBox = h("div", { class: "grid" });
  const show = h("select", { name: "show" }, h("option", { value: "" }, "all"),
    h("option", { value: "attention" }, "needs attention"));
  const summary = h("p", { class: "muted", role: "status" });
  show.addEventListener("change", () => draw());

  let items = [];
  const columns = [
    { title: "id", cell: (t) => t.id, class: "mono" }, ...kind.columns,
    { title: "URL", cell: (t) => t.url, class: "mono wrap" },
    { title: "State", cell: enabledBadge },
    { title: "Health", cell: (t) => healthBadges(t.health) },
    { title: "Delivered", cell: (t) => t.succCount }, { title: "Failed", cell: (t) => t.failedCount },
    { title: "Last error", cell: (t) => lastError(t.health) },
    { title: "Details", cell: (t) => h("a", { href: `#/${kind.page}/${t.id}`, "aria-label": `Open ${kind.noun} ${t.id}` }, "Open") },
  ];
  function draw() {
    const attention = items.filter((t) => t.health?.attention.length);
    const shown = show.value === "attention" ? attention : items;
    const said = `${items.length} ${kind.noun}${items.length === 1 ? "" : "s"}, ${attention.length} need` +
      `${attention.length === 1 ? "s" : ""} attention.`;
    if (summary.textContent !== said) summary.textContent = said; // a status: said again only when it changes
    update(listBox, table(kind.title, columns, shown,
      show.value === "attention" ? `no ${kind.noun} needs attention.` : `no ${kind.noun} yet.`, (t) => t.id));
  }

  let asked = 0; // a later call's answer wins, whichever comes back first
  async function loadList() {
    const mine = ++asked;
    const [data, health] = await Promise.all([get(kind.base), get(`${kind.base}/health`)]);
    if (mine !== asked) return items;
    const byId = new Map(health.list.map((hl) => [hl.id, hl]));
    items = data.list.map((t) => ({ ...t, enabled: byId.get(t.id)?.enabled ?? t.enabled, health: byId.get(t.id) }));
    error.textContent = "";
    draw();
    if (kind.statsTypes.length) {
      const stats = await Promise.all(kind.statsTypes.map((t) => get(`${kind.base}/${t}/stats`)));
      update(statsBox, kind.statsTypes.map((t, i) => h("section", { class: "card", "aria-labelledby": `stats-${t}` },
        h("h2", { id: `stats-${t}` }, `${t} callbacks`),
        h("dl", { class: "stats" }, h("div", {}, h("dt", {}, "Delivered"), h("dd", {}, stats[i].succ)),
          h("div", {}, h("dt", {}, "Failed"), h("dd", {}, stats[i].failed))))));
    }
    return items;
  }
  const reload = async () => {
    try {
      return await loadList();
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      error.textContent = e.message;
      return items;
    }
  };

  const create = ctx.admin ? createForm(ctx, kind) : null;
  add(ctx.main, h("h1", {}, kind.title), secret, statsBox,
    h("section", { class: "card", "aria-labelledby": "targets-title" }, h("h2", { id: "targets-title" }, kind.title),
      h("form", { class: "inline", role: "search", "aria-label": `Filter ${kind.noun}s` }, field("Show", show)),
      summary, note, error, listBox),
    create);
  await reload();
  ctx.live(reload, LIST_MS);
  if (openId !== null) {
    const item = items.find((t) => t.id === openId);
    const detail = h("section", { class: "card", "aria-labelledby": "detail-title" });
    ctx.main.insertBefore(detail, create);
    if (!item) replace(detail, h("p", { class: "error", role: "alert" }, `no ${kind.noun} ${openId}`));
    else {
      const current = async () => (await reload()).find((t) => t.id === openId);
      const showSecret = (made) => { replace(secret, secretBox(kind, made)); secret.scrollIntoView(); };
      renderDetail(ctx, kind, item, detail, current, showSecret);
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

function breakerText(b) {
  if (b.state !== "open") return b.failures ? `closed (${b.failures} failed in a row)` : "closed";
  return h("span", {}, badge("open", "failed"), ` since `, time(b.since), `, next probe `, time(b.probeAt),
    ` (${b.failures} failed in a row)`);
}

function attemptText(a) {
  if (!a) return "—";
  return h("span", {}, badge(a.outcome, a.outcome), " ", a.outcome === "success" ? "" : `${attemptError(a)} `,
    time(a.time));
}

function healthPairs(t) {
  const hl = t.health;
  if (!hl) return [["Health", "…"]];
  return [["Health", healthBadges(hl)], ["Breaker", breakerText(hl.breaker)],
    ["Retrying", `${hl.retrying} (of its last 200 attempts)`], ["Held", hl.held], ["Dead letters", hl.dead],
    ["Dropped", `${hl.dropped.held} held, ${hl.dropped.dead} dead letters (at the caps)`],
    ["Last attempt", attemptText(hl.lastAttempt)], ["Last error", attemptText(hl.lastError)]];
}

function letterBody(raw) {
  if (typeof raw !== "string") return JSON.stringify(raw, null, 2);
  try {
    return JSON.stringify(JSON.parse(raw), null, 2);
  } catch {
    return raw;
  }
}

function renderDetail(ctx, kind, item, box, current, showSecret) {
  const error = errorBox();
  const note = noteBox();
  const info = h("div");
  const deliveries = h("div", {}, loading("deliveries"));
  const deliveriesPager = h("div");
  const dead = h("div", {}, loading("dead letters"));
  const inspectBox = h("section", { class: "inspect", "aria-labelledby": "inspect-title", hidden: true, tabindex: -1 });
  const outcome = h("select", { name: "outcome" }, OUTCOMES.map((o) => h("option", { value: o }, o || "all")));
  let attemptsPage = 1;
  let deadPage = 1;
  let inspected = null; // the delivery id of the dead letter shown in `inspectBox`
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
  const drawInfo = (t) => update(info, keyValues(`${kind.noun} ${t.id}`, [
    ["id", t.id], ...kind.columns.map((c) => [c.title, c.cell(t)]), ["URL", t.url], ["State", enabledBadge(t)],
    ...healthPairs(t), ["Delivered", t.succCount], ["Failed", t.failedCount], ["Created", time(t.createTime)],
    ["Updated", time(t.updateTime)]]));
  drawInfo(item);

  const replay = (body) => act(async () => {
    const r = await post(`${kind.base}/replay`, { id: item.id, ...body });
    note.textContent = r.job ? `Replaying in the background (job ${r.job}).` : `Replayed ${r.replayed}.`;
    await loadDeliveries();
  });

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
        drawInfo(await current());
        note.textContent = "Saved.";
      })();
    });
    const confirmDelete = h("button", { type: "button", class: "danger", hidden: true,
      onclick: act(async () => { await del(kind.base, { id: item.id }); ctx.go(`#/${kind.page}`); }) },
    `Yes, delete ${kind.noun} ${item.id}`);
    controls = h("div", {},
      h("div", { class: "actions", role: "group", "aria-label": "Actions" },
        h("button", { type: "button", onclick: act(async () => {
          await kind.enable(item.id, true); drawInfo(await current()); note.textContent = "Enabled.";
        }) }, "Enable"),
        h("button", { type: "button", onclick: act(async () => {
          await kind.enable(item.id, false); drawInfo(await current()); note.textContent = "Disabled.";
        }) }, "Disable"),
        h("button", { type: "button", onclick: act(async () => {
          showSecret(await post(`${kind.base}/secret`, { id: item.id }));
        }) }, "Rotate secret"),
        h("button", { type: "button", class: "danger", onclick: () => { confirmDelete.hidden = false; confirmDelete.focus(); } },
          "Delete"),
        confirmDelete),
      h("h3", {}, "Change"), save);
  }

  function inspect(letter) {
    inspected = letter?.deliveryId ?? null;
    if (!letter) {
      inspectBox.hidden = true;
      return;
    }
    inspectBox.hidden = false;
    update(inspectBox, h("h4", { id: "inspect-title" }, "Dead letter ", h("span", { class: "mono" }, letter.deliveryId)),
      keyValues("Dead letter", [["Delivery", h("span", { class: "mono" }, letter.deliveryId)],
        ["Died", time(letter.time)], ["Attempts", letter.attempts ?? ""], ["Last error", letter.lastError ?? ""],
        ["Last HTTP status", letter.lastStatus ?? ""], ["Device (order key)", h("span", { class: "mono" }, letter.key ?? "")]]),
      h("pre", { class: "output", "aria-label": "dead letter body" }, letterBody(letter.body)),
      h("div", { class: "actions" },
        ctx.admin ? h("button", { type: "button", onclick: replay({ deliveryId: letter.deliveryId }) },
          `Replay ${letter.deliveryId}`) : null,
        h("button", { type: "button", onclick: () => inspect(null) }, "Close")));
  }

  const attemptColumns = [
    { title: "Time", cell: (a) => time(a.time) }, { title: "Delivery", cell: (a) => a.deliveryId, class: "mono" },
    { title: "Attempt", cell: (a) => a.attempt }, { title: "Outcome", cell: (a) => badge(a.outcome, a.outcome) },
    { title: "HTTP", cell: (a) => a.status ?? "" },
    { title: "ms", cell: (a) => (a.durationMs === null || a.durationMs === undefined ? "" : Math.round(a.durationMs)) },
    { title: "Error", cell: (a) => a.error ?? "" }, { title: "Answer", cell: (a) => a.excerpt ?? "", class: "mono wrap" },
  ];
  const deadColumns = [
    { title: "Time", cell: (d) => time(d.time) }, { title: "Delivery", cell: (d) => d.deliveryId, class: "mono" },
    { title: "Attempts", cell: (d) => d.attempts ?? "" }, { title: "Last error", cell: (d) => d.lastError ?? "" },
    { title: "Body", cell: (d) => (typeof d.body === "string" && d.body.length > 120 ? `${d.body.slice(0, 120)}…` : d.body ?? ""),
      class: "mono wrap" },
    { title: "Actions", cell: (d) => h("div", { class: "actions" },
      h("button", { type: "button", "aria-label": `Inspect ${d.deliveryId}`, onclick: () => { inspect(d); inspectBox.focus(); } },
        "Inspect"),
      ctx.admin ? h("button", { type: "button", "aria-label": `Replay ${d.deliveryId}`,
        onclick: replay({ deliveryId: d.deliveryId }) }, "Replay") : null) },
  ];

  async function loadDeliveries() {
    const [attempts, letters, now] = await Promise.all([
      get(`${kind.base}/deliveries`, { id: item.id, status: outcome.value }),
      get(`${kind.base}/dead`, { id: item.id, page: deadPage, limit: DEAD_PAGE }), current()]);
    if (now) drawInfo(now);
    const deadPages = Math.max(1, Math.ceil(letters.total / DEAD_PAGE));
    if (deadPage > deadPages) { // the letters of this page went (replayed, aged): the last page there is
      deadPage = deadPages;
      return loadDeliveries();
    }
    const pages = Math.max(1, Math.ceil(attempts.count / ATTEMPTS_PAGE));
    attemptsPage = Math.min(attemptsPage, pages);
    const shown = attempts.list.slice((attemptsPage - 1) * ATTEMPTS_PAGE, attemptsPage * ATTEMPTS_PAGE);
    update(deliveries, table("Deliveries", attemptColumns, shown, "no attempt yet.",
      (a) => `${a.deliveryId}#${a.attempt}#${a.time}`));
    update(deliveriesPager, attempts.count > ATTEMPTS_PAGE ? pager("Delivery pages", attemptsPage, ATTEMPTS_PAGE,
      attempts.count, "attempt", (n) => { attemptsPage = n; loadDeliveries(); }) : null);
    update(dead, table("Dead letters", deadColumns, letters.list, "none.", (d) => d.deliveryId),
      letters.total > DEAD_PAGE || deadPage > 1 ? pager("Dead letter pages", deadPage, DEAD_PAGE, letters.total,
        "dead letter", (n) => { deadPage = n; loadDeliveries(); }) : null,
      ctx.admin && letters.total ? h("button", { type: "button", onclick: replay({}) }, "Replay all") : null);
    if (inspected) {
      const still = letters.list.find((d) => d.deliveryId === inspected);
      if (still) inspect(still);
      else update(inspectBox, h("h4", { id: "inspect-title" }, "Dead letter ", h("span", { class: "mono" }, inspected)),
        h("p", {}, "No longer a dead letter here (replayed, or on another page)."),
        h("button", { type: "button", onclick: () => inspect(null) }, "Close"));
    }
    return true;
  }
  outcome.addEventListener("change", () => { attemptsPage = 1; loadDeliveries(); });
  const charts = chartCard("target-charts", "Deliveries over time", [{ title: `Deliveries of ${kind.noun} ${item.id}`,
    bars: true, lines: [{ name: "delivered", metric: `${kind.noun}.delivered`, id: item.id },
      { name: "failed", metric: `${kind.noun}.failed`, id: item.id }] }]);

  replace(box, h("h2", { id: "detail-title" }, `${kind.noun[0].toUpperCase()}${kind.noun.slice(1)} ${item.id}`),
    note, error, info, controls, charts.card,
    h("h3", {}, "Recent deliveries"), h("form", { class: "inline", "aria-label": "Filter deliveries" }, field("Outcome", outcome)),
    deliveries, deliveriesPager, h("h3", {}, "Dead letters"), dead, inspectBox);
  ctx.live(loadDeliveries, DETAIL_MS);
  ctx.live(charts.refresh, CHARTS_MS);
}
