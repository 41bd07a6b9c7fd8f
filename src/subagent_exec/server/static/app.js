// The live run page: a state model fed by the event stream (model.js), drawn
// at most once per animation frame (view.js). Events only update the model
// (cheap, in order); the DOM is brought up to date from the model, so a burst
// of a thousand events costs one render, and what is shown never depends on
// how events were batched. This file talks to the server and wires the page.

import {
  TERMINAL, applyEvent, cleared, finishedRunIds, loadCleared, mergeSnapshot, page,
  saveCleared, setStatus, tasks,
} from "./model.js";
import { forgetViews, remeasureAll, scheduleRender, startView } from "./view.js";

const BASE = document.querySelector('meta[name="subagent-exec-base"]').content;
const CAN_START_RUNS =
  document.querySelector('meta[name="subagent-exec-can-start-runs"]').content === "true";
let source = null;
let serverEpoch = null; // which server's event numbering we follow
let olderCursor = null; // the next page of past runs (GET tasks?root=true&limit=)
const HISTORY_PAGE = 20;

function forgetEverything() {
  tasks.clear();
  forgetViews();
}

async function loadSnapshot({ prune = false } = {}) {
  const response = await fetch(BASE + "tasks", { cache: "no-store" });
  if (!response.ok) throw new Error("GET tasks: HTTP " + response.status);
  const body = await response.json();
  page.clockOffset = body.server_time - Date.now() / 1000;
  for (const d of body.tasks) mergeSnapshot(d);
  const known = new Set(body.tasks.map((d) => d.task_id));
  if (prune) {
    // After a reset (a restarted server, or events lost): forget tasks the
    // server no longer knows, unless an event newer than the snapshot
    // mentioned them (then the snapshot was simply taken before they existed).
    for (const [id, t] of tasks) {
      if (known.has(id) || t.lastSeq > body.last_seq || t.fromHistory) continue;
      tasks.delete(id);
      forgetViews([id]);
    }
  }
  // Cleared runs the server has forgotten need not be remembered any more.
  let changed = false;
  for (const id of cleared) {
    if (!known.has(id) && !tasks.has(id)) {
      cleared.delete(id);
      changed = true;
    }
  }
  if (changed) saveCleared();
  scheduleRender();
  return body.last_seq;
}

// Past runs, a page at a time, newest first, from the server's task store:
// what happened before a restart, or what memory has let go of. Each run not
// already shown comes with its tree (GET tasks/{id} names the children).
async function loadHistory() {
  const query = "tasks?root=true&limit=" + HISTORY_PAGE +
    (olderCursor ? "&cursor=" + encodeURIComponent(olderCursor) : "");
  const response = await fetch(BASE + query, { cache: "no-store" });
  if (!response.ok) throw new Error("GET older runs: HTTP " + response.status);
  const body = await response.json();
  const trees = [];
  for (const d of body.tasks) {
    if (tasks.has(d.task_id)) continue;
    mergeSnapshot(d).fromHistory = true;
    trees.push(loadTree(d.task_id));
  }
  olderCursor = body.next_cursor;
  document.getElementById("older-runs").hidden = !olderCursor;
  scheduleRender();
  await Promise.all(trees);
}

async function loadTree(id) {
  const response = await fetch(BASE + "tasks/" + encodeURIComponent(id), { cache: "no-store" });
  if (!response.ok) return; // removed meanwhile: keep what we have
  const d = await response.json();
  const t = mergeSnapshot(d);
  t.fromHistory = true;
  if (TERMINAL.has(t.status)) t.fullLoaded = true;
  scheduleRender();
  await Promise.all(d.children.filter((c) => !tasks.has(c)).map(loadTree));
}

// One task with everything the server keeps: full texts and all AI messages.
async function loadTask(id) {
  const response = await fetch(BASE + "tasks/" + encodeURIComponent(id), { cache: "no-store" });
  if (response.status === 404) return; // cleaned up on the server: keep what we have
  if (!response.ok) throw new Error("GET task: HTTP " + response.status);
  const t = mergeSnapshot(await response.json());
  if (TERMINAL.has(t.status)) t.fullLoaded = true;
  scheduleRender();
}

function connect(afterSeq) {
  if (source) source.close();
  setConnection("connecting");
  // ?after= is the snapshot's seq; on reconnects the browser sends
  // Last-Event-ID, which the server prefers, so nothing is missed.
  source = new EventSource(BASE + "events?after=" + afterSeq);
  source.onopen = () => setConnection("live");
  source.onerror = () => setConnection("reconnecting");
  source.addEventListener("task", (message) => {
    applyEvent(JSON.parse(message.data));
    scheduleRender();
  });
  source.addEventListener("hello", (message) => {
    const epoch = JSON.parse(message.data).epoch;
    if (serverEpoch !== null && epoch !== serverEpoch) {
      // A different server (restarted): its seqs start over, so nothing we
      // hold is comparable. Start from its list; its events follow this one.
      forgetEverything();
      loadSnapshot().catch((err) => notice(String(err)));
    }
    serverEpoch = epoch;
  });
  source.addEventListener("reset", () => {
    // The stream could not replay everything we missed: re-read the list.
    loadSnapshot({ prune: true }).catch((err) => notice(String(err)));
  });
}

// ---- cleared runs: this browser remembers them (model.js keeps the list) ----------
function setCleared(rootIds, hide) {
  for (const id of rootIds) {
    if (hide) cleared.add(id);
    else cleared.delete(id);
  }
  saveCleared();
  remeasureAll();
}

// ---- actions --------------------------------------------------------------------
async function stopTask(id) {
  const t = tasks.get(id);
  if (!t || t.stopClicked || TERMINAL.has(t.status)) return;
  t.stopClicked = true;
  scheduleRender();
  try {
    const response = await fetch(BASE + "tasks/" + encodeURIComponent(id) + "/stop", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ reason: "stopped from the run page" }),
    });
    const body = await response.json().catch(() => ({}));
    if (response.status === 202 || response.status === 409) {
      // 202: "stopping" (the chip follows the events) or already "cancelled".
      if (body.status && body.status !== "stopping") setStatus(t, body.status);
    } else {
      t.stopClicked = false;
      notice("Stop failed: " + (body.detail || "HTTP " + response.status));
    }
  } catch (err) {
    t.stopClicked = false;
    notice("Stop failed: " + err);
  }
  scheduleRender();
}

// Resume a stopped task: a new task goes on from its last completed step.
async function resumeTask(id) {
  const t = tasks.get(id);
  if (!t || t.resumeClicked || t.resumedAs) return;
  t.resumeClicked = true;
  scheduleRender();
  try {
    const response = await fetch(BASE + "tasks/" + encodeURIComponent(id) + "/resume", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: "{}",
    });
    const body = await response.json().catch(() => ({}));
    if (response.status === 202) t.resumedAs = body.task_id; // it arrives by its events
    else notice("Resume failed: " + (body.detail || "HTTP " + response.status));
  } catch (err) {
    notice("Resume failed: " + err);
  }
  t.resumeClicked = false;
  scheduleRender();
}

// "Stop all" on a run: every task of its thread, the background ones included.
async function stopThread(thread) {
  const members = [...tasks.values()].filter((t) => t.thread === thread && !TERMINAL.has(t.status));
  for (const t of members) t.stopClicked = true;
  scheduleRender();
  try {
    const response = await fetch(BASE + "threads/" + encodeURIComponent(thread) + "/stop", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ reason: "stopped from the run page (Stop all)" }),
    });
    const body = await response.json().catch(() => ({}));
    if (response.status !== 202 && response.status !== 409) {
      for (const t of members) t.stopClicked = false;
      notice("Stop all failed: " + (body.detail || "HTTP " + response.status));
    }
  } catch (err) {
    for (const t of members) t.stopClicked = false;
    notice("Stop all failed: " + err);
  }
  scheduleRender();
}

async function startRun() {
  const button = document.getElementById("start-run");
  button.disabled = true;
  try {
    const response = await fetch(BASE + "runs", { method: "POST" });
    const body = await response.json().catch(() => ({}));
    if (response.status !== 202) notice("Could not start a run: " + (body.detail || response.status));
  } catch (err) {
    notice("Could not start a run: " + err);
  } finally {
    button.disabled = false;
  }
}

function notice(text) {
  const el = document.getElementById("notice");
  el.textContent = text;
  el.hidden = false;
}

function setConnection(state) {
  const el = document.getElementById("connection");
  el.dataset.state = state;
  el.textContent = state === "live" ? "live" : state + "…";
}

// ---- boot -----------------------------------------------------------------------
loadCleared("subagent-exec:cleared-runs:" + BASE); // one list per mount of the page
startView({
  stopTask,
  stopThread,
  resumeTask,
  loadTask,
  notice,
  toggleCleared: (id) => setCleared([id], !cleared.has(id)),
});
if (CAN_START_RUNS) {
  const start = document.getElementById("start-run");
  start.hidden = false;
  start.addEventListener("click", startRun);
}
document.getElementById("clear-finished").addEventListener("click", () => {
  setCleared(finishedRunIds(), true);
});
document.getElementById("older-runs").addEventListener("click", () => {
  loadHistory().catch((err) => notice(String(err)));
});
document.getElementById("show-cleared").addEventListener("click", () => {
  page.showCleared = !page.showCleared;
  remeasureAll();
});
loadSnapshot()
  .then((seq) => {
    connect(seq);
    return loadHistory();
  })
  .catch((err) => {
    notice("Could not load the tasks: " + err);
    connect(0);
  });
window.subagentExecPage = { tasks, cleared }; // for debugging from the console
