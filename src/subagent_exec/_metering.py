"""The budgets of one runtime: which tasks draw on which meter, what each
recorded model call costs the task, its ancestors and its budgets, and the
stop of everything that draws on a budget once it is spent.

How a task's calls are counted (``charge``, once per AI message recorded,
on the thread that records it: the run's loop, or the Ray driver's):

* its own ``usage`` and the ``tree_usage`` of it and of each ancestor it was
  registered under (so a forgotten descendant still counts);
* every meter it draws on: its own budgets (config, call), the meters it was
  given (a lead run's, a thread's) and all of its ancestors'.

When a charge passes a limit, or a task asks for a model call a budget has
nothing left for (``refuse``, at the call's entry on the thread backend; on
any backend a message asking for tools when a limit has nothing left), the
budget is spent: every unfinished task drawing on it is latched FAILED with
``BudgetExceeded: <limit> <used>/<allowed> (budget of ...)`` and
``stop_reason="budget"``, then interrupted like a cancel. ``max_seconds``
latches TIMED_OUT instead (the clock's thread). Crossing ``warn_at``
publishes one ``budget_warning`` event and puts a note in the inbox of every
running task drawing on the budget.

# Invariant: the index of who draws on what is used under the runtime's lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ._budget import Budget, BudgetWarning, Overrun
from ._checks import check_text
from ._errors import BudgetExceeded
from ._meter import BudgetClock, BudgetMeter
from ._registry import Registry
from ._result import SubagentResult
from ._status import SubagentStatus
from ._tasks import RegisteredTask
from ._usage import PriceTable, Usage

logger = logging.getLogger("subagent_exec")

Publish = Callable[[str, SubagentResult, dict[str, Any]], None]
Entries = Callable[[list[RegisteredTask]], None]


def check_budget_arguments(
    owner: str, budgets: object, draw_on: object, model_name: object
) -> None:
    """``budgets`` a sequence of ``Budget``, ``draw_on`` of ``BudgetMeter``,
    ``model_name`` None or a name: TypeError / ValueError naming the bad one."""
    for name, value, kind in (("budgets", budgets, Budget), ("draw_on", draw_on, BudgetMeter)):
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            raise TypeError(f"{owner}.{name} must be a sequence of {kind.__name__}, got {value!r}")
        wrong = [item for item in value if not isinstance(item, kind)]
        if wrong:
            raise TypeError(f"{owner}.{name} must hold {kind.__name__} objects, got {wrong!r}")
    if model_name is not None and (not isinstance(model_name, str) or not model_name.strip()):
        raise TypeError(f"{owner}.model_name must be None or a model name, got {model_name!r}")


class Metering:
    """Budgets and usage sums of one runtime (see the module docstring)."""

    def __init__(
        self,
        *,
        name: str,
        lock: threading.RLock,
        price_table: PriceTable | None,
        publish: Publish,
        interrupt: Entries,
        forward_notes: Entries | None,
    ) -> None:
        self.price_table = price_table
        self._name = name
        self._lock = lock
        self._publish = publish  # under the lock
        self._interrupt = interrupt  # outside the lock
        self._forward_notes = forward_notes  # a remote backend's (outside the lock)
        self._clock: BudgetClock | None = None
        self._clock_lock = threading.Lock()
        # Invariant: the fields below are used under the runtime's lock.
        self._drawing: dict[BudgetMeter, dict[str, RegisteredTask]] = {}
        self._owned: dict[str, list[BudgetMeter]] = {}

    # -- opening budgets ------------------------------------------------------------------

    def open(self, budget: Budget, label: str) -> BudgetMeter:
        """A new meter of ``budget``, its ``max_seconds`` counted from now."""
        meter = BudgetMeter(budget, label=label, prices=budget.prices(self.price_table))
        if budget.max_seconds is not None:
            meter.start(self._the_clock(), self._on_time)
        return meter

    def open_checked(self, budget: object, label: object) -> BudgetMeter:
        """``runtime.open_budget``: its arguments checked, then :meth:`open`."""
        check_budget_arguments("open_budget", (budget,), (), None)
        assert isinstance(budget, Budget)
        return self.open(budget, check_text("open_budget", "label", label))

    def _the_clock(self) -> BudgetClock:
        with self._clock_lock:
            if self._clock is None:
                self._clock = BudgetClock(f"{self._name}-budget-clock")
            return self._clock

    def close(self) -> None:
        """The runtime is shut down: no deadline fires any more."""
        with self._clock_lock:
            clock, self._clock = self._clock, None
        if clock is not None:
            clock.close(1.0)

    # -- registering ------------------------------------------------------------------------

    def meters_for(
        self,
        budgets: Sequence[Budget],
        label: str,
        draw_on: Sequence[BudgetMeter],
        parent: RegisteredTask | None,
        model_name: str | None,
    ) -> tuple[tuple[BudgetMeter, ...], list[BudgetMeter]]:
        """What a new task draws on (a new meter per budget of its own, labelled
        ``label``, then ``draw_on``, then its parent's), and its own meters.
        ``BudgetExceeded`` if one has nothing left for a new task;
        ``UnpricedModelError`` for a ``max_cost`` budget and a model of known
        name but unknown price. Call under the lock, before registering."""
        check_budget_arguments("submit", budgets, draw_on, model_name)
        own = [self.open(budget, label) for budget in budgets]
        inherited = parent.meters if parent is not None else ()
        meters = tuple(dict.fromkeys([*own, *draw_on, *inherited]))
        try:
            now = time.monotonic()
            for meter in meters:
                gone = meter.spent or meter.exhausted()
                if gone is None and meter.deadline is not None and now >= meter.deadline:
                    gone = meter.refuse()
                if gone is not None:
                    raise BudgetExceeded(f"{gone.message}: nothing is left for another task")
                if model_name is not None:
                    meter.check_model(model_name)
        except Exception:
            for meter in own:
                meter.close()
            raise
        return meters, own

    def attach(
        self,
        entry: RegisteredTask,
        parent: RegisteredTask | None,
        meters: tuple[BudgetMeter, ...],
        own: Sequence[BudgetMeter],
    ) -> None:
        """A task was registered (under the lock): index what it draws on."""
        entry.prices = meters[0].prices if meters else self.price_table
        if parent is not None:
            entry.ancestors = (parent.holder, *parent.ancestors)
        if not meters:
            return
        entry.meters = entry.holder.budgets = meters
        for meter in meters:
            self._drawing.setdefault(meter, {})[entry.task_id] = entry
        if own:
            self._owned[entry.task_id] = list(own)

    def detach(self, entry: RegisteredTask | None) -> None:
        """A task reached its terminal status (under the lock)."""
        if entry is None:
            return
        for meter in entry.meters:
            drawing = self._drawing.get(meter)
            if drawing is not None:
                drawing.pop(entry.task_id, None)
                if not drawing:
                    del self._drawing[meter]
        for meter in self._owned.pop(entry.task_id, ()):
            meter.close()  # its task has ended: its clock has nothing to stop

    # -- counting and enforcing -----------------------------------------------------------

    def charge(self, entry: RegisteredTask, record: dict[str, Any], usage: Usage) -> None:
        """Charge one recorded AI message's model call (``usage``, already in
        the task's and its ancestors' sums) to its budgets (see the module docstring)."""
        meters, prices = entry.meters, entry.prices
        warnings: list[tuple[BudgetMeter, BudgetWarning]] = []
        stopped: list[RegisteredTask] = []
        noted: list[RegisteredTask] = []
        if not meters:
            return
        with self._lock:
            holder = entry.holder
            for meter in meters:
                metered = usage if meter.prices is prices else Usage.of_record(record, meter.prices)
                charged = meter.charge(metered)
                warnings += [(meter, warning) for warning in charged.warnings]
                overrun = charged.overrun
                if overrun is None and metered.usage_reported and metered.unpriced_calls:
                    overrun = meter.refuse_model(record.get("model_name"))
                if overrun is None and record.get("tool_calls") and meter.exhausted():
                    # It asks for tools, so for another model call, and nothing is left.
                    overrun = meter.refuse()
                if overrun is not None:
                    stopped += self._spend_locked(meter, overrun)
            for meter, warning in warnings:
                noted += self._warn_locked(meter, warning, holder)
        self._after(stopped, noted)

    def refuse(self, entry: RegisteredTask, model_name: str | None) -> None:
        """At a model call's entry: raise ``BudgetExceeded`` (having stopped
        everything that draws on the budget) when a budget forbids the call."""
        overrun: Overrun | None = None
        stopped: list[RegisteredTask] = []
        with self._lock:
            for meter in entry.meters:
                overrun = meter.refuse() or meter.refuse_model(model_name)
                if overrun is not None:
                    stopped = self._spend_locked(meter, overrun)
                    break
        if overrun is None:
            return
        self._after(stopped, [])
        raise BudgetExceeded(overrun.message)

    def _spend_locked(self, meter: BudgetMeter, overrun: Overrun) -> list[RegisteredTask]:
        entries = list(self._drawing.get(meter, {}).values())
        if overrun.limit == "max_seconds":
            stopped = Registry.stop_each(
                entries, SubagentStatus.TIMED_OUT, overrun.message, stop_reason="budget"
            )
        else:
            stopped = Registry.stop_each(
                entries, SubagentStatus.FAILED, overrun.message,
                error=overrun.error, stop_reason="budget",
            )
        if stopped:
            logger.info("%s budget spent: %s; stopping %d task(s)",
                        stopped[0].log_prefix, overrun.error, len(stopped))
        return stopped

    def _warn_locked(
        self, meter: BudgetMeter, warning: BudgetWarning, holder: SubagentResult
    ) -> list[RegisteredTask]:
        """Publish the warning (on ``holder``'s task) and note it to every
        running task drawing on the budget; returns those noted."""
        self._publish("budget_warning", holder, warning.to_dict())
        noted = [
            entry
            for entry in self._drawing.get(meter, {}).values()
            if entry.holder.status is SubagentStatus.RUNNING and not entry.holder.stopping
        ]
        for entry in noted:
            entry.notes.put(warning.note)
        logger.info("%s budget warning: %s", holder.log_prefix, warning.note)
        return noted

    def _after(self, stopped: list[RegisteredTask], noted: list[RegisteredTask]) -> None:
        if stopped:
            self._interrupt(stopped)
        if noted and self._forward_notes is not None:
            self._forward_notes(noted)

    def _on_time(self, meter: BudgetMeter, what: BudgetWarning | Overrun) -> None:
        """On the clock's thread: a ``max_seconds`` warning or deadline."""
        stopped: list[RegisteredTask] = []
        noted: list[RegisteredTask] = []
        with self._lock:
            entries = list(self._drawing.get(meter, {}).values())
            if not entries:
                return  # nothing draws on it now: a later task is refused at submission
            if isinstance(what, BudgetWarning):
                noted = self._warn_locked(meter, what, entries[0].holder)
            else:
                stopped = self._spend_locked(meter, what)
        self._after(stopped, noted)

