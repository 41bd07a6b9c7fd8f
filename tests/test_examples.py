"""The examples and the bundled demo lead agent keep working (offline, fast)."""

from __future__ import annotations

import asyncio
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

from subagent_exec import SubagentRuntime, SubagentStatus
from subagent_exec.demo_agents import DEMO_QUESTION, build_demo_lead_agent

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses/pydantic look modules up by name
    spec.loader.exec_module(module)
    return module


def test_quickstart_runs_offline(capsys: pytest.CaptureFixture[str]) -> None:
    assert load_example("quickstart").main([]) == 0
    out = capsys.readouterr().out
    for sub_agent in ("researcher", "writer"):
        assert re.search(rf"task_started\s+{sub_agent}", out)
        assert re.search(rf"task_completed\s+{sub_agent}", out)
    assert "Three facts:\n1. The Moon" in out and "borrowing the sun's old light." in out


def test_nested_stop_stops_all_three_levels_after_their_cleanup(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert load_example("nested_stop").main([]) == 0
    out = capsys.readouterr().out
    tree = [line for line in out.splitlines() if "cleanup: " in line]
    assert len(tree) == 3
    for line, level in zip(tree, ("manager", "team-lead", "worker"), strict=True):
        assert line.strip().startswith(level)
        assert " cancelled " in line and "cleanup: ran" in line
    assert "lead agent: The manager's part did not finish" in out
    assert "was cancelled: stopped by the operator" in out


def test_demo_lead_agent_delegates_in_parallel_and_nests(runtime: SubagentRuntime) -> None:
    events: list[dict[str, object]] = []
    agent = build_demo_lead_agent(runtime, speed=0.0, on_event=events.append)
    result = asyncio.run(agent.ainvoke({"messages": [("user", DEMO_QUESTION)]}))

    assert result["messages"][-1].text.startswith("Here is the briefing.")
    tasks = runtime.list_tasks()
    names = sorted((t.depth, t.subagent_name) for t in tasks)
    assert names == [
        (1, "researcher"),
        (1, "researcher"),
        (1, "writer"),
        (2, "fact-checker"),
        (2, "fact-checker"),
    ]
    assert all(t.status is SubagentStatus.COMPLETED for t in tasks)
    assert "verified against 3 sources" in (tasks[0].result or "")
    # The tool is shared by every level, so its listener sees the whole tree.
    finished = {e["task_id"]: e["parent_id"] for e in events if e["type"] == "task_completed"}
    assert finished == {t.task_id: t.parent_id for t in tasks}


def test_demo_speed_must_be_a_non_negative_number() -> None:
    with pytest.raises(ValueError, match="speed must be a number >= 0"):
        build_demo_lead_agent(speed=-1)


def test_background_example_runs_offline(capsys: pytest.CaptureFixture[str]) -> None:
    assert load_example("background").main([]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()

    def first(text: str) -> int:
        return next(i for i, line in enumerate(lines) if text in line)

    assert out.count("lead: start_task(") == 3
    # The lead answers the user before any researcher has reported.
    answered = first("lead → user: Two researchers are on it")
    pushes = [i for i, line in enumerate(lines) if "pushed to lead: background task" in line]
    assert len(pushes) == 2 and answered < min(pushes)
    assert any("(researcher: heat pumps) completed: Heat pumps" in lines[i] for i in pushes)
    # Steered before it finished: it read the follow-up, and its answer shows it.
    assert first("reads the follow-up: Focus on the cost per kWh") < first(
        "(researcher: solid-state batteries) completed"
    )
    assert re.search(r"\(researcher: fusion startups\) cancelled: out of scope", out)
    assert "fusion startups) completed" not in out
    brief = out[out.index("Final brief:"):]
    assert "Heat pumps: 3-4x" in brief and "$400/kWh" in brief
