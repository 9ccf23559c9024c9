/* Gestor console: live alarms, rates, reports, subscribers, rule and catalogue versions.
 * Plain DOM, no framework. Every call carries the operator key from sessionStorage; the alarm
 * websocket carries it as a subprotocol (browsers cannot set a websocket's headers). */
"use strict";

const KEY = "gestor.operator-key";
const ROLE_RANK = { viewer: 1, operator: 2, admin: 3 };
const MAX_ROWS = 300;        // alarms kept on the page (older ones are paged from the API)
const PAGE = 100;            // alarms per page
const RATE_POINTS = 300;     // seconds of rates kept in the charts
const BIG = "9223372036854775807";

const $ = (id) => document.getElementById(id);
let me = null;

/* -- small helpers ------------------------------------------------------------------------ */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}
function clear(node, ...children) { node.replaceChildren(...children.filter((c) => c != null)); }
function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString(undefined, { hour12: false });
}
function fmtNum(n, digits = 0) {
  if (n === null || n === undefined || !isFinite(n)) return "–";
  return Number(n).toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: digits });
}
function fmtMoney(minor) { return minor === null || minor === undefined ? "–" : fmtNum(minor / 100, 2); }
function may(role) { return me && ROLE_RANK[me.role] >= ROLE_RANK[role]; }
function problemText(r) {
  const d = r.data;
  if (d && typeof d === "object") return `${r.status} ${d.code || ""}: ${d.detail || d.title || ""}`;
  return `${r.status}`;
}

async function api(path, opts = {}) {
  const headers = { Accept: "application/json", Authorization: "Bearer " + sessionStorage.getItem(KEY) };
  let body = opts.body;
  if (body !== undefined && typeof body !== "string") {
    body = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(path, { method: opts.method || "GET", headers, body, cache: "no-store" });
  } catch (err) {
    return { status: 0, ok: false, data: { detail: "the server did not answer" } };
  }
  const type = response.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await response.json() : await response.text();
  if (response.status === 401 && me) signOut("the key was refused: sign in again");
  return { status: response.status, ok: response.ok, data };
}

/* -- signing in --------------------------------------------------------------------------- */
async function signIn(key) {
  sessionStorage.setItem(KEY, key);
  const r = await api("/v1/admin/me");
  if (!r.ok) {
    sessionStorage.removeItem(KEY);
    $("signin-error").textContent = r.status === 401 ? "This key is not valid." : problemText(r);
    return;
  }
  me = r.data;
  $("signin").hidden = true;
  $("app").hidden = false;
  $("nav").hidden = false;
  $("who").hidden = false;
  $("who-name").textContent = me.name;
  $("who-role").textContent = me.role;
  document.body.dataset.role = me.role;
  Alarms.start();
  Rates.start();
  Reports.start();
  Versions.start();
}

function signOut(message) {
  sessionStorage.removeItem(KEY);
  me = null;
  Alarms.stop();
  Rates.stop();
  Reports.stop();
  $("app").hidden = true;
  $("nav").hidden = true;
  $("who").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = message || "";
  $("key").value = "";
  $("key").focus();
}

/* -- alarms ------------------------------------------------------------------------------- */
const Alarms = {
  byId: new Map(),     // id -> alarm (the listing's shape: the feed's fields and lifecycle)
  rows: new Map(),     // id -> <tr> on the page
  pending: [],         // alarms received, not yet drawn (drawn once per animation frame)
  unconfirmed: new Set(), // live alarm ids whose lifecycle was not read yet
  lastId: 0,
  limit: MAX_ROWS,
  selected: null,
  socket: null,
  retry: 1000,
  frame: 0,
  timers: [],
  received: 0,
  stopped: true,

  async start() {
    this.stopped = false;
    $("alarm-filter").onchange = () => this.reload();
    $("alarm-older").onclick = () => this.older();
    $("alarm-rows").onclick = (e) => { const tr = e.target.closest("tr"); if (tr) this.select(Number(tr.dataset.id)); };
    $("alarm-rows").onkeydown = (e) => {
      if (e.key !== "Enter" && e.key !== " ") return;
      const tr = e.target.closest("tr");
      if (tr) { e.preventDefault(); this.select(Number(tr.dataset.id)); }
    };
    await this.reload();
    this.timers.push(setInterval(() => this.confirm(), 1000));
    this.timers.push(setInterval(() => this.showRate(), 1000));
    this.timers.push(setInterval(() => this.refreshAcknowledged(), 10000));
  },

  /* Acknowledgements made elsewhere (another operator, the CLI) are not on the feed: every
   * 10 s, the acknowledged alarms among those shown. */
  async refreshAcknowledged() {
    const open = [...this.byId.values()].filter((a) => a.state === "open" && !a.acknowledged);
    if (!open.length) return;
    const since = Math.min(...open.map((a) => a.id)) - 1;
    const r = await api(`/v1/admin/alarms?state=acknowledged&since=${since}&limit=1000`);
    if (!r.ok) return;
    for (const alarm of r.data.alarms) {
      const known = this.byId.get(alarm.id);
      if (known && !known.acknowledged) this.update(alarm);
    }
  },

  stop() {
    this.stopped = true;
    this.timers.forEach(clearInterval);
    this.timers = [];
    if (this.socket) this.socket.close(1000);
    this.socket = null;
  },

  filter() { return $("alarm-filter").value; },

  matches(alarm) {
    const f = this.filter();
    if (!f) return true;
    const acked = !!alarm.acknowledged;
    if (f === "open") return alarm.state === "open";
    if (f === "acknowledged") return alarm.state === "open" && acked;
    if (f === "unacknowledged") return alarm.state === "open" && !acked;
    if (f === "resolved") return alarm.state === "resolved";
    return true;
  },

  async reload() {
    const state = this.filter();
    const r = await api(`/v1/admin/alarms?before=${BIG}&limit=${PAGE}` + (state ? `&state=${state}` : ""));
    this.byId.clear();
    this.rows.clear();
    this.limit = MAX_ROWS;
    clear($("alarm-rows"));
    if (!r.ok) { $("alarm-count").textContent = problemText(r); return; }
    for (const alarm of r.data.alarms) this.byId.set(alarm.id, alarm);
    const ids = [...this.byId.keys()].sort((a, b) => b - a);
    const fragment = document.createDocumentFragment();
    for (const id of ids) fragment.append(this.row(this.byId.get(id)));
    $("alarm-rows").append(fragment);
    $("alarm-older").disabled = r.data.next === null;
    if (!this.socket) {
      // The feed replays every alarm after the newest one listed, then live ones.
      const newest = await api(`/v1/admin/alarms?before=${BIG}&limit=1`);
      this.lastId = newest.ok && newest.data.alarms.length ? newest.data.alarms[0].id : 0;
      this.connect();
    }
    this.count();
  },

  connect() {
    if (this.stopped) return;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const key = sessionStorage.getItem(KEY) || "";
    const encoded = btoa(unescape(encodeURIComponent(key))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    const socket = new WebSocket(`${scheme}//${location.host}/v1/alarms?since=${this.lastId}`,
      ["gestor.v1", "gestor.key." + encoded]);
    this.socket = socket;
    this.status("connecting", "");
    socket.onopen = () => { this.retry = 1000; this.status("live", "live"); };
    socket.onmessage = (event) => {
      const alarm = JSON.parse(event.data);
      if (alarm.id) this.lastId = Math.max(this.lastId, alarm.id);
      this.received += 1;
      this.pending.push(alarm);
      if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
    };
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.stopped) return;
      this.status(`reconnecting in ${Math.round(this.retry / 1000)} s`, "down");
      setTimeout(() => { if (!this.socket) this.connect(); }, this.retry);
      this.retry = Math.min(this.retry * 2, 15000);
    };
  },

  status(text, kind) {
    const badge = $("feed-status");
    badge.textContent = text;
    badge.className = "badge " + kind;
  },

  showRate() {
    const now = performance.now();
    if (this._at) {
      const perSecond = (this.received - this._count) / ((now - this._at) / 1000);
      $("feed-rate").textContent = `${fmtNum(perSecond, 0)} alarms/s · ${fmtNum(this.received)} received`;
    }
    this._at = now;
    this._count = this.received;
  },

  /* One DOM update per animation frame, however many alarms arrived meanwhile. */
  flush() {
    this.frame = 0;
    const batch = this.pending;
    this.pending = [];
    const fresh = [];
    for (const event of batch) {
      if (event.kind === "resolved" && event.details && Array.isArray(event.details.resolves)) {
        for (const id of event.details.resolves) {
          const settled = this.byId.get(id);
          if (settled) this.update({ ...settled, state: "resolved", resolved_by: event.id, resolved_at: event.at });
        }
      }
      if (!event.id || this.byId.has(event.id)) continue;
      const alarm = { ...event, state: event.kind === "resolved" ? null : "…", acknowledged: null };
      this.unconfirmed.add(alarm.id);
      this.byId.set(alarm.id, alarm);
      if (this.matches(alarm) || alarm.state === "…") fresh.push(alarm);
    }
    if (fresh.length) {
      fresh.sort((a, b) => b.id - a.id);
      const fragment = document.createDocumentFragment();
      for (const alarm of fresh) fragment.append(this.row(alarm));
      $("alarm-rows").prepend(fragment);
    }
    this.trim();
    this.count();
  },

  /* Keep the page bounded: the oldest rows (and what they hold) go. */
  trim() {
    const tbody = $("alarm-rows");
    while (tbody.rows.length > this.limit) {
      const last = tbody.lastElementChild;
      const id = Number(last.dataset.id);
      last.remove();
      this.rows.delete(id);
      if (id !== this.selected) this.byId.delete(id);
      this.unconfirmed.delete(id);
    }
    $("alarm-older").disabled = false;
    if (this.byId.size > this.limit * 2) {  // alarms filtered out of view
      for (const id of [...this.byId.keys()].sort((a, b) => a - b)) {
        if (this.byId.size <= this.limit) break;
        if (!this.rows.has(id) && id !== this.selected) { this.byId.delete(id); this.unconfirmed.delete(id); }
      }
    }
  },

  count() {
    $("alarm-count").textContent = `${$("alarm-rows").rows.length} shown`;
  },

  /* The lifecycle (state, acknowledgement) of live alarms: one listing a second at most. */
  async confirm() {
    if (!this.unconfirmed.size || this._confirming) return;
    this._confirming = true;
    try {
      const ids = [...this.unconfirmed].sort((a, b) => a - b);
      const r = await api(`/v1/admin/alarms?since=${ids[0] - 1}&limit=1000`);
      if (!r.ok) return;
      for (const alarm of r.data.alarms) {
        if (this.unconfirmed.delete(alarm.id) && this.byId.has(alarm.id)) this.update(alarm);
      }
      const top = r.data.alarms.length ? r.data.alarms[r.data.alarms.length - 1].id : ids[0];
      if (r.data.next === null) for (const id of ids) if (id <= top) this.unconfirmed.delete(id);
    } finally {
      this._confirming = false;
    }
  },

  stateText(alarm) {
    if (alarm.state === "open" && alarm.acknowledged) return "acknowledged";
    return alarm.state || "event";
  },

  row(alarm) {
    const state = this.stateText(alarm);
    const tr = el("tr", { "data-id": alarm.id, tabindex: 0, "aria-current": alarm.id === this.selected ? "true" : null },
      el("td", { class: "num", text: alarm.id }),
      el("td", { text: fmtTime(alarm.at) }),
      el("td", { class: "sev-" + alarm.severity, text: alarm.severity }),
      el("td", { text: alarm.kind }),
      el("td", { class: "state st-" + state, text: state }),
      el("td", { text: alarm.msisdn || "" }),
      el("td", { text: alarm.message }));
    this.rows.set(alarm.id, tr);
    return tr;
  },

  update(alarm) {
    const known = this.byId.get(alarm.id);
    if (!known) return;
    this.byId.set(alarm.id, alarm);
    const tr = this.rows.get(alarm.id);
    if (tr) {
      if (this.matches(alarm)) tr.replaceWith(this.row(alarm));
      else { tr.remove(); this.rows.delete(alarm.id); }
    }
    if (alarm.id === this.selected) this.detail(alarm);
  },

  async older() {
    const shown = [...this.rows.keys()];
    const oldest = shown.length ? Math.min(...shown) : BIG;
    const state = this.filter();
    const r = await api(`/v1/admin/alarms?before=${oldest}&limit=${PAGE}` + (state ? `&state=${state}` : ""));
    if (!r.ok) { $("alarm-count").textContent = problemText(r); return; }
    const fragment = document.createDocumentFragment();
    for (const alarm of r.data.alarms) {
      if (this.rows.has(alarm.id)) continue;
      this.byId.set(alarm.id, alarm);
      fragment.append(this.row(alarm));
    }
    this.limit += r.data.alarms.length;
    $("alarm-rows").append(fragment);
    $("alarm-older").disabled = r.data.next === null;
    this.count();
  },

  select(id) {
    const before = this.rows.get(this.selected);
    if (before) before.removeAttribute("aria-current");
    this.selected = id;
    const tr = this.rows.get(id);
    if (tr) tr.setAttribute("aria-current", "true");
    const alarm = this.byId.get(id);
    if (alarm) this.detail(alarm);
  },

  detail(alarm) {
    const box = $("alarm-detail");
    const state = this.stateText(alarm);
    const ack = alarm.acknowledged;
    const fields = el("dl", null,
      el("dt", { text: "id" }), el("dd", { text: alarm.id }),
      el("dt", { text: "state" }), el("dd", { id: "alarm-state", class: "st-" + state, text: state }),
      el("dt", { text: "kind" }), el("dd", { text: `${alarm.kind} (${alarm.severity})` }),
      el("dt", { text: "at" }), el("dd", { text: fmtTime(alarm.at) }),
      el("dt", { text: "msisdn" }), el("dd", { text: alarm.msisdn || "–" }),
      el("dt", { text: "transaction" }), el("dd", { text: alarm.transaction_id || "–" }),
      el("dt", { text: "message" }), el("dd", { text: alarm.message }),
      ack ? el("dt", { text: "acknowledged" }) : null,
      ack ? el("dd", { text: `by ${ack.by} at ${fmtTime(ack.at)}${ack.note ? ": " + ack.note : ""}` }) : null,
      alarm.resolved_at ? el("dt", { text: "resolved" }) : null,
      alarm.resolved_at ? el("dd", { text: `${fmtTime(alarm.resolved_at)} (alarm ${alarm.resolved_by})` }) : null);
    const parts = [el("h3", { text: `Alarm ${alarm.id}` }), fields];
    if (alarm.state === "open" && !ack) {
      if (may("operator")) {
        const note = el("textarea", { id: "ack-note", "aria-label": "Note", placeholder: "What you are doing about it" });
        const message = el("p", { id: "ack-message", class: "error", role: "alert" });
        const button = el("button", { type: "button", id: "ack-button" }, "Acknowledge");
        button.onclick = async () => {
          button.disabled = true;
          const r = await api(`/v1/admin/alarms/${alarm.id}/acknowledge`, { method: "POST", body: { note: note.value } });
          if (r.ok) this.update(r.data);
          else {
            message.textContent = problemText(r);
            button.disabled = false;
            if (r.status === 409 && r.data.acknowledged) this.update({ ...alarm, acknowledged: r.data.acknowledged });
          }
        };
        parts.push(el("label", { for: "ack-note" }, "Acknowledge with a note"), note, el("div", { class: "row" }, button), message);
      } else {
        parts.push(el("p", { class: "muted", text: "Acknowledging needs the operator role." }));
      }
    }
    if (Object.keys(alarm.details || {}).length) parts.push(el("pre", { text: JSON.stringify(alarm.details, null, 2) }));
    const deliveries = el("div", { id: "deliveries" }, el("p", { class: "muted", text: "deliveries…" }));
    parts.push(el("h3", { text: "Deliveries" }), deliveries);
    clear(box, ...parts);
    this.deliveries(alarm.id, deliveries);
  },

  async deliveries(id, box) {
    const r = await api(`/v1/admin/notifications?alarm_id=${id}`);
    if (this.selected !== id) return;
    if (!r.ok || !Array.isArray(r.data.notifications) || !r.data.notifications.length) {
      clear(box, el("p", { class: "muted", text: "no deliveries" }));
      return;
    }
    const rows = r.data.notifications.map((n) => el("tr", null,
      el("td", { text: n.channel }), el("td", { text: n.recipient }), el("td", { text: n.state }),
      el("td", { class: "num", text: n.attempts }), el("td", { text: fmtTime(n.sent_at || n.created_at) }),
      el("td", { text: n.last_error || "" })));
    clear(box, el("table", { class: "grid" },
      el("thead", null, el("tr", null, ...["channel", "recipient", "state", "attempts", "at", "error"].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", null, ...rows)));
  },
};

/* -- live rates ---------------------------------------------------------------------------- */
function quantile(bounds, counts, q) {
  let total = 0;
  for (const c of counts) total += c;
  if (total <= 0) return null;
  const target = q * total;
  let running = 0;
  for (let i = 0; i < counts.length; i++) {
    if (counts[i] <= 0) continue;
    if (running + counts[i] >= target) {
      const low = i === 0 ? 0 : bounds[i - 1];
      const high = i < bounds.length ? bounds[i] : bounds[bounds.length - 1];
      return (low + (high - low) * ((target - running) / counts[i])) * 1000;
    }
    running += counts[i];
  }
  return bounds[bounds.length - 1] * 1000;
}
const minus = (a, b) => a.map((v, i) => Math.max(0, v - ((b && b[i]) || 0)));
const sumOf = (obj) => Object.values(obj).reduce((a, b) => a + b, 0);

const Rates = {
  previous: null,
  timer: 0,
  charts: null,
  data: null,
  colors: { completed: "#1e7a3c", rejected: "#a15c00", failed: "#b3261e", refunded: "#6b4fbb", inconsistent: "#d6336c" },

  start() {
    this.previous = null;
    this.poll();
    this.timer = setInterval(() => this.poll(), 1000);
  },
  stop() { clearInterval(this.timer); this.timer = 0; },

  makeCharts(outcomes) {
    const width = Math.max(280, $("chart-rates").clientWidth || 500);
    this.data = [[], ...outcomes.map(() => [])];
    this.latency = [[], [], []];
    const clock = (u, ticks) => ticks.map((t) => new Date(t * 1000).toLocaleTimeString(undefined, { hour12: false }));
    // Whole seconds at least: readings come once a second.
    const axes = [{ values: clock, space: 70, incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600] }, { size: 50 }];
    this.charts = {
      rates: new uPlot({ width, height: 180, axes, scales: { x: { time: true } },
        series: [{ label: "time" }, ...outcomes.map((o) => ({ label: o, stroke: this.colors[o] || "#333", width: 1.5 }))] },
      this.data, $("chart-rates")),
      latency: new uPlot({ width, height: 180, axes, scales: { x: { time: true } },
        series: [{ label: "time" }, { label: "p50", stroke: "#1f5fbf", width: 1.5 }, { label: "p99", stroke: "#b3261e", width: 1.5 }] },
      this.latency, $("chart-latency")),
    };
  },

  async poll() {
    const r = await api("/v1/admin/rates");
    if (!r.ok) { $("rates-status").textContent = problemText(r); return; }
    const now = r.data;
    const at = new Date(now.at).getTime() / 1000;
    if (!this.charts && typeof uPlot !== "undefined") this.makeCharts(now.outcomes);
    const before = this.previous;
    this.previous = { at, data: now };
    if (!before) { this.draw(now, null, 1); return; }
    const seconds = Math.max(0.001, at - before.at);
    this.draw(now, before.data, seconds);
    const t = now.total, p = before.data.total;
    const delta = minus(t.latency, p.latency);
    if (this.charts) {
      const row = now.outcomes.map((o) => Math.max(0, (t.purchases[o] - p.purchases[o]) / seconds));
      this.data[0].push(at);
      row.forEach((v, i) => this.data[i + 1].push(v));
      this.latency[0].push(at);
      this.latency[1].push(quantile(now.latency_bounds, delta, 0.5));
      this.latency[2].push(quantile(now.latency_bounds, delta, 0.99));
      for (const series of [this.data, this.latency]) {
        if (series[0].length > RATE_POINTS) series.forEach((s) => s.shift());
      }
      this.charts.rates.setData(this.data);
      this.charts.latency.setData(this.latency);
    }
  },

  figure(id, label, value, raw) {
    return el("div", { class: "figure" }, el("div", { class: "v", id, "data-value": raw, text: value }), el("div", { class: "l", text: label }));
  },

  draw(now, before, seconds) {
    const t = now.total, p = before ? before.total : null;
    const perSecond = (o) => (p ? Math.max(0, (t.purchases[o] - p.purchases[o]) / seconds) : null);
    const delta = p ? minus(t.latency, p.latency) : t.latency;
    const figures = [
      ...now.outcomes.map((o) => this.figure("rate-" + o, `${o}/s (${fmtNum(t.purchases[o])} in all)`, fmtNum(perSecond(o), 1), perSecond(o))),
      this.figure("rate-in-flight", "in flight", fmtNum(t.in_flight), t.in_flight),
      this.figure("rate-p50", "p50 ms", fmtNum(quantile(now.latency_bounds, delta, 0.5), 1), quantile(now.latency_bounds, delta, 0.5)),
      this.figure("rate-p99", "p99 ms", fmtNum(quantile(now.latency_bounds, delta, 0.99), 1), quantile(now.latency_bounds, delta, 0.99)),
      this.figure("rate-completed-total", "completed in all", fmtNum(t.purchases.completed), t.purchases.completed),
    ];
    clear($("rate-figures"), ...figures);
    const prevWorkers = new Map((before ? before.workers : []).map((w) => [w.pid, w]));
    clear($("worker-rows"), ...now.workers.map((w) => {
      const pw = prevWorkers.get(w.pid);
      const rate = pw ? Math.max(0, (sumOf(w.purchases) - sumOf(pw.purchases)) / seconds) : null;
      const d = pw ? minus(w.latency, pw.latency) : w.latency;
      return el("tr", null, el("td", { text: w.worker }), el("td", { class: "num", text: w.pid }),
        el("td", { class: "num", text: fmtNum(rate, 1) }), el("td", { class: "num", text: fmtNum(w.purchases.completed) }),
        el("td", { class: "num", text: fmtNum(w.in_flight) }),
        el("td", { class: "num", text: fmtNum(quantile(now.latency_bounds, d, 0.5), 1) }),
        el("td", { class: "num", text: fmtNum(quantile(now.latency_bounds, d, 0.99), 1) }));
    }));
    const names = Object.keys(t.platforms).sort();
    clear($("platform-rows"), ...names.map((name) => {
      const pl = t.platforms[name];
      const pp = p && p.platforms[name];
      const d = pp ? minus(pl.latency, pp.latency) : pl.latency;
      const byWorker = now.workers.map((w) => `${w.worker}: ${(w.platforms[name] || {}).circuit || "–"}`).join(", ");
      return el("tr", null, el("td", { text: name }),
        el("td", { class: "circuit-" + (pl.circuit || "closed"), text: (pl.circuit || "–").replace("_", "-") }),
        el("td", { class: "num", text: fmtNum(pl.in_flight) }),
        el("td", { class: "num", text: fmtNum(pp ? Math.max(0, (pl.calls - pp.calls) / seconds) : null, 1) }),
        el("td", { class: "num", text: fmtNum(quantile(now.platform_latency_bounds, d, 0.5), 1) }),
        el("td", { class: "num", text: fmtNum(quantile(now.platform_latency_bounds, d, 0.99), 1) }),
        el("td", { class: "muted", text: byWorker }));
    }));
    $("rates-status").textContent = `${now.workers.length} worker(s) · ${fmtTime(now.at)}`;
  },
};

/* -- reports ------------------------------------------------------------------------------- */
const WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

function heatmap(cells) {
  const grid = Array.from({ length: 7 }, () => new Array(24).fill(0));
  let max = 0;
  for (const c of cells) { grid[c.weekday][c.hour] = c.count; max = Math.max(max, c.count); }
  const head = el("tr", null, el("th", null), ...Array.from({ length: 24 }, (_, h) => el("th", { scope: "col", text: h % 3 === 0 ? h : "" })));
  const rows = grid.map((hours, d) => el("tr", null, el("th", { scope: "row", text: WEEKDAYS[d] }),
    ...hours.map((count, h) => {
      const td = el("td", { title: `${WEEKDAYS[d]} ${h}:00 — ${count}` });
      if (count > 0) td.style.background = `rgba(31, 95, 191, ${(0.15 + 0.85 * count / max).toFixed(3)})`;
      td.setAttribute("aria-label", `${WEEKDAYS[d]} ${h}:00, ${count}`);
      return td;
    })));
  return el("table", { class: "heat" }, el("thead", null, head), el("tbody", null, ...rows));
}

const Reports = {
  chart: null,
  start() {
    const today = new Date();
    const week = new Date(today.getTime() - 6 * 86400000);
    const iso = (d) => d.toISOString().slice(0, 10);
    $("report-from").value = iso(week);
    $("report-to").value = iso(new Date(today.getTime() + 86400000));
    $("reports-form").onsubmit = (e) => { e.preventDefault(); this.load(); };
    this.load();
    this.timer = setInterval(() => this.load(), 60000);  // the period's figures keep coming
  },
  stop() { clearInterval(this.timer); },

  async load() {
    const q = `from=${$("report-from").value}&to=${$("report-to").value}`;
    const [peaks, series, rules] = await Promise.all([
      api(`/v1/admin/reports/peak-hours?${q}&kind=purchase`),
      api(`/v1/admin/reports/series?${q}&every=day`),
      api(`/v1/admin/reports/breakdown?by=rule&${q}`)]);
    const unavailable = [peaks, series, rules].every((r) => r.status === 404);
    $("reports-status").textContent = unavailable ? "reports unavailable (this server has no report routes)" : "";
    if (series.status === 404 && this.chart) { this.chart.destroy(); this.chart = null; }
    const show = (r, box, draw) => {
      if (r.status === 404) clear(box, el("p", { class: "muted", text: "reports unavailable" }));
      else if (!r.ok) clear(box, el("p", { class: "error", text: problemText(r) }));
      else draw(r.data);
    };
    show(peaks, $("heatmap"), (d) => clear($("heatmap"), heatmap(d.cells)));
    show(series, $("chart-revenue"), (d) => this.revenue(d));
    show(rules, $("rejections"), (d) => {
      const rows = d.rows.slice().sort((a, b) => b.count - a.count);
      clear($("rejections"), rows.length ? el("table", { class: "grid" },
        el("thead", null, el("tr", null, el("th", { scope: "col", text: "rule (code)" }), el("th", { scope: "col", class: "num", text: "rejections" }))),
        el("tbody", null, ...rows.map((row) => el("tr", null, el("td", { text: row.key }), el("td", { class: "num", text: fmtNum(row.count) })))))
        : el("p", { class: "muted", text: "no rejections in this period" }));
    });
  },

  revenue(d) {
    const byDay = new Map();  // day -> [revenue, fees], every kind of movement added up
    for (const row of d.rows) {
      const t = new Date(row.at).getTime() / 1000;
      const sums = byDay.get(t) || [0, 0];
      sums[0] += row.revenue || 0;
      sums[1] += row.fees || 0;
      byDay.set(t, sums);
    }
    const xs = [...byDay.keys()].sort((a, b) => a - b);
    const box = $("chart-revenue");
    if (this.chart) { this.chart.destroy(); this.chart = null; }
    if (!xs.length) { clear(box, el("p", { class: "muted", text: "no movements in this period" })); return; }
    let revenue = 0, fees = 0;
    for (const [r, f] of byDay.values()) { revenue += r; fees += f; }
    const days = xs.length === 1 ? `on ${new Date(xs[0] * 1000).toLocaleDateString()}` : `over ${xs.length} days`;
    const total = el("p", { id: "revenue-total", text: `${fmtMoney(revenue)} revenue and ${fmtMoney(fees)} in fees ${days}` });
    if (xs.length < 2) { clear(box, total); return; }  // a line needs two days
    clear(box, total);
    const width = Math.max(280, box.clientWidth || 500);
    const money = (u, ticks) => ticks.map((t) => fmtNum(t, 0));
    this.chart = new uPlot({ width, height: 170, scales: { x: { time: true } },
      axes: [{ space: 70 }, { size: 80, values: money }],
      series: [{ label: "day" },
        { label: "revenue", stroke: "#1e7a3c", fill: "rgba(30,122,60,.12)", width: 1.5, points: { size: 7 }, value: (u, v) => fmtNum(v, 2) },
        { label: "fees", stroke: "#6b4fbb", width: 1.5, points: { size: 7 }, value: (u, v) => fmtNum(v, 2) }] },
    [xs, xs.map((x) => byDay.get(x)[0] / 100), xs.map((x) => byDay.get(x)[1] / 100)], box);
  },
};

/* -- subscriber ---------------------------------------------------------------------------- */
const Subscriber = {
  async open(msisdn) {
    const box = $("subscriber-view");
    clear(box, el("p", { class: "muted", text: "…" }));
    const r = await api(`/v1/admin/mobiles/${encodeURIComponent(msisdn)}`);
    if (r.status === 404 && (!r.data || r.data.code === "NOT_FOUND")) {
      clear(box, el("p", { class: "muted", id: "subscriber-unavailable", text: "subscriber view unavailable (this server has no /v1/admin/mobiles route)" }));
      return;
    }
    if (!r.ok) { clear(box, el("p", { class: "error", role: "alert", text: problemText(r) })); return; }
    const s = r.data;
    const profile = s.profile || {};
    const counters = s.counters || {};
    const sources = Object.entries(profile.sources || {}).map(([k, v]) => `${k}: ${v ? "yes" : "no answer"}`).join(", ");
    const dl = el("dl", { class: "kv" },
      el("dt", { text: "msisdn" }), el("dd", { id: "subscriber-msisdn", text: s.msisdn }),
      el("dt", { text: "profile" }), el("dd", { text: `${profile.profile_id || "–"} (${profile.category || "–"})` }),
      el("dt", { text: "sources" }), el("dd", { text: sources || "–" }),
      el("dt", { text: "today" }), el("dd", { text: `${fmtNum(counters.purchases_today)} purchases, ${fmtMoney(counters.spent_today)} spent` }),
      el("dt", { text: "this month" }), el("dd", { text: `${fmtNum(counters.purchases_month)} purchases, ${fmtMoney(counters.spent_month)} spent` }),
      el("dt", { text: "advance owed" }), el("dd", { text: fmtMoney(s.advance_outstanding) }),
      s.ledger_balance !== undefined ? el("dt", { text: "ledger balance" }) : null,
      s.ledger_balance !== undefined ? el("dd", { text: fmtMoney(s.ledger_balance) }) : null,
      el("dt", { text: "pending" }), el("dd", { text: s.pending ? `${s.pending.kind} ${s.pending.state} (${s.pending.id})` : "none" }));
    const restrictions = (s.restrictions || []).length
      ? el("table", { class: "grid" }, el("thead", null, el("tr", null, ...["code", "reason", "until"].map((h) => el("th", { scope: "col", text: h })))),
        el("tbody", null, ...s.restrictions.map((x) => el("tr", null, el("td", { text: x.code }), el("td", { text: x.reason || "" }), el("td", { text: x.until ? fmtTime(x.until) : "lifted by hand" })))))
      : el("p", { class: "muted", text: "no restrictions" });
    const recent = (s.recent || []).length
      ? el("table", { class: "grid", id: "subscriber-recent" },
        el("thead", null, el("tr", null, ...["at", "kind", "bono / amount", "state", "price"].map((h) => el("th", { scope: "col", text: h })))),
        el("tbody", null, ...s.recent.map((tx) => el("tr", null, el("td", { text: fmtTime(tx.created_at) }), el("td", { text: tx.kind }),
          el("td", { text: tx.bono ? tx.bono.id : fmtMoney(tx.amount) }), el("td", { text: tx.state }), el("td", { class: "num", text: fmtMoney(tx.price) })))))
      : el("p", { class: "muted", text: "no movements" });
    const customer = el("details", null, el("summary", { text: "What the rules see (customer)" }),
      el("pre", { text: JSON.stringify(profile.customer || {}, null, 2) }));
    clear(box, dl, customer, el("h3", { text: "Restrictions" }), restrictions, el("h3", { text: "Recent movements" }), recent,
      s.peak_hours ? el("h3", { text: `Hours of purchase (${s.peak_hours.timezone})` }) : null,
      s.peak_hours ? heatmap(s.peak_hours.cells) : null);
  },
};

/* -- rule and catalogue versions ------------------------------------------------------------ */
function lineDiff(a, b) {
  const x = a.split("\n"), y = b.split("\n");
  const n = x.length, m = y.length;
  if (n * m > 4000000) return [["del", a], ["add", b]];
  const lcs = Array.from({ length: n + 1 }, () => new Uint16Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--)
    lcs[i][j] = x[i] === y[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  const out = [];
  let i = 0, j = 0;
  while (i < n && j < m) {
    if (x[i] === y[j]) { out.push(["same", x[i]]); i++; j++; }
    else if (lcs[i + 1][j] >= lcs[i][j + 1]) out.push(["del", x[i++]]);
    else out.push(["add", y[j++]]);
  }
  while (i < n) out.push(["del", x[i++]]);
  while (j < m) out.push(["add", y[j++]]);
  return out;
}

function versionPanel(box, kind) {
  const title = kind === "rules" ? "Rule sets" : "Catalogue";
  const state = { list: null, chosen: null };

  async function load() {
    const r = await api(`/v1/admin/${kind}`);
    if (!r.ok) { clear(box, el("h3", { text: title }), el("p", { class: "error", text: problemText(r) })); return; }
    state.list = r.data;
    const versions = r.data.versions.slice().sort((a, b) => b.version - a.version);
    const draft = versions.find((v) => v.status === "draft");
    if (state.chosen === null || !versions.some((v) => v.version === state.chosen))
      state.chosen = draft ? draft.version : r.data.active_version;
    const select = el("select", { id: `${kind}-version`, "aria-label": `${title}: version to compare` },
      ...versions.map((v) => el("option", { value: v.version, selected: v.version === state.chosen },
        `v${v.version} · ${v.status}${v.description ? " · " + v.description : ""}`)));
    select.onchange = () => { state.chosen = Number(select.value); show(); };
    const rows = versions.slice(0, 8).map((v) => el("tr", null,
      el("td", { class: "num", text: v.version }), el("td", { text: v.status }), el("td", { text: v.description }),
      el("td", { text: `${v.created_by}, ${fmtTime(v.created_at)}` }),
      el("td", { text: v.activated_at ? `${v.activated_by}, ${fmtTime(v.activated_at)}` : "" })));
    clear(box, el("h3", { text: `${title}: v${r.data.active_version} active` }),
      el("table", { class: "grid" }, el("thead", null, el("tr", null, ...["v", "status", "description", "created", "activated"].map((h) => el("th", { scope: "col", text: h })))),
        el("tbody", null, ...rows)),
      el("div", { class: "row" }, el("label", { for: `${kind}-version` }, "Compare with the active one:"), select),
      el("div", { id: `${kind}-compare` }));
    show();
  }

  async function show() {
    const target = box.querySelector(`#${kind}-compare`);
    const active = state.list.active_version;
    const chosen = state.chosen;
    const [a, b] = await Promise.all([api(`/v1/admin/${kind}/${active}`), api(`/v1/admin/${kind}/${chosen}`)]);
    if (!a.ok || !b.ok) { clear(target, el("p", { class: "error", text: problemText(a.ok ? b : a) })); return; }
    const lines = lineDiff(a.data.source, b.data.source);
    const changed = lines.some(([k]) => k !== "same");
    const diff = el("div", { class: "diff", id: `${kind}-diff`, role: "region", "aria-label": `difference between v${active} and v${chosen}` },
      ...lines.map(([k, text]) => el("span", { class: k, text: (k === "add" ? "+ " : k === "del" ? "- " : "  ") + text })));
    const parts = [el("p", { class: "muted", text: changed ? `v${active} (active) → v${chosen}` : `v${chosen} is the same as the active v${active}` }), diff];
    const output = el("div", { id: `${kind}-output`, "aria-live": "polite" });
    const actions = el("div", { class: "row" });
    if (kind === "rules") {
      const msisdns = el("input", { id: "dry-msisdns", value: "5491100000001, 5491100000002", "aria-label": "msisdns to dry-run on", size: 32 });
      const run = el("button", { type: "button", id: "dry-run" }, `Dry-run v${chosen}`);
      run.onclick = async () => {
        const list = msisdns.value.split(/[\s,]+/).filter(Boolean);
        const r = await api(`/v1/admin/rules/${chosen}/dry-run`, { method: "POST", body: { msisdns: list } });
        if (!r.ok) { clear(output, el("p", { class: "error", text: problemText(r) })); return; }
        const eligible = (side) => (side.bonos || side.offers || []).filter((o) => o.eligible).map((o) => o.id).join(" ");
        clear(output, el("table", { class: "grid" },
          el("thead", null, el("tr", null, ...["subject", "changed", "eligible (draft)", "eligible (active)"].map((h) => el("th", { scope: "col", text: h })))),
          el("tbody", null, ...r.data.results.map((x) => el("tr", null, el("td", { text: x.msisdn || `customer ${x.customer}` }),
            el("td", { text: x.changed ? "yes" : "no" }), el("td", { text: eligible(x.draft) }), el("td", { text: eligible(x.active) }))))));
      };
      actions.append(msisdns, run);
    } else {
      const check = el("button", { type: "button", id: "catalogue-check" }, `Check v${chosen}`);
      check.onclick = async () => {
        const r = await api("/v1/admin/catalogue/validate", { method: "POST", body: { source: b.data.source } });
        clear(output, r.ok ? el("pre", { text: JSON.stringify(r.data.changes, null, 2) }) : el("p", { class: "error", text: problemText(r) }));
      };
      actions.append(check);
    }
    if (chosen !== active) {
      if (may("admin")) {
        const activate = el("button", { type: "button", id: `${kind}-activate` }, `Activate v${chosen}`);
        let armed = false;
        activate.onclick = async () => {
          if (!armed) { armed = true; activate.textContent = `Confirm: activate v${chosen}`; return; }
          activate.disabled = true;
          const r = await api(`/v1/admin/${kind}/${chosen}/activate`, { method: "POST" });
          if (r.ok) await load();
          else { clear(output, el("p", { class: "error", text: problemText(r) })); activate.disabled = false; }
        };
        actions.append(activate);
      } else {
        actions.append(el("span", { class: "muted", text: "activating needs the admin role" }));
      }
    }
    clear(target, ...parts, actions, output);
  }

  return { load };
}

const Versions = {
  start() {
    $("versions-role").textContent = may("admin") ? "Your key may activate versions." : `Your key (${me.role}) may compare and dry-run; activating needs the admin role.`;
    versionPanel($("rules-panel"), "rules").load();
    versionPanel($("catalogue-panel"), "catalogue").load();
  },
};

/* -- start ----------------------------------------------------------------------------------- */
window.addEventListener("resize", () => {
  const fit = (chart, box) => { if (chart) chart.setSize({ width: Math.max(280, box.clientWidth), height: chart.height }); };
  if (Rates.charts) { fit(Rates.charts.rates, $("chart-rates")); fit(Rates.charts.latency, $("chart-latency")); }
  fit(Reports.chart, $("chart-revenue"));
});

document.addEventListener("DOMContentLoaded", () => {
  $("signin-form").onsubmit = (e) => { e.preventDefault(); $("signin-error").textContent = ""; signIn($("key").value.trim()); };
  $("sign-out").onclick = () => signOut("");
  $("subscriber-form").onsubmit = (e) => { e.preventDefault(); Subscriber.open($("msisdn").value.trim()); };
  const saved = sessionStorage.getItem(KEY);
  if (saved) signIn(saved);
  else $("key").focus();
});
