"""Scenario 5: hand-back latency, from a child's terminal status to the lead
agent having the result in hand.

The lead agent is a real ``create_agent`` agent (ScriptedChatModel) with the
``task`` tool of :func:`subagent_exec.make_task_tool`; its first turn
delegates to a child sub-agent (one LangGraph step awaiting 20 ms), its
second turn answers. Figures:

* child terminal -> ``task`` tool returns: from the child's ``completed_at``
  (written by the child's worker thread) to the tool's ``on_tool_end``
  callback in the lead's loop. This is the issue's figure; the tool is woken
  by the terminal transition itself (no polling).
* child terminal -> lead model called again: adds LangGraph's step from the
  tool node back to the model (context, no target).
* child terminal -> ``runtime.wait_terminal`` returns: the bare engine
  primitive the tool is built on, awaited from a plain loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from langchain.agents import create_agent
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from subagent_exec import (
    SubagentConfig,
    SubagentExecutor,
    SubagentRuntime,
    SubagentStatus,
    make_task_tool,
)
from subagent_exec.testing import ScriptedChatModel, tool_call

from ..agents import sleep_graph
from ..core import Figure, Options, ScenarioResult, Target, ms

NAME = "handback"
TITLE = "5. hand-back to the lead"

CHILD_SECONDS = 0.02


def run(options: Options) -> ScenarioResult:
    trials = 30 if options.quick else 300
    result = ScenarioResult(
        NAME, TITLE, params={"trials": trials, "child_await_seconds": CHILD_SECONDS}
    )
    child = SubagentConfig(
        name="child", description="does a short job", graph_factory=sleep_graph(CHILD_SECONDS)
    )
    with SubagentRuntime(max_workers=4, name="bench-handback") as runtime:
        tool_samples, model_samples, tool_wrong = asyncio.run(
            _through_task_tool(runtime, child, trials)
        )
        executor = SubagentExecutor(child, runtime=runtime)
        wait_samples, wait_wrong = asyncio.run(_through_wait_terminal(runtime, executor, trials))

    result.add(
        Figure(
            "child terminal -> task tool returns",
            "ms",
            samples=tool_samples,
            target=Target("p99", "<", 5.0),
            note="lead = create_agent + make_task_tool; on_tool_end in the lead loop",
        )
    )
    result.add(
        Figure(
            "child terminal -> lead model called again",
            "ms",
            samples=model_samples,
            note="includes LangGraph's step from the tool node back to the model",
        )
    )
    result.add(
        Figure(
            "child terminal -> runtime.wait_terminal returns",
            "ms",
            samples=wait_samples,
            target=Target("p99", "<", 5.0),
            note="the engine primitive the task tool awaits",
        )
    )
    result.add(
        Figure(
            "children not COMPLETED",
            "count",
            value=float(tool_wrong + wait_wrong),
            target=Target("value", "==", 0),
        )
    )
    return result


class _ToolEnd(BaseCallbackHandler):
    """Records when the ``task`` tool returned, and for which child."""

    run_inline = True

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.returned: dict[str, float] = {}

    def on_tool_end(self, output: Any, **kwargs: Any) -> None:
        stamp = time.time()
        if isinstance(output, ToolMessage) and output.name == "task":
            artifact = output.artifact if isinstance(output.artifact, dict) else {}
            task_id = artifact.get("task_id")
            if isinstance(task_id, str):
                with self.lock:
                    self.returned[task_id] = stamp


async def _through_task_tool(
    runtime: SubagentRuntime, child: SubagentConfig, trials: int
) -> tuple[list[float], list[float], int]:
    resumed: dict[str, float] = {}  # lead task text -> time of the lead's second model call

    def lead_reply(messages: list[BaseMessage]) -> str | AIMessage:
        lead_task = str(next(m for m in messages if isinstance(m, HumanMessage)).text)
        if any(isinstance(m, ToolMessage) for m in messages):
            resumed[lead_task] = time.time()
            return "the child is done"
        return tool_call(
            "task",
            {
                "description": "short job",
                "prompt": f"child of {lead_task}",
                "subagent_type": "child",
            },
        )

    task_tool = make_task_tool([child], runtime=runtime)
    lead = create_agent(ScriptedChatModel(router=lead_reply), tools=[task_tool])
    handler = _ToolEnd()
    to_tool: list[float] = []
    to_model: list[float] = []
    wrong = 0
    for trial in range(trials):
        lead_task = f"lead-{trial}"
        state = await lead.ainvoke(
            {"messages": [HumanMessage(content=lead_task)]}, config={"callbacks": [handler]}
        )
        tool_message = next(m for m in state["messages"] if isinstance(m, ToolMessage))
        task_id = tool_message.artifact["task_id"]
        holder = runtime.get(task_id)
        assert holder is not None and holder.completed_at is not None
        finished = holder.completed_at.timestamp()
        to_tool.append(ms(handler.returned[task_id] - finished))
        to_model.append(ms(resumed[lead_task] - finished))
        wrong += holder.status is not SubagentStatus.COMPLETED
        runtime.cleanup(task_id)
    return to_tool, to_model, wrong


async def _through_wait_terminal(
    runtime: SubagentRuntime, executor: SubagentExecutor, trials: int
) -> tuple[list[float], int]:
    samples: list[float] = []
    wrong = 0
    for trial in range(trials):
        task_id = executor.execute_async(f"handback-{trial}")
        holder = await runtime.wait_terminal(task_id)
        returned = time.time()
        assert holder.completed_at is not None
        samples.append(ms(returned - holder.completed_at.timestamp()))
        wrong += holder.status is not SubagentStatus.COMPLETED
        runtime.cleanup(task_id)
    return samples, wrong
