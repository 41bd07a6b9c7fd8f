"""deepagents sub-agent specs <-> :class:`~subagent_exec.SubagentConfig`.

Single responsibility: one spec at a time. A declarative ``SubAgent`` dict
becomes a config whose graph is rebuilt for each run by deepagents'
``create_sub_agent`` around the run's own chat model (bound to the run's
loop); a ``CompiledSubAgent`` becomes a config that runs its runnable. What
cannot run in the background (``mode="fork"``, ``interrupt_on``,
``AsyncSubAgent``) is refused with the reason. Imported through
:mod:`subagent_exec.integrations.deepagents`, which checks that deepagents is
installed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from deepagents.middleware.subagents import CompiledSubAgent, SubAgent, create_sub_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable

from subagent_exec import SubagentConfig

NEEDS_DEEPAGENTS_TASK = (
    "it needs deepagents' own task tool, which runs it inline in the lead's graph"
)


class _DeclarativeGraph:
    """Builds a declarative deepagents sub-agent for one run, around that run's model."""

    def __init__(self, spec: Mapping[str, Any], state_schema: type | None = None) -> None:
        self._spec = dict(spec)
        self._state_schema = state_schema

    def __call__(self, model: BaseChatModel) -> Runnable[Any, Any]:
        spec: Any = {**self._spec, "model": model}
        return create_sub_agent(spec, state_schema=self._state_schema)

    def __repr__(self) -> str:
        return f"<deepagents sub-agent {self._spec['name']!r}>"


class _CompiledGraph:
    """Returns a deepagents ``CompiledSubAgent``'s runnable (built by its owner)."""

    def __init__(self, name: str, runnable: Runnable[Any, Any]) -> None:
        self._name = name
        self._runnable = runnable

    def __call__(self) -> Runnable[Any, Any]:
        return self._runnable

    def __repr__(self) -> str:
        return f"<deepagents compiled sub-agent {self._name!r}>"


def check_spec(spec: object, where: str) -> Mapping[str, Any]:
    if not isinstance(spec, Mapping):
        raise TypeError(
            f"{where}: a deepagents sub-agent is a dict (SubAgent or CompiledSubAgent), "
            f"got {type(spec).__name__}"
        )
    name = spec.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{where}: 'name' must be a non-empty string, got {name!r}")
    if not isinstance(spec.get("description", ""), str):
        raise ValueError(f"{where}: 'description' of {name!r} must be a string")
    if "graph_id" in spec:
        raise ValueError(
            f"{where}: {name!r} is an AsyncSubAgent (graph_id): it runs on a LangGraph server "
            "and cannot run through subagent-exec"
        )
    if spec.get("mode") == "fork":
        raise ValueError(
            f"{where}: {name!r} has mode='fork': it continues the lead's conversation, and "
            f"{NEEDS_DEEPAGENTS_TASK}; use task_tool='alongside' to keep that tool"
        )
    if spec.get("interrupt_on"):
        raise ValueError(
            f"{where}: {name!r} has interrupt_on (a top-level interrupt_on= or permission "
            "reaches every sub-agent, general-purpose included): a sub-agent running in the "
            "background cannot wait for human approval. Give its spec interrupt_on={} (for "
            "general-purpose: pass your own 'general-purpose' spec) to run it without "
            "approvals, or use task_tool='alongside' to keep deepagents' task for it"
        )
    if "runnable" in spec and not isinstance(spec["runnable"], Runnable):
        raise TypeError(f"{where}: 'runnable' of {name!r} must be a Runnable")
    return spec


def config_of(
    spec: Mapping[str, Any],
    *,
    timeout_seconds: float,
    max_turns: int,
    state_schema: type | None = None,
) -> SubagentConfig:
    name, description = spec["name"], spec.get("description", "")
    if "runnable" in spec:
        return SubagentConfig(
            name=name,
            description=description,
            graph_factory=_CompiledGraph(name, spec["runnable"]),
            timeout_seconds=timeout_seconds,
            max_turns=max_turns,
        )
    prompt = spec.get("system_prompt")
    return SubagentConfig(
        name=name,
        description=description,
        system_prompt=prompt if isinstance(prompt, str) else None,
        model=spec.get("model") or "inherit",
        graph_factory=_DeclarativeGraph(spec, state_schema),
        timeout_seconds=timeout_seconds,
        max_turns=max_turns,
    )


def from_deepagents_subagent(
    spec: SubAgent | CompiledSubAgent | Mapping[str, Any],
    *,
    default_tools: Sequence[Any] = (),
    timeout_seconds: float = 900.0,
    max_turns: int = 50,
) -> SubagentConfig:
    """One deepagents sub-agent spec as a :class:`~subagent_exec.SubagentConfig`.

    A ``SubAgent`` dict runs as deepagents' ``SubAgentMiddleware`` runs it
    (``create_sub_agent``: its prompt, tools, middleware, response format),
    rebuilt for each run around a model bound to the run's loop; without a
    ``model`` it inherits the ``parent_model`` of the tool or executor, without
    ``tools`` it gets ``default_tools``. A ``CompiledSubAgent`` runs its
    ``runnable`` as given. deepagents has no deadlines: ``timeout_seconds`` and
    ``max_turns`` set ours. Refused with the reason (``ValueError``):
    ``mode="fork"`` and ``interrupt_on`` specs, and ``AsyncSubAgent``\\ s.
    """
    checked = check_spec(spec, "from_deepagents_subagent")
    if "runnable" not in checked and "tools" not in checked:
        checked = {**checked, "tools": list(default_tools)}
    return config_of(checked, timeout_seconds=timeout_seconds, max_turns=max_turns)


def to_deepagents_subagent(
    config: SubagentConfig, tools: Sequence[Any] = ()
) -> SubAgent | CompiledSubAgent:
    """A :class:`~subagent_exec.SubagentConfig` as a deepagents spec (for deepagents' ``task``).

    A config with a model becomes a ``SubAgent`` dict (``"inherit"``: no
    ``model`` key, so deepagents gives it the lead's; a factory is called once
    here, since deepagents runs every sub-agent on the lead's loop); its tools
    are picked from ``tools`` by its allow-list. A config with a zero-argument
    ``graph_factory`` becomes a ``CompiledSubAgent`` (the factory is called
    once here). ``timeout_seconds`` and ``max_turns`` have no deepagents
    equivalent and are dropped.
    """
    if not isinstance(config, SubagentConfig):
        raise TypeError(f"config must be a SubagentConfig, got {type(config).__name__}")
    if config.graph_factory is not None:
        if config.graph_factory_takes_model:
            raise ValueError(
                f"{config.name!r}: a graph_factory that takes the run's model has no "
                "deepagents equivalent; give deepagents a CompiledSubAgent yourself"
            )
        runnable = config.graph_factory()  # type: ignore[call-arg]
        return CompiledSubAgent(name=config.name, description=config.description, runnable=runnable)
    spec: dict[str, Any] = {"name": config.name, "description": config.description}
    if config.system_prompt is not None:
        spec["system_prompt"] = config.system_prompt
    model = config.model
    if model is not None and model != "inherit":
        spec["model"] = model if isinstance(model, str | BaseChatModel) else model()
    if tools or config.tools is not None:
        spec["tools"] = config.select_tools(list(tools))
    return spec  # type: ignore[return-value]
