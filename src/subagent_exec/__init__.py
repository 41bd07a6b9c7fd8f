"""subagent-exec: background sub-agents for LangChain/LangGraph lead agents.

Each sub-agent runs on its own event loop in a worker thread, under a
deadline, with a status that moves PENDING -> RUNNING -> one terminal status
under one lock, and a stop that reaches the in-flight await at once and
cascades down the whole tree.
"""

from typing import TYPE_CHECKING, Any

from ._background import make_background_tools
from ._budget import Budget
from ._cluster import ClusterOptions
from ._config import SubagentConfig
from ._context import get_current_task_id
from ._contract import (
    Backend,
    BackendSettings,
    RunEnding,
    RunFunction,
    RunHandle,
    RunOutcome,
    TaskTicket,
)
from ._default import (
    cleanup_background_task,
    configure,
    get_background_task_result,
    get_default_runtime,
    list_background_tasks,
    request_cancel_background_task,
    resume_background_task,
    subscribe,
)
from ._errors import (
    BudgetExceeded,
    CapacityError,
    DepthError,
    MaxTurnsExceeded,
    ModelBindingError,
    ResumeError,
    RuntimeClosedError,
    StoreError,
    StoreSchemaError,
    SubagentError,
    UnknownTaskError,
    UnpricedModelError,
)
from ._events import TaskEvent
from ._executor import SubagentExecutor
from ._meter import BudgetMeter
from ._middleware import SubagentMiddleware
from ._models import ModelBinder, register_model_binder
from ._persist import TaskList
from ._result import SubagentResult
from ._runtime import SubagentRuntime
from ._status import SubagentStatus
from ._store import MemoryStore, SqliteStore, TaskPage, TaskRecord, TaskStore
from ._task_tool import TaskTool, make_task_tool
from ._usage import Usage

if TYPE_CHECKING:
    from ._backends.ray import RayBackend, RayWorkerPool
    from ._store import PostgresStore

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The Ray backend is imported only when asked for: the core never imports ray.
    if name == "PostgresStore":  # psycopg is imported only when asked for
        from ._store import _postgres

        return _postgres.PostgresStore
    if name in ("RayBackend", "RayWorkerPool"):
        from ._backends import ray as ray_backend

        return getattr(ray_backend, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Backend",
    "BackendSettings",
    "Budget",
    "BudgetExceeded",
    "BudgetMeter",
    "CapacityError",
    "ClusterOptions",
    "DepthError",
    "MaxTurnsExceeded",
    "MemoryStore",
    "ModelBinder",
    "ModelBindingError",
    "PostgresStore",
    "RayBackend",
    "RayWorkerPool",
    "ResumeError",
    "RunEnding",
    "RunFunction",
    "RunHandle",
    "RunOutcome",
    "RuntimeClosedError",
    "SqliteStore",
    "StoreError",
    "StoreSchemaError",
    "SubagentConfig",
    "SubagentError",
    "SubagentExecutor",
    "SubagentMiddleware",
    "SubagentResult",
    "SubagentRuntime",
    "SubagentStatus",
    "TaskEvent",
    "TaskList",
    "TaskPage",
    "TaskRecord",
    "TaskStore",
    "TaskTicket",
    "TaskTool",
    "UnknownTaskError",
    "UnpricedModelError",
    "Usage",
    "cleanup_background_task",
    "configure",
    "get_background_task_result",
    "get_current_task_id",
    "get_default_runtime",
    "list_background_tasks",
    "make_background_tools",
    "make_task_tool",
    "register_model_binder",
    "request_cancel_background_task",
    "resume_background_task",
    "subscribe",
]
