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

With ``background=True`` the lead also starts a ``news-scout`` in the
background (``start_task``) before it delegates, goes on with the tree above,
and adds the scout's findings to its answer when they are pushed to it
(waiting for them at the end of its turn if need be: ``on_turn_end="wait"``).
The scout is a root task of the lead's thread, not a child of the lead.

``speed`` scales every latency: 1.0 takes about 6 s, 0.0 runs as fast as
the machinery allows (benchmarks, tests).

Every scripted reply reports token usage (a made-up count from the lengths of
the texts, deterministic) as model :data:`DEMO_MODEL`, priced in
:data:`DEMO_PRICES`, so budgets and the page's token counts have something to
count. ``budget``: a ``Budget`` shared by everything one run of the lead
delegates (``SubagentMiddleware(budget=...)``).
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import BaseTool, tool

from ._budget import Budget
from ._checks import check_number
from ._config import SubagentConfig
from ._middleware import SubagentMiddleware
from ._runtime import SubagentRuntime
from ._task_tool import EventListener
from .testing import ScriptedChatModel, tool_call, tool_calls

__all__ = [
    "DEMO_MODEL",
    "DEMO_PRICES",
    "DEMO_QUESTION",
    "build_demo_lead_agent",
    "demo_subagents",
    "demo_tools",
]

DEMO_QUESTION = "Compare solid-state batteries and heat pumps for a short briefing."

#: What each researcher covers; one researcher per aspect, in parallel.
ASPECTS = ("how it works", "costs and adoption")

#: The name every scripted demo model reports, and its made-up prices per
#: million (input, output) tokens: pass ``price_table=DEMO_PRICES`` to the runtime.
DEMO_MODEL = "demo-model"
DEMO_PRICES = {DEMO_MODEL: (0.15, 0.60)}

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
            model=_model(_researcher, latency),
            tools=["web_search", "task"],
            disallowed_tools=(),  # researchers may delegate to fact-checkers
            timeout_seconds=120.0,
        ),
        SubagentConfig(
            name="fact-checker",
            description="Checks one claim against sources and says whether it holds.",
            system_prompt="You check one claim and answer with a verdict.",
            model=_model(_fact_checker, latency),
            tools=["web_search"],
            timeout_seconds=60.0,
        ),
        SubagentConfig(
            name="news-scout",
            description="Watches for the latest news on a topic (start it in the background).",
            system_prompt="You collect the latest news on a topic.",
            model=_model(_scout, latency),
            tools=["web_search"],
            timeout_seconds=120.0,
        ),
        SubagentConfig(
            name="writer",
            description="Writes a short briefing from findings it is given.",
            system_prompt="You write short, clear briefings.",
            model=_model(_writer, latency),
            tools=[],
            timeout_seconds=60.0,
        ),
    ]


def build_demo_lead_agent(
    runtime: SubagentRuntime | None = None,
    *,
    speed: float = 1.0,
    on_event: EventListener | None = None,
    background: bool = False,
    budget: Budget | None = None,
) -> Any:
    """A compiled ``create_agent`` graph: the demo's lead agent.

    Invoke it with ``{"messages": [("user", question)]}`` (any question; the
    scripted lead splits it into :data:`ASPECTS`). ``runtime`` defaults to
    the process-wide one; ``on_event`` receives the ``task`` tool's progress
    events (they are also written to the graph's ``custom`` stream).
    ``background``: the lead also starts a news scout in the background.
    ``budget``: limits for everything one run of the lead delegates.
    """
    check_number("build_demo_lead_agent", "speed", speed, positive=False)
    if not isinstance(background, bool):
        raise TypeError(f"build_demo_lead_agent.background must be a bool, got {background!r}")
    delegation = SubagentMiddleware(
        demo_subagents(speed=speed),
        tools=demo_tools(speed=speed),
        runtime=runtime,
        on_event=on_event,
        background=background,
        on_turn_end="wait" if background else "return",
        budget=budget,
    )
    lead_model = _model(_background_lead if background else _lead, MODEL_SECONDS * speed * 0.5)
    return create_agent(
        lead_model,
        middleware=[delegation],
        system_prompt="You lead a small research team and answer with a briefing.",
        name="lead-agent",
    )


# -- the scripted behaviour of each agent --------------------------------------------------


def _model(router: Any, latency: float) -> ScriptedChatModel:
    """A scripted model answering with ``router`` and reporting its usage."""
    return ScriptedChatModel(
        router=functools.partial(_metered, router), latency=latency, model_name=DEMO_MODEL
    )


def _metered(router: Any, messages: list[BaseMessage]) -> AIMessage:
    """``router``'s reply, reporting made-up usage: about a token per four
    characters read and written, plus a little per message and tool call."""
    reply = router(messages)
    message = reply.model_copy() if isinstance(reply, AIMessage) else AIMessage(content=reply)
    read = sum(len(str(m.content)) for m in messages) // 4 + 8 * len(messages)
    written = len(str(message.content)) // 4 + 24 * len(message.tool_calls) + 4
    message.usage_metadata = {
        "input_tokens": read, "output_tokens": written, "total_tokens": read + written,
    }
    return message


def _task(subagent_type: str, prompt: str, description: str) -> tuple[str, dict[str, Any]]:
    args = {"description": description, "prompt": prompt, "subagent_type": subagent_type}
    return ("task", args)


def _turn(messages: list[BaseMessage]) -> int:
    return sum(1 for m in messages if isinstance(m, AIMessage))


def _question(messages: list[BaseMessage]) -> str:
    first = next((m for m in messages if isinstance(m, HumanMessage)), None)
    return first.text.strip() if first is not None else DEMO_QUESTION


def _results(messages: list[BaseMessage]) -> list[str]:
    """The ``task`` results since the last AI message (the answers just received)."""
    found: list[str] = []
    for message in reversed(messages):
        if isinstance(message, AIMessage):
            break
        if isinstance(message, ToolMessage) and message.name in ("task", "web_search"):
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


def _background_lead(messages: list[BaseMessage]) -> AIMessage | str:
    """The lead with a news scout in the background (see the module docstring)."""
    question = _question(messages)
    turn = _turn(messages)
    if turn == 0:
        scout = ("start_task", {
            "description": "latest news", "subagent_type": "news-scout",
            "prompt": f"Find the latest news for a briefing on: {question}",
        })
        research = (
            _task("researcher", f"Research {aspect}: {question}", f"research {aspect}")
            for aspect in ASPECTS
        )
        return tool_calls(scout, *research)
    if turn == 1:
        return _lead(messages)  # the writer, from the researchers' findings
    briefing = next(
        (m.text for m in reversed(messages) if isinstance(m, ToolMessage) and m.name == "task"),
        "(the writer returned nothing)",
    )
    news = [m.text.split(" completed: ", 1)[-1] for m in messages
            if isinstance(m, HumanMessage) and (m.id or "").startswith("subagent-background-")]
    latest = f"Latest news: {news[-1]}" if news else "(The latest news will follow.)"
    return f"Here is the briefing.\n\n{briefing}\n\n{latest}"


def _scout(messages: list[BaseMessage]) -> AIMessage | str:
    topic = _question(messages).split(":", 1)[-1].strip()
    turn = _turn(messages)
    if turn < 2:
        return tool_call("web_search", {"query": f"{topic} news" + (" this week" * turn)})
    return f'Two announcements this week bear on "{topic.rstrip(".")}".'


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

