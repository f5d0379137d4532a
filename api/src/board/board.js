// draas operations console. The page itself holds no data: everything comes from the v1 API
// with the bearer token, which this tab keeps in sessionStorage. A token given in the URL
// fragment (`#token=…`, or `#/instances/<id>?token=…`; fragments are never sent to the
// server) is taken and removed from the address bar.
// Every value is inserted with textContent: nothing from the API is ever parsed as HTML.
//
// Views, chosen by the fragment: `#/` (instances, operations by status, failures by code,
// queued work, queues), `#/instances/<id>` (facts, actions, components, a query's results,
// log tail, operations, history) and `#/operations/<id>`.
"use strict";

const TOKEN_KEY = "draas.token";
const REFRESH_MS = 2000;
const WINDOW = 200;
const STATUSES = ["queued", "running", "succeeded", "failed", "superseded", "cancelled"];
const FINISHED = ["succeeded", "failed", "superseded", "cancelled"];
const VIEWS = ["home", "instance", "operation"];

const $ = (id) => document.getElementById(id);
let timer = null;
let generation = 0;
let chosenQuery = {};
let armedDelete = null;

class Unauthorized extends Error {}

class ApiError extends Error {
  constructor(status, problem) {
    super(problem && problem.message ? problem.message : "answered " + status);
    this.status = status;
    this.code = problem && problem.code ? problem.code : "http_" + status;
  }
}

function takeTokenFromFragment() {
  const hash = location.hash.slice(1);
  const at = hash.indexOf("?");
  const route = hash.startsWith("/") ? (at >= 0 ? hash.slice(0, at) : hash) : "";
  const query = hash.startsWith("/") ? (at >= 0 ? hash.slice(at + 1) : "") : hash;
  const token = new URLSearchParams(query).get("token");
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    history.replaceState(null, "", location.pathname + location.search + (route ? "#" + route : ""));
  }
}

function route() {
  const hash = location.hash.slice(1).split("?")[0];
  const parts = hash.split("/").filter((p) => p !== "").map(decodeURIComponent);
  if (parts[0] === "instances" && parts[1]) return { view: "instance", id: parts[1] };
  if (parts[0] === "operations" && parts[1]) return { view: "operation", id: parts[1] };
  return { view: "home" };
}

function setState(state, message) {
  document.body.dataset.state = state;
  $("status").textContent = message;
  const login = state === "login";
  $("login").hidden = !login;
  $("signout").hidden = login;
  $("nav").hidden = login;
  const view = login ? "" : route().view;
  document.body.dataset.view = view;
  for (const v of VIEWS) $(v).hidden = v !== view;
}

function showLogin(message) {
  clearTimeout(timer);
  sessionStorage.removeItem(TOKEN_KEY);
  setState("login", message);
  $("token").focus();
}

function flash(message, bad) {
  const box = $("flash");
  box.textContent = message;
  box.className = bad ? "bad" : "";
  box.hidden = !message;
}

async function request(method, path, accept) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = { Authorization: "Bearer " + token, Accept: accept || "application/json" };
  const res = await fetch(path, { method, headers, cache: "no-store" });
  if (res.status === 401) throw new Unauthorized();
  if (!res.ok) {
    let problem = null;
    try { problem = await res.json(); } catch (_) { /* not JSON */ }
    throw new ApiError(res.status, problem);
  }
  return res;
}

async function api(path) {
  return (await request("GET", path)).json();
}

async function apiText(path) {
  return (await request("GET", path, "text/plain")).text();
}

// An answer, or the error it failed with (a view shows what it can).
async function settle(promise) {
  try { return { value: await promise }; } catch (e) {
    if (e instanceof Unauthorized) throw e;
    return { error: e };
  }
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function link(href, text, className) {
  const a = el("a", text, className);
  a.href = href;
  return a;
}

function opLink(id) {
  return link("#/operations/" + encodeURIComponent(id), id, "mono");
}

function instanceLink(id, text) {
  return link("#/instances/" + encodeURIComponent(id), text || id);
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
  const columns = Math.max(1, $(table).tHead.rows[0].cells.length);
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

function age(iso) {
  if (!iso) return "";
  const s = Math.max(0, Math.floor((Date.now() - new Date(iso).getTime()) / 1000));
  if (s < 120) return s + "s";
  if (s < 7200) return Math.floor(s / 60) + "m";
  if (s < 172800) return Math.floor(s / 3600) + "h";
  return Math.floor(s / 86400) + "d";
}

function badge(status) {
  return el("span", status, "badge status-" + status);
}

function errorBlock(error) {
  const box = document.createElement("div");
  if (!error) return box;
  box.append(el("code", error.code, "code"), el("span", " " + error.message));
  if (error.pointer) box.append(el("code", " at " + error.pointer));
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

function facts(dl, pairs) {
  const items = [];
  for (const [name, value] of pairs) {
    if (value === undefined || value === null || value === "") continue;
    items.push(el("dt", name));
    const dd = document.createElement("dd");
    if (value instanceof Node) dd.append(value); else dd.textContent = String(value);
    items.push(dd);
  }
  dl.replaceChildren(...items);
}

// --- actions -----------------------------------------------------------------------------

function button(label, action, id, className) {
  const b = el("button", label, className);
  b.type = "button";
  b.dataset.action = action;
  b.dataset.id = id;
  return b;
}

function instanceButtons(inst) {
  const box = el("div", null, "actions");
  const stopped = inst.desiredState === "stopped";
  const start = button("start", "start", inst.id);
  start.disabled = inst.desiredState === "running" && inst.status === "running";
  const stop = button("stop", "stop", inst.id);
  stop.disabled = stopped && inst.status === "stopped";
  const restart = button("restart", "restart", inst.id);
  restart.disabled = stopped;
  const armed = armedDelete && armedDelete.id === inst.id && armedDelete.until > Date.now();
  const del = button(armed ? "confirm delete" : "delete", "delete", inst.id, armed ? "danger armed" : "danger");
  del.disabled = inst.desiredState === "deleted";
  box.append(start, stop, restart, del);
  return box;
}

async function act(action, id) {
  try {
    let res;
    if (action === "delete") {
      if (!armedDelete || armedDelete.id !== id || armedDelete.until < Date.now()) {
        armedDelete = { id, until: Date.now() + 5000 };
        flash("click “confirm delete” within 5 s to delete this instance");
        return refresh();
      }
      armedDelete = null;
      res = await request("DELETE", "/api/v1/instances/" + encodeURIComponent(id));
    } else if (action === "cancel") {
      res = await request("POST", "/api/v1/operations/" + encodeURIComponent(id) + "/cancel");
    } else {
      res = await request("POST", "/api/v1/instances/" + encodeURIComponent(id) + "/" + action);
    }
    const op = await res.json();
    flash(action + ": operation " + op.id + " " + op.status);
  } catch (e) {
    if (e instanceof Unauthorized) return showLogin("the token was not accepted");
    flash(action + " refused: " + (e.code ? e.code + ": " : "") + e.message, true);
  }
  refresh();
}

document.addEventListener("click", (event) => {
  const target = event.target instanceof Element ? event.target.closest("button[data-action]") : null;
  if (!target || target.disabled) return;
  event.preventDefault();
  target.disabled = true;
  act(target.dataset.action, target.dataset.id);
});

// --- home --------------------------------------------------------------------------------

function componentsCell(inst) {
  const s = inst.componentsSummary || { total: 0, running: 0, failing: 0 };
  if (s.total === 0) return el("span", "—", "muted");
  const span = el("span", s.running + "/" + s.total + " running", s.failing > 0 ? "bad" : "ok");
  if (s.failing > 0) span.textContent += " · " + s.failing + " failing";
  return span;
}

function renderInstances(items, more) {
  const rows = items.map((inst) => {
    const status = badge(inst.status);
    if (inst.statusMessage) status.title = inst.statusMessage;
    const tr = row([
      instanceLink(inst.id, inst.name), inst.platform, inst.desiredState, status,
      el("code", inst.endpoint || ""), componentsCell(inst), age(inst.createdAt), instanceButtons(inst),
    ]);
    tr.dataset.instance = inst.id;
    tr.dataset.status = inst.status;
    return tr;
  });
  fill("instances", rows, "no instances yet");
  $("instances-count").textContent = more ? "(the first " + items.length + ")" : "(" + items.length + ")";
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

function renderFailures(ops) {
  const groups = new Map();
  for (const op of ops) {
    if (op.status !== "failed") continue;
    const code = op.error ? op.error.code : "unknown";
    if (!groups.has(code)) groups.set(code, { code, ops: [], kinds: new Set() });
    const g = groups.get(code);
    g.ops.push(op); // newest first, as the API lists them
    g.kinds.add(op.kind);
  }
  const rows = [...groups.values()].sort((a, b) => b.ops.length - a.ops.length).map((g) => {
    const latest = g.ops[0];
    const links = el("span", null, "links");
    for (const op of g.ops.slice(0, 5)) links.append(opLink(op.id), " ");
    if (g.ops.length > 5) links.append(el("span", "… and " + (g.ops.length - 5) + " more", "muted"));
    const tr = row([
      el("code", g.code, "code"), el("b", g.ops.length), [...g.kinds].join(", "),
      when(latest.finishedAt || latest.createdAt), errorBlock(latest.error), links,
    ]);
    tr.dataset.code = g.code;
    tr.dataset.count = String(g.ops.length);
    return tr;
  });
  fill("failures", rows, "no failed operations");
}

function operationRow(op, withInstance) {
  const cells = [opLink(op.id), op.kind];
  if (withInstance) cells.push(op.instanceId ? instanceLink(op.instanceId) : "");
  else cells.unshift(when(op.createdAt));
  cells.push(badge(op.status), attempts(op), errorBlock(op.error));
  cells.push(op.status === "queued" ? button("cancel", "cancel", op.id) : "");
  const tr = row(cells);
  tr.dataset.operation = op.id;
  tr.dataset.status = op.status;
  return tr;
}

function renderPending(ops) {
  const pending = ops.filter((op) => !FINISHED.includes(op.status));
  fill("pending", pending.map((op) => operationRow(op, true)), "nothing queued or retrying");
}

async function showHome(mine) {
  const [instances, queues, page] = await Promise.all([
    api("/api/v1/instances?limit=200"),
    api("/api/v1/queues"),
    api("/api/v1/operations?limit=" + WINDOW),
  ]);
  if (mine !== generation) return;
  renderInstances(instances.items, instances.nextCursor);
  renderCounts(page.items, page.nextCursor);
  renderFailures(page.items);
  renderPending(page.items);
  renderQueues(queues);
}

// --- one instance ------------------------------------------------------------------------

function renderComponents(items) {
  const rows = items.map((c) => {
    const tr = row([c.kind, el("code", c.id), badge(c.status), c.error || ""]);
    tr.dataset.component = c.kind + "/" + c.id;
    if (c.status === "Error" || c.error) tr.className = "bad";
    return tr;
  });
  fill("components", rows, "no components");
}

function renderQueries(ids, id) {
  const select = $("query");
  const chosen = chosenQuery[id] && ids.includes(chosenQuery[id]) ? chosenQuery[id] : ids[0];
  const current = [...select.options].map((o) => o.value);
  if (current.join("\n") !== ids.join("\n")) {
    select.replaceChildren(...ids.map((q) => { const o = el("option", q); o.value = q; return o; }));
  }
  if (chosen !== undefined) select.value = chosen;
  select.disabled = ids.length === 0;
  return chosen;
}

function cellText(value) {
  if (value === null || value === undefined) return "";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

function renderResults(rows, note) {
  const columns = [];
  for (const r of rows) for (const k of Object.keys(r)) if (!columns.includes(k)) columns.push(k);
  $("results").tHead.rows[0].replaceChildren(...columns.map((c) => el("th", c)));
  fill("results", rows.map((r) => row(columns.map((c) => cellText(r[c])))), note || "no rows");
  $("results-note").textContent = note ? "" : rows.length + " rows · refreshed every " + REFRESH_MS / 1000 + " s";
}

function renderHistory(items) {
  fill("history", items.map((h) => row([when(h.at), h.from, h.to, h.source, h.reason || ""])), "no transitions yet");
}

function explain(result, what) {
  return result.error ? what + ": " + (result.error.code ? result.error.code + ": " : "") + result.error.message : "";
}

async function showInstance(id, mine) {
  const base = "/api/v1/instances/" + encodeURIComponent(id);
  const inst = await api(base);
  const running = inst.status === "running" || inst.status === "degraded";
  const [components, config, logs, hist, ops] = await Promise.all([
    running ? settle(api(base + "/components")) : Promise.resolve({ value: { items: inst.components || [] } }),
    settle(api(base + "/config")),
    settle(apiText(base + "/logs?tail=100")),
    settle(api(base + "/history")),
    settle(api("/api/v1/operations?instance=" + encodeURIComponent(id) + "&limit=20")),
  ]);
  const queries = config.value && Array.isArray(config.value.queries) ? config.value.queries.map((q) => q.id) : [];
  if (mine !== generation) return;
  const query = renderQueries(queries, id);
  let results = null;
  if (query !== undefined && running) {
    results = await settle(api(base + "/queries/" + encodeURIComponent(query) + "/results"));
    if (mine !== generation) return;
  }

  $("i-name").textContent = inst.name;
  $("i-id").textContent = inst.id;
  $("i-description").textContent = inst.description || "";
  const facts_ = inst.runtimeFacts || {};
  const probe = inst.lastProbe
    ? (inst.lastProbe.ok ? "ok" : "failed: " + (inst.lastProbe.message || "")) + " · " + Math.round(inst.lastProbe.latencyMs) + " ms · " + when(inst.lastProbe.at)
    : "";
  facts($("i-facts"), [
    ["status", badge(inst.status)], ["desired", inst.desiredState], ["message", inst.statusMessage],
    ["platform", inst.platform], ["node", inst.node], ["endpoint", inst.endpoint],
    ["pid", facts_.pid], ["container", facts_.containerName || facts_.containerId],
    ["pod", facts_.pod], ["deployment", facts_.deployment], ["components", componentsCell(inst)],
    ["last probe", probe], ["generation", inst.generation], ["created", when(inst.createdAt) + " (" + age(inst.createdAt) + " ago)"],
  ]);
  document.body.dataset.instanceStatus = inst.status;
  $("i-actions").replaceChildren(instanceButtons(inst));
  $("i-conditions").replaceChildren(...(inst.conditions || []).map((c) => {
    const li = el("li", null, "bad");
    li.append(el("code", c.code, "code"), el("span", " " + c.message + (c.pointer ? " (at " + c.pointer + ")" : "")));
    return li;
  }));

  if (components.value) renderComponents(components.value.items);
  else fill("components", [], explain(components, "components unavailable"));
  if (query === undefined) renderResults([], explain(config, "no configuration") || "this instance has no queries");
  else if (!running) renderResults([], "the instance is " + inst.status + ": no live results");
  else if (results.value) renderResults(results.value.rows);
  else renderResults([], explain(results, "results unavailable"));
  // The newest lines stay in view, unless the reader scrolled up to older ones.
  const box = $("logs");
  const atBottom = box.dataset.instance !== id || box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
  box.textContent = logs.value !== undefined ? logs.value : explain(logs, "logs unavailable");
  box.dataset.instance = id;
  if (atBottom) box.scrollTop = box.scrollHeight;
  if (hist.value) renderHistory(hist.value.items); else fill("history", [], explain(hist, "history unavailable"));
  if (ops.value) fill("i-operations", ops.value.items.map((op) => operationRow(op, false)), "no operations");
  else fill("i-operations", [], explain(ops, "operations unavailable"));
}

// --- one operation -----------------------------------------------------------------------

async function showOperation(id, mine) {
  const op = await api("/api/v1/operations/" + encodeURIComponent(id));
  if (mine !== generation) return;
  $("o-id").textContent = op.id;
  facts($("o-facts"), [
    ["kind", op.kind], ["status", badge(op.status)],
    ["instance", op.instanceId ? instanceLink(op.instanceId) : null],
    ["attempt", attempts(op)], ["reason", op.reason], ["generation", op.targetGeneration],
    ["created", when(op.createdAt)], ["finished", when(op.finishedAt)], ["correlation", op.correlationId],
  ]);
  document.body.dataset.operationStatus = op.status;
  $("o-error").replaceChildren(errorBlock(op.error));
  $("o-actions").replaceChildren(...(op.status === "queued" ? [button("cancel", "cancel", op.id)] : []));
}

// --- refresh loop ------------------------------------------------------------------------

async function refresh() {
  clearTimeout(timer);
  const mine = ++generation;
  const r = route();
  try {
    if (r.view === "instance") await showInstance(r.id, mine);
    else if (r.view === "operation") await showOperation(r.id, mine);
    else await showHome(mine);
    if (mine !== generation) return;
    setState("ok", "updated " + new Date().toLocaleTimeString() + " · refreshes every " + REFRESH_MS / 1000 + " s");
  } catch (e) {
    if (e instanceof Unauthorized) return showLogin("the token was not accepted");
    if (mine !== generation) return;
    setState("error", "cannot load this view: " + (e.code ? e.code + ": " : "") + e.message + " (retrying)");
  }
  if (mine === generation) timer = setTimeout(refresh, REFRESH_MS);
}

// Nothing of the previous instance or operation stays on screen while the next one loads.
function clearViews() {
  for (const id of ["i-name", "i-id", "i-description", "logs", "o-id", "results-note"]) $(id).textContent = "";
  for (const id of ["i-facts", "i-actions", "i-conditions", "o-facts", "o-error", "o-actions", "query"]) $(id).replaceChildren();
  for (const id of ["components", "results", "i-operations", "history"]) $(id).tBodies[0].replaceChildren();
  delete document.body.dataset.instanceStatus;
  delete document.body.dataset.operationStatus;
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
  $("query").addEventListener("change", () => {
    const r = route();
    if (r.view === "instance") chosenQuery[r.id] = $("query").value;
    refresh();
  });
  window.addEventListener("hashchange", () => {
    takeTokenFromFragment();
    flash("");
    if (!sessionStorage.getItem(TOKEN_KEY)) return showLogin("enter an API token");
    clearViews();
    setState(document.body.dataset.state === "login" ? "starting" : document.body.dataset.state, "loading…");
    refresh();
  });
  if (sessionStorage.getItem(TOKEN_KEY)) refresh();
  else showLogin("enter an API token");
}

start();
