// The page's core: the API, the login, the tabs, the polling, and the
// helpers the views (views.js) share. Every action is one protocol
// command sent to POST /api/command: the broker checks it exactly as it
// checks a connection's.
"use strict";

const POLL_MS = 1000;
const state = {
  me: null,          // GET /api/whoami
  view: "overview",
  range: "recent",
  overview: null,
  selected: null,    // the queue shown in detail
  schema: null,      // the schema version shown ({subject, version})
  polls: 0,
};

// ---- formatting ----

function fmtInt(n) { return n == null ? "–" : Number(n).toLocaleString("en-US"); }
function fmtRate(r) { return r == null ? "–" : r >= 100 ? Math.round(r).toLocaleString("en-US") : r.toFixed(1); }
function fmtBytes(n) {
  if (n == null) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? Math.round(n) : n.toFixed(1)) + " " + units[i];
}
function fmtAge(ms) {
  if (ms == null) return "–";
  const s = ms / 1000;
  if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + " s";
  if (s < 3600) return (s / 60).toFixed(1) + " min";
  return (s / 3600).toFixed(1) + " h";
}
function fmtUptime(s) {
  const h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60);
  return h > 0 ? h + "h " + m + "m" : m > 0 ? m + "m " + (s % 60) + "s" : s + "s";
}
function fmtAxis(v) {
  return v >= 1e6 ? (v / 1e6).toFixed(1) + "M" : v >= 1e4 ? (v / 1e3).toFixed(0) + "k" : String(Math.round(v * 10) / 10);
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v == null) continue;
    if (k === "onclick" || k === "onsubmit" || k === "onchange") e[k] = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c != null) e.append(c instanceof Node ? c : String(c));
  return e;
}
const $ = id => document.getElementById(id);

// ---- the protocol's words ----

// One word of a command line: as it is when the tokenizer reads it back
// unchanged, else quoted with \" and \\ escaped.
function q(word) {
  const s = String(word);
  if (/^[A-Za-z0-9_.:\/*#@+\-]+$/.test(s)) return s;
  return '"' + s.replace(/\\/g, "\\\\").replace(/"/g, '\\"') + '"';
}

// ---- the API ----

class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error : "HTTP " + status);
    this.status = status;
    this.code = body && body.code;
  }
}

async function api(path, body) {
  const init = body === undefined
    ? { cache: "no-store" }
    : { method: "POST", headers: { "Content-Type": "application/json", "X-Sluice": "1" }, body: JSON.stringify(body) };
  const r = await fetch(path, init);
  let json = null;
  try { json = await r.json(); } catch (_) { /* not JSON */ }
  if (r.status === 401 && path !== "/api/login") {
    showLogin();
  }
  if (!r.ok) throw new ApiError(r.status, json);
  return json;
}

// Runs one protocol command; resolves to the result, rejects with an
// ApiError carrying the ERR code. `body` is the literal (PUB's body).
function cmd(line, body) {
  const req = { command: line };
  if (body != null) req.body = body;
  return api("/api/command", req);
}

// Runs a command for a button or a form, and tells the user what came of
// it: the reply in `out` (an element) if given, and a toast. Resolves to
// the result, or null when it failed.
async function act(line, body, out) {
  try {
    const r = await cmd(line, body);
    if (out) { out.className = "result"; out.textContent = r.reply; }
    toast(r.reply, false);
    refresh();
    return r;
  } catch (e) {
    const text = (e.code ? e.code + " " : "") + e.message;
    if (out) { out.className = "result err"; out.textContent = "ERR " + text; out.dataset.code = e.code || ""; }
    toast(e.message, true, e.code);
    return null;
  }
}

let toastTimer = null;
function toast(text, isErr, code) {
  const t = $("toast");
  t.className = "toast" + (isErr ? " err" : "");
  t.dataset.code = code || "";
  t.replaceChildren(...(code ? [el("code", {}, code), " "] : []), text);
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, isErr ? 8000 : 3000);
}

// A destructive button asks once more: the first click arms it for a few
// seconds ("Really purge?"), the second runs `run`.
function confirmButton(label, really, run, attrs) {
  const b = el("button", Object.assign({ type: "button", class: "danger" }, attrs || {}), label);
  let timer = null;
  b.onclick = () => {
    if (!b.classList.contains("armed")) {
      b.classList.add("armed");
      b.textContent = really;
      timer = setTimeout(() => { b.classList.remove("armed"); b.textContent = label; }, 4000);
      return;
    }
    clearTimeout(timer);
    b.classList.remove("armed");
    b.textContent = label;
    run();
  };
  return b;
}

// ---- login ----

function showLogin() {
  state.me = null;
  $("app").hidden = true;
  $("login").hidden = false;
  $("who").hidden = true;
  $("logout").hidden = true;
  $("status").textContent = "log in to continue";
  $("login-user").focus();
}

function showApp() {
  $("login").hidden = true;
  $("app").hidden = false;
  const me = state.me;
  const who = $("who");
  who.hidden = false;
  who.replaceChildren(me.open
    ? el("span", {}, "open broker (no users)")
    : el("span", {}, "user ", el("b", { id: "who-name" }, me.user), me.admin ? el("span", { class: "tag" }, "admin") : null));
  $("logout").hidden = me.open;
  for (const e of document.querySelectorAll("[data-admin]")) e.hidden = !me.admin;
  if (!me.admin && state.view === "users") switchTo("overview");
}

async function whoami() {
  state.me = await api("/api/whoami");
  if (!state.me.open && !state.me.user) {
    showLogin();
    return false;
  }
  showApp();
  return true;
}

$("login-form").onsubmit = async ev => {
  ev.preventDefault();
  const err = $("login-error");
  err.hidden = true;
  try {
    await api("/api/login", { user: $("login-user").value, password: $("login-password").value });
    $("login-password").value = "";
    if (await whoami()) refresh();
  } catch (e) {
    err.textContent = e.message;
    err.hidden = false;
  }
};

$("logout").onclick = async () => {
  try { await api("/api/logout", {}); } catch (_) { /* gone already */ }
  showLogin();
};

// ---- tabs and polling ----

function switchTo(view) {
  state.view = view;
  // The tab is in the address (#queues), for a reload or a bookmark.
  if (location.hash !== "#" + view) history.replaceState(null, "", "#" + view);
  document.body.dataset.view = view;
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.tab === view);
  for (const s of document.querySelectorAll("main > section")) s.hidden = s.dataset.view !== view;
  refresh();
}
for (const b of document.querySelectorAll("#tabs button")) b.onclick = () => switchTo(b.dataset.tab);
for (const b of document.querySelectorAll("#range button")) {
  b.onclick = () => {
    state.range = b.dataset.range;
    for (const o of document.querySelectorAll("#range button")) o.classList.toggle("active", o === b);
    refresh();
  };
}

let refreshing = null;
// Reads what the current view shows, and renders it.
function refresh() {
  if (!state.me) return Promise.resolve();
  if (refreshing) return refreshing;
  refreshing = (async () => {
    const status = $("status");
    try {
      state.overview = await api("/api/overview");
      await VIEWS[state.view]();
      state.polls++;
      document.body.dataset.polls = state.polls;
      status.className = "status";
      status.textContent = "live · up " + fmtUptime(state.overview.broker.uptime_seconds) +
        " · updated " + new Date().toLocaleTimeString();
    } catch (e) {
      if (e.status === 401) return;
      status.className = "status down";
      status.textContent = "broker unreachable (" + e.message + "), retrying…";
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

async function loop() {
  await refresh();
  setTimeout(loop, POLL_MS);
}

window.addEventListener("load", async () => {
  const asked = location.hash.slice(1);
  if (Object.prototype.hasOwnProperty.call(VIEWS, asked)) state.view = asked;
  try {
    if (await whoami()) switchTo(state.view);
  } catch (e) {
    $("status").className = "status down";
    $("status").textContent = "broker unreachable (" + e.message + ")";
  }
  setTimeout(loop, POLL_MS);
});
