"""What a sub-agent is: :class:`SubagentConfig`, validated when it is made."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable

from ._budget import Budget
from ._checks import check_callable, check_int, check_number, check_text

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

    ``budget``: limits for each run of this sub-agent together with everything
    it delegates (docs/budgets.md); each run counts on its own.
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
    budget: Budget | None = None
    #: Times a run that fails with a transient error goes on from its last
    #: checkpoint (same task; a ``resumed`` event each time); docs/resume.md.
    max_resumes: int = 0
    #: What counts as transient (exception types); None: connection errors,
    #: rate limits and timeouts of provider clients (``_checkpoints.py``).
    resume_on: tuple[type[BaseException], ...] | None = None

    def __post_init__(self) -> None:
        owner = "SubagentConfig"
        if self.budget is not None and not isinstance(self.budget, Budget):
            raise TypeError(f"{owner}.budget must be a Budget or None, got {self.budget!r}")
        check_text(owner, "name", self.name)
        check_int(owner, "max_resumes", self.max_resumes, minimum=0)
        if self.resume_on is not None:
            types = tuple(self.resume_on) if isinstance(self.resume_on, Iterable) else ()
            if not types or not all(
                isinstance(t, type) and issubclass(t, BaseException) for t in types
            ):
                raise TypeError(
                    "SubagentConfig.resume_on must be a non-empty tuple of exception types "
                    f"or None, got {self.resume_on!r}"
                )
            object.__setattr__(self, "resume_on", types)
        check_int(owner, "max_turns", self.max_turns, minimum=1)
        check_number(owner, "timeout_seconds", self.timeout_seconds, positive=True, finite=True)
        if isinstance(self.model, str) and not self.model.strip():
            raise ValueError("SubagentConfig.model must not be an empty string")
        if self.model is not None and not (
            isinstance(self.model, str | BaseChatModel) or callable(self.model)
        ):
            raise TypeError(
                "SubagentConfig.model must be a chat model, a zero-argument factory, "
                f"a 'provider:model' string or 'inherit', got {type(self.model).__name__}"
            )
        if self.graph_factory is not None:
            check_callable(owner, "graph_factory", self.graph_factory)
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
                raise TypeError(
                    f"SubagentConfig.{attr} must be a sequence of tool names, not a string"
                )
            if not isinstance(value, Iterable):
                raise TypeError(
                    f"SubagentConfig.{attr} must be a sequence of tool names, got {value!r}"
                )
            names = tuple(value)
            not_text = [n for n in names if not isinstance(n, str)]
            if not_text:
                raise TypeError(f"SubagentConfig.{attr} must hold tool names, got {not_text!r}")
            if "" in names:
                raise ValueError(f"SubagentConfig.{attr} contains invalid tool names: {['']!r}")
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
        by_name = {tool_name(t): t for t in available}
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
        return [t for t in chosen if tool_name(t) not in blocked]


def check_configs(owner: str, subagents: object) -> list[SubagentConfig]:
    """A non-empty sequence of ``SubagentConfig`` with unique names."""
    if isinstance(subagents, SubagentConfig) or not isinstance(subagents, Iterable):
        raise TypeError(
            f"{owner}.subagents must be a sequence of SubagentConfig, got {subagents!r}"
        )
    configs = list(subagents)
    bad = [type(c).__name__ for c in configs if not isinstance(c, SubagentConfig)]
    if bad:
        raise TypeError(f"{owner}.subagents must be SubagentConfig, got {bad}")
    if not configs:
        raise ValueError(f"{owner}.subagents: give at least one SubagentConfig")
    names = [c.name for c in configs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(
            f"{owner}.subagents: sub-agent names must be unique, repeated: {duplicates}"
        )
    return configs


def model_to_build(
    subagent: str, model: ModelSpec | None, parent_model: ModelSpec | None
) -> ModelSpec:
    """The model spec a built-in sub-agent is built from (``"inherit"``
    resolved); ``ValueError`` saying what to set when there is none."""
    if model is None:
        raise ValueError(
            f"SubagentConfig of {subagent!r} has neither model nor graph_factory; "
            "set model=... (or 'inherit' with parent_model=...) or graph_factory=..."
        )
    if model == INHERIT:
        if parent_model is None or parent_model == INHERIT:
            raise ValueError(
                f"SubagentConfig.model of {subagent!r} is 'inherit' but no parent_model "
                "was given; pass parent_model=... to SubagentExecutor / make_task_tool / "
                "SubagentMiddleware"
            )
        return parent_model
    return model


def model_name_of(model: ModelSpec | None, parent_model: ModelSpec | None = None) -> str | None:
    """The name a model spec will call, when it can be known before the run:
    a ``"provider:name"`` string, or an instance's ``model_name`` / ``model``.
    None for a factory (it is called inside the run) or no model."""
    if model == INHERIT:
        return model_name_of(parent_model) if parent_model != INHERIT else None
    if isinstance(model, str):
        return model
    if isinstance(model, BaseChatModel):
        for attr in ("model_name", "model", "model_id"):
            name = getattr(model, attr, None)
            if isinstance(name, str) and name.strip():
                return name
    return None


def tool_name(tool: Any) -> str:
    """The name a tool is selected by (``.name``, or a function's ``__name__``)."""
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
