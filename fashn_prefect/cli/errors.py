"""How the CLI fails: every expected error becomes one line plus a hint and an exit code.

Exit 2 when nothing was submitted, 1 when a submission had started before the failure.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console

from fashn_prefect.environment import FASHN_PREFECT_DEBUG

__all__ = ["err", "fail", "fail_with", "friendly_errors"]

err = Console(stderr=True)


def _where(exc: Exception) -> str:
    """`` at scheme://host:port`` of the failed request, when known (never a query or key)."""
    try:
        url = exc.request.url  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):
        return ""
    return f" at {url.scheme}://{url.netloc.decode()}"


def fail(message: str, hint: str, code: int = 2, as_json: bool = False) -> NoReturn:
    """Print ``message`` and ``hint`` on stderr and exit with ``code``."""
    fail_with(message, hint, code, as_json, error="UsageError")


def fail_with(message: str, hint: str, code: int, as_json: bool = False, **extra: Any) -> NoReturn:
    """Print ``message`` and ``hint`` on stderr and exit with ``code``; with ``as_json``
    also print one JSON object on stdout (``error``, ``message``, ``hint``, ``exit_code``)."""
    if as_json:  # scripts read stdout: one JSON object, whatever went wrong
        kind = type(sys.exc_info()[1]).__name__ if sys.exc_info()[1] else "Error"
        error = {"error": kind, "message": message, "hint": hint, "exit_code": code, **extra}
        print(json.dumps(error, default=str))
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    err.print(f"[dim]hint: {hint}[/]", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def console_tracebacks_hidden() -> Iterator[None]:
    """While a command runs, Prefect's terminal log shows a failed flow's exception as one
    line, without its traceback. The Prefect UI and API logs keep the traceback, and
    FASHN_PREFECT_DEBUG=1 shows it here too."""
    if FASHN_PREFECT_DEBUG.is_set():
        yield
        return
    import logging

    from prefect.logging.handlers import PrefectConsoleHandler

    def format_one_line(self: logging.Handler, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return logging.Handler.format(self, record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved

    # Prefect (re)creates its handlers while a flow starts, so the class is patched.
    original = PrefectConsoleHandler.format
    setattr(PrefectConsoleHandler, "format", format_one_line)  # noqa: B010
    try:
        yield
    finally:
        setattr(PrefectConsoleHandler, "format", original)  # noqa: B010


@contextmanager
def friendly_errors(command: str, json_output: bool = False) -> Iterator[None]:
    """Turn every expected failure into one line plus a hint, never a traceback.

    Exit 2 when nothing was submitted, 1 when a submission had started before the failure.
    """
    import httpx

    from fashn_prefect.errors import (
        BudgetExceeded,
        ConfigurationError,
        FashnError,
        ManifestInvalid,
        StorageTimeout,
    )
    from fashn_prefect.run.manifest import ManifestError
    from fashn_prefect.run.observe import RunObserver, observing
    from fashn_prefect.store.fs import is_storage_transport_error

    observer = RunObserver()

    def fail(message: str, hint: str, **extra: Any) -> NoReturn:
        # Exit 2 promises that nothing was submitted; once a POST has started, be honest.
        if observer.posts_started > 0:
            hint += (
                "; some predictions may already have been submitted: run the same command "
                "again to resume them (recorded rows are never submitted twice)"
            )
            fail_with(message, hint, 1, json_output, **extra)
        fail_with(message, hint, 2, json_output, **extra)

    try:
        with console_tracebacks_hidden(), observing(observer):
            yield
    except typer.Exit:
        raise
    except ManifestInvalid as exc:
        if not json_output:
            err.print(exc.report.format())
        fail(
            "the manifest has invalid rows; nothing was submitted",
            "fix the rows above, or pass --skip-invalid to run only the valid ones",
            problems=[str(p) for p in exc.report.problems],
        )
    except BudgetExceeded as exc:
        fail(str(exc), "raise --budget, top up credits, or run fewer rows")
    except ManifestError as exc:
        fail(str(exc), "check the manifest URL and that it is CSV (UTF-8) or Parquet")
    except ConfigurationError as exc:
        fail(
            str(exc),
            "set FASHN_API_KEY (and FASHN_BASE_URL for the emulator) or pass --credentials",
        )
    except httpx.TransportError as exc:
        fail(
            f"cannot reach the FASHN API{_where(exc)}: {type(exc).__name__}: {exc}",
            "check your network and FASHN_BASE_URL (unset it for the real API; for the "
            "emulator start `fashn-prefect emulator` first)",
        )
    except StorageTimeout as exc:
        fail(
            f"StorageTimeout: {exc}",
            "check that the --output location (and S3 endpoint) is reachable; nothing is "
            "lost, run the same command again when it is",
        )
    except (ValueError, FashnError, OSError) as exc:
        fail(f"{type(exc).__name__}: {exc}", f"see `fashn-prefect {command} --help`")
    except Exception as exc:  # the last resort: still one line, never a traceback
        if FASHN_PREFECT_DEBUG.is_set():
            raise
        if is_storage_transport_error(exc):
            fail(
                f"cannot reach the output storage: {type(exc).__name__}: {exc}",
                "check the --output location, its endpoint and credentials, then run the "
                "same command again",
            )
        fail(
            f"{type(exc).__name__}: {exc}",
            "set FASHN_PREFECT_DEBUG=1 to see the traceback, and check the Prefect logs",
        )
