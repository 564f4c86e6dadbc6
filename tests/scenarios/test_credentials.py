"""A saved FashnCredentials block drives a run, and its API key never shows anywhere.

``prefect block register -m fashn_prefect`` runs as a real CLI against the test server;
the run then loads the block by name, both from Python and from ``fashn-prefect run
--credentials``. The key is distinctive, so any copy of it in the logs, the results,
the ledger, the run report, the gallery or the Prefect artifacts and logs is found.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from _helpers import TIME_SCALE, emulator, put_images, write_manifest
from typer.testing import CliRunner

from fashn_prefect.cli import app
from fashn_prefect.credentials import FashnCredentials
from fashn_prefect.emulator import EmulatorServer
from fashn_prefect.flows import run_manifest
from fashn_prefect.run.outcome import summary_of

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.timeout(180)]
SECRET = f"fa-SECRET-{uuid.uuid4().hex}"
PREFECT = str(Path(sys.executable).parent / "prefect")


@pytest.fixture
def emu() -> Iterator[EmulatorServer]:
    server = emulator(api_keys=(SECRET,), seed=9)
    try:
        yield server
    finally:
        server.stop()


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.text: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.text.append(logging.Formatter("%(name)s %(message)s").format(record))


@pytest.fixture
def every_log_line() -> Iterator[list[str]]:
    """Every log record of the test at DEBUG and up (with tracebacks), formatted."""
    handler = _Collect()
    loggers = [logging.getLogger(n) for n in ("", "prefect", "fashn_prefect", "httpx")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
    for name in ("fashn_prefect", "httpx"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield handler.text
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def _register_blocks(home: Path) -> subprocess.CompletedProcess[str]:
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_API_URL=str(PREFECT_API_URL.value()), PREFECT_HOME=str(home))
    return subprocess.run(
        [PREFECT, "block", "register", "-m", "fashn_prefect"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def _prefect_logs_and_artifacts(flow_run_id: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )

    async with get_client() as client:
        logs = await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[uuid.UUID(flow_run_id)]))
        )
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
        run = await client.read_flow_run(uuid.UUID(flow_run_id))
    return "\n".join(
        [*(log.message for log in logs), *(str(a.data) for a in artifacts), str(run.parameters)]
    )


async def test_a_saved_block_drives_a_run_and_the_key_never_leaks(
    emu: EmulatorServer, tmp_path: Path, every_log_line: list[str]
) -> None:
    from prefect.client.orchestration import get_client

    registered = _register_blocks(tmp_path / "prefect-home")
    assert registered.returncode == 0, registered.stdout + registered.stderr
    assert "FASHN Credentials" in registered.stdout
    async with get_client() as client:
        block_type = await client.read_block_type_by_slug("fashn-credentials")
    assert block_type.name == "FASHN Credentials"
    block_name = f"fashn-{uuid.uuid4().hex[:8]}"
    await FashnCredentials(api_key=SECRET, base_url=emu.url).save(block_name)
    images = put_images(str(tmp_path / "images"))
    rows = [
        {
            "row_id": f"c-{i}",
            "model_name": "tryon-v1.6",
            "model_image": images["models"][0],
            "garment_image": images["garments"][i],
            "mode": "performance",
        }
        for i in range(3)
    ]
    rows.append({**rows[0], "row_id": "c-fails", "garment_image": str(tmp_path / "gone.png")})
    manifest = write_manifest(str(tmp_path / "catalog.csv"), rows)
    out = tmp_path / "out"

    run = run_manifest(
        manifest=manifest,
        output=str(out),
        credentials=block_name,
        time_scale=TIME_SCALE,
        shared_limits=False,
        skip_invalid=True,
        write_csv=True,
    )
    summary = await summary_of(run)  # Failed: the invalid row counts as a failed one

    assert summary["totals"]["completed"] == 3 and summary["totals"]["invalid"] == 1
    assert len(emu.stats()["predictions"]) == 3
    # The CLI loads the same block by name (it runs its flow in a thread of its own).
    cli = await _in_thread(
        lambda: CliRunner().invoke(
            app,
            [
                *("run", manifest, "-o", str(tmp_path / "out-cli")),
                *("--credentials", block_name, "--time-scale", str(TIME_SCALE)),
                *("--skip-invalid", "--json"),
            ],
        )
    )
    assert cli.exit_code == 1, cli.output  # the invalid row; the three others completed
    assert '"completed": 3' in cli.stdout

    # Nowhere: logs of this process, Prefect's stored logs and artifacts, or any file.
    assert every_log_line and SECRET not in "\n".join(every_log_line)
    assert SECRET not in cli.output
    assert SECRET not in await _prefect_logs_and_artifacts(summary["flow_run_id"])
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in written) and any(
        "ledger" in p.parts for p in written
    )
    for path in written:
        assert SECRET.encode() not in path.read_bytes(), path


async def _in_thread(call):  # type: ignore[no-untyped-def]
    import asyncio

    return await asyncio.to_thread(call)
