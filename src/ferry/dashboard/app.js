// The dashboard: one tenant's jobs (one page in the DOM), its live updates, and actions.

import { api, currentKey, useKey } from "./api.js";
import { ThroughputChart } from "./chart.js";
import { LiveFeed } from "./live.js";

const PAGE_SIZE = 25;
const LOG_SIZE = 200;
const STATUSES = ["PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"];
// Examples for the built-in types; any other type's template is made from its
// payload's JSON Schema (GET /job-types).
const TEMPLATES = {
  sleep: { delayMs: 1000 },
  email: { to: "someone@example.com", subject: "Hello from Ferry", body: "It works." },
  webhook: { url: "https://example.com/hook", method: "POST", body: { hello: "world" } },
  data_processing: { operation: "percentiles", values: [3, 1, 4, 1, 5, 9, 2, 6] },
};

const $ = (id) => document.getElementById(id);
const state = { tenant: "", status: "", type: "", offset: 0, total: 0, page: new Map(), selected: null };

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

const time = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "");
const shortId = (id) => id.slice(-8);

// -- the job table ------------------------------------------------------------------

function badge(status) {
  return element("span", { class: `badge ${status}`, "data-testid": "job-status" }, status);
}

// What a running job last reported (ctx.progress): "42%", and its message.
function progressText(job) {
  const percent = `${Math.round(job.progress * 100)}%`;
  return job.progressMessage ? `${percent} ${job.progressMessage}` : percent;
}

function progressBar(job) {
  if (job.status !== "RUNNING" || job.progress === null || job.progress === undefined) return "";
  return element(
    "span", { class: "progress", "data-testid": "job-progress", title: job.progressMessage ?? "" },
    element("progress", { max: "1", value: String(job.progress) }),
    element("span", { class: "progress-text" }, progressText(job)),
  );
}

function jobRow(job) {
  const row = element(
    "tr",
    { "data-testid": "job-row", "data-job-id": job.id },
    element("td", {}, element("code", { title: job.id }, shortId(job.id))),
    element("td", {}, job.type),
    element("td", { class: "status" }, badge(job.status), progressBar(job)),
    element("td", { class: "attempts" }, `${job.attempts}/${job.maxAttempts}`),
    element("td", {}, time(job.createdAt)),
    element("td", { class: "updated" }, time(job.updatedAt)),
  );
  if (job.id === state.selected) row.classList.add("selected");
  row.addEventListener("click", () => select(job.id));
  return row;
}

// Reads of the page can come back out of order: an older one than the page shown is dropped.
let pageReads = 0;
let pageShown = 0;

async function loadPage() {
  try {
    const read = ++pageReads;
    const asked = arrivals;
    const page = await api.listJobs({
      tenantId: state.tenant, status: state.status, type: state.type, limit: PAGE_SIZE, offset: state.offset,
    });
    if (read < pageShown) return;
    pageShown = read;
    withLiveUpdates(page.jobs, asked);
    state.total = page.total;
    state.page = new Map(page.jobs.map((job) => [job.id, job]));
    $("jobs").replaceChildren(...page.jobs.map(jobRow));
    $("empty").hidden = page.jobs.length > 0;
    $("empty").textContent = "No jobs match.";
    const last = Math.min(state.offset + PAGE_SIZE, page.total);
    $("page-info").textContent = page.total ? `${state.offset + 1}–${last} of ${page.total.toLocaleString()}` : "";
    $("prev").disabled = state.offset === 0;
    $("next").disabled = last >= page.total;
  } catch (error) {
    $("jobs").replaceChildren();
    $("empty").hidden = false;
    $("empty").textContent = error.message;
  }
}

async function loadStats() {
  try {
    const stats = await api.stats(state.tenant);
    const shown = ["total", ...STATUSES.map((s) => s.toLowerCase())].map((name) => [name, name, stats[name].toLocaleString()]);
    // Fair scheduling (null when off): jobs waiting for the tenant's turn, and the oldest one's wait.
    if (stats.waiting !== null) {
      shown.push(["waiting", "waiting", stats.waiting.toLocaleString()], ["oldest-wait", "oldest wait", duration(stats.oldestWaitMs)]);
    }
    // Paused (POST /tenants/{id}/pause): its jobs are held until resumed.
    if (stats.paused || stats.pausedTypes.length) {
      shown.push(["paused", "paused", stats.paused ? "all jobs" : stats.pausedTypes.join(", ")]);
    }
    $("stats").replaceChildren(
      ...shown.map(([key, label, value]) =>
        element("div", {}, element("dt", {}, label), element("dd", { "data-stat": key }, value)),
      ),
    );
  } catch {
    // The table shows the error.
  }
}

function duration(ms) {
  return ms < 1000 ? `${ms} ms` : ms < 120_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 60_000)} min`;
}

// Live updates come in bursts: re-read the page and the counters at most a few times a second.
function throttled(load, ms) {
  let timer = null;
  return () => {
    if (timer === null) timer = setTimeout(() => { timer = null; load(); }, ms);
  };
}
const refreshPage = throttled(loadPage, 250);
const refreshStats = throttled(loadStats, 500);

// -- live updates -------------------------------------------------------------------

// The latest live event of each job, in arrival order, kept until a page read after it
// has come back. A page read while events arrive can be older than they are (a job's
// RUNNING and COMPLETED can come 10 ms apart): its rows get them again on top.
const latest = new Map();
const LATEST_SIZE = 10_000;
let arrivals = 0;

function remember(event) {
  latest.delete(event.jobId); // re-inserted last: the map stays in arrival order
  latest.set(event.jobId, { event, arrival: ++arrivals });
  if (latest.size > LATEST_SIZE) latest.delete(latest.keys().next().value);
}

function applyEvent(job, event) {
  Object.assign(job, { status: event.status, attempts: event.attempts, error: event.error, updatedAt: event.at });
  if (event.status === "RUNNING") Object.assign(job, { progress: null, progressMessage: null }); // a new attempt
}

function withLiveUpdates(jobs, asked) {
  for (const job of jobs) {
    const seen = latest.get(job.id);
    if (seen && seen.arrival > asked) applyEvent(job, seen.event);
  }
  // Any later read includes what arrived before this one was asked for.
  for (const [id, seen] of latest) {
    if (seen.arrival > asked) break;
    latest.delete(id);
  }
}

const chart = new ThroughputChart($("throughput"));

function logUpdate(event) {
  const text = `${time(event.at)}  #${event.seq}  ${shortId(event.jobId)}  ${event.status}` +
    (event.attempts ? `  attempt ${event.attempts}` : "") + (event.error ? `  ${event.error}` : "");
  const log = $("log");
  log.prepend(element("li", { "data-testid": "update" }, text));
  while (log.childElementCount > LOG_SIZE) log.lastElementChild.remove();
}

function onEvent(event) {
  remember(event);
  logUpdate(event);
  chart.count(event.status, event.at);
  refreshStats();
  const job = state.page.get(event.jobId);
  if (job) {
    applyEvent(job, event);
    const row = document.querySelector(`tr[data-job-id="${job.id}"]`);
    if (row) row.replaceWith(jobRow(job));
    if (state.status && state.status !== event.status) refreshPage();
  } else if (state.offset === 0) {
    refreshPage(); // most likely a new job on the first page
  }
  if (event.jobId === state.selected) showDetail(event.jobId);
}

// Progress comes often (up to ten times a second per job): it changes the job's row
// and its detail in place, and reads nothing again.
function onProgress(event) {
  const job = state.page.get(event.jobId);
  if (job && job.status !== "RUNNING") return; // it has ended since (a cancel overtook it)
  if (job) {
    Object.assign(job, { progress: event.progress, progressMessage: event.message });
    document.querySelector(`tr[data-job-id="${job.id}"]`)?.replaceWith(jobRow(job));
  }
  if (event.jobId !== state.selected) return;
  const shown = document.querySelector('#detail-fields [data-field="progress"]');
  if (shown) shown.textContent = progressText({ progress: event.progress, progressMessage: event.message });
  else showDetail(event.jobId); // its first report: the field is not there yet
}

function onResync() {
  loadPage();
  loadStats();
}

function onStatus(status) {
  const indicator = $("connection");
  indicator.textContent = status;
  indicator.className = `connection ${status.includes("WebSocket") ? "live" : status.includes("SSE") ? "fallback" : "down"}`;
}

const live = new LiveFeed({ onEvent, onProgress, onStatus, onResync });

// -- one job ------------------------------------------------------------------------

function field(name, value, preformatted = false) {
  const shown = preformatted ? element("pre", {}, JSON.stringify(value, null, 2)) : String(value ?? "");
  return [element("dt", {}, name), element("dd", { "data-field": name }, shown)];
}

// Every event of the selected job reads it again; the answers can come back out of
// order, and only the newest read's is shown.
let detailReads = 0;

async function showDetail(id) {
  const read = ++detailReads;
  let job;
  try {
    job = await api.getJob(id);
  } catch (error) {
    if (error.status === 404 && read === detailReads) { state.selected = null; $("detail").hidden = true; }
    return;
  }
  if (state.selected !== id || read !== detailReads) return;
  $("detail").hidden = false;
  $("detail-id").textContent = job.id;
  $("detail-fields").replaceChildren(
    ...field("status", job.status), ...field("type", job.type),
    ...field("attempts", `${job.attempts} of ${job.maxAttempts}`),
    // A running job always has the field, so that its PROGRESS events update it in place.
    ...(job.progress !== null || job.status === "RUNNING"
      ? field("progress", job.progress === null ? "none reported" : progressText(job))
      : []),
    ...field("payload", job.payload, true),
    ...(job.result !== null ? field("result", job.result, true) : []),
    ...(job.error ? field("error", job.error) : []),
    ...field("created", job.createdAt), ...field("updated", job.updatedAt),
    ...(job.startedAt ? field("started", job.startedAt) : []),
    ...(job.finishedAt ? field("finished", job.finishedAt) : []),
    ...(job.nextRunAt && job.status === "PENDING" ? field("next run", job.nextRunAt) : []),
  );
  // The API's rules: retry a dead letter, cancel what has not ended, delete what is not running.
  $("retry").disabled = !["FAILED", "CANCELLED"].includes(job.status);
  $("cancel").disabled = !["PENDING", "RUNNING"].includes(job.status);
  $("delete").disabled = job.status === "RUNNING";
}

function select(id) {
  state.selected = id;
  $("action-error").hidden = true;
  for (const row of document.querySelectorAll("tr.selected")) row.classList.remove("selected");
  document.querySelector(`tr[data-job-id="${id}"]`)?.classList.add("selected");
  showDetail(id);
}

async function act(action) {
  const id = state.selected;
  $("action-error").hidden = true;
  try {
    await action(id);
  } catch (error) {
    $("action-error").textContent = error.message;
    $("action-error").hidden = false;
  }
  await Promise.all([showDetail(id), loadPage(), loadStats()]);
}

// -- creating jobs --------------------------------------------------------------------

function showTemplate() {
  const name = $("job-type").value;
  $("payload").value = JSON.stringify(TEMPLATES[name] ?? {}, null, 2);
}

const EXAMPLES = { string: "", integer: 0, number: 0, boolean: false, array: [], object: {} };

function example(schema) {
  // A payload of every field: its default, or an empty value of its type.
  const struct = schema.$ref ? schema.$defs[schema.$ref.split("/").pop()] : schema;
  const payload = {};
  for (const [field, property] of Object.entries(struct.properties ?? {})) {
    payload[field] = "default" in property ? property.default : EXAMPLES[property.type] ?? null;
  }
  return payload;
}

async function loadJobTypes() {
  // The types this deployment runs (FERRY_JOBS's too), in both selects.
  let types;
  try {
    types = await api.jobTypes();
  } catch {
    return; // the built-in types the page lists will do
  }
  for (const type of types) TEMPLATES[type.name] ??= example(type.payloadSchema);
  const names = types.map((type) => type.name);
  const chosen = $("job-type").value;
  $("job-type").replaceChildren(...names.map((name) => element("option", { value: name }, name)));
  $("job-type").value = names.includes(chosen) ? chosen : names[0];
  $("type-filter").replaceChildren(
    element("option", { value: "" }, "any"),
    ...names.map((name) => element("option", { value: name }, name)),
  );
  $("type-filter").value = state.type; // the table's filter stays as it was
  showTemplate();
}

async function create(submit) {
  submit.preventDefault();
  const error = $("create-error");
  error.hidden = true;
  let payload;
  try {
    payload = JSON.parse($("payload").value);
  } catch (problem) {
    error.textContent = `payload: not valid JSON (${problem.message})`;
    error.hidden = false;
    return;
  }
  const spec = { tenantId: state.tenant, type: $("job-type").value, payload };
  if ($("max-attempts").value) spec.maxAttempts = Number($("max-attempts").value);
  if ($("delay-ms").value) spec.delayMs = Number($("delay-ms").value);
  try {
    await api.createJob(spec);
  } catch (problem) {
    error.textContent = problem.message;
    error.hidden = false;
    return;
  }
  if (state.offset === 0) loadPage();
  loadStats();
}

// -- schedules ------------------------------------------------------------------------

const SCHEDULES_EVERY_MS = 5000; // their last runs move on without an event of their own

const dateTime = (iso) => (iso ? new Date(iso).toLocaleString() : "–");

function scheduleRow(schedule) {
  const name = element("td", {}, schedule.name);
  if (schedule.paused) name.append(element("span", { class: "badge paused" }, "paused"));
  return element(
    "tr",
    { "data-testid": "schedule-row", "data-schedule-id": schedule.id },
    name,
    element("td", { title: schedule.description ?? "" }, element("code", {}, schedule.cron), ` ${schedule.timezone}`),
    element("td", {}, schedule.job.type),
    element("td", { "data-testid": "schedule-next" }, dateTime(schedule.nextRunAt)),
    element("td", { "data-testid": "schedule-last" }, dateTime(schedule.lastRunAt)),
  );
}

async function loadSchedules() {
  try {
    const page = await api.listSchedules(state.tenant);
    $("schedules").replaceChildren(...page.schedules.map(scheduleRow));
    $("no-schedules").hidden = page.schedules.length > 0;
    $("no-schedules").textContent = "No schedules for this tenant (POST /schedules).";
  } catch (error) {
    $("schedules").replaceChildren();
    $("no-schedules").hidden = false;
    $("no-schedules").textContent = error.message;
  }
}

// -- wiring ---------------------------------------------------------------------------

function followTenant() {
  state.tenant = $("tenant").value.trim();
  state.offset = 0;
  state.selected = null;
  $("detail").hidden = true;
  $("log").replaceChildren();
  localStorage.setItem("ferry.tenant", state.tenant);
  onStatus("connecting");
  live.follow(state.tenant);
  loadPage();
  loadStats();
  loadSchedules();
}

function start() {
  $("tenant").value = new URLSearchParams(location.search).get("tenant") || localStorage.getItem("ferry.tenant") || "tenant-1";
  let typing = null;
  $("tenant").addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(followTenant, 400); });
  $("job-type").addEventListener("change", showTemplate);
  $("create-form").addEventListener("submit", create);
  for (const [id, key] of [["status-filter", "status"], ["type-filter", "type"]]) {
    $(id).addEventListener("change", () => { state[key] = $(id).value; state.offset = 0; loadPage(); });
  }
  $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE_SIZE); loadPage(); });
  $("next").addEventListener("click", () => { state.offset += PAGE_SIZE; loadPage(); });
  $("retry").addEventListener("click", () => act(api.retry));
  $("cancel").addEventListener("click", () => act(api.cancel));
  $("delete").addEventListener("click", () => act(async (id) => {
    await api.remove(id);
    state.selected = null;
  }));
  $("api-key").value = currentKey();
  $("api-key-label").hidden = !currentKey();
  window.addEventListener("ferry:key-needed", () => {
    live.close(); // nothing streams without a key: wait for one
    $("api-key-label").hidden = false;
    $("api-key").focus();
    onStatus("API key needed");
  });
  $("api-key").addEventListener("change", () => {
    useKey($("api-key").value.trim());
    live.transport = "ws"; // a refusal without a key said nothing about WebSocket
    followTenant();
    loadJobTypes();
  });
  showTemplate();
  followTenant();
  loadJobTypes();
  setInterval(loadSchedules, SCHEDULES_EVERY_MS);
}

start();
