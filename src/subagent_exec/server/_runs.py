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

from .._checks import check_number
from .._config import SubagentConfig
from .._executor import SubagentExecutor
from .._runtime import SubagentRuntime
from ..demo_agents import DEMO_QUESTION, build_demo_lead_agent

#: The prompt of a demo run when the request does not give one.
DEFAULT_PROMPT = DEMO_QUESTION
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


def demo_run_starter(speed: float = 1.0) -> RunStarter:
    """A :class:`RunStarter` for the bundled demo lead agent (offline scripted
    models); ``speed`` scales its latencies (1.0: a run takes about 6 s)."""
    check_number("demo_run_starter", "speed", speed, positive=False)

    def start(runtime: SubagentRuntime, *, prompt: str, owner: str | None) -> str:
        def build_lead_graph() -> Any:
            # Called once per run, on the run's own loop (see SubagentConfig).
            return build_demo_lead_agent(runtime, speed=speed)

        config = SubagentConfig(
            name="lead-agent",
            description="the bundled demo lead agent",
            graph_factory=build_lead_graph,
            timeout_seconds=LEAD_TIMEOUT_SECONDS,
        )
        return SubagentExecutor(config, runtime=runtime).execute_async(prompt, owner=owner)

    return start


#: What ``POST /runs`` starts by default: the demo at its normal pace.
start_demo_run: RunStarter = demo_run_starter()
