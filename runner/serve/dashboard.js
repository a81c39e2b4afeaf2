// The runner dashboard: loads the current state from /api/v1/*, then follows the
// Server-Sent Events stream /api/v1/events (status, history deltas, log lines,
// heartbeats). Everything is served by the runner itself (same origin, no CDN).
"use strict";

(function () {
  const MAX_POINTS = 4096;   // per dataset, as the server keeps per series
  const GPU_POINTS = 600;    // GPU samples kept client-side (one per status event)
  const LOG_LINES = 300;
  const colors = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2",
                  "#ca8a04", "#db2777", "#4b5563", "#65a30d"];

  // series[run][tag] = [{x: step, y: value}, ...] as received.
  const series = {};
  const state = { cursor: 0, logNext: 0, charts: {}, gpuTime: [], source: null };
  window.runnerDashboard = { series: series, charts: state.charts, state: state };

  const $ = (id) => document.getElementById(id);

  function fmtDuration(s) {
    if (s == null || !isFinite(s) || s < 0) return "–";
    s = Math.round(s);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return (h ? h + "h " : "") + (h || m ? m + "m " : "") + sec + "s";
  }
  function fmtNumber(v, digits) {
    if (v == null || !isFinite(v)) return "–";
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
    return v.toFixed(digits == null ? 4 : digits);
  }
  function text(el, value) { el.textContent = value; }
  function cell(row, value, cls) {
    const td = document.createElement("td");
    td.textContent = value;
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }
  function emptyRow(tbody, columns, message) {
    const tr = document.createElement("tr");
    const td = cell(tr, message, "empty");
    td.colSpan = columns;
    tbody.appendChild(tr);
  }
  async function getJSON(path) {
    const r = await fetch(path, { cache: "no-store" });
    if (!r.ok) throw new Error(path + ": HTTP " + r.status);
    return r.json();
  }

  // ---- charts ------------------------------------------------------------------------

  function lineChart(canvasId, yTitle, options) {
    options = options || {};
    const scales = {
      x: { type: "linear", title: { display: true, text: options.xTitle || "step" } },
      y: { type: options.logY ? "logarithmic" : "linear", title: { display: true, text: yTitle } },
    };
    if (options.y2) scales.y2 = { type: "linear", position: "right", title: { display: true, text: options.y2 },
                                  grid: { drawOnChartArea: false } };
    const chart = new Chart($(canvasId), {
      type: "line",
      data: { datasets: [] },
      options: {
        animation: false, responsive: true, maintainAspectRatio: false, parsing: false,
        normalized: true, spanGaps: true,
        elements: { point: { radius: 0 }, line: { borderWidth: 1.5 } },
        interaction: { mode: "nearest", intersect: false },
        plugins: { legend: { labels: { boxWidth: 12 } } },
        scales: scales,
      },
    });
    state.charts[canvasId] = chart;
    return chart;
  }

  // Chart datasets bound to (run, tag) series: `bind` lists [run, tag, label, axis].
  const bindings = [];
  function bind(chart, run, tag, label, axis) {
    const ds = { label: label, data: [], borderColor: colors[chart.data.datasets.length % colors.length],
                 backgroundColor: colors[chart.data.datasets.length % colors.length], yAxisID: axis || "y",
                 run: run, tag: tag };
    chart.data.datasets.push(ds);
    bindings.push({ chart: chart, ds: ds, run: run, tag: tag });
    return ds;
  }

  function setupCharts() {
    const loss = lineChart("chart-loss", "loss");
    bind(loss, "prime", "train/loss", "train loss");
    bind(loss, "prime", "eval/loss", "eval loss");
    const ev = lineChart("chart-eval", "F1", { y2: "eval loss" });
    bind(ev, "prime", "eval/f1", "eval F1");
    bind(ev, "prime", "eval/loss", "eval loss", "y2");
    const thr = lineChart("chart-throughput", "tokens/s", { y2: "samples/s" });
    bind(thr, "prime", "train/tokens_per_second", "tokens/s");
    bind(thr, "prime", "train/samples_per_second", "samples/s", "y2");
    lineChart("chart-gpu", "%", { xTitle: "seconds ago", y2: "MiB used" });
    lineChart("chart-trials", "eval loss");
  }

  // Trial datasets appear as trials report.
  function trialDataset(run) {
    const chart = state.charts["chart-trials"];
    for (const b of bindings) if (b.chart === chart && b.run === run) return b.ds;
    return bind(chart, run, "eval/loss", run);
  }

  function addPoints(run, tag, points) {
    if (!series[run]) series[run] = {};
    const list = series[run][tag] || (series[run][tag] = []);
    for (const p of points) list.push({ x: p[0], y: p[1] });
    if (list.length > MAX_POINTS) list.splice(0, list.length - MAX_POINTS);
    if (run.startsWith("trial-") && tag === "eval/loss") trialDataset(run);
  }

  function refreshCharts() {
    const touched = new Set();
    for (const b of bindings) {
      const list = (series[b.run] || {})[b.tag] || [];
      if (b.ds.data !== list) b.ds.data = list;
      touched.add(b.chart);
    }
    for (const c of touched) c.update("none");
  }

  function applyHistory(h) {
    const all = h.series || {};
    for (const run of Object.keys(all))
      for (const tag of Object.keys(all[run])) addPoints(run, tag, all[run][tag]);
    if (typeof h.cursor === "number") state.cursor = Math.max(state.cursor, h.cursor);
    refreshCharts();
  }

  // ---- panels ------------------------------------------------------------------------

  function applyStatus(s) {
    const job = s.job || {};
    text($("job-id"), job.id || "–");
    text($("attempt"), job.attempt != null ? String(job.attempt) : "–");
    text($("architecture"), job.architecture || "–");
    text($("mode"), job.mode || "–");
    text($("node"), (job.node != null ? job.node : "–") + (job.hostname ? " (" + job.hostname + ")" : ""));
    text($("phase"), s.phase || "starting");
    const ready = $("ready");
    text(ready, s.ready ? "ready" : "not ready");
    ready.className = "badge " + (s.ready ? "ok" : "bad");
    text($("elapsed"), fmtDuration(s.elapsed_seconds));
    const p = s.progress || {};
    text($("progress-text"), p.total ? p.done + " / " + p.total : "–");
    text($("eta"), p.eta_seconds != null ? fmtDuration(p.eta_seconds) : "–");
    $("progress-bar").style.width = (p.total ? Math.min(100, 100 * p.done / p.total) : 0) + "%";
    const t = s.telemetry || {};
    text($("scalars"), (t.scalars || 0) + " (" + (t.dropped || 0) + ")");
    applyGpus(s.gpus || [], s.time);
  }

  function applyGpus(gpus, time) {
    const tbody = $("gpus").tBodies[0];
    tbody.replaceChildren();
    if (!gpus.length) emptyRow(tbody, 6, "no GPU reported (NVML not available on this machine)");
    for (const g of gpus) {
      const tr = document.createElement("tr");
      cell(tr, String(g.index));
      cell(tr, g.name || "");
      cell(tr, g.util_percent != null ? String(g.util_percent) : "–");
      cell(tr, g.fb_used_mib != null ? Math.round(g.fb_used_mib) + " / " + Math.round(g.fb_free_mib) : "–");
      cell(tr, g.temp_c != null ? String(g.temp_c) : "–");
      cell(tr, g.power_w != null ? g.power_w.toFixed(0) : "–");
      tbody.appendChild(tr);
    }
    text($("gpu-note"), gpus.length ? "" : "No GPU readings: the runner found no NVML library.");
    $("chart-gpu").parentElement.style.display = gpus.length ? "" : "none";
    // GPU history is kept here from the status events (the server keeps only the latest).
    if (!gpus.length || time == null) return;
    state.gpuTime.push({ time: time, gpus: gpus });
    if (state.gpuTime.length > GPU_POINTS) state.gpuTime.shift();
    const chart = state.charts["chart-gpu"];
    const sets = {};
    for (const sample of state.gpuTime)
      for (const g of sample.gpus) {
        const ago = sample.time - time;
        if (g.util_percent != null) (sets["GPU " + g.index + " util %"] = sets["GPU " + g.index + " util %"] || { axis: "y", data: [] }).data.push({ x: ago, y: g.util_percent });
        if (g.fb_used_mib != null) (sets["GPU " + g.index + " MiB"] = sets["GPU " + g.index + " MiB"] || { axis: "y2", data: [] }).data.push({ x: ago, y: g.fb_used_mib });
      }
    chart.data.datasets = Object.keys(sets).map((label, i) => ({
      label: label, data: sets[label].data, yAxisID: sets[label].axis,
      borderColor: colors[i % colors.length], backgroundColor: colors[i % colors.length],
    }));
    chart.update("none");
  }

  function applyNodes(n) {
    const tbody = $("nodes").tBodies[0];
    tbody.replaceChildren();
    const nodes = n.nodes || [];
    if (!nodes.length) emptyRow(tbody, 5, "no nodes");
    for (const node of nodes) {
      const tr = document.createElement("tr");
      cell(tr, String(node.node != null ? node.node : node.index != null ? node.index : "–"));
      cell(tr, node.hostname || node.address || "");
      cell(tr, node.state || "");
      const workers = node.workers || [];
      cell(tr, Array.isArray(workers) ? String(workers.length) : String(workers));
      const gpus = node.gpus || [];
      cell(tr, Array.isArray(gpus) ? String(gpus.length) : String(gpus));
      tbody.appendChild(tr);
    }
  }

  function applyTrials(t) {
    const tbody = $("trials").tBodies[0];
    tbody.replaceChildren();
    const trials = (t.trials || []).slice().sort((a, b) => (a.id || 0) - (b.id || 0));
    if (!trials.length) emptyRow(tbody, 6, "no trials yet");
    for (const trial of trials) {
      const latest = trial.latest || {};
      const tr = document.createElement("tr");
      cell(tr, trial.run);
      cell(tr, String(trial.step));
      cell(tr, fmtNumber(latest["eval/loss"]));
      cell(tr, fmtNumber(latest["eval/f1"]));
      cell(tr, fmtNumber(latest["hparams/learning_rate"]));
      cell(tr, trial.updated ? new Date(trial.updated * 1000).toLocaleTimeString() : "–");
      tbody.appendChild(tr);
      trialDataset(trial.run);
    }
    refreshCharts();
  }

  function applyPreflight(p) {
    const box = $("preflight");
    box.replaceChildren();
    if (!p.available || !p.report) {
      box.className = "muted";
      text(box, "no report yet");
      return;
    }
    box.className = "";
    const report = p.report;
    const table = document.createElement("table");
    const head = table.createTHead().insertRow();
    for (const h of ["check", "result", "detail"]) {
      const th = document.createElement("th");
      th.textContent = h;
      head.appendChild(th);
    }
    const body = table.createTBody();
    const checks = Array.isArray(report.checks) ? report.checks
      : Object.keys(report).filter((k) => typeof report[k] === "object" && report[k] !== null &&
                                         !Array.isArray(report[k]))
          .map((k) => Object.assign({ name: k }, report[k]))
          .filter((c) => c.status != null || c.ok != null || c.passed != null);
    for (const c of checks) {
      const tr = body.insertRow();
      cell(tr, c.name || c.check || "");
      // A check says ok/passed, or a status: "ok"/"pass" good, "fail"/"error" bad, any
      // other status (e.g. "skipped") shown as it is.
      const status = c.status != null ? String(c.status) : null;
      const ok = c.ok != null ? c.ok : c.passed != null ? c.passed
        : ["ok", "pass", "passed"].includes(status) ? true
        : ["fail", "failed", "error"].includes(status) ? false : null;
      cell(tr, ok == null ? (status || "") : ok ? "ok" : "failed", ok == null ? "" : ok ? "check-ok" : "check-bad");
      const detail = Object.assign({}, c);
      delete detail.name; delete detail.check; delete detail.ok; delete detail.passed; delete detail.status;
      cell(tr, c.summary || c.message || c.detail || JSON.stringify(detail));
    }
    if (!checks.length) {
      const pre = document.createElement("pre");
      pre.textContent = JSON.stringify(report, null, 2);
      box.appendChild(pre);
      return;
    }
    // The verdict and what to change, above the table.
    const lines = [].concat(report.problems || [], report.warnings || []).map((x) =>
      typeof x === "string" ? x : x.message || x.summary || JSON.stringify(x));
    const verdict = document.createElement("p");
    verdict.className = report.ok === false ? "check-bad" : "check-ok";
    verdict.textContent = (report.ok === false ? "failed" : "passed") + (lines.length ? ": " + lines.join("; ") : "");
    box.appendChild(verdict);
    box.appendChild(table);
  }

  function appendLogs(l) {
    const pre = $("log");
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    for (const line of l.lines || []) {
      const div = document.createElement("div");
      const level = line.level || "info";
      div.className = "log-" + level;
      const extra = Object.assign({}, line);
      for (const k of ["ts", "level", "event", "msg", "seq"]) delete extra[k];
      const rest = Object.keys(extra).length ? " " + JSON.stringify(extra) : "";
      div.textContent = (line.ts || "") + " " + level.toUpperCase() + " " + (line.event || "") +
        (line.msg ? " " + line.msg : "") + rest;
      pre.appendChild(div);
    }
    while (pre.childNodes.length > LOG_LINES) pre.removeChild(pre.firstChild);
    if (typeof l.next === "number") state.logNext = Math.max(state.logNext, l.next);
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }

  // ---- live stream -------------------------------------------------------------------

  function connect() {
    const badge = $("stream");
    const src = new EventSource("/api/v1/events?cursor=" + state.cursor + "&logs=" + state.logNext);
    state.source = src;
    src.addEventListener("open", () => { text(badge, "live"); badge.className = "badge ok"; });
    src.addEventListener("status", (e) => applyStatus(JSON.parse(e.data)));
    src.addEventListener("history", (e) => applyHistory(JSON.parse(e.data)));
    src.addEventListener("logs", (e) => appendLogs(JSON.parse(e.data)));
    src.addEventListener("heartbeat", () => { state.lastHeartbeat = Date.now(); });
    src.addEventListener("error", () => {
      text(badge, "reconnecting");
      badge.className = "badge off";
      // EventSource retries by itself, but from its first URL: reopen from our cursors.
      src.close();
      setTimeout(connect, 2000);
    });
  }

  async function refreshSlowPanels() {
    try {
      const [nodes, trials, preflight] = await Promise.all([
        getJSON("/api/v1/nodes"), getJSON("/api/v1/trials"), getJSON("/api/v1/preflight")]);
      applyNodes(nodes);
      applyTrials(trials);
      applyPreflight(preflight);
    } catch (err) {
      console.warn("dashboard: refresh failed:", err.message);
    }
  }

  async function start() {
    setupCharts();
    const [status, history, logs] = await Promise.all([
      getJSON("/api/v1/status"), getJSON("/api/v1/history"), getJSON("/api/v1/logs?max=" + LOG_LINES)]);
    applyStatus(status);
    applyHistory(history);
    appendLogs(logs);
    await refreshSlowPanels();
    state.loaded = true;
    document.body.dataset.loaded = "true";
    connect();
    setInterval(refreshSlowPanels, 5000);
  }

  window.addEventListener("DOMContentLoaded", () => {
    start().catch((err) => {
      document.body.dataset.loaded = "error";
      console.error("dashboard: " + err.message);
    });
  });
})();
