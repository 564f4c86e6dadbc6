"""Completions through Prefect events, for workers FASHN cannot reach.

- The **relay** (``fashn-prefect webhook-relay``, :func:`serve_relay`) is a small
  long-running service on a public URL. It checks each FASHN delivery like the local
  receiver does (token, size, JSON), then posts one Prefect event for it
  (:data:`EVENT`, resource ``fashn.prediction.<id>``) with ``POST /api/events``, and
  answers 2xx only once the Prefect server has accepted it: while Prefect is down it
  answers 503, and FASHN's retries cover the outage.
- The **event stream** (:func:`event_stream`): one subscriber per process (and Prefect
  API) to the server's event stream, shared by every run and task in it; it wakes the
  waiter of each prediction an event names. It reconnects by itself; while it is down,
  predictions are polled once their webhook is overdue, as in local mode.

The token in the URL FASHN is given is derived from a secret the relay and the runs share
(``FASHN_PREFECT_WEBHOOK_SECRET`` or a Prefect Secret block): :func:`relay_endpoint`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
import uuid
from typing import Any

from fashn_prefect.environment import FASHN_PREFECT_WEBHOOK_SECRET
from fashn_prefect.webhooks.receiver import Deliver, callback_url, parse_listen, receiver_app
from fashn_prefect.webhooks.registry import Deliveries, Endpoint
from fashn_prefect.webhooks.token import derived_token

__all__ = [
    "EVENT",
    "RESOURCE_PREFIX",
    "EventStream",
    "close_event_streams",
    "event_stream",
    "prediction_event",
    "prefect_delivery",
    "relay_endpoint",
    "serve_relay",
    "webhook_secret",
]

logger = logging.getLogger(__name__)

EVENT = "fashn.prediction.webhook"
RESOURCE_PREFIX = "fashn.prediction."
RESTART_DELAY = 2.0
"""Seconds before the event stream is opened again after it failed for good."""


def prediction_event(prediction_id: str, status: str) -> dict[str, Any]:
    """The Prefect event for one delivery, as JSON. Its id is derived from the prediction
    id and status, so FASHN's retries and duplicate deliveries make one event."""
    from prefect.events import Event

    event = Event(
        event=EVENT,
        resource={"prefect.resource.id": f"{RESOURCE_PREFIX}{prediction_id}"},
        payload={"status": status[:40]},
        id=uuid.uuid5(uuid.NAMESPACE_URL, f"fashn-prediction:{prediction_id}:{status}"),
    )
    result: dict[str, Any] = event.model_dump(mode="json")
    return result


def prefect_delivery() -> Deliver:
    """Post each delivery to the Prefect server (``PREFECT_API_URL``) as an event; raises
    (the relay answers 503) unless the server accepted it. One Prefect client is opened
    on first use and kept for the relay's life."""
    clients: list[Any] = []

    async def deliver(prediction_id: str, status: str) -> bool:
        from prefect.client.orchestration import get_client

        if not clients:
            clients.append(await get_client().__aenter__())
        response = await clients[0].request(
            "POST", "/events", json=[prediction_event(prediction_id, status)]
        )
        response.raise_for_status()
        return True

    return deliver


def serve_relay(listen: str, secret: str) -> None:
    """Run the relay on ``listen`` (``HOST:PORT``) in the foreground until stopped."""
    import uvicorn

    host, port = parse_listen(listen)
    app = receiver_app(derived_token(secret), prefect_delivery())
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, access_log=False, lifespan="off"
    )
    uvicorn.Server(config).run()


async def webhook_secret(block: str | None) -> str | None:
    """The shared webhook secret: the Prefect Secret block ``block``'s value, else
    ``FASHN_PREFECT_WEBHOOK_SECRET``, else None."""
    if block:
        from prefect.blocks.system import Secret

        loaded: Any = await Secret.aload(block)
        return str(loaded.get())
    return FASHN_PREFECT_WEBHOOK_SECRET.get()


class EventStream:
    """This process's subscriber to the Prefect server's webhook events."""

    def __init__(self) -> None:
        self.deliveries = Deliveries()
        self.connected = threading.Event()
        self.events = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def stop(self) -> None:
        """Stop listening (the thread ends)."""
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(task.cancel)

    def start(self) -> EventStream:
        """Subscribe on a daemon thread (with the caller's Prefect settings)."""
        context = contextvars.copy_context()
        thread = threading.Thread(target=context.run, args=(asyncio.run, self._main()), daemon=True)
        thread.name = "fashn-webhook-events"
        thread.start()
        return self

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        with contextlib.suppress(asyncio.CancelledError):
            await self._listen()

    async def _listen(self) -> None:
        from prefect.events.clients import get_events_subscriber
        from prefect.events.filters import EventFilter, EventNameFilter

        wanted = EventFilter(event=EventNameFilter(name=[EVENT]))
        while True:
            try:
                subscriber = get_events_subscriber(filter=wanted, reconnect_on_clean_close=True)
                async with subscriber:
                    self.connected.set()
                    async for event in subscriber:
                        resource = event.resource.id
                        if resource.startswith(RESOURCE_PREFIX):
                            self.events += 1
                            self.deliveries.deliver(resource[len(RESOURCE_PREFIX) :])
            except Exception as exc:
                logger.warning(
                    "The webhook event stream stopped (%s); predictions are polled when "
                    "their webhook is overdue until it is back",
                    type(exc).__name__,
                )
            self.connected.clear()
            await asyncio.sleep(RESTART_DELAY)


_LOCK = threading.Lock()
_STREAMS: dict[str, EventStream] = {}


def event_stream() -> EventStream:
    """This process's event stream for the current Prefect API (started on first use)."""
    from prefect.settings import PREFECT_API_URL

    api = str(PREFECT_API_URL.value() or "")
    with _LOCK:
        stream = _STREAMS.get(api)
        if stream is None:
            stream = _STREAMS[api] = EventStream().start()
        return stream


def close_event_streams() -> None:
    """Stop every event stream of this process (tests; a process exit does it too)."""
    with _LOCK:
        streams = list(_STREAMS.values())
        _STREAMS.clear()
    for stream in streams:
        stream.stop()


async def relay_endpoint(public_url: str, secret: str, connect_timeout: float = 10.0) -> Endpoint:
    """A run's endpoint in relay mode: FASHN calls the relay at ``public_url``; the ends
    arrive from this process's event stream (waited for up to ``connect_timeout`` s)."""
    stream = event_stream()
    await asyncio.to_thread(stream.connected.wait, connect_timeout)
    return Endpoint(callback_url(public_url, derived_token(secret)), stream.deliveries)
