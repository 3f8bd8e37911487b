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

async function startJob(event) {
  event.preventDefault();
  const form = event.target;
  try {
    const params = form.params.value.trim() ? JSON.parse(form.params.value) : {};
    const job = await post(api("jobs"), { recipe: form.recipe.value, name: form.name.value || null, params });
    selected = job.id;
    showError("");
  } catch (e) { showError(e.message); }
  refreshJobs(); refreshDetail();
}

function jobRow(job) {
  const p = job.progress || {};
  return h("div", {
    class: "job" + (job.id === selected ? " selected" : ""),
    onclick: () => { selected = job.id; refreshJobs(); refreshDetail(); },
  },
    h("b", {}, job.name || job.id), " ",
    h("span", { class: "status " + job.status }, job.status),
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

function lossCurve(history) {
  const points = history.filter((p) => p.loss != null && p.step != null);
  if (points.length < 2) return h("p", { class: "muted" }, "No loss history yet.");
  const xs = points.map((p) => p.step), ys = points.map((p) => p.loss);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const sx = (x) => 10 + 580 * (x - x0) / Math.max(1e-9, x1 - x0);
  const sy = (y) => 170 - 160 * (y - y0) / Math.max(1e-9, y1 - y0);
  const line = points.map((p) => `${sx(p.step).toFixed(1)},${sy(p.loss).toFixed(1)}`).join(" ");
  return h("div", {},
    svg("svg", { class: "chart", viewBox: "0 0 600 180", preserveAspectRatio: "none", "aria-label": "loss curve" },
      svg("polyline", { fill: "none", stroke: "#2563eb", "stroke-width": 2, points: line })),
    h("div", { class: "muted" },
      `loss ${y1.toFixed(4)} → ${ys[ys.length - 1].toFixed(4)} over steps ${x0}–${x1}`));
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

function controls(job) {
  const button = (label, action, enabled) =>
    h("button", { type: "button", disabled: !enabled, onclick: () => act(action) }, label);
  return h("p", {},
    button("Pause", "pause", job.status === "running"), " ",
    button("Resume", "resume", job.status === "paused"), " ",
    button("Cancel", "cancel", ["queued", "running", "paused"].includes(job.status)), " ",
    job.exit_code != null ? h("span", { class: "muted" }, `exit code ${job.exit_code} `) : null,
    job.signal != null ? h("span", { class: "muted" }, `signal ${job.signal} `) : null,
    job.error ? h("span", { class: "muted" }, job.error) : null);
}

function checkpointTable(id, checkpoints) {
  if (!checkpoints.length) return h("p", { class: "muted" }, "No checkpoints yet.");
  return h("table", {},
    h("tr", {}, ["name", "step", "size", "modified", ""].map((t) => h("th", {}, t))),
    checkpoints.map((c) => h("tr", {},
      h("td", {}, c.name), h("td", {}, dash(c.step)),
      h("td", {}, `${(c.size_bytes / 1048576).toFixed(2)} MiB`), h("td", {}, c.modified_at),
      h("td", {}, c.complete
        ? h("a", { class: "button", href: api(id + "/download/model?checkpoint=" + encodeURIComponent(c.name)) }, "Download")
        : h("span", { class: "muted" }, "being written…")))));
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
      h("h2", {}, job.name || job.id, " ", h("span", { class: "status " + job.status }, job.status)),
      h("div", { class: "muted" },
        `id ${job.id} · created ${dash(job.created_at)} · ${job.managed ? "recipe " + job.recipe : "external run"}`),
      h("div", { id: "live" }, liveLine(job.progress || {})),
      job.managed ? controls(job) : null,
      h("h3", {}, "Loss"), lossCurve(hist.history),
      h("h3", {}, "Downloads"),
      h("p", {},
        job.has_model ? h("a", { class: "button", href: api(id + "/download/model") }, "Model (ZIP)")
          : h("span", { class: "muted" }, "No model yet."), " ",
        h("a", { class: "button", href: api(id + "/download/logs") }, "Logs (ZIP)")),
      h("h3", {}, "Checkpoints"), checkpointTable(id, cps.checkpoints));
  } catch (e) { $("detail").replaceChildren(h("p", { class: "error" }, e.message)); }
}

document.addEventListener("DOMContentLoaded", () => {
  $("start").addEventListener("submit", startJob);
  // Sign-out only where there is a sign-in (the server runs with tokens).
  $("signout").hidden = document.body.dataset.signedIn !== "true";
  refreshJobs();
  // The list and the detail (checkpoints, loss curve) refresh every few
  // seconds; the selected job's progress line is live.
  setInterval(() => { refreshJobs(); refreshDetail(); }, 5000);
});
