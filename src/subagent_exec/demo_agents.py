"""The bundled offline demo: a lead agent that delegates to sub-agents.

Deterministic and offline (scripted fake models, see :mod:`subagent_exec.testing`),
with latencies that make one run take a few seconds, so that progress
displays and stops have something to show. Used by ``make demo``, the HTTP
server's demo run and the benchmarks.

The tree of one run, for the default question::

    lead-agent
    ├── researcher  "how it works"        (web_search, then delegates:)
    │   └── fact-checker                  (web_search)
    ├── researcher  "costs and adoption"  (web_search, then delegates:)
    │   └── fact-checker                  (web_search)
    └── writer      (after both researchers answered)

``speed`` scales every latency: 1.0 takes about 6 s, 0.0 runs as fast as
the machinery allows (benchmarks, tests).
"""

from __future__ import annotations

import asyncio
from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import BaseTool, tool

from ._checks import check_number
from ._config import SubagentConfig
from ._middleware import SubagentMiddleware
from ._runtime import SubagentRuntime
from ._task_tool import EventListener
from .testing import ScriptedChatModel, tool_call, tool_calls

__all__ = ["DEMO_QUESTION", "build_demo_lead_agent", "demo_subagents", "demo_tools"]

DEMO_QUESTION = "Compare solid-state batteries and heat pumps for a short briefing."

#: What each researcher covers; one researcher per aspect, in parallel.
ASPECTS = ("how it works", "costs and adoption")

MODEL_SECONDS = 0.6  # one model call, at speed 1.0
SEARCH_SECONDS = 1.0  # one web_search call, at speed 1.0


def demo_tools(*, speed: float = 1.0) -> list[BaseTool]:
    """The tools the demo's sub-agents use (a canned, slow ``web_search``)."""

    @tool
    async def web_search(query: str) -> str:
        """Search the web and return the most relevant snippets."""
        await asyncio.sleep(SEARCH_SECONDS * speed)
        return (
            f"3 sources on {query!r}: an overview article, a 2024 market report, "
            "and a review paper agreeing on the main points."
        )

    return [web_search]


def demo_subagents(*, speed: float = 1.0) -> list[SubagentConfig]:
    """The demo's sub-agent types: researcher (may delegate), fact-checker, writer."""
    latency = MODEL_SECONDS * speed
    return [
        SubagentConfig(
            name="researcher",
            description="Researches one aspect of a question; may hand claims to a fact-checker.",
            system_prompt="You research one aspect of a question and report findings.",
            model=ScriptedChatModel(router=_researcher, latency=latency),
            tools=["web_search", "task"],
            disallowed_tools=(),  # researchers may delegate to fact-checkers
            timeout_seconds=120.0,
        ),
        SubagentConfig(
            name="fact-checker",
            description="Checks one claim against sources and says whether it holds.",
            system_prompt="You check one claim and answer with a verdict.",
            model=ScriptedChatModel(router=_fact_checker, latency=latency),
            tools=["web_search"],
            timeout_seconds=60.0,
        ),
        SubagentConfig(
            name="writer",
            description="Writes a short briefing from findings it is given.",
            system_prompt="You write short, clear briefings.",
            model=ScriptedChatModel(router=_writer, latency=latency),
            tools=[],
            timeout_seconds=60.0,
        ),
    ]


def build_demo_lead_agent(
    runtime: SubagentRuntime | None = None,
    *,
    speed: float = 1.0,
    on_event: EventListener | None = None,
) -> Any:
    """A compiled ``create_agent`` graph: the demo's lead agent.

    Invoke it with ``{"messages": [("user", question)]}`` (any question; the
    scripted lead splits it into :data:`ASPECTS`). ``runtime`` defaults to
    the process-wide one; ``on_event`` receives the ``task`` tool's progress
    events (they are also written to the graph's ``custom`` stream).
    """
    check_number("build_demo_lead_agent", "speed", speed, positive=False)
    delegation = SubagentMiddleware(
        demo_subagents(speed=speed),
        tools=demo_tools(speed=speed),
        runtime=runtime,
        on_event=on_event,
    )
    lead_model = ScriptedChatModel(router=_lead, latency=MODEL_SECONDS * speed * 0.5)
    return create_agent(
        lead_model,
        middleware=[delegation],
        system_prompt="You lead a small research team and answer with a briefing.",
        name="lead-agent",
    )


# -- the scripted behaviour of each agent --------------------------------------------------


def _task(subagent_type: str, prompt: str, description: str) -> tuple[str, dict[str, Any]]:
    args = {"description": description, "prompt": prompt, "subagent_type": subagent_type}
    return ("task", args)


def _turn(messages: list[BaseMessage]) -> int:
    return sum(1 for m in messages if isinstance(m, AIMessage))


def _question(messages: list[BaseMessage]) -> str:
    first = next((m for m in messages if isinstance(m, HumanMessage)), None)
    return first.text.strip() if first is not None else DEMO_QUESTION


def _results(messages: list[BaseMessage]) -> list[str]:
    """The tool results since the last AI message (the answers just received)."""
    found: list[str] = []
    for message in reversed(messages):
        if isinstance(message, AIMessage):
            break
        if isinstance(message, ToolMessage):
            found.append(message.text)
    return list(reversed(found))


def _lead(messages: list[BaseMessage]) -> AIMessage | str:
    question = _question(messages)
    turn = _turn(messages)
    if turn == 0:
        return tool_calls(
            *(
                _task("researcher", f"Research {aspect}: {question}", f"research {aspect}")
                for aspect in ASPECTS
            )
        )
    if turn == 1:
        findings = "\n".join(f"- {text}" for text in _results(messages))
        prompt = f"Write a short briefing answering: {question}\n\nFindings:\n{findings}"
        return tool_call(*_task("writer", prompt, "write the briefing"))
    briefing = "\n".join(_results(messages)) or "(the writer returned nothing)"
    return f"Here is the briefing.\n\n{briefing}"


def _aspect(task: str) -> str:
    return task.split(":", 1)[0].removeprefix("Research ").strip()


def _researcher(messages: list[BaseMessage]) -> AIMessage | str:
    aspect = _aspect(_question(messages))
    if _turn(messages) == 0:
        claim = f"The main claim about {aspect} is supported by recent sources."
        return tool_calls(
            ("web_search", {"query": aspect}),
            _task("fact-checker", f"Fact-check: {claim}", f"check {aspect}"),
        )
    verdict = next((r for r in _results(messages) if r.startswith("Verified")), "unchecked")
    return f"Findings on {aspect}: three sources agree on the essentials ({verdict.lower()})."


def _fact_checker(messages: list[BaseMessage]) -> AIMessage | str:
    claim = _question(messages).removeprefix("Fact-check:").strip()
    if _turn(messages) == 0:
        return tool_call("web_search", {"query": claim})
    return f"Verified against 3 sources: {claim}"


def _writer(messages: list[BaseMessage]) -> str:
    task = _question(messages)
    findings = [line[2:] for line in task.splitlines() if line.startswith("- ")]
    body = " ".join(findings) if findings else "No findings were given."
    return f"Briefing. {body}"

