// The v1 API from the page: bearer token in sessionStorage, the {"status","code","msg"} envelope unwrapped.
// A 401 on any call but the login ends the session: the app then shows the login form again.

const TOKEN = "adapter.console.token";
const BASE = "/iot/api/v1";

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

export async function call(method, path, { query, body } = {}) {
  const url = new URL(BASE + path, location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, String(v));
  }
  const headers = { Accept: "application/json" };
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, "network", `the API did not answer (${e.message})`);
  }
  let envelope = null;
  try {
    envelope = await response.json();
  } catch {
    // not JSON: reported below by its HTTP status
  }
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
