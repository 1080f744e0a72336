// Commands: send one command to one or many devices (`sh` with a shell command, or any command with a JSON
// body), follow them, read the answers (an `sh` result is base64: shown decoded, as text) and cancel. The
// history says what ran (the shell command, or the method and body), who sent it (`from`: the console sends the
// logged-in user's name), how it ended and what the device answered. Ids pass 2^53: the page only uses `idStr`.

import { ApiError, del, get, post } from "./api.js";
import { add, badge, errorBox, field, h, loading, noteBox, pager, replace, table, time, update } from "./dom.js";

const BASE = "/remotectl/commands";
export const STATES = ["ready", "in progress", "success", "failed"];
const STATE_CLASS = ["ready", "progress", "success", "failed"];
const LIMIT = 20;
const REFRESH_MS = 5000;

export function stateBadge(state) {
  return badge(STATES[state] ?? String(state), STATE_CLASS[state] ?? "");
}

export function decodeBase64(text) {
  const binary = atob(text);
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  return new TextDecoder("utf-8").decode(bytes);
}

// The device's answer as nodes: its status and message, and the `sh` output decoded.
export function answerView(command, answer) {
  const d = answer.d && typeof answer.d === "object" ? answer.d : {};
  let output = null;
  if (command === "sh" && typeof d.result === "string") {
    try {
      output = decodeBase64(d.result);
    } catch {
      output = `(not base64) ${d.result}`;
    }
  }
  return h("div", { class: "answer" },
    h("p", {}, "Status ", h("strong", {}, answer.status ?? d.status ?? "?"),
      d.exestatus && d.exestatus !== answer.status ? ` (exestatus ${d.exestatus})` : "",
      d.msg ? ` — ${d.msg}` : "", " · received ", time(answer.revtime)),
    output !== null
      ? h("pre", { class: "output", "aria-label": "output" }, output)
      : h("pre", { class: "output", "aria-label": "answer" }, JSON.stringify(answer.d ?? answer, null, 2)));
}

// What ran: `sh: whoami`, or the command with its method and body.
export function commandText(c) {
  const d = c.d && typeof c.d === "object" ? c.d : {};
  if (c.command === "sh" && typeof d.shcmd === "string") return h("span", { class: "mono" }, `sh: ${d.shcmd}`);
  const body = Object.keys(d).length ? ` ${JSON.stringify(d)}` : "";
  return h("span", { class: "mono" }, `${c.command}${c.method ? ` ${c.method}` : ""}${body}`);
}

// The answer in a line: an `sh` output decoded (its first line and more), else the device's status and message.
function resultText(command, answer) {
  if (!answer) return "—";
  const d = answer.d && typeof answer.d === "object" ? answer.d : {};
  if (command === "sh" && typeof d.result === "string") {
    let out;
    try {
      out = decodeBase64(d.result);
    } catch {
      out = d.result;
    }
    return h("span", { class: "mono", title: out }, out.length > 80 ? `${out.slice(0, 80)}…` : out);
  }
  return `${answer.status ?? d.status ?? "?"}${d.msg ? ` — ${d.msg}` : ""}`;
}

function expiryHint(limits) {
  const days = (s) => (s % 86400 === 0 ? ` (${s / 86400} day${s === 86400 ? "" : "s"})` : "");
  return `seconds; then the command and its answer are deleted. Default ${limits.defaultExpires}` +
    `${days(limits.defaultExpires)}, at most ${limits.maxExpires}${days(limits.maxExpires)}; there is no "never".`;
}

function splitSns(text) {
  return [...new Set(text.split(/[\s,;]+/).map((s) => s.trim()).filter(Boolean))];
}

function sendForm(ctx, limits, onSent) {
  const to = h("textarea", { name: "to", rows: 2, required: true, value: (ctx.params.get("to") || "").split(",").join("\n") });
  const command = h("input", { type: "text", name: "command", value: "sh", required: true, list: "known-commands" });
  const shcmd = h("input", { type: "text", name: "shcmd", value: "whoami" });
  const method = h("select", { name: "method" }, ["", "get", "set"].map((m) => h("option", { value: m }, m || "(none)")));
  const body = h("textarea", { name: "body", rows: 3, value: "{}" });
  const publishNow = h("input", { type: "checkbox", name: "publishNow", checked: true });
  const maxRetries = h("input", { type: "number", name: "maxRetries", min: 0, max: limits.maxRetries,
    value: limits.defaultRetries });
  const expires = h("input", { type: "number", name: "expires", min: 1, max: limits.maxExpires, required: true,
    value: limits.defaultExpires });
  const shOnly = field("Shell command (shcmd)", shcmd);
  const otherOnly = h("div", { class: "stack" }, field("Method", method), field("Body (JSON object)", body));
  const error = errorBox();
  const submit = h("button", { type: "submit", class: "primary" }, "Send");
  const toggle = () => {
    const sh = command.value.trim() === "sh";
    shOnly.hidden = !sh;
    otherOnly.hidden = sh;
  };
  command.addEventListener("input", toggle);
  toggle();
  const form = h("form", { class: "stack", "aria-label": "Send a command" },
    field("Devices (sn, one per line or comma separated)", to),
    field("Command", command), h("datalist", { id: "known-commands" }, h("option", { value: "sh" })),
    shOnly, otherOnly,
    h("label", { class: "check" }, publishNow, "Publish now (else wait for the device's next connect)"),
    field("Max retries", maxRetries, "the most sends; 0 counts as 1"),
    field("Expires after (s)", expires, expiryHint(limits)),
    error, h("div", {}, submit));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.textContent = "";
    const name = command.value.trim();
    let d;
    if (name === "sh") {
      d = { shcmd: shcmd.value };
    } else {
      try {
        d = JSON.parse(body.value || "{}");
      } catch (err) {
        error.textContent = `body: not valid JSON (${err.message})`;
        body.focus();
        return;
      }
    }
    const request = { from: ctx.user.user, to: splitSns(to.value).map((sn) => ({ sn })), command: name, body: d,
      publishNow: publishNow.checked, maxRetries: Number(maxRetries.value), expires: Number(expires.value) };
    if (name !== "sh" && method.value) request.method = method.value;
    submit.disabled = true;
    try {
      const data = await post(BASE, request);
      onSent(name, data.to);
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      error.textContent = err.message;
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

async function answerOf(cmd) {
  try {
    return await get(`${BASE}/responses`, { id: cmd.idStr, from: cmd.from });
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return null;
    throw e;
  }
}

export async function render(ctx) {
  const sentBox = h("section", { class: "card", "aria-labelledby": "sent-title", hidden: true });
  const resultBox = h("section", { class: "card", "aria-labelledby": "result-title", hidden: true, tabindex: -1 });
  const listBox = h("div", {}, loading("commands"));
  const listError = errorBox();
  const note = noteBox();
  listError.tabIndex = -1;
  note.tabIndex = -1;
  const pagerBox = h("div");
  let page = Math.max(1, Number(ctx.params.get("page")) || 1);
  const snFilter = h("input", { type: "search", name: "sn", value: ctx.params.get("sn") || "", autocomplete: "off" });
  const filter = h("form", { class: "inline", role: "search", "aria-label": "Filter commands" },
    field("Device sn (exact)", snFilter), h("button", { type: "submit" }, "Filter"),
    h("button", { type: "button", onclick: () => refresh(true) }, "Refresh"));
  filter.addEventListener("submit", (e) => {
    e.preventDefault();
    page = 1;
    refresh();
  });
  const answers = new Map(); // idStr -> the answer of a finished command (it does not change any more)

  let stopSent = null;
  function showSent(name, targets) {
    stopSent?.();
    sentBox.hidden = false;
    const rows = h("div");
    replace(sentBox, h("h2", { id: "sent-title" }, `Sent: ${name} to ${targets.length} device(s)`), rows);
    stopSent = ctx.live(async () => {
      const found = await Promise.all(targets.map(async (t) => {
        const cmd = await get(BASE, { id: t.idStr });
        return { cmd, answer: cmd.state >= 2 ? await answerOf(cmd) : null };
      }));
      update(rows, found.map(({ cmd, answer }) => h("article", { class: "sent", "aria-label": `${cmd.sn} ${cmd.idStr}`,
        "data-key": cmd.idStr },
        h("h3", {}, h("span", { class: "mono" }, cmd.sn), " · ", h("span", { class: "mono" }, cmd.idStr), " ",
          stateBadge(cmd.state), cmd.reason ? ` ${cmd.reason}` : ""),
        answer ? answerView(cmd.command, answer) : cmd.state >= 2 ? h("p", { class: "muted" }, "no answer kept") : null)));
      refresh();
      return found.some(({ cmd }) => cmd.state < 2);
    }, 1000);
  }

  async function showResult(cmd) {
    resultBox.hidden = false;
    const answer = await answerOf(cmd);
    replace(resultBox, h("h2", { id: "result-title" }, "Answer of ", h("span", { class: "mono" }, cmd.idStr),
      " from ", h("span", { class: "mono" }, cmd.sn)),
    answer ? answerView(cmd.command, answer) : h("p", {}, "No answer (yet)."));
    resultBox.focus();
  }

  async function cancel(cmd) {
    try {
      const after = await del(BASE, { id: cmd.idStr });
      note.textContent = `Command ${after.idStr} canceled.`;
      listError.textContent = "";
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      listError.textContent = e.message;
    }
    await refresh(true);
    (listError.textContent ? listError : note).focus();
  }

  const columns = [
    { title: "id", cell: (c) => c.idStr, class: "mono" },
    { title: "Device", cell: (c) => h("a", { href: `#/device/${encodeURIComponent(c.sn)}` }, c.sn), class: "mono" },
    { title: "Command", cell: (c) => commandText(c), class: "wrap" },
    { title: "From", cell: (c) => c.from },
    { title: "State", cell: (c) => stateBadge(c.state) },
    { title: "Reason", cell: (c) => c.reason },
    { title: "Result", cell: (c) => (c.state >= 2 ? resultText(c.command, answers.get(c.idStr)) : "—"), class: "wrap" },
    { title: "Sends", cell: (c) => `${c.tryTimes} / ${Math.max(1, c.maxRetries)}` },
    { title: "Created", cell: (c) => time(c.createTime) },
    { title: "Finished", cell: (c) => time(c.finishTime || c.failedTime) },
    { title: "Actions", cell: (c) => h("div", { class: "actions" },
      h("button", { type: "button", onclick: () => showResult(c), "aria-label": `Answer of ${c.idStr}` }, "Answer"),
      ctx.admin && c.state < 2
        ? h("button", { type: "button", class: "danger", onclick: () => cancel(c), "aria-label": `Cancel ${c.idStr}` }, "Cancel")
        : null) },
  ];

  // the answers of the page's finished commands that are not known yet (each asked once)
  async function learnAnswers(list) {
    const missing = list.filter((c) => c.state >= 2 && !answers.has(c.idStr));
    await Promise.all(missing.map(async (c) => answers.set(c.idStr, await answerOf(c))));
  }

  let busy = false;
  let asked = 0; // a later call's answer wins, whichever comes back first
  async function refresh(force = false) {
    if (busy && !force) return;
    busy = true;
    const mine = ++asked;
    try {
      const data = await get(BASE, { sn: snFilter.value.trim(), page, limit: LIMIT });
      await learnAnswers(data.list);
      if (mine !== asked) return;
      listError.textContent = "";
      update(listBox, table("Commands", columns, data.list, "no command.", (c) => c.idStr));
      update(pagerBox, pager("Command pages", page, data.limit, data.total, "command", (n) => { page = n; refresh(true); }));
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      listError.textContent = e.message;
    } finally {
      busy = false;
    }
  }

  const limits = ctx.admin ? await get("/remotectl/limits") : null;
  add(ctx.main, h("h1", {}, "Commands"),
    ctx.admin ? h("section", { class: "card", "aria-labelledby": "send-title" }, h("h2", { id: "send-title" }, "Send a command"),
      sendForm(ctx, limits, showSent)) : null,
    sentBox,
    h("section", { class: "card", "aria-labelledby": "list-title" }, h("h2", { id: "list-title" }, "Commands, newest first"),
      filter, note, listError, listBox, pagerBox),
    resultBox);
  ctx.live(refresh, REFRESH_MS);
}
