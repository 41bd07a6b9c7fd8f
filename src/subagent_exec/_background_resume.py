"""The ``resume_task`` background tool: the lead resumes one of its stopped
background tasks from its last step, or follows up a finished one with a
message (docs/resume.md). The resumed task is a new background task of the
same conversation (new id), reported like one ``start_task`` started.

Scope: the task must be of this conversation (its thread and owner): one on
the board, or one the store has from an earlier process of the same thread;
anything else answers like an unknown id. Never raises for an outcome.
"""

from __future__ import annotations

import logging
import uuid
from typing import Annotated, Any

from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun
from langchain_core.messages import ToolMessage
from langchain_core.tools import InjectedToolCallId
from pydantic import BaseModel, Field

from ._background_base import BackgroundTool
from ._background_board import BackgroundTask
from ._background_report import facts, label
from ._errors import SubagentError
from ._lead_thread import write_to_stream
from ._notes import Inbox

logger = logging.getLogger("subagent_exec")


class ResumeTaskInput(BaseModel):
    task_id: str = Field(description="The id of the background task to resume.")
    message: str = Field(
        default="",
        description="Optional: something new to tell it as it goes on (required to follow up "
        "a task that completed).",
    )
    tool_call_id: Annotated[str, InjectedToolCallId]


class ResumeTaskTool(BackgroundTool):
    name: str = "resume_task"
    args_schema: type[BaseModel] = ResumeTaskInput

    async def _arun(self, task_id: str, tool_call_id: str, message: str = "",
                    run_manager: AsyncCallbackManagerForToolRun | None = None) -> ToolMessage:
        return self._resume(tool_call_id, task_id, message)

    def _run(self, task_id: str, tool_call_id: str, message: str = "",
             run_manager: CallbackManagerForToolRun | None = None) -> ToolMessage:
        return self._resume(tool_call_id, task_id, message)

    def _resume(self, tool_call_id: str, task_id: str, message: str) -> ToolMessage:
        scoped = self._scoped(tool_call_id)
        if isinstance(scoped, ToolMessage):
            return scoped
        runtime, board, scope = scoped
        toolset = self._set
        record = board.find(scope, task_id)
        holder = record.holder if record is not None else runtime.get(task_id)
        if holder is None or (record is None and (
            holder.thread_id != scope.thread_id or holder.owner != scope.owner
            or not holder.background
        )):
            return self._error(tool_call_id, f"unknown task id {task_id!r}: not a background "
                               "task of this conversation (check_tasks lists them)",
                               task_id=task_id)
        executor = toolset.executors.get(holder.subagent_name)
        if executor is None:
            return self._error(tool_call_id, f"task {task_id} ran sub-agent "
                               f"{holder.subagent_name!r}, which these tools do not start; "
                               f"available: {', '.join(toolset.executors)}", task_id=task_id)
        what = record.description if record is not None else holder.task.strip()[:60]
        resumed = BackgroundTask(
            task_id=uuid.uuid4().hex, subagent_type=holder.subagent_name,
            description=f"{what} (resumed)", scope=scope, tool_call_id=tool_call_id,
            emit=toolset.emit,
            inbox=Inbox() if executor.config.graph_factory is None else None,
        )
        busy = board.begin(resumed, toolset.limit)
        if busy is not None:
            return self._error(
                tool_call_id, f"this conversation already has {busy} unfinished background "
                f"tasks (max_background_tasks={toolset.limit}); wait for one to end first",
            )
        try:
            resumed.holder = runtime.resume(
                task_id, message.strip() or None, new_task_id=resumed.task_id
            )
        except (SubagentError, ValueError) as exc:  # not resumable, capacity, closed
            board.abandon(resumed.task_id)
            return self._error(tool_call_id, f"cannot resume task {task_id}: {exc}",
                               task_id=task_id)
        new = resumed.holder
        logger.info("%s resumed from %s in the background for thread %s", new.log_prefix,
                    task_id, scope.thread_id)
        write_to_stream([resumed.event("task_started", status=new.status.value, depth=1,
                                       resumed_from=task_id)])
        text = (f"Resumed task {task_id} as {label(resumed)}; status: {new.status.value}. It "
                "goes on from its last completed step (earlier steps are not redone). Its "
                "outcome is reported like any background task's.")
        artifact: dict[str, Any] = {**facts(resumed), "resumed_from": task_id}
        return self._answer(tool_call_id, text, artifact)
