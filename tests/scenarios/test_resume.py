"""A ``fashn-prefect run`` killed mid-way and run again submits no row twice.

The CLI runs as a real subprocess in its own process group with a private PREFECT_HOME
(Prefect's temporary server lives inside that group, so it dies with it). The test
freezes the group once the emulator has seen a third of the rows, and kills it with
SIGKILL at a moment when no submission is between its request and its recorded answer
(a kill inside that window is ambiguous by nature: see the AmbiguousSubmission rows in
the reliability suite). The same command, run again, must finish every row, resuming
the predictions the killed run had started instead of submitting them again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _helpers import emulator, predictions_per_input, put_images, results, write_manifest

from fashn_prefect.emulator import EmulatorServer

pytestmark = pytest.mark.timeout(240)
TIME_SCALE = 0.05
ROWS = 30
CLI = str(Path(sys.executable).parent / "fashn-prefect")


class RequestWatch:
    """Wakes the test thread on every API request the emulator counts (no polling)."""

    def __init__(self, emu: EmulatorServer) -> None:
        self.state = emu.app.emulator.state
        self.cond = threading.Condition()
        self.requests = 0
        original = self.state.count_request

        def counted(key_id: str, endpoint: str) -> None:
            original(key_id, endpoint)
            with self.cond:
                self.requests += 1
                self.cond.notify_all()

        self.state.count_request = counted  # type: ignore[method-assign]

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 120.0) -> None:
        with self.cond:
            assert self.cond.wait_for(predicate, timeout), "the run stopped making requests"

    def wait_for_next_request(self) -> None:
        seen = self.requests
        self.wait_until(lambda: self.requests > seen)


@pytest.fixture
def emu() -> Iterator[EmulatorServer]:
    with emulator(time_scale=TIME_SCALE, seed=5) as server:
        yield server


def _env(emu: EmulatorServer, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FASHN_"))}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
        FASHN_API_KEY=emu.api_key,
        FASHN_BASE_URL=emu.url,
        COLUMNS="200",
    )
    return env


def _ledger(output: Path) -> list[dict[str, Any]]:
    folder = output / "ledger"
    if not folder.exists():
        return []
    return [json.loads(p.read_text()) for p in folder.glob("*.json")]


def _kill_between_submissions(proc: subprocess.Popen[str], watch: RequestWatch, out: Path) -> int:
    """SIGKILL the run's process group while no row is mid-submission; return rows started."""
    for _ in range(200):
        os.killpg(proc.pid, signal.SIGSTOP)
        records = _ledger(out)
        if not any(r["status"] == "submitting" for r in records):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            return len(records)
        os.killpg(proc.pid, signal.SIGCONT)
        watch.wait_for_next_request()
    raise AssertionError("never found a moment between submissions")


def test_killed_run_resumes_without_submitting_any_row_twice(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    images = put_images(str(tmp_path / "images"))
    rows = [
        {
            "row_id": f"k-{i:02d}",
            "model_name": "tryon-v1.6",
            "model_image": images["models"][i % 3],
            "garment_image": images["garments"][i % 6],
            "mode": "quality",
            "seed": i,
        }
        for i in range(ROWS)
    ]
    manifest = write_manifest(str(tmp_path / "catalog.csv"), rows)
    out = tmp_path / "out"
    command = [CLI, "run", manifest, "--output", str(out)]
    command += ["--time-scale", str(TIME_SCALE), "--json", "--quiet"]
    env = _env(emu, tmp_path / "prefect-home")
    watch = RequestWatch(emu)

    proc = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        watch.wait_until(
            lambda: len(watch.state.predictions) >= ROWS // 3 or proc.poll() is not None
        )
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        started = _kill_between_submissions(proc, watch, out)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    before = len(emu.stats()["predictions"])
    assert ROWS // 3 <= before < ROWS  # killed mid-way
    assert started == before  # every prediction made was recorded before the kill
    assert not (out / "results").exists()  # it never got as far as writing results

    again = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=180, start_new_session=True
    )

    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    summary = json.loads(again.stdout[again.stdout.index("{") :])
    stats = emu.stats()
    assert max(predictions_per_input(stats).values()) == 1  # no row submitted twice
    assert len(stats["predictions"]) == ROWS
    assert summary["submitted"] == ROWS - before  # the others were resumed, not resent
    table = results(summary["results"])
    assert [r["row_key"] for r in table] == [r["row_id"] for r in rows]
    assert {r["status"] for r in table} == {"completed"}
    charged = {p["id"]: p["credits"] for p in stats["predictions"]}
    assert sorted(i for r in table for i in r["prediction_ids"]) == sorted(charged)
    assert sum(r["credits_charged"] for r in table) == stats["credits_charged"] == ROWS
    for row in table:
        assert Path(row["output_uris"][0].removeprefix("file://")).is_file()
