"""One TLS context for every per-run HTTP client of the process.

Building an ``httpx.AsyncClient`` with default settings loads the CA bundle
into a new ``ssl.SSLContext``: 25-45 ms measured, paid on every run by a
binder that makes a client per run. An ``SSLContext`` is safe to share between
threads and event loops (it holds configuration, not connections), so the
binders pass this one as ``verify=``. It is built like httpx's default
(certifi, ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` honoured) on first use.
"""

from __future__ import annotations

import ssl
import threading

_lock = threading.Lock()
_context: ssl.SSLContext | None = None


def shared_ssl_context() -> ssl.SSLContext:
    """The process-wide TLS context for per-run clients (built once, lazily)."""
    global _context
    with _lock:
        if _context is None:
            try:
                import httpx2 as http  # the SDKs of openai/anthropic >= 2 use httpx2
            except ImportError:
                import httpx as http  # type: ignore[no-redef]
            _context = http.create_ssl_context()
        return _context
