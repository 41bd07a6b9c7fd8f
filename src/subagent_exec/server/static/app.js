// The live run page: a state model fed by the event stream, rendered at most
// once per animation frame. Events only update the model (cheap, in order);
// the DOM is brought up to date from the model, so a burst of a thousand
// events costs one render, and what is shown never depends on how events
// were batched.
"use strict";

(function () {
  const BASE = document.querySelector('meta[name="subagent-exec-base"]').content;
  const CAN_START_RUNS =
    document.querySelector('meta[name="subagent-exec-can-start-runs"]').content === "true";
  const TERMINAL = new Set(["completed", "failed", "cancelled", "timed_out"]);
  const LABELS = {
    pending: "pending", running: "running", stopping: "stopping", completed: "completed",
    failed: "failed", timed_out: "timed out", cancelled: "cancelled",
  };

  // ---- state model ------------------------------------------------------------------
  const tasks = new Map(); // task id -> task (insertion order = creation order)
  let clockOffset = 0; // server time - local time, seconds
  let source = null;
  let serverEpoch = null; // which server's event numbering we follow

  function rank(status) {
    return TERMINAL.has(status) ? 2 : status === "running" ? 1 : 0;
  }

  function ensureTask(id, parentId, name) {
    let t = tasks.get(id);
    if (!t) {
      t = {
        id, parentId: parentId || null, name: name || "", text: "", status: "pending",
        stopping: false, stopClicked: false, createdAt: null, startedAt: null,
        completedAt: null, reason: null, error: null, result: null, messages: 0,
        lastSeq: 0,
      };
      tasks.set(id, t);
    }
    if (parentId && !t.parentId) t.parentId = parentId;
    if (name && !t.name) t.name = name;
    return t;
  }

  // Statuses only move forward (pending -> running -> terminal) and the first
  // terminal status wins: a replayed or late event can never undo a newer one.
  function setStatus(t, status) {
    if (!status || TERMINAL.has(t.status)) return;
    if (rank(status) >= rank(t.status)) t.status = status;
    if (TERMINAL.has(t.status)) t.stopping = false;
  }

  function isoSeconds(value) {
    return value ? Date.parse(value) / 1000 : null;
  }

  function mergeSnapshot(d) {
    const t = ensureTask(d.task_id, d.parent_id, d.subagent_name);
    t.text = d.task || t.text;
    t.createdAt = t.createdAt ?? isoSeconds(d.created_at);
    t.startedAt = t.startedAt ?? isoSeconds(d.started_at);
    if (!TERMINAL.has(t.status)) {
      t.completedAt = isoSeconds(d.completed_at);
      if (d.stopping) t.stopping = true;
    }
    t.reason = d.cancel_reason ?? t.reason;
    t.error = d.error ?? t.error;
    t.result = d.result ?? t.result;
    setStatus(t, d.status);
  }

  function applyEvent(ev) {
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
        t.messages += 1;
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

  function forgetEverything() {
    tasks.clear();
    for (const view of views.values()) view.wrap.remove();
    views.clear();
    scheduleRender();
  }

  async function loadSnapshot({ prune = false } = {}) {
    const response = await fetch(BASE + "tasks", { cache: "no-store" });
    if (!response.ok) throw new Error("GET tasks: HTTP " + response.status);
    const body = await response.json();
    clockOffset = body.server_time - Date.now() / 1000;
    for (const d of body.tasks) mergeSnapshot(d);
    if (prune) {
      // After a reset (a restarted server, or events lost): forget tasks the
      // server no longer knows, unless an event newer than the snapshot
      // mentioned them (then the snapshot was simply taken before they existed).
      const known = new Set(body.tasks.map((d) => d.task_id));
      for (const [id, t] of tasks) {
        if (known.has(id) || t.lastSeq > body.last_seq) continue;
        tasks.delete(id);
        const view = views.get(id);
        if (view) view.wrap.remove();
        views.delete(id);
      }
    }
    scheduleRender();
    return body.last_seq;
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

  // ---- rendering ------------------------------------------------------------------
  const views = new Map(); // task id -> {row, chip, name, what, elapsed, button, detail, children}
  let renderScheduled = false;

  function scheduleRender() {
    if (renderScheduled) return;
    renderScheduled = true;
    requestAnimationFrame(() => {
      renderScheduled = false;
      render();
    });
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function makeView(t) {
    const wrap = el("div", "task");
    wrap.dataset.taskId = t.id;
    const row = el("div", "row");
    const chip = el("span", "chip");
    const name = el("span", "name");
    const what = el("span", "what");
    const elapsed = el("span", "elapsed");
    const button = el("button", "stop", "Stop");
    button.type = "button";
    button.addEventListener("click", () => {
      // Feedback now, not at the next frame: the click must visibly register.
      button.textContent = "Stopping…";
      button.disabled = true;
      stopTask(t.id);
    });
    const detail = el("div", "detail");
    row.append(chip, name, what, elapsed, button, detail);
    const children = el("div", "children");
    wrap.append(row, children);
    return { wrap, chip, name, what, elapsed, button, detail, children, shown: {} };
  }

  // Write a DOM property only when its value changed (cheap re-renders).
  function put(view, key, node, prop, value) {
    if (view.shown[key] === value) return;
    view.shown[key] = value;
    if (prop === "dataset.status") node.dataset.status = value;
    else node[prop] = value;
  }

  function formatElapsed(seconds) {
    if (seconds === null || seconds < 0) return "";
    if (seconds < 60) return seconds.toFixed(1) + " s";
    const m = Math.floor(seconds / 60);
    const s = Math.floor(seconds % 60);
    return m + " m " + String(s).padStart(2, "0") + " s";
  }

  function elapsedOf(t) {
    if (t.startedAt === null) return null;
    const end = t.completedAt ?? Date.now() / 1000 + clockOffset;
    return Math.max(0, end - t.startedAt); // clocks are read on two machines
  }

  function detailOf(t) {
    if (t.status === "completed") return t.result ? "→ " + t.result : "";
    if (t.status === "failed" || t.status === "timed_out") return t.error || t.reason || "";
    if (t.status === "cancelled" || t.stopping) return t.reason || "";
    return t.text;
  }

  function render() {
    const runs = document.getElementById("runs");
    let live = false;
    // Views first, so a child can be placed under a parent that was only
    // created later in the model (a replayed or placeholder entry).
    for (const t of tasks.values()) {
      if (!views.has(t.id)) views.set(t.id, makeView(t));
    }
    for (const t of tasks.values()) {
      const view = views.get(t.id);
      // Place the view under its parent (or as a run card, newest first).
      const parentView = t.parentId ? views.get(t.parentId) : null;
      if (parentView) {
        if (view.wrap.parentNode !== parentView.children) {
          view.wrap.classList.remove("run");
          parentView.children.append(view.wrap);
        }
      } else {
        if (view.wrap.parentNode !== runs) {
          view.wrap.classList.add("run");
          runs.insertBefore(view.wrap, runs.firstChild);
        }
      }
      const terminal = TERMINAL.has(t.status);
      const shownStatus = !terminal && (t.stopping || t.stopClicked) ? "stopping" : t.status;
      put(view, "status", view.chip, "dataset.status", shownStatus);
      put(view, "label", view.chip, "textContent", LABELS[shownStatus] || shownStatus);
      put(view, "name", view.name, "textContent", t.name);
      put(view, "what", view.what, "textContent", t.text);
      put(view, "title", view.what, "title", t.text);
      put(view, "elapsed", view.elapsed, "textContent", formatElapsed(elapsedOf(t)));
      put(view, "detail", view.detail, "textContent", terminal || t.stopping ? detailOf(t) : "");
      put(view, "hidden", view.button, "hidden", terminal);
      const waiting = t.stopClicked || t.stopping;
      put(view, "disabled", view.button, "disabled", waiting);
      put(view, "button", view.button, "textContent", waiting ? "Stopping…" : "Stop");
      if (!terminal && t.startedAt !== null) live = true;
    }
    document.getElementById("empty").hidden = tasks.size > 0;
    hasLiveTasks = live;
  }

  // Elapsed times tick while something runs; no timer work when all is quiet.
  let hasLiveTasks = false;
  setInterval(() => {
    if (hasLiveTasks) scheduleRender();
  }, 200);

  // ---- boot -----------------------------------------------------------------------
  if (CAN_START_RUNS) {
    const button = document.getElementById("start-run");
    button.hidden = false;
    button.addEventListener("click", startRun);
  }
  loadSnapshot()
    .then(connect)
    .catch((err) => {
      notice("Could not load the tasks: " + err);
      connect(0);
    });
  window.subagentExecPage = { tasks }; // for debugging from the console
})();
