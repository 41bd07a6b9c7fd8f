"""Background sub-agents: the lead keeps working while they run.

Offline, with scripted fake models (no API key needed):

    python examples/background.py

The lead agent gets ``SubagentMiddleware(..., background=True)``: besides the
``task`` tool it can ``start_task`` (returns at once), ``check_tasks``,
``wait_tasks``, ``message_task`` and ``cancel_task``. In this conversation it

1. starts three researchers in the background and goes on at once;
2. steers one of them with ``message_task`` before it has finished, and
   cancels the third (out of scope);
3. answers the user right away;
4. hears of each researcher's end as a message pushed into its next turn
   (no polling: ``on_turn_end="wait"`` waits for it at the end of its turn);
5. writes the final brief from what they found.

Every line printed is stamped with the seconds since the start.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from subagent_exec import SubagentConfig, SubagentMiddleware, SubagentRuntime
from subagent_exec.testing import ScriptedChatModel, tool_call, tool_calls

QUESTION = "Brief me on heat pumps and solid-state batteries."
FOLLOW_UP = "Focus on the cost per kWh, please."
#: Each topic's researcher, and how long each of its model calls takes.
TOPICS = {"heat pumps": 0.2, "solid-state batteries": 0.5, "fusion startups": 30.0}


@tool
async def web_search(query: str) -> str:
    """Search the web."""
    await asyncio.sleep(0.4)
    return f"3 recent sources on {query!r}"


def build_lead(runtime: SubagentRuntime, on_event: Any) -> Any:
    researcher = SubagentConfig(
        name="researcher",
        description="Researches one topic with web_search and reports.",
        model=ScriptedChatModel(script=dict.fromkeys(TOPICS, _researcher), latency_by_key=TOPICS),
        tools=["web_search"],
        timeout_seconds=120,
    )
    background = SubagentMiddleware(
        [researcher], tools=[web_search], runtime=runtime,
        background=True, on_turn_end="wait", on_event=on_event,
    )
    return create_agent(
        ScriptedChatModel(router=_lead, latency=0.1),
        middleware=[background],
        system_prompt="You brief the user. Research runs in the background.",
        checkpointer=InMemorySaver(),  # the thread keeps what was pushed into it
    )


async def main_async() -> str:
    started = time.monotonic()

    def say(who: str, text: str) -> None:
        print(f"[{time.monotonic() - started:4.1f}s] {who}: {text}")

    def on_event(event: dict[str, Any]) -> None:  # on the runtime's threads
        if event["type"] == "task_message_delivered":
            say("researcher", f"({event['description']}) reads the follow-up: {event['message']}")

    with SubagentRuntime(max_workers=4) as runtime:
        lead = build_lead(runtime, on_event)
        config = {"configurable": {"thread_id": "brief-1"}}
        say("user", QUESTION)
        async for update in lead.astream(
            {"messages": [("user", QUESTION)]}, config, stream_mode="updates"
        ):
            for step in update.values():
                for message in (step or {}).get("messages", []):
                    _show(say, message)
        state = await lead.aget_state(config)
        return str(state.values["messages"][-1].text)


def _show(say: Any, message: BaseMessage) -> None:
    if isinstance(message, AIMessage):
        for call in message.tool_calls:
            args = ", ".join(f"{k}={v!r}" for k, v in call["args"].items() if k != "prompt")
            say("lead", f"{call['name']}({args})")
        if message.text:
            say("lead → user", message.text.replace("\n", "\n" + " " * 20))
    elif isinstance(message, ToolMessage):
        first = message.text.split("\n")[0]
        say(f"  {message.name}", first if len(first) <= 110 else first[:109] + "…")
    elif isinstance(message, HumanMessage) and (message.id or "").startswith("subagent-"):
        say("pushed to lead", message.text)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.split("\n")[0]).parse_args(argv)
    brief = asyncio.run(main_async())
    print(f"\nFinal brief:\n{brief}")
    return 0


# -- the scripted behaviour (what a real model would decide) ---------------------------------


def _lead(messages: list[BaseMessage]) -> AIMessage | str:
    started = {
        m.artifact["description"]: m.artifact["task_id"]
        for m in messages
        if isinstance(m, ToolMessage) and m.name == "start_task" and m.status == "success"
    }
    pushed = [m.text for m in messages
              if isinstance(m, HumanMessage) and (m.id or "").startswith("subagent-background-")]
    turn = sum(1 for m in messages if isinstance(m, AIMessage))
    if turn == 0:
        return tool_calls(*(
            ("start_task", {"description": topic, "subagent_type": "researcher",
                            "prompt": f"Research {topic}: what matters for a short brief."})
            for topic in TOPICS
        ))
    if turn == 1:
        return tool_calls(
            ("message_task", {"task_id": started["solid-state batteries"], "message": FOLLOW_UP}),
            ("cancel_task", {"task_id": started["fusion startups"],
                             "reason": "out of scope: the user asked about two topics"}),
        )
    if turn == 2:
        return ("Two researchers are on it (heat pumps, solid-state batteries); "
                "your brief follows as soon as they report.")
    done = [text.split(" completed: ", 1)[1] for text in pushed if " completed: " in text]
    if len(done) < 2:
        return f"{len(done)} of 2 researchers reported; the brief follows with the other."
    return "Brief.\n" + "\n".join(f"- {finding}" for finding in sorted(done))


def _researcher(messages: list[BaseMessage]) -> AIMessage | str:
    task = next(m.text for m in messages if isinstance(m, HumanMessage))
    topic = next(t for t in TOPICS if t in task)
    if not any(isinstance(m, ToolMessage) for m in messages):
        return tool_call("web_search", {"query": topic})
    steered = any(FOLLOW_UP in m.text for m in messages if isinstance(m, HumanMessage))
    if topic == "heat pumps":
        return "Heat pumps: 3-4x more efficient than gas boilers; sales up 11% in 2025."
    if steered:
        return "Solid-state batteries: about $400/kWh today, below $100/kWh expected by 2030."
    return "Solid-state batteries: denser and safer, first cars in 2027."


if __name__ == "__main__":
    raise SystemExit(main())
