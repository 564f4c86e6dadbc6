"""Every credit accounted for: the audit reconciles the balance with the emulator's charges.

* ``POST /v1/run`` connections dropped after FASHN created the prediction leave credits no
  row explains: an ``unexplained_balance`` anomaly (exit 1, Failed state) that names the
  interrupted rows, shown in the Markdown artifact and the chart.
* A refund during a run shows as a negative unexplained amount.
* Credits spent between runs (another user of the account) are reported as usage outside
  the runs, an anomaly only with ``--flag-outside-usage``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _helpers import api_client, emulator, host_images, wait_terminal, write_manifest
from _servers import REPO
from PIL import Image
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
)
from prefect.flows import load_flow_from_entrypoint
from typer.testing import CliRunner

from fashn_prefect.cli import app
from fashn_prefect.credentials import FashnCredentials
from fashn_prefect.emulator import EmulatorServer
from fashn_prefect.review.chart import UNEXPLAINED_COLOR
from fashn_prefect.run.outcome import summary_of
from fashn_prefect.run.pipeline import run_manifest

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.timeout(300)]

# Slow enough that the dropped rows' predictions (edit, fast/1k: 10-20 emulated s) finish
# well before the calm rows (edit, quality/2k: 30-70 s), so the run's closing balance
# holds their charges; fast enough for a short test.
TIME_SCALE = 0.05
DROPPED = ["aud-0007", "aud-0008", "aud-0009"]


@pytest.fixture
def emu() -> Iterator[EmulatorServer]:
    server = emulator(seed=31, time_scale=TIME_SCALE)
    try:
        yield server
    finally:
        server.stop()


def _edit_rows(emu: EmulatorServer, keys: list[str], **extra: str) -> list[dict[str, Any]]:
    image = host_images(emu, "audit")[1][0]
    return [
        {"row_id": key, "model_name": "edit", "image": image, "prompt": f"look {key}", **extra}
        for key in keys
    ]


async def _run(emu: EmulatorServer, manifest: str, output: Path) -> dict[str, Any]:
    return dict(
        await summary_of(
            run_manifest(
                manifest=manifest,
                output=str(output),
                credentials=FashnCredentials(api_key=emu.api_key, base_url=emu.url),
                time_scale=TIME_SCALE,
                shared_limits=False,
            )
        )
    )


def _audit_cli(output: Path, *flags: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(app, ["audit", str(output), "--json", *flags])
    return result.exit_code, json.loads(result.stdout)


def _has_colour(png: str, colour: str) -> bool:
    """Whether the chart draws anything in ``colour`` (``#rrggbb``)."""
    wanted = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
    with Image.open(png) as image:
        pixels = image.convert("RGB").getdata()
        return sum(1 for p in pixels if p == wanted) > 50


async def test_dropped_posts_are_an_anomaly_naming_the_rows(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    calm = _edit_rows(emu, ["aud-0001", "aud-0002", "aud-0003"], generation_mode="quality")
    for row in calm:
        row["resolution"] = "2k"
    dropped = _edit_rows(emu, DROPPED)
    for row in dropped:
        row["prompt"] += " emulator-fault:drop_connection"
    emu.set_faults(status_5xx=0.1)  # FASHN's status 500s too: retried, never charged twice
    output = tmp_path / "out"
    summary = await _run(emu, write_manifest(tmp_path / "m.csv", calm + dropped), output)
    stats = emu.stats()
    assert stats["faults_injected"]["drop_connection"] == 3
    assert summary["totals"]["ambiguous_rows"] == DROPPED
    lost = sum(p["credits"] for p in stats["predictions"]) - summary["totals"]["credits_charged"]
    assert lost == 3  # FASHN charged the three dropped predictions, nobody knows their ids

    code, report = _audit_cli(output)
    assert code == 1
    assert report["anomaly_counts"] == {"unexplained_balance": 1}
    assert report["unexplained"] == 3
    anomaly = report["anomalies"][0]
    assert anomaly["credits"] == 3
    assert "3 submissions in this run were interrupted" in anomaly["detail"]
    assert all(key in anomaly["detail"] for key in DROPPED)

    credit_audit = load_flow_from_entrypoint(f"{REPO}/flows/credit_audit.py:credit_audit")
    state = await credit_audit(output=str(output), return_state=True)
    assert state.is_failed(), state
    assert "unexplained_balance: 1" in (state.message or "")
    assert "aud-0007" in (state.message or "")
    tolerant = await credit_audit(output=str(output), fail_on_anomalies=False)
    assert tolerant["outcome"]["failed"] is False

    # The Markdown artifact of this audit (other tests on this server audit too) and the
    # chart show the unexplained amount.
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["fashn-credit-audit"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]),
            )
        )
    (artifact,) = artifacts
    markdown = str(artifact.data)
    assert "unexplained by the results: **+3**" in markdown
    assert "| unexplained_balance |  | 3 |" in markdown and "aud-0009" in markdown
    assert _has_colour(tolerant["files"]["chart"].removeprefix("file://"), UNEXPLAINED_COLOR)


async def test_a_refund_shows_with_its_sign(emu: EmulatorServer, tmp_path: Path) -> None:
    output = tmp_path / "out"
    emu.set_faults(refund_credits=2)
    await _run(emu, write_manifest(tmp_path / "m.csv", _edit_rows(emu, ["r-1", "r-2"])), output)

    code, report = _audit_cli(output, "--no-write")
    assert code == 1
    assert report["unexplained"] == -2
    (anomaly,) = report["anomalies"]
    assert (anomaly["kind"], anomaly["credits"]) == ("unexplained_balance", -2)
    assert anomaly["detail"].startswith("-2 credits unexplained") and "refund" in anomaly["detail"]


async def test_movement_between_runs_is_reported_not_an_anomaly(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    output = tmp_path / "out"
    rows = _edit_rows(emu, ["b-1", "b-2", "b-3", "b-4"])
    await _run(emu, write_manifest(tmp_path / "first.csv", rows[:2]), output)
    with api_client(emu) as client:  # someone else uses the account between the runs
        job = {"model_name": "edit", "inputs": {"image": rows[0]["image"], "prompt": "other"}}
        pid = client.post("/v1/run", json=job).json()["id"]
        emu.advance_clock(120)  # past its latency: no waiting
        assert wait_terminal(client, pid).json()["status"] == "completed"
    await _run(emu, write_manifest(tmp_path / "second.csv", rows[2:]), output)

    code, report = _audit_cli(output, "--no-write")
    assert code == 0, report["anomalies"]
    assert report["anomalies"] == [] and report["unexplained"] == 0
    assert report["outside_usage"] == 1
    (gap,) = report["between_runs"]
    assert (gap["movement"], gap["unexplained"]) == (1, 1)
    assert "+1 credits of usage outside these runs" in gap["detail"]
    text = CliRunner().invoke(app, ["audit", str(output), "--no-write"])
    assert text.exit_code == 0 and "+1 used between the runs" in text.stdout

    code, flagged = _audit_cli(output, "--no-write", "--flag-outside-usage")
    assert code == 1
    assert flagged["anomaly_counts"] == {"outside_usage": 1}
    assert flagged["anomalies"][0]["credits"] == 1
