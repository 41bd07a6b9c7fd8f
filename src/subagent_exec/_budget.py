"""What a budget is (:class:`Budget`, validated when it is made) and what a
meter says about one: a limit crossing ``warn_at`` (:class:`BudgetWarning`)
or a limit spent (:class:`Overrun`), each in the words tasks and events use.

A budget is only the limits. What it has used lives in a meter
(``_meter.py``), one per place the budget is attached: each run of a
``SubagentConfig(budget=...)``, each ``execute(..., budget=...)``, each lead
run of a ``task`` tool built with ``budget=...``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._checks import check_int, check_number
from ._usage import PriceTable, check_price_table

#: The limits of a budget, in the order they are checked and reported.
LIMITS = ("max_tokens", "max_model_calls", "max_cost", "max_seconds")

#: How a warning names each limit to a model ("your token budget").
_LIMIT_WORDS = {
    "max_tokens": "token",
    "max_model_calls": "model-call",
    "max_cost": "cost",
    "max_seconds": "time",
}


@dataclass(frozen=True)
class Budget:
    """Limits for a task and everything it delegates, counted together.

    ``max_tokens``: total tokens (input + output) of every model call.
    ``max_model_calls``: model calls. ``max_cost``: cost, in the currency of
    the price table (the runtime's ``price_table``, overridden entry by entry
    by this budget's own). ``max_seconds``: wall-clock seconds from the moment
    the budget is attached (the task's submission, the lead run's first
    delegation). ``warn_at``: the fraction of any limit at which one
    ``budget_warning`` event is published and each running task drawing on it
    is told to finish (None: no warning).

    At least one limit must be given. Frozen: one ``Budget`` may be attached
    in many places, and each place counts on its own.
    """

    max_tokens: int | None = None
    max_model_calls: int | None = None
    max_cost: float | None = None
    max_seconds: float | None = None
    warn_at: float | None = 0.8
    #: Model name -> (price per million input tokens, per million output tokens).
    price_table: Mapping[str, tuple[float, float]] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        owner = "Budget"
        if self.max_tokens is not None:
            check_int(owner, "max_tokens", self.max_tokens, minimum=1)
        if self.max_model_calls is not None:
            check_int(owner, "max_model_calls", self.max_model_calls, minimum=1)
        for name in ("max_cost", "max_seconds"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(
                    self, name, check_number(owner, name, value, positive=True, finite=True)
                )
        if all(getattr(self, name) is None for name in LIMITS):
            raise ValueError(
                "Budget needs at least one limit: max_tokens, max_model_calls, max_cost "
                "or max_seconds"
            )
        if self.warn_at is not None:
            what = f"Budget.warn_at must be a fraction in (0, 1) or None, got {self.warn_at!r}"
            if isinstance(self.warn_at, bool) or not isinstance(self.warn_at, int | float):
                raise TypeError(what)
            if not 0 < self.warn_at < 1:  # NaN fails too
                raise ValueError(what)
            object.__setattr__(self, "warn_at", float(self.warn_at))
        object.__setattr__(
            self, "price_table", check_price_table(owner, "price_table", self.price_table)
        )

    def limit(self, name: str) -> float | None:
        """The value of one limit (``"max_tokens"``, ...), None when not set."""
        if name not in LIMITS:
            raise ValueError(f"Budget.limit: name must be one of {LIMITS}, got {name!r}")
        value: float | None = getattr(self, name)
        return value

    def prices(self, runtime_table: PriceTable | None) -> PriceTable | None:
        """The price table this budget counts with: the runtime's, with this
        budget's own entries winning."""
        if not self.price_table:
            return runtime_table
        if not runtime_table:
            return self.price_table
        return {**runtime_table, **self.price_table}

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in (*LIMITS, "warn_at")}


def figure(value: float) -> str:
    """A count as an integer, anything else with up to 4 significant digits."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


@dataclass(frozen=True)
class Overrun:
    """A spent limit: ``used`` reached or passed ``allowed``, and a task needed
    more; or (``problem``) a call whose cost a ``max_cost`` budget cannot count."""

    limit: str
    used: float
    allowed: float
    #: Whose budget: ``"task 3f2a9c1b (researcher)"``, ``"lead run run-..."``.
    label: str
    #: Why the budget could not count a call (an unpriced model), if that is what spent it.
    problem: str | None = None

    @property
    def figures(self) -> str:
        """``"max_tokens 1200/1000"``."""
        return f"{self.limit} {figure(self.used)}/{figure(self.allowed)}"

    @property
    def message(self) -> str:
        """``"max_tokens 1200/1000 (budget of lead run run-...)"``."""
        return f"{self.problem or self.figures} (budget of {self.label})"

    @property
    def error(self) -> str:
        """The ``error`` of every task this overrun stops."""
        kind = "UnpricedModelError" if self.problem else "BudgetExceeded"
        return f"{kind}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "limit": self.limit,
            "used": self.used,
            "allowed": self.allowed,
            "budget_of": self.label,
            "error": self.error,
        }


@dataclass(frozen=True)
class BudgetWarning:
    """A limit crossed ``warn_at`` (published once per budget and limit)."""

    limit: str
    used: float
    allowed: float
    warn_at: float
    label: str

    @property
    def note(self) -> str:
        """What each running task drawing on the budget is told before its next model call."""
        return (
            f"You have used {round(self.warn_at * 100)}% of your {_LIMIT_WORDS[self.limit]} "
            "budget: finish with what you have."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "limit": self.limit,
            "used": self.used,
            "allowed": self.allowed,
            "warn_at": self.warn_at,
            "budget_of": self.label,
            "note": self.note,
        }
