// The run page's state model: what the page knows about each task, updated in
// event order, and the words used to show it. No DOM here (view.js draws,
// app.js talks to the server).

export const TERMINAL = new Set(["completed", "failed", "cancelled", "timed_out"]);
export const LABELS = {
  pending: "pending", running: "running", stopping: "stopping", completed: "completed",
  failed: "failed", timed_out: "timed out", cancelled: "cancelled",
};
const SHORT_ID = 8; // hex digits of a task id shown to a reader
// Engine task ids are uuid4 hex; "<id> (<name>)" is how cascade reasons name
// an ancestor (the bracketed name is dropped when we print the name anyway).
const TASK_ID_RE = /\b([0-9a-f]{32})\b(?: \(([^()]*)\))?/g;

export const tasks = new Map(); // task id -> task (insertion order = creation order)
// clockOffset: server time - local time, seconds; showCleared: cleared runs drawn.
export const page = { clockOffset: 0, showCleared: false };
export const cleared = new Set(); // root ids of runs hidden with "Clear" (see loadCleared)
let clearedKey = null;

function rank(status) {
  return TERMINAL.has(status) ? 2 : status === "running" ? 1 : 0;
}

export function ensureTask(id, parentId, name) {
  let t = tasks.get(id);
  if (!t) {
    t = {
      id, parentId: parentId || null, name: name || "", text: "", status: "pending",
      stopping: false, stopClicked: false, createdAt: null, startedAt: null,
      completedAt: null, reason: null, error: null, result: null,
      messages: [], messageKeys: new Set(), messageCount: 0, messagesReordered: false,
      fullLoaded: false, lastSeq: 0, thread: null, background: false,
      usage: null, // its own model calls' usage (docs/budgets.md), live from events
    };
    tasks.set(id, t);
  }
  if (parentId && !t.parentId) t.parentId = parentId;
  if (name && !t.name) t.name = name;
  return t;
}

// Statuses only move forward (pending -> running -> terminal) and the first
// terminal status wins: a replayed or late event can never undo a newer one.
export function setStatus(t, status) {
  if (!status || TERMINAL.has(t.status)) return;
  if (rank(status) >= rank(t.status)) t.status = status;
  if (TERMINAL.has(t.status)) t.stopping = false;
}

function isoSeconds(value) {
  return value ? Date.parse(value) / 1000 : null;
}

// AI messages arrive by event (one each) and in GET /tasks/{id} (all so far):
// keep each once, by its id (or its content when it has none).
function messageKey(m) {
  return m.id || JSON.stringify([m.text, m.tool_calls]);
}

function addMessage(t, m) {
  const key = messageKey(m);
  if (t.messageKeys.has(key)) return;
  t.messageKeys.add(key);
  t.messages.push(m);
}

function mergeMessages(t, list) {
  // The server's list is complete up to its moment and in order; messages
  // only we had (newer events) follow it.
  const old = t.messages;
  t.messages = [];
  t.messageKeys = new Set();
  for (const m of list) addMessage(t, m);
  for (const m of old) addMessage(t, m);
  if (!old.every((m, i) => messageKey(t.messages[i]) === messageKey(m))) {
    t.messagesReordered = true; // earlier messages came in: the view rebuilds its list
  }
}

// A task's lead agent thread and whether it runs in the background (fixed at creation).
function setThread(t, thread, background) {
  if (thread && !t.thread) t.thread = thread;
  if (background) t.background = true;
}

// Usage only grows: keep whichever of two readings counts more model calls.
function setUsage(t, usage) {
  if (!usage || typeof usage !== "object") return;
  if (!t.usage || (usage.model_calls || 0) >= (t.usage.model_calls || 0)) t.usage = usage;
}

export function mergeSnapshot(d) {
  const t = ensureTask(d.task_id, d.parent_id, d.subagent_name);
  setUsage(t, d.usage);
  setThread(t, d.thread_id, d.background);
  t.text = d.task || t.text;
  t.createdAt = t.createdAt ?? isoSeconds(d.created_at);
  t.startedAt = t.startedAt ?? isoSeconds(d.started_at);
  if (!TERMINAL.has(t.status)) {
    t.completedAt = isoSeconds(d.completed_at);
    if (d.stopping) t.stopping = true;
  }
  // The task API has the full texts (events clip long ones): it wins.
  t.reason = d.cancel_reason ?? t.reason;
  t.error = d.error ?? t.error;
  t.result = d.result ?? t.result;
  t.messageCount = Math.max(t.messageCount, d.ai_message_count || 0);
  if (Array.isArray(d.ai_messages)) mergeMessages(t, d.ai_messages);
  setStatus(t, d.status);
  return t;
}

export function applyEvent(ev) {
  const t = ensureTask(ev.task_id, ev.parent_id, ev.subagent_name);
  t.lastSeq = Math.max(t.lastSeq, ev.seq);
  const data = ev.data || {};
  switch (ev.kind) {
    case "created":
      setThread(t, data.thread_id, data.background);
      t.text = data.task || t.text;
      t.createdAt = t.createdAt ?? ev.timestamp;
      break;
    case "started":
      t.startedAt = t.startedAt ?? ev.timestamp;
      break;
    case "cancel_requested":
      if (!TERMINAL.has(t.status)) t.stopping = true;
      t.reason = data.reason || t.reason;
      break;
    case "ai_message":
      if (data.message) addMessage(t, data.message);
      else t.messageCount += 1;
      setUsage(t, data.usage);
      break;
    default:
      if (TERMINAL.has(ev.kind)) setUsage(t, data.usage);
      if (TERMINAL.has(ev.kind) && !TERMINAL.has(t.status)) {
        t.completedAt = ev.timestamp;
        const outcome = ev.outcome || {};
        t.result = outcome.result ?? t.result;
        t.error = outcome.error ?? t.error;
        t.reason = outcome.cancel_reason ?? t.reason;
      }
  }
  setStatus(t, ev.status);
}

// ---- cleared runs (this browser only) ---------------------------------------------
export function loadCleared(key) {
  clearedKey = key;
  cleared.clear();
  try {
    const ids = JSON.parse(localStorage.getItem(key) || "[]");
    if (Array.isArray(ids)) for (const id of ids) if (typeof id === "string") cleared.add(id);
  } catch (err) {
    // Storage disabled or corrupt: nothing is cleared.
  }
}

export function saveCleared() {
  try {
    localStorage.setItem(clearedKey, JSON.stringify([...cleared]));
  } catch (err) {
    // Storage full or disabled: clearing still works until the page reloads.
  }
}

// Where a task is drawn: under its parent; a background task (a root of the
// runtime's tree) in the "background" part of the run its thread names (a lead
// that runs as a task is its own thread); else as a run card of its own.
export function placeOf(t) {
  if (t.parentId && tasks.has(t.parentId)) return { parentId: t.parentId, background: false };
  if (t.background && t.thread && t.thread !== t.id && tasks.has(t.thread)) {
    return { parentId: t.thread, background: true };
  }
  return null;
}

// A test "has this task and everything drawn under it ended?" over the model now.
export function endedTest() {
  const kids = new Map(); // drawn parent id -> tasks drawn under it
  for (const t of tasks.values()) {
    const place = placeOf(t);
    if (place) {
      if (!kids.has(place.parentId)) kids.set(place.parentId, []);
      kids.get(place.parentId).push(t);
    }
  }
  const ended = (t) => TERMINAL.has(t.status) && (kids.get(t.id) || []).every(ended);
  return ended;
}

export function finishedRunIds() {
  const ended = endedTest();
  return [...tasks.values()].filter((t) => !placeOf(t) && ended(t)).map((t) => t.id);
}

// The threads "Stop all" is offered for: those with background tasks (a run's
// own Stop does not reach them) and a task still unfinished.
export function threadsToStop() {
  const withBackground = new Set();
  const live = new Set();
  for (const t of tasks.values()) {
    if (!t.thread) continue;
    if (t.background) withBackground.add(t.thread);
    if (!TERMINAL.has(t.status)) live.add(t.thread);
  }
  return new Set([...live].filter((thread) => withBackground.has(thread)));
}

// ---- words ----------------------------------------------------------------------
export function shortId(id) {
  return "#" + id.slice(0, SHORT_ID);
}

// Task ids in reasons, errors and answers become "researcher #3f2a9c1b".
export function nameIds(text) {
  if (!text) return "";
  return text.replace(TASK_ID_RE, (match, id, bracketed) => {
    const t = tasks.get(id);
    if (!t || !t.name) return bracketed !== undefined ? bracketed + " " + shortId(id) : shortId(id);
    let ref = t.name + " " + shortId(id);
    if (bracketed !== undefined && bracketed !== t.name) ref += " (" + bracketed + ")";
    return ref;
  });
}

export function formatElapsed(seconds) {
  if (seconds === null || seconds < 0) return "";
  if (seconds < 60) return seconds.toFixed(1) + " s";
  const m = Math.floor(seconds / 60);
  const s = Math.floor(seconds % 60);
  return m + " m " + String(s).padStart(2, "0") + " s";
}

export function elapsedOf(t) {
  if (t.startedAt === null) return null;
  const end = t.completedAt ?? Date.now() / 1000 + page.clockOffset;
  return Math.max(0, end - t.startedAt); // clocks are read on two machines
}

function two(n) {
  return String(n).padStart(2, "0");
}

// A server timestamp as this browser's local wall-clock time; the date is
// added when it is not today.
export function localTime(serverSeconds) {
  if (serverSeconds === null) return "";
  const at = new Date((serverSeconds - page.clockOffset) * 1000);
  const time = two(at.getHours()) + ":" + two(at.getMinutes()) + ":" + two(at.getSeconds());
  const now = new Date();
  if (at.toDateString() === now.toDateString()) return time;
  return at.getFullYear() + "-" + two(at.getMonth() + 1) + "-" + two(at.getDate()) + " " + time;
}

export function detailOf(t) {
  let text = "";
  if (t.status === "completed") text = t.result ? "→ " + t.result : "";
  else if (t.status === "failed" || t.status === "timed_out") text = t.error || t.reason || "";
  else if (t.status === "cancelled" || t.stopping) text = t.reason || "";
  return nameIds(text);
}

// ---- usage ---------------------------------------------------------------------
// The run a task is drawn in (the task itself for a run card).
export function runOf(t) {
  let run = t;
  for (let place = placeOf(run); place; place = placeOf(run)) run = tasks.get(place.parentId);
  return run;
}

// Each run's usage: the sum of its tasks' own usage (cost unknown once one is).
export function runUsage() {
  const sums = new Map(); // run id -> {total_tokens, model_calls, cost}
  for (const t of tasks.values()) {
    if (!t.usage) continue;
    const id = runOf(t).id;
    const sum = sums.get(id) || { total_tokens: 0, model_calls: 0, cost: 0 };
    sum.total_tokens += t.usage.total_tokens || 0;
    sum.model_calls += t.usage.model_calls || 0;
    sum.cost = sum.cost === null || t.usage.cost === null ? null : sum.cost + (t.usage.cost || 0);
    sums.set(id, sum);
  }
  return sums;
}

function compact(n) {
  if (n < 1000) return String(n);
  if (n < 1e6) return (n / 1000).toFixed(n < 1e4 ? 1 : 0) + "k";
  return (n / 1e6).toFixed(n < 1e7 ? 2 : 1) + "M";
}

// "1.2k tokens · cost 0.0031" ("3 calls" for a model that reports no usage).
export function usageText(u) {
  if (!u || !u.model_calls) return "";
  let text = u.total_tokens || u.usage_reported !== false
    ? compact(u.total_tokens || 0) + " tokens"
    : u.model_calls + (u.model_calls === 1 ? " call" : " calls");
  if (typeof u.cost === "number") text += " · cost " + Number(u.cost.toPrecision(2));
  return text;
}

export function argText(value) {
  if (typeof value === "string") return value; // prompts keep their line breaks
  try {
    return JSON.stringify(value);
  } catch (err) {
    return String(value);
  }
}
