// The Goniec operator console. Reads /v1/admin/stream (server-sent events, one
// overview a second) and acts through /v1/admin/* with the session cookie and
// its CSRF token. Every value from the server is put in the page as text
// (never as markup): held messages carry text written by anyone.
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]').content;
const HISTORY = 300;
const series = {};
const ages = {};

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function num(v, digits) {
  if (v === undefined || v === null || Number.isNaN(v)) return "–";
  const d = digits === undefined ? (Math.abs(v) < 10 && v % 1 !== 0 ? 1 : 0) : digits;
  if (Math.abs(v) >= 1e6) return (v / 1e6).toFixed(1) + " M";
  if (Math.abs(v) >= 10000) return (v / 1000).toFixed(1) + " k";
  return Number(v).toFixed(d);
}
const perSec = (v) => num(v) + " /s";
const ms = (v) => (v === undefined || v === null ? "–" : v >= 1000 ? num(v / 1000, 1) + " s" : num(v, v < 10 ? 1 : 0) + " ms");
function secs(v) {
  if (v === undefined || v === null) return "–";
  if (v < 60) return num(v, 0) + " s";
  if (v < 3600) return num(v / 60, 0) + " min";
  return num(v / 3600, 1) + " h";
}
function since(msEpoch) {
  if (!msEpoch) return "–";
  return secs(Math.max(0, (Date.now() - msEpoch) / 1000)) + " ago";
}
const pct = (v) => (v === undefined || v === null ? "–" : num(v * 100, 1) + " %");

function spark(name) {
  const data = series[name] || [];
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 " + HISTORY + " 24");
  svg.setAttribute("preserveAspectRatio", "none");
  const max = Math.max(1, ...data);
  const off = HISTORY - data.length;
  const pts = data.map((v, i) => (off + i) + "," + (23 - (v / max) * 22).toFixed(1)).join(" ");
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", pts);
  svg.append(line);
  const t = document.createElementNS("http://www.w3.org/2000/svg", "title");
  t.textContent = name + ", last " + data.length + " s, peak " + num(max) + " /s";
  svg.append(t);
  return svg;
}

function table(head, rows, opts) {
  const nums = (opts && opts.num) || [];
  return el("table", opts && opts.id ? { id: opts.id } : {},
    el("thead", {}, el("tr", {}, head.map((h, i) => el("th", { class: nums.includes(i) ? "num" : null }, h)))),
    el("tbody", {}, rows));
}
const td = (v, cls, id) => el("td", { class: cls, id: id }, v);
const tdn = (v, id) => td(v, "num", id);

function toast(message, bad) {
  const t = document.getElementById("toast");
  t.textContent = message;
  t.className = bad ? "bad" : "";
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 5000);
}

async function act(method, url, label, ask) {
  if (ask && !window.confirm(ask)) return;
  try {
    const r = await fetch(url, { method, credentials: "same-origin", headers: { "X-CSRF-Token": csrf } });
    const body = await r.json().catch(() => ({}));
    if (r.status === 401) { location.reload(); return; }
    if (!r.ok) { toast(label + ": " + (body.detail || body.title || r.status), true); return; }
    toast(label + ": done");
  } catch (e) {
    toast(label + ": " + e, true);
  }
}

function button(text, action, attrs) {
  return el("button", Object.assign({ type: "button", onclick: action }, attrs || {}), text);
}

function pauseButton(kind, name, paused) {
  const path = "/v1/admin/pauses/" + kind + "/" + encodeURIComponent(name);
  return paused
    ? button("Resume", () => act("DELETE", path, "Resume " + kind + " " + name), { "data-action": "resume", "data-target": kind + ":" + name })
    : button("Pause", () => act("PUT", path, "Pause " + kind + " " + name,
      "Pause " + kind + " " + name + " on every instance? Its messages wait until it is resumed."),
      { class: "danger", "data-action": "pause", "data-target": kind + ":" + name });
}

// Each section is drawn again only when what it shows changed, never while a
// pointer button is held down over it (a button must not be replaced between
// its press and its release), and the focused button keeps the focus.
const shown = {};
let pressing = false;
document.addEventListener("pointerdown", () => { pressing = true; });
document.addEventListener("pointerup", () => setTimeout(() => { pressing = false; }, 0));
const buttonKey = (b) => [b.dataset.action, b.dataset.id, b.dataset.target].join("|");
function section(id, data, draw) {
  const key = JSON.stringify(data);
  if (shown[id] === key) return;
  const sec = document.getElementById(id);
  if (pressing && sec.matches(":hover")) return;
  const active = document.activeElement;
  const focused = active && active.tagName === "BUTTON" && sec.contains(active) ? buttonKey(active) : null;
  shown[id] = key;
  draw();
  if (focused) {
    for (const b of sec.querySelectorAll("button")) {
      if (buttonKey(b) === focused) { b.focus(); break; }
    }
  }
}

function replace(id, ...content) {
  const body = document.querySelector("#" + id + " .body");
  body.replaceChildren(...content);
}

function renderChannels(o) {
  const rows = [];
  for (const c of o.channels || []) {
    for (const k of ["accepted", "submitted", "delivered", "failed"]) {
      rows.push(el("tr", { class: k === "failed" && c.failed > 0 ? "bad" : null },
        td(c.channel), td(k), tdn(perSec(c[k]), "rate-" + c.channel + "-" + k), td(spark(c.channel + "." + k))));
    }
  }
  const lat = (o.channels || []).map((c) => el("tr", {},
    td(c.channel),
    tdn(ms(c.accepted_to_submitted.p50_ms)), tdn(ms(c.accepted_to_submitted.p99_ms)),
    tdn(ms(c.submitted_to_receipt.p50_ms)), tdn(ms(c.submitted_to_receipt.p99_ms))));
  replace("channels",
    table(["Channel", "Status", "Now", "Last 5 min"], rows, { num: [2], id: "rates" }),
    el("h3", {}, "Latency, last minute"),
    table(["Channel", "accepted→submitted p50", "p99", "submitted→receipt p50", "p99"], lat, { num: [1, 2, 3, 4] }));
}

function renderLanes(o) {
  const rows = (o.lanes || []).map((l) => {
    const prev = ages[l.lane] || [];
    prev.push(l.oldest_age_s);
    while (prev.length > 5) prev.shift();
    ages[l.lane] = prev;
    const growing = prev.length >= 3 && prev.every((v, i) => i === 0 || v > prev[i - 1]) && l.oldest_age_s > 30;
    const bad = growing || l.oldest_age_s > 300;
    return el("tr", { class: bad ? "bad" : null, "data-lane": l.lane },
      td(l.lane), tdn(num(l.depth, 0), "depth-" + l.lane),
      tdn(secs(l.oldest_age_s), "age-" + l.lane),
      tdn(num(l.scheduled, 0)), tdn(num(l.due_soon, 0)),
      tdn(l.dead > 0 ? el("span", { class: "bad-text" }, num(l.dead, 0)) : "0"));
  });
  replace("lanes", table(["Lane", "Depth", "Oldest", "Scheduled", "Due ≤15 min", "Dead letters"], rows, { num: [1, 2, 3, 4, 5] }));
}

function renderConnectors(o) {
  const cards = (o.connectors || []).map((c) => {
    const submits = Object.entries(c.submits || {}).map(([k, v]) => k + " " + perSec(v)).join(", ") || "none yet";
    const binds = (c.binds || []).map((b) => el("tr", { class: b.state === "down" || b.state === "stalled" ? "bad" : null },
      td(b.name), td(el("span", { class: "badge " + (b.state === "up" ? "" : b.state === "throttled" ? "warn" : "bad") }, b.state)),
      td(b.reason || "", "text"), tdn(since(b.since_ms)),
      tdn(b.max_window ? b.in_flight + " / " + b.window + " (" + b.max_window + ")" : num(b.in_flight, 0)),
      tdn(ms(b.response_ms)), tdn(num(b.throttles, 0)), tdn(b.pause_ms ? ms(b.pause_ms) : "–"),
      tdn(num(b.reconnects, 0) + (b.reconnect_in_ms ? " (next in " + ms(b.reconnect_in_ms) + ")" : ""))));
    return el("div", { class: "connector" + (c.up ? "" : " bad"), "data-connector": c.name },
      el("div", { class: "row" },
        el("strong", {}, c.name), el("span", { class: "muted" }, (c.channels || []).join(", ")),
        el("span", { class: "badge " + (c.up ? "" : "bad") }, c.up ? "up" : "down"),
        c.paused ? el("span", { class: "badge warn" }, "paused") : null,
        spark("connector." + c.name),
        pauseButton("connector", c.name, c.paused)),
      el("div", { class: "row muted" },
        el("span", {}, "submits: " + submits),
        el("span", {}, "receipts: " + num(c.receipts.matched, 0) + " matched, " + num(c.receipts.unmatched, 0) + " unmatched, " + num(c.receipts.early, 0) + " early"),
        el("span", {}, "unmatched (recent): " + pct(c.receipts.unmatched_share_recent)),
        el("span", {}, "no final receipt: " + pct(c.no_receipt_share))),
      table(["Bind", "State", "Why", "Since", "In flight / window", "Answer", "Throttles", "Pause", "Reconnects"], binds, { num: [3, 4, 5, 6, 7, 8] }));
  });
  replace("connectors", el("div", { class: "cards" }, cards));
}

function renderTenants(o) {
  const rows = (o.tenants || []).map((t) => {
    const share = t.limit ? Math.min(1, t.accepted / t.limit) : 0;
    const reasons = Object.entries(t.antifraud.reasons_last_minute || {}).map(([k, v]) => k + " " + num(v, 0)).join(", ");
    const decisions = Object.entries(t.antifraud.decisions || {}).filter(([, v]) => v > 0).map(([k, v]) => k + " " + perSec(v)).join(", ");
    const cb = t.callbacks;
    return el("tr", { "data-tenant": t.name, class: t.paused ? "bad" : null },
      td(el("strong", {}, t.name)),
      tdn(perSec(t.accepted), "tenant-rate-" + t.name),
      td(t.limit ? el("span", {}, el("span", { class: "bar" + (share >= 0.95 ? " full" : "") }, el("span", { style: null, "data-w": share })), " " + perSec(t.limit)) : "no limit"),
      td(spark("tenant." + t.name)),
      td(decisions || "–", "text"), td(reasons || "–", "text"),
      tdn(perSec(cb.ok) + " / " + perSec(cb.failed)), tdn(pct(cb.success_last_minute)),
      tdn(ms(cb.latency.p50_ms) + " / " + ms(cb.latency.p99_ms)),
      tdn(cb.dead_letters > 0 ? el("span", { class: "bad-text" }, num(cb.dead_letters, 0)) : "0"),
      td([t.paused ? el("span", { class: "badge warn" }, "paused") : null, " ", pauseButton("tenant", t.name, t.paused)]));
  });
  replace("tenants", table(["Tenant", "Accepted", "Limit", "Last 5 min", "Anti-fraud now", "Reasons, last min", "Callbacks ok / failed", "Success", "p50 / p99", "Callback dead letters", ""], rows, { num: [1, 6, 7, 8, 9] }));
  // Widths set through the CSSOM: the policy allows no inline style attributes.
  for (const b of document.querySelectorAll("#tenants .bar > span")) b.style.width = (Number(b.dataset.w) * 100).toFixed(0) + "%";
}

function renderHeld(o) {
  const h = o.held || { count: 0, entries: [] };
  const rows = (h.entries || []).map((m) => el("tr", { "data-held": m.id },
    td(m.id), td(m.tenant), td(m.channel), td(m.to), td(m.text || "", "text"), td((m.reasons || []).join(", "), "text"), td(m.held_at),
    td([button("Release", () => act("POST", "/v1/admin/held/" + encodeURIComponent(m.id) + "/release", "Release " + m.id), { "data-action": "release", "data-id": m.id }), " ",
      button("Drop", () => act("POST", "/v1/admin/held/" + encodeURIComponent(m.id) + "/drop", "Drop " + m.id,
        "Drop message " + m.id + "? It becomes rejected and is never sent."), { class: "danger", "data-action": "drop", "data-id": m.id })])));
  replace("held",
    el("p", { class: "muted", id: "held-count" }, num(h.count, 0) + " held" + (h.count > rows.length ? ", oldest " + rows.length + " shown" : "")),
    rows.length ? table(["Message", "Tenant", "Channel", "To", "Text", "Reasons", "Held at", ""], rows) : el("p", { class: "muted" }, "Nothing is held."));
}

function renderDead(o) {
  const parts = [];
  for (const [lane, list] of Object.entries(o.dead_letters || {})) {
    if (!list.length) continue;
    const rows = list.map((d) => {
      const base = "/v1/admin/dead-letters/" + lane + "/" + encodeURIComponent(d.id);
      return el("tr", { "data-dead": d.id },
        td(d.message_id), td(d.status || ""), tdn(num(d.attempts, 0)), td(d.reason, "text"),
        // A message's own dead letter is final (it failed after its last
        // attempt and the sender was told): only callbacks go again.
        td([lane === "webhook" ? button("Requeue", () => act("POST", base + "/requeue", "Requeue " + d.id), { "data-action": "requeue", "data-id": d.id }) : null, " ",
          button("Discard", () => act("POST", base + "/discard", "Discard " + d.id, "Discard this dead letter for good?"), { class: "danger", "data-action": "discard", "data-id": d.id })]));
    });
    parts.push(el("h3", {}, lane), table(["Message", "Status", "Attempts", "Reason", ""], rows, { num: [2] }));
  }
  replace("dead", parts.length ? parts : [el("p", { class: "muted" }, "No dead letters.")]);
}

function renderCampaigns(o) {
  const rows = (o.campaigns || []).map((c) => el("tr", {},
    td(c.tenant), td(c.name || c.id), td(c.state), tdn(num(c.rows, 0)), tdn(num(c.pending, 0)),
    tdn(c.speed_per_second ? perSec(c.speed_per_second) : "–"), tdn(c.eta_seconds ? secs(c.eta_seconds) : "–"),
    td(c.waiting ? c.waiting.reason + " until " + c.waiting.until : "")));
  replace("campaigns", rows.length ? table(["Tenant", "Campaign", "State", "Rows", "Pending", "Speed", "ETA", "Waiting"], rows, { num: [3, 4, 5, 6] }) : el("p", { class: "muted" }, "No campaign is running."));
}

function renderAudit(o) {
  const pauses = (o.pauses || []).map((p) => el("li", {}, p.kind + " " + p.name + " paused by " + p.by + " at " + p.at));
  const rows = (o.audit || []).map((a) => el("tr", {}, td(a.at), td(a.who), td(a.action), td(a.target, "text"), td(a.detail || "", "text")));
  replace("audit",
    pauses.length ? el("ul", { id: "pauses" }, pauses) : el("p", { class: "muted" }, "Nothing is paused."),
    table(["When", "Who", "Action", "Target", "Detail"], rows, { id: "audit-log" }));
}

function render(o) {
  if (o.history) {
    for (const k of Object.keys(series)) delete series[k];
    Object.assign(series, o.series || {});
  } else {
    for (const [k, v] of Object.entries(o.series || {})) {
      const s = series[k] || (series[k] = []);
      s.push(v);
      while (s.length > HISTORY) s.shift();
    }
  }
  document.getElementById("instance").textContent = o.instance || "";
  const store = document.getElementById("store");
  store.textContent = "store " + (o.store ? o.store.backend : "?") + (o.store && o.store.up ? " up" : " DOWN");
  store.className = "badge" + (o.store && o.store.up ? "" : " bad");
  const spark = (prefix) => Object.fromEntries(Object.entries(series).filter(([k]) => k.startsWith(prefix)));
  section("channels", [o.channels, spark("")], () => renderChannels(o));
  section("lanes", o.lanes, () => renderLanes(o));
  section("connectors", [o.connectors, spark("connector.")], () => renderConnectors(o));
  section("tenants", [o.tenants, spark("tenant.")], () => renderTenants(o));
  section("held", o.held, () => renderHeld(o));
  section("dead", o.dead_letters, () => renderDead(o));
  section("campaigns", o.campaigns, () => renderCampaigns(o));
  section("audit", [o.audit, o.pauses], () => renderAudit(o));
}

function connect() {
  const live = document.getElementById("live");
  const es = new EventSource("/v1/admin/stream");
  es.addEventListener("overview", (e) => {
    live.textContent = "live";
    live.className = "badge";
    try { render(JSON.parse(e.data)); } catch (err) { toast("Could not show the update: " + err, true); }
  });
  es.addEventListener("expired", () => { es.close(); location.reload(); });
  es.onerror = () => {
    live.textContent = "disconnected";
    live.className = "badge bad";
    if (es.readyState === EventSource.CLOSED) {
      // A 401 (the session ended) closes it for good: the page shows the login.
      setTimeout(() => location.reload(), 2000);
    }
  };
}

document.addEventListener("DOMContentLoaded", connect);
