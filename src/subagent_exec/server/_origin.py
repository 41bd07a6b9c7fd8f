"""Cross-site protection for the state-changing endpoints (``POST``).

A web page on another site can make a visitor's browser send a "simple"
request to this server without asking first: a form post (url-encoded,
multipart or ``text/plain`` body, possibly empty) or a body-less ``fetch``.
Two rules, each enough against a current browser on its own:

* **Content type**: a ``POST`` either declares ``Content-Type:
  application/json`` or declares none and has an empty body (the body rule is
  in ``_inputs.py``). A browser sends ``application/json`` cross-site only
  after a CORS preflight, which this router never answers with permission; an
  HTML form always declares one of the three simple types, so even a form with
  no fields is refused (415).
* **Origin**: browsers send ``Origin`` on every ``POST``. When present, it must
  be the server's own origin (the same host and port as the request's
  ``Host``; the scheme is not compared, so TLS ended by a proxy does not
  matter) or one of ``allowed_origins``; anything else, ``null`` included,
  is refused (403). A request without ``Origin`` is not from a browser page
  (curl, scripts, server-to-server) and passes.

DNS rebinding is the one cross-site attack this cannot see (the attacker's
name then points at this server, so ``Origin`` and ``Host`` agree): that needs
a check of ``Host`` itself, which ``subagent-exec serve`` does and a host app
mounting the router does with Starlette's ``TrustedHostMiddleware``
(docs/server.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

from fastapi import HTTPException, Request

JSON_MEDIA_TYPE = "application/json"


def normalise_origin(origin: str) -> str | None:
    """``scheme://host[:port]`` in lower case, or None if ``origin`` is not
    one (``null``, a path, a query, user info, ...)."""
    try:
        parts = urlsplit(origin.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
    ):
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def check_allowed_origins(value: object) -> frozenset[str]:
    """``create_router(allowed_origins=...)``: an iterable of origins such as
    ``"https://app.example.com"`` or ``"http://localhost:3000"`` (not a str)."""
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TypeError(
            "create_router.allowed_origins must be an iterable of origin strings "
            f"('scheme://host[:port]'), got {value!r}"
        )
    origins = set()
    for item in value:
        if not isinstance(item, str):
            raise TypeError(
                f"create_router.allowed_origins must hold strings, got {item!r}"
            )
        normal = normalise_origin(item)
        if normal is None:
            raise ValueError(
                "create_router.allowed_origins entries must be origins like "
                f"'https://app.example.com' or 'http://localhost:3000', got {item!r}"
            )
        origins.add(normal)
    return frozenset(origins)


def origin_is_allowed(origin: str, host: str | None, allowed: frozenset[str]) -> bool:
    normal = normalise_origin(origin)
    if normal is None:
        return False
    if normal in allowed:
        return True
    # The server's own origin: same host and port as the request was sent to.
    return host is not None and normal.split("://", 1)[1] == host.strip().lower()


def same_origin_guard(allowed: frozenset[str]) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency for every state-changing route of the router."""

    async def refuse_cross_site(request: Request) -> None:
        origin = request.headers.get("origin")
        if origin is not None and not origin_is_allowed(
            origin, request.headers.get("host"), allowed
        ):
            raise HTTPException(
                403,
                "cross-site request refused: this Origin may not change anything here "
                "(create_router(allowed_origins=...) lists the origins that may)",
            )
        declared = request.headers.get("content-type")
        if declared is not None and (
            declared.split(";")[0].strip().lower() != JSON_MEDIA_TYPE
        ):
            raise HTTPException(
                415, "send the request as application/json (or without a body and "
                "without a Content-Type)",
            )

    return refuse_cross_site
