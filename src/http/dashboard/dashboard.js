// The dashboard's one script. Once a second it reads /api/status, the
// samples after the last one it has (/api/history) and the process events
// after the last one it has (/api/events), then updates the page in place:
// rows are kept per job and per PID and only changed cells are written, so
// 200 jobs and 1,000 processes stay cheap. Each update's time is measured
// (performance.now) and shown in the header; window.gdDashboard exposes it.
// Text from the driver is only ever set as textContent.
"use strict";

(function () {
  const POLL_MS = 1000;
  const MAX_CHARTED = 8;
  const DEFAULT_CHARTED = 5;
  const MAX_EVENTS_SHOWN = 100;
  const TOKEN_KEY = "gearman-driver-token";
  const COLORS = ["#1f6feb", "#e8590c", "#2f9e44", "#ae3ec9", "#d6336c", "#0c8599", "#f59f00", "#495057"];

  const $ = (id) => document.getElementById(id);
  const num = new Intl.NumberFormat("en-US");
  const dec = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });

  const state = {
    token: sessionStorage.getItem(TOKEN_KEY) || "",
    writes: "unknown", // disabled | locked | open
    status: null,
    latest: {},
    history: { span: 900, times: [], series: {} },
    historyFor: "", // the charted jobs the history was fetched for
    charted: [],
    chartedChosen: false,
    lastEvent: 0,
    events: [],
    jobRows: new Map(),
    procRows: new Map(),
    charts: {},
    stats: { updates: 0, firstMs: 0, lastMs: 0, maxMs: 0, totalMs: 0, lastFetchMs: 0, failures: 0 },
  };

  // ---- formatting -------------------------------------------------------

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 0.01) return dec.format(seconds * 1000) + " ms";
    if (seconds < 1) return Math.round(seconds * 1000) + " ms";
    if (seconds < 60) return dec.format(seconds) + " s";
    const m = Math.floor(seconds / 60);
    if (m < 60) return m + "m " + Math.floor(seconds % 60) + "s";
    const h = Math.floor(m / 60);
    if (h < 48) return h + "h " + (m % 60) + "m";
    return Math.floor(h / 24) + "d " + (h % 24) + "h";
  }

  // Coarse, so that a thousand uptimes do not all change every second.
  function age(seconds) {
    if (seconds < 60) return Math.floor(seconds) + " s";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min";
    if (seconds < 48 * 3600) return dec.format(seconds / 3600) + " h";
    return dec.format(seconds / 86400) + " d";
  }

  function rate(r) {
    if (r === undefined || r === null) return "–";
    return r >= 100 ? num.format(Math.round(r)) : dec.format(r);
  }

  function bytes(b) {
    if (b === null || b === undefined) return "–";
    if (b < 1024 * 1024) return dec.format(b / 1024) + " KiB";
    return dec.format(b / (1024 * 1024)) + " MiB";
  }

  function clock(epoch) {
    const d = new Date(epoch * 1000);
    return d.toLocaleTimeString("en-GB", { hour12: false });
  }

  function ago(epoch) {
    if (!epoch) return "";
    return duration(Math.max(0, Date.now() / 1000 - epoch)) + " ago";
  }

  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }

  // Writes only what changed: an unchanged write still costs the browser
  // a style check, and there are thousands of cells.
  function setAttr(node, name, value) {
    if (node[name] !== value) node[name] = value;
  }

  function setStyle(node, name, value) {
    if (node.style.getPropertyValue(name) !== value) node.style.setProperty(name, value);
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function colorOf(job) {
    const i = state.charted.indexOf(job);
    return i < 0 ? null : COLORS[i % COLORS.length];
  }

  // ---- talking to the driver ---------------------------------------------

  async function getJSON(path, options) {
    const r = await fetch(path, Object.assign({ cache: "no-store" }, options));
    if (!r.ok) throw new Error(path + ": HTTP " + r.status);
    return r.json();
  }

  async function post(path, body) {
    const headers = { Authorization: "Bearer " + state.token };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(path, {
      method: "POST",
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let answer = {};
    try { answer = await r.json(); } catch (_) { /* an empty or non-JSON answer */ }
    if (r.status === 401 || r.status === 403) setAccess(r.status === 403 ? "disabled" : "locked", answer.error);
    if (!r.ok) throw new Error(answer.error || "HTTP " + r.status);
    return answer;
  }

  // ---- access -------------------------------------------------------------

  async function checkAccess() {
    const headers = state.token ? { Authorization: "Bearer " + state.token } : {};
    try {
      const answer = await getJSON("/api/access", { headers });
      setAccess(answer.writes, state.token ? answer.error : "");
    } catch (e) {
      setAccess("locked", "");
    }
  }

  function setAccess(writes, message) {
    state.writes = writes;
    document.body.classList.toggle("actions-open", writes === "open");
    $("access-readonly").hidden = writes === "open";
    $("access-open").hidden = writes !== "open";
    $("token-form").hidden = writes !== "locked";
    if (writes === "disabled") {
      setText($("access-text"), "Actions are off: this driver has no admin token. Set admin_token_file " +
        "in its config and restart or reload it to set limits, kill processes and reload from here.");
    } else if (writes === "locked") {
      setText($("access-text"), "Enter the admin token to set limits, kill processes and reload.");
    }
    if (writes !== "open" && state.token && message) {
      state.token = "";
      sessionStorage.removeItem(TOKEN_KEY);
      setText($("token-err"), message);
    }
  }

  function setupAccess() {
    $("token-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      state.token = $("token").value.trim();
      $("token").value = "";
      setText($("token-err"), "");
      if (!state.token) return;
      sessionStorage.setItem(TOKEN_KEY, state.token);
      checkAccess();
    });
    $("lock").addEventListener("click", () => {
      state.token = "";
      sessionStorage.removeItem(TOKEN_KEY);
      checkAccess();
    });
    $("reload").addEventListener("click", () => {
      setText($("reload-err"), "");
      setText($("reload-ok"), "");
      post("/api/reload")
        .then((a) => setText($("reload-ok"), (a.changes || []).join("; ") || "reloaded"))
        .catch((e) => setText($("reload-err"), e.message))
        .finally(refreshSoon);
    });
  }

  // ---- header and cards ---------------------------------------------------

  function renderHeader(status) {
    setText($("version"), "v" + status.version + " · up " + duration(Date.now() / 1000 - status.started));
    const box = $("servers");
    if (box.childElementCount !== status.servers.length) {
      box.replaceChildren(...status.servers.map(() => {
        const s = el("span", "server");
        s.append(el("span", "dot"), el("span"));
        return s;
      }));
    }
    status.servers.forEach((srv, i) => {
      const s = box.children[i];
      s.classList.toggle("down", !srv.up);
      setText(s.lastChild, srv.address + (srv.up ? "" : " down"));
      s.title = srv.up ? "answered the last status poll" : "did not answer the last status poll";
    });
  }

  function renderCards(status) {
    const t = { starting: 0, idle: 0, busy: 0, stopping: 0 };
    let waiting = 0, running = 0, done = 0, failed = 0;
    for (const j of status.jobs) {
      for (const k in t) t[k] += j.processes[k];
      waiting += j.waiting;
      running += j.running;
      const l = state.latest[j.name];
      if (l) { done += l.done; failed += l.failed; }
    }
    setText($("c-jobs"), num.format(status.jobs.length));
    setText($("c-procs"), num.format(status.processes.length));
    const parts = ["busy", "idle", "starting", "stopping"].filter((k) => t[k]).map((k) => t[k] + " " + k);
    setText($("c-procs-sub"), parts.join(" · "));
    setText($("c-waiting"), num.format(waiting));
    setText($("c-running"), num.format(running) + " running");
    setText($("c-done"), rate(done));
    setText($("c-failed"), rate(failed));
  }

  // ---- jobs table ---------------------------------------------------------

  function jobRow(name) {
    const tr = el("tr");
    const c = {};
    const cell = (key, cls) => { c[key] = el("td", cls); tr.append(c[key]); return c[key]; };
    const pick = el("button", "swatch");
    pick.type = "button";
    pick.title = "chart this job";
    pick.addEventListener("click", () => toggleCharted(name));
    cell("pick").append(pick);
    cell("name", "job").textContent = name;
    cell("min", "n"); cell("max", "n");
    const procs = cell("procs");
    const states = el("div", "states");
    const bar = el("div", "bar");
    const segs = {};
    for (const k of ["busy", "idle", "starting", "stopping"]) { segs[k] = el("i", k); bar.append(segs[k]); }
    procs.append(states, bar);
    cell("waiting", "n"); cell("running", "n"); cell("workers", "n");
    cell("done", "n"); cell("failed", "n"); cell("p50", "n"); cell("p95", "n");
    const errCell = cell("error", "error");
    const when = el("span", "when");
    const msg = el("span");
    errCell.append(when, msg);
    const act = cell("action", "action");
    const min = el("input"); min.type = "number"; min.min = "0"; min.setAttribute("aria-label", "min processes");
    const max = el("input"); max.type = "number"; max.min = "0"; max.setAttribute("aria-label", "max processes");
    for (const i of [min, max]) i.addEventListener("input", () => { i.dataset.dirty = "1"; });
    const set = el("button", "set", "Set");
    set.type = "button";
    const killall = el("button", "danger killall", "Kill all");
    killall.type = "button";
    const err = el("span", "err");
    act.append(min, " – ", max, " ", set, " ", killall, err);
    set.addEventListener("click", () => {
      setText(err, "");
      const body = {};
      if (min.value !== "") body.min = Number(min.value);
      if (max.value !== "") body.max = Number(max.value);
      post("/api/jobs/" + encodeURIComponent(name) + "/processes", body)
        .then(() => { delete min.dataset.dirty; delete max.dataset.dirty; })
        .catch((e) => setText(err, e.message))
        .finally(refreshSoon);
    });
    killall.addEventListener("click", () => {
      setText(err, "");
      post("/api/jobs/" + encodeURIComponent(name) + "/killall")
        .catch((e) => setText(err, e.message))
        .finally(refreshSoon);
    });
    return { tr, c, pick, states, segs, when, msg, min, max, err };
  }

  function renderJobs(status) {
    const filter = $("job-filter").value.trim().toLowerCase();
    const body = $("jobs").tBodies[0];
    const seen = new Set();
    let i = 0;
    for (const j of status.jobs) {
      seen.add(j.name);
      let row = state.jobRows.get(j.name);
      if (!row) { row = jobRow(j.name); state.jobRows.set(j.name, row); }
      const show = !filter || j.name.toLowerCase().includes(filter);
      setAttr(row.tr, "hidden", !show);
      // Keep the rows in the API's (name) order.
      if (body.children[i] !== row.tr) body.insertBefore(row.tr, body.children[i] || null);
      i++;
      const c = row.c;
      const color = colorOf(j.name);
      if (row.pick.classList.contains("on") !== !!color) row.pick.classList.toggle("on", !!color);
      setStyle(row.pick, "--c", color || "#cdd4de");
      setText(c.min, String(j.min));
      setText(c.max, String(j.max));
      const p = j.processes;
      const total = p.busy + p.idle + p.starting + p.stopping;
      const parts = [];
      if (p.busy) parts.push(p.busy + " busy");
      if (p.idle) parts.push(p.idle + " idle");
      if (p.starting) parts.push(p.starting + " starting");
      if (p.stopping) parts.push(p.stopping + " stopping");
      setText(row.states, total + (parts.length ? " · " + parts.join(", ") : ""));
      const width = Math.max(total, j.max, 1);
      for (const k in row.segs) setStyle(row.segs[k], "width", (100 * p[k] / width).toFixed(1) + "%");
      setText(c.waiting, num.format(j.waiting));
      setText(c.running, num.format(j.running));
      setText(c.workers, num.format(j.workers));
      const l = state.latest[j.name];
      setText(c.done, l ? rate(l.done) : "–");
      setText(c.failed, l ? rate(l.failed) : "–");
      setText(c.p50, l ? duration(l.p50) : "–");
      setText(c.p95, l ? duration(l.p95) : "–");
      setText(row.when, j.lasterror ? ago(j.lasterror) : "");
      setText(row.msg, j.message);
      setAttr(c.error, "title", j.message);
      for (const [input, value] of [[row.min, j.min], [row.max, j.max]]) {
        if (document.activeElement !== input && !input.dataset.dirty && input.value !== String(value)) input.value = value;
      }
    }
    for (const [name, row] of state.jobRows) {
      if (!seen.has(name)) { row.tr.remove(); state.jobRows.delete(name); }
    }
  }

  // ---- processes table ----------------------------------------------------

  // A process's row is keyed by its PID; an http job's slots have none,
  // and are told apart by their place among the job's slots.
  function procKeys(processes) {
    const slots = new Map();
    return processes.map((p) => {
      if (p.pid !== null) return p.pid;
      const n = (slots.get(p.job) || 0) + 1;
      slots.set(p.job, n);
      return "slot " + n + " of " + p.job;
    });
  }

  function procRow(pid) {
    const tr = el("tr");
    const c = {};
    for (const [key, cls] of [["pid", "n"], ["job", "pjob"], ["state"], ["fn", "fn"], ["busy", "n"], ["jobs", "n"], ["uptime", "n"], ["cpu", "n"], ["rss", "n"], ["action", "action"]]) {
      c[key] = el("td", cls);
      tr.append(c[key]);
    }
    c.pid.textContent = typeof pid === "number" ? String(pid) : "–";
    const badge = el("span", "state");
    c.state.append(badge);
    const kill = el("button", "danger", "Kill");
    kill.type = "button";
    const err = el("span", "err");
    // A slot has no process to kill.
    if (typeof pid === "number") c.action.append(kill, err);
    kill.addEventListener("click", () => {
      setText(err, "");
      post("/api/processes/" + pid + "/kill")
        .catch((e) => setText(err, e.message))
        .finally(refreshSoon);
    });
    return { tr, c, badge, state: "" };
  }

  // Only the rows in view (and a few around) are in the document: the
  // table costs the same with ten processes or ten thousand. Rows are kept
  // per PID, so a row's error stays with its process.
  const PROC_ROW_PX = 30;
  const procView = { top: 0, height: 520, list: [], topSpacer: null, bottomSpacer: null };

  function setupProcs() {
    const box = $("procs-box");
    procView.topSpacer = spacer();
    procView.bottomSpacer = spacer();
    box.addEventListener("scroll", () => {
      procView.top = box.scrollTop;
      requestAnimationFrame(placeProcs);
    }, { passive: true });
    new ResizeObserver(() => {
      procView.height = box.clientHeight;
      placeProcs();
    }).observe(box);
  }

  function spacer() {
    const tr = el("tr", "spacer");
    const td = el("td");
    td.colSpan = 10;
    tr.append(td);
    return tr;
  }

  function renderProcs(status) {
    const filter = $("proc-filter").value.trim().toLowerCase();
    const keys = procKeys(status.processes);
    const all = status.processes.map((p, i) => ({ key: keys[i], p }));
    procView.list = filter
      ? all.filter(({ p }) => p.job.toLowerCase().includes(filter) || p.state === filter)
      : all;
    const alive = new Set(keys);
    for (const key of state.procRows.keys()) if (!alive.has(key)) state.procRows.delete(key);
    placeProcs();
    const n = status.processes.length;
    setText($("proc-count"), filter ? procView.list.length + " of " + n : String(n));
  }

  function placeProcs() {
    const list = procView.list;
    const first = Math.max(0, Math.floor(procView.top / PROC_ROW_PX) - 10);
    const last = Math.min(list.length, first + Math.ceil(procView.height / PROC_ROW_PX) + 20);
    const rows = [procView.topSpacer];
    for (let i = first; i < last; i++) {
      const { key, p } = list[i];
      let row = state.procRows.get(key);
      if (!row) { row = procRow(key); state.procRows.set(key, row); }
      updateProc(row, p);
      rows.push(row.tr);
    }
    rows.push(procView.bottomSpacer);
    setStyle(procView.topSpacer.firstChild, "height", first * PROC_ROW_PX + "px");
    setStyle(procView.bottomSpacer.firstChild, "height", (list.length - last) * PROC_ROW_PX + "px");
    const body = $("procs").tBodies[0];
    let same = body.childElementCount === rows.length;
    for (let i = 0; same && i < rows.length; i++) same = body.children[i] === rows[i];
    if (!same) body.replaceChildren(...rows);
  }

  function updateProc(row, p) {
    const c = row.c;
    setText(c.job, p.job);
    setAttr(c.job, "title", p.job);
    if (row.state !== p.state) {
      row.badge.className = "state " + p.state;
      row.badge.textContent = p.state;
      row.state = p.state;
    }
    // A job's function is mostly its own name: shown only when it is not.
    const fn = p.function && p.function !== p.job ? p.function : "";
    setText(c.fn, fn);
    setAttr(c.fn, "title", p.function || "");
    setText(c.busy, p.busy_for === null ? "" : duration(p.busy_for));
    setText(c.jobs, num.format(p.jobs));
    setText(c.uptime, age(p.uptime));
    setText(c.cpu, p.cpu === null ? "–" : dec.format(p.cpu));
    setText(c.rss, bytes(p.rss));
  }

  // ---- events -------------------------------------------------------------

  function renderEvents(fresh) {
    if (!fresh.length && state.events.length) return;
    const list = $("events");
    for (const e of fresh) {
      const li = el("li");
      li.append(el("span", "when", clock(e.at)));
      const label = e.kind === "exit" ? e.cause : e.kind === "crash_loop" ? "crash loop" : "start";
      li.append(el("span", "kind " + (e.kind === "exit" ? e.cause : e.kind), label));
      const what = el("span", "what");
      what.append(el("b", "", e.job), document.createTextNode((e.pid ? " (" + e.pid + ")" : "") + ": " + e.text));
      li.append(what);
      list.prepend(li);
      state.events.push(e);
    }
    while (list.childElementCount > MAX_EVENTS_SHOWN) list.lastChild.remove();
    if (!list.childElementCount) list.append(el("li", "empty", "No process events yet."));
    else for (const e of list.querySelectorAll(".empty")) e.remove();
    if (state.events.length > MAX_EVENTS_SHOWN) state.events.splice(0, state.events.length - MAX_EVENTS_SHOWN);
  }

  // ---- charts -------------------------------------------------------------

  function chooseCharted(status) {
    if (state.chartedChosen || !status.jobs.length) return;
    const score = (j) => {
      const l = state.latest[j.name] || { done: 0, failed: 0 };
      return j.waiting + j.running + j.processes.busy + l.done + l.failed;
    };
    state.charted = status.jobs
      .map((j) => [score(j), j.name])
      .sort((a, b) => b[0] - a[0] || (a[1] < b[1] ? -1 : 1))
      .slice(0, DEFAULT_CHARTED)
      .map((x) => x[1]);
    state.chartedChosen = true;
  }

  function toggleCharted(name) {
    state.chartedChosen = true;
    const i = state.charted.indexOf(name);
    if (i >= 0) state.charted.splice(i, 1);
    else if (state.charted.length < MAX_CHARTED) state.charted.push(name);
    if (state.status) renderJobs(state.status);
    refreshSoon();
  }

  function historyQuery(after) {
    const q = state.charted.map((j) => "job=" + encodeURIComponent(j));
    if (after !== undefined) q.push("after=" + after);
    return "/api/history?" + q.join("&");
  }

  // The samples for the charted jobs: all of them once, then what is new.
  async function fetchHistory() {
    const key = state.charted.join("\n");
    const h = state.history;
    if (key !== state.historyFor || !h.times.length) {
      const full = await getJSON(historyQuery());
      state.historyFor = key;
      state.history = { span: full.span, times: full.times, series: full.series };
      state.latest = full.latest;
      return true;
    }
    const fresh = await getJSON(historyQuery(h.times[h.times.length - 1]));
    state.latest = fresh.latest;
    if (!fresh.times.length) return false;
    h.times.push(...fresh.times);
    for (const job of state.charted) {
      const mine = h.series[job];
      const theirs = fresh.series[job];
      if (!mine || !theirs) { state.historyFor = ""; continue; }
      for (const k in mine) mine[k].push(...theirs[k]);
    }
    const oldest = h.times[h.times.length - 1] - h.span;
    let drop = 0;
    while (drop < h.times.length && h.times[drop] < oldest) drop++;
    if (drop) {
      h.times.splice(0, drop);
      for (const s of Object.values(h.series)) for (const k in s) s[k].splice(0, drop);
    }
    return true;
  }

  const CHARTS = {
    waiting: (s) => [s.waiting],
    processes: (s) => [s.processes],
    throughput: (s) => [s.done, s.failed],
  };

  function chartData(kind) {
    const h = state.history;
    const data = [h.times];
    for (const job of state.charted) {
      const s = h.series[job];
      for (const values of CHARTS[kind](s || {})) data.push(values || h.times.map(() => null));
    }
    return data;
  }

  function makeChart(kind) {
    const box = $("chart-" + kind);
    const series = [{}];
    for (const job of state.charted) {
      const stroke = colorOf(job);
      series.push({ label: job, stroke, width: 2, points: { show: false } });
      if (kind === "throughput") series.push({ label: job + " failed", stroke, width: 1.5, dash: [4, 4], points: { show: false } });
    }
    const opts = {
      width: Math.max(200, box.clientWidth),
      height: 190,
      series,
      legend: { show: false },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: (u, lo, hi) => [0, Math.max(hi * 1.1, kind === "throughput" ? 1 : 4)] } },
      axes: [
        { stroke: "#6b7685", grid: { stroke: "#eef1f5" }, ticks: { stroke: "#e3e7ee" } },
        { stroke: "#6b7685", grid: { stroke: "#eef1f5" }, ticks: { stroke: "#e3e7ee" }, size: 48 },
      ],
    };
    box.replaceChildren();
    return new uPlot(opts, chartData(kind), box);
  }

  function renderCharts(rebuilt) {
    const key = state.charted.join("\n");
    for (const kind in CHARTS) {
      if (rebuilt || !state.charts[kind] || state.charts[kind].key !== key) {
        if (state.charts[kind]) state.charts[kind].destroy();
        state.charts[kind] = makeChart(kind);
        state.charts[kind].key = key;
      } else {
        state.charts[kind].setData(chartData(kind));
      }
    }
    const legend = $("legend");
    legend.replaceChildren(...state.charted.map((job) => {
      const s = el("span", "", job);
      s.style.setProperty("--c", colorOf(job));
      return s;
    }));
  }

  function setupCharts() {
    const observer = new ResizeObserver(() => {
      for (const kind in state.charts) {
        const box = $("chart-" + kind);
        state.charts[kind].setSize({ width: Math.max(200, box.clientWidth), height: 190 });
      }
    });
    for (const kind in CHARTS) observer.observe($("chart-" + kind));
  }

  // ---- the loop -------------------------------------------------------------

  let timer = null;
  let running = false;

  function refreshSoon() {
    clearTimeout(timer);
    timer = setTimeout(update, 50);
  }

  async function update() {
    if (running) return;
    running = true;
    clearTimeout(timer);
    const started = performance.now();
    try {
      const [status, events] = await Promise.all([
        getJSON("/api/status"),
        getJSON("/api/events?after=" + state.lastEvent),
      ]);
      // A restarted driver numbers its events from 1 again.
      if (events.last < state.lastEvent) {
        state.lastEvent = 0;
        state.events = [];
        $("events").replaceChildren();
        return;
      }
      const names = new Set(status.jobs.map((j) => j.name));
      state.charted = state.charted.filter((j) => names.has(j));
      chooseCharted(status);
      const historyChanged = await fetchHistory();
      const fetched = performance.now();
      state.stats.lastFetchMs = fetched - started;
      state.status = status;
      renderHeader(status);
      renderCards(status);
      renderJobs(status);
      renderProcs(status);
      renderEvents(events.events);
      if (events.events.length) state.lastEvent = events.events[events.events.length - 1].seq;
      if (historyChanged || !state.charts.waiting) renderCharts(false);
      // Until the browser has laid out and painted the result, so that the
      // time is what the update costs the page, not only the script.
      const scripted = performance.now();
      await nextPaint();
      record(performance.now() - fetched, scripted - fetched);
      $("pulse").classList.remove("stale");
    } catch (e) {
      state.stats.failures++;
      $("pulse").classList.add("stale");
      setText($("pulse-text"), "no answer from the driver (" + e.message + "); retrying");
    } finally {
      running = false;
      timer = setTimeout(update, Math.max(0, POLL_MS - (performance.now() - started)));
    }
  }

  // After the next frame is drawn: a timeout queued from the frame's
  // callback runs once style, layout and paint are done. A hidden page
  // draws no frames; it goes on after a second.
  function nextPaint() {
    return new Promise((resolve) => {
      const fallback = setTimeout(resolve, 1000);
      requestAnimationFrame(() => setTimeout(() => { clearTimeout(fallback); resolve(); }, 0));
    });
  }

  // The first update builds every row and chart; the later ones are what
  // keeps the page responsive, so they are counted apart.
  function record(ms, scriptMs) {
    const s = state.stats;
    s.lastScriptMs = scriptMs;
    s.maxScriptMs = Math.max(s.maxScriptMs || 0, s.updates ? scriptMs : 0);
    s.updates++;
    s.lastMs = ms;
    if (s.updates === 1) s.firstMs = ms;
    else { s.maxMs = Math.max(s.maxMs, ms); s.totalMs += ms; }
    setText($("pulse-text"), "live · updated " + clock(Date.now() / 1000) + " · " + dec.format(ms) + " ms");
  }

  // For tests and the curious: what the charts hold, and how long updates take.
  window.gdDashboard = {
    stats: () => Object.assign({ meanMs: state.stats.updates > 1 ? state.stats.totalMs / (state.stats.updates - 1) : 0 }, state.stats),
    charted: () => state.charted.slice(),
    chartData: (kind, job) => {
      const s = state.history.series[job];
      return s ? { times: state.history.times.slice(), values: CHARTS[kind](s)[0].slice() } : null;
    },
    writes: () => state.writes,
    // What a chart draws now for a job: its first series (done for throughput).
    plotted: (kind, job) => {
      const i = state.charted.indexOf(job);
      const chart = state.charts[kind];
      if (i < 0 || !chart) return null;
      const values = chart.data[1 + i * (kind === "throughput" ? 2 : 1)];
      return values ? Array.from(values) : null;
    },
  };

  document.addEventListener("DOMContentLoaded", () => {
    setupAccess();
    setupCharts();
    setupProcs();
    $("job-filter").addEventListener("input", () => state.status && renderJobs(state.status));
    $("proc-filter").addEventListener("input", () => state.status && renderProcs(state.status));
    checkAccess();
    update();
  });
})();
