// The run page's drawing: the DOM is brought up to date from the state model
// (model.js) at most once per animation frame, touching only what changed.

import {
  LABELS, TERMINAL, argText, cleared, detailOf, elapsedOf, endedTest, formatElapsed,
  localTime, nameIds, page, placeOf, runUsage, shortId, tasks, threadsToStop, usageText,
} from "./model.js";

// What the view asks of the page (app.js fills these in with startView).
const hooks = {
  stopTask: null, stopThread: null, resumeTask: null, loadTask: null, toggleCleared: null, notice: null,
};

export function startView(given) {
  Object.assign(hooks, given);
  // Elapsed times tick while something runs; no timer work when all is quiet.
  setInterval(() => {
    if (hasLiveTasks) scheduleRender();
  }, 200);
}

// The stopped statuses a Resume button is offered on (docs/resume.md).
const RESUMABLE = new Set(["cancelled", "timed_out", "failed"]);
const views = new Map(); // task id -> view (see makeView)
let renderScheduled = false;
let remeasure = false; // every text's "more" button needs checking (hidden runs shown)

export function scheduleRender() {
  if (renderScheduled) return;
  renderScheduled = true;
  requestAnimationFrame(() => {
    renderScheduled = false;
    render();
  });
}

// Drop the views of tasks the model forgot (all of them without ids).
export function forgetViews(ids) {
  for (const id of ids || [...views.keys()]) {
    const view = views.get(id);
    if (view) view.wrap.remove();
    views.delete(id);
  }
  scheduleRender();
}

// Every text's "more" button is checked again at the next render.
export function remeasureAll() {
  remeasure = true;
  scheduleRender();
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


function makeView(t) {
  const wrap = el("div", "task");
  wrap.dataset.taskId = t.id;

  // A run's label is its prompt: one line here, in full with "more".
  const head = el("div", "run-head");
  const runLabel = makeClip("run-label");
  const runStart = el("span", "run-start");
  // What the whole run used so far (tokens, and cost when every price is known).
  const runUsageNode = el("span", "run-usage");
  runUsageNode.title = "tokens (and cost) of every task of this run, live";
  const clearRun = button("clear-run", "Clear", () => {
    hooks.toggleCleared(t.id);
  });
  // Stops the whole thread: the run and the background tasks it started.
  const stopThread = button("stop-thread", "Stop all", () => {
    const task = tasks.get(t.id);
    if (!task || !task.thread) return;
    stopThread.textContent = "Stopping…";
    stopThread.disabled = true;
    hooks.stopThread(task.thread);
  });
  stopThread.title = "Stop every task of this run's thread, background tasks included";
  stopThread.hidden = true;
  head.append(runLabel.box, runStart, runUsageNode, stopThread, clearRun);
  head.hidden = true;

  const row = el("div", "row");
  const chip = el("span", "chip");
  const who = el("span", "who");
  const name = el("span", "name");
  const sid = el("span", "sid", shortId(t.id));
  sid.title = t.id;
  const bgTag = el("span", "bg-tag", "background");
  bgTag.title = "started with start_task: it runs on after its lead's turn and is not stopped with it";
  bgTag.hidden = true;
  who.append(name, sid, bgTag);
  const what = makeClip("what");
  const elapsed = el("span", "elapsed");
  const usage = el("span", "usage");
  usage.title = "what this task's own model calls used";
  const stop = button("stop", "Stop", () => {
    // Feedback now, not at the next frame: the click must visibly register.
    stop.textContent = "Stopping…";
    stop.disabled = true;
    hooks.stopTask(t.id);
  });
  // Resume: a new task going on from this stopped task's last completed step.
  const resume = button("resume", "Resume", () => {
    resume.textContent = "Resuming…";
    resume.disabled = true;
    hooks.resumeTask(t.id);
  });
  resume.title = "start a new task that goes on from this task's last completed step";
  resume.hidden = true;
  const actions = el("div", "row-actions");
  actions.append(stop, resume);
  // The full answer / error / reason: events carry up to 2,000 characters
  // of each, the task API all of it.
  const detail = makeClip("detail", () => {
    const task = tasks.get(t.id);
    if (task && TERMINAL.has(task.status) && !task.fullLoaded) {
      hooks.loadTask(t.id).catch((err) => hooks.notice(String(err)));
    }
  });

  const msgs = el("div", "msgs");
  const msgList = el("ol", "msg-list");
  // The background tasks this run started: roots of their own, drawn apart.
  const bgBox = el("div", "background-tasks");
  const bgList = el("div", "bg-list");
  bgBox.append(el("div", "bg-title", "Background"), bgList);
  bgBox.hidden = true;
  const view = {
    wrap, head, runLabel, runStart, runUsage: runUsageNode, clearRun, stopThread, chip, name,
    bgTag, what, elapsed, usage, stop, resume, detail, msgs, msgList, msgToggle: null,
    msgsOpen: false, msgsShown: 0,
    children: el("div", "children"), bgBox, bgList, shown: {},
  };
  view.msgToggle = button("msgs-toggle", "", () => {
    view.msgsOpen = !view.msgsOpen;
    const task = tasks.get(t.id);
    if (view.msgsOpen && task && task.messages.length < task.messageCount) {
      hooks.loadTask(t.id).catch((err) => hooks.notice(String(err)));
    }
    scheduleRender();
  });
  view.msgToggle.hidden = true;
  view.msgToggle.title = "the AI messages of this task, as they arrive";
  who.append(view.msgToggle);
  msgs.append(msgList);
  msgs.hidden = true;

  row.append(chip, who, what.box, elapsed, usage, actions, detail.box, msgs);
  wrap.append(head, row, view.children, bgBox);
  return view;
}

// Write a DOM property only when its value changed (cheap re-renders).
function put(view, key, node, prop, value) {
  if (view.shown[key] === value) return;
  view.shown[key] = value;
  if (prop === "dataset.status") node.dataset.status = value;
  else if (prop === "cleared") node.classList.toggle("cleared", value);
  else if (prop === "background") node.classList.toggle("background", value);
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
  const stoppable = threadsToStop();
  const usageOfRuns = runUsage();
  const withBackground = new Set(); // ids of views with background tasks drawn in them
  let finishedShown = 0;
  let clearedRuns = 0;
  let runsShown = 0;
  for (const t of tasks.values()) {
    const view = views.get(t.id);
    // Place the view under its parent, a background task in its run's
    // background part, anything else as a run card (newest first).
    const place = placeOf(t);
    const parentView = place ? views.get(place.parentId) : null;
    const isRun = !parentView;
    if (parentView) {
      const box = place.background ? parentView.bgList : parentView.children;
      if (place.background) withBackground.add(place.parentId);
      if (view.wrap.parentNode !== box) {
        view.wrap.classList.remove("run");
        box.append(view.wrap);
      }
    } else if (view.wrap.parentNode !== runs) {
      view.wrap.classList.add("run");
      // Runs from the store's older pages go below (they come newest first).
      if (t.fromHistory) runs.append(view.wrap);
      else runs.insertBefore(view.wrap, runs.firstChild);
    }
    put(view, "isRun", view.head, "hidden", !isRun);
    const isCleared = isRun && cleared.has(t.id);
    put(view, "runHidden", view.wrap, "hidden", isCleared && !page.showCleared);
    put(view, "runCleared", view.wrap, "cleared", isCleared);
    if (isRun) {
      const ended = treeEnded(t);
      if (isCleared) clearedRuns += 1;
      else if (ended) finishedShown += 1;
      if (!isCleared || page.showCleared) runsShown += 1;
      setClip(view.runLabel, nameIds(t.text) || t.name);
      const start = t.startedAt ?? t.createdAt;
      put(view, "runStart", view.runStart, "textContent", start === null ? "" : "started " + localTime(start));
      const used = usageText(usageOfRuns.get(t.id));
      put(view, "runUsage", view.runUsage, "textContent", used ? "run: " + used : "");
      put(view, "clearHidden", view.clearRun, "hidden", !ended && !isCleared);
      put(view, "clearText", view.clearRun, "textContent", isCleared ? "Restore" : "Clear");
      // "Stop all": the run's thread has background tasks and unfinished work.
      const offered = Boolean(t.thread) && stoppable.has(t.thread);
      put(view, "stopThreadHidden", view.stopThread, "hidden", !offered);
      if (!offered) {
        put(view, "stopThreadDisabled", view.stopThread, "disabled", false);
        put(view, "stopThreadText", view.stopThread, "textContent", "Stop all");
      }
    }
    put(view, "bgTagHidden", view.bgTag, "hidden", !t.background);
    put(view, "isBackground", view.wrap, "background", t.background);
    const terminal = TERMINAL.has(t.status);
    const shownStatus = !terminal && (t.stopping || t.stopClicked) ? "stopping" : t.status;
    put(view, "status", view.chip, "dataset.status", shownStatus);
    put(view, "label", view.chip, "textContent", LABELS[shownStatus] || shownStatus);
    put(view, "name", view.name, "textContent", t.name);
    put(view, "nameTitle", view.name, "title", t.name);
    // A run's prompt is its label: its lead task's row does not repeat it.
    setClip(view.what, isRun ? "" : nameIds(t.text));
    put(view, "elapsed", view.elapsed, "textContent", formatElapsed(elapsedOf(t)));
    put(view, "usage", view.usage, "textContent", usageText(t.usage));
    const detail = terminal || t.stopping ? detailOf(t) : "";
    setClip(view.detail, detail);
    put(view, "detailHidden", view.detail.box, "hidden", !detail);
    put(view, "hidden", view.stop, "hidden", terminal);
    const waiting = t.stopClicked || t.stopping;
    put(view, "disabled", view.stop, "disabled", waiting);
    put(view, "button", view.stop, "textContent", waiting ? "Stopping…" : "Stop");
    // Resume: offered on a stopped task until this page has resumed it.
    put(view, "resumeHidden", view.resume, "hidden", !RESUMABLE.has(t.status) || Boolean(t.resumedAs));
    put(view, "resumeDisabled", view.resume, "disabled", Boolean(t.resumeClicked));
    put(view, "resumeText", view.resume, "textContent", t.resumeClicked ? "Resuming…" : "Resume");
    renderMessages(t, view);
    if (!terminal && t.startedAt !== null) live = true;
  }
  for (const [id, view] of views) {
    put(view, "bgBoxHidden", view.bgBox, "hidden", !withBackground.has(id));
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
  showButton.textContent = page.showCleared ? "Hide cleared" : "Show cleared (" + clearedRuns + ")";
  showButton.setAttribute("aria-pressed", String(page.showCleared));
  hasLiveTasks = live;
}


let hasLiveTasks = false;
