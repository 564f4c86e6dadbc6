"""How the CLI sets up Prefect so that a terminal run of any size stays readable.

Without a ``PREFECT_API_URL`` the CLI runs its flows on Prefect's ephemeral server, a
subprocess with its own SQLite database. Two defaults of that server filled the terminal
with tracebacks that look like data loss:

* its telemetry heartbeat writes to the database while the run's own writes hold it, and
  fails with ``sqlite3.OperationalError: database is locked`` (printed with a traceback);
  telemetry is off here;
* it allows 20 s to start, which a first start (database migrations) on a busy 2-core
  machine can exceed; it gets 90 s;
* it is stopped when the command exits, and its task-run recorder, cancelled while it
  flushes the last task-run events into that throwaway database, logs each cancellation
  as an ERROR with two tracebacks ("Error flushing 1 events"). Nothing of the run is lost
  (results, images and ledger are in storage already), so the ephemeral server's own log
  is kept to CRITICAL. Its database pool also logs a rollback cancelled by the stop
  ("Exception during reset or similar", with a traceback) through the root logger, so the
  CLI starts that server itself, with its root logger at CRITICAL too
  (:func:`start_temporary_server`); this process's own logging is unchanged. A server you
  run yourself (``PREFECT_API_URL``) is not affected.

Every setting is only a default: a value the user exported wins. On the terminal, row
task logs (one "Finished in state" line per row, two per failed row) are left to the
Prefect UI; the progress bar and the summary, which groups failures by error, stand for
them. Flow-level warnings and errors still print.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from fashn_prefect.environment import FASHN_PREFECT_DEBUG

PREFECT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "PREFECT_SERVER_LOGGING_LEVEL": "CRITICAL",
    # The library's own warnings (a 429, an unparseable header...) reach the flow run's logs.
    "PREFECT_LOGGING_EXTRA_LOGGERS": "fashn_prefect",
}
"""Environment defaults for Prefect; set before Prefect is first imported."""


def prefect_defaults() -> None:
    """Apply :data:`PREFECT_DEFAULTS` where the environment does not set them."""
    for name, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(name, value)


def start_temporary_server() -> None:
    """Start Prefect's temporary server now (when no ``PREFECT_API_URL`` is set), with the
    root logger of *its* process at CRITICAL; Prefect's flows then use this one."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return
    from prefect.server.api.server import SubprocessASGIServer

    name = "PREFECT_LOGGING_ROOT_LEVEL"
    exported = os.environ.get(name)
    os.environ.setdefault(name, "CRITICAL")  # read by the server's process as it starts
    try:
        SubprocessASGIServer().start()
    finally:
        if exported is None:
            del os.environ[name]


class _RowTaskFilter(logging.Filter):
    """Keeps row-task records and flow INFO chatter off the terminal (not off the API)."""

    def __init__(self, quiet: bool) -> None:
        super().__init__()
        self.quiet = quiet

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("prefect.task_runs"):
            return False
        return not (self.quiet and record.levelno < logging.WARNING)


@contextmanager
def terminal_logs(quiet: bool) -> Iterator[None]:
    """While a command runs, Prefect's terminal handler prints only what a person needs."""
    if FASHN_PREFECT_DEBUG.is_set():
        yield
        return
    from prefect.logging.handlers import PrefectConsoleHandler

    start_temporary_server()
    keep = _RowTaskFilter(quiet)
    original = PrefectConsoleHandler.filter

    def filter_records(self: logging.Handler, record: logging.LogRecord) -> bool:
        return keep.filter(record) and bool(original(self, record))

    # Prefect (re)creates its handlers while a flow starts, so the class is patched.
    setattr(PrefectConsoleHandler, "filter", filter_records)  # noqa: B010
    try:
        yield
    finally:
        setattr(PrefectConsoleHandler, "filter", original)  # noqa: B010
