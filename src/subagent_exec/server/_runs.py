"""``POST /runs``: how a lead agent run becomes a task.

A run of a lead agent is itself a root task of the runtime: the lead agent's
graph runs as a sub-agent built by ``SubagentConfig(graph_factory=...)``. Its
``task`` tool calls start children from inside that task's loop, so they get
the lead's task id as ``parent_id`` and inherit its owner. One id therefore
names the whole run: ``GET /tasks/{id}/events`` streams the run's tree, and
``POST /tasks/{id}/stop`` stops the lead agent and every sub-agent under it.
"""

from __future__ import annotations

from typing import Any, Protocol

from .._config import SubagentConfig
from .._executor import SubagentExecutor
from .._runtime import SubagentRuntime

#: The prompt of a demo run when the request does not give one.
DEFAULT_PROMPT = "Compare solid-state batteries and heat pumps for a short briefing."
#: The demo's lead agent may take a while (its sub-agents take several
#: seconds); the deadline is there so an abandoned demo run cannot live forever.
LEAD_TIMEOUT_SECONDS = 300.0


class RunStarter(Protocol):
    """Starts one lead agent run in the background and returns its root task id.

    Called on the server's event loop: it must return at once (start the work
    with ``SubagentExecutor.execute_async``, never wait for it). It may raise
    ``CapacityError`` / ``RuntimeClosedError`` (answered 503) or ``ValueError``
    (answered 400 with the message).
    """

    def __call__(self, runtime: SubagentRuntime, *, prompt: str, owner: str | None) -> str: ...


def start_demo_run(runtime: SubagentRuntime, *, prompt: str, owner: str | None) -> str:
    """Start the bundled demo lead agent (offline scripted models) as a root task."""

    def build_lead_graph() -> Any:
        # Called once per run on the run's own loop (see SubagentConfig).
        return _stand_in_lead_agent(runtime)

    config = SubagentConfig(
        name="lead-agent",
        description="the bundled demo lead agent",
        graph_factory=build_lead_graph,
        timeout_seconds=LEAD_TIMEOUT_SECONDS,
    )
    return SubagentExecutor(config, runtime=runtime).execute_async(prompt, owner=owner)


def _stand_in_lead_agent(runtime: SubagentRuntime) -> Any:  # TEMPORARY until demo_agents lands
    import asyncio

    from langchain.agents import create_agent
    from langchain_core.tools import tool

    from ..testing import ScriptedChatModel, tool_call, tool_calls

    @tool
    async def web_search(query: str) -> str:
        """Search."""
        await asyncio.sleep(2.0)
        return "results"

    researcher = SubagentConfig(
        name="researcher",
        model=lambda: ScriptedChatModel(
            script={"": [tool_call("web_search", {"query": "x"}), "found it"]}, latency=1.0
        ),
        tools=["web_search"],
        timeout_seconds=60,
    )

    @tool
    async def task(description: str, prompt: str, subagent_type: str) -> str:
        """Delegate."""
        holder = await SubagentExecutor(researcher, [web_search], runtime=runtime).aexecute(prompt)
        return holder.result or holder.status.value

    model = ScriptedChatModel(
        script={
            "": [
                tool_calls(
                    ("task", {"description": "a", "prompt": "one", "subagent_type": "r"}),
                    ("task", {"description": "b", "prompt": "two", "subagent_type": "r"}),
                ),
                "done",
            ]
        },
        latency=0.3,
    )
    return create_agent(model, tools=[task])
