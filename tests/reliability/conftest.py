"""Fixtures of the reliability suite: a distinctive secret API key, log capture for the
secret scan, and the scenario report printed at the end of the run. (The Prefect harness
is the one in tests/conftest.py.)"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import Report

# The last run's table, for copying into the README; .pytest_cache/ is gitignored.
REPORT_PATH = Path(__file__).resolve().parents[2] / ".pytest_cache" / "reliability-report.md"
_REPORT = Report()


@pytest.fixture(scope="session")
def report() -> Report:
    """The session's scenario collector (printed in the terminal summary)."""
    return _REPORT


@pytest.fixture(scope="session")
def secret_key() -> str:
    """A distinctive API key that must never appear in any output."""
    return f"fa-SECRET-{uuid.uuid4().hex}"


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # a record that cannot be formatted still must not leak
            self.lines.append(repr(record.__dict__))


@pytest.fixture
def all_logs() -> Iterator[list[str]]:
    """Every log record (DEBUG and up, with tracebacks) of the test, formatted."""
    handler = _Collect()
    names = ["", "prefect", "fashn_prefect", "httpx", "httpcore", "botocore", "s3fs"]
    saved: list[tuple[logging.Logger, int]] = []
    for name in names:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level))
        logger.addHandler(handler)
        if name in ("fashn_prefect", "httpx"):
            logger.setLevel(logging.DEBUG)
    try:
        yield handler.lines
    finally:
        for logger, level in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the scenarios x invariants table and keep a copy in REPORT_PATH."""
    if not _REPORT.results:
        return
    text = _REPORT.markdown()
    terminalreporter.write_sep("=", "reliability report")
    terminalreporter.write_line(text)
    if "not reliability" in (terminalreporter.config.option.markexpr or ""):
        return  # the fast subset run by `make test`; keep the full suite's saved table
    REPORT_PATH.parent.mkdir(parents=True, exist_ok=True)
    REPORT_PATH.write_text("# Reliability report (last run)\n\n" + text + "\n")
    terminalreporter.write_line(f"(saved to {REPORT_PATH})")
