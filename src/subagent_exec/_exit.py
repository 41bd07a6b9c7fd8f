"""Stopping live runtimes when the interpreter exits, before threads are joined."""

from __future__ import annotations

import threading
import time
import weakref
from typing import Protocol

#: How long interpreter exit waits for the sub-agents of every live runtime,
#: together, to unwind; what still unwinds then is abandoned, so exit takes at
#: most this long (plus about a second for the threads to be let go).
EXIT_TIMEOUT_SECONDS = 5.0


class _Stoppable(Protocol):
    @property
    def closed(self) -> bool: ...

    def shutdown(self, cancel: bool = ..., wait: bool = ..., timeout: float | None = ...) -> bool:
        ...


_live: weakref.WeakSet[_Stoppable] = weakref.WeakSet()
_installed_lock = threading.Lock()
_installed = False


def register_exit_hook(runtime: _Stoppable) -> None:
    """Cancel ``runtime`` at interpreter exit, before threads are joined.

    concurrent.futures joins pool threads from a ``threading`` exit hook,
    which runs before ``atexit``; a plain atexit handler would come too late
    and the interpreter would hang until every running sub-agent finished.
    ``threading._register_atexit`` (present in 3.9-3.13) is the only hook that
    runs early enough; without it, exit waits for running sub-agents.
    """
    global _installed
    with _installed_lock:
        _live.add(runtime)
        if _installed:
            return
        _installed = True
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        register(_cancel_live_runtimes)


def _cancel_live_runtimes() -> None:
    deadline = time.monotonic() + EXIT_TIMEOUT_SECONDS
    runtimes = [runtime for runtime in list(_live) if not runtime.closed]
    for runtime in runtimes:  # every stop first, so they all unwind at once
        runtime.shutdown(cancel=True, wait=False)
    for runtime in runtimes:
        runtime.shutdown(cancel=True, wait=True, timeout=max(0.0, deadline - time.monotonic()))
