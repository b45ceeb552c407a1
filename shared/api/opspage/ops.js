// The ops page: plain DOM and canvas, no framework, nothing fetched but this API.
"use strict";

const POLL_MS = 2000;
const KEEP = 150; // points per chart series (5 minutes at 2 s)
const $ = (id) => document.getElementById(id);
const series = { t: [], eps: [], p50: [], p90: [], p99: [], e5: [], e4: [], dead: [], l50: [], l99: [] };

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return e;
}

function headers(extra) {
  const h = Object.assign({ "Accept": "application/json" }, extra || {});
  const tok = $("token").value.trim();
  if (tok) h["Authorization"] = "Bearer " + tok;
  return h;
}

// The API's base: the page is served at <base>/ops, where <base> is "" locally and the
// stage ("/prod") behind API Gateway.
const BASE = window.location.pathname.replace(/\/ops$/, "");

// api returns the decoded body, or throws an Error carrying the API's error code.
async function api(method, path) {
  const res = await fetch(BASE + path, { method, headers: headers() });
  const text = await res.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
  if (!res.ok) {
    const msg = body && body.error ? body.error.code + ": " + body.error.message : res.status + " " + res.statusText;
    const err = new Error(msg);
    err.status = res.status;
    throw err;
  }
  return body;
}

function setStatus(text, bad) {
  const s = $("status");
  s.textContent = text;
  s.style.color = bad ? "#ff9b8f" : "";
}

// --- projections ------------------------------------------------------------------------

function lagText(lag) {
  if (lag == null) return "—";
  if (typeof lag === "number") return lag + " events";
  if (typeof lag === "object") {
    return Object.entries(lag).map(([k, v]) => k + " " + v).join(", ");
  }
  return String(lag);
}

function rebuildCell(p) {
  const r = p.rebuild;
  if (!r) return p.rebuiltAt ? el("span", { class: "muted" }, "rebuilt " + new Date(p.rebuiltAt).toLocaleString()) : "";
  if (r.phase === "done") {
    return el("span", { class: "muted" }, "rebuilt " + new Date(r.finishedAt || r.updatedAt).toLocaleString());
  }
  const done = Number(r.eventsDone || 0), total = Number(r.eventsTotal || 0);
  const pct = total > 0 ? Math.min(100, Math.round(100 * done / total)) : 0;
  const fill = el("span");
  fill.style.width = pct + "%"; // through the CSSOM: the CSP refuses style attributes
  const bar = el("span", { class: "progress", title: pct + "%" }, fill);
  const parts = [r.phase || "", done + "/" + total];
  if (r.eventsPerSecond) parts.push(Math.round(Number(r.eventsPerSecond)) + " ev/s");
  if (r.etaSeconds != null) parts.push("eta " + Math.round(Number(r.etaSeconds)) + "s");
  if (r.lastError) parts.push("last error: " + r.lastError);
  return el("span", {}, bar, " " + parts.filter(Boolean).join(" · "));
}

// lagOf is the events behind the feed head where there is a feed, else (the DynamoDB
// stream path) the age of the last record processed when it was processed.
function lagOf(p) {
  if (p.lag != null) return p.lag;
  if (p.lastRecord && p.lastRecord.ageSeconds != null) return { "last record age s": p.lastRecord.ageSeconds };
  return null;
}

async function loadProjections() {
  const body = await api("GET", "/projections");
  const tb = $("projections").querySelector("tbody");
  tb.replaceChildren();
  for (const p of body.projections || []) {
    const btn = el("button", { class: "small", type: "button" }, "rebuild");
    btn.addEventListener("click", () => rebuild(p.name, btn));
    const tr = el("tr", { "data-projection": p.name },
      el("td", {}, p.name),
      el("td", { class: "wrap status-" + p.status }, p.status + (p.lastError ? " (" + p.lastError + ")" : "")),
      el("td", {}, lagText(lagOf(p))),
      el("td", {}, p.checkpoint != null ? p.checkpoint : "—"),
      el("td", {}, p.parked || 0),
      el("td", {}, rebuildCell(p)),
      el("td", {}, btn));
    tb.append(tr);
  }
}

async function rebuild(name, btn) {
  if (!window.confirm("Rebuild projection " + name + "?")) return;
  btn.disabled = true;
  try {
    await api("POST", "/projections/" + encodeURIComponent(name) + "/rebuild");
    setStatus("rebuild of " + name + " started");
  } catch (e) {
    setStatus("rebuild " + name + ": " + e.message, true);
  } finally {
    btn.disabled = false;
    refresh();
  }
}

// --- dead letters ---------------------------------------------------------------------

async function loadDeadLetters() {
  const body = await api("GET", "/dead-letters");
  const dls = body.deadLetters || [];
  const tb = $("dead-letters").querySelector("tbody");
  tb.replaceChildren();
  for (const d of dls) {
    tb.append(el("tr", { class: "dead-letter", "data-event-id": d.eventId || "" },
      el("td", {}, d.projection),
      el("td", {}, d.aggregateType + "/" + d.aggregateId),
      el("td", {}, d.version),
      el("td", {}, d.eventType),
      el("td", { class: "error" }, d.error),
      el("td", {}, d.parkedAt ? new Date(d.parkedAt).toLocaleString() : ""),
      el("td", {}, d.attempts)));
  }
  const badge = $("dl-count");
  badge.textContent = dls.length;
  badge.className = dls.length ? "badge bad" : "badge";
  $("dl-empty").hidden = dls.length > 0;
  $("dead-letters").hidden = dls.length === 0;
  $("redrive").disabled = dls.length === 0;
}

async function redrive() {
  const btn = $("redrive");
  btn.disabled = true;
  $("redrive-result").textContent = "redriving…";
  try {
    const res = await api("POST", "/dead-letters/redrive");
    $("redrive-result").textContent = "redriven " + res.redriven + ", still failing " + (res.remaining || []).length;
  } catch (e) {
    $("redrive-result").textContent = "redrive failed: " + e.message;
  }
  await refresh();
}

// --- charts ----------------------------------------------------------------------------

const COLORS = ["#2f6fde", "#e67e22", "#c0392b", "#1e8449", "#8e44ad"];

function prepare(canvas) {
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.font = "11px system-ui, sans-serif";
  return ctx;
}

function nice(v) {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function fmt(v) {
  if (Number.isInteger(v)) return String(v);
  if (v >= 100) return Math.round(v).toString();
  if (v >= 1) return v.toFixed(1);
  return Number(v.toPrecision(2)).toString();
}

// lines draws series (arrays of numbers, same length) on a shared y axis from 0.
function lines(canvas, series, labels) {
  const ctx = prepare(canvas);
  const W = canvas.width, H = canvas.height, L = 40, B = 16, T = 14;
  let top = 0;
  for (const s of series) for (const v of s) top = Math.max(top, v);
  top = nice(top);
  ctx.strokeStyle = "#d8dce4";
  ctx.fillStyle = "#6b7385";
  for (let i = 0; i <= 4; i++) {
    const y = T + (H - T - B) * (1 - i / 4);
    ctx.beginPath(); ctx.moveTo(L, y); ctx.lineTo(W - 4, y); ctx.stroke();
    ctx.fillText(fmt(top * i / 4), 2, y + 4);
  }
  const n = Math.max(2, ...series.map((s) => s.length));
  series.forEach((s, k) => {
    ctx.strokeStyle = COLORS[k % COLORS.length];
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    s.forEach((v, i) => {
      const x = L + (W - L - 4) * (i + n - s.length) / (n - 1);
      const y = T + (H - T - B) * (1 - v / top);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
    if (labels && labels[k]) {
      ctx.fillStyle = COLORS[k % COLORS.length];
      const last = s.length ? fmt(s[s.length - 1]) : "–";
      ctx.fillText(labels[k] + " " + last, L + 4 + k * 90, 11);
    }
  });
  ctx.lineWidth = 1;
}

// bars draws one bar per label.
function bars(canvas, labels, values, note) {
  const ctx = prepare(canvas);
  const W = canvas.width, H = canvas.height, L = 40, B = 28, T = 14;
  if (!values.length) {
    ctx.fillStyle = "#6b7385";
    ctx.fillText("no data yet", W / 2 - 25, H / 2);
    return;
  }
  const top = nice(Math.max(...values));
  ctx.fillStyle = "#6b7385";
  ctx.fillText(fmt(top), 2, T + 4);
  ctx.fillText("0", 2, H - B);
  const w = Math.min(70, (W - L - 4) / values.length);
  values.forEach((v, i) => {
    const h = (H - T - B) * v / top;
    ctx.fillStyle = COLORS[i % COLORS.length];
    ctx.fillRect(L + i * w + 2, H - B - h, Math.max(1, w - 4), h);
    ctx.fillStyle = "#1d2330";
    ctx.fillText(fmt(v), L + i * w + 3, H - B - h - 2);
    ctx.fillStyle = "#6b7385";
    const lab = String(labels[i]);
    ctx.fillText(lab.length > 14 ? lab.slice(0, 13) + "…" : lab, L + i * w + 2, H - B + 12);
    if (note && note[i]) ctx.fillText(note[i], L + i * w + 2, H - B + 24);
  });
}

function push(key, v) {
  const a = series[key];
  a.push(Number(v) || 0);
  if (a.length > KEEP) a.shift();
}

async function loadMetrics() {
  const m = await api("GET", "/metrics.json");
  if (series.eps.length === 0 && Array.isArray(m.eventsLastMinute)) {
    // First load: the last minute, second by second, so the chart is not empty.
    for (const v of m.eventsLastMinute) push("eps", v);
  } else {
    push("eps", m.eventsPerSecond);
  }
  push("p50", m.latencyMs.p50); push("p90", m.latencyMs.p90); push("p99", m.latencyMs.p99);
  push("e5", 100 * m.errorRate); push("e4", 100 * m.rejectedRate);
  push("dead", m.deadLetters);
  push("l50", m.aggregateLoadMs.p50); push("l99", m.aggregateLoadMs.p99);

  lines($("c-events"), [series.eps], ["events/s"]);
  lines($("c-latency"), [series.p50, series.p90, series.p99], ["p50", "p90", "p99"]);
  lines($("c-errors"), [series.e5, series.e4], ["5xx %", "4xx %"]);
  const types = Object.keys(m.failuresByEventType || {}).sort();
  bars($("c-bytype"), types, types.map((t) => m.failuresByEventType[t]));
  lines($("c-dead"), [series.dead], ["parked"]);
  lines($("c-load"), [series.l50, series.l99], ["p50", "p99"]);
  const rb = m.rebuilds || [];
  bars($("c-rebuild"), rb.map((r) => r.projection), rb.map((r) => r.ms));
  const days = m.snapshotsPerDay || [];
  bars($("c-snapshots"), days.map((d) => d.day.slice(5)), days.map((d) => d.count), days.map((d) => d.avgBytes + " B"));
  $("metrics-at").textContent = "at " + new Date(m.at).toLocaleTimeString();
  $("totals").textContent = "events appended " + m.eventsAppended + " · requests " + m.requests +
    " · conflicts " + m.conflicts + " · snapshots " + m.snapshotsCreated + " · parked in all " + m.parkedTotal +
    " · up " + m.uptimeSeconds + " s";
}

// --- stream browser --------------------------------------------------------------------

async function showStream(ev) {
  ev.preventDefault();
  const kind = $("stream-kind").value, id = $("stream-id").value.trim(), asOf = $("stream-asof").value.trim();
  const q = asOf ? "?asOf=" + encodeURIComponent(asOf) : "";
  const base = "/" + kind + "/" + encodeURIComponent(id);
  const pre = $("stream-state");
  const tb = $("stream-events").querySelector("tbody");
  tb.replaceChildren();
  try {
    const [state, evs] = await Promise.all([api("GET", base + q), api("GET", base + "/events" + q)]);
    pre.textContent = JSON.stringify(state, null, 2);
    pre.className = "";
    for (const e of evs.events || []) {
      tb.append(el("tr", {},
        el("td", {}, e.version), el("td", {}, e.eventType),
        el("td", {}, e.timestamp ? new Date(e.timestamp).toISOString() : ""),
        el("td", {}, (e.metadata && e.metadata.actor) || ""),
        el("td", { class: "payload" }, JSON.stringify(e.payload))));
    }
  } catch (e) {
    pre.textContent = e.message;
    pre.className = "muted";
  }
}

// --- wiring ----------------------------------------------------------------------------

// refresh reloads everything; a call while one runs makes it run once more at its end,
// so what an action changed (a redrive) is always shown.
let running = null, again = false;
function refresh() {
  if (running) { again = true; return running; }
  running = (async () => {
    try {
      do {
        again = false;
        const results = await Promise.allSettled([loadProjections(), loadDeadLetters(), loadMetrics()]);
        const failed = results.filter((r) => r.status === "rejected").map((r) => r.reason.message);
        if (failed.length) setStatus(failed[0], true);
        else setStatus("updated " + new Date().toLocaleTimeString());
      } while (again);
    } finally {
      running = null;
    }
  })();
  return running;
}

document.addEventListener("DOMContentLoaded", () => {
  const saved = window.sessionStorage.getItem("ecm-token");
  if (saved) $("token").value = saved;
  $("token").addEventListener("change", () => { window.sessionStorage.setItem("ecm-token", $("token").value.trim()); refresh(); });
  $("redrive").addEventListener("click", redrive);
  $("stream-form").addEventListener("submit", showStream);
  refresh();
  window.setInterval(refresh, POLL_MS);
});
