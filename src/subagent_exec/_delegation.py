"""One delegation seen from the calling side: the ``task_*`` progress events
it emits and the ToolMessage it answers with.

Events are ``task_started``, one ``task_running`` per AI message of the child,
and exactly one terminal event (``task_completed`` / ``task_failed`` /
``task_timed_out`` / ``task_cancelled``). Each carries ``task_id``,
``tool_call_id``, ``subagent_type`` and ``parent_id``.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from langchain_core.callbacks import BaseCallbackManager
from langchain_core.messages import ToolMessage

from ._events import TaskEvent
from ._output_relay import OutputRelay
from ._result import SubagentResult
from ._status import SubagentStatus

logger = logging.getLogger("subagent_exec")

#: The progress event that ends a delegation, by the child's terminal status.
TERMINAL_EVENTS: dict[SubagentStatus, str] = {
    SubagentStatus.COMPLETED: "task_completed",
    SubagentStatus.FAILED: "task_failed",
    SubagentStatus.TIMED_OUT: "task_timed_out",
    SubagentStatus.CANCELLED: "task_cancelled",
}


class Delegation:
    """One ``task`` call, seen from the calling side: its events and its answer."""

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
            "background": False,
            "thread_id": self.holder.thread_id,
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

    def output(self, data: dict[str, Any]) -> None:
        """A chunk of the child's model output (``stream_subagent_output``)."""
        if not self._closed:
            self._emit(self._event("task_output", status="running", **data))

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
                usage=holder.usage.to_dict(),
                tree_usage=holder.tree_usage.to_dict(),
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
        budget = holder.stop_reason == "budget"
        if status is SubagentStatus.COMPLETED:
            content = holder.result or f"{who} finished without an answer."
        elif budget:
            # Figures, then the partial answer: the lead decides with what it has.
            what = "ran out of its budget's time" if status is SubagentStatus.TIMED_OUT else (
                "was stopped by its budget")
            content = (
                f"{who} {what}: {holder.error}. It (with its own sub-agents) used "
                f"{holder.tree_usage.summary()}."
            )
        elif status is SubagentStatus.FAILED:
            content = f"{who} failed: {holder.error}"
        elif status is SubagentStatus.TIMED_OUT:
            content = f"{who} timed out: {holder.cancel_reason}"
        else:
            content = f"{who} was cancelled: {holder.cancel_reason}"
        if status is not SubagentStatus.COMPLETED:
            partial = holder.result or holder.last_ai_text()
            if partial:
                said = "Its partial answer" if budget else "Its last message before it stopped"
                content += f"\n{said}:\n{partial}"
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


class OutputSink:
    """Where a child's model output goes (``stream_subagent_output``): to its
    :class:`Delegation` on the caller's loop, in the caller's context (the
    stream writer works only there); for a sync caller, from the child's
    thread. Chunks that come before the delegation is known are kept."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self._loop = loop
        self._context = contextvars.copy_context()
        self._lock = threading.Lock()
        self._call: Delegation | None = None
        self._early: list[dict[str, Any]] = []

    def attach(self, call: Delegation) -> None:
        with self._lock:
            self._call, early, self._early = call, self._early, []
        for data in early:
            call.output(data)

    def forward(self, data: dict[str, Any]) -> None:  # on the child's thread
        if self._loop is None:
            self._deliver(data)
            return
        try:
            self._loop.call_soon_threadsafe(self._deliver, data, context=self._context)
        except RuntimeError:  # the caller's loop is closed: nobody to tell
            pass

    def _deliver(self, data: dict[str, Any]) -> None:
        with self._lock:
            call = self._call
            if call is None:
                self._early.append(data)
                return
        call.output(data)


def with_relay(tracing: BaseCallbackManager | None, output: OutputSink | None) -> Any:
    """The child's callbacks: the caller's tracing, plus the output relay if asked for."""
    if output is None:
        return tracing or ()
    relay = OutputRelay(output.forward)
    if tracing is None:
        return [relay]
    tracing.add_handler(relay, inherit=True)
    return tracing
