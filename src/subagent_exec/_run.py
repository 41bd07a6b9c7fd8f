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
import hashlib
import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler, BaseCallbackManager
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import LLMResult
from langchain_core.runnables import Runnable, RunnableBinding

from ._agents import agent_for_run
from ._budget_notes import current_handle
from ._checkpoints import Checkpoints, ResumePoint, is_transient
from ._config import SubagentConfig
from ._contract import RunHandle, RunOutcome
from ._errors import MaxTurnsExceeded, describe
from ._models import ModelSpec, explain_loop_binding_error, resolve_model

CLOSE_TIMEOUT_SECONDS = 5.0

logger = logging.getLogger("subagent_exec")


class StopCheckpoint(BaseCallbackHandler):
    """Raises at the entry of a model or tool call once a stop was requested,
    counts model calls against ``max_turns``, asks the handle whether the
    task's budgets allow each model call, and remembers which model answered
    each message (what its cost is counted with).

    ``raise_error`` makes LangChain propagate what we raise; ``run_inline``
    makes it run before the call, on the caller's thread.
    """

    raise_error = True
    run_inline = True

    def __init__(self, handle: RunHandle, max_turns: int) -> None:
        self._handle = handle
        self._cancel_event = handle.cancel_event
        self._max_turns = max_turns
        self._turns = 0
        self._lock = threading.Lock()
        #: The model of each model call in flight, and of each answer, by id.
        self._calling: dict[UUID, str | None] = {}
        self._answered_by: dict[str, str] = {}

    @property
    def model_calls(self) -> int:
        return self._turns

    def check(self) -> None:
        if self._cancel_event.is_set():
            raise asyncio.CancelledError(f"subagent stop: {self._handle.cancel_reason}")

    def model_of(self, message: AIMessage) -> str | None:
        """The name of the model that answered ``message`` (what the provider
        reports, else what was called), None when unknown."""
        reported = message.response_metadata.get("model_name") or message.response_metadata.get(
            "model"
        )
        if isinstance(reported, str) and reported:
            return reported
        return self._answered_by.get(message.id) if message.id else None

    def _model_call(self, kwargs: dict[str, Any]) -> None:
        self.check()
        metadata = kwargs.get("metadata") or {}
        model_name = metadata.get("ls_model_name")
        model_name = model_name if isinstance(model_name, str) and model_name else None
        self._handle.check_budget(model_name)
        with self._lock:
            self._turns += 1
            turns = self._turns
            run_id = kwargs.get("run_id")
            if run_id is not None and model_name is not None:
                self._calling[run_id] = model_name
        if turns > self._max_turns:
            raise MaxTurnsExceeded(
                f"sub-agent {self._handle.subagent_name!r} reached max_turns={self._max_turns} "
                "model calls without finishing"
            )

    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[BaseMessage]], **kwargs: Any
    ) -> None:
        self._model_call(kwargs)

    def on_llm_start(self, serialized: dict[str, Any], prompts: list[str], **kwargs: Any) -> None:
        self._model_call(kwargs)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            model_name = self._calling.pop(run_id, None)
            if model_name is None:
                return
            for generations in response.generations:
                for generation in generations:
                    message = getattr(generation, "message", None)
                    if isinstance(message, AIMessage) and message.id:
                        self._answered_by[message.id] = model_name

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            self._calling.pop(run_id, None)

    def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        **kwargs: Any,
    ) -> None:
        self.check()


#: Content blocks whose ``"text"`` is what the model said (a block without a
#: ``"type"`` counts: some providers and hand-written messages omit it).
_TEXT_BLOCK_TYPES = (None, "text", "output_text")


def message_text(message: BaseMessage) -> str:
    """The text of a message, from a string or from every common block shape:
    plain strings, ``{"type": "text" | "output_text", "text": ...}`` and
    ``{"text": ...}``; reasoning, thinking, tool-use and media blocks are not text."""
    content = message.content
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") in _TEXT_BLOCK_TYPES:
            text = block.get("text")
            if isinstance(text, str):
                parts.append(text)
    return "".join(parts)


def message_key(message: AIMessage) -> str:
    """What an AI message is recognised by when the values stream shows it again:
    its id, or (for a message without one) its content, so a different message
    is never taken for one already recorded."""
    if message.id:
        return message.id
    seen = json.dumps(
        [message.content, message.tool_calls, message.name], sort_keys=True, default=str
    )
    return "content-" + hashlib.sha256(seen.encode()).hexdigest()[:32]


def message_record(message: AIMessage, model_name: str | None = None) -> dict[str, Any]:
    """The JSON-ready form of an AI message kept in ``SubagentResult.ai_messages``
    (``model_name``: the model that answered, which its cost is counted with)."""
    return {
        "id": message.id,
        "type": "ai",
        "name": message.name,
        "text": message_text(message),
        "content": message.content,
        "tool_calls": [
            {"name": c["name"], "args": c["args"], "id": c.get("id")} for c in message.tool_calls
        ],
        "usage_metadata": dict(message.usage_metadata) if message.usage_metadata else None,
        "model_name": model_name,
    }


def final_text(messages: Sequence[Any], subagent: str) -> str:
    """The final answer: the text of the last AI message, or a clear statement."""
    for message in reversed(messages):
        if isinstance(message, AIMessage):
            text = message_text(message)
            if text.strip():
                return text
            return f"(sub-agent {subagent!r} ended with an AI message that has no text)"
    return f"(sub-agent {subagent!r} ended without producing any AI message)"


@dataclass(frozen=True)
class SubagentRun:
    """One run of a sub-agent, as data: what ``SubagentExecutor`` submits and
    what a remote backend sends to its workers. Calling it runs the sub-agent
    on the current loop, reporting into ``handle``."""

    config: SubagentConfig
    #: The tools the sub-agent is given (already filtered by the config).
    tools: tuple[Any, ...] = ()
    #: The model ``model="inherit"`` resolves to.
    parent_model: ModelSpec | None = None
    #: Tracing handlers (a callback manager keeps its tracing parent).
    callbacks: Sequence[Any] | BaseCallbackManager = ()
    #: ``create_agent`` middleware of a built-in sub-agent (e.g. the inbox
    #: that brings a background task its follow-up messages).
    middleware: tuple[Any, ...] = ()
    #: The runtime's checkpointer: every step is checkpointed on the thread
    #: named by the task id (docs/resume.md). None: not checkpointed.
    checkpoints: Checkpoints | None = None
    #: Set for a resumed task: what it goes on from (``SubagentRuntime.resume``).
    resume: ResumePoint | None = None

    async def __call__(self, handle: RunHandle) -> RunOutcome:
        """Build the sub-agent inside this loop, stream it, and return its answer."""
        config = self.config
        current_handle.set(handle)  # budget notes find their task (_budget_notes.py)
        checkpoint = StopCheckpoint(handle, config.max_turns)
        checkpoint.check()  # a run stopped before it began never builds anything
        close = None
        if config.graph_factory_takes_model:
            model, close = resolve_model(config.model, self.parent_model, subagent=config.name)
            graph: Runnable[Any, Any] = config.graph_factory(model)  # type: ignore[call-arg, misc]
        elif config.graph_factory is not None:
            graph = config.graph_factory()  # type: ignore[call-arg]
        else:
            model, close = resolve_model(config.model, self.parent_model, subagent=config.name)
            graph = agent_for_run(
                model, self.tools, config.system_prompt, middleware=self.middleware
            )
        try:
            checkpoint.check()
            resume = self.resume
            messages: list[Any] = list(resume.messages) if resume is not None else []
            run_config: dict[str, Any] = {
                "callbacks": merge_callbacks([checkpoint], self.callbacks),
                # Supersteps, not model turns (max_turns is enforced by the
                # checkpoint); create_agent binds its own limit, which wins.
                "recursion_limit": max(25, 4 * config.max_turns + 5),
                "run_name": config.name,
                "metadata": {
                    "subagent_task_id": handle.task_id,
                    "subagent_trace_id": handle.trace_id,
                    "subagent_name": config.name,
                },
            }
            if self.checkpoints is not None and self.checkpoints.enabled:
                run_config["configurable"] = self.checkpoints.configurable(
                    handle.task_id, handle.cancel_event, fresh=resume is None
                )
            stream_input: Any = (
                {"messages": [HumanMessage(content=handle.prompt)]}
                if resume is None
                else resume.stream_input
            )
            resumes = 0
            while True:
                try:
                    stream = graph.astream(
                        stream_input, config=run_config,  # type: ignore[arg-type]
                        **_stream_kwargs(graph),
                    )
                    async for state in stream:
                        # A message that arrives after the stop was requested is refused
                        # by the handle (unless a grace period let its call finish).
                        if isinstance(state, dict) and isinstance(state.get("messages"), list):
                            messages = state["messages"]
                            _record_ai_messages(handle, messages, checkpoint, resume)
                        checkpoint.check()
                    break
                except Exception as exc:
                    if not self._goes_on_after(exc, resumes, handle):
                        raise
                    resumes += 1
                    stream_input = None  # from this task's last checkpoint
            return RunOutcome(text=final_text(messages, config.name))
        except Exception as exc:
            # A client bound to another event loop: name the model and the fix
            # (_models/_loop_errors.py) instead of a bare connection error.
            binding = explain_loop_binding_error(exc)
            if binding is None:
                raise
            raise binding from exc
        finally:
            if close is not None:
                # Shielded and bounded: a second cancel must not skip closing the
                # run's HTTP client, and a hung close must not hold the worker.
                try:
                    await asyncio.wait_for(asyncio.shield(close()), CLOSE_TIMEOUT_SECONDS)
                except (TimeoutError, asyncio.CancelledError):
                    pass


    def _goes_on_after(self, exc: Exception, resumes: int, handle: RunHandle) -> bool:
        """Whether the run goes on from its last checkpoint after ``exc``: a
        transient error, ``max_resumes`` not used up, checkpoints kept, and no
        stop (a stop, deadline or budget is never retried)."""
        config = self.config
        if (
            resumes >= config.max_resumes
            or self.checkpoints is None
            or not self.checkpoints.enabled
            or handle.cancel_event.is_set()
            or explain_loop_binding_error(exc) is not None
            or not is_transient(exc, config.resume_on)
        ):
            return False
        handle.record_resume(resumes + 1, describe(exc))
        logger.warning("%s %s; going on from the last checkpoint (resume %d of %d)",
                       handle.log_prefix, describe(exc), resumes + 1, config.max_resumes)
        return True


def merge_callbacks(
    first: Sequence[Any], callbacks: Sequence[Any] | BaseCallbackManager
) -> list[Any] | BaseCallbackManager:
    """``first`` handlers, then ``callbacks``. A callback manager (the ``task``
    tool passes one) stays a manager, so its ``parent_run_id`` nests the
    sub-agent's runs under the caller's run; ``first`` become inheritable
    handlers at its front."""
    if isinstance(callbacks, BaseCallbackManager):
        manager = callbacks.copy()
        manager.handlers[:0] = first
        manager.inheritable_handlers[:0] = first
        return manager
    return [*first, *callbacks]


def _stream_kwargs(graph: Runnable[Any, Any]) -> dict[str, Any]:
    """``stream_mode="values"`` for LangGraph graphs only: any other Runnable
    passes unknown keyword arguments on to the user's function, which fails."""
    from langgraph.pregel import Pregel

    target: Any = graph
    while isinstance(target, RunnableBinding):
        target = target.bound
    return {"stream_mode": "values"} if isinstance(target, Pregel) else {}


def _record_ai_messages(
    handle: RunHandle,
    messages: Sequence[Any],
    checkpoint: StopCheckpoint,
    resume: ResumePoint | None = None,
) -> None:
    known = resume.known_keys if resume is not None else frozenset()
    for message in messages:
        if isinstance(message, AIMessage):
            key = message_key(message)
            if key not in known:  # a resumed task records only its own messages
                record = message_record(message, checkpoint.model_of(message))
                handle.record_ai_message(record, key)
