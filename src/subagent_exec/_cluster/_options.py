"""``ClusterOptions``: how often a process of a cluster (several runtime
processes sharing one ``PostgresStore``) says it is alive, when another one
counts as gone, and how often the slow fallback polls."""

from __future__ import annotations

from dataclasses import dataclass

from .._checks import check_number

#: How many processes may share one store at once: each live process numbers
#: its events with the seqs congruent to its slot modulo this.
STRIDE = 1024


@dataclass(frozen=True)
class ClusterOptions:
    """``SubagentRuntime(cluster=ClusterOptions(...))`` (``cluster=True``: the
    defaults).

    ``heartbeat_seconds``: how often this process writes its heartbeat.
    ``dead_after_seconds``: a process whose heartbeat is older is gone; a live
    process marks its unfinished tasks FAILED (``stop_reason="interrupted"``).
    A process of this host whose pid no longer exists is gone after two
    missed heartbeats.
    ``poll_seconds``: how often stop requests and remote parents are polled,
    and the event feed read, should a notification be missed.
    """

    heartbeat_seconds: float = 5.0
    dead_after_seconds: float = 15.0
    poll_seconds: float = 1.0

    def __post_init__(self) -> None:
        for name in ("heartbeat_seconds", "dead_after_seconds", "poll_seconds"):
            check_number("ClusterOptions", name, getattr(self, name), positive=True, finite=True)
        if self.dead_after_seconds <= self.heartbeat_seconds:
            raise ValueError(
                "ClusterOptions.dead_after_seconds must be greater than heartbeat_seconds "
                f"(a live process must get a heartbeat in first), got {self.dead_after_seconds!r}"
                f" <= {self.heartbeat_seconds!r}"
            )


def cluster_options(spec: object) -> ClusterOptions | None:
    """What ``SubagentRuntime(cluster=...)`` asks for: None (no cluster) for
    False/None, the defaults for True, or the options given."""
    if spec is None or spec is False:
        return None
    if spec is True:
        return ClusterOptions()
    if isinstance(spec, ClusterOptions):
        return spec
    raise TypeError(
        f"SubagentRuntime.cluster must be a bool or a ClusterOptions, got {spec!r}"
    )
