"""The lead agent's ``task`` tool: delegate to a sub-agent, wait, report.

One ``task`` call starts one sub-agent with ``execute_async`` and waits for
its terminal status without polling (the terminal transition wakes the tool's
loop). Its parent is the sub-agent whose code makes the call (none for a
top-level lead agent), so nested delegation builds the task tree by itself.
While it waits, a calling sub-agent lends its worker slot to its children,
so nested delegation cannot deadlock a saturated pool.

The tool never raises for a child's outcome: langgraph cancels the parallel
sibling tool calls of a tool that raises. Every outcome, and every bad input,
becomes a ToolMessage (``artifact`` = the structured facts). It re-raises
only ``CancelledError`` (after stopping the child and waiting, bounded, for
its cleanup) and langgraph's bubble-up exceptions, which it never catches.

Progress goes to the caller's LangGraph stream as custom events, written
from the caller's side: ``task_started``, one ``task_running`` per new AI
message of the child, and exactly one of ``task_completed`` /
``task_failed`` / ``task_timed_out`` / ``task_cancelled``. Each carries
``task_id``, ``tool_call_id``, ``subagent_type`` and ``parent_id``. A stream
shows the delegations of its own agent only: deeper levels write into their
own sub-agent's stream. The ``on_event`` listener of :func:`make_task_tool`
sees every level (the tool is shared by the whole tree), and
``runtime.subscribe`` sees every task.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any, cast

from langchain.agents.middleware import AgentMiddleware, AgentState, ModelRequest, ModelResponse
from langchain_core.callbacks import (
    AsyncCallbackManagerForToolRun,
    CallbackManagerForToolRun,
)
from langchain_core.messages import AIMessage, SystemMessage, ToolMessage
from langchain_core.tools import BaseTool, InjectedToolCallId
from pydantic import BaseModel, Field, PrivateAttr, ValidationError

from ._backends.base import last_ai_text
from ._config import SubagentConfig
from ._errors import SubagentError
from ._events import TaskEvent
from ._executor import SubagentExecutor
from ._models import ModelSpec
from ._result import SubagentResult
from ._runtime import SubagentRuntime
from ._status import SubagentStatus
from ._tracing import child_callbacks

logger = logging.getLogger("subagent_exec")

#: A listener for the tool's progress events (called on the caller's side).
EventListener = Callable[[dict[str, Any]], None]

TERMINAL_EVENTS: dict[SubagentStatus, str] = {
    SubagentStatus.COMPLETED: "task_completed",
    SubagentStatus.FAILED: "task_failed",
    SubagentStatus.TIMED_OUT: "task_timed_out",
    SubagentStatus.CANCELLED: "task_cancelled",
}

_DESCRIPTION_HEAD = (
    "Delegate a task to a sub-agent. The sub-agent works on it on its own, with its own "
    "tools, and its final answer comes back as this tool's result. Several task calls in "
    "one message run in parallel. The sub-agent sees nothing of this conversation: put "
    "everything it needs into `prompt`.\n\nAvailable sub-agents (`subagent_type`):"
)

SYSTEM_PROMPT_SECTION = (
    "## Delegating with `{name}`\n"
    "You can hand self-contained pieces of work to sub-agents with the `{name}` tool. "
    "Independent pieces can be delegated in one message: they run in parallel. Each "
    "sub-agent starts from nothing but the prompt you give it, so make the prompt "
    "complete. Use the answers they return to build your own answer."
)


class TaskInput(BaseModel):
    """Arguments of the ``task`` tool."""

    description: str = Field(
        description="A short label for the task (3-6 words), shown in progress displays."
    )
    prompt: str = Field(
        description=(
            "The complete task for the sub-agent. It sees nothing of this conversation, "
            "so include every fact and requirement it needs."
        )
    )
    subagent_type: str = Field(
        description="The sub-agent that does the work: one of the names in the tool description."
    )
    tool_call_id: Annotated[str, InjectedToolCallId]


class TaskTool(BaseTool):
    """Delegates to sub-agents. Build it with :func:`make_task_tool`.

    Call it with a ToolCall (as every tool node does): the ToolMessage it
    returns needs the tool call's id.
    """

    name: str = "task"
    description: str = ""
    args_schema: type[BaseModel] = TaskInput
    _executors: dict[str, SubagentExecutor] = PrivateAttr(default_factory=dict)
    _on_event: EventListener | None = PrivateAttr(default=None)

    # -- the two entry points -----------------------------------------------------

    async def _arun(
        self,
        description: str,
        prompt: str,
        subagent_type: str,
        tool_call_id: str,
        run_manager: AsyncCallbackManagerForToolRun | None = None,
    ) -> ToolMessage:
        loop = asyncio.get_running_loop()
        tracing = child_callbacks(run_manager.get_child() if run_manager else None, loop)
        started = self._start(description, prompt, subagent_type, tool_call_id, tracing)
        if isinstance(started, ToolMessage):
            return started
        call, runtime = started
        # Events are handed over through a queue and emitted here, in the tool's
        # own coroutine: the stream writer works only in the tool's context.
        events: asyncio.Queue[TaskEvent] = asyncio.Queue()
        # Registered under the lock together with the backlog snapshot, so each
        # AI message is reported exactly once: from the backlog or as an event.
        with runtime._lock:
            # Given the holder, this resolves even if the child already ended
            # and was evicted by retention.
            waiter = runtime.terminal_waiter(call.holder, on_event=events.put_nowait)
            backlog = list(call.holder.ai_messages)
        for message in backlog:
            call.running(message)
        try:
            with runtime._lending(call.parent_id):  # our slot runs our children meanwhile
                try:
                    while not waiter.done():
                        call.on_task_event(await events.get())
                except asyncio.CancelledError:
                    runtime.request_cancel(call.task_id, call.cancel_reason())
                    try:
                        await asyncio.wait_for(
                            asyncio.shield(waiter), runtime.cleanup_timeout_seconds + 1.0
                        )
                    except (TimeoutError, asyncio.CancelledError):
                        pass  # a second cancel or a stuck cleanup: report what we know
                    _drain(events, call)
                    call.finished()
                    raise
        finally:
            if not waiter.done():
                waiter.cancel()  # also stops the event hand-over
        _drain(events, call)
        call.finished()
        return call.message()

    def _run(
        self,
        description: str,
        prompt: str,
        subagent_type: str,
        tool_call_id: str,
        run_manager: CallbackManagerForToolRun | None = None,
    ) -> ToolMessage:
        # For graphs run with invoke()/stream(): same contract, blocking wait.
        tracing = child_callbacks(run_manager.get_child() if run_manager else None, None)
        started = self._start(description, prompt, subagent_type, tool_call_id, tracing)
        if isinstance(started, ToolMessage):
            return started
        call, runtime = started
        events: queue.SimpleQueue[TaskEvent] = queue.SimpleQueue()
        with runtime._lock:
            unwatch = runtime._events.watch(call.task_id, events.put)
            backlog = list(call.holder.ai_messages)
            done = call.holder.is_terminal
        try:
            for message in backlog:
                call.running(message)
            with runtime._lending(call.parent_id):
                try:
                    while not done:
                        event = events.get()
                        call.on_task_event(event)
                        done = event.is_terminal
                except BaseException:  # KeyboardInterrupt and friends: stop the child
                    runtime.request_cancel(call.task_id, call.cancel_reason())
                    call.holder.wait(runtime.cleanup_timeout_seconds + 1.0)
                    call.finished()
                    raise
        finally:
            unwatch()
        call.finished()
        return call.message()

    # -- shared steps -----------------------------------------------------------------

    def _start(
        self,
        description: str,
        prompt: str,
        subagent_type: str,
        tool_call_id: str,
        tracing: Any,
    ) -> tuple[_Call, SubagentRuntime] | ToolMessage:
        """Check the input and start the child; a ToolMessage says why not."""
        executor = self._executors.get(subagent_type)
        if executor is None:
            return self._rejected(
                tool_call_id,
                subagent_type,
                f"unknown subagent_type {subagent_type!r}; available sub-agents: "
                f"{', '.join(self._executors)}",
            )
        if not prompt.strip():
            return self._rejected(
                tool_call_id,
                subagent_type,
                "prompt is empty; give the sub-agent the complete task to do "
                "(it sees nothing of this conversation)",
            )
        runtime = executor.runtime
        try:
            # The holder itself, not its id: with a small retain_max a child that
            # ends at once could be evicted before a lookup by id.
            holder = executor._start(runtime, prompt, callbacks=tracing or ())
        except (SubagentError, ValueError) as exc:  # depth, capacity, closed runtime
            return self._rejected(
                tool_call_id, subagent_type, f"could not start sub-agent {subagent_type!r}: {exc}"
            )
        task_id = holder.task_id
        call = _Call(
            tool_name=self.name,
            tool_call_id=tool_call_id,
            subagent_type=subagent_type,
            description=description.strip() or prompt.strip()[:60],
            task_id=task_id,
            holder=holder,
            emit=self._emitter(),
        )
        call.started()
        return call, runtime

    def _rejected(self, tool_call_id: str, subagent_type: str, problem: str) -> ToolMessage:
        logger.info("task tool call %s refused: %s", tool_call_id, problem)
        return ToolMessage(
            content=f"Error: {problem}",
            tool_call_id=tool_call_id,
            name=self.name,
            status="error",
            artifact={
                "task_id": None,
                "status": "rejected",
                "subagent_type": subagent_type,
                "tool_call_id": tool_call_id,
                "error": problem,
            },
        )

    def _emitter(self) -> Callable[[dict[str, Any]], None]:
        """Write to the caller's stream (if any) and to the ``on_event`` listener."""
        writer = _stream_writer()
        listener = self._on_event

        def emit(event: dict[str, Any]) -> None:
            # Emitting must never break the delegation, least of all its cleanup.
            for sink in (writer, listener):
                if sink is None:
                    continue
                try:
                    sink(event)
                except Exception:
                    logger.exception(
                        "[task=%s] could not deliver the %s event", event["task_id"], event["type"]
                    )

        return emit


class _Call:
    """One delegation, seen from the calling side: its events and its answer."""

    def __init__(
        self,
        *,
        tool_name: str,
        tool_call_id: str,
        subagent_type: str,
        description: str,
        task_id: str,
        holder: SubagentResult,
        emit: Callable[[dict[str, Any]], None],
    ) -> None:
        self.tool_name = tool_name
        self.tool_call_id = tool_call_id
        self.subagent_type = subagent_type
        self.description = description
        self.task_id = task_id
        self.holder = holder
        self.parent_id = holder.parent_id
        self._emit = emit
        self._closed = False  # the terminal event was emitted; nothing follows it

    def _event(self, kind: str, **data: Any) -> dict[str, Any]:
        return {
            "type": kind,
            "task_id": self.task_id,
            "tool_call_id": self.tool_call_id,
            "subagent_type": self.subagent_type,
            "parent_id": self.parent_id,
            "description": self.description,
            "trace_id": self.holder.trace_id,
            "timestamp": time.time(),
            **data,
        }

    def started(self) -> None:
        holder = self.holder
        logger.info(
            "[task=%s trace=%s] %s call %s delegated to %r",
            self.task_id,
            holder.trace_id,
            self.tool_name,
            self.tool_call_id,
            self.subagent_type,
        )
        self._emit(self._event("task_started", status=holder.status.value, depth=holder.depth))

    def running(self, message: dict[str, Any]) -> None:
        if not self._closed:
            self._emit(self._event("task_running", status="running", message=message))

    def on_task_event(self, event: TaskEvent) -> None:
        if event.kind == "ai_message":
            self.running(event.data["message"])

    def finished(self) -> None:
        """Emit the one terminal event (CANCELLED if the child is still unwinding)."""
        if self._closed:
            return
        self._closed = True
        holder = self.holder
        status = holder.status
        kind = TERMINAL_EVENTS.get(status, "task_cancelled")
        self._emit(
            self._event(
                kind,
                status=status.value,
                stopping=not status.is_terminal,
                error=holder.error,
                cancel_reason=holder.cancel_reason,
                stop_reason=holder.stop_reason,
                duration_seconds=holder.duration_seconds,
                result=holder.result if status is SubagentStatus.COMPLETED else None,
            )
        )
        logger.info(
            "[task=%s trace=%s] %s call %s ended: %s",
            self.task_id,
            holder.trace_id,
            self.tool_name,
            self.tool_call_id,
            status.value if status.is_terminal else "stopping",
        )

    def cancel_reason(self) -> str:
        return (
            f"the {self.tool_name!r} tool call {self.tool_call_id} that started it was "
            "cancelled (its caller's run was cancelled)"
        )

    def message(self) -> ToolMessage:
        """The ToolMessage for the child's terminal status."""
        holder = self.holder
        status = holder.status
        who = f"Sub-agent {self.subagent_type!r} (task {self.task_id})"
        if status is SubagentStatus.COMPLETED:
            content = holder.result or f"{who} finished without an answer."
        elif status is SubagentStatus.FAILED:
            content = f"{who} failed: {holder.error}"
        elif status is SubagentStatus.TIMED_OUT:
            content = f"{who} timed out: {holder.cancel_reason}"
        else:
            content = f"{who} was cancelled: {holder.cancel_reason}"
        if status is not SubagentStatus.COMPLETED:
            partial = holder.result or last_ai_text(holder)
            if partial:
                content += f"\nIts last message before it stopped:\n{partial}"
        return ToolMessage(
            content=content,
            tool_call_id=self.tool_call_id,
            name=self.tool_name,
            status="success" if status is SubagentStatus.COMPLETED else "error",
            artifact={
                **holder.to_dict(),
                "tool_call_id": self.tool_call_id,
                "subagent_type": self.subagent_type,
                "description": self.description,
            },
        )


def _drain(events: asyncio.Queue[TaskEvent], call: _Call) -> None:
    while not events.empty():
        call.on_task_event(events.get_nowait())


def _stream_writer() -> Callable[[Any], None] | None:
    """The caller's LangGraph stream writer, or None outside a graph run."""
    from langgraph.config import get_stream_writer

    try:
        return get_stream_writer()
    except (RuntimeError, KeyError):
        return None


def _validation_message(error: Exception) -> str:
    if isinstance(error, ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in error.errors()
        )
    else:
        problems = str(error)
    return (
        f"Error: invalid arguments ({problems}); the task tool takes description (short "
        "label), prompt (the complete task) and subagent_type (a sub-agent name)"
    )


def make_task_tool(
    subagents: Sequence[SubagentConfig],
    tools: Sequence[Any] = (),
    parent_model: ModelSpec | None = None,
    runtime: SubagentRuntime | None = None,
    name: str = "task",
    *,
    on_event: EventListener | None = None,
) -> TaskTool:
    """Build the ``task`` tool that delegates to the given sub-agents.

    ``tools`` are the tools sub-agents may be given (each config's allow-list
    and ``disallowed_tools`` pick from them); the task tool itself is added,
    so a sub-agent whose ``disallowed_tools`` no longer names ``"task"`` can
    delegate further. ``parent_model`` serves ``model="inherit"``.
    ``runtime`` defaults to the process-wide runtime at call time.
    ``on_event`` also receives every progress event, of every level of the
    tree, on the thread of the agent that made the call (so it must be
    thread-safe). The stream writer of a cancelled run is gone with its
    stream; the listener is how a host sees the terminal event of a run it
    cancelled.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError("make_task_tool: name must be a non-empty string")
    if isinstance(subagents, SubagentConfig):
        raise ValueError("make_task_tool: subagents must be a sequence of SubagentConfig")
    configs = list(subagents)
    if not configs:
        raise ValueError("make_task_tool: give at least one SubagentConfig in subagents")
    bad = [type(c).__name__ for c in configs if not isinstance(c, SubagentConfig)]
    if bad:
        raise ValueError(f"make_task_tool: subagents must be SubagentConfig, got {bad}")
    names = [c.name for c in configs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"make_task_tool: sub-agent names must be unique, repeated: {duplicates}")
    clashing = [t for t in tools if getattr(t, "name", None) == name]
    if clashing:
        raise ValueError(
            f"make_task_tool: tools already holds a tool named {name!r}; the task tool adds "
            "itself for nested delegation, so pass a different name="
        )
    if on_event is not None and not callable(on_event):
        raise ValueError("make_task_tool: on_event must be callable")

    lines = [f"- {c.name}: {c.description or '(no description)'}" for c in configs]
    tool = TaskTool(
        name=name,
        description=_DESCRIPTION_HEAD + "\n" + "\n".join(lines),
        handle_validation_error=_validation_message,
    )
    tool._on_event = on_event
    for config in configs:
        # The default disallowed_tools names "task"; it keeps meaning "this
        # sub-agent does not delegate" whatever this tool is called.
        blocked = "task" in config.disallowed_tools or name in config.disallowed_tools
        available = list(tools) if blocked else [*tools, tool]
        tool._executors[config.name] = SubagentExecutor(
            config, tools=available, parent_model=parent_model, runtime=runtime
        )
    return tool


class SubagentMiddleware(AgentMiddleware[AgentState[Any], Any, Any]):
    """Adds the ``task`` tool and a short system-prompt section to ``create_agent``.

    ``create_agent(model, middleware=[SubagentMiddleware([researcher, writer])])``
    is the same as passing ``make_task_tool(...)`` in ``tools`` plus a line in
    the system prompt telling the model how to delegate.
    """

    def __init__(
        self,
        subagents: Sequence[SubagentConfig],
        tools: Sequence[Any] = (),
        parent_model: ModelSpec | None = None,
        runtime: SubagentRuntime | None = None,
        name: str = "task",
        *,
        system_prompt: str | None = None,
        on_event: EventListener | None = None,
    ) -> None:
        super().__init__()
        self.task_tool = make_task_tool(
            subagents, tools, parent_model, runtime, name, on_event=on_event
        )
        self.tools = [self.task_tool]
        self.system_prompt = (
            system_prompt if system_prompt is not None else SYSTEM_PROMPT_SECTION.format(name=name)
        )

    def _with_section(self, request: ModelRequest[Any]) -> ModelRequest[Any]:
        if request.system_message is None:
            system = SystemMessage(content=self.system_prompt)
        else:
            system = SystemMessage(
                content=cast(
                    "list[str | dict[str, str]]",
                    [
                        *request.system_message.content_blocks,
                        {"type": "text", "text": f"\n\n{self.system_prompt}"},
                    ],
                )
            )
        return request.override(system_message=system)

    def wrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]],
    ) -> ModelResponse[Any] | AIMessage:
        return handler(self._with_section(request))

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> ModelResponse[Any] | AIMessage:
        return await handler(self._with_section(request))
