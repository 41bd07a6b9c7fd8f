"""Resuming a stopped sub-agent, and following up a finished one: the
sub-agents a runtime knows by name, and what ``SubagentRuntime.resume`` checks,
forks and submits (docs/resume.md).

A resume is a **new** task (new id, ``resumed_from`` = the old one) whose
checkpoint thread starts as a copy of the old task's, so the old task's record
and checkpoints never change. It goes on from the last completed step: what
was done before it is not done again; a step the stop interrupted is run
again (tools should be idempotent).
"""

from __future__ import annotations

import contextvars
import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.base import CheckpointTuple

from ._budget import Budget
from ._budget_notes import NOTES_MIDDLEWARE
from ._checkpoints import Checkpoints, ResumePoint
from ._checks import check_number, check_task_id
from ._config import SubagentConfig, check_configs, model_name_of
from ._errors import ResumeError, UnknownTaskError
from ._models import ModelSpec
from ._result import SubagentResult
from ._run import SubagentRun, message_key
from ._status import SubagentStatus

logger = logging.getLogger("subagent_exec")

#: Statuses a task may be resumed from without a message.
RESUMABLE = frozenset(
    {SubagentStatus.CANCELLED, SubagentStatus.TIMED_OUT, SubagentStatus.FAILED}
)


@dataclass(frozen=True)
class RegisteredSubagent:
    """A sub-agent a runtime can resume by name: its config and what its
    runs are given (tools already selected by the config)."""

    config: SubagentConfig
    tools: tuple[Any, ...] = ()
    parent_model: ModelSpec | None = None
    middleware: tuple[Any, ...] = ()


class Resumer:
    """One runtime's registered sub-agents and its resume operation."""

    def __init__(self, checkpoints: Checkpoints) -> None:
        self.checkpoints = checkpoints
        self._lock = threading.Lock()
        self._subagents: dict[str, RegisteredSubagent] = {}

    def register(
        self,
        configs: Sequence[SubagentConfig],
        *,
        tools: Sequence[Any] = (),
        parent_model: ModelSpec | None = None,
        middleware: Sequence[Any] = (),
    ) -> None:
        """Know ``configs`` by name (the latest registration of a name wins)."""
        chosen = check_configs("SubagentRuntime.register_subagents", configs)
        entries = {
            c.name: RegisteredSubagent(
                c, tuple(c.select_tools(list(tools))), parent_model, tuple(middleware)
            )
            for c in chosen
        }
        with self._lock:
            self._subagents.update(entries)

    def register_one(self, entry: RegisteredSubagent) -> None:
        """An executor's own registration (its tools already selected)."""
        with self._lock:
            self._subagents[entry.config.name] = entry

    def registered(self, name: str) -> RegisteredSubagent | None:
        with self._lock:
            return self._subagents.get(name)

    def resume(
        self,
        task_id: str,
        message: str | None,
        *,
        timeout_seconds: float | None,
        budget: Budget | None = None,
        task_id_new: str | None = None,
        get: Callable[[str], SubagentResult | None],
        submit: Callable[..., SubagentResult],
    ) -> SubagentResult:
        """Start the task that goes on from ``task_id`` (see the module doc),
        with the runtime's public ``get`` and ``submit``."""
        check_task_id("SubagentRuntime.resume", "task_id", task_id)
        if message is not None:
            if not isinstance(message, str):
                raise TypeError(
                    f"SubagentRuntime.resume.message must be a string or None, got {message!r}"
                )
            if not message.strip():
                raise ValueError("SubagentRuntime.resume.message must not be empty (or None)")
        if timeout_seconds is not None:
            check_number(
                "SubagentRuntime.resume", "timeout_seconds", timeout_seconds,
                positive=True, finite=True,
            )
        if budget is not None and not isinstance(budget, Budget):
            raise TypeError(
                f"SubagentRuntime.resume.budget must be a Budget or None, got {budget!r}"
            )
        original = get(task_id)
        if original is None:
            raise UnknownTaskError(
                f"no task {task_id!r} in this runtime or its store: nothing to resume"
            )
        self._check_resumable(original, message)
        entry = self.registered(original.subagent_name)
        if entry is None:
            raise ResumeError(
                f"cannot resume task {task_id}: no sub-agent named "
                f"{original.subagent_name!r} is registered with this runtime; declare it "
                "(SubagentExecutor, a task tool, background tools or "
                "runtime.register_subagents([...]))",
                "unknown_subagent",
            )
        if not self.checkpoints.enabled:
            raise ResumeError(
                f"cannot resume task {task_id}: this runtime keeps no checkpoints "
                f"({self.checkpoints.unavailable})",
                "unavailable",
            )
        # A resumed task keeps its parent only while that parent runs: a
        # stopped or finished parent cannot have new work (stop means the
        # whole tree), so then it is a root of the same thread and owner.
        parent = get(original.parent_id) if original.parent_id is not None else None
        running = parent is not None and not (
            parent.stored or parent.is_terminal or parent.stopping
        )
        parent_id = original.parent_id if running else None
        # Budgets: the config's and the one given, besides what is left of the
        # ancestors' (drawn on by submission, through the parent).
        config = entry.config
        budgets = tuple(b for b in (config.budget, budget) if b is not None)
        inherited = parent.budgets if parent is not None and running else ()
        middleware = entry.middleware
        if config.graph_factory is None and NOTES_MIDDLEWARE not in middleware and any(
            b.warn_at is not None for b in (*budgets, *(m.budget for m in inherited))
        ):
            middleware = (*middleware, NOTES_MIDDLEWARE)  # budget warnings reach the model
        new_id = task_id_new or uuid.uuid4().hex
        point = self._fork(original, new_id, message)
        run = SubagentRun(
            config=config,
            tools=entry.tools,
            parent_model=entry.parent_model,
            middleware=middleware,
            checkpoints=self.checkpoints,
            resume=point,
        )
        try:
            holder = submit(
                subagent_name=entry.config.name,
                task=message if message is not None else original.task,
                run=run,
                timeout_seconds=(
                    timeout_seconds
                    if timeout_seconds is not None
                    else entry.config.timeout_seconds
                ),
                task_id=new_id,
                parent_id=parent_id,
                trace_id=original.trace_id,
                owner=original.owner,
                context=contextvars.Context(),
                thread_id=original.thread_id,
                # A child whose parent stopped becomes a root that outlives it.
                background=original.background
                or (original.parent_id is not None and parent_id is None),
                resumed_from=original.task_id,
                budgets=budgets,
                model_name=model_name_of(config.model, entry.parent_model),
            )
        except BaseException:
            self.checkpoints.forget(new_id)
            raise
        logger.info(
            "[task=%s trace=%s] resumed from task %s%s",
            new_id, original.trace_id, task_id, " with a message" if message else "",
        )
        return holder

    @staticmethod
    def _check_resumable(original: SubagentResult, message: str | None) -> None:
        status = original.status
        if not status.is_terminal:
            raise ResumeError(
                f"task {original.task_id} is {status.value}, not stopped: send it a "
                "message with message_task, or stop it before resuming",
                "unfinished",
            )
        if status is SubagentStatus.COMPLETED and message is None:
            raise ResumeError(
                f"task {original.task_id} completed: give a message to follow it up",
                "completed",
            )

    def _fork(self, original: SubagentResult, new_id: str, message: str | None) -> ResumePoint:
        latest = self.checkpoints.fork(original.task_id, new_id)
        if latest is None:
            if original.started_at is not None:
                raise ResumeError(
                    f"cannot resume task {original.task_id}: it has no checkpoints (they "
                    "were removed with the task by retention or cleanup, its sub-agent's "
                    "graph cannot take a checkpointer — a graph_factory returning a "
                    "non-LangGraph Runnable or one compiled with checkpointer=False — or "
                    "it ran on a remote backend)",
                    "no_checkpoint",
                )
            # Stopped before it ever started: the conversation is its prompt.
            first = [original.task] + ([message] if message is not None else [])
            return ResumePoint(
                source_task_id=original.task_id,
                stream_input={"messages": [HumanMessage(content=text) for text in first]},
            )
        conversation = state_messages(latest)
        pending = pending_messages(latest)
        known = frozenset(
            message_key(m)
            for m in [*conversation, *pending]
            if isinstance(m, AIMessage)
        )
        stream_input = (
            None
            if message is None
            else {"messages": follow_up_input(conversation, pending, message)}
        )
        return ResumePoint(
            source_task_id=original.task_id,
            stream_input=stream_input,
            messages=tuple(conversation),
            known_keys=known,
        )


#: What a tool call interrupted by the stop is answered with when a resume
#: brings a new message (the call is not run again then).
INTERRUPTED_TOOL_TEXT = (
    "(not run: the sub-agent was stopped before this tool call finished; "
    "call it again if it is still needed)"
)


# -- what a resumed run starts from ---------------------------------------------------


def state_messages(latest: CheckpointTuple | None) -> list[BaseMessage]:
    """The conversation in a checkpoint (its ``messages`` channel)."""
    if latest is None:
        return []
    value = latest.checkpoint.get("channel_values", {}).get("messages")
    return [m for m in value if isinstance(m, BaseMessage)] if isinstance(value, list) else []


def pending_messages(latest: CheckpointTuple | None) -> list[BaseMessage]:
    """Messages written by the steps that finished after the last checkpoint
    (the stop came before their superstep did)."""
    found: list[BaseMessage] = []
    for _task, channel, value in (latest.pending_writes or ()) if latest else ():
        if channel != "messages":
            continue
        values = value if isinstance(value, list) else [value]
        found.extend(m for m in values if isinstance(m, BaseMessage))
    return found


def follow_up_input(
    conversation: Sequence[BaseMessage], pending: Sequence[BaseMessage], message: str
) -> list[BaseMessage]:
    """The messages a resume with ``message`` adds to the conversation: what
    finished after the last checkpoint, an answer for every tool call the stop
    left unanswered (so the model sees it was not run), then ``message``."""
    added = list(pending)
    answered = {
        m.tool_call_id for m in [*conversation, *added] if isinstance(m, ToolMessage)
    }
    calls = [
        call
        for m in [*conversation, *added]
        if isinstance(m, AIMessage)
        for call in m.tool_calls
    ]
    for call in calls:
        if call.get("id") and call["id"] not in answered:
            added.append(
                ToolMessage(
                    content=INTERRUPTED_TOOL_TEXT, tool_call_id=call["id"], name=call["name"]
                )
            )
    added.append(HumanMessage(content=message))
    return added
