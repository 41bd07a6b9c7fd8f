"""The budget of a lead agent's tools (``make_task_tool(budget=...)``,
``SubagentMiddleware(budget=...)``, ``make_background_tools(budget=...)``):
one meter per lead run for the ``task`` tool, one per conversation (thread)
for background tasks, shared by every task the lead starts that way and,
through the tree, by their descendants.

A lead run is, first found: the task the lead itself runs in (a lead run by
the server, or any lead that is a task of the runtime), the LangGraph run
(``_lead_thread.lead_run_id``), or else the single tool call. A call made by
a sub-agent this budget already covers (nested delegation through the same
tool) opens nothing: the child draws on its parent's meters anyway.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Literal

from ._budget import Budget
from ._context import task_in_scope
from ._lead_thread import lead_run_id
from ._meter import BudgetMeter
from ._runtime import SubagentRuntime

#: How many lead runs (or threads) a tool keeps a meter for (oldest dropped first).
KEPT_LIMIT = 10_000


class LeadBudgets:
    """The meters of one tool set's budget, per lead run or per thread."""

    def __init__(self, budget: Budget, per: Literal["run", "thread"]) -> None:
        self.budget = budget
        self.per = per
        self._lock = threading.Lock()
        self._meters: OrderedDict[str, BudgetMeter] = OrderedDict()

    def draw_on(
        self, runtime: SubagentRuntime, *, thread_id: str | None = None, call_id: str = ""
    ) -> tuple[BudgetMeter, ...]:
        """The meter a task started now draws on (opened on first use), or ()
        when the calling sub-agent already draws on one of this budget's."""
        caller = task_in_scope(runtime)
        if caller is not None and self.per == "run":
            with self._lock:
                opened = set(self._meters.values())
            holder = runtime.get(caller)
            if holder is not None and any(meter in opened for meter in holder.budgets):
                return ()
        if self.per == "thread":
            key, label = thread_id or f"call-{call_id}", f"thread {thread_id}"
        else:
            key = caller or lead_run_id() or f"call-{call_id}"
            label = f"lead run {key}"
        with self._lock:
            meter = self._meters.get(key)
            if meter is None:
                meter = self._meters[key] = runtime.open_budget(self.budget, label=label)
                while len(self._meters) > KEPT_LIMIT:
                    self._meters.popitem(last=False)[1].close()
            else:
                self._meters.move_to_end(key)
            return (meter,)
