"""Request framing checks of the gateway, ahead of the application (ASGI middleware).

uvicorn's HTTP/1.1 parser (h11) follows RFC 9112 for a request that carries both
``Content-Length`` and ``Transfer-Encoding``: the chunked framing wins. A proxy in front
that frames by ``Content-Length`` would see a different request boundary (request
smuggling), so the gateway refuses such requests outright, as RFC 9112 6.1 allows. It
also bounds the request head, which h11 only bounds while the head is still arriving.

uvicorn answers a request whose body breaks HTTP/1.1 (a bad chunk header) itself, with
400, while the application may be preparing its own answer (a 401 that needs no body):
h11 then refuses the application's response. The client has its 400 by then, so the
guard drops that second answer instead of letting uvicorn log it as an application error.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["MAX_HEAD", "FramingGuard"]

#: Largest request head (request line and header fields) the gateway accepts.
MAX_HEAD = 64 * 1024

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

logger = logging.getLogger(__name__)


class FramingGuard:
    """Answers 400 to requests with both framings, 431 to heads over :data:`MAX_HEAD`."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            names = {name.lower() for name, _ in scope["headers"]}
            size = len(scope.get("raw_path") or b"") + sum(len(n) + len(v) + 4 for n, v in scope["headers"])
            if b"content-length" in names and b"transfer-encoding" in names:
                await _refuse(send, 400, b"both Content-Length and Transfer-Encoding: refused\n")
                return
            if size > MAX_HEAD:
                await _refuse(send, 431, b"request head too large\n")
                return
            await self.app(scope, receive, _answered_once(send))
            return
        await self.app(scope, receive, send)


def _answered_once(send: Send) -> Send:
    """``send``, dropping what h11 refuses to send (uvicorn already answered and closed)."""

    async def guarded(message: MutableMapping[str, Any]) -> None:
        try:
            await send(message)
        except Exception as exc:
            if type(exc).__module__.partition(".")[0] != "h11":
                raise
            logger.debug("answer dropped, the server already answered this request: %s", exc)

    return guarded


async def _refuse(send: Send, status: int, body: bytes) -> None:
    headers = [
        (b"content-type", b"text/plain"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
