// The SystemImager console: one snapshot (/api/console) when the page opens, then only
// what changes, from the appliance's event stream (/api/stream). Rows are updated in
// place, so an opened log stays open; a log tail is its own stream (/api/installs/HOST/log).
"use strict";

const $ = (id) => document.getElementById(id);
const hosts = new Map();      // hostname -> its last view
const images = new Map();     // image name -> its last view
const tails = new Map();      // hostname -> EventSource of its log
let imagesEpoch = 0;          // moves when the image list is reloaded
let token = sessionStorage.getItem("si-token") || "";

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("data-")) e.setAttribute(k, v);
    else if (k === "onclick") e.addEventListener("click", v); else e[k] = v;
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}
function human(n) { const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; } return (i ? n.toFixed(1) : n.toFixed(0)) + " " + u[i]; }
function when(ts) { if (!ts) return "-"; const d = new Date(ts * 1000);
  return (Date.now() - d < 86400000 ? d.toLocaleTimeString() : d.toLocaleString()); }
function badge(state) { return el("span", { class: "state " + state, "data-state": state }, state); }
function bar(percent) { const b = el("span", { class: "bar" }); const f = el("span");
  f.style.width = Math.max(0, Math.min(100, percent)) + "%"; b.append(f); return b; }
function flash(text, error) { const f = $("flash"); f.textContent = text; f.hidden = false;
  f.className = error ? "error" : ""; }
async function getJSON(path) { const r = await fetch(path); if (!r.ok) throw new Error(path + ": " + r.status);
  return r.json(); }

// --- actions: need the operator token ------------------------------------------
async function act(hostname, action, body) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers["Authorization"] = "Bearer " + token;
  let r, answer;
  try {
    r = await fetch(`/api/hosts/${encodeURIComponent(hostname)}/${action}`,
      { method: "POST", headers, body: JSON.stringify(body || {}) });
    answer = await r.json();
  } catch (e) { flash(`${hostname}: ${action} failed: ${e}`, true); return; }
  if (!r.ok) { flash(`${hostname}: ${action} refused: ${answer.error}`, true); return; }
  flash(answer.message);
  if (answer.host) showHost(answer.host);
}
function tokenState() { $("token-state").textContent = token ? "actions enabled" : "read-only"; }

// --- hosts ----------------------------------------------------------------------
function imageChooser(h) {
  const sel = el("select", { title: "image to assign", "data-role": "image-choice" });
  for (const name of [...images.keys()].sort()) sel.append(el("option", { value: name, selected: name === h.image }, name));
  return sel;
}
function showHost(h) {
  hosts.set(h.hostname, h);
  const run = h.last_install;
  const old = document.querySelector(`#host-rows tr[data-host="${CSS.escape(h.hostname)}"]`);
  const row = el("tr", { "data-host": h.hostname, "data-state": h.state },
    el("td", {}, h.hostname), el("td", {}, badge(h.state)), el("td", { class: "nowrap" }, h.mac || "-"),
    el("td", {}, h.ip || "-"), el("td", {}, h.image || "-"), el("td", { "data-role": "next-boot" }, h.next_boot),
    el("td", { class: "nowrap", "data-role": "last-seen" }, when(h.last_seen)),
    el("td", { class: "nowrap" }, run ? `${run.state} ${run.percent.toFixed(0)}% ${run.phase || ""}` : "-"));
  // The actions cell is kept while the image list is the same, so a choice being made survives
  // the row's updates during an install.
  const kept = old && old.lastChild.dataset.epoch === String(imagesEpoch) ? old.lastChild : null;
  row.append(kept || actionsCell(h));
  if (old) old.replaceWith(row); else insertSorted($("host-rows"), row, h.hostname);
  counts();
}
function actionsCell(h) {
  const sel = imageChooser(h);
  return el("td", { class: "nowrap", "data-epoch": String(imagesEpoch) },
    el("button", { "data-action": "reinstall", title: "next PXE boot autoinstalls",
      onclick: () => act(h.hostname, "reinstall") }, "reinstall"),
    el("button", { "data-action": "local", title: "next PXE boot goes to its own disk",
      onclick: () => act(h.hostname, "local") }, "local boot"),
    sel, el("button", { "data-action": "image", onclick: () => act(h.hostname, "image", { image: sel.value }) },
      "assign"));
}
function dropHost(name) {
  hosts.delete(name);
  const old = document.querySelector(`#host-rows tr[data-host="${CSS.escape(name)}"]`);
  if (old) old.remove();
  counts();
}
function insertSorted(body, row, key) {
  const after = [...body.children].find((r) => r.dataset.host > key);
  body.insertBefore(row, after || null);
}
function showUnenrolled(list) {
  const body = $("unenrolled-rows"); body.textContent = "";
  for (const l of list) body.append(el("tr", {}, el("td", {}, l.mac), el("td", {}, l.ip),
    el("td", {}, `${l.state} until ${when(l.expires)}`)));
  $("unenrolled-box").hidden = list.length === 0;
}

// --- installs: rows in place, each with a log tail that stays open ----------------
function runCells(r) {
  const progress = el("td", { class: "nowrap" }, bar(r.percent), " " + r.percent.toFixed(1) + "%");
  return [el("td", {}, r.hostname), el("td", {}, r.image || "-"), el("td", {}, r.kind),
    el("td", { "data-role": "phase" }, r.phase), progress, el("td", { class: "num" }, human(r.speed_bps) + "/s"),
    el("td", { class: "num" }, Math.round(r.elapsed) + " s"), el("td", {}, badge(r.state))];
}
function showRun(r) {
  let row = document.querySelector(`#runs tr.run[data-run="${r.id}"]`);
  if (!row) {
    row = el("tr", { class: "run", "data-run": String(r.id), "data-host": r.hostname });
    const toggle = el("button", { "data-action": "log", onclick: () => toggleTail(r.hostname) }, "log");
    row.append(...runCells(r), el("td", {}, toggle));
    const body = $("runs");
    body.insertBefore(row, body.firstChild);
    // A newer run of the same host takes over its open tail.
    const pane = document.querySelector(`#runs tr.tail[data-host="${CSS.escape(r.hostname)}"]`);
    if (pane) row.after(pane);
  } else {
    const cells = runCells(r);
    for (let i = 0; i < cells.length; i++) row.children[i].replaceWith(cells[i]);
  }
  row.className = "run " + r.state;
  row.dataset.state = r.state;
  counts();
}
function toggleTail(hostname) {
  const open = document.querySelector(`#runs tr.tail[data-host="${CSS.escape(hostname)}"]`);
  if (open) { open.remove(); tails.get(hostname)?.close(); tails.delete(hostname); return; }
  const pre = el("pre", { class: "log", "data-role": "log" });
  const pane = el("tr", { class: "tail", "data-host": hostname }, el("td", { colSpan: 9 }, pre));
  const row = document.querySelector(`#runs tr.run[data-host="${CSS.escape(hostname)}"]`);
  row.after(pane);
  const source = new EventSource(`/api/installs/${encodeURIComponent(hostname)}/log`);
  let run = null;
  source.addEventListener("log", (e) => {
    const d = JSON.parse(e.data);
    if (run !== null && d.run !== run) pre.textContent = "";
    run = d.run;
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.append(d.text);
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  });
  tails.set(hostname, source);
}

// --- images ---------------------------------------------------------------------
function showImage(i) {
  images.set(i.name, i);
  const versions = i.version_list.map((v) => `${v.version}${v.state === "complete" ? "" : " (" + v.state + ")"}` +
    (v.size ? ` ${human(v.size)}` : "")).join(", ");
  const row = el("tr", { "data-image": i.name }, el("td", {}, i.name), el("td", {}, i.latest ?? "-"),
    el("td", {}, versions || "-"), el("td", {}, i.golden_client || "-"), el("td", {}, i.ip_method || "-"),
    el("td", {}, i.post_install || "-"), el("td", {}, i.hosts.join(", ") || "-"));
  const old = document.querySelector(`#image-rows tr[data-image="${CSS.escape(i.name)}"]`);
  if (old) old.replaceWith(row); else $("image-rows").append(row);
}
async function reloadImages() {
  const list = await getJSON("/api/images");
  images.clear(); $("image-rows").textContent = ""; imagesEpoch++;
  list.forEach(showImage);
  hosts.forEach((h) => showHost(h));   // their image choosers list the new images
  counts();
}

// --- health and events ----------------------------------------------------------
function showHealth(s) {
  const box = $("health"); box.textContent = "";
  for (const svc of s.services) box.append(el("span", { class: "svc " + (svc.ok ? "up" : "down"),
    title: svc.detail || svc.serves }, `${svc.name} ${svc.ok ? "up" : "DOWN"}`));
  if (s.installs_blocked_by && s.installs_blocked_by.length)
    box.append(el("span", { class: "svc down" }, "installs blocked: " + s.installs_blocked_by.join("; ")));
}
function showEvent(e) {
  const list = $("event-list");
  list.insertBefore(el("li", { "data-event": String(e.id) },
    `${when(e.ts)} ${e.source} ${e.kind}${e.host ? " " + e.host : ""}: ${e.detail}`), list.firstChild);
  while (list.children.length > 200) list.lastChild.remove();
  const h = e.host && hosts.get(e.host);
  if (h) { h.last_seen = e.ts; const cell = document.querySelector(
    `#host-rows tr[data-host="${CSS.escape(e.host)}"] td[data-role="last-seen"]`); if (cell) cell.textContent = when(e.ts); }
  if (e.source === "images" || e.source === "fleet") reloadImages();
}
function counts() {
  $("hosts-count").textContent = `(${hosts.size})`; $("hosts-empty").hidden = hosts.size > 0;
  const runs = $("runs").querySelectorAll("tr.run").length;
  $("installs-count").textContent = `(${runs})`; $("installs-empty").hidden = runs > 0;
  $("images-count").textContent = `(${images.size})`; $("images-empty").hidden = images.size > 0;
}

async function start() {
  const fromLink = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromLink) { token = fromLink; sessionStorage.setItem("si-token", token); history.replaceState(null, "", "/"); }
  $("token").value = token; tokenState();
  $("token-form").addEventListener("submit", (e) => { e.preventDefault(); token = $("token").value.trim();
    sessionStorage.setItem("si-token", token); tokenState(); });
  const o = await getJSON("/api/console");
  o.images.forEach(showImage);
  o.hosts.forEach(showHost);
  showUnenrolled(o.unenrolled);
  o.installs.slice().reverse().forEach(showRun);
  o.events.forEach(showEvent);
  showHealth(o.health);
  counts();
  const stream = new EventSource("/api/stream");
  stream.onopen = () => { $("live").className = "on"; };
  stream.onerror = () => { $("live").className = "off"; };
  stream.addEventListener("host", (e) => { const h = JSON.parse(e.data); h.deleted ? dropHost(h.hostname) : showHost(h); });
  stream.addEventListener("install", (e) => showRun(JSON.parse(e.data)));
  stream.addEventListener("event", (e) => showEvent(JSON.parse(e.data)));
  setInterval(async () => {   // /api/health answers 503 with the same body when a service is down
    try { showHealth(await (await fetch("/api/health")).json()); } catch (e) { $("live").className = "off"; }
  }, 10000);
  document.body.dataset.ready = "1";
}
start().catch((e) => flash("the appliance did not answer: " + e, true));
