"""What of the caller's tracing crosses into a sub-agent's loop, on purpose.

The ``task`` tool runs on the caller's loop; the sub-agent runs on its own
loop in another thread. We never copy the caller's contextvars (that would
drag the caller's langgraph runtime, checkpointer and stream writer along,
see _context.py). Instead the tool builds one callback
manager for the sub-agent's run from the tool run's own callback manager:

Crosses:
  * the tool run as tracing parent (``parent_run_id``), so the sub-agent's
    model and tool runs nest under the ``task`` tool run;
  * the caller's inheritable handlers, tags and metadata.

Stays behind:
  * langgraph's own handlers (the caller's ``stream_mode="messages"`` writer
    and friends): they feed the caller's stream; the sub-agent's messages
    reach the caller as ``task_running`` custom events instead;
  * the calling sub-agent's :class:`~subagent_exec._run.StopCheckpoint`: its
    turn budget and stop flag are its own (stops reach descendants through
    the runtime's cascade);
  * langgraph's bookkeeping metadata (``langgraph_*``, ``checkpoint_*``).

Sync handlers are called on the sub-agent's thread. LangChain itself calls
sync handlers from executor threads, so a handler used with async agents must
already be thread-safe.

Async handlers (:class:`AsyncCallbackHandler`) may hold objects bound to the
caller's loop (``astream_events`` writes into a memory stream of that loop),
so calling them on the sub-agent's loop is not safe. Each call is forwarded
to the caller's loop instead, without waiting: a sub-agent never waits for its
caller's loop. Consequences: an async handler's ``raise_error`` cannot stop a
sub-agent, and calls that arrive after the caller's loop closed are dropped.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Coroutine
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackHandler,
    AsyncCallbackManager,
    BaseCallbackHandler,
    BaseCallbackManager,
)

from ._run import StopCheckpoint

logger = logging.getLogger("subagent_exec")

_DROPPED_METADATA_PREFIXES = ("langgraph_", "checkpoint_")


def child_callbacks(
    tool_run: BaseCallbackManager | None,
    caller_loop: asyncio.AbstractEventLoop | None,
) -> AsyncCallbackManager | None:
    """The callback manager for a sub-agent started by a tool run.

    ``tool_run`` is the tool's child manager (``run_manager.get_child()``);
    ``caller_loop`` is the loop the tool runs on (None for a sync caller, whose
    async handlers LangChain already runs on throwaway loops).
    """
    if tool_run is None:
        return None
    handlers = [
        _cross(handler, caller_loop)
        for handler in tool_run.inheritable_handlers
        if _crosses(handler)
    ]
    metadata = {
        key: value
        for key, value in tool_run.inheritable_metadata.items()
        if not key.startswith(_DROPPED_METADATA_PREFIXES)
    }
    return AsyncCallbackManager(
        handlers=list(handlers),
        inheritable_handlers=list(handlers),
        parent_run_id=tool_run.parent_run_id,
        tags=list(tool_run.inheritable_tags),
        inheritable_tags=list(tool_run.inheritable_tags),
        metadata=dict(metadata),
        inheritable_metadata=dict(metadata),
    )


def _crosses(handler: BaseCallbackHandler) -> bool:
    if isinstance(handler, StopCheckpoint):
        return False
    return not type(handler).__module__.startswith("langgraph.")


def _cross(
    handler: BaseCallbackHandler, caller_loop: asyncio.AbstractEventLoop | None
) -> BaseCallbackHandler:
    if caller_loop is None or not isinstance(handler, AsyncCallbackHandler):
        return handler
    return CallerLoopHandler(handler, caller_loop)


class CallerLoopHandler(BaseCallbackHandler):
    """Forwards every callback of a sub-agent to an async handler on the
    caller's loop, in call order, without waiting for it."""

    run_inline = True  # forward in call order, from the thread that made the call

    def __init__(self, handler: AsyncCallbackHandler, loop: asyncio.AbstractEventLoop) -> None:
        self.handler = handler
        self.loop = loop
        self._pending: set[asyncio.Task[Any]] = set()  # strong refs until done

    def __repr__(self) -> str:
        return f"CallerLoopHandler({self.handler!r})"

    # The manager checks these before calling; they must mirror the handler's.
    @property
    def ignore_llm(self) -> bool:
        return self.handler.ignore_llm

    @property
    def ignore_chat_model(self) -> bool:
        return self.handler.ignore_chat_model

    @property
    def ignore_chain(self) -> bool:
        return self.handler.ignore_chain

    @property
    def ignore_agent(self) -> bool:
        return self.handler.ignore_agent

    @property
    def ignore_retriever(self) -> bool:
        return self.handler.ignore_retriever

    @property
    def ignore_retry(self) -> bool:
        return self.handler.ignore_retry

    @property
    def ignore_custom_event(self) -> bool:
        return self.handler.ignore_custom_event

    def _forward(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        coro: Coroutine[Any, Any, Any] = getattr(self.handler, name)(*args, **kwargs)
        try:
            # An empty context: the handler must not run inside the
            # sub-agent's context (its task id, its langgraph runtime).
            self.loop.call_soon_threadsafe(self._spawn, coro, context=contextvars.Context())
        except RuntimeError:  # the caller's loop is closed: nobody to tell
            coro.close()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = self.loop.create_task(coro)
        self._pending.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning(
                "callback handler %s failed on the caller's loop: %r",
                type(self.handler).__name__,
                task.exception(),
            )

    def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
        # LangChain falls back to on_llm_start when a handler raises
        # NotImplementedError here; that must happen now, on this thread.
        if type(self.handler).on_chat_model_start is AsyncCallbackHandler.on_chat_model_start:
            raise NotImplementedError("on_chat_model_start")
        self._forward("on_chat_model_start", args, kwargs)

    def on_llm_start(self, *args: Any, **kwargs: Any) -> None:
        self._forward("on_llm_start", args, kwargs)

    def on_llm_new_token(self, *args: Any, **kwargs: Any) -> None:
        self._forward("on_llm_new_token", args, kwargs)

    def on_llm_end(self, *args: Any, **kwargs: Any) -> None:
        self._forward("on_llm_end", args, kwargs)

    def on_llm_error(self, *args: Any, **kwargs: Any) -> None:
        self._forward("on_llm_error", args, kwargs)

    def on_stream_event(self, *args: Any, **kwargs: Any) -> None:
        self._forward("on_stream_event", args, kwargs)

    def on_chain_start(self, *args: Any, **kwargs: Any) -> None:
        self._forward("on_chain_start", args, kwargs)

    def on_chain_end(self, *args: Any, **kwargs: Any) -> None:
        self._forward("on_chain_end", args, kwargs)

    def on_chain_error(self, *args: Any, **kwargs: Any) -> None:
        self._forward("on_chain_error", args, kwargs)

    def on_tool_start(self, *args: Any, **kwargs: Any) -> None:
        self._forward("on_tool_start", args, kwargs)

    def on_tool_end(self, *args: Any, **kwargs: Any) -> None:
        self._forward("on_tool_end", args, kwargs)

    def on_tool_error(self, *args: Any, **kwargs: Any) -> None:
        self._forward("on_tool_error", args, kwargs)

    def on_agent_action(self, *args: Any, **kwargs: Any) -> None:
        self._forward("on_agent_action", args, kwargs)

    def on_agent_finish(self, *args: Any, **kwargs: Any) -> None:
        self._forward("on_agent_finish", args, kwargs)

    def on_retriever_start(self, *args: Any, **kwargs: Any) -> None:
        self._forward("on_retriever_start", args, kwargs)

    def on_retriever_end(self, *args: Any, **kwargs: Any) -> None:
        self._forward("on_retriever_end", args, kwargs)

    def on_retriever_error(self, *args: Any, **kwargs: Any) -> None:
        self._forward("on_retriever_error", args, kwargs)

    def on_text(self, *args: Any, **kwargs: Any) -> None:
        self._forward("on_text", args, kwargs)

    def on_retry(self, *args: Any, **kwargs: Any) -> None:
        self._forward("on_retry", args, kwargs)

    def on_custom_event(self, *args: Any, **kwargs: Any) -> None:
        self._forward("on_custom_event", args, kwargs)
