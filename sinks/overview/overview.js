// The live overview page. Every number comes from this server's ClickHouse HTTP interface (the same
// tables `postbacks report` reads, queried with JSON formats); the services' health from
// /overview/health (their Prometheus /metrics). Charts are plain SVG. No libraries, no network
// beyond this origin. What was drawn is kept in `window.overview` (the tests read it).
"use strict";

const RANGES = {
  "1h": { unit: "minute", steps: 60, stepS: 60 },
  "3h": { unit: "minute", steps: 180, stepS: 60 },
  "24h": { unit: "hour", steps: 24, stepS: 3600 },
  "7d": { unit: "hour", steps: 168, stepS: 3600 },
};
const REFRESH_MS = 10000;
const PALETTE = ["#2f6fdb", "#e0862b", "#3a9d5d", "#d2453a", "#8e5cc7", "#c9a227", "#2aa3b5", "#b5547c", "#7a8699", "#5b3f2e"];
const SVGNS = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

window.overview = { refreshes: 0, numbers: null, errors: [] };

function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.has("user")) {
    sessionStorage.setItem("ch-user", params.get("user"));
    sessionStorage.setItem("ch-password", params.get("password") || "");
    params.delete("user");
    params.delete("password");
    history.replaceState(null, "", "#" + params.toString()); // the password leaves the address bar
  }
  return params.get("range") in RANGES ? params.get("range") : "3h";
}

let range = readHash();

function credentials() {
  const user = sessionStorage.getItem("ch-user");
  return user === null ? null : { user, password: sessionStorage.getItem("ch-password") || "" };
}

function authHeaders() {
  const c = credentials();
  return { "X-ClickHouse-User": c.user, "X-ClickHouse-Key": c.password };
}

async function query(sql, params) {
  const url = new URLSearchParams({ default_format: "JSON", output_format_json_quote_decimals: "1" });
  for (const [k, v] of Object.entries(params || {})) url.set("param_" + k, v);
  const response = await fetch("/?" + url, { method: "POST", headers: authHeaders(), body: sql });
  const text = await response.text();
  if (!response.ok) throw new Error(`query failed (${response.status}): ${text.trim()}`);
  return JSON.parse(text);
}

// --- SQL: minute ranges read the raw tables, hour ranges the hourly aggregates ------------------
// Conversions count once at their latest status, exactly as conversions_hourly_mv counts them:
// a version adds itself and retracts its previous status (sinks/migrations/0002).
const SQL = {
  window: (r) => `SELECT toStartOf${r.unit === "minute" ? "Minute" : "Hour"}(now('UTC')) - INTERVAL ${r.steps - 1} ${r.unit.toUpperCase()} AS since, now('UTC') AS now`,
  clicks: (r) => r.unit === "minute"
    ? "SELECT toStartOfMinute(clicked_at) AS t, count() AS clicks FROM clicks WHERE clicked_at >= {since:DateTime('UTC')} GROUP BY t WITH TOTALS ORDER BY t"
    : "SELECT hour AS t, sum(clicks) AS clicks FROM clicks_hourly WHERE hour >= {since:DateTime('UTC')} GROUP BY t WITH TOTALS ORDER BY t",
  conversions: (r) => `SELECT t, sumIf(cn, cs = 'approved') AS approved, sumIf(cn, cs IN ('pending', 'hold')) AS pending,
      sumIf(cn, cs = 'rejected') AS reversed, sumIf(crev, cs = 'approved') AS revenue_usd, sumIf(cpay, cs = 'approved') AS payout_usd
    FROM (${r.unit === "minute"
      ? `SELECT toStartOfMinute(conversion_time) AS t, tupleElement(c, 1) AS cs, tupleElement(c, 2) AS cn,
           toDecimal128(tupleElement(c, 3), 6) AS crev, toDecimal128(tupleElement(c, 4), 6) AS cpay
         FROM conversion_versions
         ARRAY JOIN arrayFilter(x -> tupleElement(x, 1) != '', [
           (toString(status), toInt64(1), revenue_usd, payout_usd),
           (ifNull(toString(previous_status), ''), toInt64(-1),
            -ifNull(previous_revenue_usd, toDecimal64(0, 6)), -ifNull(previous_payout_usd, toDecimal64(0, 6)))]) AS c
         WHERE conversion_time >= {since:DateTime('UTC')}`
      : "SELECT hour AS t, status AS cs, conversions AS cn, revenue_usd AS crev, payout_usd AS cpay FROM conversions_hourly WHERE hour >= {since:DateTime('UTC')}"})
    GROUP BY t WITH TOTALS ORDER BY t`,
  refusals: (r) => `SELECT t, kind, stage, reason, sum(n) AS n FROM (${r.unit === "minute"
      ? `SELECT toStartOfMinute(received_at) AS t, 'rejected' AS kind, toString(stage) AS stage, toString(reason) AS reason, count() AS n
           FROM rejected_postbacks WHERE received_at >= {since:DateTime('UTC')} GROUP BY t, stage, reason
         UNION ALL
         SELECT toStartOfMinute(received_at), 'duplicate', 'stream', toString(reason), count()
           FROM duplicate_postbacks WHERE received_at >= {since:DateTime('UTC')} GROUP BY 1, 4`
      : `SELECT hour AS t, 'rejected' AS kind, toString(stage) AS stage, toString(reason) AS reason, rejected AS n
           FROM rejections_hourly WHERE hour >= {since:DateTime('UTC')}
         UNION ALL
         SELECT hour, 'duplicate', 'stream', toString(reason), duplicates FROM duplicates_hourly WHERE hour >= {since:DateTime('UTC')}`})
    GROUP BY t, kind, stage, reason HAVING n != 0 ORDER BY t, kind, stage, reason`,
  outbound: (r) => r.unit === "minute"
    ? "SELECT toStartOfMinute(attempted_at) AS t, toString(outcome) AS outcome, count() AS n FROM outbound_postbacks WHERE attempted_at >= {since:DateTime('UTC')} GROUP BY t, outcome ORDER BY t"
    : "SELECT hour AS t, toString(outcome) AS outcome, sum(attempts) AS n FROM outbound_hourly WHERE hour >= {since:DateTime('UTC')} GROUP BY t, outcome ORDER BY t",
  // Deliveries whose latest request asked for a retry: not sent successfully yet, nor given up.
  retrying: () => `SELECT count() AS retrying, min(first) AS oldest FROM (
      SELECT min(attempted_at) AS first, argMax(outcome, attempt) AS last FROM outbound_postbacks
      WHERE attempted_at >= now() - INTERVAL 7 DAY GROUP BY idempotency_key) WHERE last = 'retry'`,
};

// --- data -------------------------------------------------------------------------------------
const toDate = (s) => new Date(String(s).slice(0, 19).replace(" ", "T") + "Z");

// From `since` to now; further when rows are dated later (an advertiser's conversion time may be
// ahead of ours), up to as many buckets again: what lies beyond is counted, not drawn.
function buckets(since, r, results) {
  const start = toDate(since).getTime();
  let last = 0;
  for (const result of results) for (const row of result.data) last = Math.max(last, toDate(row.t).getTime());
  const ahead = Math.min(r.steps, Math.max(0, Math.round((last - start) / (r.stepS * 1000)) + 1 - r.steps));
  return Array.from({ length: r.steps + ahead }, (_, i) => start + i * r.stepS * 1000);
}

function series(keys, rows, field) {
  const index = new Map(keys.map((k, i) => [k, i]));
  const values = new Array(keys.length).fill(0);
  for (const row of rows) {
    const i = index.get(toDate(row.t).getTime());
    if (i !== undefined) values[i] += Number(row[field]);
  }
  return values;
}

async function load() {
  const r = RANGES[range];
  const win = (await query(SQL.window(r))).data[0];
  const params = { since: String(win.since).slice(0, 19) };
  const [clicks, conversions, refusals, outbound, retrying, health] = await Promise.all([
    query(SQL.clicks(r), params),
    query(SQL.conversions(r), params),
    query(SQL.refusals(r), params),
    query(SQL.outbound(r), params),
    query(SQL.retrying()),
    fetch("/overview/health", { headers: authHeaders() }).then(async (resp) => {
      if (!resp.ok) throw new Error(`health failed (${resp.status}): ${(await resp.text()).trim()}`);
      return resp.json();
    }),
  ]);
  const keys = buckets(win.since, r, [clicks, conversions, refusals, outbound]);
  const ct = conversions.totals || {};
  const totals = {
    clicks: Number((clicks.totals || {}).clicks || 0),
    conversions: Number(ct.approved || 0),
    pending: Number(ct.pending || 0),
    reversed: Number(ct.reversed || 0),
    revenue_usd: ct.revenue_usd || "0",
    payout_usd: ct.payout_usd || "0",
  };
  totals.cr = totals.clicks > 0 ? totals.conversions / totals.clicks : null;
  const byReason = new Map();
  for (const row of refusals.data) {
    const key = `${row.kind}|${row.stage}|${row.reason}`;
    byReason.set(key, (byReason.get(key) || 0) + Number(row.n));
  }
  const refusalRows = [...byReason].map(([key, n]) => {
    const [kind, stage, reason] = key.split("|");
    return { kind, stage, reason, postbacks: n };
  }).sort((a, b) => (a.kind + a.stage + a.reason).localeCompare(b.kind + b.stage + b.reason));
  totals.rejected = refusalRows.filter((x) => x.kind === "rejected").reduce((s, x) => s + x.postbacks, 0);
  totals.duplicates = refusalRows.filter((x) => x.kind === "duplicate").reduce((s, x) => s + x.postbacks, 0);
  const outcomes = {};
  for (const row of outbound.data) outcomes[row.outcome] = (outcomes[row.outcome] || 0) + Number(row.n);
  totals.outbound = outcomes;
  const decided = (outcomes.delivered || 0) + (outcomes.dead || 0);
  totals.delivery_rate = decided > 0 ? (outcomes.delivered || 0) / decided : null;
  const ret = retrying.data[0];
  return {
    range, unit: r.unit, since: params.since, now: String(win.now).slice(0, 19), keys, totals,
    nowIndex: Math.floor((toDate(win.now).getTime() - toDate(win.since).getTime()) / (r.stepS * 1000)),
    refusals: refusalRows,
    series: {
      clicks: series(keys, clicks.data, "clicks"),
      conversions: series(keys, conversions.data, "approved"),
      revenue: series(keys, conversions.data, "revenue_usd"),
      payout: series(keys, conversions.data, "payout_usd"),
      refusals: refusalRows.map((x) => ({
        name: `${x.kind === "duplicate" ? "dup" : x.stage} ${x.reason}`,
        values: series(keys, refusals.data.filter((y) => y.kind === x.kind && y.stage === x.stage && y.reason === x.reason), "n"),
      })),
      outbound: ["delivered", "retry", "dead"].map((o) => series(keys, outbound.data.filter((y) => y.outcome === o), "n")),
    },
    retrying: { deliveries: Number(ret.retrying), oldest: Number(ret.retrying) > 0 ? String(ret.oldest).slice(0, 19) : null },
    health,
  };
}

// --- drawing ----------------------------------------------------------------------------------
function el(name, attrs, parent, text) {
  const node = document.createElementNS(SVGNS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}

function fmt(n, digits) {
  return Number(n).toLocaleString("en-US", { maximumFractionDigits: digits === undefined ? 0 : digits, minimumFractionDigits: digits || 0 });
}

const short = (v) => (v >= 1e6 ? fmt(v / 1e6, 1) + "M" : v >= 1e4 ? fmt(v / 1e3, 0) + "k" : fmt(v, v < 10 && v % 1 ? 2 : 0));

function label(ts, unit) {
  const d = new Date(ts);
  const hm = d.toISOString().slice(11, 16);
  return unit === "minute" || d.getUTCHours() !== 0 ? hm : d.toISOString().slice(5, 10);
}

let nowIndex = null; // the bucket holding "now": a dashed line when later buckets are drawn too

// layers: [{values, color, name}], drawn as stacked bars ("bars") or lines ("lines").
function chart(svg, keys, unit, layers, kind, yFormat) {
  svg.replaceChildren();
  const w = svg.clientWidth || 400, h = svg.clientHeight || 150;
  const left = 42, right = 6, top = 8, bottom = 18;
  const pw = w - left - right, ph = h - top - bottom;
  const n = keys.length;
  const totals = keys.map((_, i) => (kind === "bars" ? layers.reduce((s, l) => s + Math.max(0, l.values[i]), 0) : Math.max(...layers.map((l) => l.values[i]))));
  const max = Math.max(...totals, 0) || 1;
  const y = (v) => top + ph - (v / max) * ph;
  const x = (i) => left + (i * pw) / n;
  for (const frac of [0, 0.5, 1]) {
    el("line", { x1: left, x2: w - right, y1: y(max * frac), y2: y(max * frac), stroke: "#e3e6ec" }, svg);
    el("text", { x: left - 4, y: y(max * frac) + 3, "text-anchor": "end" }, svg, (yFormat || short)(max * frac));
  }
  const every = Math.max(1, Math.ceil(n / 6));
  for (let i = 0; i < n; i += every) el("text", { x: x(i), y: h - 4 }, svg, label(keys[i], unit));
  if (nowIndex !== null && nowIndex < n - 1) {
    const xn = x(nowIndex + 1);
    el("line", { x1: xn, x2: xn, y1: top, y2: top + ph, stroke: "#9aa3b5", "stroke-dasharray": "3 3" }, svg);
    el("text", { x: xn + 3, y: top + 8 }, svg, "now");
  }
  if (kind === "bars") {
    const bw = Math.max(1, pw / n - (n > 60 ? 0.5 : 2));
    const base = new Array(n).fill(0);
    for (const layer of layers) {
      layer.values.forEach((v, i) => {
        if (v <= 0) return;
        const rect = el("rect", { x: x(i), y: y(base[i] + v), width: bw, height: y(base[i]) - y(base[i] + v), fill: layer.color }, svg);
        el("title", {}, rect, `${label(keys[i], unit)} ${layer.name}: ${fmt(v, 2)}`);
        base[i] += v;
      });
    }
  } else {
    for (const layer of layers) {
      const points = layer.values.map((v, i) => `${x(i) + pw / n / 2},${y(v)}`).join(" ");
      el("polyline", { points, fill: "none", stroke: layer.color, "stroke-width": 1.6 }, svg);
    }
  }
}

function kpis(t) {
  const tiles = [
    ["clicks", "clicks", fmt(t.clicks)],
    ["conversions", "conversions", fmt(t.conversions) + (t.pending ? ` <span>+${fmt(t.pending)} pending</span>` : "")],
    ["revenue", "revenue USD", fmt(t.revenue_usd, 2)],
    ["payout", "payout USD", fmt(t.payout_usd, 2)],
    ["cr", "CR", t.cr === null ? "–" : fmt(t.cr * 100, 2) + "%"],
    ["rejected", "refused", fmt(t.rejected)],
    ["duplicates", "duplicates", fmt(t.duplicates)],
    ["delivery", "outbound delivered", t.delivery_rate === null ? "–" : fmt(t.delivery_rate * 100, 1) + "%"],
  ];
  const box = $("kpis");
  box.replaceChildren();
  for (const [id, name, html] of tiles) {
    const div = document.createElement("div");
    div.className = "kpi";
    div.id = "kpi-" + id;
    div.innerHTML = `<b>${html}</b><span>${name}</span>`;
    box.appendChild(div);
  }
}

function table(node, head, rows) {
  node.replaceChildren();
  const tr = node.insertRow();
  for (const [text, cls] of head) {
    const th = document.createElement("th");
    th.textContent = text;
    if (cls) th.className = cls;
    tr.appendChild(th);
  }
  for (const row of rows) {
    const r = node.insertRow();
    row.forEach((cell, i) => {
      const td = r.insertCell();
      td.textContent = cell;
      if (head[i][1]) td.className = head[i][1];
    });
  }
}

function ago(s) {
  const secs = Math.max(0, (Date.now() - toDate(s).getTime()) / 1000);
  return secs < 120 ? `${Math.round(secs)} s` : secs < 7200 ? `${Math.round(secs / 60)} min` : `${fmt(secs / 3600, 1)} h`;
}

function draw(d) {
  nowIndex = d.nowIndex;
  kpis(d.totals);
  const s = d.series;
  chart($("chart-clicks"), d.keys, d.unit, [{ values: s.clicks, color: PALETTE[0], name: "clicks" }], "bars");
  chart($("chart-conversions"), d.keys, d.unit, [{ values: s.conversions, color: PALETTE[2], name: "approved" }], "bars");
  chart($("chart-money"), d.keys, d.unit, [
    { values: s.revenue, color: PALETTE[0], name: "revenue" }, { values: s.payout, color: PALETTE[1], name: "payout" }], "lines");
  // Cumulative: conversions are dated by the advertiser's conversion time, often hours after the
  // click, so a per-bucket ratio would mostly divide by zero clicks.
  let clicksSoFar = 0, conversionsSoFar = 0;
  const cr = d.keys.map((_, i) => {
    clicksSoFar += s.clicks[i];
    conversionsSoFar += s.conversions[i];
    return clicksSoFar > 0 ? conversionsSoFar / clicksSoFar : 0;
  });
  chart($("chart-cr"), d.keys, d.unit, [{ values: cr, color: PALETTE[4], name: "CR" }], "lines", (v) => fmt(v * 100, 1) + "%");
  const refusals = s.refusals.map((x, i) => ({ ...x, color: PALETTE[i % PALETTE.length] }));
  chart($("chart-refusals"), d.keys, d.unit, refusals, "bars");
  const legend = $("legend-refusals");
  legend.replaceChildren();
  for (const x of refusals) {
    const i = document.createElement("i");
    i.textContent = "■ " + x.name;
    i.style.color = x.color;
    legend.appendChild(i);
  }
  chart($("chart-outbound"), d.keys, d.unit, [
    { values: s.outbound[0], color: "#2f6fdb", name: "delivered" }, { values: s.outbound[1], color: "#c9a227", name: "retry" },
    { values: s.outbound[2], color: "#d2453a", name: "dead" }], "bars");
  table($("refusals"), [["kind"], ["stage"], ["reason"], ["postbacks", "n"]],
    d.refusals.map((x) => [x.kind, x.stage, x.reason, fmt(x.postbacks)]));
  const h = d.health;
  const chips = $("services");
  chips.replaceChildren();
  for (const svc of h.services) {
    const span = document.createElement("span");
    span.className = svc.up ? "up" : "down";
    span.textContent = `${svc.name} ${svc.up ? "up" : "down"}`;
    span.title = svc.metrics || "";
    chips.appendChild(span);
  }
  table($("lag"), [["consumer group"], ["lag (records)", "n"]], h.lag.map((x) => [x.group, fmt(x.records)]));
  const notes = [];
  notes.push(d.retrying.oldest ? `oldest outbound delivery still retrying: first tried ${ago(d.retrying.oldest)} ago (${d.retrying.deliveries} retrying)` : "no outbound delivery waiting for a retry");
  if (h.outbound_waiting !== null) notes.push(`outbound queued or waiting: ${fmt(h.outbound_waiting)}`);
  if (h.paused_publishers) notes.push(`paused publishers: ${h.paused_publishers}`);
  if (h.held_postbacks !== null) notes.push(`postbacks held for unknown clicks: ${fmt(h.held_postbacks)}`);
  if (h.lag_age_s !== null) notes.push(`lag read ${fmt(h.lag_age_s, 0)} s ago`);
  $("health-notes").textContent = notes.join(" · ");
  for (const b of document.querySelectorAll("#ranges button")) b.classList.toggle("on", b.dataset.range === d.range);
}

// --- loop -------------------------------------------------------------------------------------
let timer = null;

async function refresh() {
  clearTimeout(timer);
  if (credentials() === null) {
    $("login").hidden = false;
    $("status").textContent = "";
    return;
  }
  try {
    const data = await load();
    $("main").hidden = false;
    $("error").hidden = true;
    draw(data);
    window.overview.numbers = data;
    window.overview.refreshes += 1;
    $("status").textContent = `${data.range}: since ${data.since} UTC · updated ${data.now.slice(11)} UTC · every ${REFRESH_MS / 1000} s`;
  } catch (err) {
    window.overview.errors.push(String(err));
    console.error(err);
    $("error").hidden = false;
    $("error").textContent = String(err.message || err);
    if (/\((401|403)\)/.test(String(err))) {
      sessionStorage.removeItem("ch-user");
      $("login").hidden = false;
    }
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("ch-user", $("user").value);
  sessionStorage.setItem("ch-password", $("password").value);
  $("login").hidden = true;
  refresh();
});

for (const b of document.querySelectorAll("#ranges button")) {
  b.addEventListener("click", () => {
    range = b.dataset.range;
    history.replaceState(null, "", "#range=" + range);
    refresh();
  });
}
window.addEventListener("resize", () => window.overview.numbers && draw(window.overview.numbers));

refresh();
