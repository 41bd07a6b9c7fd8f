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
      fullLoaded: false, lastSeq: 0,
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

export function mergeSnapshot(d) {
  const t = ensureTask(d.task_id, d.parent_id, d.subagent_name);
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
      break;
    default:
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

// A test "has this task and everything under it ended?" over the model now.
export function endedTest() {
  const kids = new Map(); // parent id -> child tasks
  for (const t of tasks.values()) {
    if (t.parentId && tasks.has(t.parentId)) {
      if (!kids.has(t.parentId)) kids.set(t.parentId, []);
      kids.get(t.parentId).push(t);
    }
  }
  const ended = (t) => TERMINAL.has(t.status) && (kids.get(t.id) || []).every(ended);
  return ended;
}

export function finishedRunIds() {
  const ended = endedTest();
  return [...tasks.values()]
    .filter((t) => !(t.parentId && tasks.has(t.parentId)) && ended(t))
    .map((t) => t.id);
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

export function argText(value) {
  if (typeof value === "string") return value; // prompts keep their line breaks
  try {
    return JSON.stringify(value);
  } catch (err) {
    return String(value);
  }
}
