"""The built-in agent (``create_agent`` over a config's tools, system prompt
and middleware), compiled once and reused by every run, each with its own
chat model.

Compiling ``create_agent`` costs ~1 ms of CPU: a third of a trivial run, and
most of what starting many sub-agents at once costs (docs/performance.md).
Nothing of the compiled graph depends on the chat model: its model node binds
the model at every call (``request.model.bind_tools(...)`` /
``request.model.bind(...)``, langchain/agents/factory.py). So the graph is
compiled once per (tools, system prompt, middleware: the same objects) with
a stand-in for the model,
:data:`RUN_MODEL`, whose every attribute is the attribute of the chat model
of the run that reads it (a context variable each run sets on its own loop,
which LangGraph's node tasks inherit). Each run still builds its own chat
model, and its HTTP client, inside its own loop (``_models.py``).

Compiled graphs hold no per-run state (no checkpointer), so one serves any
number of runs at once, on any loop. The middleware objects were already
shared by every run of an executor before (each run compiled an agent with
the same instances); now they are shared by one compiled agent. Should
``create_agent`` ever touch the model while compiling, the stand-in raises
and the agent is compiled per run, with the run's model, as before.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from contextvars import Context, ContextVar
from typing import Any

#: How many compiled agents are kept (least recently used dropped first).
CACHE_SIZE = 64

_run_model: ContextVar[Any] = ContextVar("subagent_exec_run_model", default=None)


class NoRunModelError(LookupError):
    """The stand-in was used outside a run (no chat model is set)."""


class _RunModel:
    """Stands for the chat model of the run that uses it."""

    def __getattr__(self, name: str) -> Any:
        model = _run_model.get()
        if model is None:
            raise NoRunModelError(
                f"the built-in agent's model was asked for {name!r} outside a sub-agent run"
            )
        return getattr(model, name)

    def __repr__(self) -> str:
        return f"<the run's chat model: {_run_model.get()!r}>"


RUN_MODEL: Any = _RunModel()


class _Compiled:
    """One compiled agent and the tool objects it was compiled with."""

    __slots__ = ("graph", "parts")

    def __init__(self, parts: tuple[Any, ...], graph: Any) -> None:
        self.parts = parts  # the tools and middleware, kept so their ids stay theirs
        self.graph = graph


_cache: OrderedDict[tuple[tuple[int, ...], int, str | None], _Compiled | None] = OrderedDict()
_cache_lock = threading.Lock()


def agent_for_run(
    model: Any,
    tools: Sequence[Any],
    system_prompt: str | None,
    *,
    middleware: Sequence[Any] = (),
) -> Any:
    """The built-in agent for this run, with ``model`` as its chat model.

    Call inside the run (it sets the run's model in the current context).
    """
    from langchain.agents import create_agent

    _run_model.set(model)
    tools, middleware = tuple(tools), tuple(middleware)
    parts = (*tools, *middleware)

    def compile_with(chat_model: Any) -> Any:
        return create_agent(
            chat_model,
            tools=list(tools),
            system_prompt=system_prompt,
            middleware=list(middleware),
        )

    key = (tuple(id(p) for p in parts), len(tools), system_prompt)
    with _cache_lock:
        found = _cache.get(key, _MISSING)
        if found is not _MISSING:
            _cache.move_to_end(key)
    if found is None:  # compiling with the stand-in failed once: per run
        return compile_with(model)
    if isinstance(found, _Compiled) and all(
        a is b for a, b in zip(found.parts, parts, strict=True)
    ):
        return found.graph
    try:
        # Compiled where no run's model is set: if create_agent touched the
        # model now, it would raise instead of keeping this run's model.
        graph: Any = Context().run(compile_with, RUN_MODEL)
        compiled: _Compiled | None = _Compiled(parts, graph)
    except NoRunModelError:
        graph, compiled = compile_with(model), None
    with _cache_lock:
        _cache[key] = compiled
        _cache.move_to_end(key)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return graph


_MISSING: Any = object()
