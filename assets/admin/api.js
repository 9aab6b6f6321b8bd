// The one HTTP client of the UI: the public API, as SDK clients use it. The session is kept
// like the PocketBase JS SDK's store ({token, record} under "pocketbase_auth"): in
// localStorage when "remember me" is ticked, otherwise in sessionStorage.
const KEY = "pocketbase_auth";

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || (status ? "The request failed (" + status + ")." : "The server could not be reached."));
    this.status = status;
    this.data = (body && body.data) || {};
    this.body = body || {};
  }
  /** The message of the field `name`, if the server named it. */
  field(name) {
    const f = this.data[name];
    return f && f.message ? f.message : "";
  }
}

function readStore() {
  for (const store of [sessionStorage, localStorage]) {
    try {
      const raw = store.getItem(KEY);
      if (raw) return { ...JSON.parse(raw), remember: store === localStorage };
    } catch (_) { /* a damaged entry is ignored */ }
  }
  return null;
}

let session = readStore();
const listeners = new Set();

export const auth = {
  get token() { return session && session.token; },
  get record() { return session && session.record; },
  get valid() {
    if (!session || !session.token) return false;
    try {
      const payload = JSON.parse(atob(session.token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
      return !payload.exp || payload.exp * 1000 > Date.now();
    } catch (_) { return false; }
  },
  save(token, record, remember) {
    this.clear(true);
    session = { token, record, remember };
    (remember ? localStorage : sessionStorage).setItem(KEY, JSON.stringify({ token, record }));
    listeners.forEach((fn) => fn());
  },
  clear(quiet) {
    session = null;
    localStorage.removeItem(KEY);
    sessionStorage.removeItem(KEY);
    if (!quiet) listeners.forEach((fn) => fn());
  },
  onChange(fn) { listeners.add(fn); return () => listeners.delete(fn); },
  /** Set when the server refused the session (expired or revoked). */
  expiredReason: "",
};

// A remembered session that has expired since: say so on the sign-in page.
if (session && !auth.valid) {
  auth.expiredReason = "Your session has expired. Sign in again.";
  auth.clear(true);
}

/** `api(method, path, body?)`: JSON in, JSON out; FormData bodies are sent as multipart. */
export async function api(method, path, body, opts = {}) {
  const headers = {};
  if (auth.token && !opts.anonymous) headers.Authorization = auth.token;
  let payload;
  if (body instanceof FormData) payload = body;
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body: payload, signal: opts.signal });
  } catch (e) {
    if (e && e.name === "AbortError") throw e;
    throw new ApiError(0, null);
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = { message: text }; }
  if (!res.ok) {
    if (res.status === 401 && headers.Authorization) {
      auth.expiredReason = (data && data.message) || "Your session has ended. Sign in again.";
      auth.clear();
    }
    throw new ApiError(res.status, data);
  }
  return data;
}

export const enc = encodeURIComponent;

/** Query string from an object, leaving out undefined values. */
export function qs(params) {
  const parts = [];
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null) parts.push(enc(k) + "=" + enc(v));
  }
  return parts.length ? "?" + parts.join("&") : "";
}

/** Refreshes the session shortly before it expires while the tab is open. */
export async function refreshSession() {
  if (!auth.valid || !auth.record) return;
  const c = auth.record.collectionName || "_superusers";
  const r = await api("POST", "/api/collections/" + enc(c) + "/auth-refresh");
  auth.save(r.token, r.record, !!(session && session.remember));
}
