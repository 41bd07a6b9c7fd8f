"""Scripted sub-agents that report usage, for the budget tests.

Everything here is module-level (configs, routers, tools), so the same
sub-agents run on a Ray worker: cloudpickle sends them by reference.

Every model reply carries ``usage_metadata``: ``tokens`` input tokens and no
output, so the sums are easy to check. A "looper" asks for the ``lookup``
tool on every call and never finishes on its own; a "finisher" answers after
``turns`` calls; a "delegator" hands its task to a child through the
``task`` tool, then answers with the child's answer.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.tools import tool

from subagent_exec import Budget, SubagentConfig
from subagent_exec.testing import ScriptedChatModel, tool_call

#: What the models say they are (priced in PRICES).
MODEL = "gpt-test"
#: Per million tokens: 1 unit per input token, so a call of n tokens costs n / 1e6.
PRICES = {MODEL: (1.0, 0.0)}
#: Text the warning note carries, and what a warned sub-agent answers.
NOTE_WORDS = "finish with what you have"
WARNED_ANSWER = "warned: here is what I have"


@tool
async def lookup(query: str) -> str:
    """Look something up."""
    return f"found {query}"


def with_usage(reply: AIMessage | str, tokens: int) -> AIMessage:
    """``reply`` as an AI message reporting ``tokens`` input tokens."""
    message = reply if isinstance(reply, AIMessage) else AIMessage(content=reply)
    message = message.model_copy()
    message.usage_metadata = {"input_tokens": tokens, "output_tokens": 0, "total_tokens": tokens}
    return message


def _warned(messages: Sequence[BaseMessage]) -> bool:
    return any(m.type == "human" and NOTE_WORDS in str(m.content) for m in messages[1:])


def loop_reply(messages: list[BaseMessage], *, tokens: int, heed: bool = False) -> AIMessage:
    """Look something up again (each call says what turn it is), forever;
    with ``heed``, answer as soon as a budget note arrived."""
    if heed and _warned(messages):
        return with_usage(WARNED_ANSWER, tokens)
    turn = sum(1 for m in messages if isinstance(m, AIMessage))
    reply = tool_call("lookup", {"query": f"turn {turn}"})
    reply.content = f"progress after {turn} lookups"
    return with_usage(reply, tokens)


def finish_reply(messages: list[BaseMessage], *, tokens: int, turns: int) -> AIMessage:
    """Look something up until ``turns`` calls were made, then answer."""
    turn = sum(1 for m in messages if isinstance(m, AIMessage))
    if turn + 1 >= turns:
        return with_usage(f"answer after {turn + 1} calls", tokens)
    return with_usage(tool_call("lookup", {"query": f"turn {turn}"}), tokens)


def delegate_reply(
    messages: list[BaseMessage], *, tokens: int, child: str, fan_out: int = 1
) -> AIMessage:
    """Delegate the task to ``fan_out`` children at once, then answer with their answers."""
    answers = [m for m in messages if isinstance(m, ToolMessage)]
    if answers:
        return with_usage("children said: " + " | ".join(str(a.content) for a in answers), tokens)
    calls = [
        ("task", {"description": f"part {i}", "prompt": f"part {i} of the work",
                  "subagent_type": child})
        for i in range(fan_out)
    ]
    reply = AIMessage(content="", tool_calls=[
        {"name": name, "args": args, "id": None, "type": "tool_call"} for name, args in calls
    ])
    return with_usage(reply, tokens)


def model(router: Any, latency: float = 0.0) -> ScriptedChatModel:
    return ScriptedChatModel(router=router, latency=latency, model_name=MODEL)


def looper(
    name: str = "looper", *, tokens: int = 100, latency: float = 0.0, heed: bool = False,
    budget: Budget | None = None,
) -> SubagentConfig:
    return SubagentConfig(
        name=name, description="looks things up forever",
        model=model(functools.partial(loop_reply, tokens=tokens, heed=heed), latency),
        tools=["lookup"], budget=budget, max_turns=500,
    )


def finisher(name: str = "finisher", *, tokens: int = 100, turns: int = 2,
             latency: float = 0.0) -> SubagentConfig:
    return SubagentConfig(
        name=name, description="answers after a few lookups",
        model=model(functools.partial(finish_reply, tokens=tokens, turns=turns), latency),
        tools=["lookup"],
    )


def delegator(
    name: str, child: str, *, tokens: int = 10, fan_out: int = 1, latency: float = 0.0,
    budget: Budget | None = None,
) -> SubagentConfig:
    return SubagentConfig(
        name=name, description=f"delegates to {child}",
        model=model(functools.partial(delegate_reply, tokens=tokens, child=child,
                                      fan_out=fan_out), latency),
        tools=["task"], disallowed_tools=(), budget=budget,
    )


def lead_reply(messages: list[BaseMessage], *, child: str, fan_out: int) -> AIMessage:
    """A lead (not metered) that delegates ``fan_out`` tasks, then quotes the answers."""
    reply = delegate_reply(messages, tokens=0, child=child, fan_out=fan_out)
    reply.usage_metadata = None
    return reply
