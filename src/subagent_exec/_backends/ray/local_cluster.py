"""A real multi-node Ray cluster on this machine, for tests and benchmarks.

``LocalRayCluster`` starts a head node and worker nodes with ``ray start
--block`` (each node its own set of processes: raylet, agents, its workers),
on 127.0.0.1, with free ports, its own temp dir, ``RAY_AUTH_MODE=disabled``
and no dashboard. Nodes are stopped, or killed to simulate a lost machine, by
process id: the whole process tree of that node, never with ``ray stop``
(which would stop every Ray of the machine). A watchdog process kills the
nodes if the process that started them dies without stopping them.

Ray reports the machine's routable address instead of 127.0.0.1, and its
servers listen on every interface (as with any ``ray start``): use it on a
machine whose ports are not exposed. ``psutil`` is needed (the ``test``
extra has it).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

#: Ray's unix socket paths (``<temp_dir>/session_<date>_<pid>/sockets/plasma_store``)
#: must fit in 107 bytes: a temp dir longer than this is replaced by a short one.
MAX_TEMP_DIR_LENGTH = 40

_WATCHDOG = """
import sys, psutil
pids = [tuple(map(float, line.split())) for line in iter(sys.stdin.readline, "") if line.strip()]
procs = []
for pid, created in pids:
    try:
        p = psutil.Process(int(pid))
        if abs(p.create_time() - created) < 1.0:
            procs += [p, *p.children(recursive=True)]
    except psutil.Error:
        pass
for p in procs:
    try:
        p.kill()
    except psutil.Error:
        pass
"""


@dataclass
class LocalRayNode:
    """One node: its ``ray start --block`` process and the ports it was given."""

    name: str
    process: subprocess.Popen[bytes]
    node_manager_port: int
    log: Path
    #: Ray's node id, once the node is seen alive (see LocalRayCluster.wait_for).
    node_id: str | None = None
    #: Its processes seen so far (psutil.Process, which tells a reused pid apart).
    seen: list[Any] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.process.poll() is None


class LocalRayCluster:
    """A head node and worker nodes on 127.0.0.1, each with ``cpus_per_node`` CPUs.

    Use: ``start()``, then ``connect()`` (``ray.init`` of this process to the
    cluster; node ids are learnt through it), ``add_worker()`` / ``kill()``
    nodes, and ``stop()`` (or a ``with`` block).
    """

    def __init__(
        self,
        *,
        workers: int = 1,
        cpus_per_node: int = 1,
        temp_dir: str | os.PathLike[str] | None = None,
        object_store_bytes: int = 100 * 1024 * 1024,
        start_timeout: float = 60.0,
    ) -> None:
        self.workers_at_start = workers
        self.cpus_per_node = cpus_per_node
        self.object_store_bytes = object_store_bytes
        self.start_timeout = start_timeout
        given = None if temp_dir is None else str(temp_dir)
        self._own_temp_dir = given is None or len(given) > MAX_TEMP_DIR_LENGTH
        self.temp_dir = tempfile.mkdtemp(prefix="sx-rc-") if self._own_temp_dir else str(given)
        self.gcs_port = _free_port()
        self.address = f"127.0.0.1:{self.gcs_port}"
        self.head: LocalRayNode | None = None
        self.workers: list[LocalRayNode] = []
        self._count = 0
        self._env = {
            **os.environ,
            "RAY_AUTH_MODE": "disabled",
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        self._watchdog: subprocess.Popen[bytes] | None = None

    # -- starting ----------------------------------------------------------------------------

    def start(self) -> LocalRayCluster:
        """Start the head node and the worker nodes; returns once the head's
        GCS accepts connections (the workers register with it by themselves)."""
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        self.head = self._start_node(
            "head",
            ["--head", f"--port={self.gcs_port}", "--include-dashboard=false",
             f"--dashboard-port={_free_port()}", f"--temp-dir={self.temp_dir}"],
        )
        deadline = time.monotonic() + self.start_timeout
        while not _accepts(self.gcs_port):
            if not self.head.running or time.monotonic() > deadline:
                raise RuntimeError(f"the Ray head node did not start; see {self.head.log}")
            time.sleep(0.2)
        for _ in range(self.workers_at_start):
            self.workers.append(self._start_worker())
        return self

    def connect(self, **init_kwargs: Any) -> None:
        """``ray.init`` this process to the cluster (as a driver attached to the
        head node) and wait until every node started so far is alive."""
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(address=self.address, log_to_driver=False, **init_kwargs)
        for node in self.nodes:
            self.wait_for(node)

    def add_worker(self) -> LocalRayNode:
        """Start one more worker node and wait until Ray reports it alive."""
        node = self._start_worker()
        self.workers.append(node)
        self.wait_for(node)
        return node

    def wait_for(self, node: LocalRayNode) -> str:
        """Wait until ``node`` is alive in Ray's node table; its node id."""
        deadline = time.monotonic() + self.start_timeout
        while True:
            for info in ray.nodes():  # type: ignore[no-untyped-call]
                if info.get("Alive") and info.get("NodeManagerPort") == node.node_manager_port:
                    node.node_id = str(info["NodeID"])
                    node.seen = _processes(node.process.pid, node.seen)
                    return node.node_id
            if not node.running or time.monotonic() > deadline:
                raise RuntimeError(f"Ray node {node.name} did not come up; see {node.log}")
            time.sleep(0.2)

    @property
    def nodes(self) -> list[LocalRayNode]:
        return [n for n in [self.head, *self.workers] if n is not None]

    def _start_worker(self) -> LocalRayNode:
        return self._start_node(f"worker{self._count}", [f"--address={self.address}"])

    def _start_node(self, name: str, extra: list[str]) -> LocalRayNode:
        self._count += 1
        node_manager_port = _free_port()
        ports = {
            "--node-manager-port": node_manager_port,
            "--object-manager-port": _free_port(),
            "--dashboard-agent-listen-port": _free_port(),
            "--dashboard-agent-grpc-port": _free_port(),
            "--runtime-env-agent-port": _free_port(),
            "--metrics-export-port": _free_port(),
        }
        command = [
            sys.executable, "-m", "ray.scripts.scripts", "start", "--block",
            "--node-ip-address=127.0.0.1", f"--num-cpus={self.cpus_per_node}",
            f"--object-store-memory={self.object_store_bytes}", "--disable-usage-stats",
            # Port 0: workers bind ports the system picks (two nodes share a machine).
            "--min-worker-port=0", "--max-worker-port=0",
            *(f"{flag}={port}" for flag, port in ports.items()), *extra,
        ]
        log = Path(self.temp_dir) / f"{name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                command, env=self._env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        if self._watchdog is not None and self._watchdog.stdin is not None:
            self._watchdog.stdin.write(f"{process.pid} {_create_time(process.pid)}\n".encode())
            self._watchdog.stdin.flush()
        return LocalRayNode(name, process, node_manager_port, log)

    # -- losing and stopping -----------------------------------------------------------------

    def kill(self, node: LocalRayNode) -> float:
        """SIGKILL every process of ``node`` at once (a machine lost); returns
        ``time.monotonic()`` just after."""
        procs = _processes(node.process.pid, node.seen)
        for proc in procs:
            _signal(proc, signal.SIGKILL)
        killed_at = time.monotonic()
        node.process.wait(10.0)
        return killed_at

    def stop(self, timeout: float = 3.0) -> None:
        """Stop every node by process id (SIGTERM, then SIGKILL after
        ``timeout``), and remove the temp dir if it is ours."""
        for node in reversed(self.nodes):  # workers first, the head (GCS) last
            procs = _processes(node.process.pid, node.seen)
            for proc in procs:
                _signal(proc, signal.SIGTERM)
            _wait_gone(procs, timeout)
            for proc in _processes(node.process.pid, procs):
                _signal(proc, signal.SIGKILL)
            try:
                node.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        if self._watchdog is not None:
            if self._watchdog.stdin is not None:
                self._watchdog.stdin.close()  # nothing left to kill: it exits
            self._watchdog.wait(timeout)
        if self._own_temp_dir:
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalRayCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


def _create_time(pid: int) -> float:
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return 0.0


def _processes(pid: int, seen: list[Any]) -> list[Any]:
    """The live processes of a node: the tree under ``pid`` now (Ray's workers
    are in process groups of their own, so a process group would miss them),
    and those seen before (reparented once their parent died)."""
    import psutil

    found: dict[int, Any] = {}
    try:
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            found[proc.pid] = proc
    except psutil.Error:
        pass
    for proc in seen:
        found.setdefault(proc.pid, proc)
    return [p for p in found.values() if _alive(p)]


def _alive(proc: Any) -> bool:
    import psutil

    try:
        return bool(proc.is_running()) and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _signal(proc: Any, signum: int) -> None:
    import psutil

    try:
        proc.send_signal(signum)
    except psutil.Error:
        pass


def _wait_gone(procs: list[Any], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in procs) and time.monotonic() < deadline:
        time.sleep(0.1)
