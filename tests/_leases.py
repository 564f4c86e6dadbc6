"""Helpers of the shared-limits tests (tests/scheduler/test_leases*.py): a Prefect server
whose repossessor revokes expired leases every second, its global concurrency limits, and
``fashn-prefect run`` processes against it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from _helpers import catalog_rows, write_manifest
from _servers import FASHN_PREFECT, PrefectServer, free_port

from fashn_prefect.credentials import FashnCredentials
from fashn_prefect.emulator import EmulatorServer

REPOSSESSOR_SECONDS = 1  # the server revokes expired leases this often (default 15 s)


@contextmanager
def lease_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """A Prefect server (SQLite) that revokes expired leases every second."""
    srv = PrefectServer(
        tmp_path_factory.mktemp("prefect-home"),
        free_port(),
        settings={"PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS": str(REPOSSESSOR_SECONDS)},
    )
    try:
        yield srv.start()
    finally:
        srv.close()


def limits_of(server: PrefectServer) -> dict[str, dict[str, Any]]:
    """The server's global concurrency limits by name."""
    response = httpx.post(f"{server.api_url}/v2/concurrency_limits/filter", json={}, timeout=10)
    response.raise_for_status()
    return {limit["name"]: limit for limit in response.json()}


def account_of(emu: EmulatorServer) -> str:
    """The account id the emulator's API key belongs to."""
    return FashnCredentials(api_key=emu.api_key, base_url=emu.url).account_id


def start_run(
    server: PrefectServer, emu: EmulatorServer, tmp: Path, name: str, rows: int, scale: float
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start ``fashn-prefect run`` of ``rows`` catalog rows against ``server``; returns the
    process and its output directory."""
    manifest = write_manifest(
        tmp / f"{name}.csv",
        catalog_rows(rows, emu, prefix=name, seed_base=1000 + 100 * len(name) + ord(name[-1])),
    )
    output = tmp / name
    proc = server.spawn(
        [
            FASHN_PREFECT,
            "run",
            manifest,
            "--output",
            str(output),
            "--time-scale",
            str(scale),
            "--quiet",
        ],
        f"{name}.log",
        FASHN_API_KEY=emu.api_key,
        FASHN_BASE_URL=emu.url,
        PREFECT_LOGGING_EXTRA_LOGGERS="fashn_prefect",
    )
    return proc, output


def finish(server: PrefectServer, proc: subprocess.Popen[bytes], name: str) -> None:
    """Wait for a run started by :func:`start_run`; it must succeed."""
    assert proc.wait(timeout=300) == 0, server.log_tail(f"{name}.log")
