"""When the demo's terminal view draws, and how: a live tree or one line per change.

* on a terminal, with ``rich`` installed (the ``demo`` extra): a live tree,
  redrawn in place (:mod:`subagent_exec._display_rich`);
* piped, or without ``rich``: one self-explaining line per change (run label,
  sub-agent, short id, status, and the reason or answer where useful), fed by
  the runtime's events so no transition is missed between two redraws; without
  ``rich``, a one-line hint first.

What each line says is :mod:`subagent_exec._display_text`. Uses the public
API only (``runtime.get`` / ``list_tasks`` / ``subscribe`` / ``last_event_seq``).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from ._checks import check_number
from ._display_text import RunLabels, change_line, tree_lines
from ._events import TaskEvent
from ._runtime import SubagentRuntime

if TYPE_CHECKING:
    from ._display_rich import RichLiveTree

#: The one line shown when ``rich`` is missing.
RICH_HINT = (
    "(plain output: install the demo extra for the live tree: pip install 'subagent-exec[demo]')"
)


def rich_available() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


class LiveTree:
    """Shows a runtime's tasks while the ``with`` block runs.

    On a terminal with ``rich`` installed: a live tree, redrawn every
    ``interval`` seconds. Otherwise: one line per change, printed as the
    runtime's events arrive (and a one-line hint when ``rich`` is missing).
    ``force_terminal`` overrides the terminal detection (tests).
    """

    def __init__(
        self,
        runtime: SubagentRuntime,
        out: TextIO | None = None,
        interval: float = 0.1,
        *,
        use_rich: bool | None = None,
        force_terminal: bool | None = None,
        width: int | None = None,
    ) -> None:
        if not isinstance(runtime, SubagentRuntime):
            raise TypeError(f"runtime must be a SubagentRuntime, got {type(runtime).__name__}")
        check_number("LiveTree", "interval", interval, positive=True)
        self._runtime = runtime
        self._out = out or sys.stdout
        self._interval = interval
        self.has_rich = rich_available() if use_rich is None else use_rich
        terminal = self._out.isatty() if force_terminal is None else force_terminal
        self.runs = RunLabels(runtime.get)
        self._rich_live: RichLiveTree | None = None
        if self.has_rich and terminal:
            from ._display_rich import RichLiveTree

            self._rich_live = RichLiveTree(
                runtime, self.runs, self._out, force_terminal=terminal, width=width
            )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="live-tree", daemon=True)
        self._write_lock = threading.Lock()
        self._printed_seq = 0
        self._printed = threading.Condition(self._write_lock)
        self._unsubscribe: Callable[[], None] | None = None

    @property
    def redraws_in_place(self) -> bool:
        """True when the live tree is shown; False when lines are printed."""
        return self._rich_live is not None

    def __enter__(self) -> LiveTree:
        if self._rich_live is not None:
            self._rich_live.start()
            self._thread.start()
        else:
            if not self.has_rich:
                self._write(RICH_HINT)
            self._unsubscribe = self._runtime.subscribe(self._on_event)
            # Every event newer than this is delivered to us (it was published
            # after we subscribed): __exit__ can wait for those without guessing.
            with self._printed:
                self._printed_seq = max(self._printed_seq, self._runtime.last_event_seq)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._rich_live is not None:
            self._stop.set()
            self._thread.join()
            self._rich_live.stop()  # draws the final tree, which stays on screen
            return
        # Every event published so far is printed before the caller goes on,
        # so the lines come before whatever it prints next.
        target = self._runtime.last_event_seq
        with self._printed:
            self._printed.wait_for(lambda: self._printed_seq >= target, timeout=5.0)
        if self._unsubscribe is not None:
            self._unsubscribe()

    def final_tree(self) -> list[str]:
        """The tree now, as plain lines (what a pipe gets at the end)."""
        return tree_lines(self._runtime.list_tasks(), self._runtime.get, self.runs)

    def print_final_tree(self, title: str) -> None:
        """Print ``title`` and the tree: with rich (no colours on a pipe) or plain."""
        if self.has_rich:
            from ._display_rich import print_tree

            print_tree(self._runtime, self.runs, self._out, title)
        else:
            self._write(title)
            for line in self.final_tree():
                self._write("  " + line)

    def _on_event(self, event: TaskEvent) -> None:
        holder = self._runtime.get(event.task_id)
        line = change_line(event, holder, self.runs, self._runtime.get)
        with self._printed:
            if line is not None:
                self._out.write(line + "\n")
                self._out.flush()
            self._printed_seq = max(self._printed_seq, event.seq)
            self._printed.notify_all()

    def _write(self, line: str) -> None:
        with self._write_lock:
            self._out.write(line + "\n")
            self._out.flush()

    def _loop(self) -> None:
        assert self._rich_live is not None
        while not self._stop.wait(self._interval):
            self._rich_live.refresh()

