"""What the five background tools share: the tool set of one
``make_background_tools`` call, the scope check (a task of another thread
answers like an unknown id), the shape of their answers, and telling the lead
an outcome (after which it is never pushed again).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool
from pydantic import PrivateAttr

from ._background_board import BackgroundTask, Board, board_for
from ._default import get_default_runtime
from ._executor import SubagentExecutor
from ._lead_budgets import LeadBudgets
from ._lead_model import LeadModels
from ._lead_thread import LeadScope, lead_scope, write_to_stream
from ._runtime import SubagentRuntime

logger = logging.getLogger("subagent_exec")

EventListener = Callable[[dict[str, Any]], None]


class ToolSet:
    """What the five tools of one ``make_background_tools`` call share."""

    def __init__(self, runtime: SubagentRuntime | None, limit: int, on_event: EventListener | None):
        self._runtime = runtime
        self.limit = limit
        self.on_event = on_event
        self.executors: dict[str, SubagentExecutor] = {}
        #: Set by SubagentMiddleware: ``"inherit"`` models come from the lead.
        self.lead_models: LeadModels | None = None
        #: Set by SubagentMiddleware: completions are pushed into the lead's turns.
        self.pushed = False
        #: ``budget=``: one meter per thread, drawn on by its background tasks.
        self.budgets: LeadBudgets | None = None

    @property
    def runtime(self) -> SubagentRuntime:
        return self._runtime if self._runtime is not None else get_default_runtime()

    def emit(self, event: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(event)


class BackgroundTool(BaseTool):
    """Base of the five tools: the shared set, the scope check, the answers."""

    description: str = ""
    runs_on_driver: bool = True  # holds the runtime: stays in its process
    _set: ToolSet = PrivateAttr()

    def _scoped(self, tool_call_id: str) -> tuple[SubagentRuntime, Board, LeadScope] | ToolMessage:
        runtime = self._set.runtime
        scope = lead_scope(runtime)
        if scope is None:
            return self._error(
                tool_call_id,
                f"{self.name} works only inside a lead agent's run (a LangGraph run or a "
                "sub-agent of this runtime): there is no conversation to scope its tasks to",
            )
        return runtime, board_for(runtime), scope

    def _error(self, tool_call_id: str, problem: str, **artifact: Any) -> ToolMessage:
        logger.info("%s call %s refused: %s", self.name, tool_call_id, problem)
        return ToolMessage(
            content=f"Error: {problem}", tool_call_id=tool_call_id, name=self.name,
            status="error", artifact={"error": problem, **artifact},
        )

    def _answer(self, tool_call_id: str, text: str, artifact: dict[str, Any]) -> ToolMessage:
        return ToolMessage(content=text, tool_call_id=tool_call_id, name=self.name,
                           artifact=artifact)

    def _find(
        self, tool_call_id: str, task_id: str
    ) -> tuple[SubagentRuntime, Board, BackgroundTask] | ToolMessage:
        scoped = self._scoped(tool_call_id)
        if isinstance(scoped, ToolMessage):
            return scoped
        runtime, board, scope = scoped
        record = board.find(scope, task_id)
        if record is None:
            return self._error(
                tool_call_id,
                f"unknown task id {task_id!r}: not a background task of this conversation "
                "(check_tasks lists them)", task_id=task_id,
            )
        return runtime, board, record


def tell(board: Board, records: Sequence[BackgroundTask]) -> None:
    """The lead sees these outcomes now (in a tool's answer or a pushed
    message): they will not be pushed again; their end goes to its stream."""
    news = [r for r in records if r.is_terminal and not r.told]
    board.mark_told(news)
    write_to_stream([r.terminal_event() for r in news])


def select(
    board: Board, scope: LeadScope, task_ids: list[str] | None
) -> tuple[list[BackgroundTask], list[str]]:
    """The scope's tasks named by ``task_ids`` (all when none are named), and
    the ids that name none of them."""
    if not task_ids:
        return board.of_scope(scope), []
    records: list[BackgroundTask] = []
    unknown: list[str] = []
    for task_id in dict.fromkeys(task_ids):  # once each, in order
        record = board.find(scope, task_id)
        if record is None:
            unknown.append(task_id)
        else:
            records.append(record)
    return records, unknown
