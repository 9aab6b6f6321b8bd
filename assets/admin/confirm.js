// The pages account emails link to, for end users (not admins):
// #/auth/confirm-verification/{token}, #/auth/confirm-password-reset/{token} and
// #/auth/confirm-email-change/{token} (PocketBase's link shape). The token names its
// collection; the page calls that collection's confirm endpoint.
import { html, useState, useEffect } from "./lib.js";
import { api, enc } from "./api.js";
import { Field, Notice } from "./ui.js";

function collectionOf(jwt) {
  try {
    const payload = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload)).collectionId || "";
  } catch (_) {
    return "";
  }
}

const PAGES = {
  "confirm-verification": { title: "Verify your email", done: "Your email address is verified. You can close this page." },
  "confirm-password-reset": { title: "Choose a new password", done: "Your password has been changed. Sign in with the new one." },
  "confirm-email-change": { title: "Confirm your new email address", done: "Your email address has been changed. Sign in with the new one." },
};

export function AuthPage({ action, token, appName }) {
  const page = PAGES[action];
  const collection = collectionOf(token);
  const [state, setState] = useState({ busy: false, done: false, error: null });
  const [values, setValues] = useState({ password: "", passwordConfirm: "" });
  useEffect(() => { document.title = (page ? page.title : "Account") + " · " + appName; }, [action, appName]);

  async function send(body) {
    setState({ busy: true, done: false, error: null });
    try {
      await api("POST", "/api/collections/" + enc(collection) + "/" + action, { token, ...body }, { anonymous: true });
      setState({ busy: false, done: true, error: null });
    } catch (e) {
      setState({ busy: false, done: false, error: e });
    }
  }

  useEffect(() => {
    if (action === "confirm-verification" && collection) send({});
  }, [action, token]);

  if (!page) {
    return html`<${Card} title="Page not found" appName=${appName}><p>This link is not one this server knows.</p><//>`;
  }
  if (!collection) {
    return html`<${Card} title=${page.title} appName=${appName}>
      <${Notice} kind="error">This link is incomplete or damaged. Copy the whole link from the email.<//>
    <//>`;
  }
  const error = state.error;
  const set = (k) => (e) => setValues({ ...values, [k]: e.target.value });
  const submit = (e) => {
    e.preventDefault();
    send(action === "confirm-password-reset"
      ? { password: values.password, passwordConfirm: values.passwordConfirm }
      : { password: values.password });
  };
  return html`<${Card} title=${page.title} appName=${appName}>
    ${state.done && html`<${Notice} kind="success">${page.done}<//>`}
    ${error && html`<${Notice} kind="error">${error.message}
      ${error.field("token") ? " " + error.field("token") : ""}<//>`}
    ${action === "confirm-verification" && !state.done && !error && html`<p aria-live="polite">Verifying…</p>`}
    ${action !== "confirm-verification" && !state.done && html`
      <form onSubmit=${submit} novalidate>
        ${action === "confirm-password-reset" ? html`
          <p>Enter your new password twice.</p>
          <${Field} label="New password" error=${error && error.field("password")}>
            <input type="password" autocomplete="new-password" minlength="8" required
              value=${values.password} onInput=${set("password")} />
          <//>
          <${Field} label="New password again" error=${error && error.field("passwordConfirm")}>
            <input type="password" autocomplete="new-password" minlength="8" required
              value=${values.passwordConfirm} onInput=${set("passwordConfirm")} />
          <//>` : html`
          <p>Enter your password to confirm the change.</p>
          <${Field} label="Your password" error=${error && error.field("password")}>
            <input type="password" autocomplete="current-password" required
              value=${values.password} onInput=${set("password")} />
          <//>`}
        <button class="btn primary wide" type="submit" disabled=${state.busy}>
          ${state.busy ? "Saving…" : "Confirm"}
        </button>
      </form>`}
  <//>`;
}

/** The centred card of the sign-in, setup and account pages. */
export function Card({ title, appName, children, wide }) {
  return html`<main class=${"center-page" + (wide ? " wide" : "")} id="main">
    <div class="card">
      <div class="brand"><span class="logo" aria-hidden="true"></span><span>${appName}</span></div>
      <h1>${title}</h1>
      ${children}
    </div>
  </main>`;
}
