// The web console: the user's sessions, a start with a version picker and live
// progress, links once running, stop, and heartbeats while the page is open and
// visible. It calls the product's API through the gateway's same-origin forwarding
// (`/_gateway/api/...`), which adds the user's token: no token ever reaches this
// script. No build step, no dependency.
"use strict";

const API = "/_gateway/api";
/// How often a watched session is read while it starts or stops.
const POLL_MS = 1000;
/// How often the list is refreshed otherwise.
const REFRESH_MS = 15000;
/// A heartbeat at least this often while a session runs (the API records at most one
/// per its own interval, so more would be wasted)...
const HEARTBEAT_MS = 60000;
/// ...and sooner when the idle stop is nearer: at half the time left before it, so a
/// short idle timeout is beaten too (the API's interval is at most half of it).
const HEARTBEAT_MIN_MS = 1000;
/// What each status means to a person.
const STATUS_TEXT = {
  starting: "Starting: checking and launching",
  provisioning: "Provisioning: the task is coming up",
  running: "Running",
  stopping: "Stopping",
  stopped: "Stopped",
  failed: "Failed",
};
/// What each stop reason means to a person.
const REASON_TEXT = {
  user: "stopped by you",
  idle: "stopped as idle",
  max_lifetime: "reached its maximum lifetime",
  task_stopped: "its task stopped",
  internal: "an internal error",
  admin: "stopped by an administrator",
};

const $ = (id) => document.getElementById(id);

/// Calls the API; resolves to {status, body} (body null when not JSON).
async function api(method, path, body, headers = {}) {
  const response = await fetch(API + path, {
    method,
    credentials: "same-origin",
    headers: {
      // Required by the gateway on its forwarding: a cross-site form cannot set it.
      "X-Console": "1",
      ...(body ? { "Content-Type": "application/json" } : {}),
      ...headers,
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  let json = null;
  try {
    json = await response.json();
  } catch (_) {
    json = null;
  }
  return { status: response.status, body: json };
}

/// The message a person reads for an API refusal.
function refusalText(status, body) {
  const error = (body && body.error) || {};
  switch (error.code) {
    case "session_limit_reached":
      return {
        text: "You already have as many sessions as you may run. Stop one first:",
        list: error.active_sessions || [],
      };
    case "image_not_found":
      return { text: "That version is not available: one of its images is missing." };
    case "not_authorized":
      return { text: "You are not allowed to start sessions. Ask your administrator." };
    case "invalid_version":
      return { text: "That is not a valid version." };
    default:
      if (status === 401) return { text: "Your sign-in has expired: reload the page to sign in again." };
      if (status === 503) return { text: "The service is busy. Try again in a few seconds." };
      return { text: error.message || `The request failed (${status}).` };
  }
}

function showRefusal(element, refusal) {
  element.replaceChildren(document.createTextNode(refusal.text));
  if (refusal.list && refusal.list.length) {
    const list = document.createElement("ul");
    for (const id of refusal.list) {
      const item = document.createElement("li");
      const code = document.createElement("code");
      code.textContent = id;
      item.append(code);
      list.append(item);
    }
    element.append(list);
  }
  element.hidden = false;
}

function elapsed(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
}

function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

// ---- versions ----

async function loadVersions() {
  const { status, body } = await api("GET", "/versions");
  const select = $("version");
  if (status !== 200 || !body || !body.listed) {
    return; // Only `latest` to offer: a deployment without image checks lists none.
  }
  select.replaceChildren();
  for (const v of body.versions) {
    const option = document.createElement("option");
    option.value = v.version;
    option.textContent = v.latest ? `${v.version} (latest)` : v.version;
    if (v.latest && !select.querySelector("[selected]")) option.selected = true;
    select.append(option);
  }
  if (!select.options.length) {
    const option = document.createElement("option");
    option.value = "latest";
    option.textContent = "latest";
    select.append(option);
  }
}

// ---- the list ----

let sessions = [];

async function loadSessions() {
  const { status, body } = await api("GET", "/sessions?limit=20");
  const error = $("load-error");
  if (status !== 200) {
    showRefusal(error, refusalText(status, body));
    return;
  }
  error.hidden = true;
  sessions = body.sessions || [];
  if (sessions.length) $("user").textContent = sessions[0].user_id;
  render();
}

/// Redraws the list. A keyboard or screen reader user keeps their place: the focused
/// control is found again by its key after the redraw.
function render() {
  const table = $("sessions");
  const rows = table.querySelector("tbody");
  const focused = document.activeElement && rows.contains(document.activeElement)
    ? document.activeElement.dataset.key
    : null;
  rows.replaceChildren();
  for (const s of sessions) rows.append(row(s));
  table.hidden = sessions.length === 0;
  $("sessions-empty").hidden = sessions.length !== 0;
  if (focused) {
    const again = rows.querySelector(`[data-key="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
}

function cell(label, ...content) {
  const td = document.createElement("td");
  td.dataset.label = label;
  td.append(...content);
  return td;
}

function row(s) {
  const tr = document.createElement("tr");
  tr.id = `session-${s.session_id}`;
  const id = document.createElement("code");
  id.textContent = s.session_id;

  let status = STATUS_TEXT[s.status] || s.status;
  if (s.stop_reason && (s.status === "stopped" || s.status === "failed" || s.status === "stopping")) {
    status += ` (${REASON_TEXT[s.stop_reason] || s.stop_reason})`;
  }
  const statusText = document.createElement("span");
  statusText.textContent = status;
  const statusCell = cell("Status", statusText);
  if (s.status === "running" && s.idle_stop_at) {
    const idle = document.createElement("span");
    idle.className = "idle";
    idle.textContent = `Stops as idle at ${when(s.idle_stop_at)} unless in use`;
    statusCell.append(idle);
  }
  if (s.status === "running" && s.ends_at) {
    const ends = document.createElement("span");
    ends.className = "idle";
    ends.textContent = `Ends at ${when(s.ends_at)} (its maximum lifetime)`;
    statusCell.append(ends);
  }

  const links = document.createElement("span");
  links.className = "links";
  if (s.status === "running") {
    for (const [service, url] of Object.entries(s.urls || {})) {
      const a = document.createElement("a");
      a.href = url;
      a.target = "_blank";
      a.rel = "noopener";
      a.textContent = service;
      a.setAttribute("aria-label", `Open ${service} of session ${s.session_id}`);
      a.dataset.key = `open-${service}-${s.session_id}`;
      links.append(a);
    }
  }

  const actions = document.createElement("span");
  if (s.status !== "stopped" && s.status !== "failed" && s.status !== "stopping") {
    const stop = document.createElement("button");
    stop.type = "button";
    stop.className = "secondary";
    stop.textContent = "Stop";
    stop.setAttribute("aria-label", `Stop session ${s.session_id}`);
    stop.dataset.key = `stop-${s.session_id}`;
    stop.addEventListener("click", () => stopSession(s.session_id, stop));
    actions.append(stop);
  }

  tr.append(
    cell("Session", id),
    statusCell,
    cell("Version", document.createTextNode(s.version)),
    cell("Started", document.createTextNode(when(s.started_at || s.created_at))),
    cell("Open", links),
    cell("Actions", actions),
  );
  return tr;
}

// ---- start, with progress ----

async function start(event) {
  event.preventDefault();
  const button = $("start-button");
  const refusal = $("refusal");
  refusal.hidden = true;
  button.disabled = true;
  try {
    const version = $("version").value;
    const key = crypto.randomUUID();
    let answer;
    for (let attempt = 0; attempt < 5; attempt++) {
      answer = await api("POST", "/sessions", { version }, { "Idempotency-Key": key });
      if (answer.status !== 503) break;
      await new Promise((r) => setTimeout(r, 2000));
    }
    if (answer.status !== 202 && answer.status !== 200) {
      showRefusal(refusal, refusalText(answer.status, answer.body));
      refusal.focus();
      return;
    }
    await watch(answer.body.session_id, "running");
  } finally {
    button.disabled = false;
  }
}

/// Follows a session until `goal` (or an end), showing each status once with the
/// time since the watch began.
async function watch(id, goal) {
  const section = $("progress-section");
  const list = $("progress");
  const live = $("progress-live");
  $("progress-title").textContent = goal === "running" ? "Starting" : "Stopping";
  list.replaceChildren();
  section.hidden = false;
  const begun = Date.now();
  let last = null;
  for (;;) {
    const { status, body } = await api("GET", `/sessions/${encodeURIComponent(id)}`);
    if (status === 200 && body) {
      if (body.status !== last) {
        const previous = list.lastElementChild;
        if (previous) previous.classList.remove("current");
        const item = document.createElement("li");
        item.className = "current";
        const text = STATUS_TEXT[body.status] || body.status;
        const time = document.createElement("span");
        time.className = "elapsed";
        time.textContent = ` after ${elapsed(Date.now() - begun)}`;
        item.append(document.createTextNode(text), time);
        list.append(item);
        live.textContent = `${text} after ${elapsed(Date.now() - begun)}`;
        last = body.status;
      }
      const index = sessions.findIndex((s) => s.session_id === id);
      if (index >= 0) sessions[index] = body;
      else sessions.unshift(body);
      render();
      const ended = body.status === "stopped" || body.status === "failed";
      if (body.status === goal || ended) {
        list.lastElementChild.classList.remove("current");
        $("progress-title").textContent = body.status === "running" ? "Started"
          : body.status === "stopped" ? "Stopped" : "Failed";
        if (body.status === "running") heartbeats();
        if (body.status === "failed") {
          showRefusal($("refusal"), {
            text: `The session failed: ${REASON_TEXT[body.stop_reason] || body.stop_reason || "unknown"}.`,
          });
        }
        return body;
      }
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

async function stopSession(id, button) {
  button.disabled = true;
  const { status, body } = await api("DELETE", `/sessions/${encodeURIComponent(id)}`);
  if (status !== 202 && status !== 200) {
    showRefusal($("load-error"), refusalText(status, body));
    button.disabled = false;
    return;
  }
  await watch(id, "stopped");
}

// ---- heartbeats: a page open and visible is a user at work ----

async function heartbeat() {
  if (document.visibilityState !== "visible") return;
  const running = sessions.filter((s) => s.status === "running");
  for (const s of running) {
    const { status, body } = await api("POST", `/sessions/${encodeURIComponent(s.session_id)}/heartbeat`);
    if (status === 200 && body && body.idle_stop_at) s.idle_stop_at = body.idle_stop_at;
  }
  if (running.length) render();
}

/// When the next heartbeat is due: half the time left before the nearest idle stop,
/// within [HEARTBEAT_MIN_MS, HEARTBEAT_MS].
function nextHeartbeatMs() {
  let due = HEARTBEAT_MS;
  for (const s of sessions) {
    if (s.status !== "running" || !s.idle_stop_at) continue;
    const left = Date.parse(s.idle_stop_at) - Date.now();
    if (!Number.isNaN(left)) due = Math.min(due, left / 2);
  }
  return Math.max(HEARTBEAT_MIN_MS, due);
}

let heartbeatTimer = null;

/// Beats now (a session just came up, or the page came back into view), then on the
/// schedule of `nextHeartbeatMs`.
async function heartbeats() {
  clearTimeout(heartbeatTimer);
  try {
    await heartbeat();
  } finally {
    clearTimeout(heartbeatTimer);
    heartbeatTimer = setTimeout(heartbeats, nextHeartbeatMs());
  }
}

// ---- wiring ----

document.addEventListener("DOMContentLoaded", async () => {
  $("start").addEventListener("submit", start);
  $("refusal").tabIndex = -1;
  document.addEventListener("visibilitychange", heartbeats);
  // Who the gateway signed in (the load balancer's verified token).
  const me = await fetch("/_gateway/whoami", { credentials: "same-origin" }).catch(() => null);
  if (me && me.ok) $("user").textContent = (await me.json()).user_id;
  await Promise.all([loadVersions(), loadSessions()]);
  heartbeats();
  setInterval(loadSessions, REFRESH_MS);
});
