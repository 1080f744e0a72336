// The v1 API from the page: bearer token in sessionStorage, the {"status","code","msg"} envelope unwrapped.
// A 401 on any call but the login ends the session: the app then shows the login form again.
// Every call gives up after TIMEOUT_MS (a readable ApiError); one that takes longer than SLOW_MS is counted
// as slow while it runs ("console:busy", the header's "Loading…").

const TOKEN = "adapter.console.token";
const BASE = "/iot/api/v1";
const TIMEOUT_MS = Number(sessionStorage.getItem("adapter.console.timeoutMs")) || 15000;
const SLOW_MS = 400;
let slow = 0;

export class ApiError extends Error {
  constructor(status, code, msg) {
    super(msg);
    this.status = status;
    this.code = code;
  }
}

export const session = {
  get token() { return sessionStorage.getItem(TOKEN); },
  set token(value) {
    if (value) sessionStorage.setItem(TOKEN, value);
    else sessionStorage.removeItem(TOKEN);
  },
};

function busy(change) {
  slow += change;
  window.dispatchEvent(new CustomEvent("console:busy", { detail: slow }));
}

async function send(url, init) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
  let counted = false;
  const slowTimer = setTimeout(() => { counted = true; busy(1); }, SLOW_MS);
  try {
    const response = await fetch(url, { ...init, signal: abort.signal });
    let envelope = null;
    try {
      envelope = await response.json();
    } catch {
      // not JSON: reported by its HTTP status
    }
    return { response, envelope };
  } catch (e) {
    if (abort.signal.aborted) {
      throw new ApiError(0, "timeout", `the API did not answer within ${TIMEOUT_MS / 1000} s`);
    }
    throw new ApiError(0, "network", `the API did not answer (${e.message})`);
  } finally {
    clearTimeout(timer);
    clearTimeout(slowTimer);
    if (counted) busy(-1);
  }
}

export async function call(method, path, { query, body } = {}) {
  const url = new URL(BASE + path, location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, String(v));
  }
  const headers = { Accept: "application/json" };
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const { response, envelope } = await send(url, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (response.status === 401 && path !== "/auth/login") {
    session.token = null;
    window.dispatchEvent(new CustomEvent("console:unauthorized", { detail: envelope?.msg }));
  }
  if (!envelope || typeof envelope !== "object") {
    throw new ApiError(response.status, "http", `HTTP ${response.status} ${response.statusText}`);
  }
  if (envelope.status !== "ok") {
    throw new ApiError(response.status, envelope.code || "error", envelope.msg || `HTTP ${response.status}`);
  }
  return envelope.data;
}

export const get = (path, query) => call("GET", path, { query });
export const post = (path, body) => call("POST", path, { body });
export const put = (path, body) => call("PUT", path, { body });
export const del = (path, query) => call("DELETE", path, { query });
