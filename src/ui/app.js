// trainbox's page: jobs, live progress, loss curve, job control, downloads.
//
// Everything shown is built as DOM nodes; text from the server (names, ids,
// errors, whatever a trainer wrote) only ever becomes text nodes, so there
// is no escaping to remember. No inline script or style: the page's
// Content-Security-Policy forbids both.
"use strict";

let selected = null;
const statusOf = {};
const $ = (id) => document.getElementById(id);
const api = (path) => "/api/training/" + path;
const FINAL = ["completed", "failed", "cancelled", "interrupted"];

/// An element: `h("a", {href, class: "button"}, "text", child, ...)`.
/// Attributes named on* become listeners; strings become text nodes.
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/// An SVG element, likewise.
function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  for (const child of children.flat()) if (child != null) el.append(child instanceof Node ? child : String(child));
  return el;
}

function showError(message) { $("error").textContent = message || ""; }

async function getJSON(url) {
  const r = await fetch(url, { headers: { "Accept": "application/json" } });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.detail || r.statusText);
  return body;
}

async function post(url, body) {
  const init = { method: "POST" };
  if (body !== undefined) {
    init.headers = { "Content-Type": "application/json" };
    init.body = JSON.stringify(body);
  }
  const r = await fetch(url, init);
  const reply = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(reply.detail || r.statusText);
  return reply;
}

function bar(progress) {
  const inner = h("div");
  inner.style.width = `${progress && progress.percent != null ? progress.percent : 0}%`;
  return h("div", { class: "bar" }, inner);
}

const dash = (value) => (value == null ? "–" : value);

async function act(action) {
  try {
    await post(api(encodeURIComponent(selected) + "/" + action));
    showError("");
  } catch (e) { showError(e.message); }
  refreshJobs(); refreshDetail();
}

// The start form, built from GET /api/training/recipes: a typed input per
// param, with the recipe's bounds, choices and pattern as the browser's
// own validation, so mistakes show at the field before anything is sent.
let recipes = [];

function paramInput(param) {
  const name = "param-" + param.name;
  const label = (input) => h("label", { class: "param" }, param.name, " ", input);
  if (param.type === "bool") {
    return label(h("input", { type: "checkbox", name, checked: param.default === true }));
  }
  if (param.enum) {
    return label(h("select", { name, required: param.default == null },
      param.default == null ? h("option", { value: "" }, "choose…") : null,
      param.enum.map((v) => h("option", { value: v, selected: v === param.default }, v))));
  }
  const numeric = param.type === "int" || param.type === "float";
  return label(h("input", {
    name,
    type: numeric ? "number" : "text",
    step: param.type === "int" ? 1 : numeric ? "any" : null,
    min: param.min, max: param.max,
    pattern: param.pattern,
    value: param.default,
    required: param.default == null,
    size: numeric ? 8 : 16,
  }));
}

function showRecipeParams() {
  const form = $("start");
  const recipe = recipes.find((r) => r.name === form.recipe.value);
  $("params").replaceChildren(...(recipe ? recipe.params.map(paramInput) : []));
}

async function loadRecipes() {
  try {
    ({ recipes } = await getJSON(api("recipes")));
  } catch (e) { showError(e.message); return; }
  const form = $("start");
  form.recipe.replaceChildren(...recipes.map((r) => h("option", { value: r.name }, r.name)));
  form.hidden = recipes.length === 0;
  $("no-recipes").hidden = recipes.length > 0;
  showRecipeParams();
}

async function startJob(event) {
  event.preventDefault();
  const form = event.target;
  const recipe = recipes.find((r) => r.name === form.recipe.value);
  if (!recipe || !form.reportValidity()) return;
  const params = {};
  for (const param of recipe.params) {
    const input = form.elements["param-" + param.name];
    if (param.type === "bool") params[param.name] = input.checked;
    else if (input.value === "") continue;
    else if (param.type === "int") params[param.name] = parseInt(input.value, 10);
    else if (param.type === "float") params[param.name] = parseFloat(input.value);
    else params[param.name] = input.value;
  }
  try {
    const job = await post(api("jobs"), { recipe: recipe.name, name: form.name.value || null, params });
    selected = job.id;
    showError("");
  } catch (e) { showError(e.message); }
  refreshJobs(); refreshDetail();
}

/// A job's status; runs trainbox did not start are "external" (their
/// status is only guessed from their files, so no alarming colours).
function statusBadge(job) {
  if (job.managed) return h("span", { class: "status " + job.status }, job.status);
  const active = job.status === "running" ? " · writing" : "";
  return h("span", { class: "status external", title: "not started by trainbox" }, "external" + active);
}

function jobRow(job) {
  const p = job.progress || {};
  return h("div", {
    class: "job" + (job.id === selected ? " selected" : ""),
    onclick: () => { selected = job.id; refreshJobs(); refreshDetail(); },
  },
    h("b", {}, job.name || job.id), " ", statusBadge(job),
    h("div", { class: "muted" },
      `${job.id} · step ${dash(p.step)}/${dash(p.total_steps)} · loss ${p.loss != null ? p.loss.toFixed(4) : "–"}`),
    bar(p));
}

async function refreshJobs() {
  try {
    const { jobs } = await getJSON(api("jobs"));
    showError("");
    $("summary").textContent = `${jobs.length} job(s)`;
    for (const j of jobs) statusOf[j.id] = j.status;
    $("jobs").replaceChildren(...(jobs.length ? jobs.map(jobRow) : ["No jobs yet."]));
  } catch (e) { showError(e.message); }
}

// The chart: one scalar of the history (loss, eval_loss, learning_rate or
// any metric the trainer logged) by step, with axes, ticks, the value
// under the pointer, and a log scale.
let chartScalar = "loss", chartLog = false;

const scalarOf = (p, name) =>
  name === "loss" ? p.loss : name === "learning_rate" ? p.learning_rate : (p.metrics || {})[name];

function scalarsIn(history) {
  const names = new Set();
  for (const p of history) {
    if (p.loss != null) names.add("loss");
    if (p.learning_rate != null) names.add("learning_rate");
    for (const [k, v] of Object.entries(p.metrics || {})) if (typeof v === "number") names.add(k);
  }
  return [...names];
}

/// About five round tick values covering [lo, hi].
function ticks(lo, hi) {
  const span = hi - lo || Math.abs(hi) || 1;
  const raw = span / 5, mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(v);
  return out;
}

const fmt = (v) => (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(2) : +v.toPrecision(4));

function chart(history) {
  const names = scalarsIn(history);
  if (!names.length) return h("p", { class: "muted" }, "No history yet.");
  if (!names.includes(chartScalar)) chartScalar = names[0];
  const points = history
    .map((p) => [p.step, scalarOf(p, chartScalar)])
    .filter(([x, y]) => x != null && y != null && (!chartLog || y > 0));
  const pick = h("select", { "aria-label": "scalar", onchange: (e) => { chartScalar = e.target.value; refreshDetail(); } },
    names.map((n) => h("option", { value: n, selected: n === chartScalar }, n)));
  const log = h("label", {}, h("input", { type: "checkbox", checked: chartLog,
    onchange: (e) => { chartLog = e.target.checked; refreshDetail(); } }), " log scale");
  const head = h("div", { class: "chart-head" }, pick, " ", log);
  if (points.length < 2) return h("div", {}, head, h("p", { class: "muted" }, `Not enough ${chartScalar} values yet.`));
  const W = 600, H = 220, L = 56, R = 10, T = 10, B = 28;
  const ty = (y) => (chartLog ? Math.log10(y) : y);
  const xs = points.map((p) => p[0]), ys = points.map((p) => ty(p[1]));
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (y0 === y1) { y0 -= 1; y1 += 1; }
  const sx = (x) => L + (W - L - R) * (x - x0) / Math.max(1e-9, x1 - x0);
  const sy = (y) => H - B - (H - B - T) * (y - y0) / (y1 - y0);
  const grid = [];
  for (const v of ticks(y0, y1)) {
    grid.push(svg("line", { x1: L, x2: W - R, y1: sy(v), y2: sy(v), class: "grid" }),
      svg("text", { x: L - 6, y: sy(v) + 4, "text-anchor": "end" }, fmt(chartLog ? 10 ** v : v)));
  }
  for (const v of ticks(x0, x1)) {
    grid.push(svg("line", { x1: sx(v), x2: sx(v), y1: T, y2: H - B, class: "grid" }),
      svg("text", { x: sx(v), y: H - B + 16, "text-anchor": "middle" }, fmt(v)));
  }
  const line = points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(ty(y)).toFixed(1)}`).join(" ");
  const dot = svg("circle", { r: 4, class: "dot", visibility: "hidden" });
  const tip = svg("text", { class: "tip", visibility: "hidden" });
  const plot = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": chartScalar + " by step" },
    ...grid,
    svg("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }),
    svg("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }),
    svg("text", { x: W - R, y: H - 2, "text-anchor": "end", class: "label" }, "step"),
    svg("polyline", { fill: "none", stroke: "#2563eb", "stroke-width": 2, points: line }),
    dot, tip);
  // The value nearest the pointer, by step.
  plot.addEventListener("mousemove", (e) => {
    const box = plot.getBoundingClientRect();
    const x = x0 + (x1 - x0) * ((e.clientX - box.left) / box.width * W - L) / (W - L - R);
    let best = points[0];
    for (const p of points) if (Math.abs(p[0] - x) < Math.abs(best[0] - x)) best = p;
    const [px, py] = [sx(best[0]), sy(ty(best[1]))];
    dot.setAttribute("cx", px); dot.setAttribute("cy", py); dot.setAttribute("visibility", "visible");
    tip.textContent = `step ${best[0]}: ${chartScalar} ${fmt(best[1])}`;
    tip.setAttribute("x", Math.min(px + 8, W - 170)); tip.setAttribute("y", Math.max(py - 8, T + 12));
    tip.setAttribute("visibility", "visible");
  });
  plot.addEventListener("mouseleave", () => { dot.setAttribute("visibility", "hidden"); tip.setAttribute("visibility", "hidden"); });
  const last = points[points.length - 1][1], best = Math.min(...points.map((p) => p[1]));
  return h("div", {}, head, plot,
    h("div", { class: "muted" }, `${chartScalar}: last ${fmt(last)}, lowest ${fmt(best)}, steps ${x0}–${x1}`));
}

function liveLine(p) {
  return h("div", {},
    h("p", {}, `step ${dash(p.step)} / ${dash(p.total_steps)} (${dash(p.percent)}%) · loss ${dash(p.loss)} · lr ${dash(p.learning_rate)}`),
    bar(p));
}

// Live progress of the selected job over Server-Sent Events (the browser
// sends the session cookie with them).
let source = null, following = null;
function follow(id) {
  if (following === id) return;
  if (source) source.close();
  following = id;
  source = new EventSource(api(encodeURIComponent(id) + "/events"));
  const show = (e) => { const el = $("live"); if (el) el.replaceChildren(liveLine(JSON.parse(e.data))); };
  source.addEventListener("progress", show);
  source.addEventListener("end", (e) => { show(e); source.close(); source = null; refreshJobs(); refreshDetail(); });
}

/// Deletes after the user confirms; refreshes the page's view.
async function remove(url, what, gone = () => {}) {
  if (!window.confirm(`Delete ${what}? This cannot be undone.`)) return;
  try {
    const r = await fetch(url, { method: "DELETE" });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.detail || r.statusText);
    showError("");
    gone();
  } catch (e) { showError(e.message); }
  refreshJobs(); refreshDetail();
}

function controls(job) {
  const button = (label, action, enabled) =>
    h("button", { type: "button", disabled: !enabled, onclick: () => act(action) }, label);
  return h("p", {},
    button("Pause", "pause", job.status === "running"), " ",
    button("Resume", "resume", job.status === "paused"), " ",
    button("Cancel", "cancel", ["queued", "running", "paused"].includes(job.status)), " ",
    h("button", {
      type: "button", class: "danger", disabled: !FINAL.includes(job.status),
      onclick: () => remove(api("jobs/" + encodeURIComponent(job.id)), `job ${job.id} and all its files`, () => {
        if (selected === job.id) {
          selected = null;
          if (source) { source.close(); source = null; following = null; }
          $("detail").replaceChildren(h("p", { class: "muted" }, "Select a job."));
        }
      }),
    }, "Delete job"), " ",
    job.exit_code != null ? h("span", { class: "muted" }, `exit code ${job.exit_code} `) : null,
    job.signal != null ? h("span", { class: "muted" }, `signal ${job.signal} `) : null,
    job.error ? h("span", { class: "muted" }, job.error) : null);
}

function checkpointTable(id, checkpoints, finished) {
  if (!checkpoints.length) return h("p", { class: "muted" }, "No checkpoints yet.");
  return h("table", {},
    h("tr", {}, ["name", "step", "size", "modified", ""].map((t) => h("th", {}, t))),
    checkpoints.map((c) => h("tr", {},
      h("td", {}, c.name), h("td", {}, dash(c.step)),
      h("td", {}, mib(c.size_bytes)), h("td", {}, c.modified_at),
      h("td", {}, c.complete
        ? h("a", { class: "button", href: api(id + "/download/model?checkpoint=" + encodeURIComponent(c.name)) }, "Download")
        : h("span", { class: "muted" }, "being written…"),
        finished ? [" ", h("button", { type: "button", class: "danger",
          onclick: () => remove(api(id + "/checkpoints/" + encodeURIComponent(c.name)), `checkpoint ${c.name}`) }, "Delete")] : null))));
}

const mib = (bytes) => `${(bytes / 1048576).toFixed(bytes < 10485760 ? 2 : 0)} MiB`;

/// "Model": the final model without checkpoints, with its size; the whole
/// directory (checkpoints too) as the second choice, with its size.
async function modelButtons(id) {
  const size = async (query) => {
    const { files } = await getJSON(api(id + "/files" + query));
    return files.reduce((sum, f) => sum + f.size, 0);
  };
  const [model, all] = await Promise.all([size("?exclude=checkpoints"), size("")]);
  return h("span", {},
    h("a", { class: "button primary", href: api(id + "/download/model?exclude=checkpoints") }, `Model (ZIP, ${mib(model)})`),
    all > model
      ? [" ", h("a", { class: "button", href: api(id + "/download/model") }, `With checkpoints (${mib(all)})`)]
      : null);
}

async function refreshDetail() {
  if (!selected) return;
  if (!FINAL.includes(statusOf[selected])) follow(selected);
  const id = encodeURIComponent(selected);
  try {
    const [job, cps, hist] = await Promise.all([
      getJSON(api("jobs/" + id)), getJSON(api(id + "/checkpoints")), getJSON(api(id + "/metrics")),
    ]);
    $("detail").replaceChildren(
      h("h2", {}, job.name || job.id, " ", statusBadge(job)),
      h("div", { class: "muted" },
        `id ${job.id} · created ${dash(job.created_at)} · ${job.managed ? "recipe " + job.recipe : "external run"}`),
      h("div", { id: "live" }, liveLine(job.progress || {})),
      job.managed ? controls(job) : null,
      h("h3", {}, "History"), chart(hist.history),
      h("h3", {}, "Downloads"),
      h("p", {},
        job.has_model ? await modelButtons(id) : h("span", { class: "muted" }, "No model yet."), " ",
        h("a", { class: "button", href: api(id + "/download/logs") }, "Logs (ZIP)")),
      h("h3", {}, "Checkpoints"), checkpointTable(id, cps.checkpoints, FINAL.includes(job.status)));
  } catch (e) { $("detail").replaceChildren(h("p", { class: "error" }, e.message)); }
}

document.addEventListener("DOMContentLoaded", () => {
  $("start").addEventListener("submit", startJob);
  $("start").recipe.addEventListener("change", showRecipeParams);
  loadRecipes();
  // Sign-out only where there is a sign-in (the server runs with tokens).
  $("signout").hidden = document.body.dataset.signedIn !== "true";
  refreshJobs();
  // The list and the detail (checkpoints, loss curve) refresh every few
  // seconds; the selected job's progress line is live.
  setInterval(() => { refreshJobs(); refreshDetail(); }, 5000);
});
