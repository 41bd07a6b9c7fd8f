"""The offline demo (``make demo`` / ``python -m subagent_exec.demo``).

Several sub-agents run in parallel under one runtime, each on its own event
loop: scripted fake models (no API key, no network) whose calls really await,
tools that take a while, one sub-agent stopped mid-way by the "host", one that
overruns its deadline. The tree is shown live, then the final statuses and
timings, and what each stopped tool's cleanup did.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time

from langchain_core.tools import tool

from ._config import SubagentConfig
from ._display import LiveTree, elapsed, status_label
from ._executor import SubagentExecutor
from ._runtime import SubagentRuntime
from .testing import ScriptedChatModel, tool_call

#: What each tool's ``finally:`` did, so the demo can show cleanup really ran.
cleanup_log: list[str] = []
_cleanup_lock = threading.Lock()


def _cleaned(what: str) -> None:
    with _cleanup_lock:
        cleanup_log.append(what)


@tool
async def web_search(query: str) -> str:
    """Search the web (simulated: takes a second)."""
    try:
        await asyncio.sleep(1.0)
        return f"3 sources about {query!r}"
    finally:
        _cleaned(f"web_search({query!r}) closed its connection")


@tool
async def crunch_numbers(dataset: str) -> str:
    """Analyse a large dataset (simulated: takes 20 seconds)."""
    try:
        await asyncio.sleep(20.0)
        return f"analysis of {dataset}"
    finally:
        _cleaned(f"crunch_numbers({dataset!r}) released its scratch space")


def _model(speed: float) -> ScriptedChatModel:
    return ScriptedChatModel(
        script={
            "battery": [
                tool_call("web_search", {"query": "solid-state battery 2026"}),
                "Solid-state cells reached 500 Wh/kg in pilot lines.",
            ],
            "heat pumps": [
                tool_call("web_search", {"query": "heat pump adoption"}),
                tool_call("web_search", {"query": "heat pump cold climate"}),
                "Heat pumps outsold gas boilers in 9 EU countries.",
            ],
            "summary": ["A crisp three-line summary of the findings."],
            "census": [tool_call("crunch_numbers", {"dataset": "census-2025"}), "done"],
            "archive": [tool_call("crunch_numbers", {"dataset": "archive-1990s"}), "done"],
        },
        latency=speed,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stop-after", type=float, default=1.5, help="seconds before the stop")
    args = parser.parse_args(argv)

    tools = [web_search, crunch_numbers]
    researcher = SubagentConfig(
        name="researcher", model=lambda: _model(0.3), tools=["web_search"], timeout_seconds=30
    )
    writer = SubagentConfig(name="writer", model=lambda: _model(0.6), tools=[])
    analyst = SubagentConfig(
        name="analyst", model=lambda: _model(0.2), tools=["crunch_numbers"], timeout_seconds=30
    )
    hasty = SubagentConfig(
        name="hasty-analyst", model=lambda: _model(0.2), tools=["crunch_numbers"],
        timeout_seconds=2.5,
    )
    print("subagent-exec demo: 5 sub-agents, 4 workers, each on its own event loop\n")
    started = time.perf_counter()
    with SubagentRuntime(max_workers=4) as runtime:
        ids = {}
        with LiveTree(runtime):
            for label, config, task in [
                ("battery", researcher, "Research battery chemistry"),
                ("heat", researcher, "Research heat pumps in Europe"),
                ("census", analyst, "Analyse the census data"),
                ("archive", hasty, "Analyse the archive data"),
                ("summary", writer, "Write the summary"),
            ]:
                ids[label] = SubagentExecutor(config, tools, runtime=runtime).execute_async(task)
            time.sleep(args.stop_after)
            stop_at = time.perf_counter()
            runtime.request_cancel(ids["census"], "the user pressed Stop")
            runtime.get(ids["census"]).wait()  # type: ignore[union-attr]
            stop_latency = time.perf_counter() - stop_at
            for task_id in ids.values():
                runtime.get(task_id).wait()  # type: ignore[union-attr]
        total = time.perf_counter() - started
        print("\nFinal statuses")
        for task_id in ids.values():
            h = runtime.get(task_id)
            assert h is not None
            outcome = h.result if h.result else (h.cancel_reason or h.error or "")
            print(f"  {h.subagent_name:<14} {status_label(h):<10} {elapsed(h)}  {outcome}")
        print(f"\nStop request -> CANCELLED (cleanup included): {stop_latency * 1000:.1f} ms")
        print(f"Wall time for all five: {total:.2f} s (they ran in parallel)")
        print("Cleanup that ran in stopped tools:")
        for line in cleanup_log:
            if "crunch" in line:
                print(f"  - {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
