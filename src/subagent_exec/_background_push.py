"""Push delivery: a lead agent hears of its background tasks' ends without asking.

Used by ``SubagentMiddleware(..., background=True)``:

* **Before each model call of the lead**, one message per background task of
  its scope that has ended and whose outcome the lead was not told yet is
  added to the lead's state (``_background_report.push_message``), so a
  checkpointer keeps it. Its id names the task: a message already in the state
  (a checkpointed thread) is never added twice.
* **In the model call**, the messages the model actually sees mark their tasks
  *told* (``_background_board``), so no later run of the thread, with or
  without a checkpointer, delivers them again. A message that never reached
  a model call (the run was cancelled in between) is delivered again.
* **At the end of a turn**, with ``on_turn_end="wait"``: when the lead answers
  without tool calls while its scope still has background tasks running, wait
  (bounded, event-driven, without stopping them) for the next one to end and
  give the lead another turn; an outcome not yet told gives one at once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage

from ._background_base import ToolSet
from ._background_board import BackgroundTask, Board, board_for
from ._background_report import push_message, pushed_task_id
from ._background_wait import wait_for, wait_for_blocking
from ._lead_thread import LeadScope, lead_scope, write_to_stream
from ._result import SubagentResult
from ._runtime import SubagentRuntime

logger = logging.getLogger("subagent_exec")

#: What ``turn_end`` asks of the hook: jump back to the model now, wait for
#: these tasks first, or let the lead end.
JUMP = {"jump_to": "model"}


class PushDelivery:
    """The push side of one background tool set (see the module docstring)."""

    def __init__(self, toolset: ToolSet, *, wait_at_turn_end: bool, turn_end_timeout: float):
        self.toolset = toolset
        self.wait_at_turn_end = wait_at_turn_end
        self.turn_end_timeout = turn_end_timeout

    def _where(self) -> tuple[SubagentRuntime, Board, LeadScope] | None:
        runtime = self.toolset.runtime
        scope = lead_scope(runtime)
        return None if scope is None else (runtime, board_for(runtime), scope)

    # -- before the model call -----------------------------------------------------------

    def deliver(self, state: dict[str, Any]) -> dict[str, Any] | None:
        """The state update that delivers every outcome not told yet (or None)."""
        where = self._where()
        if where is None:
            return None
        _, board, scope = where
        untold = board.untold(scope)
        if not untold:
            return None
        in_state = {pushed_task_id(m) for m in state.get("messages") or ()}
        # Already in the conversation (a checkpointed thread): the lead has it.
        board.mark_told([r for r in untold if r.task_id in in_state])
        fresh = sorted(
            (r for r in untold if r.task_id not in in_state), key=_completed_at
        )
        if not fresh:
            return None
        for record in fresh:
            holder = record.holder
            assert holder is not None
            logger.info("%s outcome (%s) delivered to its lead, thread %s", holder.log_prefix,
                        holder.status.value, scope.thread_id)
        write_to_stream([r.terminal_event() for r in fresh])
        return {"messages": [push_message(r) for r in fresh]}

    # -- in the model call ---------------------------------------------------------------

    def confirm(self, messages: Sequence[Any]) -> None:
        """The model sees these messages: the outcomes in them are told."""
        task_ids = [t for t in (pushed_task_id(m) for m in messages) if t is not None]
        if not task_ids:
            return
        where = self._where()
        if where is None:
            return
        _, board, scope = where
        board.mark_told(r for r in (board.find(scope, t) for t in task_ids) if r is not None)

    # -- at the end of a turn ----------------------------------------------------------------

    def _turn_end(self, state: dict[str, Any]) -> (
        tuple[SubagentRuntime, Board, LeadScope, list[SubagentResult]] | dict[str, Any] | None
    ):
        if not self.wait_at_turn_end:
            return None
        messages = state.get("messages") or []
        last = messages[-1] if messages else None
        if not isinstance(last, AIMessage) or last.tool_calls:
            return None  # tools run next: the turn is not over
        where = self._where()
        if where is None:
            return None
        runtime, board, scope = where
        if board.untold(scope):
            return JUMP
        running = [r.holder for r in board.unfinished(scope) if r.holder is not None]
        if not running:
            return None
        logger.info("lead of thread %s waits up to %.0f s for %d background task(s)",
                    scope.thread_id, self.turn_end_timeout, len(running))
        return runtime, board, scope, running

    def turn_end(self, state: dict[str, Any]) -> dict[str, Any] | None:
        plan = self._turn_end(state)
        if not isinstance(plan, tuple):
            return plan
        runtime, board, scope, running = plan
        wait_for_blocking(runtime, running, mode="any", timeout=self.turn_end_timeout)
        return JUMP if board.untold(scope) else None

    async def aturn_end(self, state: dict[str, Any]) -> dict[str, Any] | None:
        plan = self._turn_end(state)
        if not isinstance(plan, tuple):
            return plan
        runtime, board, scope, running = plan
        await wait_for(runtime, running, mode="any", timeout=self.turn_end_timeout)
        return JUMP if board.untold(scope) else None


def _completed_at(record: BackgroundTask) -> float:
    holder = record.holder
    done = holder.completed_at if holder is not None else None
    return done.timestamp() if done is not None else 0.0
