// API preview: ready-to-copy requests for one collection in curl and the JS SDK, generated
// from the live OpenAPI document (so they show exactly what this server accepts).
import { html, useState, useEffect } from "./lib.js";
import { api } from "./api.js";
import { Drawer, Notice } from "./ui.js";

function resolve(spec, s) {
  let seen = 0;
  while (s && s.$ref && seen < 10) {
    s = s.$ref.replace(/^#\//, "").split("/").reduce((o, k) => (o ? o[k] : undefined), spec);
    seen += 1;
  }
  return s || {};
}

function example(spec, schema, depth) {
  const s = resolve(spec, schema);
  if (depth > 3) return null;
  if (s.example !== undefined) return s.example;
  if (s.enum) return s.enum[0];
  const type = Array.isArray(s.type) ? s.type.find((t) => t !== "null") : s.type;
  if (s.allOf) return Object.assign({}, ...s.allOf.map((x) => example(spec, x, depth + 1)));
  if (s.oneOf || s.anyOf) return example(spec, (s.oneOf || s.anyOf)[0], depth + 1);
  switch (type) {
    case "object": {
      const out = {};
      for (const [k, v] of Object.entries(s.properties || {})) {
        const r = resolve(spec, v);
        if (r.readOnly) continue;
        out[k] = example(spec, v, depth + 1);
      }
      return out;
    }
    case "array": return [example(spec, s.items || {}, depth + 1)].filter((x) => x !== null);
    case "integer": case "number": return 0;
    case "boolean": return false;
    case "string": return s.format === "date-time" ? "2025-01-01 00:00:00.000Z" : s.format === "email" ? "someone@example.com" : "";
    default: return null;
  }
}

function bodyOf(spec, op) {
  const content = op && op.requestBody && op.requestBody.content;
  const json = content && content["application/json"];
  return json ? example(spec, json.schema, 0) : null;
}

export function ApiPreview({ c, onClose }) {
  const [spec, setSpec] = useState(null);
  const [err, setErr] = useState(null);
  const [lang, setLang] = useState("curl");
  useEffect(() => { api("GET", "/api/openapi.json").then(setSpec).catch(setErr); }, []);
  const base = location.origin;
  const list = spec && (spec.paths["/api/collections/" + c.name + "/records"] || {});
  const one = spec && (spec.paths["/api/collections/" + c.name + "/records/{id}"] || {});
  const ops = spec ? [
    ["List", list.get, "GET", "/api/collections/" + c.name + "/records?page=1&perPage=30", `await pb.collection("${c.name}").getList(1, 30, { filter: "", sort: "-created" });`],
    ["View", one.get, "GET", "/api/collections/" + c.name + "/records/RECORD_ID", `await pb.collection("${c.name}").getOne("RECORD_ID");`],
    ["Create", list.post, "POST", "/api/collections/" + c.name + "/records", null],
    ["Update", one.patch, "PATCH", "/api/collections/" + c.name + "/records/RECORD_ID", null],
    ["Delete", one.delete, "DELETE", "/api/collections/" + c.name + "/records/RECORD_ID", `await pb.collection("${c.name}").delete("RECORD_ID");`],
  ].filter(([, op]) => op) : [];
  const snippet = ([, op, method, path, js]) => {
    const body = bodyOf(spec, op);
    if (lang === "curl") {
      return "curl -X " + method + " '" + base + path + "' \\\n  -H 'Authorization: YOUR_TOKEN'" +
        (body ? " \\\n  -H 'Content-Type: application/json' \\\n  -d '" + JSON.stringify(body, null, 2).replace(/'/g, "'\\''") + "'" : "");
    }
    const head = `import PocketBase from "pocketbase";\nconst pb = new PocketBase("${base}");\n`;
    if (js) return head + js;
    const b = JSON.stringify(body || {}, null, 2);
    return head + (method === "POST" ? `await pb.collection("${c.name}").create(${b});` : `await pb.collection("${c.name}").update("RECORD_ID", ${b});`);
  };
  return html`<${Drawer} title=${"API preview: " + c.name} onClose=${onClose} wide>
    ${err && html`<${Notice} kind="error">${err.message}<//>`}
    <div class="tabs" role="tablist" aria-label="Language">
      ${[["curl", "curl"], ["js", "JavaScript SDK"]].map(([k, l]) => html`<button type="button" role="tab" aria-selected=${lang === k}
        class=${"tab" + (lang === k ? " active" : "")} onClick=${() => setLang(k)}>${l}</button>`)}
    </div>
    ${!spec && !err && html`<p class="muted">Loading the OpenAPI document…</p>`}
    ${ops.map((o) => html`<section class="snippet">
      <h3>${o[0]} <span class="muted small">${o[1].summary || ""}</span></h3>
      <pre tabindex="0"><code>${snippet(o)}</code></pre>
      <button class="btn small" type="button" onClick=${() => navigator.clipboard && navigator.clipboard.writeText(snippet(o))}>Copy</button>
    </section>`)}
  <//>`;
}
