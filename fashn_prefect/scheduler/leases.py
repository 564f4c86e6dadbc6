"""The account's limits held on the Prefect server: one leased slot per call and per prediction.

Three global concurrency limits per account, created on first use when absent:

- ``fashn-<account>-run`` (limit: the run rate's requests). Every ``POST /v1/run`` takes one
  slot, and this process gives it back exactly one window after the call *finished*: an
  exact sliding window across every process that uses the account.
- ``fashn-<account>-status``: the same for ``GET /v1/status``.
- ``fashn-<account>-in-flight`` (limit: the in-flight limit): one slot per prediction,
  renewed while it runs, given back the moment the prediction is seen terminal (a slot
  freed is kept for a moment for this process's next prediction, which then needs no
  server round trip; while another process waits for one (``-waiting`` counts them,
  watched every :data:`WATCH_SECONDS`), at most :data:`HANDOFFS` times in a row, and a
  process that gave a slot back pauses two poll intervals before taking one again, so no
  run is starved. However many of a process's predictions wait for a slot, one of them
  asks the server at a time.

Every slot is a lease. If the process dies, its slots come back by themselves when the
lease expires (at most :data:`LEASE_SECONDS` after the last renewal) and the server's
repossessor runs (every ``server.services.repossessor.loop_seconds``, 15 s by default):
never earlier than the call's window, because a slot is renewed past its release time.

All server traffic runs on one background thread with one Prefect client, so callers on
any event loop or thread share it. A busy server (SQLite answers "database is locked" with a
503 when two writes meet) is asked again after a few jittered milliseconds
(:func:`_busy_retry`), not after the Prefect client's own back-off of 2, 4, 8... seconds,
which left freed slots idle for seconds on every collision.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import contextvars
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar
from uuid import UUID

import httpx

from fashn_prefect.scheduler.rates import ApiLimits

log = logging.getLogger("fashn_prefect.scheduler.leases")

LEASE_SECONDS = 60.0
"""Lease length (the server's minimum); slots of a dead process come back after it."""
RENEW_EVERY = 15.0
"""Seconds between renewals of the in-flight leases a process holds."""
HANDOFFS = 2
"""While another process waits, the times in a row an in-flight slot may go from one local
prediction to the next before it is given back to the server for that process."""
WATCH_SECONDS = 0.5
"""How often a process holding in-flight slots checks whether another process waits."""
WAITING_LIMIT = 10_000
"""Size of the limit whose slots count the processes waiting for an in-flight slot."""
POLL_SECONDS = 0.1
"""How often a blocked acquire asks the server again (Prefect's own ``Retry-After`` can
be up to 30 s, which leaves freed slots idle; see prefect issue #23183)."""
BUSY_STATUS = frozenset({408, 429, 502, 503})
"""Answers of a busy or restarting server: the same request is sent again."""
BUSY_FIRST_PAUSE = 0.02
BUSY_MAX_PAUSE = 1.0
BUSY_GIVE_UP = 120.0
"""Seconds of a server that stays busy (or unreachable) before a slot operation fails."""

T = TypeVar("T")


async def _busy_retry(call: Callable[[], Awaitable[T]], give_up: float = BUSY_GIVE_UP) -> T:
    """``await call()``, asked again while the server answers busy or the connection drops.

    Pauses start at :data:`BUSY_FIRST_PAUSE` and double (jittered) up to
    :data:`BUSY_MAX_PAUSE`; a ``Retry-After`` the server sends is honoured. Every other
    answer (a 423 for a full limit, a 404) is the caller's to handle.
    """
    pause = BUSY_FIRST_PAUSE
    deadline = time.monotonic() + give_up
    while True:
        try:
            return await call()
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code not in BUSY_STATUS or time.monotonic() > deadline:
                raise
            after = _seconds(exc.response.headers.get("Retry-After"))
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            after = 0.0
        await asyncio.sleep(max(after, pause * random.uniform(0.5, 1.5)))
        pause = min(pause * 2, BUSY_MAX_PAUSE)


def _seconds(value: str | None) -> float:
    try:
        return min(max(float(value or 0), 0.0), 30.0)
    except ValueError:
        return 0.0


def shared_limits_enabled(requested: bool | None) -> bool:
    """Server-side limits need a shared Prefect server; on the ephemeral one they only add risk.

    A process killed while holding a slot on Prefect's temporary server leaves that slot
    taken in the local database for good (its lease dies with the server), so by default
    server-side limits are used only when ``PREFECT_API_URL`` names a server.
    """
    if requested is not None:
        return requested
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


@dataclass(eq=False)
class Lease:
    """One slot of one server-side limit held by this process."""

    name: str
    lease_id: UUID
    expires: float
    handoffs: int = 0


class ServerLimits:
    """The account's run, status and in-flight limits on the Prefect server (see module doc)."""

    def __init__(self, account: str, limits: ApiLimits, poll: float = POLL_SECONDS) -> None:
        self.limits = limits
        self.poll = poll
        self.run_name = f"fashn-{account}-run"
        self.status_name = f"fashn-{account}-status"
        self.in_flight_name = f"fashn-{account}-in-flight"
        # One slot per process that is waiting for an in-flight slot (for fairness).
        self.waiting_name = f"fashn-{account}-waiting"
        self._sizes = {
            self.run_name: limits.run.requests,
            self.status_name: limits.status.requests,
            self.in_flight_name: limits.max_in_flight,
            self.waiting_name: WAITING_LIMIT,
        }
        self._blocked = 0
        self._waiting_lease: Lease | None = None
        self._registered = False
        self._closing = False
        self._yield_until = 0.0
        self.others_waiting = False
        """Whether another process waited for an in-flight slot at the last look."""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._client: Any = None
        self._freed: dict[str, asyncio.Event] = {}
        self._held: set[Lease] = set()
        self._pending: dict[UUID, tuple[float, Lease]] = {}
        self._ensured = False
        self._setup: asyncio.Lock | None = None
        self._asking: asyncio.Lock | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        # The creator's Prefect settings (API URL); replaced, on the thread, by the same
        # settings without the client's own retries (see _main).
        self._context = contextvars.copy_context()
        context = self._context
        self._thread = threading.Thread(
            target=context.run, args=(self._main,), name="fashn-server-limits", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        atexit.register(self.close)

    # -- background loop -------------------------------------------------------------
    def _main(self) -> None:
        from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

        asyncio.set_event_loop(self._loop)
        # Busy answers are retried here at once (_busy_retry); the client's own back-off
        # would wait seconds. Every coroutine on this loop runs in this context.
        with temporary_settings(updates={PREFECT_CLIENT_MAX_RETRIES: 0}):
            self._context = contextvars.copy_context()
            self._loop.call_soon(self._ready.set)
            self._renewer = self._loop.create_task(self._renew_forever())
            self._watcher = self._loop.create_task(self._watch_waiting())
            self._loop.run_forever()

    def _run_soon(self, coro: Coroutine[Any, Any, T]) -> Any:
        """Schedule ``coro`` on the background loop, in its context; a concurrent future."""
        return self._context.copy().run(asyncio.run_coroutine_threadsafe, coro, self._loop)

    async def _prefect(self) -> Any:
        if self._client is None:
            from prefect.client.orchestration import get_client

            client = get_client()
            await client.__aenter__()
            self._client = client
        return self._client

    async def _ensure(self) -> None:
        """Create any of the account's limits that the server does not have yet (once)."""
        if self._setup is None:
            self._setup = asyncio.Lock()
        async with self._setup:
            if not self._ensured:
                await self._create_missing()
                self._ensured = True

    async def _create_missing(self) -> None:
        from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
        from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound, PrefectHTTPStatusError

        client = await self._prefect()
        for name, size in self._sizes.items():
            try:
                existing = await _busy_retry(
                    partial(client.read_global_concurrency_limit_by_name, name)
                )
                if existing.limit != size:
                    log.warning(
                        "Limit %s is %d on the server (configured %d); the lower one applies.",
                        name,
                        existing.limit,
                        size,
                    )
                if not existing.active:
                    log.warning("Limit %s is inactive on the server; not enforced there.", name)
            except ObjectNotFound:
                log.info("Creating the Prefect concurrency limit %s = %d", name, size)
                try:
                    await _busy_retry(
                        partial(
                            client.create_global_concurrency_limit,
                            GlobalConcurrencyLimitCreate(name=name, limit=size),
                        )
                    )
                except (ObjectAlreadyExists, PrefectHTTPStatusError):
                    # Another process created it first (SQLite answers 500 to the race):
                    # fine if it exists now, else the error stands.
                    await _busy_retry(partial(client.read_global_concurrency_limit_by_name, name))

    async def _acquire(self, name: str) -> Lease:
        await self._ensure()
        if name != self.in_flight_name:
            return await self._take(name)
        await self._yield_to_waiting_process()
        lease = await self._take(name, wait=False)
        if lease is not None:
            return lease
        try:
            await self._count_blocked(+1)
            # One blocked take of this process asks the server at a time (every poll
            # interval); the others queue behind it and ask the moment it is served.
            if self._asking is None:
                self._asking = asyncio.Lock()
            async with self._asking:
                while True:
                    await self._yield_to_waiting_process()
                    lease = await self._take(name, wait=False)
                    if lease is not None:
                        return lease
                    await self._wait_freed(name)
        finally:
            await self._count_blocked(-1)

    async def _yield_to_waiting_process(self) -> None:
        """While another process waits, let it have the slot this process just gave back."""
        while (pause := self._yield_until - time.monotonic()) > 0:
            await asyncio.sleep(min(pause, self.poll))

    async def _take(self, name: str, wait: bool = True) -> Any:
        """A slot of ``name`` (None when none is free and not ``wait``)."""
        from prefect.exceptions import PrefectHTTPStatusError

        client = await self._prefect()
        while True:
            try:
                response = await _busy_retry(
                    lambda: client.increment_concurrency_slots_with_lease(
                        names=[name], slots=1, mode="concurrency", lease_duration=LEASE_SECONDS
                    )
                )
            except PrefectHTTPStatusError as exc:
                if exc.response.status_code != 423:
                    raise
                if not wait:
                    return None
                await self._wait_freed(name)
                continue
            body = response.json()
            lease = Lease(name, UUID(body["lease_id"]), time.monotonic() + LEASE_SECONDS)
            self._held.add(lease)
            if not any(limit["name"] == name for limit in body.get("limits", [])):
                # The limit was deleted under us: the server counted nothing. Never run
                # unlimited; create it again and take a real slot.
                await self._release_now(lease)
                self._ensured = False
                await self._ensure()
                continue
            return lease

    async def _wait_freed(self, name: str) -> None:
        """Until this process frees a slot of ``name``, or one poll interval."""
        freed = self._freed.setdefault(name, asyncio.Event())
        freed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(freed.wait(), timeout=self.poll)

    async def _count_blocked(self, change: int) -> None:
        """Hold one 'waiting' slot while any acquire here waits for an in-flight slot."""
        self._blocked += change
        if self._blocked == 1 and change > 0 and not self._registered:
            self._registered = True  # counted as ours from now, before the server sees it
            self._waiting_lease = await self._take(self.waiting_name)
        if self._blocked == 0 and self._waiting_lease is not None:
            lease, self._waiting_lease = self._waiting_lease, None
            await self._release_now(lease)
            self._registered = self._waiting_lease is not None

    async def _others_waiting(self) -> bool:
        """Whether another process waits for an in-flight slot of the account."""
        client = await self._prefect()
        try:
            limit = await _busy_retry(
                lambda: client.read_global_concurrency_limit_by_name(self.waiting_name), 5.0
            )
        except Exception:
            return False
        return int(limit.active_slots) > (1 if self._registered else 0)

    async def _release_now(self, lease: Lease) -> None:
        if lease not in self._held:
            return  # already given back
        self._held.discard(lease)
        self._pending.pop(lease.lease_id, None)
        yielding = lease.name == self.in_flight_name and self.others_waiting
        if yielding:  # from now, not from the server's answer: no take of ours may race it
            self._yield_until = float("inf")
        try:
            client = await self._prefect()
            await _busy_retry(lambda: client.release_concurrency_slots_with_lease(lease.lease_id))
        except Exception as exc:  # the lease expires by itself
            log.warning("Could not release %s slot: %s: %s", lease.name, type(exc).__name__, exc)
        finally:
            if yielding:
                self._yield_until = time.monotonic() + 2 * self.poll
        if not yielding:
            self._freed.setdefault(lease.name, asyncio.Event()).set()

    async def _release_after(self, lease: Lease, delay: float) -> None:
        """Give ``lease`` back ``delay`` seconds from now, keeping it alive until then."""
        due = time.monotonic() + delay
        self._pending[lease.lease_id] = (due, lease)
        if due + 5.0 > lease.expires:
            await self._renew(lease, max(LEASE_SECONDS, delay + 10.0))
        self._loop.call_later(delay, lambda: self._loop.create_task(self._release_now(lease)))

    async def _renew(self, lease: Lease, seconds: float) -> None:
        client = await self._prefect()
        try:
            await _busy_retry(
                lambda: client.renew_concurrency_lease(lease.lease_id, lease_duration=seconds)
            )
            lease.expires = time.monotonic() + seconds
        except Exception as exc:
            if lease not in self._held:
                return  # given back while the renewal was on its way: nothing to keep
            log.warning("Could not renew %s slot: %s: %s", lease.name, type(exc).__name__, exc)

    async def _watch_waiting(self) -> None:
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            holding = any(lease.name == self.in_flight_name for lease in self._held)
            self.others_waiting = holding and await self._others_waiting()

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(RENEW_EVERY)
            now = time.monotonic()
            for lease in list(self._held):
                if lease.expires - now < LEASE_SECONDS - RENEW_EVERY + 1.0:
                    pending = self._pending.get(lease.lease_id)
                    seconds = LEASE_SECONDS if pending is None else pending[0] - now + 10.0
                    await self._renew(lease, max(LEASE_SECONDS, seconds))

    # -- the API for the account scheduler (any loop, any thread) ---------------------
    async def take(self, name: str) -> Lease:
        """Take one slot of limit ``name``, waiting while the server has none free.

        If the caller is cancelled meanwhile, a slot the server grants anyway is given
        back at once (not left to its lease).
        """
        future = self._run_soon(self._acquire(name))
        try:
            return await asyncio.shield(asyncio.wrap_future(future))
        except asyncio.CancelledError:
            future.add_done_callback(self._give_back_granted)
            raise

    def take_soon(self, name: str, granted: Callable[[Lease | None], None]) -> None:
        """Take one slot of limit ``name`` in the background and call ``granted(lease)`` on
        the background thread once the server grants it (``granted(None)`` if it fails)."""

        async def take() -> None:
            try:
                lease: Lease | None = await self._acquire(name)
            except Exception as exc:
                log.warning("Could not take a %s slot ahead: %s: %s", name, type(exc).__name__, exc)
                lease = None
            if lease is not None and self._closing:  # granted while closing: nobody uses it
                await self._release_now(lease)
                lease = None
            granted(lease)

        self._submit(take())

    def _give_back_granted(self, future: Any) -> None:
        if not future.cancelled() and future.exception() is None:
            self.release(future.result())

    def release(self, lease: Lease, after: float = 0.0) -> None:
        """Give ``lease`` back now, or ``after`` seconds from now."""
        if after > 0:
            self._submit(self._release_after(lease, after))
        else:
            self._submit(self._release_now(lease))

    def _submit(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._loop.is_closed():
            coro.close()
            return
        self._run_soon(coro)

    def close(self, timeout: float = 120.0) -> None:
        """Give back every slot, waiting for the windows of recent calls to pass."""
        if self._loop.is_closed() or not self._thread.is_alive():
            return

        async def settle() -> None:
            """Until the takes and releases already under way have reached the server."""
            others = asyncio.all_tasks() - {asyncio.current_task(), self._renewer, self._watcher}
            if others:
                await asyncio.wait(others, timeout=10.0)

        async def drain() -> None:
            self._closing = True
            while self._pending:
                now = time.monotonic()
                due, lease = min(self._pending.values(), key=lambda p: p[0])
                if due > now:
                    await asyncio.sleep(due - now)
                await self._release_now(lease)
            await settle()  # a slot taken ahead and granted now is given back at once
            for lease in list(self._held):
                await self._release_now(lease)
            await settle()
            background = [task for task in (self._renewer, self._watcher) if task is not None]
            for task in background:  # nothing left to renew or watch
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)

        try:
            self._run_soon(drain()).result(timeout)
        except Exception as exc:
            log.warning("Slots left to expire on the server: %s", exc)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def later(self, delay: float, callback: Any) -> None:
        """Call ``callback()`` on the background thread ``delay`` seconds from now."""
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(
                self._loop.call_later, delay, callback, context=self._context.copy()
            )
