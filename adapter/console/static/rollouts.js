// Rollouts (docs/rollouts.md): start one (an `sh` command to every device a selector matches, at a rate), with a
// dry-run preview first; follow its progress live (a bar and the counts per state), pause, resume or cancel it, and
// see each device's execution with a link to its command.

import { ApiError, call, get, post } from "./api.js";
import { badge, errorBox, field, h, keyValues, loading, noteBox, pager, replace, table, update } from "./dom.js";

const BASE = "/remotectl/rollouts";
const LIMIT = 20;
const REFRESH_MS = 2000;
const STATE_CLASS = { queued: "ready", running: "progress", paused: "ready", succeeded: "success", failed: "failed",
  aborted: "failed", cancelled: "off", inFlight: "progress", timedOut: "failed" };
const ACTIVE = new Set(["queued", "running", "paused"]);

const stateBadge = (state) => badge(state, STATE_CLASS[state] ?? "");
const ms = (t) => (t ? new Date(t).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC") : "—");
const finished = (c) => c.succeeded + c.failed + c.timedOut + c.cancelled;

function progressBar(r) {
  const c = r.counts;
  const max = Math.max(c.matched, c.dispatched, 1);
  return h("p", {}, h("progress", { max, value: finished(c), "aria-label": `rollout ${r.id} progress` }),
    ` ${finished(c)} of ${c.matched} finished · ${c.dispatched} dispatched · ${c.inFlight} in flight`);
}

function numberInput(name, value, attrs = {}) {
  return h("input", { type: "number", name, value: value ?? "", step: "any", ...attrs });
}

// The spec from the form, as POST /remotectl/rollouts takes it.
function specOf(f) {
  const selector = {};
  const sns = f.sns.value.split(/[\s,;]+/).map((s) => s.trim()).filter(Boolean);
  if (sns.length) selector.sns = sns;
  if (f.tag.value) selector.tag = f.tag.value;
  if (f.prefix.value) selector.snPrefix = f.prefix.value;
  if (f.online.value) selector.online = f.online.value === "true";
  if (f.version.value) selector.version = f.version.value;
  if (!Object.keys(selector).length) selector.all = true;
  const rate = { perMinute: Number(f.perMinute.value) };
  if (f.rampStart.value) {
    rate.ramp = { start: Number(f.rampStart.value), factor: Number(f.rampFactor.value || 2),
      every: Number(f.rampEvery.value || 10) };
  }
  const abort = {};
  if (f.ratio.value) abort.failureRatio = Number(f.ratio.value) / 100;
  if (f.minExecuted.value) abort.minExecuted = Number(f.minExecuted.value);
  if (f.maxFailures.value) abort.maxFailures = Number(f.maxFailures.value);
  const spec = {
    name: f.name.value,
    command: { command: "sh", body: { shcmd: f.shcmd.value }, publishNow: f.publishNow.checked,
      maxRetries: Number(f.maxRetries.value || 1) },
    selector, rate, maxInFlight: Number(f.maxInFlight.value || 100), timeout: Number(f.timeout.value || 600),
  };
  if (Object.keys(abort).length) spec.abort = abort;
  return spec;
}

function createForm(ctx) {
  const f = {
    name: h("input", { type: "text", name: "name", maxlength: 128 }),
    shcmd: h("input", { type: "text", name: "shcmd", required: true, value: "uptime" }),
    publishNow: h("input", { type: "checkbox", name: "publishNow", checked: true }),
    maxRetries: numberInput("maxRetries", 1, { min: 0, max: 100, step: 1 }),
    sns: h("textarea", { name: "sns", rows: 2 }),
    tag: h("input", { type: "text", name: "tag" }),
    prefix: h("input", { type: "text", name: "snPrefix" }),
    online: h("select", { name: "online" }, h("option", { value: "" }, "any"), h("option", { value: "true" }, "online"),
      h("option", { value: "false" }, "offline")),
    version: h("input", { type: "text", name: "version", placeholder: "upgrade.cmd < 1.4.0" }),
    perMinute: numberInput("perMinute", 60, { min: 1, required: true }),
    rampStart: numberInput("rampStart", ""), rampFactor: numberInput("rampFactor", ""),
    rampEvery: numberInput("rampEvery", "", { step: 1 }),
    maxInFlight: numberInput("maxInFlight", 100, { min: 1, step: 1 }),
    timeout: numberInput("timeout", 600, { min: 1, step: 1 }),
    ratio: numberInput("failureRatio", "", { min: 0, max: 100 }), minExecuted: numberInput("minExecuted", "", { step: 1 }),
    maxFailures: numberInput("maxFailures", "", { step: 1 }),
  };
  const error = errorBox();
  const preview = h("div", { "aria-label": "preview", role: "status" });
  const previewButton = h("button", { type: "button" }, "Preview (dry run)");
  const start = h("button", { type: "submit", class: "primary" }, "Start rollout");
  previewButton.addEventListener("click", async () => {
    error.textContent = "";
    try {
      const dry = await post(BASE, { ...specOf(f), dryRun: true });
      replace(preview, h("p", {}, h("strong", {}, `${dry.matched} devices match now`),
        dry.preview.length ? `: ${dry.preview.join(", ")}${dry.matched > dry.preview.length ? ", …" : ""}` : "."));
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      error.textContent = e.message;
    }
  });
  const form = h("form", { class: "stack", "aria-label": "Start a rollout" },
    h("h2", {}, "Start a rollout"),
    field("Name", f.name), field("Shell command (sh)", f.shcmd), field("Publish now", f.publishNow),
    field("Max retries per device", f.maxRetries),
    h("fieldset", {}, h("legend", {}, "Which devices (all that is given must hold; nothing: every device)"),
      field("SNs", f.sns, "one per line"), field("Tag", f.tag), field("SN prefix", f.prefix),
      field("Online", f.online), field("Version", f.version, "component op version")),
    h("fieldset", {}, h("legend", {}, "Rate"), field("Per minute", f.perMinute),
      field("Ramp: start per minute", f.rampStart, "empty: no ramp"), field("Ramp: factor", f.rampFactor),
      field("Ramp: every N successes", f.rampEvery), field("Max in flight", f.maxInFlight),
      field("Timeout per device (s)", f.timeout)),
    h("fieldset", {}, h("legend", {}, "Abort"), field("Failure ratio (%)", f.ratio),
      field("After at least N executed", f.minExecuted), field("Or after N failures", f.maxFailures)),
    preview, error, h("div", {}, previewButton, " ", start));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    start.disabled = true;
    error.textContent = "";
    try {
      const created = await post(BASE, specOf(f));
      ctx.go(`#/rollout/${created.id}`);
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      error.textContent = e.message;
    } finally {
      start.disabled = false;
    }
  });
  return h("section", { class: "card" }, form);
}

export async function render(ctx) {
  document.title = "Rollouts · Device adapter console";
  let page = Math.max(1, Number(ctx.params.get("page")) || 1);
  const list = h("section", { class: "card", "aria-label": "rollouts" }, loading("rollouts"));
  ctx.main.append(h("h1", {}, "Rollouts"), list, ctx.admin ? createForm(ctx) : null);
  const refresh = async () => {
    const data = await get(BASE, { page, limit: LIMIT });
    update(list, table("Rollouts", [
      { title: "Id", cell: (r) => h("a", { href: `#/rollout/${r.id}` }, String(r.id)) },
      { title: "Name", cell: (r) => r.name || "—" },
      { title: "State", cell: (r) => stateBadge(r.state) },
      { title: "Progress", cell: (r) => h("progress", { max: Math.max(r.counts.matched, 1), value: finished(r.counts) }) },
      { title: "Succeeded", cell: (r) => String(r.counts.succeeded) },
      { title: "Failed", cell: (r) => String(r.counts.failed + r.counts.timedOut) },
      { title: "Created", cell: (r) => ms(r.createTime) },
    ], data.list, "none yet.", (r) => r.id),
    pager("Rollout pages", page, LIMIT, data.total, "rollout", (n) => { page = n; refresh(); }));
  };
  ctx.live(refresh, REFRESH_MS);
}

export async function renderRollout(ctx) {
  const id = ctx.args[0];
  document.title = `Rollout ${id} · Device adapter console`;
  let page = 1;
  const head = h("section", { class: "card", "aria-label": "progress" }, loading("the rollout"));
  const runs = h("section", { class: "card", "aria-label": "executions" });
  const error = errorBox();
  const note = noteBox();
  ctx.main.append(h("h1", {}, `Rollout ${id}`), h("p", {}, h("a", { href: "#/rollouts" }, "All rollouts")),
    note, error, head, runs);
  const act = async (action) => {
    error.textContent = "";
    try {
      const r = action === "cancel" ? await call("DELETE", `${BASE}?id=${id}`)
        : await post(`${BASE}/${action}?id=${id}`, {});
      note.textContent = `Rollout ${id} is ${r.state}.`;
      refresh();
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      error.textContent = e.message;
    }
  };
  const refresh = async () => {
    const [r, ex] = await Promise.all([get(BASE, { id }), get(`${BASE}/executions`, { id, page, limit: LIMIT })]);
    const c = r.counts;
    const controls = !ctx.admin ? null : h("div", {},
      r.state === "running" || r.state === "queued" ? h("button", { type: "button", onclick: () => act("pause") }, "Pause") : null,
      r.state === "paused" ? h("button", { type: "button", onclick: () => act("resume") }, "Resume") : null, " ",
      ACTIVE.has(r.state) ? h("button", { type: "button", class: "danger", onclick: () => act("cancel") }, "Cancel") : null);
    update(head, h("p", {}, stateBadge(r.state), r.name ? ` ${r.name}` : ""), progressBar(r), controls,
      keyValues("Counts", [["matched", String(c.matched)], ["dispatched", String(c.dispatched)],
        ["in flight", String(c.inFlight)], ["succeeded", String(c.succeeded)], ["failed", String(c.failed)],
        ["timed out", String(c.timedOut)], ["cancelled", String(c.cancelled)]]),
      keyValues("Rate", [["now (per minute)", String(r.rate.perMinute)], ["achieved (per minute)", String(r.rate.achieved)],
        ["ETA", r.etaSeconds === null ? "—" : `${r.etaSeconds} s`], ["abort reason", r.abortReason || "—"],
        ["started", ms(r.startTime)], ["finished", ms(r.finishTime)]]));
    update(runs, table("Executions", [
      { title: "Device", cell: (e) => h("a", { href: `#/device/${encodeURIComponent(e.sn)}` }, e.sn) },
      { title: "Command", cell: (e) => h("a", { href: `#/commands?sn=${encodeURIComponent(e.sn)}`, class: "mono" }, e.idStr) },
      { title: "Outcome", cell: (e) => stateBadge(e.outcome) },
      { title: "Dispatched", cell: (e) => ms(e.dispatchTime) },
      { title: "Finished", cell: (e) => ms(e.finishTime) },
    ], ex.list, "none yet.", (e) => e.sn),
    pager("Execution pages", page, LIMIT, ex.total, "execution", (n) => { page = n; refresh(); }));
    return ACTIVE.has(r.state) || c.inFlight > 0;
  };
  ctx.live(refresh, REFRESH_MS);
}
