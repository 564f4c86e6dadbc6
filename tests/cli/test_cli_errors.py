"""The CLI turns an unreachable API or a failing store into one line plus a hint, never a
traceback, and its exit code says honestly whether anything may have been submitted.

Each command runs as a real subprocess (what a user types), against the test Prefect
server so that no temporary server has to start per command.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _helpers import TIME_SCALE, emulator, submissions, write_manifest

from fashn_prefect.emulator import EmulatorServer


def _closed_port_url() -> str:
    """A loopback URL on which nothing listens (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _manifest(tmp_path: Path, count: int = 1) -> str:
    rows = [
        {"row_id": f"row-{i}", "model_name": "model-create", "prompt": f"a red dress {i}"}
        for i in range(count)
    ]
    return write_manifest(str(tmp_path / "manifest.csv"), rows)


def _assert_one_clear_error(output: str, base_url: str) -> None:
    assert "Traceback" not in output
    assert f"error: cannot reach the FASHN API at {base_url}" in output
    assert "hint: check your network and FASHN_BASE_URL" in output


def _cli(tmp_path: Path, args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``fashn-prefect ARGS`` as a user would, against the test Prefect server."""
    from prefect.settings import PREFECT_API_URL

    full_env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "COLUMNS": "200",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "fashn_prefect.cli", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=100,
    )


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("command", ["run", "catalog", "backfill"])
def test_an_unreachable_api_gives_one_error_line_and_a_hint(command: str, tmp_path: Path) -> None:
    base_url = _closed_port_url()
    args = [command, _manifest(tmp_path), "--output", str(tmp_path / "out"), "--quiet"]

    done = _cli(tmp_path, args, FASHN_BASE_URL=base_url, FASHN_API_KEY="fa-emulator-local-key")

    _assert_one_clear_error(done.stdout + done.stderr, base_url)
    assert done.returncode == 2  # nothing was submitted


@pytest.fixture
def emu() -> Iterator[EmulatorServer]:
    with emulator(seed=9) as server:
        yield server


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("prefect_harness")
def test_a_failure_after_submissions_exits_1_and_says_a_rerun_resumes(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "runs").write_text("a file where the run reports' folder belongs")
    args = [
        "run",
        _manifest(tmp_path, count=2),
        "--output",
        str(out),
        "--time-scale",
        str(TIME_SCALE),
        "--quiet",
    ]

    done = _cli(tmp_path, args, FASHN_BASE_URL=emu.url, FASHN_API_KEY=emu.api_key)

    output = done.stdout + done.stderr
    assert submissions(emu.stats()) == 2  # the run report is written last, after the rows
    assert "Traceback" not in output
    assert "error: " in output
    assert "some predictions may already have been submitted" in output
    assert done.returncode == 1  # not 2: "nothing submitted" would be a lie here
