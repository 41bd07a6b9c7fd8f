"""deepagents' sub-agents, run through subagent-exec.

Single responsibility: connect deepagents (0.7.x) sub-agent specs and its
``create_deep_agent`` to subagent-exec's ``task`` tool, so that every
delegation runs as a sub-agent on its own event loop, under a deadline, and
stops with its whole tree.

* :func:`create_deep_agent` takes deepagents' own arguments plus ``runtime=``.
  deepagents assembles the agent exactly as it always does (its
  general-purpose sub-agent, each ``subagents=`` spec with its default
  middleware stack, harness profiles, skills, permissions), and the sub-agents
  it prepared for its ``task`` tool are then offered by *our* ``task`` tool.
  ``task_tool="replace"`` (the default of this function, and the reason to
  call it) puts our tool in place of deepagents' one, same name, same
  sub-agent types; ``task_tool="alongside"`` keeps deepagents' ``task`` and
  adds ours under another name (``background_task``). Nothing is shadowed
  silently: a ``task`` tool or sub-agent middleware of your own in ``tools`` /
  ``middleware`` is refused with the reason.
* :func:`from_deepagents_subagent` turns one deepagents spec (a ``SubAgent``
  dict, or a ``CompiledSubAgent`` wrapping a runnable) into a
  :class:`~subagent_exec.SubagentConfig`; :func:`to_deepagents_subagent` goes
  back.

How the prepared sub-agents are obtained: ``create_deep_agent`` builds one
``SubAgentMiddleware`` from the fully processed specs. While our
``create_deep_agent`` runs deepagents' one, that class name in
``deepagents.graph`` refers to a subclass (under a lock; the subclass acts as
the original for anyone else) that receives those specs and builds our tool
from them. This keeps deepagents' assembly, the one thing we must not
re-implement, exactly as deepagents does it.

Each sub-agent graph is rebuilt for every run on the sub-agent's own loop,
with a chat model whose HTTP client belongs to that loop (``graph_factory``
with a model parameter): a graph built once around a shared ``ChatOpenAI``
fails on the second loop ("Event loop is closed").
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel

from subagent_exec import SubagentConfig, SubagentMiddleware, SubagentRuntime, make_task_tool

try:
    import deepagents.graph as _deepagents_graph
    from deepagents.middleware.subagents import SubAgentMiddleware
except ImportError as exc:  # pragma: no cover - exercised without the extra only
    raise ImportError(
        "subagent_exec.integrations.deepagents needs deepagents; install it with: "
        "pip install 'subagent-exec[deepagents]'"
    ) from exc

from ._deepagents_specs import (
    NEEDS_DEEPAGENTS_TASK,
    check_spec,
    config_of,
    from_deepagents_subagent,
    to_deepagents_subagent,
)

__all__ = ["create_deep_agent", "from_deepagents_subagent", "to_deepagents_subagent"]

logger = logging.getLogger("subagent_exec")

TaskToolMode = Literal["replace", "alongside"]
#: The name our tool takes next to deepagents' own ``task`` (``task_tool="alongside"``).
ALONGSIDE_NAME = "background_task"


# -- create_deep_agent ----------------------------------------------------------------------


class _Assembly:
    """What our ``create_deep_agent`` asks of the ``SubAgentMiddleware`` deepagents builds."""

    def __init__(
        self,
        *,
        mode: TaskToolMode,
        tool_name: str,
        own: Sequence[SubagentConfig],
        runtime: SubagentRuntime | None,
        timeout_seconds: float,
        max_turns: int,
        on_event: Callable[[dict[str, Any]], None] | None,
        stream_subagent_output: bool,
    ) -> None:
        self.mode = mode
        self.tool_name = tool_name
        self.own = list(own)
        self.runtime = runtime
        self.timeout_seconds = timeout_seconds
        self.max_turns = max_turns
        self.on_event = on_event
        self.stream_subagent_output = stream_subagent_output
        self.adopted = False

    def task_tool(self, specs: Sequence[Mapping[str, Any]], state_schema: type | None) -> Any:
        """Our tool, offering deepagents' prepared sub-agents and our own configs."""
        self.adopted = True
        taken = {config.name for config in self.own}
        configs: list[SubagentConfig] = []
        for spec in specs:
            if spec["name"] in taken:
                continue  # a SubagentConfig of the same name takes its place
            if self.mode == "alongside" and (
                spec.get("mode") == "fork" or spec.get("interrupt_on")
            ):
                logger.info(
                    "deepagents sub-agent %r stays with deepagents' task only: %s",
                    spec["name"],
                    NEEDS_DEEPAGENTS_TASK,
                )
                continue
            check_spec(spec, "create_deep_agent")
            configs.append(
                config_of(
                    spec,
                    timeout_seconds=self.timeout_seconds,
                    max_turns=self.max_turns,
                    state_schema=state_schema,
                )
            )
        return make_task_tool(
            [*configs, *self.own],
            runtime=self.runtime,
            name=self.tool_name,
            on_event=self.on_event,
            stream_subagent_output=self.stream_subagent_output,
        )


_assembly: contextvars.ContextVar[_Assembly | None] = contextvars.ContextVar(
    "subagent_exec_deepagents_assembly", default=None
)
_ASSEMBLY_LOCK = threading.Lock()
#: The name deepagents' ``create_deep_agent`` looks its sub-agent middleware class up by.
_SEAM = "SubAgentMiddleware"


class _RoutedSubAgentMiddleware(SubAgentMiddleware):
    """deepagents' ``SubAgentMiddleware``, whose ``task`` tool is ours (or sits beside ours).

    Outside our ``create_deep_agent`` it is exactly deepagents' class.
    """

    def __init__(self, *, subagents: Sequence[Any], **kwargs: Any) -> None:
        self._assembly = _assembly.get()
        self._routed: Any = None
        super().__init__(subagents=subagents, **kwargs)
        if self._assembly is not None:
            self._routed = self._assembly.task_tool(subagents, kwargs.get("state_schema"))
            self._arrange()

    @property
    def name(self) -> str:
        return "SubAgentMiddleware"  # deepagents and create_agent know it by this name

    def _arrange(self) -> None:
        if self._routed is None or self._assembly is None:
            return
        theirs = [t for t in self.tools if getattr(t, "name", None) == "task"]
        self.tools = [self._routed] if self._assembly.mode == "replace" else [*theirs, self._routed]

    def _set_private_state_keys(self, value: frozenset[str]) -> None:
        # deepagents rebuilds its task tool here, after assembly; keep ours in place.
        SubAgentMiddleware.private_state_keys.fset(self, value)  # type: ignore[attr-defined]
        self._arrange()

    private_state_keys = property(
        SubAgentMiddleware.private_state_keys.fget,  # type: ignore[attr-defined]
        _set_private_state_keys,
    )


def _tool_names(item: Any) -> list[str]:
    names = [getattr(item, "name", None)] if not isinstance(item, dict) else [item.get("name")]
    names += [getattr(t, "name", None) for t in getattr(item, "tools", None) or []]
    return [n for n in names if isinstance(n, str)]


def _refuse_shadowing(tools: Sequence[Any], middleware: Sequence[Any], reserved: set[str]) -> None:
    for where, items in (("tools", tools), ("middleware", middleware)):
        for item in items:
            if isinstance(item, SubAgentMiddleware | SubagentMiddleware) or (
                getattr(item, "name", None) == "SubAgentMiddleware"
            ):
                raise ValueError(
                    f"create_deep_agent: {where} holds a sub-agent middleware "
                    f"({type(item).__name__}); it would replace the task tool this function "
                    "sets up. Pass sub-agents through subagents= instead"
                )
            clash = reserved & set(_tool_names(item))
            if clash:
                raise ValueError(
                    f"create_deep_agent: {where} holds a tool named {sorted(clash)[0]!r}, which "
                    "would silently shadow a task tool; rename it (or, for a task tool of "
                    "subagent-exec, pass its sub-agents through subagents= instead)"
                )


def create_deep_agent(
    model: str | BaseChatModel | None = None,
    tools: Sequence[Any] | None = None,
    *,
    subagents: Sequence[Any] | None = None,
    middleware: Sequence[Any] = (),
    runtime: SubagentRuntime | None = None,
    task_tool: TaskToolMode = "replace",
    task_tool_name: str | None = None,
    timeout_seconds: float = 900.0,
    max_turns: int = 50,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    stream_subagent_output: bool = False,
    **deepagents_kwargs: Any,
) -> Any:
    """deepagents' ``create_deep_agent``, whose sub-agents run through subagent-exec.

    Takes every argument of ``deepagents.create_deep_agent`` (passed on
    unchanged) and builds the agent with it, then offers the sub-agents it
    prepared -- the general-purpose one and every ``subagents=`` spec, each with
    deepagents' default middleware -- through subagent-exec's ``task`` tool:
    each call runs on ``runtime`` (default: the process-wide runtime) on its own
    loop, under ``timeout_seconds``, and a stop reaches its whole tree.
    ``subagents=`` may also hold :class:`~subagent_exec.SubagentConfig`\\ s
    (they keep their own deadlines; one named like a deepagents sub-agent,
    e.g. ``"general-purpose"``, takes its place).

    ``task_tool="replace"``: our tool is the lead's ``task`` tool, in place of
    deepagents' one (``task_tool_name`` renames it). ``"alongside"``: deepagents'
    ``task`` stays as it is and ours is added as ``task_tool_name`` (default
    ``"background_task"``); sub-agents that need deepagents' own tool
    (``mode="fork"``, ``interrupt_on``) are then offered by deepagents' one only.
    ``on_event`` and ``stream_subagent_output`` are those of ``make_task_tool``
    (the latter: each sub-agent's tokens reach the lead's stream as
    ``task_output`` custom events).

    What differs from deepagents' ``task``: a sub-agent starts from the task
    text alone, not from the lead's state (with the default ``StateBackend`` it
    neither sees the lead's files nor hands its own back: use a
    ``FilesystemBackend`` or ``StoreBackend`` to share files), and its answer
    is the text of its last AI message.
    """
    if task_tool not in ("replace", "alongside"):
        raise ValueError(
            f"create_deep_agent: task_tool must be 'replace' or 'alongside', got {task_tool!r}"
        )
    name = task_tool_name or ("task" if task_tool == "replace" else ALONGSIDE_NAME)
    if not isinstance(name, str) or not name.strip():
        raise ValueError("create_deep_agent: task_tool_name must be a non-empty string")
    if task_tool == "alongside" and name == "task":
        raise ValueError(
            "create_deep_agent: with task_tool='alongside' deepagents keeps the name 'task'; "
            "give task_tool_name another name"
        )
    if runtime is not None and not isinstance(runtime, SubagentRuntime):
        raise TypeError(f"create_deep_agent: runtime must be a SubagentRuntime, got {runtime!r}")
    if isinstance(subagents, Mapping | str):
        raise TypeError("create_deep_agent: subagents must be a list of sub-agent specs")
    ours: list[SubagentConfig] = []
    theirs: list[Any] = []
    for index, spec in enumerate(subagents or []):
        if isinstance(spec, SubagentConfig):
            ours.append(spec)
        elif isinstance(spec, Mapping):
            if task_tool == "replace" and "graph_id" not in spec:
                check_spec({**spec, "interrupt_on": None}, f"create_deep_agent: subagents[{index}]")
            theirs.append(spec)
        else:
            raise TypeError(
                f"create_deep_agent: subagents[{index}] must be a deepagents spec (dict) or a "
                f"SubagentConfig, got {type(spec).__name__}"
            )
    _refuse_shadowing(list(tools or []), list(middleware), {name, "task"})

    assembly = _Assembly(
        mode=task_tool,
        tool_name=name,
        own=ours,
        runtime=runtime,
        timeout_seconds=timeout_seconds,
        max_turns=max_turns,
        on_event=on_event,
        stream_subagent_output=stream_subagent_output,
    )
    extra: list[Any] = []
    for attempt in range(2):
        with _ASSEMBLY_LOCK:
            token = _assembly.set(assembly)
            original = getattr(_deepagents_graph, _SEAM)
            setattr(_deepagents_graph, _SEAM, _RoutedSubAgentMiddleware)
            try:
                agent = _deepagents_graph.create_deep_agent(
                    model,
                    tools,
                    subagents=theirs,
                    middleware=[*middleware, *extra],
                    **deepagents_kwargs,
                )
            finally:
                setattr(_deepagents_graph, _SEAM, original)
                _assembly.reset(token)
        if assembly.adopted or not ours or attempt:
            return agent
        # deepagents built no task tool (its profile disables the general-purpose
        # sub-agent and no spec was given): our configs still need one.
        extra = [
            SubagentMiddleware(
                ours,
                runtime=runtime,
                name=name,
                on_event=on_event,
                stream_subagent_output=stream_subagent_output,
            )
        ]
    raise AssertionError("unreachable")  # pragma: no cover
