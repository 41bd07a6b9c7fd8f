"""What the demo's terminal view says about a task: words, short ids, run labels.

Shared by the live tree (:mod:`subagent_exec._display_rich`) and the piped
lines (:mod:`subagent_exec._display`). The words, short ids and colours are the
run page's (``server/static``), so the terminal and the browser describe a run
the same way. Reads only public fields of :class:`SubagentResult` and
:class:`TaskEvent`; never draws anything.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from datetime import datetime

from ._events import TaskEvent
from ._result import SubagentResult
from ._status import SubagentStatus

#: How many hex digits of a task id are shown: enough to tell tasks apart by eye.
SHORT_ID_CHARS = 8
#: Chip words, as on the run page (app.js LABELS).
LABELS = {
    "pending": "pending",
    "running": "running",
    "stopping": "stopping",
    "completed": "completed",
    "failed": "failed",
    "timed_out": "timed out",
    "cancelled": "cancelled",
}
#: Chip colours, (text, background), as on the run page (app.css ``.chip[data-status]``);
#: a test reads app.css and compares. ``None``: the terminal's own background.
STATUS_COLOURS: dict[str, tuple[str, str | None]] = {
    "pending": ("#667085", None),
    "running": ("#ffffff", "#1f6feb"),
    "stopping": ("#57606a", None),
    "completed": ("#ffffff", "#1a7f37"),
    "failed": ("#ffffff", "#cf222e"),
    "timed_out": ("#ffffff", "#9a6700"),
    # Neutral on purpose: a stop the user asked for is not an error.
    "cancelled": ("#57606a", "#eaeef2"),
}

# Engine task ids are uuid4().hex. "<id> (<name>)" is how the runtime's cascade
# reasons name an ancestor; the name in brackets is dropped when we print it anyway.
_TASK_ID = re.compile(r"\b([0-9a-f]{32})\b(?: \(([^()]*)\))?")
_SPACES = re.compile(r"\s+")

Lookup = Callable[[str], SubagentResult | None]


def short_id(task_id: str) -> str:
    """The first hex digits of a task id, e.g. ``3f2a9c1b``."""
    return task_id[:SHORT_ID_CHARS]


def task_ref(name: str, task_id: str) -> str:
    """How a task is named to a reader: ``researcher #3f2a9c1b``."""
    return f"{name} #{short_id(task_id)}"


def name_task_ids(text: str, lookup: Lookup) -> str:
    """Replace 32-hex task ids in ``text`` by ``name #shortid`` (or ``#shortid``
    for a task ``lookup`` does not know)."""

    def replace(match: re.Match[str]) -> str:
        task_id, bracketed = match.group(1), match.group(2)
        holder = lookup(task_id)
        if holder is None:
            ref = f"#{short_id(task_id)}"
            return ref if bracketed is None else f"{bracketed} {ref}"
        ref = task_ref(holder.subagent_name, task_id)
        if bracketed is not None and bracketed != holder.subagent_name:
            ref += f" ({bracketed})"
        return ref

    return _TASK_ID.sub(replace, text)


def excerpt(text: str | None, limit: int) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis."""
    if not text:
        return ""
    flat = _SPACES.sub(" ", text).strip()
    return flat if len(flat) <= limit else flat[: max(0, limit - 1)].rstrip() + "…"


def status_key(holder: SubagentResult) -> str:
    """``stopping`` while a stop unwinds, else the status value."""
    return "stopping" if holder.stopping else holder.status.value


def format_elapsed(seconds: float | None) -> str:
    """Elapsed time as the run page shows it: ``2.3 s``, ``1 m 05 s``."""
    if seconds is None or seconds < 0:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} m {int(seconds % 60):02d} s"


def clock(timestamp: float | datetime) -> str:
    """Local wall-clock time, ``14:03:05``."""
    moment = timestamp if isinstance(timestamp, datetime) else datetime.fromtimestamp(timestamp)
    return moment.astimezone().strftime("%H:%M:%S")


def detail_of(holder: SubagentResult, lookup: Lookup) -> str:
    """What to say next to a task: its answer, error or stop reason once it has
    one, else what it was asked (not for a run's root: its prompt is the run's
    label). Task ids in it are named."""
    status = holder.status
    if status is SubagentStatus.COMPLETED:
        text = f"→ {holder.result}" if holder.result else ""
    elif status in (SubagentStatus.FAILED, SubagentStatus.TIMED_OUT):
        text = holder.error or holder.cancel_reason or ""
    elif status is SubagentStatus.CANCELLED or holder.stopping:
        text = holder.cancel_reason or ""
    else:
        text = holder.task if holder.parent_id is not None else ""
    return name_task_ids(text, lookup)


def background_owner(holder: SubagentResult) -> str | None:
    """For a background task, the task whose run it belongs to: a lead that
    runs as a task is its own thread, so the thread id names it (the task may
    not exist: a lead outside the runtime has a thread of its own)."""
    if holder.background and holder.thread_id and holder.thread_id != holder.task_id:
        return holder.thread_id
    return None


def display_parent(holder: SubagentResult, known: set[str]) -> str | None:
    """Where a task is drawn: under its parent, a background task under the
    lead that started it, else as a run of its own (None)."""
    if holder.parent_id in known:
        return holder.parent_id
    owner = background_owner(holder)
    return owner if owner in known else None


def _letters(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA (spreadsheet style)."""
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(ord("A") + rest) + name
    return name


class RunLabels:
    """Names runs ``run A``, ``run B``, ... in the order their root tasks are
    first seen (creation order), and finds the run a task belongs to."""

    def __init__(self, lookup: Lookup) -> None:
        self._lookup = lookup
        self._letters: dict[str, str] = {}
        self._root_of: dict[str, str] = {}
        self._lock = threading.Lock()

    def root_of(self, holder: SubagentResult) -> str:
        """The id of the root task above ``holder`` (itself for a root). A
        cleaned-up ancestor ends the walk: the topmost task still known counts."""
        path: list[str] = []
        current = holder
        while True:
            with self._lock:
                root = self._root_of.get(current.task_id)
            if root is not None:
                break
            path.append(current.task_id)
            above = current.parent_id or background_owner(current)
            parent = self._lookup(above) if above else None
            if parent is None:
                root = current.task_id
                break
            current = parent
        with self._lock:
            for task_id in path:
                self._root_of[task_id] = root
        return root

    def label(self, root_id: str) -> str:
        with self._lock:
            letter = self._letters.get(root_id)
            if letter is None:
                letter = self._letters[root_id] = _letters(len(self._letters))
            return f"run {letter}"

    def of(self, holder: SubagentResult) -> str:
        """``run X`` for the run ``holder`` belongs to."""
        return self.label(self.root_of(holder))


def change_line(event: TaskEvent, holder: SubagentResult | None, runs: RunLabels,
                lookup: Lookup) -> str | None:
    """One self-explaining line for a task event, or None for events that do
    not change what the task is doing (``ai_message``)."""
    if event.kind == "ai_message":
        return None
    run = runs.of(holder) if holder is not None else "run ?"
    who = task_ref(event.subagent_name, event.task_id)
    stamp = datetime.fromtimestamp(event.timestamp).strftime("%H:%M:%S.%f")[:-3]
    parts = [f"{stamp} {run}", who]
    if event.kind == "created":
        parts.append("pending")
        task = excerpt(str(event.data.get("task", "")), 80)
        if event.data.get("background"):
            parts.append(f'started in the background: "{task}"')
        elif event.parent_id is None:
            parts.append(f'new run: "{task}"')
        else:
            parent = lookup(event.parent_id)
            asker = task_ref(parent.subagent_name, event.parent_id) if parent else "?"
            parts.append(f'asked by {asker}: "{task}"')
    elif event.kind == "started":
        parts.append("running")
    elif event.kind == "cancel_requested":
        reason = name_task_ids(str(event.data.get("reason", "")), lookup)
        word = "stopping (deadline)" if event.data.get("as") == "timed_out" else "stopping"
        parts.append(f"{word}: {excerpt(reason, 120)}")
    elif event.is_terminal:
        parts.append(_terminal_words(event.kind, holder, lookup))
    else:  # an event kind this view does not know yet: still say something true
        parts.append(LABELS.get(event.status, event.status))
    return " · ".join(parts)


def _terminal_words(kind: str, holder: SubagentResult | None, lookup: Lookup) -> str:
    words = LABELS.get(kind, kind)
    if holder is None:
        return words
    seconds = holder.duration_seconds
    words += f" after {format_elapsed(seconds)}" if seconds is not None else " before it started"
    if kind == "completed":
        # An answer may quote a task id too (a cancelled child's tool message).
        answer = name_task_ids(holder.result, lookup) if holder.result else ""
        return f'{words}: "{excerpt(answer, 100)}"' if answer else words
    why = holder.error if kind in ("failed", "timed_out") else holder.cancel_reason
    return f"{words}: {excerpt(name_task_ids(why, lookup), 120)}" if why else words


def tree_lines(tasks: Iterable[SubagentResult], lookup: Lookup,
               runs: RunLabels | None = None) -> list[str]:
    """The tree as plain text (no colours): a header per run, then one line
    per task, children indented under their parent."""
    tasks = list(tasks)
    runs = runs or RunLabels(lookup)
    known = {t.task_id for t in tasks}
    children: dict[str | None, list[SubagentResult]] = {}
    for t in tasks:
        children.setdefault(display_parent(t, known), []).append(t)
    lines: list[str] = []

    def walk(parent: str, prefix: str) -> None:
        kids = children.get(parent, [])
        for i, t in enumerate(kids):
            last = i == len(kids) - 1
            lines.append(prefix + ("└─ " if last else "├─ ") + _task_line(t, lookup))
            walk(t.task_id, prefix + ("   " if last else "│  "))

    for root in children.get(None, []):
        lines.append(run_header(root, runs))
        lines.append("└─ " + _task_line(root, lookup))
        walk(root.task_id, "   ")
    return lines


def run_header(root: SubagentResult, runs: RunLabels) -> str:
    """``run A: <prompt excerpt> · started 14:03:05``."""
    started = clock(root.started_at or root.created_at)
    return f"{runs.label(root.task_id)}: {excerpt(root.task, 70)} · started {started}"


def _task_line(t: SubagentResult, lookup: Lookup) -> str:
    label = LABELS[status_key(t)]
    elapsed = format_elapsed(t.duration_seconds)
    kind = " (background)" if t.background else ""
    return (
        f"{task_ref(t.subagent_name, t.task_id)}{kind}  {label} {elapsed}  "
        f"{excerpt(detail_of(t, lookup), 72)}"
    ).rstrip()
