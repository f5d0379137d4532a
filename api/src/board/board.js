// draas jobs dashboard. The page itself holds no data: everything comes from the v1 API with
// the bearer token, which this tab keeps in sessionStorage. A token given as `#token=…` in
// the URL fragment (never sent to the server) is taken and removed from the address bar.
// Every value is inserted with textContent: nothing from the API is ever parsed as HTML.
"use strict";

const TOKEN_KEY = "draas.token";
const REFRESH_MS = 3000;
const WINDOW = 200;
const STATUSES = ["queued", "running", "succeeded", "failed", "superseded", "cancelled"];

const $ = (id) => document.getElementById(id);
let timer = null;

function takeTokenFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    history.replaceState(null, "", location.pathname + location.search);
  }
}

function setState(state, message) {
  document.body.dataset.state = state;
  $("status").textContent = message;
  $("login").hidden = state !== "login";
  $("board").hidden = state === "login";
  $("signout").hidden = state === "login";
}

function showLogin(message) {
  clearTimeout(timer);
  sessionStorage.removeItem(TOKEN_KEY);
  setState("login", message);
  $("token").focus();
}

class Unauthorized extends Error {}

async function api(path) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const res = await fetch(path, { headers: { Authorization: "Bearer " + token }, cache: "no-store" });
  if (res.status === 401) throw new Unauthorized();
  if (!res.ok) throw new Error(path + " answered " + res.status);
  return res.json();
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) tr.append(c instanceof Node ? wrap(c) : el("td", c));
  return tr;
}

function wrap(node) {
  const td = document.createElement("td");
  td.append(node);
  return td;
}

function fill(table, rows, empty) {
  const body = $(table).tBodies[0];
  const columns = $(table).tHead.rows[0].cells.length;
  if (rows.length === 0) {
    const td = el("td", empty, "empty");
    td.colSpan = columns;
    const tr = document.createElement("tr");
    tr.append(td);
    rows = [tr];
  }
  body.replaceChildren(...rows);
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

function errorBlock(error) {
  const box = document.createElement("div");
  if (!error) return box;
  box.append(el("code", error.code, "code"), el("span", " " + error.message));
  if (error.detail) {
    const details = document.createElement("details");
    details.append(el("summary", "detail"), el("pre", error.detail));
    box.append(details);
  }
  return box;
}

function attempts(op) {
  return op.attempt + "/" + op.maxAttempts;
}

function renderQueues(queues) {
  const rows = queues.map((q) => {
    const tr = row([el("code", q.name), q.waiting, q.active, q.scheduled, q.done, q.failed]);
    tr.title = q.key;
    if (q.failed > 0) tr.className = "bad";
    return tr;
  });
  fill("queues", rows, "no queues yet");
}

function renderCounts(ops, more) {
  const counts = Object.fromEntries(STATUSES.map((s) => [s, 0]));
  for (const op of ops) counts[op.status] = (counts[op.status] || 0) + 1;
  const items = Object.entries(counts).map(([status, n]) => {
    const li = el("li", null, "status-" + status);
    li.append(el("b", n), el("span", " " + status));
    return li;
  });
  $("counts").replaceChildren(...items);
  $("window").textContent = more ? "(the newest " + ops.length + ")" : "(all " + ops.length + ")";
}

function renderRetries(ops) {
  const retrying = ops.filter((op) => !["succeeded", "failed", "superseded", "cancelled"].includes(op.status)
    && (op.attempt > 1 || op.error));
  const rows = retrying.map((op) => row([
    el("code", op.id), op.kind, el("code", op.instanceId || ""), op.status, attempts(op), errorBlock(op.error),
  ]));
  fill("retries", rows, "nothing is being retried");
}

function renderFailures(ops) {
  const failed = ops.filter((op) => op.status === "failed").slice(0, 50);
  const rows = failed.map((op) => {
    const tr = row([
      when(op.finishedAt), el("code", op.id), op.kind, el("code", op.instanceId || ""), attempts(op), errorBlock(op.error),
    ]);
    tr.dataset.operation = op.id;
    return tr;
  });
  fill("failures", rows, "no failed operations");
}

async function refresh() {
  clearTimeout(timer);
  try {
    const [queues, page] = await Promise.all([
      api("/api/v1/queues"),
      api("/api/v1/operations?limit=" + WINDOW),
    ]);
    renderQueues(queues);
    renderCounts(page.items, page.nextCursor !== null);
    renderRetries(page.items);
    renderFailures(page.items);
    setState("ok", "updated " + new Date().toLocaleTimeString() + " · refreshes every " + REFRESH_MS / 1000 + " s");
  } catch (e) {
    if (e instanceof Unauthorized) return showLogin("the token was not accepted");
    setState("error", "cannot reach the API: " + e.message + " (retrying)");
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

function start() {
  takeTokenFromFragment();
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value);
    $("token").value = "";
    refresh();
  });
  $("signout").addEventListener("click", () => showLogin("token forgotten"));
  if (sessionStorage.getItem(TOKEN_KEY)) refresh();
  else showLogin("enter an API token");
}

start();
