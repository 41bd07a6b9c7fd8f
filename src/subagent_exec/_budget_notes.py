"""A budget's warning reaches a running sub-agent's model: before each model
call, the notes waiting for the task (``RunHandle.take_notes``) are appended to
its conversation as human messages ("You have used 80% of your token budget:
finish with what you have.").

The run sets :data:`current_handle` on its own loop, so the hook finds the
notes of the task that runs it on any backend: on the thread backend the
handle is the runtime's ticket, on a Ray worker the worker's handle, to which
the driver sends the notes. ``BudgetNotesMiddleware`` is added to a built-in
sub-agent only when a budget it draws on can warn (``warn_at``): a hook is a
graph step on every model call (~0.2 ms; wrapping the model call instead,
``awrap_model_call``, measured ~0.4 ms). A background task's
``InboxMiddleware`` delivers these notes too (one hook, not two).
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

from langchain.agents.middleware import AgentMiddleware, AgentState
from langchain_core.messages import HumanMessage

from ._contract import RunHandle

logger = logging.getLogger("subagent_exec")

#: How a note reads in the sub-agent's conversation.
NOTE = "Note from the runtime that runs you: {text}"

#: The handle of the run whose code is running (set by ``SubagentRun`` on its loop).
current_handle: ContextVar[RunHandle | None] = ContextVar(
    "subagent_exec_run_handle", default=None
)


def take_notes() -> list[HumanMessage]:
    """The notes waiting for the running task, as messages (each once)."""
    handle = current_handle.get()
    if handle is None:
        return []
    notes = handle.take_notes()
    for _note in notes:
        logger.info("%s budget note delivered to the sub-agent", handle.log_prefix)
    return [HumanMessage(content=NOTE.format(text=note)) for note in notes]


class BudgetNotesMiddleware(AgentMiddleware[AgentState[Any], Any, Any]):
    """Appends the running task's budget notes before each model call."""

    #: The executor adds no second hook next to one that delivers notes.
    delivers_budget_notes = True

    def before_model(self, state: AgentState[Any], runtime: Any) -> dict[str, Any] | None:
        notes = take_notes()
        return {"messages": notes} if notes else None

    async def abefore_model(self, state: AgentState[Any], runtime: Any) -> dict[str, Any] | None:
        notes = take_notes()
        return {"messages": notes} if notes else None


#: The one instance built-in sub-agents get: it holds no state, and the
#: compiled agent is cached per middleware object (``_agents.py``).
NOTES_MIDDLEWARE = BudgetNotesMiddleware()
