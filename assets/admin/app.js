// The admin UI: a single page with #/ routes, talking only to the public API.
import { html, render, useState, useEffect, useCallback } from "./lib.js";
import { api, auth, enc, ApiError, refreshSession } from "./api.js";
import { AuthPage, Card } from "./confirm.js";
import { Field, Check, Notice, Icon, setToastSink, fmtNumber } from "./ui.js";
import { RecordsView } from "./records.js";
import { CollectionEditor } from "./schema.js";

const APP_NAME = "Backbone";

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query] = raw.split("?");
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(query || "") };
}

export function go(path) { location.hash = "#" + path; }

function useRoute() {
  const [route, setRoute] = useState(parseHash());
  useEffect(() => {
    const on = () => setRoute(parseHash());
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return route;
}

function useSession() {
  const [, bump] = useState(0);
  useEffect(() => auth.onChange(() => bump((n) => n + 1)), []);
  return auth.valid ? auth.record : null;
}

function App() {
  const route = useRoute();
  const user = useSession();
  const [setup, setSetup] = useState(null); // null: unknown yet
  const [toastMsg, setToast] = useState(null);
  useEffect(() => setToastSink(setToast), []);
  useEffect(() => {
    if (!toastMsg) return undefined;
    const t = setTimeout(() => setToast(null), 3500);
    return () => clearTimeout(t);
  }, [toastMsg]);

  const [first] = route.parts;
  useEffect(() => {
    if (setup !== null || first === "auth") return;
    api("GET", "/api/setup", undefined, { anonymous: true })
      .then((r) => setSetup(!!r.setupRequired))
      .catch(() => setSetup(false));
  }, [setup]);
  useEffect(() => {
    if (!user) return undefined;
    const t = setInterval(() => { refreshSession().catch(() => {}); }, 10 * 60 * 1000);
    return () => clearInterval(t);
  }, [user && user.id]);

  let page;
  // The account pages work for anyone, signed in or not.
  if (first === "auth") {
    page = html`<${AuthPage} action=${route.parts[1]} token=${route.parts.slice(2).join("/")} appName=${APP_NAME} />`;
  } else if (setup === null) {
    page = html`<p class="boot">Loading…</p>`;
  } else if (setup) {
    page = html`<${Setup} token=${first === "setup" ? route.parts[1] || route.query.get("token") || "" : route.query.get("token") || ""}
    onDone=${() => { setSetup(false); go("/"); }} />`;
  } else if (!user) {
    page = html`<${Login} />`;
  } else {
    page = html`<${Shell} route=${route} user=${user} />`;
  }
  return html`${page}${toastMsg && html`<div class=${"toast " + toastMsg.kind} role="status">${toastMsg.text}</div>`}`;
}

function Setup({ token: given, onDone }) {
  const [v, setV] = useState({ token: given, email: "", password: "", passwordConfirm: "" });
  const [err, setErr] = useState(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => { document.title = "Set up · " + APP_NAME; }, []);
  const set = (k) => (e) => setV({ ...v, [k]: e.target.value });
  async function submit(e) {
    e.preventDefault();
    if (v.password !== v.passwordConfirm) {
      setErr(new ApiError(400, { message: "The passwords differ.", data: { passwordConfirm: { message: "Must match the password." } } }));
      return;
    }
    setBusy(true);
    setErr(null);
    try {
      const r = await api("POST", "/api/setup", { token: v.token.trim(), email: v.email, password: v.password }, { anonymous: true });
      auth.save(r.token, r.record, true);
      onDone();
    } catch (e2) {
      setErr(e2);
    } finally {
      setBusy(false);
    }
  }
  return html`<${Card} title="Create the first superuser" appName=${APP_NAME}>
    <p class="muted">${given ? "This server has no superuser yet. The setup token came with the link; it works once."
      : "This server has no superuser yet. Paste the setup token the server printed when it started; it works once."}</p>
    ${err && html`<${Notice} kind="error">${err.message}<//>`}
    <form onSubmit=${submit} novalidate>
      ${!given && html`<${Field} label="Setup token" error=${err && err.field("token")}>
        <input value=${v.token} onInput=${set("token")} required autocomplete="off" spellcheck="false" />
      <//>`}
      <${Field} label="Email" error=${err && err.field("email")}>
        <input type="email" value=${v.email} onInput=${set("email")} required autocomplete="username" />
      <//>
      <${Field} label="Password" hint="At least 8 characters." error=${err && err.field("password")}>
        <input type="password" value=${v.password} onInput=${set("password")} required autocomplete="new-password" />
      <//>
      <${Field} label="Password again" error=${err && err.field("passwordConfirm")}>
        <input type="password" value=${v.passwordConfirm} onInput=${set("passwordConfirm")} required autocomplete="new-password" />
      <//>
      <button class="btn primary wide" type="submit" disabled=${busy}>${busy ? "Creating…" : "Create superuser and sign in"}</button>
    </form>
  <//>`;
}

function Login() {
  const [v, setV] = useState({ identity: "", password: "", remember: true });
  const [err, setErr] = useState(null);
  const [busy, setBusy] = useState(false);
  const [expired] = useState(auth.expiredReason);
  useEffect(() => { document.title = "Sign in · " + APP_NAME; auth.expiredReason = ""; }, []);
  async function submit(e) {
    e.preventDefault();
    setBusy(true);
    setErr(null);
    try {
      const r = await api("POST", "/api/collections/_superusers/auth-with-password",
        { identity: v.identity, password: v.password }, { anonymous: true });
      auth.save(r.token, r.record, v.remember);
    } catch (e2) {
      setErr(e2);
      setBusy(false);
    }
  }
  return html`<${Card} title="Sign in" appName=${APP_NAME}>
    ${expired && !err && html`<${Notice} kind="info">${expired}<//>`}
    ${err && html`<${Notice} kind="error">${err.message}<//>`}
    <form onSubmit=${submit} novalidate>
      <${Field} label="Email" error=${err && err.field("identity")}>
        <input type="email" value=${v.identity} onInput=${(e) => setV({ ...v, identity: e.target.value })}
          required autocomplete="username" />
      <//>
      <${Field} label="Password" error=${err && err.field("password")}>
        <input type="password" value=${v.password} onInput=${(e) => setV({ ...v, password: e.target.value })}
          required autocomplete="current-password" />
      <//>
      <${Check} label="Remember me on this device" checked=${v.remember} onChange=${(c) => setV({ ...v, remember: c })} />
      <button class="btn primary wide" type="submit" disabled=${busy}>${busy ? "Signing in…" : "Sign in"}</button>
    </form>
  <//>`;
}

/** Collections with their record counts; `reload()` fetches both again. */
function useCollections() {
  const [state, setState] = useState({ list: null, counts: {}, error: null });
  // Resolves once the list is in; the counts follow (a count over many records may take longer).
  const reload = useCallback(async () => {
    try {
      const r = await api("GET", "/api/collections?perPage=500&sort=name");
      const list = (r.items || []).filter((c) => !c.name.startsWith("_") || c.name === "_superusers");
      setState((s) => ({ ...s, list, error: null }));
      Promise.all(list.map(async (c) => {
        try {
          const page = await api("GET", "/api/collections/" + enc(c.name) + "/records?perPage=1&fields=id");
          return [c.name, page.totalItems];
        } catch (_) { return [c.name, -1]; }
      })).then((pairs) => setState((s) => ({ ...s, counts: Object.fromEntries(pairs) })));
    } catch (e) {
      setState((s) => ({ ...s, error: e }));
    }
  }, []);
  useEffect(() => { reload(); }, []);
  return { ...state, reload };
}

function Shell({ route, user }) {
  const cols = useCollections();
  const [editing, setEditing] = useState(null); // null | "new" | collection
  const [filter, setFilter] = useState("");
  const [, name] = route.parts;
  const current = cols.list && cols.list.find((c) => c.name === name || c.id === name);
  useEffect(() => {
    if (cols.list && !name) {
      const firstUser = cols.list.find((c) => !c.name.startsWith("_"));
      if (firstUser) go("/collections/" + enc(firstUser.name));
    }
  }, [cols.list, name]);
  useEffect(() => { document.title = (current ? current.name + " · " : "") + APP_NAME; }, [current && current.name]);

  async function signOut() {
    try { await api("POST", "/api/collections/_superusers/auth-logout"); } catch (_) { /* signed out anyway */ }
    auth.clear();
    go("/");
  }
  const shown = (cols.list || []).filter((c) => c.name.toLowerCase().includes(filter.toLowerCase()));
  const system = shown.filter((c) => c.name.startsWith("_"));
  const own = shown.filter((c) => !c.name.startsWith("_"));
  const item = (c) => html`<li>
    <a href=${"#/collections/" + enc(c.name)} class=${"nav-item" + (current && current.id === c.id ? " active" : "")}
      aria-current=${current && current.id === c.id ? "page" : undefined}>
      <${Icon} name=${c.type === "auth" ? "user" : "db"} size="16" />
      <span class="nav-name">${c.name}</span>
      <span class="count" aria-label=${fmtNumber(cols.counts[c.name]) + " records"}>${fmtNumber(cols.counts[c.name])}</span>
    </a></li>`;
  return html`<div class="shell">
    <a class="skip" href="#main" onClick=${(e) => { e.preventDefault(); const m = document.getElementById("main"); if (m) m.focus(); }}>Skip to content</a>
    <aside class="sidebar" aria-label="Collections">
      <div class="brand"><span class="logo" aria-hidden="true"></span><span>${APP_NAME}</span></div>
      <div class="side-search">
        <${Icon} name="search" size="16" />
        <input type="search" placeholder="Find a collection" aria-label="Find a collection" value=${filter}
          onInput=${(e) => setFilter(e.target.value)} />
      </div>
      <nav aria-label="Collections">
        ${cols.error && html`<${Notice} kind="error">${cols.error.message}<//>`}
        ${cols.list === null && html`<p class="muted pad">Loading…</p>`}
        ${cols.list && own.length === 0 && html`<p class="muted pad">No collections yet.</p>`}
        <ul class="nav">${own.map(item)}</ul>
        ${system.length > 0 && html`<h3 class="nav-head">System</h3><ul class="nav">${system.map(item)}</ul>`}
      </nav>
      <button class="btn ghost new-col" type="button" onClick=${() => setEditing("new")}>
        <${Icon} name="plus" /> New collection
      </button>
      <div class="side-foot">
        <span class="who" title=${user.email}><${Icon} name="user" size="16" /> <span>${user.email}</span></span>
        <button class="icon-btn" type="button" onClick=${signOut} aria-label="Sign out" title="Sign out"><${Icon} name="logout" /></button>
      </div>
    </aside>
    <main class="content" id="main" tabindex="-1">
      ${current ? html`<${RecordsView} key=${current.id + current.updated} collection=${current} collections=${cols.list}
          count=${cols.counts[current.name]} onCountsChanged=${cols.reload}
          onEditCollection=${() => setEditing(current)} />`
        : cols.list && name ? html`<div class="empty-state"><h1>Not found</h1><p>There is no collection named <strong>${name}</strong>.</p></div>`
        : cols.list && html`<div class="empty-state">
          <h1>Welcome</h1>
          <p>Create a collection to start storing records.</p>
          <button class="btn primary" type="button" onClick=${() => setEditing("new")}><${Icon} name="plus" /> New collection</button>
        </div>`}
    </main>
    ${editing && html`<${CollectionEditor} collection=${editing === "new" ? null : editing} collections=${cols.list || []}
      onClose=${() => setEditing(null)}
      onSaved=${(c) => { setEditing(null); cols.reload().then(() => { if (c) go("/collections/" + enc(c.name)); }); }}
      onDeleted=${() => { setEditing(null); cols.reload(); go("/"); }} />`}
  </div>`;
}

render(html`<${App} />`, document.getElementById("app"));
