"""Dropping a connection without any HTTP response (fault ``drop_connection``).

A route asks for a drop by calling :func:`request_drop` and returning any response. The
outermost ASGI callable (:class:`DropConnectionMiddleware`) then swallows every message the app
sends and closes the TCP connection itself:

* Under uvicorn (h11 or httptools), ``send`` is a bound method of the connection's
  ``RequestResponseCycle``, whose ``transport`` attribute is the asyncio transport. It is
  ``abort()``-ed (closed at once, nothing written), and the middleware waits until uvicorn has
  noticed the disconnect so that uvicorn does not try to write a fallback 500. The client sees
  the connection close before any status line (httpx: ``RemoteProtocolError`` "Server
  disconnected without sending a response", or ``ReadError`` on a reset).
* Any other server: the middleware raises :class:`ConnectionDropped` without having started a
  response, which every ASGI server answers by closing the connection or by a bare 500.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_SCOPE_KEY = "fashn_emulator.drop"


class ConnectionDropped(Exception):
    """Raised when the connection could not be aborted directly."""


def request_drop(request: Request) -> None:
    """Ask the middleware to close this request's connection without a response."""
    flag = request.scope.get(_SCOPE_KEY)
    if isinstance(flag, dict):
        flag["drop"] = True


def _transport_of(send: Send) -> Any:
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None or not hasattr(transport, "abort"):
        return None, None
    return cycle, transport


class DropConnectionMiddleware:
    """Outermost ASGI wrapper implementing :func:`request_drop`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; abort the TCP connection if a drop was requested."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        flag = {"drop": False}
        scope[_SCOPE_KEY] = flag

        async def guarded_send(message: Message) -> None:
            if not flag["drop"]:
                await send(message)

        await self.app(scope, receive, guarded_send)
        if not flag["drop"]:
            return
        cycle, transport = _transport_of(send)
        if transport is None:
            raise ConnectionDropped("connection dropped by fault injection")
        transport.abort()
        for _ in range(200):
            if getattr(cycle, "disconnected", True):
                return
            await asyncio.sleep(0.001)
