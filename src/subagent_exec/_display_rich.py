"""The demo's task tree drawn with ``rich`` (the ``demo`` extra).

One tree per run, headed ``run A: <prompt excerpt> · started 14:03:05``; one
line per task: a status chip in the run page's colours, the sub-agent's name
and short id, the elapsed time, and its answer, error or stop reason (or, while
it works, what it was asked). Lines are cut with an ellipsis to the terminal's
width, so the tree never wraps into an unreadable block while it is redrawn.
Only imported when ``rich`` is installed (see :mod:`subagent_exec._display`);
the words are :mod:`subagent_exec._display_text`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.style import Style
from rich.text import Text
from rich.tree import Tree

from ._display_text import (
    LABELS,
    STATUS_COLOURS,
    Lookup,
    RunLabels,
    clock,
    detail_of,
    excerpt,
    format_elapsed,
    short_id,
    status_key,
)
from ._result import SubagentResult
from ._runtime import SubagentRuntime

#: Chips are padded to one width, so names line up under each other.
CHIP_WIDTH = max(len(word) for word in LABELS.values()) + 2
_GUIDES = Style(color="#8c959f")
#: On a 16-colour terminal rich would turn the page's dark green into grey (the
#: nearest of 16), making "completed" look like "cancelled": name the colours.
BASIC_COLOURS: dict[str, tuple[str, str | None]] = {
    **STATUS_COLOURS,
    "running": ("bright_white", "blue"),
    "completed": ("bright_white", "green"),
    "failed": ("bright_white", "red"),
    "timed_out": ("black", "yellow"),
}


def chip(status: str, *, basic: bool = False) -> Text:
    """`` running `` in the page's chip colours (bold on a coloured background);
    ``basic``: the nearest named colours, for a 16-colour terminal."""
    colour, background = (BASIC_COLOURS if basic else STATUS_COLOURS)[status]
    style = Style(color=colour, bgcolor=background, bold=background is not None)
    return Text(LABELS[status].center(CHIP_WIDTH), style=style)


def task_label(holder: SubagentResult, lookup: Lookup, *, basic: bool = False) -> Text:
    """One tree node: chip, name, short id, elapsed time, detail (one line)."""
    line = Text(no_wrap=True, overflow="ellipsis")
    line.append_text(chip(status_key(holder), basic=basic))
    line.append(" ")
    line.append(holder.subagent_name, style="bold")
    line.append(f" #{short_id(holder.task_id)}", style="dim")
    elapsed = format_elapsed(holder.duration_seconds)
    if elapsed:
        line.append(f"  {elapsed}", style="cyan")
    detail = excerpt(detail_of(holder, lookup), 400)
    if detail:
        line.append(f"  {detail}", style="dim")
    return line


def run_label(root: SubagentResult, runs: RunLabels) -> Text:
    """``run A: <prompt excerpt> · started 14:03:05``."""
    line = Text(no_wrap=True, overflow="ellipsis")
    line.append(runs.label(root.task_id), style="bold")
    line.append(": ")
    line.append(excerpt(root.task, 90), style="italic")
    line.append(f" · started {clock(root.started_at or root.created_at)}", style="dim")
    return line


def render_runs(
    tasks: Iterable[SubagentResult], lookup: Lookup, runs: RunLabels, *, basic: bool = False
) -> Group:
    """Every run as a tree, oldest first (``basic``: for a 16-colour terminal)."""
    tasks = list(tasks)
    known = {t.task_id for t in tasks}
    children: dict[str | None, list[SubagentResult]] = {}
    for t in tasks:
        children.setdefault(t.parent_id if t.parent_id in known else None, []).append(t)

    def grow(node: Tree, parent: SubagentResult) -> None:
        for child in children.get(parent.task_id, []):
            grow(node.add(task_label(child, lookup, basic=basic), guide_style=_GUIDES), child)

    trees: list[RenderableType] = []
    for root in children.get(None, []):
        tree = Tree(run_label(root, runs), guide_style=_GUIDES)
        grow(tree.add(task_label(root, lookup, basic=basic), guide_style=_GUIDES), root)
        trees.append(tree)
    if not trees:
        trees.append(Text("no tasks yet", style="dim"))
    return Group(*trees)


def make_console(out: TextIO, *, force_terminal: bool | None = None,
                 width: int | None = None) -> Console:
    return Console(file=out, force_terminal=force_terminal, width=width, highlight=False)


def is_basic(console: Console) -> bool:
    """True on a 16-colour terminal (see :data:`BASIC_COLOURS`)."""
    return console.color_system == "standard"


class RichLiveTree:
    """The tree redrawn in place (``rich.live.Live``), refreshed by the caller."""

    def __init__(
        self,
        runtime: SubagentRuntime,
        runs: RunLabels,
        out: TextIO,
        *,
        force_terminal: bool | None = None,
        width: int | None = None,
    ) -> None:
        self._runtime = runtime
        self._runs = runs
        self.console = make_console(out, force_terminal=force_terminal, width=width)
        # Our own thread refreshes (LiveTree._loop); the final tree stays on screen.
        self._live = Live(
            self._render(), console=self.console, auto_refresh=False, transient=False
        )

    def _render(self) -> Group:
        return render_runs(
            self._runtime.list_tasks(), self._runtime.get, self._runs,
            basic=is_basic(self.console),
        )

    def start(self) -> None:
        self._live.start(refresh=True)

    def refresh(self) -> None:
        self._live.update(self._render(), refresh=True)

    def stop(self) -> None:
        self.refresh()
        self._live.stop()


def print_tree(runtime: SubagentRuntime, runs: RunLabels, out: TextIO, title: str) -> None:
    """Print ``title`` and the tree once (colours only on a terminal)."""
    console = make_console(out)
    if not console.is_terminal:
        console.width = max(console.width, 120)  # a log line may be long: rich assumes 80
    console.print(title)
    console.print(render_runs(runtime.list_tasks(), runtime.get, runs, basic=is_basic(console)))
