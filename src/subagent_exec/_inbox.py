"""``InboxMiddleware``: follow-up messages reach a running background sub-agent.

``message_task`` puts a message into the task's inbox (``_background_board``).
This ``create_agent`` middleware, added to every built-in background sub-agent,
takes what is waiting before each model call and appends it to the
sub-agent's conversation as a human message, so a model call in flight is
never interrupted and the next one sees the message. When the model answers
without tool calls while a message is waiting (it arrived during that last
call), the sub-agent gets one more turn instead of ending, so a message sent
while it was running is always read. Each delivered message emits
``task_message_delivered`` to the listener of the tool set that started the
task. The warnings of the budgets the task draws on arrive through the same
hook (``_budget_notes.py``), before the follow-ups.

The middleware finds its inbox through the task that runs it (the run's
scope), so it holds no state and travels to any backend; on the Ray backend a
run lives in another process and finds none (``message_task`` says so).
"""

from __future__ import annotations

import logging
from typing import Any

from langchain.agents.middleware import AgentMiddleware, AgentState, hook_config
from langchain_core.messages import AIMessage, HumanMessage

from ._background_board import existing_board
from ._budget_notes import take_notes
from ._context import current_scope

logger = logging.getLogger("subagent_exec")

#: How a follow-up message reads in the sub-agent's conversation.
FOLLOW_UP = "Follow-up message from the agent that gave you this task:\n{text}"


class InboxMiddleware(AgentMiddleware[AgentState[Any], Any, Any]):
    """Drains the running background task's inbox before each model call."""

    #: It delivers the budget notes too (the executor adds no second hook).
    delivers_budget_notes = True

    def before_model(self, state: AgentState[Any], runtime: Any) -> dict[str, Any] | None:
        return _drain()

    async def abefore_model(self, state: AgentState[Any], runtime: Any) -> dict[str, Any] | None:
        return _drain()

    @hook_config(can_jump_to=["model"])
    def after_model(self, state: AgentState[Any], runtime: Any) -> dict[str, Any] | None:
        return _another_turn(state)

    @hook_config(can_jump_to=["model"])
    async def aafter_model(self, state: AgentState[Any], runtime: Any) -> dict[str, Any] | None:
        return _another_turn(state)


def _inbox() -> Any:
    scope = current_scope.get()
    board = existing_board(scope.runtime_key) if scope is not None else None
    return board.inbox_of(scope.task_id) if board is not None and scope is not None else None


def _drain() -> dict[str, Any] | None:
    # The notes of the budgets the task draws on come this way too (one hook).
    notes = take_notes()
    found = _inbox()
    if found is None:
        return {"messages": notes} if notes else None
    record, inbox = found
    texts = inbox.take()
    if not texts:
        return {"messages": notes} if notes else None
    holder = record.holder
    for text in texts:
        logger.info(
            "[task=%s trace=%s] follow-up message delivered to the sub-agent",
            record.task_id, holder.trace_id if holder is not None else None,
        )
        record.send(record.event("task_message_delivered", status="running", message=text))
    follow_ups = [HumanMessage(content=FOLLOW_UP.format(text=t)) for t in texts]
    return {"messages": [*notes, *follow_ups]}


def _another_turn(state: AgentState[Any]) -> dict[str, Any] | None:
    """The model answered for good while a follow-up was waiting: read it first."""
    messages = state.get("messages") or []
    last = messages[-1] if messages else None
    if not isinstance(last, AIMessage) or last.tool_calls:
        return None
    found = _inbox()
    if found is None or not found[1].pending:
        return None
    return {"jump_to": "model"}
