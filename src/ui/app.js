// trainbox's page: jobs, live progress, loss curve, resources, job control,
// downloads, run comparison, disk and the download audit.
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
  const pick = h("input", {
    type: "checkbox", class: "compare-pick", title: "compare", "aria-label": "compare " + job.id,
    checked: comparing.has(job.id),
    onclick: (e) => e.stopPropagation(),
    onchange: (e) => { if (e.target.checked) comparing.add(job.id); else comparing.delete(job.id); refreshCompare(); },
  });
  return h("div", {
    class: "job" + (job.id === selected ? " selected" : ""),
    onclick: () => { selected = job.id; refreshJobs(); refreshDetail(); },
  },
    pick, " ", h("b", {}, job.name || job.id), " ", statusBadge(job),
    h("div", { class: "muted" },
      `${job.id} · step ${dash(p.step)}/${dash(p.total_steps)} · loss ${p.loss != null ? p.loss.toFixed(4) : "–"}`
      + (job.size_bytes != null ? ` · ${mib(job.size_bytes)}` : "")),
    bar(p));
}

// The disk in the header: how full the root's file system is, what the
// jobs take, and a warning past --disk-warn-percent.
async function refreshDisk() {
  try {
    const d = await getJSON(api("disk"));
    const el = $("disk");
    el.textContent = `disk ${d.used_percent}% used · ${gib(d.free_bytes)} free · jobs ${gib(d.jobs_bytes)}`;
    el.className = d.warning ? "warning" : "muted";
    el.title = d.warning ? `at or past the warning line (${d.warn_percent}%)` : "";
  } catch (e) { showError(e.message); }
}

const gib = (bytes) => `${(bytes / 1073741824).toFixed(1)} GiB`;

// Run comparison: the jobs ticked in the list, one metric's curves
// overlaid by step, and a table of what each ran and reached.
const comparing = new Set();
let compareMetric = "loss";

async function refreshCompare() {
  const card = $("compare");
  if (comparing.size < 2) { card.hidden = true; card.replaceChildren(); return; }
  const jobs = [...comparing].slice(0, 8).map(encodeURIComponent).join(",");
  try {
    let c = await getJSON(api(`compare?jobs=${jobs}&metric=${encodeURIComponent(compareMetric)}`));
    if (!c.shared_metrics.includes(compareMetric) && c.shared_metrics.length) {
      compareMetric = c.shared_metrics[0];
      c = await getJSON(api(`compare?jobs=${jobs}&metric=${encodeURIComponent(compareMetric)}`));
    }
    const pick = h("select", { "aria-label": "metric", onchange: (e) => { compareMetric = e.target.value; refreshCompare(); } },
      (c.shared_metrics.length ? c.shared_metrics : [compareMetric]).map((m) => h("option", { value: m, selected: m === compareMetric }, m)));
    const series = c.jobs.filter((j) => j.points.length).map((j) => ({ name: j.name || j.id, points: j.points }));
    const value = (p) => (p ? `${fmt(p.value)} (step ${p.step})` : "–");
    const params = (p) => (p ? Object.entries(p).map(([k, v]) => `${k}=${v}`).join(" ") : "");
    card.replaceChildren(
      h("h2", {}, `Compare ${c.jobs.length} jobs`),
      h("div", { class: "chart-head" }, pick, h("span", { class: "muted" }, ` ${c.better} is better`)),
      series.length ? plotLines(series, { label: `${c.metric} by step, ${c.jobs.length} jobs` }) : h("p", { class: "muted" }, `No ${c.metric} values to compare.`),
      h("table", { class: "compare-table" },
        h("tr", {}, ["job", "status", "recipe", "params", "duration", "last", "best"].map((t) => h("th", {}, t))),
        c.jobs.map((j) => h("tr", {},
          h("td", {}, j.name || j.id), h("td", {}, j.status), h("td", {}, dash(j.recipe)), h("td", {}, params(j.params)),
          h("td", {}, j.duration_seconds != null ? `${fmt(j.duration_seconds)} s` : "–"),
          h("td", {}, value(j.last)), h("td", {}, value(j.best))))));
    card.hidden = false;
  } catch (e) { showError(e.message); }
}

// Who took what off the box: the download audit, for a token that may see
// it (the control role); hidden for the others.
async function refreshAudit() {
  const card = $("audit");
  const r = await fetch(api("downloads?limit=20"), { headers: { "Accept": "application/json" } }).catch(() => null);
  if (!r || r.status === 403) { card.hidden = true; return; }
  const body = await r.json().catch(() => ({}));
  if (!r.ok) { showError(body.detail || r.statusText); return; }
  card.replaceChildren(h("h2", {}, "Recent downloads"),
    body.downloads.length
      ? h("table", { class: "audit-table" },
        h("tr", {}, ["time", "who", "job", "what", "bytes", "outcome"].map((t) => h("th", {}, t))),
        body.downloads.map((d) => h("tr", {},
          h("td", {}, d.time), h("td", {}, d.who || d.client || "–"), h("td", {}, d.job), h("td", {}, d.what),
          h("td", {}, mib(d.bytes)), h("td", {}, d.outcome))))
      : h("p", { class: "muted" }, "No downloads yet."));
  card.hidden = false;
}

async function refreshJobs() {
  try {
    const { jobs } = await getJSON(api("jobs"));
    showError("");
    $("summary").textContent = `${jobs.length} job(s)`;
    for (const j of jobs) statusOf[j.id] = j.status;
    $("jobs").replaceChildren(...(jobs.length ? jobs.map(jobRow) : ["No jobs yet."]));
  } catch (e) { showError(e.message); }
  refreshDisk();
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

const COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];

/// Lines over a shared x axis: `series` is [{name, points: [[x, y]...]}];
/// axes with round ticks, the point nearest the pointer named in a tip,
/// optionally a log y axis. `xName` labels the x axis, `xFmt` its values.
function plotLines(series, { xName = "step", xFmt = fmt, yFmt = fmt, log = false, label = "" } = {}) {
  const W = 600, H = 220, L = 56, R = 10, T = 10, B = 28;
  const ty = (y) => (log ? Math.log10(y) : y);
  const all = series.flatMap((s) => s.points);
  const xs = all.map((p) => p[0]), ys = all.map((p) => ty(p[1]));
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (y0 === y1) { y0 -= 1; y1 += 1; }
  const sx = (x) => L + (W - L - R) * (x - x0) / Math.max(1e-9, x1 - x0);
  const sy = (y) => H - B - (H - B - T) * (y - y0) / (y1 - y0);
  const grid = [];
  for (const v of ticks(y0, y1)) {
    grid.push(svg("line", { x1: L, x2: W - R, y1: sy(v), y2: sy(v), class: "grid" }),
      svg("text", { x: L - 6, y: sy(v) + 4, "text-anchor": "end" }, yFmt(log ? 10 ** v : v)));
  }
  for (const v of ticks(x0, x1)) {
    grid.push(svg("line", { x1: sx(v), x2: sx(v), y1: T, y2: H - B, class: "grid" }),
      svg("text", { x: sx(v), y: H - B + 16, "text-anchor": "middle" }, xFmt(v)));
  }
  const lines = series.map((s, i) => svg("polyline", {
    fill: "none", stroke: COLOURS[i % COLOURS.length], "stroke-width": 2,
    points: s.points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(ty(y)).toFixed(1)}`).join(" "),
  }));
  const dot = svg("circle", { r: 4, class: "dot", visibility: "hidden" });
  const tip = svg("text", { class: "tip", visibility: "hidden" });
  const plot = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label },
    ...grid,
    svg("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }),
    svg("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }),
    svg("text", { x: W - R, y: H - 2, "text-anchor": "end", class: "label" }, xName),
    ...lines, dot, tip);
  // The point nearest the pointer, over every line.
  plot.addEventListener("mousemove", (e) => {
    const box = plot.getBoundingClientRect();
    const [mx, my] = [(e.clientX - box.left) / box.width * W, (e.clientY - box.top) / box.height * H];
    let best = null;
    series.forEach((s) => s.points.forEach((p) => {
      const d = Math.abs(sx(p[0]) - mx) * 4 + Math.abs(sy(ty(p[1])) - my);
      if (!best || d < best.d) best = { d, p, name: s.name };
    }));
    const [px, py] = [sx(best.p[0]), sy(ty(best.p[1]))];
    dot.setAttribute("cx", px); dot.setAttribute("cy", py); dot.setAttribute("visibility", "visible");
    tip.textContent = `${xName} ${xFmt(best.p[0])}: ${best.name} ${yFmt(best.p[1])}`;
    tip.setAttribute("x", Math.min(px + 8, W - 200)); tip.setAttribute("y", Math.max(py - 8, T + 12));
    tip.setAttribute("visibility", "visible");
  });
  plot.addEventListener("mouseleave", () => { dot.setAttribute("visibility", "hidden"); tip.setAttribute("visibility", "hidden"); });
  if (series.length < 2) return plot;
  const legend = h("div", { class: "legend" }, series.map((s, i) => h("span", {},
    svg("svg", { width: 18, height: 8 }, svg("line", { x1: 0, x2: 18, y1: 4, y2: 4, stroke: COLOURS[i % COLOURS.length], "stroke-width": 3 })),
    " ", s.name)));
  return h("div", {}, plot, legend);
}

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
  if (points.length < 2) return h("div", { class: "history-chart" }, head, h("p", { class: "muted" }, `Not enough ${chartScalar} values yet.`));
  const plot = plotLines([{ name: chartScalar, points }], { log: chartLog, label: chartScalar + " by step" });
  const last = points[points.length - 1][1], best = Math.min(...points.map((p) => p[1]));
  const xs = points.map((p) => p[0]);
  return h("div", { class: "history-chart" }, head, plot,
    h("div", { class: "muted" }, `${chartScalar}: last ${fmt(last)}, lowest ${fmt(best)}, steps ${Math.min(...xs)}–${Math.max(...xs)}`));
}

// Resource use of the selected job: the latest sample in words, and one
// figure of its history over time.
let resourceFigure = "cpu_percent";
const RESOURCE_FIGURES = {
  cpu_percent: ["CPU %", fmt], rss_bytes: ["resident memory", (b) => mib(b)],
  memory_bytes: ["cgroup memory", (b) => mib(b)], threads: ["threads", fmt],
  read_bytes: ["read", (b) => mib(b)], write_bytes: ["written", (b) => mib(b)],
  gpu_percent: ["GPU %", fmt], gpu_memory_bytes: ["GPU memory", (b) => mib(b)],
};

function resourceLine(r) {
  if (!r) return h("p", { class: "muted" }, "Not sampled (sampled while a job trainbox started runs).");
  const parts = [
    r.cpu_percent != null ? `CPU ${fmt(r.cpu_percent)}%` : `CPU time ${fmt(r.cpu_seconds)} s`,
    `memory ${mib(r.rss_bytes)}` + (r.memory_bytes != null ? ` (cgroup ${mib(r.memory_bytes)})` : ""),
    `${r.threads} threads in ${r.processes} processes`,
  ];
  if (r.read_bytes != null) parts.push(`read ${mib(r.read_bytes)}, written ${mib(r.write_bytes || 0)}`);
  parts.push(r.gpu_percent != null || r.gpu_memory_bytes != null
    ? `GPU ${dash(r.gpu_percent)}% ${r.gpu_memory_bytes != null ? mib(r.gpu_memory_bytes) : ""}` : "no GPU");
  return h("p", { class: "resources" }, parts.join(" · "), h("span", { class: "muted" }, ` (at ${r.time})`));
}

function resourceChart(samples) {
  const present = Object.keys(RESOURCE_FIGURES).filter((k) => samples.some((s) => s[k] != null));
  if (samples.length < 2 || !present.length) return null;
  if (!present.includes(resourceFigure)) resourceFigure = present[0];
  const t0 = Date.parse(samples[0].time);
  const points = samples.filter((s) => s[resourceFigure] != null)
    .map((s) => [(Date.parse(s.time) - t0) / 60000, s[resourceFigure]]);
  const [name, yFmt] = RESOURCE_FIGURES[resourceFigure];
  const pick = h("select", { "aria-label": "resource", onchange: (e) => { resourceFigure = e.target.value; refreshDetail(); } },
    present.map((k) => h("option", { value: k, selected: k === resourceFigure }, RESOURCE_FIGURES[k][0])));
  return h("div", { class: "resource-chart" }, h("div", { class: "chart-head" }, pick),
    plotLines([{ name, points }], { xName: "minutes", xFmt: (v) => fmt(v), yFmt, label: name + " over time" }));
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
        if (comparing.delete(job.id)) refreshCompare();
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
    const [job, cps, hist, res] = await Promise.all([
      getJSON(api("jobs/" + id)), getJSON(api(id + "/checkpoints")), getJSON(api(id + "/metrics")),
      getJSON(api(id + "/resources")),
    ]);
    const complete = cps.checkpoints.filter((c) => c.complete);
    const pull = (FINAL.includes(job.status) && job.has_model) || complete.length
      ? h("p", { class: "pull" }, "Pull with huggingface_hub: ",
        h("code", {}, `HF_ENDPOINT=${location.origin} hf download trainbox/${job.id}`
          + (FINAL.includes(job.status) && job.has_model ? "" : complete.length ? ` --revision ${complete[complete.length - 1].name}` : "")))
      : null;
    // (Absent parts are null: left out, never shown as text.)
    $("detail").replaceChildren(...[
      h("h2", {}, job.name || job.id, " ", statusBadge(job)),
      h("div", { class: "muted" },
        `id ${job.id} · created ${dash(job.created_at)} · ${job.managed ? "recipe " + job.recipe : "external run"}`),
      h("div", { id: "live" }, liveLine(job.progress || {})),
      job.managed ? controls(job) : null,
      h("h3", {}, "History"), chart(hist.history),
      h("h3", {}, "Resources"), resourceLine(job.resources), resourceChart(res.samples),
      h("h3", {}, "Downloads"),
      h("p", {},
        job.has_model ? await modelButtons(id) : h("span", { class: "muted" }, "No model yet."), " ",
        h("a", { class: "button", href: api(id + "/download/logs") }, "Logs (ZIP)")),
      pull,
      h("h3", {}, "Checkpoints"), checkpointTable(id, cps.checkpoints, FINAL.includes(job.status)),
    ].filter((part) => part != null));
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
  refreshAudit();
  setInterval(() => { refreshJobs(); refreshDetail(); refreshCompare(); refreshAudit(); }, 5000);
});
