// The records of one collection: a table with column picker, header sorting, the filter bar,
// cursor paging, selection and bulk delete; and the record panel with an input per field type.
import { html, useState, useEffect, useRef, useMemo, useCallback } from "./lib.js";
import { api, enc, qs, ApiError } from "./api.js";
import { Drawer, Field, Check, Notice, Icon, Confirm, Caret, toast, fmtNumber } from "./ui.js";
import { ApiPreview } from "./preview.js";

const PER_PAGE = 50;
const SYSTEM_HIDDEN = new Set(["password", "tokenKey"]);

function visibleFields(c) {
  return c.fields.filter((f) => !SYSTEM_HIDDEN.has(f.name) && f.type !== "password" && f.name !== "id");
}

/** id, the first few plain fields, the first file and relation fields, and created. */
function defaultColumns(fields) {
  const plain = fields.filter((f) => !["editor", "json", "autodate"].includes(f.type)).slice(0, 4).map((f) => f.name);
  const extra = ["file", "relation"].map((t) => fields.find((f) => f.type === t)).filter(Boolean).map((f) => f.name);
  const created = fields.some((f) => f.name === "created") ? ["created"] : [];
  const chosen = new Set(["id", ...plain, ...extra, ...created]);
  return ["id", ...fields.map((f) => f.name)].filter((n) => chosen.has(n));
}

function columnsKey(c) { return "backbone.columns." + c.id; }

function fileUrl(c, rec, name, thumb, token) {
  return "/api/files/" + enc(c.id) + "/" + enc(rec.id) + "/" + enc(name) + qs({ thumb, token: token || undefined });
}
const IMAGE = /\.(png|jpe?g|gif|webp|avif|bmp|svg)$/i;

function fmtDate(v) {
  if (!v) return "";
  const d = new Date(v.replace(" ", "T"));
  if (isNaN(d)) return v;
  return d.toISOString().slice(0, 16).replace("T", " ");
}

function stripHtml(s) { const d = document.createElement("div"); d.innerHTML = s || ""; return d.textContent || ""; }

/** One table cell. */
function Cell({ c, f, rec, fileToken }) {
  const v = rec[f.name];
  switch (f.type) {
    case "bool": return v ? html`<span class="yes">Yes</span>` : html`<span class="muted">No</span>`;
    case "date": case "autodate": return html`<time datetime=${v}>${fmtDate(v)}</time>`;
    case "editor": return html`<span class="clip">${stripHtml(v).slice(0, 120)}</span>`;
    case "json": return html`<code class="clip">${v === null || v === undefined ? "" : JSON.stringify(v).slice(0, 80)}</code>`;
    case "select": case "relation": {
      const list = Array.isArray(v) ? v : v ? [v] : [];
      const expanded = rec.expand && rec.expand[f.name];
      const label = (id) => {
        const e = Array.isArray(expanded) ? expanded.find((x) => x.id === id) : expanded && expanded.id === id ? expanded : null;
        return e ? presentable(e) : id;
      };
      return html`<span class="chips">${list.slice(0, 3).map((x) => html`<span class="chip">${f.type === "relation" ? label(x) : x}</span>`)}
        ${list.length > 3 && html`<span class="muted">+${list.length - 3}</span>`}</span>`;
    }
    case "file": {
      const list = Array.isArray(v) ? v : v ? [v] : [];
      return html`<span class="thumbs">${list.slice(0, 3).map((n) => IMAGE.test(n)
        ? html`<img class="thumb" src=${fileUrl(c, rec, n, "100x100", fileToken)} alt=${n} loading="lazy" width="32" height="32" />`
        : html`<span class="chip"><${Icon} name="file" size="14" /> ${n.slice(0, 18)}</span>`)}</span>`;
    }
    default: return html`<span class="clip">${v === null || v === undefined ? "" : String(v)}</span>`;
  }
}

function presentable(rec) {
  for (const k of ["name", "title", "email", "username", "label", "slug"]) if (rec[k]) return String(rec[k]);
  return rec.id;
}

export function RecordsView({ collection: c, collections, count, onCountsChanged, onEditCollection }) {
  const fields = visibleFields(c);
  const allCols = ["id", ...fields.map((f) => f.name)];
  const [cols, setCols] = useState(() => {
    try { const saved = JSON.parse(localStorage.getItem(columnsKey(c))); if (Array.isArray(saved)) return saved.filter((x) => allCols.includes(x)); } catch (_) { /* default */ }
    return defaultColumns(fields);
  });
  const [sort, setSort] = useState(fields.some((f) => f.name === "created") ? "-created" : "-id");
  const [filterText, setFilterText] = useState("");
  const [filter, setFilter] = useState("");
  const [pages, setPages] = useState({ cursors: [""], index: 0 });
  const [data, setData] = useState({ items: null, next: null, error: null, loading: true });
  const [selected, setSelected] = useState(new Set());
  const [panel, setPanel] = useState(null); // null | "new" | record
  const [confirming, setConfirming] = useState(false);
  const [busy, setBusy] = useState(false);
  const [showCols, setShowCols] = useState(false);
  const [preview, setPreview] = useState(false);
  const [fileToken, setFileToken] = useState("");
  const [total, setTotal] = useState(count);
  useEffect(() => setTotal(count), [count]);

  const expand = fields.filter((f) => f.type === "relation" && cols.includes(f.name)).map((f) => f.name).join(",");
  const load = useCallback(async (signal) => {
    setData((d) => ({ ...d, loading: true }));
    const started = performance.now();
    try {
      const r = await api("GET", "/api/collections/" + enc(c.name) + "/records" + qs({
        perPage: PER_PAGE, sort, filter: filter || undefined, cursor: pages.cursors[pages.index], skipTotal: 1, expand: expand || undefined,
      }), undefined, { signal });
      setData({ items: r.items, next: r.nextCursor || null, error: null, loading: false, ms: performance.now() - started });
    } catch (e) {
      if (e.name === "AbortError") return;
      setData({ items: [], next: null, error: e, loading: false });
    }
  }, [c.name, sort, filter, pages, expand]);
  useEffect(() => {
    const ctl = new AbortController();
    load(ctl.signal);
    return () => ctl.abort();
  }, [load]);
  useEffect(() => {
    // Images are loaded by <img>, which sends no Authorization header: a short-lived file
    // token lets them through the view rule and protected fields; renewed while shown.
    if (!c.fields.some((f) => f.type === "file")) return undefined;
    const renew = () => api("POST", "/api/files/token").then((r) => setFileToken(r.token)).catch(() => {});
    renew();
    const t = setInterval(renew, 90 * 1000);
    return () => clearInterval(t);
  }, [c.id]);
  useEffect(() => { localStorage.setItem(columnsKey(c), JSON.stringify(cols)); }, [cols]);

  async function recount() {
    try {
      const r = await api("GET", "/api/collections/" + enc(c.name) + "/records" + qs({ perPage: 1, fields: "id", filter: filter || undefined }));
      setTotal(r.totalItems);
    } catch (_) { /* keep the old one */ }
    onCountsChanged();
  }
  const restart = () => { setPages({ cursors: [""], index: 0 }); setSelected(new Set()); };
  const sortBy = (name) => { setSort(sort === name ? "-" + name : sort === "-" + name ? name : "-" + name); restart(); };
  const items = data.items || [];
  const allSelected = items.length > 0 && items.every((r) => selected.has(r.id));
  const toggle = (id) => { const s = new Set(selected); if (s.has(id)) s.delete(id); else s.add(id); setSelected(s); };

  async function bulkDelete() {
    setBusy(true);
    const ids = [...selected];
    try {
      for (let i = 0; i < ids.length; i += 50) {
        await api("POST", "/api/batch", { requests: ids.slice(i, i + 50).map((id) => ({ method: "DELETE", url: "/api/collections/" + enc(c.name) + "/records/" + enc(id) })) });
      }
      toast(ids.length === 1 ? "1 record deleted." : ids.length + " records deleted.");
      setSelected(new Set());
      setConfirming(false);
      load();
      recount();
    } catch (e) {
      toast(e.message, "error");
      setConfirming(false);
    } finally { setBusy(false); }
  }

  const fieldOf = (name) => fields.find((f) => f.name === name) || { name, type: "text" };
  const filterError = data.error && data.error.status === 400 ? (data.error.field("filter") || data.error.message) : "";
  return html`<div class="records">
    <header class="page-head">
      <div>
        <p class="crumb">Collections</p>
        <h1>${c.name} <span class=${"kind " + c.type}>${c.type}</span></h1>
        <p class="muted" aria-live="polite">${total === undefined ? "…" : fmtNumber(total) + (total === 1 ? " record" : " records")}${filter ? " in the collection" : ""}</p>
      </div>
      <div class="head-actions">
        <button class="btn ghost" type="button" onClick=${() => setPreview(true)}><${Icon} name="code" /> API preview</button>
        <button class="btn ghost" type="button" onClick=${onEditCollection}><${Icon} name="edit" /> Edit collection</button>
        <button class="btn primary" type="button" onClick=${() => setPanel("new")}><${Icon} name="plus" /> New record</button>
      </div>
    </header>
    <form class="toolbar" role="search" onSubmit=${(e) => { e.preventDefault(); setFilter(filterText.trim()); restart(); }}>
      <div class=${"filter" + (filterError ? " invalid" : "")}>
        <${Icon} name="search" size="16" />
        <input type="search" aria-label="Filter records" placeholder=${"Filter, e.g. " + (fields[0] ? fields[0].name : "id") + " ~ 'abc' && created > @todayStart"}
          value=${filterText} onInput=${(e) => setFilterText(e.target.value)} spellcheck="false"
          aria-invalid=${!!filterError} aria-describedby="filter-msg" />
        ${filter && html`<button class="icon-btn" type="button" aria-label="Clear filter" onClick=${() => { setFilterText(""); setFilter(""); restart(); }}><${Icon} name="x" size="16" /></button>`}
      </div>
      <button class="btn" type="submit">Apply</button>
      <div class="popover-wrap">
        <button class="btn ghost" type="button" aria-expanded=${showCols} aria-controls="col-picker" onClick=${() => setShowCols(!showCols)}><${Icon} name="columns" /> Columns</button>
        ${showCols && html`<div class="popover" id="col-picker" role="group" aria-label="Shown columns">
          ${allCols.map((n) => html`<${Check} label=${n} checked=${cols.includes(n)}
            onChange=${(v) => setCols(v ? allCols.filter((x) => x === n || cols.includes(x)) : cols.filter((x) => x !== n))} />`)}
        </div>`}
      </div>
      <button class="icon-btn" type="button" aria-label="Reload" title="Reload" onClick=${() => { load(); recount(); }}><${Icon} name="refresh" /></button>
    </form>
    <p id="filter-msg" class=${filterError ? "field-error filter-error" : "sr-only"} role=${filterError ? "alert" : undefined}>${filterError}</p>
    ${filterError && html`<${Caret} text=${filter} message=${filterError} />`}
    ${data.error && !filterError && html`<${Notice} kind="error">${data.error.message}<//>`}
    ${selected.size > 0 && html`<div class="bulkbar" role="region" aria-label="Selection">
      <strong>${selected.size} selected</strong>
      <button class="btn small" type="button" onClick=${() => setSelected(new Set())}>Clear</button>
      <button class="btn small danger" type="button" onClick=${() => setConfirming(true)}><${Icon} name="trash" size="16" /> Delete selected</button>
    </div>`}
    <div class="table-wrap" aria-busy=${data.loading}>
      <table class="grid" aria-label=${c.name + " records"} data-ready=${data.loading ? "false" : "true"}>
        <thead><tr>
          <th class="sel"><input type="checkbox" aria-label="Select all on this page" checked=${allSelected}
            onChange=${() => setSelected(allSelected ? new Set() : new Set(items.map((r) => r.id)))} /></th>
          ${cols.map((n) => {
            const dir = sort === n ? "ascending" : sort === "-" + n ? "descending" : "none";
            return html`<th aria-sort=${dir}><button type="button" class="sort" onClick=${() => sortBy(n)}>
              ${n} <span class="arrow" aria-hidden="true">${dir === "ascending" ? "▲" : dir === "descending" ? "▼" : ""}</span></button></th>`;
          })}
        </tr></thead>
        <tbody>
          ${items.map((rec) => html`<tr key=${rec.id} class=${selected.has(rec.id) ? "selected" : ""}>
            <td class="sel"><input type="checkbox" aria-label=${"Select " + rec.id} checked=${selected.has(rec.id)} onChange=${() => toggle(rec.id)} /></td>
            ${cols.map((n, k) => html`<td>${k === 0
              ? html`<button type="button" class="row-open" onClick=${() => setPanel(rec)} aria-label=${"Open record " + rec.id}>${n === "id" ? rec.id : html`<${Cell} c=${c} f=${fieldOf(n)} rec=${rec} fileToken=${fileToken} />`}</button>`
              : n === "id" ? html`<code>${rec.id}</code>` : html`<${Cell} c=${c} f=${fieldOf(n)} rec=${rec} fileToken=${fileToken} />`}</td>`)}
          </tr>`)}
        </tbody>
      </table>
      ${!data.loading && items.length === 0 && !data.error && html`<div class="empty"><p>${filter ? "No records match this filter." : "No records yet."}</p>
        ${!filter && html`<button class="btn primary" type="button" onClick=${() => setPanel("new")}><${Icon} name="plus" /> New record</button>`}</div>`}
    </div>
    <nav class="pager" aria-label="Pages">
      <button class="btn small" type="button" disabled=${pages.index === 0} onClick=${() => setPages({ ...pages, index: pages.index - 1 })}><${Icon} name="chevl" size="16" /> Previous</button>
      <span>Page ${pages.index + 1}${total > 0 ? " of " + Math.max(1, Math.ceil(total / PER_PAGE)).toLocaleString("en-US") : ""}</span>
      <button class="btn small" type="button" disabled=${!data.next || data.loading}
        onClick=${() => setPages({ cursors: [...pages.cursors.slice(0, pages.index + 1), data.next], index: pages.index + 1 })}>Next <${Icon} name="chevr" size="16" /></button>
    </nav>
    ${panel && html`<${RecordPanel} c=${c} collections=${collections} record=${panel === "new" ? null : panel} fileToken=${fileToken}
      onClose=${() => setPanel(null)} onSaved=${() => { setPanel(null); load(); recount(); }} />`}
    ${confirming && html`<${Confirm} title=${"Delete " + selected.size + (selected.size === 1 ? " record?" : " records?")} danger confirmLabel="Delete"
      busy=${busy} onCancel=${() => setConfirming(false)} onConfirm=${bulkDelete}>
      <p>The selected records${c.fields.some((f) => f.type === "file") ? " and their files" : ""} are deleted for good. Records that point at them with a cascading relation are deleted too.</p>
    <//>`}
    ${preview && html`<${ApiPreview} c=${c} onClose=${() => setPreview(false)} />`}
  </div>`;
}

/* ---------- the record panel ---------- */

function toLocalInput(v) {
  if (!v) return "";
  const d = new Date(v.replace(" ", "T"));
  if (isNaN(d)) return "";
  return d.toISOString().slice(0, 16);
}
function fromLocalInput(s) { return s ? new Date(s + ":00Z").toISOString().replace("T", " ") : ""; }

function RecordPanel({ c, collections, record, onClose, onSaved, fileToken }) {
  const isNew = !record;
  const isAuth = c.type === "auth";
  const editable = c.fields.filter((f) => !f.system && !["autodate"].includes(f.type) && !(isAuth && ["email", "emailVisibility", "verified", "password", "tokenKey"].includes(f.name)) && f.name !== "id");
  const [v, setV] = useState(() => {
    const init = {};
    for (const f of c.fields) init[f.name] = record ? record[f.name] : f.type === "bool" ? false : f.type === "number" ? null : (f.type === "select" || f.type === "relation" || f.type === "file") && (f.maxSelect || 1) > 1 ? [] : f.type === "json" ? null : "";
    if (isAuth) Object.assign(init, { email: record ? record.email : "", emailVisibility: record ? record.emailVisibility : false, verified: record ? record.verified : false, password: "", passwordConfirm: "" });
    return init;
  });
  const [files, setFiles] = useState({}); // name → {add: File[], remove: string[]}
  const [err, setErr] = useState(null);
  const [busy, setBusy] = useState(false);
  const [confirmDel, setConfirmDel] = useState(false);
  const set = (k, x) => setV((o) => ({ ...o, [k]: x }));
  const fe = (name) => err && err.field(name);

  async function save(e) {
    if (e) e.preventDefault();
    setBusy(true);
    setErr(null);
    try {
      const body = {};
      for (const f of editable) if (f.type !== "file") body[f.name] = v[f.name];
      if (isAuth) {
        body.email = v.email; body.emailVisibility = v.emailVisibility; body.verified = v.verified;
        if (v.password) { body.password = v.password; body.passwordConfirm = v.passwordConfirm; }
      }
      for (const f of editable) {
        if (f.type === "json" && typeof v[f.name] === "string") {
          try { body[f.name] = v[f.name].trim() ? JSON.parse(v[f.name]) : null; } catch (_) {
            throw new ApiError(400, { message: "Fix the highlighted fields.", data: { [f.name]: { message: "This is not valid JSON." } } });
          }
        }
      }
      const base = "/api/collections/" + enc(c.name) + "/records";
      let saved = isNew ? await api("POST", base, body) : await api("PATCH", base + "/" + enc(record.id), body);
      const form = new FormData();
      let any = false;
      for (const [name, change] of Object.entries(files)) {
        for (const file of change.add || []) { form.append(name + "+", file); any = true; }
        for (const old of change.remove || []) { form.append(name + "-", old); any = true; }
      }
      if (any) saved = await api("PATCH", base + "/" + enc(saved.id), form);
      toast(isNew ? "Record created." : "Record saved.");
      onSaved(saved);
    } catch (e2) {
      setErr(e2);
      setBusy(false);
    }
  }
  async function del() {
    try {
      await api("DELETE", "/api/collections/" + enc(c.name) + "/records/" + enc(record.id));
      toast("Record deleted.");
      onSaved(null);
    } catch (e2) { setErr(e2); setConfirmDel(false); }
  }

  const footer = html`
    ${!isNew && html`<button class="btn danger-ghost" type="button" onClick=${() => setConfirmDel(true)}><${Icon} name="trash" /> Delete</button>`}
    <span class="spacer"></span>
    <button class="btn" type="button" onClick=${onClose}>Cancel</button>
    <button class="btn primary" type="submit" form="record-form" disabled=${busy}>${busy ? "Saving…" : isNew ? "Create" : "Save changes"}</button>`;
  return html`<${Drawer} title=${isNew ? "New " + c.name + " record" : "Record " + record.id} onClose=${onClose} footer=${footer}>
    ${err && html`<${Notice} kind="error">${err.message}<//>`}
    <form id="record-form" onSubmit=${save} novalidate class="record-form">
      ${!isNew && html`<div class="meta">
        <span><span class="muted">id</span> <code>${record.id}</code></span>
        ${record.created && html`<span><span class="muted">created</span> ${fmtDate(record.created)}</span>`}
        ${record.updated && html`<span><span class="muted">updated</span> ${fmtDate(record.updated)}</span>`}
      </div>`}
      ${isAuth && html`<fieldset class="auth-fields"><legend>Account</legend>
        <${Field} label="Email" error=${fe("email")}><input type="email" value=${v.email} onInput=${(e) => set("email", e.target.value)} autocomplete="off" /><//>
        <${Check} label="Show email to other users" checked=${v.emailVisibility} onChange=${(x) => set("emailVisibility", x)} />
        <${Check} label="Verified" checked=${v.verified} onChange=${(x) => set("verified", x)} />
        <${Field} label=${isNew ? "Password" : "New password (leave empty to keep)"} error=${fe("password")}><input type="password" value=${v.password} onInput=${(e) => set("password", e.target.value)} autocomplete="new-password" /><//>
        <${Field} label="Password again" error=${fe("passwordConfirm")}><input type="password" value=${v.passwordConfirm} onInput=${(e) => set("passwordConfirm", e.target.value)} autocomplete="new-password" /><//>
        ${!isNew && html`<${UserActions} c=${c} record=${record} />`}
      </fieldset>`}
      ${editable.map((f) => html`<${FieldInput} key=${f.name} c=${c} f=${f} value=${v[f.name]} onChange=${(x) => set(f.name, x)}
        error=${fe(f.name)} collections=${collections} record=${record} fileToken=${fileToken}
        files=${files[f.name] || { add: [], remove: [] }} onFiles=${(x) => setFiles({ ...files, [f.name]: x })} />`)}
    </form>
    ${!isNew && html`<${Expanded} c=${c} record=${record} collections=${collections} />`}
    ${confirmDel && html`<${Confirm} title="Delete this record?" danger confirmLabel="Delete" onCancel=${() => setConfirmDel(false)} onConfirm=${del}>
      <p>Record <code>${record.id}</code>${c.fields.some((f) => f.type === "file") ? " and its files" : ""} will be deleted for good.</p><//>`}
  <//>`;
}

function UserActions({ c, record }) {
  const [msg, setMsg] = useState(null);
  const run = async (label, fn) => {
    try { const r = await fn(); setMsg({ kind: "success", text: label + (r && r.token ? " Token: " + r.token : "") }); } catch (e) { setMsg({ kind: "error", text: e.message }); }
  };
  const base = "/api/collections/" + enc(c.name);
  return html`<div class="user-actions">
    <span class=${"badge " + (record.verified ? "ok" : "warn")}>${record.verified ? "Verified" : "Not verified"}</span>
    ${!record.verified && html`<button class="btn small" type="button" onClick=${() => run("Verification email sent.", () => api("POST", base + "/request-verification", { email: record.email }))}>Send verification email</button>`}
    <button class="btn small" type="button" onClick=${() => run("Password reset email sent.", () => api("POST", base + "/request-password-reset", { email: record.email }))}>Send password reset</button>
    <button class="btn small" type="button" onClick=${() => run("Impersonation token (10 min).", () => api("POST", base + "/impersonate/" + enc(record.id), { duration: 600 }))}>Impersonate</button>
    <button class="btn small" type="button" onClick=${() => run("Every session of this user was signed out.", async () => {
      // A short impersonation token signs the user out of every session (auth-logout, all).
      const imp = await api("POST", base + "/impersonate/" + enc(record.id), { duration: 60 });
      const res = await fetch(base + "/auth-logout", { method: "POST", headers: { Authorization: imp.token, "Content-Type": "application/json" }, body: JSON.stringify({ all: true }) });
      if (!res.ok) throw new ApiError(res.status, await res.json().catch(() => null));
      return null;
    })}>Sign out everywhere</button>
    ${msg && html`<${Notice} kind=${msg.kind}><span class="break">${msg.text}</span><//>`}
  </div>`;
}

/** The records a record's relations point at (expand). */
function Expanded({ c, record, collections }) {
  const rels = c.fields.filter((f) => f.type === "relation");
  const [exp, setExp] = useState(null);
  useEffect(() => {
    if (!rels.length) return;
    api("GET", "/api/collections/" + enc(c.name) + "/records/" + enc(record.id) + qs({ expand: rels.map((f) => f.name).join(",") }))
      .then((r) => setExp(r.expand || {})).catch(() => setExp({}));
  }, [record.id]);
  if (!rels.length || !exp) return null;
  return html`<section class="expanded" aria-label="Related records">
    <h3>Related records</h3>
    ${rels.map((f) => {
      const list = Array.isArray(exp[f.name]) ? exp[f.name] : exp[f.name] ? [exp[f.name]] : [];
      return html`<div class="rel-group"><h4>${f.name}</h4>
        ${list.length === 0 ? html`<p class="muted">None.</p>` : html`<ul>${list.map((r) => html`<li><code>${r.id}</code> ${presentable(r)}</li>`)}</ul>`}</div>`;
    })}
  </section>`;
}

function FieldInput({ c, f, value, onChange, error, collections, record, files, onFiles, fileToken }) {
  const label = f.name + (f.required ? " *" : "");
  switch (f.type) {
    case "bool":
      return html`<div class="field"><${Check} label=${f.name} checked=${value} onChange=${onChange} />${error && html`<p class="field-error" role="alert">${error}</p>`}</div>`;
    case "number":
      return html`<${Field} label=${label} error=${error}><input type="number" step=${f.onlyInt ? 1 : "any"} value=${value ?? ""}
        onInput=${(e) => onChange(e.target.value === "" ? null : Number(e.target.value))} /><//>`;
    case "email": return html`<${Field} label=${label} error=${error}><input type="email" value=${value || ""} onInput=${(e) => onChange(e.target.value)} /><//>`;
    case "url": return html`<${Field} label=${label} error=${error}><input type="url" value=${value || ""} onInput=${(e) => onChange(e.target.value)} placeholder="https://" /><//>`;
    case "date":
      return html`<${Field} label=${label + " (UTC)"} error=${error}><input type="datetime-local" value=${toLocalInput(value)} onInput=${(e) => onChange(fromLocalInput(e.target.value))} /><//>`;
    case "editor": return html`<${RichText} label=${label} value=${value || ""} onChange=${onChange} error=${error} />`;
    case "select": return html`<${SelectChips} label=${label} f=${f} value=${value} onChange=${onChange} error=${error} />`;
    case "json": return html`<${JsonInput} label=${label} value=${value} onChange=${onChange} error=${error} />`;
    case "relation": return html`<${RelationPicker} label=${label} f=${f} value=${value} onChange=${onChange} error=${error} collections=${collections} />`;
    case "file": return html`<${FileInput} label=${label} c=${c} f=${f} value=${value} record=${record} files=${files} onFiles=${onFiles} error=${error} fileToken=${fileToken} />`;
    default:
      return html`<${Field} label=${label} error=${error}><input value=${value || ""} onInput=${(e) => onChange(e.target.value)}
        maxlength=${f.max || undefined} placeholder=${f.autogeneratePattern ? "Generated when empty" : ""} /><//>`;
  }
}

function RichText({ label, value, onChange, error }) {
  const ref = useRef(null);
  useEffect(() => { if (ref.current && ref.current.innerHTML !== value) ref.current.innerHTML = value; }, []);
  const cmd = (name, arg) => { ref.current.focus(); document.execCommand(name, false, arg); onChange(ref.current.innerHTML); };
  const id = useMemo(() => "rt-" + Math.random().toString(36).slice(2), []);
  return html`<div class=${"field" + (error ? " invalid" : "")}>
    <span class="label" id=${id}>${label}</span>
    <div class="rt">
      <div class="rt-bar" role="toolbar" aria-label=${"Formatting of " + label}>
        <button type="button" class="icon-btn" aria-label="Bold" onClick=${() => cmd("bold")}><b>B</b></button>
        <button type="button" class="icon-btn" aria-label="Italic" onClick=${() => cmd("italic")}><i>I</i></button>
        <button type="button" class="icon-btn" aria-label="Heading" onClick=${() => cmd("formatBlock", "h3")}>H</button>
        <button type="button" class="icon-btn" aria-label="Bulleted list" onClick=${() => cmd("insertUnorderedList")}>•</button>
        <button type="button" class="icon-btn" aria-label="Link" onClick=${() => { const u = prompt("Link address"); if (u) cmd("createLink", u); }}>🔗</button>
      </div>
      <div class="rt-body" contenteditable="true" role="textbox" aria-multiline="true" aria-labelledby=${id} ref=${ref}
        onInput=${() => onChange(ref.current.innerHTML)}></div>
    </div>
    ${error && html`<p class="field-error" role="alert">${error}</p>`}
  </div>`;
}

function SelectChips({ label, f, value, onChange, error }) {
  const multi = (f.maxSelect || 1) > 1;
  const list = Array.isArray(value) ? value : value ? [value] : [];
  const toggle = (x) => {
    if (!multi) onChange(list[0] === x ? "" : x);
    else onChange(list.includes(x) ? list.filter((y) => y !== x) : [...list, x]);
  };
  return html`<fieldset class=${"field chips-field" + (error ? " invalid" : "")}><legend class="label">${label}</legend>
    <div class="chips">${(f.values || []).map((x) => html`<label class=${"chip" + (list.includes(x) ? " on" : "")}>
      <input type=${multi ? "checkbox" : "radio"} name=${"sel-" + f.name} checked=${list.includes(x)} onClick=${() => toggle(x)} />${x}</label>`)}</div>
    ${error && html`<p class="field-error" role="alert">${error}</p>`}
  </fieldset>`;
}

function JsonInput({ label, value, onChange, error }) {
  const [text, setText] = useState(() => (value === null || value === undefined ? "" : JSON.stringify(value, null, 2)));
  const [bad, setBad] = useState("");
  const onInput = (e) => {
    const t = e.target.value;
    setText(t);
    try { onChange(t.trim() ? JSON.parse(t) : null); setBad(""); } catch (x) { onChange(t); setBad("Not valid JSON: " + x.message); }
  };
  return html`<${Field} label=${label} error=${error || bad}><textarea class="mono" rows="5" spellcheck="false" value=${text} onInput=${onInput}></textarea><//>`;
}

function RelationPicker({ label, f, value, onChange, error, collections }) {
  const target = collections.find((x) => x.id === f.collectionId || x.name === f.collectionId);
  const multi = (f.maxSelect || 1) > 1;
  const list = Array.isArray(value) ? value : value ? [value] : [];
  const [q, setQ] = useState("");
  const [found, setFound] = useState([]);
  const [labels, setLabels] = useState({});
  useEffect(() => {
    if (!target) return undefined;
    const ctl = new AbortController();
    const t = setTimeout(async () => {
      const text = target.fields.filter((x) => ["text", "email"].includes(x.type) && !x.hidden).slice(0, 3).map((x) => x.name);
      const cond = q ? ["id ~ " + JSON.stringify(q), ...text.map((n) => n + " ~ " + JSON.stringify(q))].join(" || ") : undefined;
      try {
        const r = await api("GET", "/api/collections/" + enc(target.name) + "/records" + qs({ perPage: 8, skipTotal: 1, filter: cond }), undefined, { signal: ctl.signal });
        setFound(r.items);
        setLabels((l) => ({ ...l, ...Object.fromEntries(r.items.map((x) => [x.id, presentable(x)])) }));
      } catch (_) { /* keep the old list */ }
    }, 200);
    return () => { clearTimeout(t); ctl.abort(); };
  }, [q, target && target.id]);
  const add = (id) => onChange(multi ? (list.includes(id) ? list : [...list, id]) : id);
  const remove = (id) => onChange(multi ? list.filter((x) => x !== id) : "");
  return html`<fieldset class=${"field relation" + (error ? " invalid" : "")}><legend class="label">${label} <span class="muted">→ ${target ? target.name : "?"}</span></legend>
    <div class="chips">${list.map((id) => html`<span class="chip on">${labels[id] || id}
      <button type="button" class="chip-x" aria-label=${"Remove " + (labels[id] || id)} onClick=${() => remove(id)}><${Icon} name="x" size="12" /></button></span>`)}
      ${list.length === 0 && html`<span class="muted">None chosen.</span>`}</div>
    <input type="search" placeholder=${"Search " + (target ? target.name : "")} aria-label=${"Search " + f.name} value=${q} onInput=${(e) => setQ(e.target.value)} />
    <ul class="rel-options">${found.filter((x) => !list.includes(x.id)).map((x) => html`<li>
      <button type="button" class="link" onClick=${() => add(x.id)}>${presentable(x)} <code>${x.id}</code></button></li>`)}</ul>
    ${error && html`<p class="field-error" role="alert">${error}</p>`}
  </fieldset>`;
}

function FileInput({ label, c, f, value, record, files, onFiles, error, fileToken }) {
  const multi = (f.maxSelect || 1) > 1;
  const current = (Array.isArray(value) ? value : value ? [value] : []).filter((n) => !files.remove.includes(n));
  const [over, setOver] = useState(false);
  const input = useRef(null);
  const add = (list) => {
    const chosen = Array.from(list);
    if (!multi) onFiles({ add: chosen.slice(0, 1), remove: (Array.isArray(value) ? value : value ? [value] : []) });
    else onFiles({ ...files, add: [...files.add, ...chosen] });
  };
  const previews = useMemo(() => files.add.map((file) => ({ file, url: file.type.startsWith("image/") ? URL.createObjectURL(file) : "" })), [files.add]);
  return html`<fieldset class=${"field files" + (error ? " invalid" : "")}><legend class="label">${label}</legend>
    <ul class="file-list">
      ${current.map((n) => html`<li>
        ${IMAGE.test(n) && record ? html`<img class="thumb big" src=${fileUrl(c, record, n, "100x100", fileToken)} alt="" width="48" height="48" />` : html`<span class="file-icon"><${Icon} name="file" /></span>`}
        <a href=${record ? fileUrl(c, record, n, undefined, fileToken) : "#"} target="_blank" rel="noopener">${n}</a>
        <button type="button" class="icon-btn danger" aria-label=${"Remove " + n} onClick=${() => onFiles({ ...files, remove: [...files.remove, n] })}><${Icon} name="trash" size="16" /></button>
      </li>`)}
      ${previews.map(({ file, url }, k) => html`<li class="new">
        ${url ? html`<img class="thumb big" src=${url} alt="" width="48" height="48" />` : html`<span class="file-icon"><${Icon} name="file" /></span>`}
        <span>${file.name} <small class="muted">new, ${Math.ceil(file.size / 1024)} KB</small></span>
        <button type="button" class="icon-btn danger" aria-label=${"Remove " + file.name} onClick=${() => onFiles({ ...files, add: files.add.filter((_, j) => j !== k) })}><${Icon} name="trash" size="16" /></button>
      </li>`)}
    </ul>
    <div class=${"dropzone" + (over ? " over" : "")} onDragOver=${(e) => { e.preventDefault(); setOver(true); }} onDragLeave=${() => setOver(false)}
      onDrop=${(e) => { e.preventDefault(); setOver(false); add(e.dataTransfer.files); }}>
      <${Icon} name="file" />
      <span>Drop ${multi ? "files" : "a file"} here or</span>
      <button type="button" class="btn small" onClick=${() => input.current.click()}>Choose ${multi ? "files" : "a file"}</button>
      <input type="file" ref=${input} class="sr-only" tabindex="-1" aria-label=${"Upload to " + f.name} multiple=${multi}
        accept=${(f.mimeTypes || []).join(",") || undefined} onChange=${(e) => { add(e.target.files); e.target.value = ""; }} />
    </div>
    ${error && html`<p class="field-error" role="alert">${error}</p>`}
  </fieldset>`;
}
