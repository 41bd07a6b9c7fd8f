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
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Annotated, Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForToolRun,
    CallbackManagerForToolRun,
)
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool, InjectedToolCallId
from pydantic import BaseModel, Field, PrivateAttr, ValidationError

from ._budget import Budget
from ._checks import check_callable, check_text
from ._config import INHERIT, SubagentConfig, check_configs
from ._context import task_in_scope
from ._delegation import Delegation, OutputSink, with_relay
from ._errors import SubagentError
from ._executor import SubagentExecutor
from ._lead_budgets import LeadBudgets
from ._lead_model import LeadModels
from ._lead_thread import lead_scope
from ._models import ModelSpec
from ._runtime import SubagentRuntime
from ._tracing import child_callbacks

logger = logging.getLogger("subagent_exec")

#: A listener for the tool's progress events (called on the caller's side).
EventListener = Callable[[dict[str, Any]], None]

_DESCRIPTION_HEAD = (
    "Delegate a task to a sub-agent. The sub-agent works on it on its own, with its own "
    "tools, and its final answer comes back as this tool's result. Several task calls in "
    "one message run in parallel. The sub-agent sees nothing of this conversation: put "
    "everything it needs into `prompt`.\n\nAvailable sub-agents (`subagent_type`):"
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
    _lead_models: LeadModels | None = PrivateAttr(default=None)  # "inherit" under the middleware
    _stream_output: bool = PrivateAttr(default=False)  # task_output events (_output_relay.py)
    _budgets: LeadBudgets | None = PrivateAttr(default=None)  # budget=: one meter per lead run

    #: Marks a tool that works only in the process of the runtime it belongs
    #: to: a remote backend leaves it on the driver and gives its workers a
    #: stand-in that calls back into it (docs/ray.md).
    runs_on_driver: bool = True

    @property
    def executors(self) -> Mapping[str, SubagentExecutor]:
        """The executor of each sub-agent this tool delegates to, by name."""
        return MappingProxyType(self._executors)

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
        output = OutputSink(loop) if self._stream_output else None
        started = self._start(description, prompt, subagent_type, tool_call_id, tracing, output)
        if isinstance(started, ToolMessage):
            return started
        call, runtime = started
        try:
            # Events arrive on this loop, in this tool's context: the stream
            # writer works only there. Our slot runs our children meanwhile.
            await runtime.wait_terminal(
                call.holder, on_event=call.on_task_event, cancel_reason=call.cancel_reason()
            )
        except asyncio.CancelledError:
            call.finished()  # the child has stopped, or its cleanup is stuck
            raise
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
        output = OutputSink(None) if self._stream_output else None
        started = self._start(description, prompt, subagent_type, tool_call_id, tracing, output)
        if isinstance(started, ToolMessage):
            return started
        call, runtime = started
        try:
            runtime.wait_terminal_blocking(
                call.holder, on_event=call.on_task_event, cancel_reason=call.cancel_reason()
            )
        except BaseException:  # KeyboardInterrupt and friends: the child was stopped
            call.finished()
            raise
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
        output: OutputSink | None = None,
    ) -> tuple[Delegation, SubagentRuntime] | ToolMessage:
        """Check the input and start the child; a ToolMessage says why not."""
        executor = self._executors.get(subagent_type)
        if executor is None:
            return self._rejected(
                tool_call_id,
                subagent_type,
                f"unknown subagent_type {subagent_type!r}; available sub-agents: "
                f"{', '.join(self._executors)}",
            )
        if self._lead_models is not None:
            inherited = self._lead_models.executor_for(executor, tool_call_id)
            if isinstance(inherited, str):
                return self._rejected(tool_call_id, subagent_type, inherited)
            executor = inherited
        if not prompt.strip():
            return self._rejected(
                tool_call_id,
                subagent_type,
                "prompt is empty; give the sub-agent the complete task to do "
                "(it sees nothing of this conversation)",
            )
        runtime = executor.runtime
        # A top-level call belongs to the lead's thread (cancel_thread stops it);
        # a nested one inherits its parent's.
        scope = lead_scope(runtime) if task_in_scope(runtime) is None else None
        try:
            budgets = self._budgets
            # The holder itself, not its id: with a small retain_max a child that
            # ends at once could be evicted before a lookup by id.
            holder = executor.start(
                prompt,
                callbacks=with_relay(tracing, output),
                thread_id=scope.thread_id if scope is not None else None,
                draw_on=budgets.draw_on(runtime, call_id=tool_call_id) if budgets else (),
            )
        except (SubagentError, ValueError) as exc:  # depth, capacity, closed, budget spent
            return self._rejected(
                tool_call_id, subagent_type, f"could not start sub-agent {subagent_type!r}: {exc}"
            )
        task_id = holder.task_id
        call = Delegation(
            tool_name=self.name,
            tool_call_id=tool_call_id,
            subagent_type=subagent_type,
            description=description.strip() or prompt.strip()[:60],
            task_id=task_id,
            holder=holder,
            emit=self._emitter(),
        )
        call.started()
        if output is not None:
            output.attach(call)
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
    stream_subagent_output: bool = False,
    budget: Budget | None = None,
) -> TaskTool:
    """Build the ``task`` tool that delegates to the given sub-agents.

    ``budget``: limits shared by everything one run of the lead delegates
    through this tool (one meter per lead run; docs/budgets.md). A sub-agent
    stopped by a budget comes back as a ToolMessage with its partial answer
    and what it used.

    ``stream_subagent_output``: every token of a sub-agent's model output also
    reaches the caller's stream as a ``task_output`` custom event (tagged with
    ``task_id``, ``tool_call_id`` and ``subagent_type``) while it is produced.
    Off by default, and free when off (``_output_relay.py``).

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
    return build_task_tool(
        subagents,
        tools,
        parent_model,
        runtime,
        name,
        on_event=on_event,
        stream_subagent_output=stream_subagent_output,
        budget=budget,
    )


def build_task_tool(
    subagents: Sequence[SubagentConfig],
    tools: Sequence[Any],
    parent_model: ModelSpec | None,
    runtime: SubagentRuntime | None,
    name: str,
    *,
    on_event: EventListener | None,
    stream_subagent_output: bool,
    lead_models: LeadModels | None = None,
    budget: Budget | None = None,
) -> TaskTool:
    """``make_task_tool``, plus what ``SubagentMiddleware`` adds: ``lead_models``
    resolves ``model="inherit"`` to the lead agent's own model per call."""
    check_text("make_task_tool", "name", name)
    configs = check_configs("make_task_tool", subagents)
    clashing = [t for t in tools if getattr(t, "name", None) == name]
    if clashing:
        raise ValueError(
            f"make_task_tool: tools already holds a tool named {name!r}; the task tool adds "
            "itself for nested delegation, so pass a different name="
        )
    if on_event is not None:
        check_callable("make_task_tool", "on_event", on_event)
    inheriting = [c.name for c in configs if c.model == INHERIT and c.graph_factory is None]
    if inheriting and (parent_model is None or parent_model == INHERIT):
        raise ValueError(
            f"make_task_tool: sub-agent(s) {inheriting} have model='inherit' but no parent_model "
            "was given; pass parent_model=... (the lead agent's model), or use "
            "SubagentMiddleware, which inherits the model of the agent it is attached to"
        )

    lines = [f"- {c.name}: {c.description or '(no description)'}" for c in configs]
    tool = TaskTool(
        name=name,
        description=_DESCRIPTION_HEAD + "\n" + "\n".join(lines),
        handle_validation_error=_validation_message,
    )
    if not isinstance(stream_subagent_output, bool):
        raise TypeError(
            "make_task_tool.stream_subagent_output must be a bool, "
            f"got {stream_subagent_output!r}"
        )
    tool._on_event = on_event
    tool._stream_output = stream_subagent_output
    tool._lead_models = lead_models
    if budget is not None and not isinstance(budget, Budget):
        raise TypeError(f"make_task_tool.budget must be a Budget or None, got {budget!r}")
    tool._budgets = LeadBudgets(budget, per="run") if budget is not None else None
    for config in configs:
        # The default disallowed_tools names "task"; it keeps meaning "this
        # sub-agent does not delegate" whatever this tool is called.
        blocked = "task" in config.disallowed_tools or name in config.disallowed_tools
        available = list(tools) if blocked else [*tools, tool]
        tool._executors[config.name] = SubagentExecutor(
            config, tools=available, parent_model=parent_model, runtime=runtime
        )
    return tool
