// Small shared pieces: labelled fields, notices, drawers, confirmation dialogs, icons.
import { html, useEffect, useRef, useMemo, cloneElement, toChildArray } from "./lib.js";

let nextId = 0;
/** A unique id for label/description wiring. */
export function uid(prefix) {
  nextId += 1;
  return (prefix || "f") + nextId;
}

/** A labelled control: the label names the control by id, the hint or error describes it. */
export function Field({ label, hint, error, children, class: cls }) {
  const id = useMemo(() => uid("f"), []);
  const kids = toChildArray(children);
  const note = error || hint ? id + "-note" : undefined;
  const control = kids.length === 1 && typeof kids[0] === "object"
    ? cloneElement(kids[0], { id: kids[0].props.id || id, "aria-describedby": note, "aria-invalid": error ? "true" : undefined })
    : kids;
  return html`<div class=${"field" + (error ? " invalid" : "") + (cls ? " " + cls : "")}>
    <label class="label" for=${kids.length === 1 && typeof kids[0] === "object" ? kids[0].props.id || id : undefined}>${label}</label>
    ${control}
    ${hint && !error && html`<p class="hint" id=${note}>${hint}</p>`}
    ${error && html`<p class="field-error" role="alert" id=${note}>${error}</p>`}
  </div>`;
}

/** A checkbox with its label on the right. */
export function Check({ label, checked, onChange, hint, disabled }) {
  return html`<label class="check">
    <input type="checkbox" checked=${!!checked} disabled=${disabled}
      onChange=${(e) => onChange(e.target.checked)} />
    <span>${label}${hint && html`<small class="hint">${hint}</small>`}</span>
  </label>`;
}

export function Notice({ kind, children }) {
  return html`<div class=${"notice " + (kind || "info")} role=${kind === "error" ? "alert" : "status"}>${children}</div>`;
}

const ICONS = {
  plus: "M12 5v14M5 12h14",
  x: "M6 6l12 12M18 6L6 18",
  edit: "M4 20h4L19 9l-4-4L4 16zM13.5 6.5l4 4",
  trash: "M4 7h16M10 11v6M14 11v6M6 7l1 13h10l1-13M9 7V4h6v3",
  logout: "M15 4h4v16h-4M10 8l-4 4 4 4M6 12h11",
  code: "M8 8l-4 4 4 4M16 8l4 4-4 4",
  grip: "M9 6h.01M15 6h.01M9 12h.01M15 12h.01M9 18h.01M15 18h.01",
  up: "M12 19V5M6 11l6-6 6 6",
  down: "M12 5v14M6 13l6 6 6-6",
  columns: "M4 5h16v14H4zM10 5v14M16 5v14",
  refresh: "M20 11a8 8 0 1 0-2.3 5.7M20 5v6h-6",
  search: "M11 18a7 7 0 1 0 0-14 7 7 0 0 0 0 14zM20 20l-4-4",
  db: "M4 6c0-1.7 3.6-3 8-3s8 1.3 8 3-3.6 3-8 3-8-1.3-8-3zM4 6v12c0 1.7 3.6 3 8 3s8-1.3 8-3V6M4 12c0 1.7 3.6 3 8 3s8-1.3 8-3",
  user: "M12 12a4 4 0 1 0 0-8 4 4 0 0 0 0 8zM4 21c0-4 3.6-6 8-6s8 2 8 6",
  file: "M6 3h8l4 4v14H6zM14 3v4h4",
  chevl: "M15 6l-6 6 6 6",
  chevr: "M9 6l6 6-6 6",
  sort: "M8 9l4-4 4 4M8 15l4 4 4-4",
  key: "M14 10a4 4 0 1 0-3.5 4L9 16H7v2H5v2H3v-3l6.2-6.2",
};

export function Icon({ name, size }) {
  return html`<svg class="icon" width=${size || 18} height=${size || 18} viewBox="0 0 24 24" aria-hidden="true"
    fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">
    <path d=${ICONS[name] || ""} /></svg>`;
}

/** Keeps Tab and Shift+Tab inside `root` (a modal). */
function trapTab(e, root) {
  if (e.key !== "Tab" || !root) return;
  const items = Array.from(root.querySelectorAll("a[href], button:not([disabled]), input:not([disabled]):not([tabindex='-1']), select:not([disabled]), textarea:not([disabled]), [contenteditable=true], [tabindex='0']"))
    .filter((el) => el.offsetParent !== null);
  if (!items.length) return;
  const first = items[0];
  const last = items[items.length - 1];
  if (e.shiftKey && (document.activeElement === first || !root.contains(document.activeElement))) { e.preventDefault(); last.focus(); }
  else if (!e.shiftKey && (document.activeElement === last || !root.contains(document.activeElement))) { e.preventDefault(); first.focus(); }
}

/** A side panel over the page; Escape closes it, focus moves into it, stays there, and goes back. */
export function Drawer({ title, onClose, children, footer, wide }) {
  const ref = useRef(null);
  useEffect(() => {
    const before = document.activeElement;
    const first = ref.current && ref.current.querySelector("input, select, textarea, button:not(.drawer-close)");
    (first || ref.current).focus();
    const onKey = (e) => {
      // A dialog opened from inside the drawer handles its own keys.
      if (ref.current && ref.current.querySelector("[role=alertdialog]")) return;
      if (e.key === "Escape") onClose();
      else trapTab(e, ref.current);
    };
    document.addEventListener("keydown", onKey);
    return () => {
      document.removeEventListener("keydown", onKey);
      if (before && before.focus) before.focus();
    };
  }, []);
  return html`<div class="overlay" onClick=${(e) => e.target === e.currentTarget && onClose()}>
    <section class=${"drawer" + (wide ? " wide" : "")} role="dialog" aria-modal="true" aria-label=${title} ref=${ref} tabindex="-1">
      <header class="drawer-head">
        <h2>${title}</h2>
        <button class="icon-btn drawer-close" type="button" onClick=${onClose} aria-label="Close"><${Icon} name="x" /></button>
      </header>
      <div class="drawer-body">${children}</div>
      ${footer && html`<footer class="drawer-foot">${footer}</footer>`}
    </section>
  </div>`;
}

/** A modal question; `onConfirm` runs when the person agrees. */
export function Confirm({ title, children, confirmLabel, danger, onConfirm, onCancel, busy, disabled }) {
  const ref = useRef(null);
  useEffect(() => {
    const before = document.activeElement;
    const input = ref.current && ref.current.querySelector("input");
    const btn = ref.current && ref.current.querySelector(".cancel");
    (input || btn).focus();
    const onKey = (e) => {
      if (e.key === "Escape") { e.stopImmediatePropagation(); onCancel(); } else trapTab(e, ref.current);
    };
    document.addEventListener("keydown", onKey, true);
    return () => {
      document.removeEventListener("keydown", onKey, true);
      if (before && before.focus) before.focus();
    };
  }, []);
  return html`<div class="overlay center">
    <div class="dialog" role="alertdialog" aria-modal="true" aria-label=${title} ref=${ref}>
      <h2>${title}</h2>
      <div class="dialog-body">${children}</div>
      <div class="actions">
        <button class="btn cancel" type="button" onClick=${onCancel}>Cancel</button>
        <button class=${"btn " + (danger ? "danger" : "primary")} type="button" disabled=${busy || disabled}
          onClick=${onConfirm}>${busy ? "Working…" : confirmLabel || "Confirm"}</button>
      </div>
    </div>
  </div>`;
}

/** A short message at the bottom of the screen. */
let toastSink = null;
export function setToastSink(fn) { toastSink = fn; }
export function toast(text, kind) { if (toastSink) toastSink({ text, kind: kind || "success", at: Date.now() }); }

export function fmtNumber(n) {
  return typeof n === "number" && n >= 0 ? n.toLocaleString("en-US") : "…";
}

/** Where in `text` the server's message points ("at position N"), drawn with a caret. */
export function Caret({ text, message }) {
  const m = /position (\d+)/.exec(message || "");
  if (!m || !text) return null;
  const pos = Math.min(Number(m[1]), text.length);
  return html`<pre class="caret" aria-hidden="true"><span>${text.slice(0, pos)}</span><mark>${text.slice(pos, pos + 1) || " "}</mark>${text.slice(pos + 1)}</pre>`;
}
