"""The local webhook receiver: a small Starlette app on uvicorn, in a thread of the run's
own process.

``POST <any path>?token=<token>`` with the status envelope (``{"id": ..., ...}``) wakes
the waiter of that prediction. A missing or wrong token gets 403, a body over
:data:`MAX_BODY` 413, malformed JSON or an envelope without an ``id`` 400: none of them
does anything. An id this process does not know gets 200 (so FASHN stops retrying) and
is held briefly, then dropped (:class:`~fashn_prefect.webhooks.registry.Deliveries`).

One receiver per process, account and listen address, started by the first run or task
that needs it and stopped when the last one is done (:func:`open_receiver`).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fashn_prefect.webhooks.registry import Deliveries, Endpoint
from fashn_prefect.webhooks.token import process_token, token_matches

__all__ = [
    "MAX_BODY",
    "Deliver",
    "Receiver",
    "callback_url",
    "close_receiver",
    "local_delivery",
    "open_receiver",
    "parse_listen",
    "receiver_app",
]

logger = logging.getLogger(__name__)

MAX_BODY = 1_000_000
"""Largest delivery accepted, in bytes (a status envelope is a few hundred)."""
PATH = "/fashn-webhook"
MAX_ID = 200
START_TIMEOUT = 10.0


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6; port 0: any free port) as (host, port)."""
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:8765, port 0 for any)")
    return host, int(port)


def callback_url(base: str, token: str) -> str:
    """The URL FASHN is given: ``base`` (plus :data:`PATH` when it has no path of its
    own, e.g. a Prefect Cloud webhook's) and the secret token as its query.

    It is a credential: never log it.
    """
    url = base.rstrip("/")
    if not urlsplit(url).path:
        url += PATH
    return f"{url}?token={quote(token, safe='')}"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


Deliver = Callable[[str, str], Awaitable[bool]]
"""Called with a checked delivery's prediction id and (untrusted) status; True when the
id is known. An exception answers 503, so FASHN retries."""


def local_delivery(deliveries: Deliveries) -> Deliver:
    """Hand each delivery's id to ``deliveries`` in this process."""

    async def deliver(prediction_id: str, status: str) -> bool:
        return deliveries.deliver(prediction_id)

    return deliver


def receiver_app(token: str, deliver: Deliver, max_body: int = MAX_BODY) -> Starlette:
    """The ASGI app that checks each delivery and hands its prediction id to ``deliver``."""

    async def receive(request: Request) -> JSONResponse:
        if not token_matches(request.query_params.get("token"), token):
            return _error(403, "unknown webhook token")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_body:
            return _error(413, "body too large")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body:
                return _error(413, "body too large")
        try:
            envelope: Any = json.loads(bytes(body))
        except ValueError:
            return _error(400, "malformed JSON")
        prediction_id = envelope.get("id") if isinstance(envelope, dict) else None
        if not isinstance(prediction_id, str) or not 0 < len(prediction_id) <= MAX_ID:
            return _error(400, "not a status envelope")
        status = envelope.get("status")
        try:
            known = await deliver(prediction_id, status if isinstance(status, str) else "")
        except Exception as exc:
            logger.warning("Webhook delivery not passed on: %s", type(exc).__name__)
            return _error(503, "not passed on; retry later")
        return JSONResponse({"ok": True, "known": known})

    return Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])


class Receiver:
    """The HTTP receiver on ``host:port``; ``public_url`` is the base FASHN calls (default
    ``http://host:port``)."""

    def __init__(self, host: str, port: int, token: str, public_url: str | None = None) -> None:
        self.host = host
        self.port = port
        self.token = token
        self.public_url = public_url
        self.deliveries = Deliveries()
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """The public base URL (no token: safe to log)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}"

    @property
    def url(self) -> str:
        """The URL FASHN is given, with the token (a secret: never log it)."""
        return callback_url(self.base_url, self.token)

    @property
    def endpoint(self) -> Endpoint:
        """This receiver as a run's webhook endpoint."""
        return Endpoint(self.url, self.deliveries)

    def start(self) -> Receiver:
        """Bind and serve on a daemon thread; returns once it accepts connections."""
        import uvicorn

        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            receiver_app(self.token, local_delivery(self.deliveries)),
            log_config=None,
            log_level="warning",
            access_log=False,  # the request line holds the token
            lifespan="off",
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="fashn-webhooks", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                sock.close()
                raise OSError(f"the webhook receiver on {self.host}:{self.port} did not start")
            time.sleep(0.005)
        logger.info("Webhook receiver listening on %s:%d", self.host, self.port)
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None


_LOCK = threading.Lock()
_RECEIVERS: dict[tuple[str, str], tuple[Receiver, int]] = {}


def open_receiver(account_id: str, listen: str, public_url: str | None = None) -> Receiver:
    """This process's receiver for ``account_id`` on ``listen`` (started on first use);
    give it back with :func:`close_receiver`."""
    key = (account_id, listen)
    with _LOCK:
        entry = _RECEIVERS.get(key)
        if entry is None:
            host, port = parse_listen(listen)
            receiver = Receiver(host, port, process_token(), public_url).start()
        else:
            receiver = entry[0]
        _RECEIVERS[key] = (receiver, (entry[1] if entry else 0) + 1)
        return receiver


def close_receiver(account_id: str, listen: str) -> None:
    """One user of the receiver is done; the last one stops it."""
    key = (account_id, listen)
    with _LOCK:
        entry = _RECEIVERS.get(key)
        if entry is None:
            return
        receiver, users = entry
        if users > 1:
            _RECEIVERS[key] = (receiver, users - 1)
            return
        del _RECEIVERS[key]
    receiver.stop()
