"""Which conversation ("thread") and owner a lead agent's tool call or hook
belongs to, and the stream it writes progress events to.

Background tasks are scoped to the lead agent's thread and owner: the tools of
one thread never see another thread's tasks, and completions are delivered to
the thread that started them. The thread is, first found:

1. the LangGraph ``configurable.thread_id`` of the run (a checkpointed
   conversation keeps it across runs);
2. the task id of the sub-agent whose code is running, when the lead agent
   itself runs as a task of the runtime (the server's runs, nested leads);
3. the run's ``run_id`` when the caller gave one;
4. an id minted once per graph run (its ``RunControl``, which every node of
   one run shares), so without a thread each run is its own conversation.

The owner is the owner of the task the lead runs in (None otherwise).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._context import task_in_scope
from ._runtime import SubagentRuntime

logger = logging.getLogger("subagent_exec")

#: How many graph runs without a thread id we remember an id for.
MINTED_LIMIT = 10_000


@dataclass(frozen=True)
class LeadScope:
    """A lead agent's conversation: what background tasks are scoped to."""

    thread_id: str
    owner: str | None


def lead_scope(runtime: SubagentRuntime) -> LeadScope | None:
    """The scope of the lead agent whose code is running (None outside any
    graph run and outside any sub-agent)."""
    config = _graph_config()
    task_id = task_in_scope(runtime)
    holder = runtime.get(task_id) if task_id is not None else None
    owner = holder.owner if holder is not None else None
    configurable = (config.get("configurable") or {}) if config is not None else {}
    thread = configurable.get("thread_id")
    if thread is not None and str(thread).strip():
        return LeadScope(str(thread), owner)
    if task_id is not None:
        return LeadScope(task_id, owner)
    run_id = _run_id() if config is not None else None
    return LeadScope(run_id, owner) if run_id is not None else None


def lead_run_id() -> str | None:
    """The id of the graph run this code belongs to (3. and 4. above), None
    outside a graph run: what a tool's per-run budget is keyed by."""
    return _run_id() if _graph_config() is not None else None


def _graph_config() -> dict[str, Any] | None:
    """The LangGraph config of the node running this code, if any."""
    from langgraph.config import get_config

    try:
        return dict(get_config())
    except RuntimeError:
        return None


_lock = threading.Lock()
#: id(RunControl) -> (the RunControl, its minted id); the object is kept so
#: its id() cannot be reused while the entry exists.
_minted: OrderedDict[int, tuple[object, str]] = OrderedDict()


def _run_id() -> str | None:
    """The id of the graph run this node belongs to (see the module docstring);
    None when the code does not run in a LangGraph node (a tool called directly)."""
    from langgraph.runtime import get_runtime

    try:
        runtime: Any = get_runtime()
    except (RuntimeError, KeyError):
        runtime = None
    info = getattr(runtime, "execution_info", None)
    given = getattr(info, "run_id", None)
    if given:
        return f"run-{given}"
    control = getattr(runtime, "control", None)
    if control is None:  # a Runnable's config, but not a LangGraph run's
        return None
    with _lock:
        found = _minted.get(id(control))
        if found is not None and found[0] is control:
            _minted.move_to_end(id(control))
            return found[1]
        minted = f"run-{uuid.uuid4().hex}"
        _minted[id(control)] = (control, minted)
        while len(_minted) > MINTED_LIMIT:
            _minted.popitem(last=False)
        return minted


def lead_stream_writer() -> Callable[[Any], None] | None:
    """The lead's LangGraph stream writer, or None outside a graph run."""
    from langgraph.config import get_stream_writer

    try:
        return get_stream_writer()
    except (RuntimeError, KeyError):
        return None


def write_to_stream(events: list[dict[str, Any]]) -> None:
    """Write progress events to the lead's ``custom`` stream, if there is one."""
    writer = lead_stream_writer()
    if writer is None:
        return
    for event in events:
        try:
            writer(event)
        except Exception:  # a stream that went away must not break the lead
            logger.exception("[task=%s] could not write the %s event", event.get("task_id"),
                             event.get("type"))
