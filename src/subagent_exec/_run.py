"""One sub-agent run, as a coroutine on the sub-agent's own loop.

The run checks ``cancel_event`` (a ``threading.Event``, the only cheap signal
that crosses loops) at four places: before streaming starts, at every
``astream`` chunk, and at the entry of every model call and tool call (through
a callback handler, so graphs from ``graph_factory`` get the checks too). A
call that has not started never starts. The await in flight is interrupted
separately by the runtime (``call_soon_threadsafe(task.cancel)``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler, BaseCallbackManager
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import Runnable, RunnableBinding

from ._config import SubagentConfig
from ._errors import MaxTurnsExceeded
from ._models import ModelSpec, resolve_model
from ._result import SubagentResult
from ._runtime import RunOutcome

CLOSE_TIMEOUT_SECONDS = 5.0


class StopCheckpoint(BaseCallbackHandler):
    """Raises at the entry of a model or tool call once a stop was requested,
    and counts model calls against ``max_turns``.

    ``raise_error`` makes LangChain propagate what we raise; ``run_inline``
    makes it run before the call, on the caller's thread.
    """

    raise_error = True
    run_inline = True

    def __init__(self, holder: SubagentResult, max_turns: int) -> None:
        self._holder = holder
        self._max_turns = max_turns
        self._turns = 0
        self._lock = threading.Lock()

    @property
    def model_calls(self) -> int:
        return self._turns

    def check(self) -> None:
        if self._holder.cancel_event.is_set():
            raise asyncio.CancelledError(f"subagent stop: {self._holder.cancel_reason}")

    def _model_call(self) -> None:
        self.check()
        with self._lock:
            self._turns += 1
            turns = self._turns
        if turns > self._max_turns:
            raise MaxTurnsExceeded(
                f"sub-agent {self._holder.subagent_name!r} reached max_turns={self._max_turns} "
                "model calls without finishing"
            )

    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[BaseMessage]], **kwargs: Any
    ) -> None:
        self._model_call()

    def on_llm_start(self, serialized: dict[str, Any], prompts: list[str], **kwargs: Any) -> None:
        self._model_call()

    def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        **kwargs: Any,
    ) -> None:
        self.check()


def message_record(message: AIMessage) -> dict[str, Any]:
    """The JSON-ready form of an AI message kept in ``SubagentResult.ai_messages``."""
    return {
        "id": message.id,
        "type": "ai",
        "name": message.name,
        "text": message.text,
        "content": message.content,
        "tool_calls": [
            {"name": c["name"], "args": c["args"], "id": c.get("id")} for c in message.tool_calls
        ],
        "usage_metadata": dict(message.usage_metadata) if message.usage_metadata else None,
    }


def final_text(messages: Sequence[Any], subagent: str) -> str:
    """The final answer: the text of the last AI message, or a clear statement."""
    for message in reversed(messages):
        if isinstance(message, AIMessage):
            text = message.text
            if text.strip():
                return text
            return f"(sub-agent {subagent!r} ended with an AI message that has no text)"
    return f"(sub-agent {subagent!r} ended without producing any AI message)"


async def run_subagent(
    holder: SubagentResult,
    *,
    config: SubagentConfig,
    tools: Sequence[Any],
    parent_model: ModelSpec | None,
    callbacks: Sequence[Any] | BaseCallbackManager = (),
) -> RunOutcome:
    """Build the sub-agent inside this loop, stream it, and return its answer."""
    checkpoint = StopCheckpoint(holder, config.max_turns)
    checkpoint.check()  # a run stopped before it began never builds anything
    close = None
    if config.graph_factory_takes_model:
        model, close = resolve_model(config.model, parent_model, subagent=config.name)
        graph: Runnable[Any, Any] = config.graph_factory(model)  # type: ignore[call-arg, misc]
    elif config.graph_factory is not None:
        graph = config.graph_factory()  # type: ignore[call-arg]
    else:
        from langchain.agents import create_agent

        model, close = resolve_model(config.model, parent_model, subagent=config.name)
        graph = create_agent(model, tools=list(tools), system_prompt=config.system_prompt)
    try:
        checkpoint.check()
        messages: list[Any] = []
        run_config: dict[str, Any] = {
            "callbacks": with_checkpoint(checkpoint, callbacks),
            # Supersteps, not model turns (max_turns is enforced by the
            # checkpoint); create_agent binds its own limit, which wins.
            "recursion_limit": max(25, 4 * config.max_turns + 5),
            "run_name": config.name,
            "metadata": {
                "subagent_task_id": holder.task_id,
                "subagent_trace_id": holder.trace_id,
                "subagent_name": config.name,
            },
        }
        stream = graph.astream(
            {"messages": [HumanMessage(content=holder.task)]},
            config=run_config,  # type: ignore[arg-type]
            **_stream_kwargs(graph),
        )
        async for state in stream:
            if isinstance(state, dict) and isinstance(state.get("messages"), list):
                messages = state["messages"]
                _record_ai_messages(holder, messages)
            checkpoint.check()
        return RunOutcome(text=final_text(messages, config.name))
    finally:
        if close is not None:
            # Shielded and bounded: a second cancel must not skip closing the
            # run's HTTP client, and a hung close must not hold the worker.
            try:
                await asyncio.wait_for(asyncio.shield(close()), CLOSE_TIMEOUT_SECONDS)
            except (TimeoutError, asyncio.CancelledError):
                pass


def with_checkpoint(
    checkpoint: StopCheckpoint, callbacks: Sequence[Any] | BaseCallbackManager
) -> list[Any] | BaseCallbackManager:
    """The run's callbacks: ``checkpoint`` first, plus the caller's handlers.

    A callback manager (the ``task`` tool passes one) is kept as a manager, so
    its ``parent_run_id`` nests the sub-agent's runs under the caller's run.
    """
    if isinstance(callbacks, BaseCallbackManager):
        manager = callbacks.copy()
        manager.handlers.insert(0, checkpoint)
        manager.inheritable_handlers.insert(0, checkpoint)
        return manager
    return [checkpoint, *callbacks]


def _stream_kwargs(graph: Runnable[Any, Any]) -> dict[str, Any]:
    """``stream_mode="values"`` for LangGraph graphs only: any other Runnable
    passes unknown keyword arguments on to the user's function, which fails."""
    from langgraph.pregel import Pregel

    target: Any = graph
    while isinstance(target, RunnableBinding):
        target = target.bound
    return {"stream_mode": "values"} if isinstance(target, Pregel) else {}


def _record_ai_messages(holder: SubagentResult, messages: Sequence[Any]) -> None:
    for position, message in enumerate(messages):
        if isinstance(message, AIMessage):
            holder._add_ai_message(message_record(message), message.id or f"position-{position}")
