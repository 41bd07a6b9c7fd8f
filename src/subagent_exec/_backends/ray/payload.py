"""What travels to a Ray worker: the pickled run, checked at submission."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from langchain_core.tools import BaseTool
from ray import cloudpickle

from ..._config import tool_name
from ..._contract import RunFunction
from ..._errors import describe
from ..._run import SubagentRun
from .delegation import RemoteTool


@dataclass(frozen=True)
class PreparedRun:
    """What ``RayBackend.prepare`` keeps on a task: the pickled run, and the
    tools that stay on the driver (by name), which their stand-ins call."""

    payload: bytes
    driver_tools: dict[str, BaseTool]


def prepare_run(run: RunFunction, *, subagent_name: str) -> PreparedRun:
    """Pickle ``run`` for a worker, or raise ``TypeError`` naming the part that
    cannot travel (then nothing is registered)."""
    sent, driver_tools = _as_sent(run)
    try:
        return PreparedRun(bytes(cloudpickle.dumps(sent)), driver_tools)  # type: ignore[no-untyped-call]
    except Exception as exc:
        culprit = _unpicklable_part(sent)
        raise TypeError(
            f"sub-agent {subagent_name!r} cannot be sent to Ray workers: {culprit} could not "
            f"be serialised ({describe(exc)}). Everything a sub-agent uses travels by "
            "cloudpickle: create locks, sockets and clients inside a factory or inside the "
            "tool call, not in the object given to the config"
        ) from exc


def _as_sent(run: RunFunction) -> tuple[RunFunction, dict[str, BaseTool]]:
    """The run as it travels: without callbacks (they stay on the driver), and
    with each tool that must run on the driver (``runs_on_driver``, e.g. the
    ``task`` tool, which holds the runtime) replaced by a :class:`RemoteTool`."""
    if not isinstance(run, SubagentRun):
        return run, {}
    driver_tools: dict[str, BaseTool] = {}
    tools: list[Any] = []
    for tool in run.tools:
        if isinstance(tool, BaseTool) and getattr(tool, "runs_on_driver", False):
            driver_tools[tool.name] = tool
            tool = RemoteTool.standing_in_for(tool)
        tools.append(tool)
    return dataclasses.replace(run, callbacks=(), tools=tuple(tools)), driver_tools


def _parts(run: RunFunction) -> list[tuple[str, Any]]:
    """The named parts of a run, for error messages."""
    if not isinstance(run, SubagentRun):
        return [("the run function", run)]
    parts: list[tuple[str, Any]] = [
        ("the config's model", run.config.model),
        ("the config's graph_factory", run.config.graph_factory),
        ("parent_model", run.parent_model),
    ]
    parts.extend((f"tool {tool_name(tool)!r}", tool) for tool in run.tools)
    return parts


def _unpicklable_part(run: RunFunction) -> str:
    for label, part in _parts(run):
        try:
            cloudpickle.dumps(part)  # type: ignore[no-untyped-call]
        except Exception:
            return label
    return "the sub-agent's run"
