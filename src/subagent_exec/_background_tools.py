"""The lead agent's five background tools (built by ``make_background_tools``).

``start_task`` starts a sub-agent as a *root* task of the runtime, scoped to
the lead's thread and owner (``_lead_thread.py``), and returns at once; the
lead keeps working. The other four act only on background tasks of the same
scope: an id of another thread answers exactly like an unknown id. Like the
``task`` tool they never raise for an outcome or a bad input (a raising tool
makes LangGraph cancel its parallel siblings): every answer is a ToolMessage,
its ``artifact`` the structured facts. Only ``CancelledError`` propagates,
and a lead cancelled while it waits (``wait_tasks``, ``cancel_task``) stops
waiting at once without stopping any background task.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Annotated, Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun
from langchain_core.messages import ToolMessage
from langchain_core.tools import InjectedToolCallId
from pydantic import BaseModel, Field

from ._background_base import BackgroundTool, select, tell
from ._background_board import BackgroundTask, Board
from ._background_report import facts, label, outcome, report
from ._background_wait import wait_for, wait_for_blocking
from ._errors import SubagentError
from ._lead_thread import write_to_stream
from ._notes import Inbox
from ._runtime import SubagentRuntime
from ._tracing import child_callbacks

logger = logging.getLogger("subagent_exec")

#: The longest a single ``wait_tasks`` call may wait.
MAX_WAIT_SECONDS = 3600.0


# -- start_task ------------------------------------------------------------------------------


class StartTaskInput(BaseModel):
    description: str = Field(description="A short label for the task (3-6 words).")
    prompt: str = Field(
        description="The complete task. The sub-agent sees nothing of this conversation."
    )
    subagent_type: str = Field(description="The sub-agent that does the work (see the list).")
    tool_call_id: Annotated[str, InjectedToolCallId]


class StartTaskTool(BackgroundTool):
    name: str = "start_task"
    args_schema: type[BaseModel] = StartTaskInput

    async def _arun(self, description: str, prompt: str, subagent_type: str, tool_call_id: str,
                    run_manager: AsyncCallbackManagerForToolRun | None = None) -> ToolMessage:
        loop = asyncio.get_running_loop()
        tracing = child_callbacks(run_manager.get_child() if run_manager else None, loop)
        return self._start(description, prompt, subagent_type, tool_call_id, tracing)

    def _run(self, description: str, prompt: str, subagent_type: str, tool_call_id: str,
             run_manager: CallbackManagerForToolRun | None = None) -> ToolMessage:
        tracing = child_callbacks(run_manager.get_child() if run_manager else None, None)
        return self._start(description, prompt, subagent_type, tool_call_id, tracing)

    def _start(self, description: str, prompt: str, subagent_type: str, tool_call_id: str,
               tracing: Any) -> ToolMessage:
        toolset = self._set
        executor = toolset.executors.get(subagent_type)
        if executor is None:
            return self._error(tool_call_id, f"unknown subagent_type {subagent_type!r}; "
                               f"available sub-agents: {', '.join(toolset.executors)}")
        if toolset.lead_models is not None:
            inherited = toolset.lead_models.executor_for(executor, tool_call_id)
            if isinstance(inherited, str):
                return self._error(tool_call_id, inherited)
            executor = inherited
        if not prompt.strip():
            return self._error(tool_call_id, "prompt is empty; give the sub-agent the complete "
                               "task to do (it sees nothing of this conversation)")
        scoped = self._scoped(tool_call_id)
        if isinstance(scoped, ToolMessage):
            return scoped
        _, board, scope = scoped
        record = BackgroundTask(
            task_id=uuid.uuid4().hex, subagent_type=subagent_type,
            description=description.strip() or prompt.strip()[:60], scope=scope,
            tool_call_id=tool_call_id, emit=toolset.emit,
            inbox=Inbox() if executor.config.graph_factory is None else None,
        )
        busy = board.begin(record, toolset.limit)
        if busy is not None:
            return self._error(
                tool_call_id, f"this conversation already has {busy} unfinished background "
                f"tasks (max_background_tasks={toolset.limit}); wait for one to end "
                "(wait_tasks) or cancel one (cancel_task) before starting another",
            )
        try:
            budgets = toolset.budgets
            record.holder = executor.start(
                prompt, task_id=record.task_id, owner=scope.owner, thread_id=scope.thread_id,
                background=True, callbacks=tracing or (),
                draw_on=budgets.draw_on(toolset.runtime, thread_id=scope.thread_id,
                                        call_id=tool_call_id) if budgets else (),
            )
        except (SubagentError, ValueError) as exc:  # depth, capacity, closed runtime
            board.abandon(record.task_id)
            return self._error(tool_call_id, f"could not start sub-agent {subagent_type!r}: {exc}")
        holder = record.holder
        logger.info("%s %s started in the background for thread %s", holder.log_prefix,
                    subagent_type, scope.thread_id)
        write_to_stream([record.event("task_started", status=holder.status.value, depth=1)])
        then = ("Its outcome will be delivered to you as a message when it ends; you need not "
                "poll." if toolset.pushed else "Ask for its outcome with check_tasks or "
                "wait_tasks.")
        text = (f"Started {label(record)}; status: {holder.status.value}. It works in the "
                f"background while you go on. {then} Use its id with check_tasks, wait_tasks, "
                "message_task or cancel_task.")
        return self._answer(tool_call_id, text, {**facts(record), "tool_call_id": tool_call_id})


# -- check_tasks and wait_tasks ------------------------------------------------------------------


class CheckTasksInput(BaseModel):
    task_ids: list[str] | None = Field(
        default=None, description="The background task ids to report on (all when omitted)."
    )
    tool_call_id: Annotated[str, InjectedToolCallId]


class CheckTasksTool(BackgroundTool):
    name: str = "check_tasks"
    args_schema: type[BaseModel] = CheckTasksInput

    async def _arun(self, tool_call_id: str, task_ids: list[str] | None = None,
                    run_manager: AsyncCallbackManagerForToolRun | None = None) -> ToolMessage:
        return self._check(tool_call_id, task_ids)

    def _run(self, tool_call_id: str, task_ids: list[str] | None = None,
             run_manager: CallbackManagerForToolRun | None = None) -> ToolMessage:
        return self._check(tool_call_id, task_ids)

    def _check(self, tool_call_id: str, task_ids: list[str] | None) -> ToolMessage:
        scoped = self._scoped(tool_call_id)
        if isinstance(scoped, ToolMessage):
            return scoped
        _, board, scope = scoped
        records, unknown = select(board, scope, task_ids)
        text, artifact = report(records, unknown)
        tell(board, records)
        return self._answer(tool_call_id, text, artifact)


class WaitTasksInput(BaseModel):
    task_ids: list[str] | None = Field(
        default=None,
        description="The background task ids to wait for (omitted: every running one, and "
        "any that ended without you being told).",
    )
    mode: Literal["any", "all"] = Field(
        default="any", description="'any': until one of them ends; 'all': until all have."
    )
    timeout_seconds: float = Field(
        default=60.0, gt=0, le=MAX_WAIT_SECONDS, description="The longest to wait, in seconds."
    )
    tool_call_id: Annotated[str, InjectedToolCallId]


class WaitTasksTool(BackgroundTool):
    name: str = "wait_tasks"
    args_schema: type[BaseModel] = WaitTasksInput

    async def _arun(self, tool_call_id: str, task_ids: list[str] | None = None,
                    mode: Literal["any", "all"] = "any", timeout_seconds: float = 60.0,
                    run_manager: AsyncCallbackManagerForToolRun | None = None) -> ToolMessage:
        chosen = self._choose(tool_call_id, task_ids)
        if isinstance(chosen, ToolMessage):
            return chosen
        runtime, board, records, unknown = chosen
        started = time.monotonic()
        await wait_for(runtime, [r.holder for r in records if r.holder], mode=mode,
                       timeout=timeout_seconds)
        return self._waited(tool_call_id, board, records, unknown, mode, started)

    def _run(self, tool_call_id: str, task_ids: list[str] | None = None,
             mode: Literal["any", "all"] = "any", timeout_seconds: float = 60.0,
             run_manager: CallbackManagerForToolRun | None = None) -> ToolMessage:
        chosen = self._choose(tool_call_id, task_ids)
        if isinstance(chosen, ToolMessage):
            return chosen
        runtime, board, records, unknown = chosen
        started = time.monotonic()
        wait_for_blocking(runtime, [r.holder for r in records if r.holder], mode=mode,
                          timeout=timeout_seconds)
        return self._waited(tool_call_id, board, records, unknown, mode, started)

    def _choose(self, tool_call_id: str, task_ids: list[str] | None) -> (
        tuple[SubagentRuntime, Board, list[BackgroundTask], list[str]] | ToolMessage
    ):
        scoped = self._scoped(tool_call_id)
        if isinstance(scoped, ToolMessage):
            return scoped
        runtime, board, scope = scoped
        records, unknown = select(board, scope, task_ids)
        if not task_ids:  # the ones with news to come or not yet told
            records = [r for r in records if not r.is_terminal or not r.told]
        if not records:
            text, artifact = report([], unknown)
            if not unknown:
                text = "Nothing to wait for: no background task of this conversation is running."
            return self._answer(tool_call_id, text, {**artifact, "timed_out": False})
        return runtime, board, records, unknown

    def _waited(self, tool_call_id: str, board: Board, records: list[BackgroundTask],
                unknown: list[str], mode: str, started: float) -> ToolMessage:
        waited = time.monotonic() - started
        ended = sum(1 for r in records if r.is_terminal)
        timed_out = ended == 0 or (mode == "all" and ended < len(records))
        head = f"Waited {waited:.1f} s ({mode}): {ended} of {len(records)} ended."
        if timed_out:
            head += " The timeout passed first; the others keep running."
        text, artifact = report(records, unknown)
        tell(board, records)
        return self._answer(tool_call_id, f"{head}\n{text}",
                            {**artifact, "timed_out": timed_out, "waited_seconds": waited})


# -- cancel_task and message_task ------------------------------------------------------------------


class CancelTaskInput(BaseModel):
    task_id: str = Field(description="The id of the background task to stop.")
    reason: str = Field(default="", description="Why it is stopped (shown in its status).")
    tool_call_id: Annotated[str, InjectedToolCallId]


class CancelTaskTool(BackgroundTool):
    name: str = "cancel_task"
    args_schema: type[BaseModel] = CancelTaskInput

    async def _arun(self, task_id: str, tool_call_id: str, reason: str = "",
                    run_manager: AsyncCallbackManagerForToolRun | None = None) -> ToolMessage:
        found = self._stop(tool_call_id, task_id, reason)
        if isinstance(found, ToolMessage):
            return found
        runtime, board, record, was_running = found
        if record.holder is not None and not record.holder.is_terminal:
            try:  # bounded, as any stop: the run's cleanup has its own limit
                await asyncio.wait_for(runtime.wait_terminal(record.holder, forward_cancel=False),
                                       runtime.cleanup_timeout_seconds + 1.0)
            except TimeoutError:
                pass
        return self._stopped(tool_call_id, board, record, was_running)

    def _run(self, task_id: str, tool_call_id: str, reason: str = "",
             run_manager: CallbackManagerForToolRun | None = None) -> ToolMessage:
        found = self._stop(tool_call_id, task_id, reason)
        if isinstance(found, ToolMessage):
            return found
        runtime, board, record, was_running = found
        if record.holder is not None:
            runtime.wait_terminal_blocking(record.holder, forward_cancel=False,
                                           timeout=runtime.cleanup_timeout_seconds + 1.0)
        return self._stopped(tool_call_id, board, record, was_running)

    def _stop(self, tool_call_id: str, task_id: str, reason: str
              ) -> tuple[SubagentRuntime, Board, BackgroundTask, bool] | ToolMessage:
        found = self._find(tool_call_id, task_id)
        if isinstance(found, ToolMessage):
            return found
        runtime, board, record = found
        why = reason.strip() or "cancelled by the lead agent (cancel_task)"
        was_running = runtime.request_cancel(task_id, why)
        return runtime, board, record, was_running

    def _stopped(self, tool_call_id: str, board: Board, record: BackgroundTask,
                 was_running: bool) -> ToolMessage:
        if not record.is_terminal:
            text = f"{label(record)} is stopping: its cleanup is still running."
        elif was_running:
            text = f"{label(record)} {outcome(record)}"
        else:
            text = f"{label(record)} had already ended: {outcome(record)}"
        tell(board, [record])
        return self._answer(tool_call_id, text, facts(record))


class MessageTaskInput(BaseModel):
    task_id: str = Field(description="The id of the running background task.")
    message: str = Field(description="What to tell it: a correction, a new detail, a focus.")
    tool_call_id: Annotated[str, InjectedToolCallId]


class MessageTaskTool(BackgroundTool):
    name: str = "message_task"
    args_schema: type[BaseModel] = MessageTaskInput

    async def _arun(self, task_id: str, message: str, tool_call_id: str,
                    run_manager: AsyncCallbackManagerForToolRun | None = None) -> ToolMessage:
        return self._send(tool_call_id, task_id, message)

    def _run(self, task_id: str, message: str, tool_call_id: str,
             run_manager: CallbackManagerForToolRun | None = None) -> ToolMessage:
        return self._send(tool_call_id, task_id, message)

    def _send(self, tool_call_id: str, task_id: str, message: str) -> ToolMessage:
        found = self._find(tool_call_id, task_id)
        if isinstance(found, ToolMessage):
            return found
        runtime, board, record = found
        holder = record.holder
        assert holder is not None
        who = label(record)
        if holder.is_terminal:
            tell(board, [record])
            return self._error(tool_call_id, f"{who} has already ended, so it cannot take "
                               f"messages; it {outcome(record)}", **facts(record))
        if holder.stopping:
            return self._error(tool_call_id, f"{who} is stopping ({holder.cancel_reason}); "
                               "it cannot take messages", **facts(record))
        if record.inbox is None:
            return self._error(tool_call_id, f"{who} runs its own graph (graph_factory), whose "
                               "conversation this tool cannot add to; follow-up messages reach "
                               "sub-agents built from a model", **facts(record))
        if runtime.backend.name == "ray":
            return self._error(tool_call_id, f"{who} runs on the Ray backend, in another "
                               "process; follow-up messages reach sub-agents on this process's "
                               "backends only", **facts(record))
        if not message.strip():
            return self._error(tool_call_id, "message is empty; say what the sub-agent "
                               "should know", task_id=task_id)
        waiting = record.inbox.put(message)
        logger.info("%s follow-up message queued (%d waiting)", holder.log_prefix, waiting)
        text = (f"Message queued for {who}: it reaches the sub-agent before its next model "
                f"call (a call in flight is not interrupted). {waiting} message(s) waiting.")
        return self._answer(tool_call_id, text, {**facts(record), "queued": True})
