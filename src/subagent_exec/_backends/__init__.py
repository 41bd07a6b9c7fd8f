"""Where sub-agent runs execute: the seam between the runtime and its workers.

The runtime (``_runtime.py``) keeps everything that is the same whatever runs
the sub-agents: the registry, the lock, slots and lending, dispatch, stop
latching and cascades, deadlines latching, retention, events and
``wait_terminal``. A backend only *runs* a task that the runtime has granted a
slot, interrupts it when asked, and reports how it ended. See ``base.py`` for
the contract every backend keeps.

* ``thread.py``: the default; each sub-agent on its own event loop in a
  worker thread of this process.
* ``ray.py``: each sub-agent as an async actor method on a Ray cluster
  (imported only when used; the core never imports ``ray``).
"""

from .base import Backend

__all__ = ["Backend"]
