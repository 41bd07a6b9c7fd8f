"""The Ray backend: each sub-agent as an async actor method on a Ray cluster.

Imported only when used (``SubagentRuntime(backend="ray")`` or
``RayBackend(...)``); the core never imports ``ray``. What stays on the
driver (the process that owns the runtime): the registry, the tree, slots,
statuses, events, retention, deadlines and every stop decision. What runs on
Ray: the run itself, on the event loop of one of the pool's async actors.
Design and numbers: docs/ray.md.

Modules, by where their code runs:

* ``driver.py``: :class:`RayBackend`, the Backend protocol and the driver loop.
* ``dispatch.py`` (with ``runs.py``): what happens to tasks on that loop:
  placing, submitting, streaming, stopping, sending again, ending.
* ``pool.py``: :class:`RayWorkerPool`, the actors (driver side); ``nodes.py``
  what it knows of Ray's nodes; ``supervisor.py`` its watching thread.
* ``worker.py``: :class:`SubagentWorker`, the actor (worker side).
* ``delegation.py``: tools that must run on the driver (the ``task`` tool),
  called from a worker through the run's stream.
* ``payload.py``: what travels to a worker, and checking that it can.
* ``local_cluster.py``: a real multi-node cluster on this machine (tests,
  benchmarks); imported only by them.
"""

try:
    import ray  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the Ray backend needs Ray: pip install 'subagent-exec[ray]'"
    ) from exc

from .delegation import RemoteTool
from .driver import RayBackend
from .pool import RayWorkerPool

__all__ = ["RayBackend", "RayWorkerPool", "RemoteTool"]
