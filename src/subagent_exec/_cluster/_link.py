"""``Link``: one database connection a cluster keeps for itself (autocommit),
made again after it broke, listening again on its channels."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Link:
    """One connection of the cluster's own (autocommit), made again after it
    broke (a lost connection, a restarted server); a listening one listens
    again on its channels."""

    def __init__(self, connect: Callable[[], Any], channels: tuple[str, ...] = ()) -> None:
        self._connect = connect
        self._channels = channels
        self._conn: Any = None

    @property
    def connected(self) -> bool:
        """Whether the connection is there and sound (no reconnection due)."""
        conn = self._conn
        return conn is not None and not conn.closed and not conn.broken

    def get(self) -> Any:
        if not self.connected:
            self.drop()
            conn = self._connect()
            for channel in self._channels:
                conn.execute(f"LISTEN {channel}")
            self._conn = conn
        return self._conn

    def retry(self, work: Callable[[Any], T]) -> T:
        """``work(connection)``, once more on a new connection if this one
        turns out to be broken."""
        try:
            return work(self.get())
        except Exception:
            if self.connected:
                raise
        return work(self.get())

    def drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass
