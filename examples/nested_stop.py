"""A three-level tree of sub-agents, stopped from a host thread.

    python examples/nested_stop.py

The lead agent delegates to a manager, the manager to a team lead, the team
lead to a worker (nested delegation is allowed by removing "task" from their
``disallowed_tools``). Every level also runs a long ``crunch`` tool whose
``finally:`` block is its cleanup. Once all three levels are busy, a host
thread (think: the stop button of a web UI) stops the manager's task by id.
The stop reaches the whole subtree at once; each level's cleanup runs; the
lead agent gets a "cancelled" tool result and carries on. Offline: scripted
fake models, a few seconds at most.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from typing import Any

from langchain.agents import create_agent
from langchain_core.tools import tool

from subagent_exec import SubagentConfig, SubagentResult, SubagentRuntime, make_task_tool
from subagent_exec.testing import ScriptedChatModel, tool_call, tool_calls

LEVELS = ("manager", "team-lead", "worker")

busy = threading.Semaphore(0)  # released once per level whose crunch is running
cleaned: dict[str, float] = {}  # level -> when its cleanup ran
started = time.monotonic()


_print_lock = threading.Lock()  # levels log from their own threads


def log(text: str) -> None:
    with _print_lock:
        print(f"[{time.monotonic() - started:4.2f}s] {text}", flush=True)


@tool
async def crunch(level: str) -> str:
    """Crunch numbers for a long time."""
    log(f"{level}: crunching")
    busy.release()
    try:
        await asyncio.sleep(60)
        return "crunched"
    finally:
        await asyncio.shield(asyncio.sleep(0.05))  # e.g. close files, release a lock
        cleaned[level] = time.monotonic()
        log(f"{level}: cleanup ran")


def delegate_to(level: str) -> tuple[str, dict[str, Any]]:
    args = {
        "description": f"{level} work",
        "prompt": f"{level}: do your part",
        "subagent_type": level,
    }
    return ("task", args)


def build(runtime: SubagentRuntime) -> Any:
    """The lead agent: manager -> team-lead -> worker, each crunching meanwhile."""
    model = ScriptedChatModel(
        script={
            "manager:": [tool_calls(("crunch", {"level": "manager"}), delegate_to("team-lead"))],
            "team-lead:": [tool_calls(("crunch", {"level": "team-lead"}), delegate_to("worker"))],
            "worker:": [tool_call("crunch", {"level": "worker"})],
        },
        router=lambda messages: (
            tool_call(*delegate_to("manager"))
            if len(messages) == 2  # system + question: the lead's first turn
            else f"The manager's part did not finish: {messages[-1].text}"
        ),
        latency=0.1,
    )
    configs = [
        SubagentConfig(name=level, model=model, tools=["crunch", "task"], disallowed_tools=())
        for level in LEVELS[:2]
    ] + [SubagentConfig(name="worker", model=model, tools=["crunch"])]
    task = make_task_tool(configs, tools=[crunch], runtime=runtime)
    return create_agent(model, tools=[task], system_prompt="You run a project.")


def host_stop(runtime: SubagentRuntime) -> None:
    """The host thread: wait until every level is busy, then stop the root."""
    for _ in LEVELS:
        if not busy.acquire(timeout=10):
            log("host: the tree never got busy")
            return
    [root] = [h for h in runtime.list_tasks() if h.parent_id is None]
    log(f"host: stopping task {root.task_id[:8]} ({root.subagent_name}) and its subtree")
    runtime.request_cancel(root.task_id, "stopped by the operator")


def print_tree(runtime: SubagentRuntime) -> None:
    def show(holder: SubagentResult, indent: int) -> None:
        cleanup = "ran" if holder.subagent_name in cleaned else "did not run"
        print(
            f"{'  ' * indent}{holder.subagent_name:<10} {holder.status.value:<10} "
            f"cleanup: {cleanup:<12} reason: {holder.cancel_reason}"
        )
        for child_id in holder.children:
            child = runtime.get(child_id)
            if child is not None:
                show(child, indent + 1)

    for root in (h for h in runtime.list_tasks() if h.parent_id is None):
        show(root, 0)


def main(argv: list[str] | None = None) -> int:
    global busy, started
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    busy, started = threading.Semaphore(0), time.monotonic()
    cleaned.clear()
    with SubagentRuntime(max_workers=4) as runtime:
        agent = build(runtime)
        stopper = threading.Thread(target=host_stop, args=(runtime,), name="host")
        stopper.start()
        result = asyncio.run(agent.ainvoke({"messages": [("user", "Run the project.")]}))
        stopper.join()
        print()
        print_tree(runtime)
    print(f"\nlead agent: {result['messages'][-1].text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
