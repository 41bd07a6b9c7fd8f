"""The scenarios of issue 4, in the order the issue lists them, then the Ray
backend's (issue 6), the Ray backend on a two-node cluster (issue 19), the
registry views and many starts (issue 13), the task store's (issue 16), and
metering and budgets (issue 15), and per-step checkpoints' (issue 17).

Each module has ``NAME``, ``TITLE`` and ``run(options) -> ScenarioResult``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from ..core import Options, ScenarioResult
from . import (
    budgets,
    checkpoints,
    deadline,
    dispatch,
    handback,
    isolation,
    memory,
    ray_backend,
    ray_cluster,
    scale,
    start_many,
    stop_pending,
    stop_running,
    stop_tree,
    store,
    views,
)


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    run: Callable[[Options], ScenarioResult]


def _scenario(module: ModuleType) -> Scenario:
    return Scenario(name=module.NAME, title=module.TITLE, run=module.run)


SCENARIOS: list[Scenario] = [
    _scenario(module)
    for module in (
        stop_running,
        stop_pending,
        stop_tree,
        deadline,
        handback,
        isolation,
        dispatch,
        scale,
        memory,
        ray_backend,
        ray_cluster,
        views,
        start_many,
        budgets,
        store,
        checkpoints,
    )
]
