"""The run object: one client, the account's scheduler and one ledger shared by a run's rows.

Both the manifest flows and the composable tasks build one (:func:`open_runtime`), so a
row runs through the same code whichever way it came in. The row task closes over it
(see :func:`fashn_prefect.run.rows.row_task`); nothing is registered anywhere.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from fashn_prefect.api.client import FashnClient
from fashn_prefect.credentials import FashnCredentials
from fashn_prefect.errors import ConfigurationError
from fashn_prefect.run.observe import RunObserver
from fashn_prefect.scheduler.account import AccountScheduler, account_scheduler
from fashn_prefect.scheduler.leases import shared_limits_enabled
from fashn_prefect.scheduler.polls import PollScheduler, poll_scheduler
from fashn_prefect.scheduler.rates import ApiLimits
from fashn_prefect.settings import FashnSettings
from fashn_prefect.store.fs import DEFAULT_STORAGE_TIMEOUT, atomic_write, bounded, filesystem, join
from fashn_prefect.store.ledger import Ledger
from fashn_prefect.store.records import RowRecord, utc_now
from fashn_prefect.webhooks.receiver import close_receiver, open_receiver
from fashn_prefect.webhooks.registry import Endpoint
from fashn_prefect.webhooks.relay import relay_endpoint, webhook_secret

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

    from fashn_prefect.run.plan import PlannedRow

IMAGES_DIR = "images"
SNAPSHOT_EVERY = 200
"""Settled rows per ledger snapshot: a crash leaves at most this many loose records of
finished rows (plus those in flight) for a resume to read one by one."""

logger = logging.getLogger(__name__)

logger = logging.getLogger(__name__)


@dataclass
class RunConfig:
    """Settings that shape how rows are run.

    ``output`` is the output root; None (a task called without one) keeps no ledger and
    stores no images: the API's own output references are returned.
    """

    output: str | None
    time_scale: float = 1.0
    retries: int = 3
    retry_delay: float = 10.0
    storage_options: dict[str, Any] = field(default_factory=dict)
    storage_timeout: float = DEFAULT_STORAGE_TIMEOUT


@dataclass
class RunStats:
    """Counters for the run summary."""

    submitted: int = 0
    status_calls: int = 0
    done: int = 0
    total: int = 0


class Runtime:
    """Live objects shared by every row of one run (or by one task call)."""

    def __init__(
        self,
        config: RunConfig,
        client: FashnClient,
        account: AccountScheduler,
        flow_run_id: str | None = None,
        observer: RunObserver | None = None,
        webhook: Endpoint | None = None,
    ) -> None:
        self.config = config
        self.webhook = webhook
        """Where this run's predictions report their end (None: polling only)."""
        self.client = client
        self.account = account
        self.polls: PollScheduler = poll_scheduler(account)
        self.flow_run_id = flow_run_id
        self.observer = observer
        self.ledger: Ledger | None = None
        self.fs: AbstractFileSystem | None = None
        self.images_root = ""
        if config.output is not None:
            self.ledger = Ledger(config.output, config.storage_options)
            self.fs, root = filesystem(config.output, **config.storage_options)
            self.images_root = join(root, IMAGES_DIR)
        self.stats = RunStats()
        self.rows: Sequence[PlannedRow] = []
        self._saves = itertools.count()
        self._row_locks: dict[str, threading.Lock] = {}
        self._written: dict[str, int] = {}
        self._landed: dict[str, bytes] = {}
        self._settled: list[RowRecord] = []
        self._snapshotting = asyncio.Lock()

    async def save(self, record: RowRecord) -> None:
        """Write a ledger record without blocking the event loop, within the storage timeout.

        Raises :class:`~fashn_prefect.errors.StorageTimeout` when storage does not answer
        in time. A timed-out write may still land later, but never over a newer record of
        the same row: writes of one row are serialised and a stale one is dropped. Without
        an output root the record is kept in memory only.
        """
        record.flow_run_id = self.flow_run_id
        record.updated_at = utc_now()
        ledger = self.ledger
        if ledger is None:
            return
        key, data, number = record.row_key, record.to_json(), next(self._saves)
        lock = self._row_locks.setdefault(key, threading.Lock())

        def write() -> None:
            with lock:
                if self._written.get(key, -1) > number:
                    return
                atomic_write(ledger.fs, ledger.path(key), data)
                self._written[key] = number
                self._landed[key] = data

        await bounded(self.config.storage_timeout, "saving a row's ledger record", write)

    async def settle(self, record: RowRecord | None) -> None:
        """Note that this run is done with a row it saved; every :data:`SNAPSHOT_EVERY`
        such rows, move their records into a ledger snapshot (:meth:`snapshot`)."""
        if self.ledger is None or record is None or record.row_key not in self._landed:
            return
        self._settled.append(record)
        if len(self._settled) >= SNAPSHOT_EVERY:
            await self.snapshot()

    async def snapshot(self) -> None:
        """Store the settled rows' records as one ledger snapshot, then delete their loose
        records, then merge snapshots when there are many.

        A loose record is deleted only when it holds exactly the snapshot's state (its
        last write landed). A failure is logged and never fails the run: the loose
        records stay, and a re-run reads them.
        """
        ledger = self.ledger
        if ledger is None:
            return
        async with self._snapshotting:
            batch, self._settled = self._settled, []
            if not batch:
                return
            stored = [r.row_key for r in batch if self._landed.get(r.row_key) == r.to_json()]
            label = self.flow_run_id or "run"

            def write() -> None:
                ledger.write_snapshot(batch, label)
                ledger.delete_loose(stored)
                for key in stored:
                    self._landed.pop(key, None)

            timeout = self.config.storage_timeout * max(1.0, len(batch) / 500)
            try:
                await bounded(timeout, "writing a ledger snapshot", write)
                await bounded(timeout, "merging ledger snapshots", ledger.merge_snapshots)
            except Exception as exc:
                logger.warning(
                    "Could not write a ledger snapshot (the rows' own records stay): %s: %s",
                    type(exc).__name__,
                    exc,
                )

    async def store(self, what: str, func: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking storage call off the event loop, within the storage timeout."""
        return await bounded(self.config.storage_timeout, what, func, *args)

    def uri(self, path: str) -> str:
        """A full URL (with protocol) for a path on the output filesystem."""
        assert self.fs is not None
        return str(self.fs.unstrip_protocol(path))


def client_options(settings: FashnSettings, limits: ApiLimits) -> dict[str, Any]:
    """FashnClient options: the request timeout, and retry back-off on the run's time scale.

    ``limits`` are already scaled; a 429 without ``Retry-After`` waits out their windows.
    """
    scale = settings.time_scale
    options: dict[str, Any] = {
        "backoff_base": 0.5 * scale,
        "backoff_max": 8.0 * scale,
        "limit_windows": {
            "run": limits.run.seconds,
            "status": limits.status.seconds,
            "credits": 10.0 * scale,
        },
    }
    timeout = settings.client_timeout
    if timeout is not None:
        options["timeout"] = httpx.Timeout(timeout, connect=min(timeout, 5.0))
    return options


@asynccontextmanager
async def open_runtime(
    credentials: FashnCredentials,
    settings: FashnSettings,
    output: str | None,
    storage_options: dict[str, Any],
    flow_run_id: str | None = None,
    observer: RunObserver | None = None,
) -> AsyncIterator[Runtime]:
    """A :class:`Runtime` for ``credentials`` and ``settings``, with its client open.

    ``storage_options`` are the resolved fsspec options (the storage block's included).
    The account's scheduler is this process's one for the account, shared by every run
    and task in it; with shared limits it also holds the limits on the Prefect server.
    """
    limits = settings.limits.scaled(settings.time_scale)
    account = account_scheduler(
        credentials.account_id, limits, shared=shared_limits_enabled(settings.shared_limits)
    )
    config = RunConfig(
        output,
        settings.time_scale,
        settings.retries,
        settings.retry_delay * settings.time_scale,
        storage_options,
        settings.storage_timeout,
    )
    async with (
        credentials.get_client(**client_options(settings, limits)) as client,
        webhook_receiver(credentials.account_id, settings) as webhook,
    ):
        yield Runtime(config, client, account, flow_run_id, observer, webhook)


@asynccontextmanager
async def webhook_receiver(
    account_id: str, settings: FashnSettings
) -> AsyncIterator[Endpoint | None]:
    """Where the run's predictions report their end while the block runs, or None
    (polling only).

    With ``webhook_listen``: this process's receiver for the account (if it cannot start,
    the run warns and polls). With ``webhook_url`` alone: the relay, with the ends read
    from the Prefect server's event stream.
    """
    listen = settings.webhook_listen
    if listen is None:
        if settings.webhook_url is None:
            yield None
            return
        secret = await webhook_secret(settings.webhook_secret_block)
        if not secret:
            raise ConfigurationError(
                "webhook_url without webhook_listen sends FASHN's calls to the webhook relay, "
                "which needs the shared secret: set FASHN_PREFECT_WEBHOOK_SECRET or "
                "webhook_secret_block"
            )
        yield await relay_endpoint(settings.webhook_url, secret)
        return
    try:
        receiver = await asyncio.to_thread(open_receiver, account_id, listen, settings.webhook_url)
    except OSError as exc:
        logger.warning(
            "No webhook receiver on %s (%s: %s); predictions are polled instead",
            listen,
            type(exc).__name__,
            exc,
        )
        yield None
        return
    try:
        yield receiver.endpoint
    finally:
        await asyncio.to_thread(close_receiver, account_id, listen)
