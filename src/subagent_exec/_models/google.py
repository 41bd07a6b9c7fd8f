"""Binder for langchain-google-genai's ``ChatGoogleGenerativeAI``.

The google-genai SDK already keeps one connection pool (httpx) or session
(aiohttp) per event loop, so a shared instance works on every sub-agent loop
as it is. What it cannot do is close the pool of a loop that has ended: it
drops it later and leaves the sockets to the garbage collector. The binder
keeps the model as it is and closes this run's pool on this run's loop when
the run ends. Building a whole new SDK client per run would cost ~100 ms.

The pools live in SDK internals; if they are not where this expects them, the
close does nothing and the SDK's own behaviour stands.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from langchain_core.language_models import BaseChatModel

from ._registry import AsyncClose


def bind_google(model: BaseChatModel) -> tuple[BaseChatModel, AsyncClose | None]:
    api = getattr(getattr(model, "client", None), "_api_client", None)
    if api is None:
        return model, None
    loop = asyncio.get_running_loop()

    async def close() -> None:
        sessions = getattr(api, "_aiohttp_sessions", None)
        session = _pop(sessions, loop, getattr(api, "_sync_auth_lock", None))
        if session is not None:
            await session.close()
        pools = getattr(api, "_async_httpx_client", None)
        pool = _pop(
            getattr(pools, "_loop_clients", None), loop, getattr(pools, "_loop_clients_lock", None)
        )
        if pool is not None:
            await pool.aclose()

    return model, close


def _pop(entries: Any, loop: asyncio.AbstractEventLoop, lock: Any) -> Any:
    if not isinstance(entries, dict):
        return None
    guard = lock if hasattr(lock, "__enter__") else contextlib.nullcontext()
    with guard:
        return entries.pop(loop, None)
