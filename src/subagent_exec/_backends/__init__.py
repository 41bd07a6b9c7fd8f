"""Where sub-agent runs execute: the implementations of the backend contract.

The runtime keeps everything that is the same whatever runs the sub-agents
(registry, tree, slots, stops, deadlines latching, retention, events,
waiting); a backend only *runs* a task the runtime has granted a slot,
interrupts it when asked, and reports how it ended (``_contract.py``).

Backends are loaded by name, so the core never imports what it does not use
(``ray`` above all):

* ``"thread"`` (``thread.py``): the default; each sub-agent on its own event
  loop in a worker thread of this process (a worker keeps its loop, tidied
  between runs); ``"thread-fresh-loops"``: the same with a fresh loop per run.
* ``"ray"`` (``ray/``): each sub-agent as an async actor method on a Ray cluster.
"""

from __future__ import annotations

import importlib

from .._contract import Backend

#: Backend names -> (module, class), imported on first use.
BUILTIN_BACKENDS: dict[str, tuple[str, str]] = {
    "thread": ("subagent_exec._backends.thread", "ThreadBackend"),
    "thread-fresh-loops": ("subagent_exec._backends.thread", "FreshLoopThreadBackend"),
    "ray": ("subagent_exec._backends.ray", "RayBackend"),
}


def load_backend(backend: object) -> Backend:
    """A backend object for ``SubagentRuntime(backend=...)``: a built-in one by
    name (made with its default options), or the given backend object."""
    if isinstance(backend, str):
        if backend not in BUILTIN_BACKENDS:
            raise ValueError(
                "SubagentRuntime.backend must be 'thread', 'ray' or a backend object "
                "(e.g. subagent_exec.RayBackend(...)), or 'thread-fresh-loops' (a fresh event "
                f"loop per run), got {backend!r}"
            )
        module_name, class_name = BUILTIN_BACKENDS[backend]
        made: Backend = getattr(importlib.import_module(module_name), class_name)()
        return made
    if not isinstance(backend, Backend):
        raise TypeError(
            "SubagentRuntime.backend must be 'thread', 'ray' or a backend object "
            f"(e.g. subagent_exec.RayBackend(...)), got {backend!r}"
        )
    return backend
