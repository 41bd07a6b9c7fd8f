"""The demo's terminal view: what a line says, the rich tree, piped lines, the
fallback without rich, and chip colours that match the run page's."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable
from importlib import resources

import pytest
from rich.console import Console

from subagent_exec import SubagentConfig, SubagentExecutor, SubagentResult, SubagentRuntime
from subagent_exec._display import RICH_HINT, LiveTree
from subagent_exec._display_rich import BASIC_COLOURS, render_runs
from subagent_exec._display_text import (
    STATUS_COLOURS,
    RunLabels,
    detail_of,
    excerpt,
    format_elapsed,
    name_task_ids,
    short_id,
    tree_lines,
)
from subagent_exec.demo_agents import build_demo_lead_agent

from .helpers import wait_until

LINE = re.compile(
    r"^\d\d:\d\d:\d\d\.\d{3} (run [A-Z]) · ([a-z-]+) #([0-9a-f]{8}) · "
    r"(pending|running|stopping|completed|cancelled|failed|timed out)"
)


def holder(
    task_id: str, name: str, parent_id: str | None = None, task: str = "t"
) -> SubagentResult:
    return SubagentResult(
        task_id=task_id, subagent_name=name, task=task, trace_id="trace", parent_id=parent_id
    )


# -- words -------------------------------------------------------------------------------


def test_task_ids_in_text_become_name_and_short_id() -> None:
    lead = holder("a" * 32, "lead-agent")
    known = {lead.task_id: lead}
    reason = f"ancestor {'a' * 32} (lead-agent) was cancelled: the user pressed Stop"
    assert name_task_ids(reason, known.get) == (
        "ancestor lead-agent #aaaaaaaa was cancelled: the user pressed Stop"
    )
    # Unknown (cleaned-up) ids are still shortened; a bracket that says more is kept.
    assert name_task_ids(f"task {'b' * 32} failed", known.get) == "task #bbbbbbbb failed"
    assert name_task_ids(f"{'b' * 32} (writer) ended", known.get) == "writer #bbbbbbbb ended"
    assert name_task_ids(f"{'a' * 32} (the lead) ended", known.get) == (
        "lead-agent #aaaaaaaa (the lead) ended"
    )
    # Only whole 32-hex words are ids.
    assert name_task_ids("x" + "a" * 32, known.get) == "x" + "a" * 32
    assert short_id("0123456789abcdef" * 2) == "01234567"


def test_unfinished_tasks_show_their_prompt_but_a_run_root_does_not_repeat_its_label() -> None:
    root = holder("a" * 32, "lead-agent", task="Compare two things.")
    child = holder("c" * 32, "researcher", parent_id=root.task_id, task=f"Ask {'a' * 32}")
    known = {h.task_id: h for h in (root, child)}
    assert detail_of(root, known.get) == ""
    assert detail_of(child, known.get) == "Ask lead-agent #aaaaaaaa"
    assert tree_lines([root, child], known.get)[0].startswith("run A: Compare two things.")


def test_excerpt_and_elapsed_read_like_the_page() -> None:
    assert excerpt("one\n  two\tthree", 40) == "one two three"
    assert excerpt("abcdefghij", 5) == "abcd…"
    assert excerpt(None, 5) == ""
    assert format_elapsed(None) == ""
    assert format_elapsed(2.345) == "2.3 s"
    assert format_elapsed(65.2) == "1 m 05 s"


def test_runs_are_lettered_in_order_and_children_find_their_run() -> None:
    a, b = holder("a" * 32, "lead-agent"), holder("b" * 32, "lead-agent")
    child = holder("c" * 32, "researcher", parent_id=a.task_id)
    grandchild = holder("d" * 32, "fact-checker", parent_id=child.task_id)
    orphan = holder("e" * 32, "writer", parent_id="f" * 32)  # its parent was cleaned up
    known = {h.task_id: h for h in (a, b, child, grandchild, orphan)}
    runs = RunLabels(known.get)
    assert runs.of(a) == "run A" and runs.of(b) == "run B"
    assert runs.of(grandchild) == "run A"
    assert runs.of(orphan) == "run C", "the topmost task still known stands for its run"
    assert runs.label(b.task_id) == "run B", "a letter, once given, stays"


def test_terminal_chip_colours_are_the_run_pages() -> None:
    css = (resources.files("subagent_exec.server") / "static" / "app.css").read_text()
    variables = dict(re.findall(r"--([a-z]+):\s*(#[0-9a-fA-F]{3,6})", css))

    def resolve(value: str) -> str:
        value = value.strip()
        found = re.fullmatch(r"var\(--([a-z]+)\)", value)
        value = variables[found[1]] if found else value
        if len(value) == 4:  # #fff -> #ffffff
            value = "#" + "".join(c * 2 for c in value[1:])
        return value.lower()

    rules = dict(re.findall(r'\.chip\[data-status="([a-z_]+)"\]\s*\{([^}]*)\}', css))
    assert set(rules) == set(STATUS_COLOURS)
    for status, body in rules.items():
        props = dict(
            (k.strip(), v) for k, v in (p.split(":", 1) for p in body.split(";") if ":" in p)
        )
        colour, background = STATUS_COLOURS[status]
        assert resolve(props["color"]) == colour, status
        page_background = resolve(props["background"])
        # White on the page = the terminal's own background.
        assert (background or "#ffffff") == page_background, status


# -- a real runtime with two runs: A completes, B is stopped -----------------------------


def run_two(runtime: SubagentRuntime) -> tuple[SubagentResult, SubagentResult]:
    def lead(speed: float) -> SubagentConfig:
        return SubagentConfig(
            name="lead-agent", graph_factory=lambda: build_demo_lead_agent(runtime, speed=speed)
        )

    run_a = SubagentExecutor(lead(0.0), runtime=runtime).execute_async("Compare two things.")
    run_b = SubagentExecutor(lead(1.0), runtime=runtime).execute_async("Summarise storage.")
    root_a, root_b = runtime.get(run_a), runtime.get(run_b)
    assert root_a is not None and root_b is not None
    def researchers_delegated() -> bool:
        kids = [runtime.get(c) for c in root_b.children]
        return len(kids) == 2 and all(k is not None and k.children for k in kids)

    assert wait_until(researchers_delegated), "run B's tree is three levels deep"
    assert runtime.request_cancel(run_b, "the user pressed Stop")
    assert root_a.wait(30) and root_b.wait(30)
    for task in runtime.list_tasks():
        assert task.wait(30)
    return root_a, root_b


@pytest.fixture
def rt(make_runtime: Callable[..., SubagentRuntime]) -> SubagentRuntime:
    return make_runtime(max_workers=8, name="display")


def test_rich_tree_labels_runs_and_names_tasks(rt: SubagentRuntime) -> None:
    root_a, root_b = run_two(rt)
    runs = RunLabels(rt.get)
    console = Console(
        file=io.StringIO(), record=True, width=140, force_terminal=True, color_system="truecolor"
    )
    console.print(render_runs(rt.list_tasks(), rt.get, runs))
    text = console.export_text(styles=False)
    assert re.search(r"run A: Compare two things\. · started \d\d:\d\d:\d\d", text), text
    assert re.search(r"run B: Summarise storage\. · started \d\d:\d\d:\d\d", text), text
    assert f"completed  lead-agent #{short_id(root_a.task_id)}" in text, text
    assert f"cancelled  lead-agent #{short_id(root_b.task_id)}" in text, text
    assert "→ Here is the briefing." in text
    # Descendants of B say which ancestor stopped them, by name and short id.
    stopped = f"ancestor lead-agent #{short_id(root_b.task_id)} was cancelled"
    assert text.count(stopped) == len(rt.list_tasks()) - 1 - 6, text  # run A has 6 tasks
    assert not re.search(r"[0-9a-f]{32}", text), "no 32-hex ids"
    assert re.search(r"researcher #[0-9a-f]{8}  \d+\.\d s", text), "elapsed times"
    lines = text.splitlines()
    assert all(len(line) <= 140 for line in lines), "lines are cut to the width, not wrapped"
    # The tree: B's fact-checkers sit under its researchers, under its lead.
    b_start = next(i for i, line in enumerate(lines) if line.startswith("run B"))
    assert re.match(r"^└── .*lead-agent", lines[b_start + 1])
    assert re.match(r"^    [├└]── .*researcher", lines[b_start + 2])
    assert re.match(r"^    [│ ]   └── .*fact-checker", lines[b_start + 3])


def chip_styles(console: Console, renderable: object) -> dict[str, tuple[str, str]]:
    found = {}
    for segment in console.render(renderable):  # type: ignore[arg-type]
        word = segment.text.strip()
        style = segment.style
        if word in ("completed", "cancelled") and style is not None and style.bgcolor:
            found[word] = (style.color.name, style.bgcolor.name)  # type: ignore[union-attr]
    return found


def test_rich_chips_use_the_page_colours_or_named_ones_on_16_colours(rt: SubagentRuntime) -> None:
    run_two(rt)
    truecolor = Console(file=io.StringIO(), width=140, color_system="truecolor")
    styles = chip_styles(truecolor, render_runs(rt.list_tasks(), rt.get, RunLabels(rt.get)))
    assert styles == {"completed": ("#ffffff", "#1a7f37"), "cancelled": ("#57606a", "#eaeef2")}
    # 16 colours: rich's nearest colour for the page's dark green is grey, the
    # same as "cancelled"; named colours keep them apart.
    basic = render_runs(rt.list_tasks(), rt.get, RunLabels(rt.get), basic=True)
    styles = chip_styles(truecolor, basic)
    assert styles["completed"] == BASIC_COLOURS["completed"]
    assert styles["completed"][1] != styles["cancelled"][1]


def test_piped_view_prints_one_self_explaining_line_per_change(rt: SubagentRuntime) -> None:
    out = io.StringIO()
    with LiveTree(rt, out, use_rich=True) as live:
        assert not live.redraws_in_place
        root_a, root_b = run_two(rt)
    lines = out.getvalue().splitlines()
    assert RICH_HINT not in lines
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), [line for line, m in zip(lines, parsed, strict=True) if not m]
    by_task: dict[str, list[str]] = {}
    for m in parsed:
        assert m is not None
        by_task.setdefault(m[3], []).append(m[4])
    tasks = rt.list_tasks()
    assert set(by_task) == {short_id(t.task_id) for t in tasks}, "every task, every change"
    for t in tasks:
        seen = by_task[short_id(t.task_id)]
        assert seen[0] == "pending" and seen[-1] == t.status.value.replace("_", " "), seen
        assert len(seen) == len(set(seen)), "one line per change, no repeats"
    runs = {m[3]: m[1] for m in parsed if m is not None}
    assert runs[short_id(root_a.task_id)] == "run A" and runs[short_id(root_b.task_id)] == "run B"
    for t in tasks:  # every task's lines name its own run
        assert runs[short_id(t.task_id)] == live.runs.of(t)
    text = out.getvalue()
    assert f'lead-agent #{short_id(root_a.task_id)} · pending · new run: "Compare two things."' in (
        text
    )
    assert re.search(r"researcher #\w{8} · pending · asked by lead-agent #\w{8}: \"Research", text)
    assert re.search(r"writer #\w{8} · completed after \d+\.\d s: \"Briefing\.", text)
    assert (
        f"lead-agent #{short_id(root_b.task_id)} · cancelled after" in text
        and f"ancestor lead-agent #{short_id(root_b.task_id)} was cancelled: the user" in text
    )
    assert not re.search(r"[0-9a-f]{32}", text)


def test_piped_view_on_a_busy_runtime_ends_without_waiting(rt: SubagentRuntime) -> None:
    run_two(rt)  # events published before the view subscribed
    out = io.StringIO()
    started = time.perf_counter()
    with LiveTree(rt, out, use_rich=True):
        pass
    assert time.perf_counter() - started < 1.0, "nothing to wait for"
    assert out.getvalue() == ""


def test_terminal_view_redraws_a_rich_tree(
    rt: SubagentRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")  # what rich reads to pick colours
    monkeypatch.setenv("COLORTERM", "truecolor")
    monkeypatch.delenv("NO_COLOR", raising=False)
    out = io.StringIO()
    with LiveTree(rt, out, interval=0.05, use_rich=True, force_terminal=True, width=120) as live:
        assert live.redraws_in_place
        run_two(rt)
    raw = out.getvalue()
    assert "\x1b[1A" in raw and "\x1b[2K" in raw, "earlier frames are erased (redrawn in place)"
    assert "\x1b[38;2;" in raw, "truecolour chips"
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw)
    assert RICH_HINT not in text
    final = text[text.rindex("run A:"):]  # the last frame stays on screen
    assert "run B:" in final and "cancelled" in final and "completed" in final
    assert text.count("run A:") > 2, "drawn several times while the runs went on"


def test_without_rich_lines_and_a_plain_tree_with_a_hint(rt: SubagentRuntime) -> None:
    out = io.StringIO()
    with LiveTree(rt, out, use_rich=False, force_terminal=True) as live:
        assert not live.redraws_in_place, "no rich: lines even on a terminal"
        root_a, _ = run_two(rt)
    live.print_final_tree("Final statuses")
    lines = out.getvalue().splitlines()
    assert lines[0] == RICH_HINT
    assert all(LINE.match(line) for line in lines[1 : lines.index("Final statuses")])
    tree = lines[lines.index("Final statuses") + 1 :]
    assert tree == ["  " + line for line in tree_lines(rt.list_tasks(), rt.get, live.runs)]
    assert re.match(r"  run A: Compare two things\. · started \d\d:\d\d:\d\d$", tree[0])
    assert tree[1].startswith(f"  └─ lead-agent #{short_id(root_a.task_id)}  completed ")
    assert "\x1b[" not in out.getvalue()


def test_live_tree_checks_its_arguments(rt: SubagentRuntime) -> None:
    with pytest.raises(TypeError, match="runtime must be a SubagentRuntime"):
        LiveTree("runtime")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"LiveTree.interval must be a number > 0, got 0"):
        LiveTree(rt, interval=0)
    with pytest.raises(TypeError, match=r"LiveTree.interval must be a number > 0, got '1'"):
        LiveTree(rt, interval="1")  # type: ignore[arg-type]
