"""The meter of one attached budget (:class:`BudgetMeter`): what it has used,
when a limit crosses ``warn_at``, when it is spent; and :class:`BudgetClock`,
the one thread that runs every ``max_seconds`` deadline of a runtime.

Rules a meter keeps (all under its own lock, so any thread may charge it):

* ``charge(usage)`` adds one model call's usage. A limit is *exceeded* when
  what is used passes what is allowed: the budget is then spent (the first
  overrun is kept and returned once).
* ``refuse()`` is asked at a model call's entry: the budget is spent, or a
  limit has nothing left (``used >= allowed``), or the deadline has passed.
  A limit with nothing left spends the budget only when a task asks for more,
  so a run whose last call lands exactly on the limit still completes.
* Each limit crosses ``warn_at`` once: the warning is returned by the charge
  (or the clock tick) that crossed it, never again.
* ``max_seconds`` counts from the meter's creation; the clock reports the
  warning and the deadline to the meter's owner (``on_time``).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ._budget import LIMITS, Budget, BudgetWarning, Overrun
from ._errors import UnpricedModelError
from ._usage import NO_USAGE, PriceTable, Usage, price_of

logger = logging.getLogger("subagent_exec")

#: The limits counted from usage (max_seconds is counted by the clock).
_COUNTED = ("max_tokens", "max_model_calls", "max_cost")

#: Cancelled calls the clock keeps before it drops them (see BudgetClock).
COMPACT_AFTER = 64

#: What the clock reports to a meter's owner: a warning or the deadline's overrun.
TimeListener = Callable[["BudgetMeter", "BudgetWarning | Overrun"], None]


@dataclass(frozen=True)
class Charge:
    """What one charge did: the meter's total after it, the limits that
    crossed ``warn_at`` with it, and the overrun if it spent the budget."""

    usage: Usage
    warnings: tuple[BudgetWarning, ...] = ()
    overrun: Overrun | None = None


def _used(usage: Usage, limit: str) -> float:
    if limit == "max_tokens":
        return usage.total_tokens
    if limit == "max_model_calls":
        return usage.model_calls
    return usage.priced_cost


class BudgetMeter:
    """What one attached :class:`Budget` has used. Thread-safe.

    ``label`` names whose budget it is in every message
    (``"task 3f2a9c1b (researcher)"``, ``"lead run run-..."``); ``prices`` is
    the price table it counts cost with (see ``Budget.prices``).
    """

    def __init__(
        self,
        budget: Budget,
        *,
        label: str,
        prices: PriceTable | None = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(budget, Budget):
            raise TypeError(f"BudgetMeter.budget must be a Budget, got {budget!r}")
        self.budget = budget
        self.label = label
        self.prices = prices
        self._now = now
        self.created_at = now()
        #: When ``max_seconds`` runs out (a ``time.monotonic()`` value), or None.
        self.deadline = (
            self.created_at + budget.max_seconds if budget.max_seconds is not None else None
        )
        self._lock = threading.Lock()
        # Invariant: the fields below are read and written under self._lock.
        self._usage = NO_USAGE
        self._warned: set[str] = set()
        self._spent: Overrun | None = None
        self._timers: list[Callable[[], None]] = []
        self._closed = False

    def __repr__(self) -> str:
        return f"<BudgetMeter of {self.label}: {self._usage} spent={self._spent}>"

    # -- reading -----------------------------------------------------------------------

    @property
    def usage(self) -> Usage:
        """Everything charged so far."""
        with self._lock:
            return self._usage

    @property
    def spent(self) -> Overrun | None:
        """The overrun that spent this budget (the first one), or None."""
        with self._lock:
            return self._spent

    def elapsed(self) -> float:
        """Seconds since the meter was created."""
        return self._now() - self.created_at

    def remaining(self) -> dict[str, float | None]:
        """What is left of each limit (never below 0; None for a limit not set)."""
        with self._lock:
            usage = self._usage
        left: dict[str, float | None] = {}
        for limit in LIMITS:
            allowed = self.budget.limit(limit)
            if allowed is None:
                left[limit] = None
            elif limit == "max_seconds":
                left[limit] = max(0.0, allowed - self.elapsed())
            else:
                left[limit] = max(0.0, allowed - _used(usage, limit))
        return left

    def unpriced(self, model_name: str | None) -> str | None:
        """With ``max_cost``: why calls of ``model_name`` could not be counted
        (no price for it, or no name), else None."""
        if self.budget.max_cost is None or price_of(self.prices, model_name) is not None:
            return None
        if model_name is None:
            return (
                f"max_cost={self.budget.max_cost:g} cannot count a call whose model did not "
                "say its name"
            )
        known = sorted(self.prices) if self.prices else []
        return (
            f"max_cost={self.budget.max_cost:g} cannot count calls of model {model_name!r}: it "
            f"has no price in price_table (prices known for: {known}); add "
            f"price_table={{{model_name!r}: (input, output)}} (per million tokens) to the "
            "SubagentRuntime or the Budget"
        )

    def check_model(self, model_name: str) -> None:
        """With ``max_cost``, refuse a model whose cost could not be counted:
        ``UnpricedModelError`` names the model and the price table to fill in."""
        problem = self.unpriced(model_name)
        if problem is not None:
            raise UnpricedModelError(f"{problem} (budget of {self.label})")

    def refuse_model(self, model_name: str | None) -> Overrun | None:
        """With ``max_cost``, a call of a model whose cost cannot be counted
        spends the budget (the first overrun stays the reason); else None."""
        problem = self.unpriced(model_name)
        if problem is None:
            return None
        with self._lock:
            if self._spent is None:
                assert self.budget.max_cost is not None
                self._spent = Overrun("max_cost", self._usage.priced_cost, self.budget.max_cost,
                                      self.label, problem=problem)
            return self._spent

    # -- charging ----------------------------------------------------------------------

    def charge(self, usage: Usage) -> Charge:
        """Add one model call's usage; say which limits crossed ``warn_at`` and
        whether this charge spent the budget."""
        budget = self.budget
        warnings: list[BudgetWarning] = []
        overrun: Overrun | None = None
        with self._lock:
            self._usage = total = self._usage + usage
            for limit in _COUNTED:
                allowed = budget.limit(limit)
                if allowed is None:
                    continue
                used = _used(total, limit)
                warning = self._warning_locked(limit, used, allowed)
                if warning is not None:
                    warnings.append(warning)
                if used > allowed and self._spent is None and overrun is None:
                    overrun = Overrun(limit, used, allowed, self.label)
            if overrun is not None:
                self._spent = overrun
        return Charge(total, tuple(warnings), overrun)

    def refuse(self) -> Overrun | None:
        """At a model call's entry: the overrun that forbids it, or None.

        A limit with nothing left, or a passed deadline, spends the budget
        here (a task asked for more than was left)."""
        budget = self.budget
        with self._lock:
            if self._spent is not None:
                return self._spent
            if self.deadline is not None and self._now() >= self.deadline:
                assert budget.max_seconds is not None
                self._spent = Overrun("max_seconds", self.elapsed(), budget.max_seconds,
                                      self.label)
                return self._spent
            for limit in _COUNTED:
                allowed = budget.limit(limit)
                if allowed is not None and _used(self._usage, limit) >= allowed:
                    self._spent = Overrun(limit, _used(self._usage, limit), allowed, self.label)
                    return self._spent
        return None

    def exhausted(self) -> Overrun | None:
        """A counted limit with nothing left, or the spent overrun; unlike
        :meth:`refuse`, this spends nothing."""
        budget = self.budget
        with self._lock:
            if self._spent is not None:
                return self._spent
            for limit in _COUNTED:
                allowed = budget.limit(limit)
                if allowed is not None and _used(self._usage, limit) >= allowed:
                    return Overrun(limit, _used(self._usage, limit), allowed, self.label)
        return None

    def _warning_locked(self, limit: str, used: float, allowed: float) -> BudgetWarning | None:
        warn_at = self.budget.warn_at
        if warn_at is None or limit in self._warned or used < warn_at * allowed:
            return None
        self._warned.add(limit)
        return BudgetWarning(limit, used, allowed, warn_at, self.label)

    # -- the clock ---------------------------------------------------------------------

    def start(self, clock: BudgetClock, on_time: TimeListener) -> None:
        """Schedule the ``max_seconds`` warning and deadline on ``clock``;
        ``on_time(meter, warning_or_overrun)`` is called on the clock's thread."""
        budget = self.budget
        if self.deadline is None or budget.max_seconds is None:
            return
        timers: list[Callable[[], None]] = []
        if budget.warn_at is not None:
            when = self.created_at + budget.warn_at * budget.max_seconds
            timers.append(clock.call_at(when, lambda: self._tick_warning(on_time)))
        timers.append(clock.call_at(self.deadline, lambda: self._tick_deadline(on_time)))
        with self._lock:
            if self._closed:
                for cancel in timers:
                    cancel()
                return
            self._timers += timers

    def close(self) -> None:
        """Nothing draws on this budget any more: cancel its timers."""
        with self._lock:
            self._closed = True
            timers, self._timers = self._timers, []
        for cancel in timers:
            cancel()

    def _tick_warning(self, on_time: TimeListener) -> None:
        budget = self.budget
        assert budget.max_seconds is not None
        with self._lock:
            if self._spent is not None:
                return
            warning = self._warning_locked("max_seconds", self.elapsed(), budget.max_seconds)
        if warning is not None:
            on_time(self, warning)

    def _tick_deadline(self, on_time: TimeListener) -> None:
        budget = self.budget
        assert budget.max_seconds is not None
        with self._lock:
            if self._spent is not None:
                return  # spent already (another limit): its stop is on its way
            self._spent = Overrun("max_seconds", self.elapsed(), budget.max_seconds, self.label)
            overrun = self._spent
        on_time(self, overrun)


class BudgetClock:
    """Calls each scheduled callback at its ``time.monotonic()`` time, on one
    daemon thread started on first use (so a runtime without ``max_seconds``
    never starts it). A callback must not block: it runs before the next one."""

    def __init__(self, name: str = "subagent-budget-clock") -> None:
        self._name = name
        self._cond = threading.Condition()
        # Invariant: the fields below are read and written under self._cond.
        self._heap: list[tuple[float, int, _Timer]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._cancelled = 0

    def call_at(self, when: float, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` at ``when`` (at once if it has passed); returns a
        function that cancels the call if it has not started yet."""
        timer = _Timer(callback, self._cancelled_one)
        with self._cond:
            if self._closed:
                raise RuntimeError("the budget clock is closed")
            heapq.heappush(self._heap, (when, next(self._seq), timer))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()
        return timer.cancel

    @property
    def scheduled(self) -> int:
        """How many calls are kept (a few cancelled ones may wait to be dropped)."""
        with self._cond:
            return len(self._heap)

    def _cancelled_one(self) -> None:
        # Cancelled calls would otherwise stay until their time (a budget of
        # an hour, attached to many short tasks): drop them once they are
        # more than half of what is kept.
        with self._cond:
            self._cancelled += 1
            if self._cancelled > COMPACT_AFTER and self._cancelled * 2 > len(self._heap):
                self._heap = [item for item in self._heap if not item[2].cancelled]
                heapq.heapify(self._heap)
                self._cancelled = 0

    def close(self, timeout: float | None = None) -> None:
        """Drop every scheduled call and stop the thread."""
        with self._cond:
            self._closed = True
            self._heap.clear()
            thread = self._thread
            self._cond.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    if self._heap:
                        delay = self._heap[0][0] - time.monotonic()
                        if delay <= 0:
                            break
                        self._cond.wait(min(delay, threading.TIMEOUT_MAX))
                    else:
                        self._cond.wait()
                if self._closed:
                    return
                _when, _seq, timer = heapq.heappop(self._heap)
                if timer.cancelled:
                    self._cancelled = max(0, self._cancelled - 1)
                    continue
            timer.fire()


class _Timer:
    """One scheduled call; cancelling it makes firing a no-op."""

    __slots__ = ("_callback", "_on_cancel", "cancelled")

    def __init__(self, callback: Callable[[], None], on_cancel: Callable[[], None]) -> None:
        self._callback = callback
        self._on_cancel = on_cancel
        self.cancelled = False

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self._on_cancel()

    def fire(self) -> None:
        if self.cancelled:
            return
        self.cancelled = True  # a cancel from now on has nothing to drop
        try:
            self._callback()
        except Exception:  # one failing callback must not stop every deadline
            logger.exception("a budget clock callback failed")
