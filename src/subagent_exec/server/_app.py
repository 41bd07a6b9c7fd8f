"""``create_app``: a standalone FastAPI app around :func:`create_router`
(what ``subagent-exec serve`` runs)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from .._runtime import SubagentRuntime
from ._router import create_router, current_owner
from ._runs import RunStarter, start_demo_run

#: How long shutdown waits for running sub-agents to unwind after the stop.
SHUTDOWN_TIMEOUT_SECONDS = 10.0


def create_app(
    runtime: SubagentRuntime | None = None,
    *,
    owner_dependency: Callable[..., Any] = current_owner,
    start_run: RunStarter | None = start_demo_run,
    **router_options: Any,
) -> FastAPI:
    """An app serving the router at ``/``. Without ``runtime`` it makes its own
    (8 workers, depth 3) and, on shutdown, stops every task still running."""
    owned = runtime is None
    if runtime is None:
        runtime = SubagentRuntime(max_workers=8, max_depth=3, name="server")
    router = create_router(
        runtime, owner_dependency=owner_dependency, start_run=start_run, **router_options
    )
    app_runtime = runtime

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if owned:
                # Blocking is fine here: the server has stopped serving.
                app_runtime.shutdown(cancel=True, wait=True, timeout=SHUTDOWN_TIMEOUT_SECONDS)

    app = FastAPI(title="subagent-exec", lifespan=lifespan)
    app.include_router(router)
    app.state.subagent_runtime = runtime
    app.state.subagent_router = router
    return app
