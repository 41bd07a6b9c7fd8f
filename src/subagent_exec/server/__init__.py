"""HTTP integration (the optional extra ``subagent-exec[server]``).

``create_router(runtime)`` returns a FastAPI router to mount in your own app:
the task API (list, inspect, stop a whole subtree), Server-Sent Events of every
task event with ``Last-Event-ID`` resume, per-user ownership through a
dependency you override, ``POST /runs`` for the bundled demo, and a live run
page. ``create_app()`` and ``subagent-exec serve`` run it standalone.
See docs/server.md.
"""

try:
    import fastapi  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "subagent_exec.server needs FastAPI: pip install 'subagent-exec[server]'"
    ) from exc

from ._app import create_app
from ._router import SubagentRouter, create_router, current_owner
from ._runs import DEFAULT_PROMPT, RunStarter, demo_run_starter, start_demo_run
from ._stream import EventBuffer

__all__ = [
    "DEFAULT_PROMPT",
    "EventBuffer",
    "RunStarter",
    "SubagentRouter",
    "create_app",
    "create_router",
    "current_owner",
    "demo_run_starter",
    "start_demo_run",
]
