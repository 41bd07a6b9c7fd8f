"""Errors raised by subagent-exec. Each says what was wrong and what to do."""

from __future__ import annotations


class SubagentError(Exception):
    """Base class of the errors this library raises on purpose."""


class CapacityError(SubagentError):
    """The runtime's queue of PENDING tasks is full (``max_pending``)."""


class DepthError(SubagentError):
    """A task would nest deeper than the runtime's ``max_depth``."""


class RuntimeClosedError(SubagentError):
    """The runtime was shut down; create a new one (or call ``configure``)."""


class UnknownTaskError(SubagentError, KeyError):
    """No task with this id is registered (never was, or it was cleaned up)."""

    def __str__(self) -> str:  # KeyError would show repr(args)
        return str(self.args[0]) if self.args else "unknown task"


class ResumeError(SubagentError, ValueError):
    """A task cannot be resumed; ``reason`` says why: ``"unfinished"`` (send it
    a message with ``message_task`` instead), ``"completed"`` (give a message
    to follow up), ``"no_checkpoint"``, ``"unknown_subagent"`` or
    ``"unavailable"`` (the runtime keeps no checkpoints)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class MaxTurnsExceeded(SubagentError):
    """A sub-agent asked for more model calls than its ``max_turns`` allows."""


class BudgetExceeded(SubagentError):
    """A budget (``Budget``) is spent: its message reads ``<limit> <used>/<allowed>
    (budget of <task or lead run>)``. Raised at a model call's entry when
    nothing is left, and the error of every task stopped by that budget."""


class UnpricedModelError(SubagentError, ValueError):
    """A budget has ``max_cost`` but a model it would pay for has no price in
    the price table (so its cost could not be counted)."""


class ModelBindingError(SubagentError):
    """A chat model cannot safely run on a sub-agent's own event loop."""


def describe(exc: BaseException) -> str:
    """``"OriginalType: message"``: the form of every ``error`` a task records."""
    return f"{type(exc).__name__}: {exc}"


class StoreError(SubagentError):
    """A task store cannot be used: it cannot be opened or reached (the message
    names the file or the host), or its schema is not one this version reads."""


class StoreSchemaError(StoreError):
    """The store's schema was written by a newer version of subagent-exec (or
    is not a subagent-exec schema at all); upgrade, or use another database."""
