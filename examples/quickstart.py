"""Quickstart: a lead agent that delegates to two kinds of sub-agents.

Offline, with scripted fake models (no API key needed):

    python examples/quickstart.py

With a real model for the lead agent and both sub-agents (needs the
provider's package and key, e.g. ``pip install langchain-openai`` and
``OPENAI_API_KEY``):

    python examples/quickstart.py --model openai:gpt-4o-mini

The real ``ChatOpenAI`` client, offline: serve this file's script with the
fake OpenAI-compatible server and point the client at it:

    python -m subagent_exec.testing --port 0 --script examples/quickstart.py:fake_openai_model
    # prints http://127.0.0.1:PORT/v1; in another shell:
    OPENAI_BASE_URL=http://127.0.0.1:PORT/v1 OPENAI_API_KEY=test \
        python examples/quickstart.py --model openai:gpt-4o-mini

The lead agent gets a ``task`` tool. Each ``task`` call starts a sub-agent on
its own event loop in a worker thread; calls made in one message run in
parallel, and their progress arrives as ``custom`` stream events.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.tools import tool

from subagent_exec import SubagentConfig, SubagentRuntime, make_task_tool
from subagent_exec.testing import ScriptedChatModel, tool_call, tool_calls

QUESTION = "Tell me about the Moon: three facts, and a two-line poem."


@tool
async def count_words(text: str) -> str:
    """Count the words of a text."""
    return f"{len(text.split())} words"


def build_lead_agent(model: str | None, runtime: SubagentRuntime) -> Any:
    """The lead agent and its two sub-agent types. ``model=None``: offline fakes."""
    # Offline, one scripted model answers all three agents: it routes by the
    # first user message (the question, or the task the lead delegated).
    offline = fake_openai_model()
    researcher = SubagentConfig(
        name="researcher",
        description="Finds and checks facts on a topic.",
        system_prompt="You are a careful researcher. Answer with short, numbered facts.",
        model=model or offline,
        timeout_seconds=120,
    )
    writer = SubagentConfig(
        name="writer",
        description="Writes short texts: poems, summaries, slogans.",
        system_prompt="You are a concise writer. Check length with count_words.",
        model=model or offline,
        tools=["count_words"],
        timeout_seconds=120,
    )
    task = make_task_tool([researcher, writer], tools=[count_words], runtime=runtime)
    lead_model = model or offline
    return create_agent(
        lead_model,
        tools=[task],
        system_prompt="You answer by delegating research and writing to your sub-agents.",
    )


async def ask(agent: Any, question: str) -> str:
    """Stream one run, printing the sub-agents' progress; return the answer."""
    started = time.monotonic()
    answer = ""
    async for mode, chunk in agent.astream(
        {"messages": [("user", question)]}, stream_mode=["updates", "custom"]
    ):
        if mode == "custom":
            elapsed = time.monotonic() - started
            print(
                f"[{elapsed:4.1f}s] {chunk['type']:<15} {chunk['subagent_type']:<10} "
                f"{chunk['description']}"
            )
        elif "model" in chunk:
            message = chunk["model"]["messages"][-1]
            if not message.tool_calls:
                answer = message.text
    return answer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="e.g. openai:gpt-4o-mini (default: offline fakes)")
    parser.add_argument("--question", default=QUESTION)
    args = parser.parse_args(argv)
    with SubagentRuntime(max_workers=4) as runtime:
        agent = build_lead_agent(args.model, runtime)
        answer = asyncio.run(ask(agent, args.question))
    print("\n" + answer)
    return 0


# -- the offline script -----------------------------------------------------------------

FACTS = (
    "1. The Moon is about 384,400 km from Earth.\n"
    "2. It always shows Earth the same face.\n"
    "3. Twelve people have walked on it."
)
POEM = "Silver coin on velvet night,\nborrowing the sun's old light."
COUNT = tool_call("count_words", {"text": POEM})


def fake_openai_model() -> ScriptedChatModel:
    """The offline script: the lead delegates, the researcher and the writer answer.

    Used in-process when no --model is given, and served over HTTP by
    ``python -m subagent_exec.testing --script examples/quickstart.py:fake_openai_model``
    so the real ChatOpenAI client delegates offline.
    """
    return ScriptedChatModel(
        script={"surprising facts": FACTS, "poem about": [COUNT, POEM]},
        router=_offline_lead,  # anything else: the lead's question
        latency=0.2,
        latency_by_key={"surprising facts": 0.4, "poem about": 0.3},
    )


def _offline_lead(messages: list[BaseMessage]) -> AIMessage | str:
    turn = sum(1 for m in messages if isinstance(m, AIMessage))
    if turn == 0:
        return tool_calls(
            (
                "task",
                {
                    "description": "Moon facts",
                    "subagent_type": "researcher",
                    "prompt": "Find three surprising facts about the Moon.",
                },
            ),
            (
                "task",
                {
                    "description": "Moon poem",
                    "subagent_type": "writer",
                    "prompt": "Write a two-line poem about the Moon.",
                },
            ),
        )
    facts, poem = (m.text for m in messages[-2:])
    return f"Three facts:\n{facts}\n\nAnd a poem:\n{poem}"


if __name__ == "__main__":
    raise SystemExit(main())
