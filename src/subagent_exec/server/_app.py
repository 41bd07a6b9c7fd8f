"""``create_app``: a standalone FastAPI app around :func:`create_router`
(what ``subagent-exec serve`` runs)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.middleware.trustedhost import TrustedHostMiddleware

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
    allowed_hosts: Iterable[str] | None = None,
    **router_options: Any,
) -> FastAPI:
    """An app serving the router at ``/``. Without ``runtime`` it makes its own
    (8 workers, depth 3) and, on shutdown, stops every task still running.

    ``allowed_hosts``: the host names (``"localhost"``, ``"127.0.0.1"``,
    ``"[::1]"``, ``"*.example.com"``) requests may address; any other ``Host``
    gets 400 (Starlette's ``TrustedHostMiddleware``), which is what stops DNS
    rebinding. ``None`` accepts any host: the default of a library call, while
    ``subagent-exec serve`` always passes a list."""
    hosts = None if allowed_hosts is None else check_allowed_hosts(allowed_hosts)
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
    if hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts, www_redirect=False)
    app.include_router(router)
    app.state.subagent_runtime = runtime
    app.state.subagent_router = router
    return app


def check_allowed_hosts(value: object) -> list[str]:
    """Host names for ``TrustedHostMiddleware``, checked here so a bad one is a
    ``ValueError`` naming the argument (the middleware only asserts)."""
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TypeError(
            f"create_app.allowed_hosts must be an iterable of host names, got {value!r}"
        )
    hosts = []
    for item in value:
        if not isinstance(item, str):
            raise TypeError(f"create_app.allowed_hosts must hold strings, got {item!r}")
        name = item.strip().lower()
        # A "*" may only stand alone (any host) or lead a domain ("*.example.com").
        rest = name[2:] if name.startswith("*.") else "" if name == "*" else name
        if not name or "*" in rest or any(c in name for c in "/@? "):
            raise ValueError(
                "create_app.allowed_hosts entries must be host names or addresses such as "
                f"'localhost', '127.0.0.1', '[::1]' or '*.example.com', got {item!r}"
            )
        hosts.append(name)
    if not hosts:
        raise ValueError("create_app.allowed_hosts must name at least one host, got none")
    return hosts
