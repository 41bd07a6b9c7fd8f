"""Several runtime processes sharing one ``PostgresStore`` as one host
(issue 18, docs/deploy.md): process registration and heartbeats, reaping
dead processes exactly once, stops across processes (``LISTEN/NOTIFY`` and
stored requests), and other processes' events for local subscribers."""

from ._node import Cluster
from ._options import STRIDE, ClusterOptions, cluster_options

__all__ = ["STRIDE", "Cluster", "ClusterOptions", "cluster_options"]
