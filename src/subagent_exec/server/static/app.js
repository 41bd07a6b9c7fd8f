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
  const SHORT_ID = 8; // hex digits of a task id shown to a reader
  // Engine task ids are uuid4 hex; "<id> (<name>)" is how cascade reasons name
  // an ancestor (the bracketed name is dropped when we print the name anyway).
  const TASK_ID_RE = /\b([0-9a-f]{32})\b(?: \(([^()]*)\))?/g;
  const CLEARED_KEY = "subagent-exec:cleared-runs:" + BASE;

  // ---- state model ------------------------------------------------------------------
  const tasks = new Map(); // task id -> task (insertion order = creation order)
  let clockOffset = 0; // server time - local time, seconds
  let source = null;
  let serverEpoch = null; // which server's event numbering we follow
  const cleared = loadCleared(); // root ids of runs hidden with "Clear"
  let showCleared = false;

  function rank(status) {
    return TERMINAL.has(status) ? 2 : status === "running" ? 1 : 0;
  }

  function ensureTask(id, parentId, name) {
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
  function setStatus(t, status) {
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

  function mergeSnapshot(d) {
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
    const known = new Set(body.tasks.map((d) => d.task_id));
    if (prune) {
      // After a reset (a restarted server, or events lost): forget tasks the
      // server no longer knows, unless an event newer than the snapshot
      // mentioned them (then the snapshot was simply taken before they existed).
      for (const [id, t] of tasks) {
        if (known.has(id) || t.lastSeq > body.last_seq) continue;
        tasks.delete(id);
        const view = views.get(id);
        if (view) view.wrap.remove();
        views.delete(id);
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

  // ---- cleared runs (this browser only) ---------------------------------------------
  function loadCleared() {
    try {
      const ids = JSON.parse(localStorage.getItem(CLEARED_KEY) || "[]");
      return new Set(Array.isArray(ids) ? ids.filter((id) => typeof id === "string") : []);
    } catch (err) {
      return new Set(); // storage disabled or corrupt: nothing is cleared
    }
  }

  function saveCleared() {
    try {
      localStorage.setItem(CLEARED_KEY, JSON.stringify([...cleared]));
    } catch (err) {
      // Storage full or disabled: clearing still works until the page reloads.
    }
  }

  function setCleared(rootIds, hide) {
    for (const id of rootIds) {
      if (hide) cleared.add(id);
      else cleared.delete(id);
    }
    saveCleared();
    remeasure = true;
    scheduleRender();
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

  // ---- words ----------------------------------------------------------------------
  function shortId(id) {
    return "#" + id.slice(0, SHORT_ID);
  }

  // Task ids in reasons, errors and answers become "researcher #3f2a9c1b".
  function nameIds(text) {
    if (!text) return "";
    return text.replace(TASK_ID_RE, (match, id, bracketed) => {
      const t = tasks.get(id);
      if (!t || !t.name) return bracketed !== undefined ? bracketed + " " + shortId(id) : shortId(id);
      let ref = t.name + " " + shortId(id);
      if (bracketed !== undefined && bracketed !== t.name) ref += " (" + bracketed + ")";
      return ref;
    });
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

  function two(n) {
    return String(n).padStart(2, "0");
  }

  // A server timestamp as this browser's local wall-clock time; the date is
  // added when it is not today.
  function localTime(serverSeconds) {
    if (serverSeconds === null) return "";
    const at = new Date((serverSeconds - clockOffset) * 1000);
    const time = two(at.getHours()) + ":" + two(at.getMinutes()) + ":" + two(at.getSeconds());
    const now = new Date();
    if (at.toDateString() === now.toDateString()) return time;
    return at.getFullYear() + "-" + two(at.getMonth() + 1) + "-" + two(at.getDate()) + " " + time;
  }

  function detailOf(t) {
    let text = "";
    if (t.status === "completed") text = t.result ? "→ " + t.result : "";
    else if (t.status === "failed" || t.status === "timed_out") text = t.error || t.reason || "";
    else if (t.status === "cancelled" || t.stopping) text = t.reason || "";
    return nameIds(text);
  }

  function argText(value) {
    if (typeof value === "string") return value; // prompts keep their line breaks
    try {
      return JSON.stringify(value);
    } catch (err) {
      return String(value);
    }
  }

  // "→ task" and one "name: value" line per argument, values in full.
  function toolCallNode(call) {
    const node = el("div", "msg-tool");
    node.append(el("div", "tool-name", "→ " + call.name));
    const args = call.args && typeof call.args === "object" ? Object.entries(call.args) : [];
    for (const [key, value] of args) {
      const arg = el("div", "tool-arg");
      arg.append(el("span", "tool-key", key + ": "), nameIds(argText(value)));
      node.append(arg);
    }
    return node;
  }

  // ---- rendering ------------------------------------------------------------------
  const views = new Map(); // task id -> view (see makeView)
  let renderScheduled = false;
  let remeasure = false; // every text's "more" button needs checking (hidden runs shown)

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

  function button(className, text, onClick) {
    const node = el("button", className, text);
    node.type = "button";
    node.addEventListener("click", onClick);
    return node;
  }

  // A text shown on one line, cut with an ellipsis, that opens in full (wrapped,
  // line breaks kept) from its "more" button or a click on the text.
  function makeClip(className, onOpen) {
    const box = el("div", "clip-box " + className);
    const text = el("span", "clip");
    const clip = { box, text, more: null, open: false, value: null, measured: false };
    const toggle = () => {
      clip.open = !clip.open;
      box.classList.toggle("open", clip.open);
      clip.more.textContent = clip.open ? "less" : "more";
      clip.more.setAttribute("aria-expanded", String(clip.open));
      clip.measured = false;
      if (clip.open && onOpen) onOpen();
      scheduleRender();
    };
    clip.more = button("more", "more", toggle);
    clip.more.hidden = true;
    clip.more.setAttribute("aria-expanded", "false");
    text.addEventListener("click", () => {
      if (!clip.more.hidden && !window.getSelection().toString()) toggle();
    });
    box.append(text, clip.more);
    clipOf.set(text, clip);
    clipResizes.observe(text);
    return clip;
  }

  // Whether a text is cut depends on its width, which changes without any event
  // of ours (a scrollbar appears, the window is resized, a column grows): each
  // text is measured again whenever its box changes size.
  const clipOf = new WeakMap();
  const clipResizes = new ResizeObserver((entries) => {
    for (const entry of entries) {
      const clip = clipOf.get(entry.target);
      if (clip) clip.measured = false;
    }
    scheduleRender();
  });

  function setClip(clip, value) {
    if (clip.value === value) return;
    clip.value = value;
    clip.text.textContent = value;
    clip.measured = false;
  }

  function measureClip(clip) {
    // Reads layout: called once per frame for the texts that changed.
    clip.measured = true;
    if (!clip.value) {
      clip.more.hidden = true;
      return;
    }
    const cut = clip.text.scrollWidth > clip.text.clientWidth + 1 || clip.value.includes("\n");
    clip.more.hidden = !(clip.open || cut);
    clip.box.classList.toggle("expandable", !clip.more.hidden);
  }

  function makeView(t) {
    const wrap = el("div", "task");
    wrap.dataset.taskId = t.id;

    // A run's label is its prompt: one line here, in full with "more".
    const head = el("div", "run-head");
    const runLabel = makeClip("run-label");
    const runStart = el("span", "run-start");
    const clearRun = button("clear-run", "Clear", () => {
      setCleared([t.id], !cleared.has(t.id));
    });
    head.append(runLabel.box, runStart, clearRun);
    head.hidden = true;

    const row = el("div", "row");
    const chip = el("span", "chip");
    const who = el("span", "who");
    const name = el("span", "name");
    const sid = el("span", "sid", shortId(t.id));
    sid.title = t.id;
    who.append(name, sid);
    const what = makeClip("what");
    const elapsed = el("span", "elapsed");
    const stop = button("stop", "Stop", () => {
      // Feedback now, not at the next frame: the click must visibly register.
      stop.textContent = "Stopping…";
      stop.disabled = true;
      stopTask(t.id);
    });
    // The full answer / error / reason: events carry up to 2,000 characters
    // of each, the task API all of it.
    const detail = makeClip("detail", () => {
      const task = tasks.get(t.id);
      if (task && TERMINAL.has(task.status) && !task.fullLoaded) {
        loadTask(t.id).catch((err) => notice(String(err)));
      }
    });

    const msgs = el("div", "msgs");
    const msgList = el("ol", "msg-list");
    const view = {
      wrap, head, runLabel, runStart, clearRun, chip, name, what, elapsed, stop,
      detail, msgs, msgList, msgToggle: null, msgsOpen: false, msgsShown: 0,
      children: el("div", "children"), shown: {},
    };
    view.msgToggle = button("msgs-toggle", "", () => {
      view.msgsOpen = !view.msgsOpen;
      const task = tasks.get(t.id);
      if (view.msgsOpen && task && task.messages.length < task.messageCount) {
        loadTask(t.id).catch((err) => notice(String(err)));
      }
      scheduleRender();
    });
    view.msgToggle.hidden = true;
    view.msgToggle.title = "the AI messages of this task, as they arrive";
    who.append(view.msgToggle);
    msgs.append(msgList);
    msgs.hidden = true;

    row.append(chip, who, what.box, elapsed, stop, detail.box, msgs);
    wrap.append(head, row, view.children);
    return view;
  }

  // Write a DOM property only when its value changed (cheap re-renders).
  function put(view, key, node, prop, value) {
    if (view.shown[key] === value) return;
    view.shown[key] = value;
    if (prop === "dataset.status") node.dataset.status = value;
    else if (prop === "cleared") node.classList.toggle("cleared", value);
    else node[prop] = value;
  }

  function messageNode(m, index) {
    const item = el("li", "msg");
    item.append(el("span", "msg-n", String(index + 1)));
    const body = el("div", "msg-body");
    const text = m.text || (typeof m.content === "string" ? m.content : "");
    if (text) body.append(el("div", "msg-text", nameIds(text)));
    for (const call of m.tool_calls || []) body.append(toolCallNode(call));
    if (!body.childNodes.length) body.append(el("div", "msg-text empty-msg", "(no text)"));
    item.append(body);
    return item;
  }

  function renderMessages(t, view) {
    const count = Math.max(t.messageCount, t.messages.length);
    put(view, "msgToggleHidden", view.msgToggle, "hidden", count === 0);
    const label = (view.msgsOpen ? "▾ " : "▸ ") + count + " AI message" + (count === 1 ? "" : "s");
    put(view, "msgToggle", view.msgToggle, "textContent", label);
    put(view, "msgsExpanded", view.msgToggle, "ariaExpanded", String(view.msgsOpen));
    put(view, "msgsHidden", view.msgs, "hidden", !view.msgsOpen || count === 0);
    if (!view.msgsOpen) return;
    if (t.messagesReordered) {
      t.messagesReordered = false;
      view.msgList.replaceChildren();
      view.msgsShown = 0;
    }
    // New messages are appended as they arrive; the ones shown stay as they are.
    for (let i = view.msgsShown; i < t.messages.length; i++) {
      view.msgList.append(messageNode(t.messages[i], i));
    }
    view.msgsShown = t.messages.length;
  }

  function render() {
    const runs = document.getElementById("runs");
    let live = false;
    // Views first, so a child can be placed under a parent that was only
    // created later in the model (a replayed or placeholder entry).
    for (const t of tasks.values()) {
      if (!views.has(t.id)) views.set(t.id, makeView(t));
    }
    const treeEnded = endedTest();
    let finishedShown = 0;
    let clearedRuns = 0;
    let runsShown = 0;
    for (const t of tasks.values()) {
      const view = views.get(t.id);
      // Place the view under its parent (or as a run card, newest first).
      const parentView = t.parentId ? views.get(t.parentId) : null;
      const isRun = !parentView;
      if (parentView) {
        if (view.wrap.parentNode !== parentView.children) {
          view.wrap.classList.remove("run");
          parentView.children.append(view.wrap);
        }
      } else if (view.wrap.parentNode !== runs) {
        view.wrap.classList.add("run");
        runs.insertBefore(view.wrap, runs.firstChild);
      }
      put(view, "isRun", view.head, "hidden", !isRun);
      const isCleared = isRun && cleared.has(t.id);
      put(view, "runHidden", view.wrap, "hidden", isCleared && !showCleared);
      put(view, "runCleared", view.wrap, "cleared", isCleared);
      if (isRun) {
        const ended = treeEnded(t);
        if (isCleared) clearedRuns += 1;
        else if (ended) finishedShown += 1;
        if (!isCleared || showCleared) runsShown += 1;
        setClip(view.runLabel, nameIds(t.text) || t.name);
        const start = t.startedAt ?? t.createdAt;
        put(view, "runStart", view.runStart, "textContent", start === null ? "" : "started " + localTime(start));
        put(view, "clearHidden", view.clearRun, "hidden", !ended && !isCleared);
        put(view, "clearText", view.clearRun, "textContent", isCleared ? "Restore" : "Clear");
      }
      const terminal = TERMINAL.has(t.status);
      const shownStatus = !terminal && (t.stopping || t.stopClicked) ? "stopping" : t.status;
      put(view, "status", view.chip, "dataset.status", shownStatus);
      put(view, "label", view.chip, "textContent", LABELS[shownStatus] || shownStatus);
      put(view, "name", view.name, "textContent", t.name);
      put(view, "nameTitle", view.name, "title", t.name);
      // A run's prompt is its label: its lead task's row does not repeat it.
      setClip(view.what, isRun ? "" : nameIds(t.text));
      put(view, "elapsed", view.elapsed, "textContent", formatElapsed(elapsedOf(t)));
      const detail = terminal || t.stopping ? detailOf(t) : "";
      setClip(view.detail, detail);
      put(view, "detailHidden", view.detail.box, "hidden", !detail);
      put(view, "hidden", view.stop, "hidden", terminal);
      const waiting = t.stopClicked || t.stopping;
      put(view, "disabled", view.stop, "disabled", waiting);
      put(view, "button", view.stop, "textContent", waiting ? "Stopping…" : "Stop");
      renderMessages(t, view);
      if (!terminal && t.startedAt !== null) live = true;
    }
    // Layout reads after all writes: one layout per frame, only for texts that
    // changed (or all of them after a resize or when hidden runs come back).
    for (const view of views.values()) {
      for (const clip of [view.runLabel, view.what, view.detail]) {
        if (remeasure || !clip.measured) measureClip(clip);
      }
    }
    remeasure = false;

    const empty = document.getElementById("empty");
    empty.hidden = runsShown > 0;
    empty.textContent =
      tasks.size === 0 ? "No runs yet." : "Every run is cleared from view (“Show cleared” brings them back).";
    const clearAll = document.getElementById("clear-finished");
    clearAll.disabled = finishedShown === 0;
    clearAll.textContent = finishedShown ? "Clear finished (" + finishedShown + ")" : "Clear finished";
    const showButton = document.getElementById("show-cleared");
    showButton.hidden = clearedRuns === 0;
    showButton.textContent = showCleared ? "Hide cleared" : "Show cleared (" + clearedRuns + ")";
    showButton.setAttribute("aria-pressed", String(showCleared));
    hasLiveTasks = live;
  }

  // A test "has this task and everything under it ended?" over the model now.
  function endedTest() {
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

  function finishedRunIds() {
    const ended = endedTest();
    return [...tasks.values()]
      .filter((t) => !(t.parentId && tasks.has(t.parentId)) && ended(t))
      .map((t) => t.id);
  }

  // Elapsed times tick while something runs; no timer work when all is quiet.
  let hasLiveTasks = false;
  setInterval(() => {
    if (hasLiveTasks) scheduleRender();
  }, 200);

  // ---- boot -----------------------------------------------------------------------
  if (CAN_START_RUNS) {
    const start = document.getElementById("start-run");
    start.hidden = false;
    start.addEventListener("click", startRun);
  }
  document.getElementById("clear-finished").addEventListener("click", () => {
    setCleared(finishedRunIds(), true);
  });
  document.getElementById("show-cleared").addEventListener("click", () => {
    showCleared = !showCleared;
    remeasure = true;
    scheduleRender();
  });
  loadSnapshot()
    .then(connect)
    .catch((err) => {
      notice("Could not load the tasks: " + err);
      connect(0);
    });
  window.subagentExecPage = { tasks, cleared }; // for debugging from the console
})();
