"""The run object: one client, one set of limiters and one ledger shared by a run's rows.

The row tasks close over it (see :func:`fashn_prefect.run.pipeline.row_tasks`); nothing
is registered anywhere.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fashn_prefect.api.client import FashnClient
from fashn_prefect.run.observe import RunObserver
from fashn_prefect.scheduler.limits import Lanes, Limiter
from fashn_prefect.store.fs import DEFAULT_STORAGE_TIMEOUT, atomic_write, bounded, filesystem, join
from fashn_prefect.store.ledger import Ledger, RowRecord, utc_now

if TYPE_CHECKING:
    from fashn_prefect.run.plan import Job

IMAGES_DIR = "images"


@dataclass
class RunConfig:
    """Settings that shape how rows are run."""

    output: str
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
    """Live objects shared by every row of one flow run."""

    def __init__(
        self,
        config: RunConfig,
        client: FashnClient,
        limiter: Limiter,
        flow_run_id: str | None = None,
        observer: RunObserver | None = None,
    ) -> None:
        self.config = config
        self.client = client
        self.limiter = limiter
        self.flow_run_id = flow_run_id
        self.observer = observer
        self.ledger = Ledger(config.output, config.storage_options)
        self.fs, root = filesystem(config.output, **config.storage_options)
        self.images_root = join(root, IMAGES_DIR)
        self.stats = RunStats()
        self.jobs: list[Job] = []
        # The account's in-flight lanes; a prediction holds one from its POST until it is
        # seen terminal (None: no in-flight limit, e.g. in unit tests).
        self.lanes: Lanes | None = None
        self._saves = itertools.count()
        self._row_locks: dict[str, threading.Lock] = {}
        self._written: dict[str, int] = {}

    async def save(self, record: RowRecord) -> None:
        """Write a ledger record without blocking the event loop, within the storage timeout.

        Raises :class:`~fashn_prefect.api.errors.StorageTimeout` when storage does not answer
        in time. A timed-out write may still land later, but never over a newer record of
        the same row: writes of one row are serialised and a stale one is dropped.
        """
        record.flow_run_id = self.flow_run_id
        record.updated_at = utc_now()
        key, data, number = record.row_key, record.to_json(), next(self._saves)
        lock = self._row_locks.setdefault(key, threading.Lock())

        def write() -> None:
            with lock:
                if self._written.get(key, -1) > number:
                    return
                atomic_write(self.ledger.fs, self.ledger.path(key), data)
                self._written[key] = number

        await bounded(self.config.storage_timeout, "saving a row's ledger record", write)

    async def store(self, what: str, func: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking storage call off the event loop, within the storage timeout."""
        return await bounded(self.config.storage_timeout, what, func, *args)

    def uri(self, path: str) -> str:
        """A full URL (with protocol) for a path on the output filesystem."""
        return str(self.fs.unstrip_protocol(path))
