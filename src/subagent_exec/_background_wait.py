"""Waiting for any or all of several tasks without ever stopping them.

Built on the runtime's waiting primitive (``wait_terminal``): one waiter per
task, each woken by its task's terminal transition (no polling), each lending
the caller's slot to the caller's children while it waits. The waiters never
forward a cancellation: a lead agent whose run is cancelled stops waiting at
once and its background tasks go on. Sync callers run the same wait on a
private event loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Sequence
from typing import Literal

from ._result import SubagentResult
from ._runtime import SubagentRuntime

WaitMode = Literal["any", "all"]


async def wait_for(
    runtime: SubagentRuntime,
    holders: Sequence[SubagentResult],
    *,
    mode: WaitMode,
    timeout: float,
) -> None:
    """Return once any / all of ``holders`` are terminal, or after ``timeout``
    seconds (the tasks keep running). ``CancelledError`` propagates at once."""
    pending = [h for h in holders if not h.is_terminal]
    if not pending or (mode == "any" and len(pending) < len(holders)):
        return
    waiters = [
        asyncio.ensure_future(runtime.wait_terminal(h, forward_cancel=False)) for h in pending
    ]
    try:
        await asyncio.wait(
            waiters,
            timeout=timeout,
            return_when=asyncio.FIRST_COMPLETED if mode == "any" else asyncio.ALL_COMPLETED,
        )
    finally:
        for waiter in waiters:
            waiter.cancel()
        # Each waiter unwinds at once (nothing to forward); let them leave
        # their watches and slot lending before we return or re-raise.
        await asyncio.gather(*waiters, return_exceptions=True)


def wait_for_blocking(
    runtime: SubagentRuntime,
    holders: Sequence[SubagentResult],
    *,
    mode: WaitMode,
    timeout: float,
) -> None:
    """The blocking twin of :func:`wait_for`, for sync tools and hooks."""
    coroutine = wait_for(runtime, holders, mode=mode, timeout=timeout)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coroutine)  # the usual case: a sync tool on a plain thread
        return
    # A loop already runs on this thread (sync code called from async code):
    # wait on a helper thread, in this thread's context (for slot lending).
    context = contextvars.copy_context()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            context.run(asyncio.run, coroutine)
        except BaseException as exc:  # handed back to the caller
            failure.append(exc)

    helper = threading.Thread(target=run, name="subagent-wait", daemon=True)
    helper.start()
    helper.join()
    if failure:
        raise failure[0]
