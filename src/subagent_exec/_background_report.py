"""What a lead agent is told about its background tasks: one line per task
(``check_tasks``, ``wait_tasks``), the message pushed when one ends, and the
structured facts that go into each ToolMessage's ``artifact``."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import HumanMessage

from ._background_board import BackgroundTask
from ._status import SubagentStatus

#: Longest excerpt of a running task's latest AI message in a status line.
EXCERPT_CHARS = 300
#: The id of the message that delivers a task's outcome: one per task, so a
#: conversation holds it at most once (``add_messages`` replaces by id).
PUSH_ID_PREFIX = "subagent-background-"


def label(record: BackgroundTask) -> str:
    """``background task <id> (<subagent_type>: <description>)``."""
    return f"background task {record.task_id} ({record.subagent_type}: {record.description})"


def outcome(record: BackgroundTask) -> str:
    """How a finished task ended, as the lead is told: ``completed: <answer>``,
    ``failed: <error>``, ``timed out: <reason>`` or ``cancelled: <reason>``
    (with its last message when it did not complete)."""
    holder = record.holder
    assert holder is not None and holder.is_terminal
    status = holder.status
    if status is SubagentStatus.COMPLETED:
        return f"completed: {holder.result or '(it finished without an answer)'}"
    if holder.stop_reason == "budget":  # the figures, then the partial answer
        word = "timed out" if status is SubagentStatus.TIMED_OUT else "failed"
        text = (f"{word}: {holder.error}; it (with its own sub-agents) used "
                f"{holder.tree_usage.summary()}")
    elif status is SubagentStatus.FAILED:
        text = f"failed: {holder.error}"
    elif status is SubagentStatus.TIMED_OUT:
        text = f"timed out: {holder.cancel_reason}"
    else:
        text = f"cancelled: {holder.cancel_reason}"
    partial = holder.result or holder.last_ai_text()
    if partial:
        said = "Its partial answer" if holder.stop_reason == "budget" else (
            "Its last message before it stopped")
        text += f"\n{said}:\n{partial}"
    return text


def push_message(record: BackgroundTask) -> HumanMessage:
    """The message that tells the lead a background task has ended."""
    return HumanMessage(
        content=f"{label(record)} {outcome(record)}",
        id=PUSH_ID_PREFIX + record.task_id,
        response_metadata={"subagent_background": facts(record)},
    )


def pushed_task_id(message: Any) -> str | None:
    """The task whose outcome ``message`` delivers, if it is such a message."""
    message_id = getattr(message, "id", None)
    if isinstance(message_id, str) and message_id.startswith(PUSH_ID_PREFIX):
        return message_id[len(PUSH_ID_PREFIX):]
    return None


def status_line(record: BackgroundTask) -> str:
    """One line (more for a finished task's answer) for ``check_tasks``."""
    holder = record.holder
    assert holder is not None
    elapsed = holder.duration_seconds
    took = f" after {elapsed:.1f} s" if elapsed is not None else ""
    head = f"- {label(record)}"
    if holder.is_terminal:
        word, _, rest = outcome(record).partition(":")
        line = f"{head}: {word}{took}:{rest}"
    elif holder.stopping:
        line = f"{head}: stopping ({holder.cancel_reason})"
    elif holder.status is SubagentStatus.PENDING:
        line = f"{head}: pending (waiting for a free worker)"
    else:
        line = f"{head}: running for {elapsed or 0.0:.1f} s"
        latest = holder.last_ai_text()
        if latest:
            line += f"; latest message: {_excerpt(latest)}"
        else:
            line += f"; {len(holder.ai_messages)} AI message(s) so far"
    if record.inbox is not None and (record.inbox.delivered or record.inbox.pending):
        line += _inbox_note(record)
    return line


def _inbox_note(record: BackgroundTask) -> str:
    inbox = record.inbox
    assert inbox is not None
    parts = []
    if inbox.delivered:
        parts.append(f"{inbox.delivered} follow-up message(s) delivered")
    if inbox.pending:
        ended = record.is_terminal
        parts.append(
            f"{inbox.pending} follow-up message(s) "
            + ("never delivered (it ended first)" if ended else "waiting for its next model call")
        )
    return " [" + "; ".join(parts) + "]"


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "…"


def facts(record: BackgroundTask) -> dict[str, Any]:
    """The structured facts about a task (a ToolMessage's ``artifact``)."""
    holder = record.holder
    assert holder is not None
    status = holder.status
    inbox = record.inbox
    return {
        "task_id": record.task_id,
        "subagent_type": record.subagent_type,
        "description": record.description,
        "thread_id": record.scope.thread_id,
        "background": True,
        "status": status.value,
        "stopping": holder.stopping,
        "elapsed_seconds": holder.duration_seconds,
        "latest_message": None if holder.is_terminal else holder.last_ai_text(),
        "result": holder.result if status is SubagentStatus.COMPLETED else None,
        "partial_result": (
            holder.result or holder.last_ai_text()
            if holder.is_terminal and status is not SubagentStatus.COMPLETED
            else None
        ),
        "error": holder.error,
        "cancel_reason": holder.cancel_reason,
        "stop_reason": holder.stop_reason,
        "messages_delivered": inbox.delivered if inbox is not None else 0,
        "messages_pending": inbox.pending if inbox is not None else 0,
    }


def report(records: list[BackgroundTask], unknown: list[str]) -> tuple[str, dict[str, Any]]:
    """The text and artifact of a ``check_tasks`` answer."""
    if not records and not unknown:
        return "No background tasks in this conversation.", {"tasks": [], "unknown": []}
    lines = [status_line(r) for r in records]
    lines += [
        f"- {task_id}: unknown task id (not a background task of this conversation)"
        for task_id in unknown
    ]
    running = sum(1 for r in records if not r.is_terminal)
    head = f"{len(records)} background task(s), {running} still running:"
    text = "\n".join([head, *lines])
    return text, {"tasks": [facts(r) for r in records], "unknown": list(unknown)}
