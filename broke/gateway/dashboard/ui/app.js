// The broke dashboard: reads /ui/api/*, listens to /ui/api/events, changes state through the same
// core functions as the CLI. Every value goes into the page as text, never as markup.
"use strict";

const $ = (selector) => document.querySelector(selector);
let csrf = null;
let overview = null;
let health = { keys: [], models: [], workers: [], worker_processes: [] };
let healthAt = Date.now();
const MAX_ROWS = 200;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function fill(tbody, rows, empty = "none") {
  if (rows.length) { tbody.replaceChildren(...rows); return; }
  const columns = tbody.closest("table").querySelectorAll("thead th").length;
  tbody.replaceChildren(el("tr", { class: "empty" }, el("td", { colspan: String(columns), class: "dim" }, empty)));
}

async function getJSON(path) {
  const answer = await fetch(path, { credentials: "same-origin" });
  if (answer.status === 401) { location.href = "/ui/login"; throw new Error("logged out"); }
  return answer.json();
}

function notice(text, refused) {
  const box = $("#notice");
  box.hidden = false;
  box.className = refused ? "refused" : "";
  box.textContent = text;
}

async function change(path, body, done) {
  const answer = await fetch(path, {
    method: "POST", credentials: "same-origin",
    headers: { "content-type": "application/json", "x-broke-csrf": csrf },
    body: JSON.stringify(body),
  });
  const data = await answer.json();
  if (!answer.ok) {
    const message = data.error ? data.error.message : `HTTP ${answer.status}`;
    const why = data.error && data.error.type === "frozen"
      ? " — the state is frozen, so broke refuses every change until it is unfrozen (the Unfreeze button above, or `broke freeze off`)."
      : "";
    notice(`refused: ${message}${why}`, true);
  } else {
    notice(`${done} (generation ${data.generation})`, false);
  }
  await loadOverview();
}

// ---- slots ----------------------------------------------------------------------------------------
function chainCell(row) {
  const items = row.candidates.map((c) => el("li", { class: c.usable ? "" : "skip", title: c.skip_reason || c.source },
    `${c.deployment} `, el("span", { class: "dim" }, c.usable ? `(${c.source})` : `(${c.skip_reason})`)));
  return el("td", {}, items.length ? el("ol", {}, ...items) : el("span", { class: "dim" }, "no candidates"));
}

function slotRow(row) {
  const backends = el("select", { "aria-label": `backend for ${row.slot}`, class: "backend" },
    ...overview.backends.map((b) => { const o = el("option", { value: b }, b); o.selected = b === row.backend; return o; }));
  const swap = el("button", { type: "button", class: "swap",
    onclick: () => change("/ui/api/swap", { slot: row.slot, backend: backends.value }, `${row.slot} → ${backends.value}`) }, "Swap");
  const fallbacks = el("input", { class: "fallbacks", "aria-label": `fallbacks for ${row.slot}`, value: row.fallbacks.join(", "),
    placeholder: "backend or slot, …" });
  const setFallbacks = el("button", { type: "button", class: "set-fallbacks",
    onclick: () => {
      const entries = fallbacks.value.split(",").map((s) => s.trim()).filter(Boolean);
      change("/ui/api/fallbacks", { slot: row.slot, fallbacks: entries },
        `${row.slot} falls back to: ${entries.join(" → ") || "nothing"}`);
    } }, "Set");
  const now = row.chosen ? el("span", { class: "ok chosen" }, row.chosen)
    : el("span", { class: "bad chosen" }, `none (${row.reason})`);
  const tier = row.by_complexity ? el("div", { class: "dim" }, "routes by complexity: a tier per prompt") : null;
  return el("tr", { dataset: { slot: row.slot } },
    el("td", {}, row.slot, row.pinned ? el("span", { class: "dim" }, " (pinned)") : null),
    el("td", {}, row.family),
    el("td", { class: "actions" }, backends, " ", swap),
    el("td", { class: "actions" }, fallbacks, " ", setFallbacks),
    el("td", {}, now, tier),
    chainCell(row));
}

function options(select, names, current) {
  select.replaceChildren(...names.map((n) => { const o = el("option", { value: n }, n); o.selected = n === current; return o; }));
}

async function loadOverview() {
  overview = await getJSON("/ui/api/overview");
  if (overview.error) { notice(overview.error.message, true); return; }
  $("#generation").textContent = `generation ${overview.generation}`;
  $("#team").textContent = `team ${overview.active_team || "–"}`;
  $("#profile").textContent = `profile ${overview.active_profile || "–"}`;
  $("#frozen").hidden = !overview.frozen;
  $("#freeze").textContent = overview.frozen ? "Unfreeze" : "Freeze";
  options($("#team-select"), overview.teams, overview.active_team);
  options($("#profile-select"), overview.profiles, overview.active_profile);
  fill($("#slots tbody"), overview.slots.map(slotRow));
  const tiers = Object.entries(overview.tiers);
  const t = overview.thresholds;
  $("#tiers").textContent = tiers.length
    ? `auto tiers: ${tiers.map(([name, b]) => `${name}: ${b.join(", ")}`).join(" · ")} (balanced from p_strong ${t.balanced_from}, premium from ${t.premium_from})`
    : "auto: no router tiers set (`broke router tier`)";
}

// ---- traffic --------------------------------------------------------------------------------------
const clock = (ts) => new Date(ts * 1000).toLocaleTimeString([], { hour12: false });

function requestRow(r) {
  const good = r.status >= 200 && r.status < 400;
  return el("tr", { class: "request", dataset: { slot: r.slot, backend: r.backend, status: String(r.status) } },
    el("td", {}, clock(r.ts)), el("td", {}, r.client), el("td", {}, r.slot),
    el("td", { class: "backend", title: r.replica || "" }, r.node ? `${r.backend} @ ${r.node}` : r.backend), el("td", {}, r.key_ref || "–"),
    el("td", { class: good ? "ok" : "bad", title: r.error }, r.status, r.error ? el("div", { class: "why" }, r.error) : null),
    el("td", { class: "num" }, r.attempts),
    el("td", { class: "num" }, r.latency_ms.toFixed(0)), el("td", { class: "num" }, r.tokens ?? "–"),
    el("td", { class: "num" }, usd(r.cost_usd, r.backend !== "-" && r.tokens)), el("td", {}, r.tier || ""));
}

// ---- cost -----------------------------------------------------------------------------------------
function usd(value, unpricedIfNull = false) {
  if (value === null || value === undefined) return unpricedIfNull ? "unpriced" : "–";
  return value.toFixed(4);
}

function costRow(name) {
  return (r) => el("tr", {}, el("td", {}, r[name]), el("td", { class: "num" }, r.requests),
    el("td", { class: "num" }, usd(r.total_usd)), el("td", { class: "num" }, usd(r.saved_usd)),
    el("td", { class: "num" }, r.unpriced || "–"));
}

async function loadCost() {
  const data = await getJSON("/ui/api/cost");
  if (data.error) { $("#cost-total").textContent = data.error; return; }
  $("#cost-total").textContent = `${data.requests} requests: spent $${usd(data.total_usd)}, saved $${usd(data.saved_usd)}` +
    (data.unpriced ? ` (${data.unpriced} unpriced, not counted)` : "");
  fill($("#cost-slots tbody"), data.rows.map(costRow("slot")), "no requests yet");
  fill($("#cost-days tbody"), data.days.slice().reverse().map(costRow("day")), "no requests yet");
  fill($("#budgets tbody"), data.budgets.map((b) => el("tr", {}, el("td", {}, b.owner),
    el("td", { class: "num" }, b.budget_usd), el("td", {}, b.period), el("td", { class: "num" }, usd(b.spent_usd)),
    el("td", { class: b.left_usd > 0 ? "num" : "num bad" }, usd(b.left_usd)), el("td", {}, b.resets_at))), "no budgets");
}

function bar(fraction, kind) {
  const node = el("span", { class: kind ? `bar ${kind}` : "bar" });
  node.style.width = `${Math.max(0, Math.min(1, fraction)) * 8}rem`;
  return node;
}

let recent = [];  // the newest traces, oldest first, for the sparklines

// Latency of the last requests of one slot or backend: a line, failed requests as red dots.
function sparkline(traces) {
  const svg = "http://www.w3.org/2000/svg";
  const width = 120, height = 24;
  const node = document.createElementNS(svg, "svg");
  node.setAttribute("class", "spark");
  node.setAttribute("viewBox", `0 0 ${width} ${height}`);
  node.setAttribute("width", width);
  node.setAttribute("height", height);
  if (!traces.length) return node;
  const top = Math.max(...traces.map((t) => t.latency_ms), 1);
  const step = traces.length > 1 ? width / (traces.length - 1) : 0;
  const points = traces.map((t, i) => [i * step, height - 2 - (t.latency_ms / top) * (height - 4)]);
  const line = document.createElementNS(svg, "polyline");
  line.setAttribute("points", points.map((p) => p.join(",")).join(" "));
  node.append(line);
  traces.forEach((t, i) => {
    const failed = t.status < 200 || t.status >= 400;
    if (!failed && traces.length > 1) return;
    const dot = document.createElementNS(svg, "circle");
    dot.setAttribute("cx", points[i][0]); dot.setAttribute("cy", points[i][1]); dot.setAttribute("r", 2);
    if (failed) dot.setAttribute("class", "failed");
    node.append(dot);
  });
  return node;
}

function statsRows(rows, field) {
  const slowest = Math.max(1, ...rows.map((r) => r.p90_ms || 0));
  return rows.map((r) => el("tr", {},
    el("td", {}, r.name), el("td", { class: "num" }, r.requests),
    el("td", {}, bar(r.error_rate, "err"), `${(r.error_rate * 100).toFixed(0)}%`, r.failovers ? ` · ${r.failovers} failover${r.failovers === 1 ? "" : "s"}` : ""),
    el("td", {}, bar((r.p50_ms || 0) / slowest), r.p50_ms === null ? "–" : `${r.p50_ms} / ${r.p90_ms}`),
    el("td", {}, sparkline(recent.filter((t) => t[field] === r.name).slice(-50)))));
}

async function loadTraffic() {
  const data = await getJSON("/ui/api/traffic");
  recent = data.recent;
  fill($("#requests tbody"), data.recent.slice().reverse().map(requestRow), "no requests yet");
  fill($("#stats-slots tbody"), statsRows(data.stats.slots, "slot"), "no requests yet");
  fill($("#stats-backends tbody"), statsRows(data.stats.backends, "backend"), "no requests yet");
}

let statsTimer = null;
function onRequest(entry) {
  const body = $("#requests tbody");
  const row = requestRow(entry);
  row.classList.add("fresh");
  body.prepend(row);
  while (body.rows.length > MAX_ROWS) body.deleteRow(-1);
  body.querySelector("tr.empty")?.remove();
  if (entry.tier) { $("#decisions tbody tr.empty")?.remove(); $("#decisions tbody").prepend(decisionRow(entry)); }
  if (!statsTimer) statsTimer = setTimeout(() => { statsTimer = null; loadTraffic(); loadCost(); }, 1000);
}

// ---- health ---------------------------------------------------------------------------------------
function left(record) {
  if (record.remaining_s === null) return "–";
  const seconds = record.remaining_s - (Date.now() - healthAt) / 1000;
  return seconds > 0 ? `${Math.ceil(seconds)} s` : "over";
}

function statusCell(status) {
  return el("td", { class: status === "healthy" ? "ok" : status === "cooldown" ? "warn" : "bad" }, status);
}

function renderHealth() {
  fill($("#health-keys tbody"), health.keys.map((k) => el("tr", {}, el("td", {}, k.name), el("td", {}, k.key_ref || "–"),
    statusCell(k.status), el("td", { class: "num" }, left(k)), el("td", {}, k.reason))), "no key has failed yet");
  fill($("#health-models tbody"), health.models.map((m) => el("tr", {}, el("td", {}, m.name), statusCell(m.status),
    el("td", { class: "num" }, left(m)), el("td", {}, m.reason))), "no backend has failed yet");
  const byKey = Object.fromEntries(health.workers.map((w) => [w.name, w]));
  fill($("#workers tbody"), health.worker_processes.map((w) => {
    const record = byKey[`${w.model}@${w.port}`];
    return el("tr", {}, el("td", {}, w.backend), el("td", {}, w.port), el("td", {}, w.pid), el("td", {}, w.server_pid ?? "–"),
      el("td", { class: w.state === "ready" ? "ok" : "bad" }, w.state),
      record ? statusCell(record.status) : el("td", { class: "dim" }, "–"),
      el("td", { class: "num" }, record ? record.failures : 0));
  }), "no local workers running (`broke worker start`)");
  fill($("#nodes tbody"), health.nodes.map((n) => el("tr", {}, el("td", {}, n.name), el("td", {}, n.url),
    el("td", {}, n.backend), statusCell(n.status))), "no nodes (`broke node add`)");
}

async function loadHealth() {
  health = await getJSON("/ui/api/health");
  healthAt = Date.now();
  renderHealth();
}

// ---- local models ---------------------------------------------------------------------------------
function chart(target, figures) {
  if (!figures || !figures.cells.length) {
    target.replaceChildren(el("p", { class: "dim" }, "no baselines yet (`broke benchmark-sequential`)"));
    return;
  }
  const top = Math.max(...figures.cells.map((c) => c[2]));
  target.replaceChildren(...figures.cells.map(([model, machine, value]) => el("div", { class: "row" },
    el("span", { class: "label", title: `${model} on ${machine}` }, `${model} · ${machine}`),
    el("span", {}, bar(top ? value / top : 0)),
    el("span", { class: "value" }, `${value.toFixed(value < 10 ? 2 : 0)} ${figures.unit}`))));
}

async function thumb(cell, requestId, verdict) {
  const answer = await fetch("/ui/api/feedback", {
    method: "POST", credentials: "same-origin",
    headers: { "content-type": "application/json", "x-broke-csrf": csrf },
    body: JSON.stringify({ request_id: requestId, verdict }),
  });
  const data = await answer.json();
  if (!answer.ok) { notice(`refused: ${data.error ? data.error.message : `HTTP ${answer.status}`}`, true); return; }
  cell.textContent = verdict === "good" ? "👍" : "👎";
  notice(`${requestId}: ${verdict}${data.learned ? "; the router learned from it" : ` (recorded; ${data.why_not || "the router does not learn from it"})`}`, false);
}

function decisionRow(d) {
  const number = (v) => (v === null || v === undefined ? "–" : v.toFixed(3));
  const cell = el("td", { class: "thumbs" });
  for (const [verdict, face] of [["good", "👍"], ["bad", "👎"]]) {
    cell.append(el("button", { title: `the answer was ${verdict}`, onclick: () => thumb(cell, d.request_id, verdict) }, face));
  }
  return el("tr", {}, el("td", {}, clock(d.ts)), el("td", {}, d.slot), el("td", {}, d.tier), el("td", { class: "num" }, number(d.p_strong)),
    el("td", { class: "num" }, number(d.prompt_complexity)), el("td", {}, d.temperature), el("td", {}, d.backend), cell);
}

async function loadLocal() {
  const data = await getJSON("/ui/api/local");
  if (data.baselines.error) {
    $("#chart-decode").replaceChildren(el("p", { class: "bad" }, data.baselines.error));
  } else {
    chart($("#chart-decode"), data.baselines.metrics.decode);
    chart($("#chart-ttft"), data.baselines.metrics.ttft);
  }
  fill($("#decisions tbody"), data.decisions.slice().reverse().map(decisionRow),
    "no request has been routed by complexity yet");
}

function runRow(r) {
  const lanes = Object.entries(r.lanes).map(([lane, said]) => `${lane} ${said}`).join(", ");
  return el("tr", {}, el("td", {}, r.run), el("td", {}, r.client || "–"), el("td", {}, r.status),
    el("td", {}, r.verdict || "–"), el("td", {}, lanes || "–"), el("td", { class: "num" }, String(r.commands)),
    el("td", { class: "num" }, String(r.requests)), el("td", {}, r.task));
}

async function loadHarness() {
  const data = await getJSON("/ui/api/harness");
  fill($("#runs tbody"), data.runs.map(runRow), "no harness runs yet (`broke harness run -- COMMAND`)");
  const health = Object.entries(data.lanes).map(([lane, counts]) =>
    `${lane}: ` + Object.entries(counts).map(([said, n]) => `${n} ${said}`).join(", "));
  $("#lane-health").textContent = health.length ? `lane health over these runs — ${health.join("; ")}` : "";
}

// ---- live -----------------------------------------------------------------------------------------
function listen() {
  const source = new EventSource("/ui/api/events");
  source.addEventListener("open", () => { $("#live").textContent = "live"; $("#live").classList.add("on"); });
  source.addEventListener("error", () => { $("#live").textContent = "reconnecting…"; $("#live").classList.remove("on"); });
  source.addEventListener("request", (event) => onRequest(JSON.parse(event.data)));
  source.addEventListener("state", () => { loadOverview(); loadHealth(); });
}

async function main() {
  csrf = (await getJSON("/ui/api/session")).csrf;
  $("#freeze").addEventListener("click", () => {
    const frozen = !overview.frozen;
    change("/ui/api/freeze", { frozen }, frozen ? "state frozen" : "state unfrozen");
  });
  $("#team-load").addEventListener("click", () => {
    const name = $("#team-select").value;
    change("/ui/api/team", { name }, `team ${name} loaded`);
  });
  $("#profile-load").addEventListener("click", () => {
    const name = $("#profile-select").value;
    change("/ui/api/profile", { name }, `profile ${name} loaded`);
  });
  $("#logout").addEventListener("click", async () => {
    await fetch("/ui/logout", { method: "POST", credentials: "same-origin", headers: { "x-broke-csrf": csrf } });
    location.href = "/ui/login";
  });
  await Promise.all([loadOverview(), loadTraffic(), loadHealth(), loadLocal(), loadCost(), loadHarness()]);
  listen();
  setInterval(renderHealth, 1000);  // cooldowns count down
  setInterval(loadHealth, 5000);
  setInterval(loadHarness, 5000);
  document.body.dataset.ready = "1";
}

main();
