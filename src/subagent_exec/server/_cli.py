"""``subagent-exec serve`` / ``python -m subagent_exec.server``: the demo server,
answering only its own host names and within the connection limits of
``_limits.py``."""

from __future__ import annotations

import argparse
import logging
import math
import signal
import socket
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

from . import _workers
from ._limits import HEADER_TIMEOUT_SECONDS, LIMIT_CONCURRENCY

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
#: The task store of `serve` when --db is not given: a SQLite file here.
DEFAULT_DB = "subagent-exec.db"
#: Host names every `serve` answers to (the bound address is added).
LOCAL_HOST_NAMES = ("localhost", "127.0.0.1", "[::1]")
_WILDCARD_ADDRESSES = ("", "0.0.0.0", "::")
#: Open event streams never end by themselves; on Ctrl-C give them this long.
GRACEFUL_SHUTDOWN_SECONDS = 2


def _server_class() -> type[Any]:
    import uvicorn

    class Server(uvicorn.Server):
        """Ends the open event streams as soon as shutdown begins: uvicorn
        waits for open responses before the app's shutdown hooks run, and an
        event stream never ends by itself."""

        def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
            super().__init__(config)
            self._on_exit = on_exit

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            self._on_exit()
            super().handle_exit(sig, frame)

    return Server


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default=DEFAULT_HOST,
        help=f"interface to listen on (default {DEFAULT_HOST}: this machine only)",
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT,
        help=f"TCP port (default {DEFAULT_PORT}; 0 picks a free one)",
    )
    parser.add_argument(
        "--max-workers", type=int, default=8, help="sub-agents doing work at once (default 8)"
    )
    parser.add_argument(
        "--db", default=DEFAULT_DB, metavar="PATH|URL",
        help=f"the task store, so history survives a restart: a SQLite file (default "
        f"{DEFAULT_DB} in the current directory), ':memory:' to keep nothing, or a "
        "postgresql://user@host/db URL (needs subagent-exec[postgres])",
    )
    parser.add_argument(
        "--workers", type=int, default=1, metavar="N",
        help="server processes (default 1); N > 1 makes them one host over a shared "
        "--db postgresql://... store (docs/deploy.md)",
    )
    parser.add_argument("--log-level", default="info", help="uvicorn log level (default info)")
    parser.add_argument(
        "--allowed-host", action="append", default=[], metavar="NAME",
        help="also answer requests addressed to this host name (repeatable; '*.example.com' "
        "for a domain, '*' for any); by default only localhost, 127.0.0.1, [::1] and --host",
    )
    parser.add_argument(
        "--limit-concurrency", type=int, default=LIMIT_CONCURRENCY, metavar="N",
        help=f"open connections and requests at most, then 503 (default {LIMIT_CONCURRENCY})",
    )
    parser.add_argument(
        "--header-timeout", type=float, default=HEADER_TIMEOUT_SECONDS, metavar="SECONDS",
        help="close a connection whose request head has not arrived by then "
        f"(default {HEADER_TIMEOUT_SECONDS:g})",
    )


def describe_store(store: Any) -> str:
    """What `serve` says about its store at start."""
    if not store.durable:
        return "in memory: nothing is kept after the server stops"
    kind = "PostgreSQL" if store.location.startswith("postgresql://") else "SQLite file"
    return f"{kind} {store.location}"


def allowed_host_names(bound: str, extra: list[str]) -> list[str]:
    """What `serve` answers to: the local names, the address it is bound to
    (unless a wildcard, which is no name a client uses), and ``extra``."""
    names = list(LOCAL_HOST_NAMES)
    if bound not in _WILDCARD_ADDRESSES:
        names.append(f"[{bound}]" if ":" in bound else bound)
    names.extend(extra)
    return list(dict.fromkeys(name.lower() for name in names))


def serve(args: argparse.Namespace) -> int:
    """Run the demo app until interrupted."""
    try:
        import uvicorn  # noqa: F401 - only: is the server extra installed?
    except ImportError:
        print("subagent-exec serve needs: pip install 'subagent-exec[server]'", file=sys.stderr)
        return 2
    if not 0 <= args.port <= 65535:
        print(f"--port must be between 0 and 65535, got {args.port}", file=sys.stderr)
        return 2
    if args.max_workers < 1:
        print(f"--max-workers must be >= 1, got {args.max_workers}", file=sys.stderr)
        return 2
    workers = getattr(args, "workers", 1)
    if workers < 1:
        print(f"--workers must be >= 1, got {workers}", file=sys.stderr)
        return 2
    if workers > 1 and not _workers.is_postgres_url(args.db):
        print("--workers N > 1 needs a store every worker shares: --db postgresql://...",
              file=sys.stderr)
        return 2
    if args.limit_concurrency < 1:
        print(f"--limit-concurrency must be >= 1, got {args.limit_concurrency}", file=sys.stderr)
        return 2
    if not (args.header_timeout > 0 and math.isfinite(args.header_timeout)):
        print(f"--header-timeout must be a number > 0, got {args.header_timeout}",
              file=sys.stderr)
        return 2

    from .._errors import StoreError
    from .._runtime import SubagentRuntime
    from ._app import check_allowed_hosts, create_app
    from ._limits import serve_config

    try:
        hosts = check_allowed_hosts(allowed_host_names(args.host, args.allowed_host))
    except ValueError as exc:
        print(str(exc).replace("create_app.allowed_hosts", "--allowed-host"), file=sys.stderr)
        return 2

    # Bind first, so --port 0 can print the port it really got.
    try:
        sock = socket.create_server((args.host, args.port), reuse_port=False)
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    host, port = sock.getsockname()[:2]
    shown_host = f"[{host}]" if ":" in host else host
    if workers > 1:
        shown = "127.0.0.1" if host in _WILDCARD_ADDRESSES else shown_host
        print(f"subagent-exec: open http://{shown}:{port}/ in a browser (Ctrl-C to stop); "
              f"{workers} worker processes, one cluster on {args.db.split('@')[-1]}", flush=True)
        options = {**vars(args), "hosts": hosts}
        try:
            return _workers.supervise(run_worker, options, sock, workers)
        finally:
            sock.close()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    try:
        # The runtime opens (and at the end closes) the store --db names.
        runtime = SubagentRuntime(
            max_workers=args.max_workers, max_depth=3, name="server", store=args.db
        )
    except (StoreError, ImportError, ValueError) as exc:
        print(f"subagent-exec: {exc}", file=sys.stderr)
        sock.close()
        return 1
    app = create_app(runtime, allowed_hosts=hosts)
    config = serve_config(
        app,
        limit_concurrency=args.limit_concurrency,
        header_timeout_seconds=args.header_timeout,
        log_level=args.log_level,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    if host in _WILDCARD_ADDRESSES:
        shown_host = "127.0.0.1"
    print(f"subagent-exec: open http://{shown_host}:{port}/ in a browser (Ctrl-C to stop)")
    print(f"subagent-exec: answering requests for host names {', '.join(hosts)} "
          "(add more with --allowed-host)")
    print(f"subagent-exec: task store {describe_store(runtime.store)} (--db to change)")
    server = _server_class()(config, on_exit=app.state.subagent_router.event_buffer.stop)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        # uvicorn shuts down gracefully, then re-raises the Ctrl-C it caught.
        pass
    finally:
        runtime.shutdown(cancel=True, wait=True, timeout=10.0)
        sock.close()
    print("subagent-exec: stopped")
    return 0


def run_worker(options: dict[str, Any], sock: socket.socket, index: int) -> None:
    """One process of ``serve --workers N`` (spawned: imports happen here)."""
    from .._runtime import SubagentRuntime
    from ._app import create_app
    from ._limits import serve_config

    logging.basicConfig(level=logging.INFO, format=f"%(levelname)s [worker {index}] %(name)s "
                        "%(message)s")
    runtime = SubagentRuntime(
        max_workers=options["max_workers"], max_depth=3, name=f"server-{index}",
        store=options["db"], cluster=True,
    )
    app = create_app(runtime, allowed_hosts=options["hosts"])
    app.add_middleware(_workers.WorkerHeader, index=index)
    config = serve_config(
        app,
        limit_concurrency=options["limit_concurrency"],
        header_timeout_seconds=options["header_timeout"],
        log_level=options["log_level"],
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    server = _server_class()(config, on_exit=app.state.subagent_router.event_buffer.stop)
    # uvicorn re-raises the signal that stopped it once it has shut down: the
    # parent's SIGTERM then ends up here as a KeyboardInterrupt, not a kill.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    _workers.exit_with_parent(options["parent_pid"])
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        # A second Ctrl-C (the terminal's, after the parent's) must not cut this short.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        runtime.shutdown(cancel=True, wait=True, timeout=10.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m subagent_exec.server",
        description="Serve the live run page and the task API for the bundled demo.",
    )
    add_serve_arguments(parser)
    return serve(parser.parse_args(argv))
