// The console's shell: login, the role, the hash router (#/page/arg?query), live refresh timers and the header's
// "Loading…" (while a call is slow).

import { ApiError, get, post, session } from "./api.js";
import { errorBox, field, h, noteBox, replace } from "./dom.js";
import * as clients from "./clients.js";
import * as dashboard from "./dashboard.js";
import * as devices from "./devices.js";
import * as commands from "./commands.js";
import * as rollouts from "./rollouts.js";
import * as targets from "./targets.js";

const PAGES = {
  dashboard: dashboard.render,
  devices: devices.render,
  device: devices.renderDevice,
  commands: commands.render,
  rollouts: rollouts.render,
  rollout: rollouts.renderRollout,
  clients: clients.render,
  routes: (ctx) => targets.render(ctx, targets.ROUTES),
  callbacks: (ctx) => targets.render(ctx, targets.CALLBACKS),
};
const NAV_OF = { device: "devices", rollout: "rollouts" };

const main = document.getElementById("main");
const header = document.querySelector("header.top");
const busy = document.getElementById("busy");
let user = null;
let leave = [];

function stopPage() {
  for (const fn of leave) fn();
  leave = [];
}

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?");
  const [page, ...args] = path.split("/").map(decodeURIComponent);
  return { page: page || "dashboard", args, params: new URLSearchParams(query) };
}

function context(route) {
  return {
    main,
    user,
    admin: user.privileges.includes("admin"),
    args: route.args,
    params: route.params,
    onLeave(fn) { leave.push(fn); },
    // Calls `fn` now and every `ms` while this page is shown; `fn` returning false stops it.
    live(fn, ms) {
      let timer = null;
      let stopped = false;
      const tick = async () => {
        let more = true;
        try {
          more = (await fn()) !== false;
        } catch (e) {
          if (!(e instanceof ApiError)) throw e;
        }
        if (more && !stopped) timer = setTimeout(tick, ms);
      };
      leave.push(() => { stopped = true; clearTimeout(timer); });
      tick();
      return () => { stopped = true; clearTimeout(timer); };
    },
    go(hash) { location.hash = hash; },
  };
}

async function show() {
  stopPage();
  if (!user) return;
  const route = parseHash();
  const render = PAGES[route.page];
  for (const a of header.querySelectorAll("nav a")) {
    const current = a.getAttribute("href") === `#/${NAV_OF[route.page] || route.page}`;
    if (current) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (!render) {
    replace(main, h("h1", {}, "Not found"), h("p", {}, "No such page. ", h("a", { href: "#/dashboard" }, "Dashboard")));
    return;
  }
  replace(main);
  try {
    await render(context(route));
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    main.append(h("p", { class: "error", role: "alert" }, e.message));
  }
}

function showLogin(message, note = "") {
  stopPage();
  user = null;
  header.hidden = true;
  const name = h("input", { type: "text", name: "user", autocomplete: "username", required: true });
  const password = h("input", { type: "password", name: "password", autocomplete: "current-password", required: true });
  const error = errorBox();
  if (message) error.textContent = message;
  const done = noteBox();
  done.textContent = note;
  const submit = h("button", { type: "submit", class: "primary" }, "Log in");
  const form = h("form", { class: "stack", "aria-label": "Log in" },
    field("User", name), field("Password", password), done, error, h("div", {}, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    error.textContent = "";
    try {
      const data = await post("/auth/login", { user: name.value, password: password.value });
      session.token = data.token;
      enter(data.user);
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      error.textContent = e.message;
    } finally {
      submit.disabled = false;
    }
  });
  replace(main, h("section", { class: "card login" }, h("h1", {}, "Device adapter console"), form));
  document.title = "Log in · Device adapter console";
  name.focus();
}

function enter(who) {
  user = who;
  header.hidden = false;
  document.getElementById("who").textContent = `${who.user} (${who.roles.join(", ")})`;
  document.title = "Device adapter console";
  if (!location.hash || location.hash === "#" || location.hash.startsWith("#/login")) location.hash = "#/dashboard";
  else show();
}

document.getElementById("logout").addEventListener("click", async () => {
  try {
    await post("/auth/logout", {});
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
  }
  session.token = null;
  showLogin("", "Logged out.");
});

window.addEventListener("console:busy", (e) => { busy.hidden = e.detail <= 0; });
window.addEventListener("console:unauthorized", () => showLogin("Your login has ended: log in again."));
window.addEventListener("hashchange", () => { show(); main.focus({ preventScroll: true }); });

async function start() {
  if (!session.token) return showLogin();
  try {
    const data = await get("/auth/me");
    enter(data.user);
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    if (e.status !== 401) showLogin(e.message);
  }
}

start();
