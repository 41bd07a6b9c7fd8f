"""A plain-text live view of a runtime's task tree (no dependencies).

On a terminal the view is redrawn in place; elsewhere (CI logs, pipes) only
status changes are printed, one line each, so the output stays readable.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Iterable
from typing import TextIO

from ._result import SubagentResult
from ._runtime import SubagentRuntime
from ._status import SubagentStatus

_COLOURS = {
    SubagentStatus.PENDING: "\033[90m",
    SubagentStatus.RUNNING: "\033[36m",
    SubagentStatus.COMPLETED: "\033[32m",
    SubagentStatus.FAILED: "\033[31m",
    SubagentStatus.CANCELLED: "\033[33m",
    SubagentStatus.TIMED_OUT: "\033[35m",
}
_RESET = "\033[0m"
_LONG_ID = re.compile(r"\b[0-9a-f]{32}\b")  # uuid4().hex task ids: 8 chars are enough to read


def status_label(holder: SubagentResult) -> str:
    return "stopping" if holder.stopping else holder.status.value


def elapsed(holder: SubagentResult) -> str:
    seconds = holder.duration_seconds
    return "   -  " if seconds is None else f"{seconds:5.2f}s"


def tree_lines(tasks: Iterable[SubagentResult], *, colour: bool = False) -> list[str]:
    """One line per task, children indented under their parent."""
    tasks = list(tasks)
    known = {t.task_id for t in tasks}
    children: dict[str | None, list[SubagentResult]] = {}
    for t in tasks:
        parent = t.parent_id if t.parent_id in known else None
        children.setdefault(parent, []).append(t)
    lines: list[str] = []

    def walk(parent: str | None, prefix: str) -> None:
        kids = children.get(parent, [])
        for i, t in enumerate(kids):
            last = i == len(kids) - 1
            branch = "" if parent is None else ("└─ " if last else "├─ ")
            label = f"{status_label(t):<9}"
            if colour:
                label = f"{_COLOURS[t.status]}{label}{_RESET}"
            detail = t.cancel_reason or t.error or ""
            if t.status is SubagentStatus.COMPLETED and t.result:
                detail = t.result
            detail = _LONG_ID.sub(lambda m: m.group(0)[:8], detail.replace("\n", " "))
            if len(detail) > 64:
                detail = detail[:61] + "..."
            name = f"{prefix}{branch}{t.subagent_name}"
            lines.append(f"{name:<34} {label} {elapsed(t)}  {detail}")
            walk(t.task_id, prefix + ("" if parent is None else ("   " if last else "│  ")))

    walk(None, "")
    return lines


class LiveTree:
    """Redraws the task tree of a runtime until stopped (a context manager)."""

    def __init__(
        self, runtime: SubagentRuntime, out: TextIO | None = None, interval: float = 0.1
    ) -> None:
        self._runtime = runtime
        self._out = out or sys.stdout
        self._interval = interval
        self._tty = self._out.isatty()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="live-tree", daemon=True)
        self._drawn = 0
        self._last: dict[str, str] = {}

    @property
    def redraws_in_place(self) -> bool:
        """True on a terminal; elsewhere only status changes are printed."""
        return self._tty

    def __enter__(self) -> LiveTree:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.draw()

    def draw(self) -> None:
        tasks = self._runtime.list_tasks()
        if self._tty:
            lines = tree_lines(tasks, colour=True)
            if self._drawn:
                self._out.write(f"\033[{self._drawn}F\033[J")
            self._out.write("\n".join(lines) + "\n")
            self._drawn = len(lines)
        else:
            for t in tasks:
                label = status_label(t)
                if self._last.get(t.task_id) != label:
                    self._last[t.task_id] = label
                    self._out.write(
                        f"{time.strftime('%H:%M:%S')} {t.subagent_name:<14} {label:<9} "
                        f"{elapsed(t)}\n"
                    )
        self._out.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.draw()
