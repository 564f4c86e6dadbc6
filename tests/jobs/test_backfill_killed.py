"""Backfills: a ``fashn-prefect backfill`` SIGKILLed mid-run resumes and submits no row twice.

(Apart from tests/jobs/test_backfill.py so that the two run on separate pytest-xdist
workers: they share nothing.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from _helpers import (
    TIME_SCALE,
    catalog_rows,
    latest_status,
    limit_rejections,
    predictions_per_input,
    write_manifest,
)
from _servers import FASHN_PREFECT, kill_group

from fashn_prefect.emulator import EmulatorConfig, EmulatorServer
from fashn_prefect.store.ledger import LEDGER_DIR


def _env(home: Path, emu: EmulatorServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FASHN_"))}
    env.update(
        PREFECT_HOME=str(home),  # a private ephemeral server: a kill leaks nothing shared
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
        DO_NOT_TRACK="1",
        FASHN_API_KEY=emu.api_key,
        FASHN_BASE_URL=emu.url,
    )
    return env


def _backfill(manifest: str, output: Path, env: dict[str, str], log: Path) -> Any:
    handle = log.open("ab")
    command = [FASHN_PREFECT, "backfill", manifest, "--output", str(output)]
    command += ["--chunk-size", "100", "--time-scale", str(TIME_SCALE), "--json"]
    return subprocess.Popen(
        command, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )


def _freeze_between_submissions(proc: Any, output: Path) -> bool:
    """Stop the backfill's process group; keep it stopped only if no ``POST /v1/run`` is
    between its written intent and its recorded answer (a kill there would make the row
    ambiguous, which the product reports instead of resubmitting)."""
    kill_group(proc, signal.SIGSTOP)
    for path in (output / LEDGER_DIR).glob("*.json"):
        try:
            status = json.loads(path.read_bytes())["status"]
        except (OSError, ValueError):
            status = "unknown"  # replaced while being read: look again later
        if status in ("submitting", "unknown"):
            kill_group(proc, signal.SIGCONT)
            return False
    return True


@pytest.mark.slow
def test_killed_backfill_resumes_and_submits_no_row_twice(tmp_path: Path) -> None:
    output, home, log = tmp_path / "out", tmp_path / "prefect-home", tmp_path / "backfill.log"
    home.mkdir()
    with EmulatorServer(EmulatorConfig(time_scale=TIME_SCALE, seed=6)) as emu:
        manifest = write_manifest(tmp_path / "history.csv", catalog_rows(300, emu))
        env = _env(home, emu)

        first = _backfill(manifest, output, env, log)
        try:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline and first.poll() is None:
                if len(emu.stats()["predictions"]) >= 130 and _freeze_between_submissions(
                    first, output
                ):
                    break
                time.sleep(0.01)
            assert first.poll() is None, log.read_text()[-2000:]
            kill_group(first, signal.SIGKILL)
            first.wait(timeout=10)
        finally:
            kill_group(first, signal.SIGKILL)
        killed_at = len(emu.stats()["predictions"])
        assert 130 <= killed_at < 300

        second = _backfill(manifest, output, env, log)
        try:
            assert second.wait(timeout=240) == 0, log.read_text()[-3000:]
        finally:
            kill_group(second, signal.SIGKILL)
        stats = emu.stats()

    # Every row completed, each submitted exactly once, within the API's limits.
    assert set(latest_status(output).values()) == {"completed"}
    assert len(latest_status(output)) == 300
    per_input = predictions_per_input(stats)
    assert len(per_input) == 300 and max(per_input.values()) == 1
    assert stats["credits_charged"] == 300
    assert stats["peak_in_flight"] <= 6 and limit_rejections(stats) == {}
    text = log.read_text()
    summary, _ = json.JSONDecoder().raw_decode(text[text.rindex('{\n  "plan"') :])
    assert summary["plan"]["already_completed"] + summary["plan"]["to_run"] == 300
