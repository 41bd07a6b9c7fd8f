"""What a sub-agent is: :class:`SubagentConfig`, validated when it is made."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable

#: A chat model instance, a zero-argument factory returning one, a
#: ``"provider:model"`` string for ``init_chat_model``, or ``"inherit"``.
ModelSpec: TypeAlias = BaseChatModel | Callable[[], BaseChatModel] | str
#: A callable returning a compiled graph / Runnable taking ``{"messages": [...]}``;
#: with one parameter it receives the run's chat model (see ``SubagentConfig``).
GraphFactory: TypeAlias = (
    Callable[[], Runnable[Any, Any]] | Callable[[BaseChatModel], Runnable[Any, Any]]
)

INHERIT: Literal["inherit"] = "inherit"


@dataclass(frozen=True)
class SubagentConfig:
    """The definition of one kind of sub-agent.

    ``tools`` is an allow-list of tool names (``None`` = every tool the
    executor was given), ``disallowed_tools`` is removed from it afterwards;
    by default a sub-agent cannot delegate further (``"task"`` is disallowed).

    ``model`` factories are called inside the sub-agent's own event loop, once
    per run, so the model's HTTP client belongs to that loop. ``graph_factory``
    replaces the built-in agent entirely: it is called once per run, on the
    sub-agent's loop, and must return a Runnable that takes
    ``{"messages": [...]}``. A ``graph_factory`` with one (required) parameter
    is called with the run's chat model, built from ``model`` as for the
    built-in agent (its HTTP client belongs to this run's loop and is closed
    when the run ends), so a custom graph on a real model works on every loop.
    """

    name: str
    description: str = ""
    system_prompt: str | None = None
    model: ModelSpec | None = None
    tools: Sequence[str] | None = None
    disallowed_tools: Sequence[str] = field(default_factory=lambda: ("task",))
    max_turns: int = 50
    timeout_seconds: float = 900.0
    graph_factory: GraphFactory | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError("SubagentConfig.name must be a non-empty string")
        if isinstance(self.max_turns, bool) or not isinstance(self.max_turns, int):
            raise ValueError(
                f"SubagentConfig.max_turns must be an int >= 1, got {self.max_turns!r}"
            )
        if self.max_turns < 1:
            raise ValueError(f"SubagentConfig.max_turns must be >= 1, got {self.max_turns}")
        if isinstance(self.timeout_seconds, bool) or not isinstance(
            self.timeout_seconds, int | float
        ):
            raise ValueError(
                f"SubagentConfig.timeout_seconds must be a number > 0, got {self.timeout_seconds!r}"
            )
        if not self.timeout_seconds > 0:  # also rejects NaN
            raise ValueError(
                f"SubagentConfig.timeout_seconds must be > 0, got {self.timeout_seconds}"
            )
        if isinstance(self.model, str) and not self.model.strip():
            raise ValueError("SubagentConfig.model must not be an empty string")
        if self.model is not None and not (
            isinstance(self.model, str | BaseChatModel) or callable(self.model)
        ):
            raise ValueError(
                "SubagentConfig.model must be a chat model, a zero-argument factory, "
                f"a 'provider:model' string or 'inherit', got {type(self.model).__name__}"
            )
        if self.graph_factory is not None and not callable(self.graph_factory):
            raise ValueError("SubagentConfig.graph_factory must be callable")
        if self.graph_factory_takes_model and self.model is None:
            raise ValueError(
                f"SubagentConfig.graph_factory of {self.name!r} takes the run's chat model, "
                "so set model=... (an instance, a factory, a 'provider:model' string or 'inherit')"
            )
        # Normalise the name lists to tuples: the config is frozen and shared
        # between threads, so nothing in it may be mutated after validation.
        for attr in ("tools", "disallowed_tools"):
            value = getattr(self, attr)
            if value is None:
                continue
            if isinstance(value, str):
                raise ValueError(
                    f"SubagentConfig.{attr} must be a sequence of tool names, not a string"
                )
            names = tuple(value)
            bad = [n for n in names if not isinstance(n, str) or not n]
            if bad:
                raise ValueError(f"SubagentConfig.{attr} contains invalid tool names: {bad!r}")
            object.__setattr__(self, attr, names)

    @property
    def graph_factory_takes_model(self) -> bool:
        """Whether ``graph_factory`` wants the run's chat model as its argument."""
        return self.graph_factory is not None and _required_positionals(self.graph_factory) == 1

    def select_tools(self, available: Sequence[Any]) -> list[Any]:
        """Return the tools of ``available`` this sub-agent may use.

        Raises ``ValueError`` naming ``tools`` when the allow-list names a tool
        that is not available.
        """
        by_name = {_tool_name(t): t for t in available}
        if self.tools is None:
            chosen = list(available)
        else:
            unknown = [n for n in self.tools if n not in by_name]
            if unknown:
                raise ValueError(
                    f"SubagentConfig.tools of {self.name!r} names unknown tools {unknown}; "
                    f"available: {sorted(by_name)}"
                )
            chosen = [by_name[n] for n in self.tools]
        blocked = set(self.disallowed_tools)
        return [t for t in chosen if _tool_name(t) not in blocked]


def _tool_name(tool: Any) -> str:
    name = getattr(tool, "name", None) or getattr(tool, "__name__", None)
    if not isinstance(name, str):
        raise ValueError(f"tool {tool!r} has no name")
    return name


def _required_positionals(function: Callable[..., Any]) -> int:
    """How many positional parameters ``function`` needs (0 when it cannot be inspected)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return 0
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in parameters if p.kind in kinds and p.default is inspect.Parameter.empty)
