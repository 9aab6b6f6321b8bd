// The collection editor: name and type, fields of every type with every option (drag or
// move buttons to reorder), access rules with live syntax checks and completion, indexes,
// search and auth options. Saving answers with the server's own words (e.g. a 409 that
// names the record a change would break) before anything is lost.
import { html, useState, useEffect, useRef, useMemo } from "./lib.js";
import { api, enc } from "./api.js";
import { Drawer, Field, Check, Notice, Icon, Confirm, Caret, toast } from "./ui.js";

export const FIELD_TYPES = [
  ["text", "Plain text"], ["editor", "Rich text"], ["number", "Number"], ["bool", "Yes / no"],
  ["email", "Email"], ["url", "URL"], ["date", "Date and time"], ["autodate", "Automatic date"],
  ["select", "Select"], ["json", "JSON"], ["relation", "Relation"], ["file", "File"], ["password", "Password"],
];
const TYPE_LABEL = Object.fromEntries(FIELD_TYPES);

const DEFAULTS = {
  text: { min: 0, max: 0, pattern: "", autogeneratePattern: "" },
  number: { min: null, max: null, onlyInt: false },
  bool: {},
  email: { exceptDomains: [], onlyDomains: [] },
  url: { exceptDomains: [], onlyDomains: [] },
  editor: { maxSize: 0, convertURLs: false },
  date: { min: "", max: "" },
  autodate: { onCreate: true, onUpdate: false },
  select: { values: [], maxSelect: 1 },
  json: { maxSize: 0 },
  relation: { collectionId: "", cascadeDelete: false, minSelect: 0, maxSelect: 1 },
  file: { maxSelect: 1, maxSize: 0, mimeTypes: [], thumbs: [], protected: false },
  password: { min: 8, max: 0 },
};

const RULES = [
  ["listRule", "List", "Who may list and search records."],
  ["viewRule", "View", "Who may read one record."],
  ["createRule", "Create", "Who may create records; @request.body holds the new values."],
  ["updateRule", "Update", "Who may change records."],
  ["deleteRule", "Delete", "Who may delete records."],
];
const AUTH_RULES = [
  ["authRule", "Sign in", "Who may sign in (checked after the password)."],
  ["manageRule", "Manage", "Who may manage accounts like a superuser (set email, verified, passwords)."],
];

let tmpId = 0;
function newField(type) {
  tmpId += 1;
  return { _key: "new" + tmpId, name: "", type, required: false, hidden: false, presentable: false, ...structuredClone(DEFAULTS[type]) };
}

function splitList(s) { return s.split(",").map((x) => x.trim()).filter(Boolean); }

/** Indexes in PocketBase's SQL form ⇄ {unique, name, columns}. */
function parseIndex(sql) {
  const m = /^\s*CREATE\s+(UNIQUE\s+)?INDEX\s+(?:IF\s+NOT\s+EXISTS\s+)?[`"']?(\w+)[`"']?\s+ON\s+[`"']?\w+[`"']?\s*\(([^)]*)\)/i.exec(sql);
  if (!m) return { raw: sql, unique: false, name: "", columns: [] };
  return { unique: !!m[1], name: m[2], columns: m[3].split(",").map((c) => c.trim().replace(/[`"']/g, "").split(/\s+/)[0]).filter(Boolean) };
}
function indexSql(ix, collection) {
  if (ix.raw) return ix.raw;
  const name = ix.name || "idx_" + collection + "_" + ix.columns.join("_");
  return "CREATE " + (ix.unique ? "UNIQUE " : "") + "INDEX " + name + " ON " + collection + " (" + ix.columns.join(", ") + ")";
}

function draftOf(c) {
  if (!c) {
    return { name: "", type: "base", fields: [newField("text")], indexes: [], listRule: null, viewRule: null,
      createRule: null, updateRule: null, deleteRule: null, search: { enabled: false, fields: [], language: "default" } };
  }
  const d = structuredClone(c);
  d.fields = d.fields.map((f) => ({ ...structuredClone(DEFAULTS[f.type] || {}), ...f, _key: f.id || f.name }));
  d.indexes = (d.indexes || []).map(parseIndex);
  d.search = d.search || { enabled: false, fields: [], language: "default" };
  return d;
}

function payloadOf(d) {
  const out = { ...d };
  // A new field left without a name (like the blank one a new collection starts with) is not sent.
  out.fields = d.fields.filter((f) => f.id || f.name.trim()).map((f) => {
    const copy = { ...f };
    delete copy._key;
    delete copy._open;
    return copy;
  });
  out.indexes = d.indexes.filter((ix) => ix.raw || ix.columns.length).map((ix) => indexSql(ix, d.name));
  delete out.created;
  delete out.updated;
  if (out.type !== "auth") {
    for (const k of ["authRule", "manageRule", "authToken", "passwordAuth", "otp", "verificationToken", "passwordResetToken", "emailChangeToken"]) delete out[k];
  }
  return out;
}

export function CollectionEditor({ collection, collections, onClose, onSaved, onDeleted }) {
  const [d, setD] = useState(() => draftOf(collection));
  const [tab, setTab] = useState("fields");
  const [err, setErr] = useState(null);
  const [busy, setBusy] = useState(false);
  const [deleting, setDeleting] = useState(false);
  const isNew = !collection;
  const update = (patch) => setD((x) => ({ ...x, ...patch }));

  async function save() {
    setBusy(true);
    setErr(null);
    try {
      const body = payloadOf(d);
      const saved = isNew
        ? await api("POST", "/api/collections", body)
        : await api("PATCH", "/api/collections/" + enc(collection.id), body);
      toast(isNew ? "Collection " + saved.name + " created." : "Collection " + saved.name + " saved.");
      onSaved(saved);
    } catch (e) {
      setErr(e);
      setBusy(false);
    }
  }

  const tabs = [["fields", "Fields"], ["rules", "API rules"], ["indexes", "Indexes"], ["search", "Search"]];
  if (d.type === "auth") tabs.push(["auth", "Auth options"]);
  const footer = html`
    ${!isNew && !collection.system && html`<button class="btn danger-ghost" type="button" onClick=${() => setDeleting(true)}>
      <${Icon} name="trash" /> Delete collection</button>`}
    <span class="spacer"></span>
    <button class="btn" type="button" onClick=${onClose}>Cancel</button>
    <button class="btn primary" type="button" onClick=${save} disabled=${busy}>${busy ? "Saving…" : isNew ? "Create" : "Save changes"}</button>`;

  return html`<${Drawer} title=${isNew ? "New collection" : "Edit " + collection.name} onClose=${onClose} footer=${footer} wide>
    ${err && html`<${ServerAnswer} error=${err} />`}
    <div class="row2">
      <${Field} label="Name" error=${err && err.field("name")} hint=${!isNew ? "Renaming keeps records; API paths change." : "Letters, digits and _."}>
        <input value=${d.name} onInput=${(e) => update({ name: e.target.value })} required spellcheck="false" autocomplete="off" />
      <//>
      <${Field} label="Type">
        <select value=${d.type} disabled=${!isNew} onChange=${(e) => update({ type: e.target.value })}>
          <option value="base">Base</option>
          <option value="auth">Auth (accounts)</option>
        </select>
      <//>
    </div>
    <div class="tabs" role="tablist" aria-label="Collection settings">
      ${tabs.map(([k, label]) => html`<button type="button" role="tab" id=${"tab-" + k} aria-selected=${tab === k}
        aria-controls="tabpanel" class=${"tab" + (tab === k ? " active" : "")} onClick=${() => setTab(k)}>${label}
        ${k === "fields" && html`<span class="pill">${d.fields.length}</span>`}</button>`)}
    </div>
    <div id="tabpanel" role="tabpanel" aria-labelledby=${"tab-" + tab}>
      ${tab === "fields" && html`<${FieldsEditor} fields=${d.fields} onChange=${(fields) => update({ fields })}
        collections=${collections} self=${collection} errors=${err && err.data && err.data.fields} auth=${d.type === "auth"} />`}
      ${tab === "rules" && html`<${RulesEditor} d=${d} update=${update} collection=${collection} collections=${collections} err=${err} />`}
      ${tab === "indexes" && html`<${IndexesEditor} d=${d} update=${update} err=${err} />`}
      ${tab === "search" && html`<${SearchEditor} d=${d} update=${update} />`}
      ${tab === "auth" && html`<${AuthOptions} d=${d} update=${update} />`}
    </div>
    ${deleting && html`<${DeleteCollection} collection=${collection} onCancel=${() => setDeleting(false)} onDeleted=${onDeleted} />`}
  <//>`;
}

/** The server's refusal in words, with each named field. */
function ServerAnswer({ error }) {
  const details = [];
  const walk = (obj, path) => {
    for (const [k, v] of Object.entries(obj || {})) {
      if (v && typeof v === "object" && v.message) details.push((path ? path + "." : "") + k + ": " + v.message);
      else if (v && typeof v === "object") walk(v, (path ? path + "." : "") + k);
    }
  };
  walk(error.data, "");
  return html`<${Notice} kind="error">
    <strong>${error.status === 409 ? "The server refused this change: " : ""}${error.message}</strong>
    ${details.length > 0 && html`<ul class="details">${details.map((t) => html`<li>${t}</li>`)}</ul>`}
    ${error.status === 409 && html`<p>Nothing was changed. Fix the records named above, or undo this part of the change.</p>`}
  <//>`;
}

function DeleteCollection({ collection, onCancel, onDeleted }) {
  const [typed, setTyped] = useState("");
  const [count, setCount] = useState(null);
  const [err, setErr] = useState(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    api("GET", "/api/collections/" + enc(collection.name) + "/records?perPage=1&fields=id")
      .then((r) => setCount(r.totalItems)).catch(() => setCount(-1));
  }, []);
  async function del() {
    setBusy(true);
    try {
      await api("DELETE", "/api/collections/" + enc(collection.id));
      toast("Collection " + collection.name + " deleted.");
      onDeleted();
    } catch (e) { setErr(e); setBusy(false); }
  }
  const files = collection.fields.filter((f) => f.type === "file").length;
  return html`<${Confirm} title=${"Delete " + collection.name + "?"} danger confirmLabel="Delete for good"
    onCancel=${onCancel} onConfirm=${del} busy=${busy} disabled=${typed !== collection.name}>
    <p>This deletes the collection <strong>${collection.name}</strong>, its
      <strong>${count === null ? "…" : count < 0 ? "unknown number of" : count.toLocaleString("en-US")} records</strong>,
      ${files > 0 ? html` every file they hold,` : ""} its rules and indexes. It cannot be undone.</p>
    ${err && html`<${Notice} kind="error">${err.message}<//>`}
    <${Field} label=${"Type " + collection.name + " to confirm"}>
      <input value=${typed} onInput=${(e) => setTyped(e.target.value)} autocomplete="off" spellcheck="false" />
    <//>
  <//>`;
}

function FieldsEditor({ fields, onChange, collections, self, errors, auth }) {
  const [adding, setAdding] = useState("text");
  const [dragging, setDragging] = useState(null);
  const set = (i, f) => onChange(fields.map((x, j) => (j === i ? f : x)));
  const move = (i, to) => {
    if (to < 0 || to >= fields.length) return;
    const copy = fields.slice();
    const [f] = copy.splice(i, 1);
    copy.splice(to, 0, f);
    onChange(copy);
  };
  return html`<div class="fields-editor">
    <p class="muted small">id, and for auth collections email, password, verified and the token key, are managed by the server. Drag
      <${Icon} name="grip" size="14" /> or use the arrows to reorder.</p>
    <ol class="field-list">
      ${fields.map((f, i) => html`<li key=${f._key} class=${"field-card" + (dragging === i ? " dragging" : "")}
        draggable=${!f.system ? "true" : "false"}
        onDragStart=${(e) => { setDragging(i); e.dataTransfer.effectAllowed = "move"; e.dataTransfer.setData("text/plain", String(i)); }}
        onDragOver=${(e) => e.preventDefault()}
        onDrop=${(e) => { e.preventDefault(); const from = Number(e.dataTransfer.getData("text/plain")); setDragging(null); move(from, i); }}
        onDragEnd=${() => setDragging(null)}>
        <${FieldRow} f=${f} i=${i} count=${fields.length} onChange=${(nf) => set(i, nf)} move=${move}
          onRemove=${() => onChange(fields.filter((_, j) => j !== i))} collections=${collections} self=${self}
          error=${errors && errors[i]} />
      </li>`)}
    </ol>
    <div class="add-field">
      <label class="label" for="new-field-type">New field type</label>
        <select id="new-field-type" class="auto" value=${adding} onChange=${(e) => setAdding(e.target.value)}>
          ${FIELD_TYPES.filter(([t]) => auth || t !== "password").map(([t, l]) => html`<option value=${t}>${l}</option>`)}
        </select>
      <button class="btn" type="button" onClick=${() => onChange([...fields, { ...newField(adding), _open: true }])}>
        <${Icon} name="plus" /> Add field</button>
    </div>
  </div>`;
}

function errorText(e) {
  if (!e) return "";
  if (e.message) return e.message;
  return Object.entries(e).map(([k, v]) => k + ": " + (v && v.message ? v.message : "")).join("; ");
}

function FieldRow({ f, i, count, onChange, move, onRemove, collections, self, error }) {
  const [open, setOpen] = useState(!!f._open);
  const set = (patch) => onChange({ ...f, ...patch });
  const num = (k) => (e) => set({ [k]: e.target.value === "" ? (k === "min" || k === "max" ? null : 0) : Number(e.target.value) });
  const label = f.name || "Unnamed " + TYPE_LABEL[f.type].toLowerCase() + " field";
  return html`<div class="field-row">
    <span class="grip" aria-hidden="true"><${Icon} name="grip" /></span>
    <span class=${"type-badge t-" + f.type}>${TYPE_LABEL[f.type] || f.type}</span>
    <input class="field-name" aria-label=${"Name of field " + (i + 1)} value=${f.name} disabled=${f.system}
      placeholder="field name" spellcheck="false" autocomplete="off" onInput=${(e) => set({ name: e.target.value })} />
    <${Check} label="Required" checked=${f.required} onChange=${(v) => set({ required: v })} disabled=${f.system && f.type !== "text"} />
    <span class="row-actions">
      <button class="icon-btn" type="button" aria-label=${"Move " + label + " up"} disabled=${i === 0} onClick=${() => move(i, i - 1)}><${Icon} name="up" /></button>
      <button class="icon-btn" type="button" aria-label=${"Move " + label + " down"} disabled=${i === count - 1} onClick=${() => move(i, i + 1)}><${Icon} name="down" /></button>
      <button class="icon-btn" type="button" aria-expanded=${open} aria-label=${"Options of " + label} onClick=${() => setOpen(!open)}><${Icon} name="edit" /></button>
      ${!f.system && html`<button class="icon-btn danger" type="button" aria-label=${"Remove " + label} onClick=${onRemove}><${Icon} name="trash" /></button>`}
    </span>
  </div>
  ${error && html`<p class="field-error" role="alert">${errorText(error)}</p>`}
  ${open && html`<div class="field-options">
    <div class="opts-grid">
      ${f.type === "text" && html`
        <${Field} label="Min length"><input type="number" min="0" value=${f.min} onInput=${num("min")} /><//>
        <${Field} label="Max length" hint="0: no limit"><input type="number" min="0" value=${f.max} onInput=${num("max")} /><//>
        <${Field} label="Pattern (regex)"><input value=${f.pattern} onInput=${(e) => set({ pattern: e.target.value })} spellcheck="false" /><//>
        <${Field} label="Autogenerate pattern" hint="e.g. [a-z0-9]{15}"><input value=${f.autogeneratePattern} onInput=${(e) => set({ autogeneratePattern: e.target.value })} spellcheck="false" /><//>`}
      ${f.type === "password" && html`
        <${Field} label="Min length"><input type="number" min="0" value=${f.min} onInput=${num("min")} /><//>
        <${Field} label="Max length" hint="0: no limit"><input type="number" min="0" value=${f.max} onInput=${num("max")} /><//>`}
      ${f.type === "number" && html`
        <${Field} label="Min"><input type="number" value=${f.min ?? ""} onInput=${num("min")} /><//>
        <${Field} label="Max"><input type="number" value=${f.max ?? ""} onInput=${num("max")} /><//>
        <${Check} label="Whole numbers only" checked=${f.onlyInt} onChange=${(v) => set({ onlyInt: v })} />`}
      ${(f.type === "email" || f.type === "url") && html`
        <${Field} label="Only domains" hint="Comma-separated"><input value=${(f.onlyDomains || []).join(", ")} onChange=${(e) => set({ onlyDomains: splitList(e.target.value) })} /><//>
        <${Field} label="Except domains" hint="Comma-separated"><input value=${(f.exceptDomains || []).join(", ")} onChange=${(e) => set({ exceptDomains: splitList(e.target.value) })} /><//>`}
      ${f.type === "editor" && html`
        <${Field} label="Max size (bytes)" hint="0: default (5 MiB)"><input type="number" min="0" value=${f.maxSize} onInput=${num("maxSize")} /><//>
        <${Check} label="Convert URLs to relative" checked=${f.convertURLs} onChange=${(v) => set({ convertURLs: v })} />`}
      ${f.type === "date" && html`
        <${Field} label="Earliest" hint="YYYY-MM-DD HH:MM:SS.sssZ"><input value=${f.min} onInput=${(e) => set({ min: e.target.value })} /><//>
        <${Field} label="Latest"><input value=${f.max} onInput=${(e) => set({ max: e.target.value })} /><//>`}
      ${f.type === "autodate" && html`
        <${Check} label="Set on create" checked=${f.onCreate} onChange=${(v) => set({ onCreate: v })} />
        <${Check} label="Set on update" checked=${f.onUpdate} onChange=${(v) => set({ onUpdate: v })} />`}
      ${f.type === "select" && html`
        <${Field} label="Choices" hint="Comma-separated" class="span2"><input value=${(f.values || []).join(", ")} onChange=${(e) => set({ values: splitList(e.target.value) })} /><//>
        <${Field} label="Max selected" hint="1: a single value"><input type="number" min="1" value=${f.maxSelect} onInput=${num("maxSelect")} /><//>`}
      ${f.type === "json" && html`
        <${Field} label="Max size (bytes)" hint="0: default"><input type="number" min="0" value=${f.maxSize} onInput=${num("maxSize")} /><//>`}
      ${f.type === "relation" && html`
        <${Field} label="Related collection">
          <select value=${f.collectionId} onChange=${(e) => set({ collectionId: e.target.value })}>
            <option value="">Choose…</option>
            ${collections.filter((c) => !self || c.id !== self.id || true).map((c) => html`<option value=${c.id}>${c.name}</option>`)}
          </select>
        <//>
        <${Field} label="Min selected"><input type="number" min="0" value=${f.minSelect} onInput=${num("minSelect")} /><//>
        <${Field} label="Max selected" hint="1: a single record"><input type="number" min="0" value=${f.maxSelect} onInput=${num("maxSelect")} /><//>
        <${Check} label="Delete this record when the related one is deleted" checked=${f.cascadeDelete} onChange=${(v) => set({ cascadeDelete: v })} />`}
      ${f.type === "file" && html`
        <${Field} label="Max files" hint="1: a single file"><input type="number" min="1" value=${f.maxSelect} onInput=${num("maxSelect")} /><//>
        <${Field} label="Max size (bytes)" hint="0: default (5 MiB)"><input type="number" min="0" value=${f.maxSize} onInput=${num("maxSize")} /><//>
        <${Field} label="Allowed types" hint="e.g. image/png, image/jpeg"><input value=${(f.mimeTypes || []).join(", ")} onChange=${(e) => set({ mimeTypes: splitList(e.target.value) })} /><//>
        <${Field} label="Thumb sizes" hint="e.g. 100x100, 0x300"><input value=${(f.thumbs || []).join(", ")} onChange=${(e) => set({ thumbs: splitList(e.target.value) })} /><//>
        <${Check} label="Protected (downloads need a file token)" checked=${f.protected} onChange=${(v) => set({ protected: v })} />`}
      <${Check} label="Hidden from the API (superusers still see it)" checked=${f.hidden} onChange=${(v) => set({ hidden: v })} />
      <${Check} label="Presentable (shown when related records are listed)" checked=${f.presentable} onChange=${(v) => set({ presentable: v })} />
    </div>
  </div>`}`;
}

/** Names a rule may use here: fields, relation paths one level deep, @request.*, macros. */
function completionsFor(d, collections) {
  const out = ["@request.auth.id", "@request.auth.collectionName", "@request.auth.verified", "@request.method",
    "@request.query.", "@request.headers.", "@request.body.", "@now", "@todayStart", "@todayEnd", "@collection.", "id", "created", "updated"];
  const byId = Object.fromEntries(collections.map((c) => [c.id, c]));
  for (const f of d.fields) {
    if (!f.name) continue;
    out.push(f.name, "@request.body." + f.name);
    if (f.type === "relation" && byId[f.collectionId]) {
      for (const g of byId[f.collectionId].fields) out.push(f.name + "." + g.name);
    }
  }
  for (const c of collections) out.push("@collection." + c.name + ".");
  const users = collections.find((c) => c.type === "auth" && !c.name.startsWith("_"));
  if (users) for (const g of users.fields) out.push("@request.auth." + g.name);
  return [...new Set(out)];
}

function RulesEditor({ d, update, collection, collections, err }) {
  const names = useMemo(() => completionsFor(d, collections), [d.fields, collections]);
  const slots = d.type === "auth" ? [...RULES, ...AUTH_RULES] : RULES;
  return html`<div class="rules">
    <p class="muted small">Locked: only superusers. Empty: everyone. Otherwise a filter, e.g. <code>@request.auth.id != "" && owner = @request.auth.id</code>.</p>
    ${slots.map(([key, label, hint]) => html`<${RuleSlot} key=${key} name=${key} label=${label} hint=${hint}
      value=${d[key]} onChange=${(v) => update({ [key]: v })} names=${names} collection=${collection}
      serverError=${err && err.field(key)} />`)}
  </div>`;
}

function wordAt(text, pos) {
  const before = text.slice(0, pos);
  const m = /[@\w.]*$/.exec(before);
  return m ? m[0] : "";
}

/** One rule: locked (null) or an expression, checked by the server as you type. */
function RuleSlot({ name, label, hint, value, onChange, names, collection, serverError }) {
  const locked = value === null || value === undefined;
  const [check, setCheck] = useState({ state: "idle", message: "" });
  const [sugg, setSugg] = useState({ list: [], active: 0 });
  const ref = useRef(null);
  const id = "rule-" + name;
  useEffect(() => {
    if (locked || !value || !value.trim() || !collection) { setCheck({ state: "idle", message: "" }); return undefined; }
    const ctl = new AbortController();
    const t = setTimeout(async () => {
      setCheck({ state: "checking", message: "" });
      try {
        // A rule is a filter over the same records: the list endpoint checks its syntax.
        await api("GET", "/api/collections/" + enc(collection.name) + "/records?perPage=1&skipTotal=1&fields=id&filter=" + enc(value), undefined, { signal: ctl.signal });
        setCheck({ state: "ok", message: "" });
      } catch (e) {
        if (e.name === "AbortError") return;
        setCheck({ state: e.status === 400 ? "error" : "idle", message: e.status === 400 ? (e.field("filter") || e.message) : "" });
      }
    }, 350);
    return () => { clearTimeout(t); ctl.abort(); };
  }, [value, locked]);

  function suggest(el) {
    const w = wordAt(el.value, el.selectionStart);
    if (!w) { setSugg({ list: [], active: 0 }); return; }
    const list = names.filter((n) => n.startsWith(w) && n !== w).slice(0, 8);
    setSugg({ list, active: 0 });
  }
  function accept(n) {
    const el = ref.current;
    const pos = el.selectionStart;
    const w = wordAt(el.value, pos);
    const next = el.value.slice(0, pos - w.length) + n + el.value.slice(pos);
    onChange(next);
    setSugg({ list: [], active: 0 });
    requestAnimationFrame(() => { el.focus(); const p = pos - w.length + n.length; el.setSelectionRange(p, p); });
  }
  function onKeyDown(e) {
    if (!sugg.list.length) return;
    if (e.key === "ArrowDown") { e.preventDefault(); setSugg({ ...sugg, active: (sugg.active + 1) % sugg.list.length }); }
    else if (e.key === "ArrowUp") { e.preventDefault(); setSugg({ ...sugg, active: (sugg.active + sugg.list.length - 1) % sugg.list.length }); }
    else if (e.key === "Enter" || e.key === "Tab") { e.preventDefault(); accept(sugg.list[sugg.active]); }
    else if (e.key === "Escape") { e.stopPropagation(); setSugg({ list: [], active: 0 }); }
  }
  const error = serverError || (check.state === "error" ? check.message : "");
  return html`<div class=${"rule" + (error ? " invalid" : "")}>
    <div class="rule-head">
      <label for=${id} class="label">${label} rule</label>
      <${Check} label="Superusers only" checked=${locked} onChange=${(v) => onChange(v ? null : "")} />
    </div>
    ${locked ? html`<p class="locked">Only superusers may do this.</p>` : html`<div class="rule-input">
      <textarea id=${id} ref=${ref} rows="2" spellcheck="false" value=${value} placeholder="Empty: everyone"
        aria-controls=${sugg.list.length ? id + "-list" : undefined} aria-autocomplete="list"
        aria-activedescendant=${sugg.list.length ? id + "-opt-" + sugg.active : undefined}
        aria-invalid=${!!error} aria-describedby=${id + "-msg"}
        onInput=${(e) => { onChange(e.target.value); suggest(e.target); }} onKeyDown=${onKeyDown}
        onBlur=${() => setTimeout(() => setSugg({ list: [], active: 0 }), 150)}></textarea>
      ${sugg.list.length > 0 && html`<ul class="suggestions" id=${id + "-list"} role="listbox" aria-label="Suggestions">
        ${sugg.list.map((n, k) => html`<li id=${id + "-opt-" + k} role="option" aria-selected=${k === sugg.active}
          class=${k === sugg.active ? "active" : ""} onMouseDown=${(e) => { e.preventDefault(); accept(n); }}>${n}</li>`)}
      </ul>`}
    </div>`}
    ${error && !locked && html`<${Caret} text=${value} message=${error} />`}
    <p class=${error ? "field-error" : "hint"} id=${id + "-msg"} role=${error ? "alert" : undefined}>
      ${error || (check.state === "checking" ? "Checking…" : check.state === "ok" ? "✓ Valid rule." : !collection && !locked ? "Checked when the collection exists." : hint)}
    </p>
  </div>`;
}

function IndexesEditor({ d, update, err }) {
  const cols = [...new Set(["id", ...d.fields.map((f) => f.name).filter(Boolean)])];
  const set = (i, ix) => update({ indexes: d.indexes.map((x, j) => (j === i ? ix : x)) });
  const errors = err && err.data && err.data.indexes;
  return html`<div class="indexes">
    <p class="muted small">Indexes speed up filters and sorts on their columns; unique ones refuse duplicates.</p>
    ${d.indexes.length === 0 && html`<p class="muted">No indexes.</p>`}
    ${d.indexes.map((ix, i) => html`<fieldset class="index-card">
      <legend>Index ${i + 1}${ix.name ? ": " + ix.name : ""}</legend>
      ${ix.raw ? html`<code>${ix.raw}</code>` : html`
        <${Check} label="Unique" checked=${ix.unique} onChange=${(v) => set(i, { ...ix, unique: v })} />
        <div class="chips" role="group" aria-label="Columns, in order">
          ${cols.map((c) => html`<label class=${"chip" + (ix.columns.includes(c) ? " on" : "")}>
            <input type="checkbox" checked=${ix.columns.includes(c)}
              onChange=${(e) => set(i, { ...ix, columns: e.target.checked ? [...ix.columns, c] : ix.columns.filter((x) => x !== c) })} />
            ${c}${ix.columns.includes(c) && ix.columns.length > 1 ? html` <small>${ix.columns.indexOf(c) + 1}</small>` : ""}</label>`)}
        </div>
        ${ix.columns.length ? html`<code class="sql">${indexSql(ix, d.name || "collection")}</code>` : html`<p class="hint">Choose its columns, in order.</p>`}`}
      ${errors && errors[i] && html`<p class="field-error" role="alert">${errorText(errors[i])}</p>`}
      <button class="btn small danger-ghost" type="button" onClick=${() => update({ indexes: d.indexes.filter((_, j) => j !== i) })}>Remove index</button>
    </fieldset>`)}
    <button class="btn" type="button" onClick=${() => update({ indexes: [...d.indexes, { unique: false, name: "", columns: [] }] })}><${Icon} name="plus" /> Add index</button>
  </div>`;
}

function SearchEditor({ d, update }) {
  const s = d.search;
  const set = (patch) => update({ search: { ...s, ...patch } });
  const textual = d.fields.filter((f) => ["text", "editor", "email", "url", "select", "json"].includes(f.type) && f.name);
  const has = (n) => s.fields.find((x) => x.name === n);
  return html`<div class="search-settings">
    <${Check} label="Full-text search on this collection" checked=${s.enabled} onChange=${(v) => set({ enabled: v })} />
    <${Field} label="Language">
      <select value=${s.language} onChange=${(e) => set({ language: e.target.value })}>
        <option value="default">Any (no stemming)</option>
        <option value="english">English (stemming)</option>
      </select>
    <//>
    <fieldset><legend>Indexed fields and their weight</legend>
      ${textual.length === 0 && html`<p class="muted">No text fields.</p>`}
      ${textual.map((f) => html`<div class="search-field">
        <${Check} label=${f.name} checked=${!!has(f.name)} onChange=${(v) => set({ fields: v ? [...s.fields, { name: f.name, boost: 1 }] : s.fields.filter((x) => x.name !== f.name) })} />
        ${has(f.name) && html`<label class="inline"><span class="label">Boost</span><input type="number" step="0.1" min="0" value=${has(f.name).boost}
          onInput=${(e) => set({ fields: s.fields.map((x) => (x.name === f.name ? { ...x, boost: Number(e.target.value) } : x)) })} /></label>`}
      </div>`)}
    </fieldset>
  </div>`;
}

function AuthOptions({ d, update }) {
  const tok = (k, label) => html`<${Field} label=${label + " (seconds)"}>
    <input type="number" min="1" placeholder="Server default" value=${(d[k] && d[k].duration) || ""} onInput=${(e) => update({ [k]: e.target.value === "" ? undefined : { ...(d[k] || {}), duration: Number(e.target.value) } })} />
  <//>`;
  const otp = d.otp || { enabled: false, duration: 180, length: 8 };
  const pa = d.passwordAuth || { enabled: true, identityFields: ["email"] };
  const uniqueish = ["email", ...d.fields.filter((f) => f.type === "text" && f.name).map((f) => f.name)];
  return html`<div class="auth-options">
    <fieldset><legend>Password sign-in</legend>
      <${Check} label="Enabled" checked=${pa.enabled} onChange=${(v) => update({ passwordAuth: { ...pa, enabled: v } })} />
      <div class="chips" role="group" aria-label="Identity fields">
        ${uniqueish.map((n) => html`<label class=${"chip" + (pa.identityFields.includes(n) ? " on" : "")}>
          <input type="checkbox" checked=${pa.identityFields.includes(n)} onChange=${(e) => update({ passwordAuth: { ...pa,
            identityFields: e.target.checked ? [...pa.identityFields, n] : pa.identityFields.filter((x) => x !== n) } })} />${n}</label>`)}
      </div>
      <p class="hint">Identity fields other than email need a unique index.</p>
    </fieldset>
    <fieldset><legend>One-time codes by email</legend>
      <${Check} label="Enabled" checked=${otp.enabled} onChange=${(v) => update({ otp: { ...otp, enabled: v } })} />
      <div class="row2">
        <${Field} label="Valid for (seconds)"><input type="number" min="1" value=${otp.duration} onInput=${(e) => update({ otp: { ...otp, duration: Number(e.target.value) } })} /><//>
        <${Field} label="Code length"><input type="number" min="4" value=${otp.length} onInput=${(e) => update({ otp: { ...otp, length: Number(e.target.value) } })} /><//>
      </div>
    </fieldset>
    <fieldset><legend>Token durations</legend>
      <div class="row2">
        ${tok("authToken", "Sign-in token")}
        ${tok("verificationToken", "Verification token")}
        ${tok("passwordResetToken", "Password reset token")}
        ${tok("emailChangeToken", "Email change token")}
      </div>
    </fieldset>
  </div>`;
}
