// The operator's page: jobs by status, a job's detail (live, over Server-Sent Events),
// queue and dead-letter depths, the workers of each lane, replay and cancel. Plain JS against the same HTTP API as
// every client: nothing here the API does not already allow its caller.
"use strict";

const REFRESH_MS = 2000;
const state = { selected: null, stream: null, cursor: null, tasks: [], deadLane: null };

const $ = (id) => document.getElementById(id);

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function headers(extra) {
  const h = Object.assign({ accept: "application/json" }, extra || {});
  const token = sessionStorage.getItem("offload-token");
  if (token) h.authorization = "Bearer " + token;
  return h;
}

async function api(method, path, body) {
  const init = { method, headers: headers(body ? { "content-type": "application/json" } : {}) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await fetch(path, init);
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new Error(`${response.status} ${error.message || response.statusText}`);
  }
  return data;
}

function setConnection(ok, message) {
  const node = $("connection");
  node.textContent = message;
  node.className = ok ? "muted" : "alert";
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleTimeString() : "-";
}

function statusBadge(status) {
  const badge = el("span", status, `status ${status}`);
  badge.dataset.status = status;
  return badge;
}

function progressBar(progress) {
  const cell = el("span");
  if (!progress) return cell;
  const bar = el("span", null, "bar");
  const fill = el("span");
  fill.style.width = `${progress.percent}%`;
  bar.appendChild(fill);
  cell.appendChild(bar);
  cell.appendChild(el("span", ` ${Math.round(progress.percent)}% ${progress.message || ""}`));
  return cell;
}

// -- queues and dead letters ------------------------------------------------------------

async function refreshQueues() {
  let data;
  try {
    data = await api("GET", "/queues");
  } catch (error) {
    $("queues").querySelector("tbody").replaceChildren(row([`queues: ${error.message}`]));
    return;
  }
  const rows = data.queues.map((q) => {
    const tr = row([q.lane, q.visible, q.in_flight, q.delayed, q.dead_letters, age(q.oldest_waiting_s)]);
    tr.dataset.lane = q.lane;
    const actions = el("td");
    const show = el("button", "dead letters");
    show.dataset.action = "show-dead-letters";
    show.addEventListener("click", () => showDeadLetters(q.lane));
    const replay = el("button", "replay all");
    replay.dataset.action = "replay";
    replay.disabled = q.dead_letters === 0;
    replay.addEventListener("click", () => replayDeadLetters(q.lane, null));
    actions.append(show, replay);
    tr.appendChild(actions);
    return tr;
  });
  $("queues").querySelector("tbody").replaceChildren(...rows);
}

function row(cells) {
  const tr = el("tr");
  for (const cell of cells) {
    const td = el("td");
    if (cell instanceof Node) td.appendChild(cell);
    else td.textContent = cell === null || cell === undefined ? "" : String(cell);
    tr.appendChild(td);
  }
  return tr;
}

async function showDeadLetters(lane) {
  state.deadLane = lane;
  const panel = $("dead-letters");
  panel.hidden = false;
  $("dead-letters-lane").textContent = lane;
  const body = panel.querySelector("tbody");
  try {
    const data = await api("GET", `/dlq/${lane}`);
    body.replaceChildren(
      ...data.messages.map((m) => {
        const tr = row([
          m.job_id || m.message_id,
          m.task || "-",
          m.reason,
          m.error ? `${m.error.type}: ${m.error.message}` : "",
        ]);
        const td = el("td");
        if (m.job_id) {
          const one = el("button", "replay");
          one.dataset.action = "replay-one";
          one.addEventListener("click", () => replayDeadLetters(lane, [m.job_id]));
          td.appendChild(one);
        }
        tr.appendChild(td);
        tr.dataset.jobId = m.job_id || "";
        return tr;
      }),
    );
    if (!data.messages.length) body.replaceChildren(row(["no dead letters", "", "", "", ""]));
  } catch (error) {
    body.replaceChildren(row([`dead letters: ${error.message}`]));
  }
}

async function replayDeadLetters(lane, jobIds) {
  try {
    const report = await api("POST", `/dlq/${lane}/replay`, jobIds ? { job_ids: jobIds } : {});
    const skipped = Object.keys(report.skipped).length;
    $("detail-message").textContent = `replayed ${report.replayed.length}, skipped ${skipped}`;
  } catch (error) {
    $("detail-message").textContent = `replay failed: ${error.message}`;
  }
  await Promise.all([refreshQueues(), refreshJobs(), showDeadLetters(lane)]);
}

// -- workers ----------------------------------------------------------------------------

// Each lane's workers as their heartbeats recorded them (GET /workers): ages are measured
// against the API's clock, not this browser's.
async function refreshWorkers() {
  const body = $("workers").querySelector("tbody");
  let data;
  try {
    data = await api("GET", "/workers");
  } catch (error) {
    body.replaceChildren(row([`workers: ${error.message}`]));
    return;
  }
  const checked = new Date(data.checked_at);
  const since = (iso) => Math.max(0, (checked - new Date(iso)) / 1000);
  const rows = [];
  const summary = [];
  for (const lane of data.lanes) {
    const counts = [`${lane.live} live`];
    if (lane.stopping) counts.push(`${lane.stopping} stopping`);
    if (lane.silent) counts.push(`${lane.silent} silent`);
    summary.push(`${lane.lane} ${counts.join(", ")}`);
    if (!lane.workers.length) {
      const tr = row([lane.lane, el("span", "no workers", "muted")]);
      tr.dataset.lane = lane.lane;
      rows.push(tr);
    }
    for (const worker of lane.workers) {
      const tr = row([
        lane.lane,
        el("code", worker.worker_id),
        stateBadge(worker.state),
        `${age(since(worker.last_beat))} ago`,
        age(since(worker.started_at)),
        `${worker.jobs_running} of ${worker.concurrency ?? "?"}`,
        runningJobs(worker),
      ]);
      tr.dataset.lane = lane.lane;
      tr.dataset.workerId = worker.worker_id;
      tr.dataset.state = worker.state;
      tr.classList.toggle("silent", worker.state === "silent");
      tr.title = worker.state === "silent"
        ? `no beat for ${data.silent_after_beats} of its ${worker.beat_interval_s} s intervals: crashed, hung or cut off`
        : `beats every ${worker.beat_interval_s} s on ${worker.node}`;
      rows.push(tr);
    }
  }
  body.replaceChildren(...rows);
  $("workers-summary").textContent = summary.join(" · ");
}

function stateBadge(state) {
  const badge = el("span", state, `state ${state}`);
  badge.dataset.state = state;
  return badge;
}

function runningJobs(worker) {
  const cell = el("span");
  for (const jobId of worker.jobs) {
    const link = el("a", jobId.slice(0, 8));
    link.href = "#";
    link.title = jobId;
    link.dataset.runningJob = jobId;
    link.addEventListener("click", (event) => {
      event.preventDefault();
      select(jobId);
    });
    cell.appendChild(link);
  }
  const unlisted = worker.jobs_running - worker.jobs.length;
  if (unlisted > 0) cell.appendChild(el("span", `+${unlisted} more`, "muted"));
  if (!worker.jobs_running) cell.appendChild(el("span", "idle", "muted"));
  return cell;
}

// -- jobs -------------------------------------------------------------------------------

function jobsQuery(cursor) {
  const params = new URLSearchParams({ limit: "50" });
  const status = $("filter-status").value;
  const task = $("filter-task").value;
  if (status) params.set("status", status);
  if (task) params.set("task", task);
  if (cursor) params.set("cursor", cursor);
  return `/jobs?${params}`;
}

async function refreshJobs() {
  let page;
  try {
    page = await api("GET", jobsQuery(null));
    setConnection(true, `updated ${new Date().toLocaleTimeString()}`);
  } catch (error) {
    setConnection(false, `API: ${error.message}`);
    return;
  }
  renderJobs(page.jobs, false);
  state.cursor = page.next_cursor;
  $("more").hidden = !page.next_cursor;
}

function renderJobs(jobs, append) {
  const body = $("jobs").querySelector("tbody");
  const rows = jobs.map((job) => {
    const tr = row([
      el("code", job.job_id.slice(0, 8)),
      job.task,
      job.lane,
      statusBadge(job.status),
      job.attempts,
      progressBar(job.progress),
      when(job.updated_at),
    ]);
    tr.dataset.jobId = job.job_id;
    tr.dataset.status = job.status;
    if (job.job_id === state.selected) tr.classList.add("selected");
    tr.addEventListener("click", () => select(job.job_id));
    return tr;
  });
  if (append) body.append(...rows);
  else body.replaceChildren(...rows);
  const counts = {};
  for (const tr of body.children) counts[tr.dataset.status] = (counts[tr.dataset.status] || 0) + 1;
  $("counts").textContent = Object.entries(counts).map(([s, n]) => `${s} ${n}`).join(" · ");
}

async function more() {
  if (!state.cursor) return;
  const page = await api("GET", jobsQuery(state.cursor));
  renderJobs(page.jobs, true);
  state.cursor = page.next_cursor;
  $("more").hidden = !page.next_cursor;
}

// -- one job, live ----------------------------------------------------------------------

function showJob(job) {
  $("detail").hidden = false;
  $("detail").dataset.jobId = job.job_id;
  $("detail-id").textContent = job.job_id;
  $("detail-task").textContent = `${job.task} (${job.lane})`;
  $("detail-status").replaceWith(Object.assign(statusBadge(job.status), { id: "detail-status" }));
  $("detail-attempts").textContent = `${job.attempts} of ${job.max_attempts ?? "?"}`;
  $("detail-progress").replaceChildren(progressBar(job.progress));
  $("detail-error").textContent = job.error ? `${job.error.type}: ${job.error.message}` : "";
  $("detail-result").textContent = job.result === null ? "" : JSON.stringify(job.result, null, 2);
  // A result too large for the job record: a presigned S3 URL, valid for minutes.
  const download = job.result_download;
  $("detail-download").hidden = !download;
  if (download) {
    $("detail-download").href = download.url;
    $("detail-download").textContent =
      `download the result (${download.bytes} bytes; link valid until ${when(download.expires_at)})`;
  }
  $("detail-times").textContent =
    `created ${when(job.created_at)}, started ${when(job.started_at)}, finished ${when(job.finished_at)}`;
  const history = job.history || [];
  $("detail-history").textContent = history.length
    ? history.map((run) => `${run.attempts} attempt(s): ${run.error ? run.error.message : "-"}`).join("\n")
    : "none";
  $("cancel").disabled = ["SUCCESS", "FAILURE", "REVOKED"].includes(job.status);
}

async function select(jobId) {
  state.selected = jobId;
  for (const tr of $("jobs").querySelectorAll("tbody tr")) {
    tr.classList.toggle("selected", tr.dataset.jobId === jobId);
  }
  $("detail-message").textContent = "";
  try {
    showJob(await api("GET", `/jobs/${jobId}`));
  } catch (error) {
    $("detail-message").textContent = error.message;
    return;
  }
  follow(jobId);
}

// EventSource cannot send an Authorization header: read the stream with fetch instead.
async function follow(jobId) {
  if (state.stream) state.stream.abort();
  const controller = new AbortController();
  state.stream = controller;
  let lastId = null;
  $("detail-live").textContent = "live";
  while (!controller.signal.aborted) {
    try {
      const h = headers({ accept: "text/event-stream" });
      if (lastId) h["last-event-id"] = lastId;
      const response = await fetch(`/jobs/${jobId}/events`, { headers: h, signal: controller.signal });
      if (!response.ok) throw new Error(`${response.status}`);
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const event = parseEvent(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
          if (!event.data) continue;
          lastId = event.id || lastId;
          if (state.selected === jobId) showJob(JSON.parse(event.data));
          if (event.event === "end") {
            $("detail-live").textContent = "ended";
            return;
          }
        }
      }
    } catch (error) {
      if (controller.signal.aborted) return;
      $("detail-live").textContent = `reconnecting (${error.message})`;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

function parseEvent(block) {
  const event = {};
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const at = line.indexOf(":");
    const name = line.slice(0, at);
    const value = line.slice(at + 1).replace(/^ /, "");
    event[name] = name === "data" && event.data ? `${event.data}\n${value}` : value;
  }
  return event;
}

async function cancelSelected() {
  if (!state.selected) return;
  try {
    const job = await api("POST", `/jobs/${state.selected}/cancel`);
    showJob(job);
    $("detail-message").textContent = job.status === "REVOKED" ? "revoked" : "cancellation requested";
  } catch (error) {
    $("detail-message").textContent = `cancel failed: ${error.message}`;
  }
  await refreshJobs();
}

// -- submit -----------------------------------------------------------------------------

async function loadTasks() {
  try {
    const data = await api("GET", "/tasks");
    state.tasks = data.tasks || data;
  } catch (error) {
    $("submit-result").textContent = `tasks: ${error.message}`;
    return;
  }
  const names = state.tasks.map((t) => t.name);
  const option = (name) => Object.assign(el("option", name), { value: name });
  $("submit-task").replaceChildren(...names.map(option));
  $("filter-task").append(...names.map(option));
}

async function submit(event) {
  event.preventDefault();
  let payload;
  try {
    payload = JSON.parse($("submit-payload").value || "{}");
  } catch (error) {
    $("submit-result").textContent = `payload is not JSON: ${error.message}`;
    return;
  }
  try {
    const job = await api("POST", "/jobs", { task: $("submit-task").value, payload });
    $("submit-result").textContent = `submitted ${job.job_id}`;
    await refreshJobs();
    await select(job.job_id);
  } catch (error) {
    $("submit-result").textContent = error.message;
  }
}

function start() {
  const token = $("token");
  token.value = sessionStorage.getItem("offload-token") || "";
  token.addEventListener("change", () => {
    sessionStorage.setItem("offload-token", token.value.trim());
    refresh();
  });
  $("submit").addEventListener("submit", submit);
  $("filter-status").addEventListener("change", refreshJobs);
  $("filter-task").addEventListener("change", refreshJobs);
  $("more").addEventListener("click", more);
  $("cancel").addEventListener("click", cancelSelected);
  loadTasks();
  refresh();
  setInterval(refresh, REFRESH_MS);
}

function refresh() {
  refreshJobs();
  refreshQueues();
  refreshWorkers();
  if (state.deadLane) showDeadLetters(state.deadLane);
}

document.addEventListener("DOMContentLoaded", start);
