"""The credit audit: totals equal the API's charges; injected anomalies are flagged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from _helpers import TIME_SCALE, all_results, catalog_rows, write_manifest
from _servers import REPO
from PIL import Image
from prefect.flows import load_flow_from_entrypoint
from typer.testing import CliRunner

from fashn_prefect.cli import app
from fashn_prefect.credentials import FashnCredentials
from fashn_prefect.emulator import EmulatorConfig, EmulatorServer
from fashn_prefect.flows import run_manifest
from fashn_prefect.run.outcome import RunFailed, summary_of
from fashn_prefect.store.ledger import LEDGER_DIR as LEDGER

pytestmark = pytest.mark.usefixtures("prefect_harness")


async def _run(manifest: str, output: Path, emu: EmulatorServer) -> dict[str, Any]:
    creds = FashnCredentials(api_key=emu.api_key, base_url=emu.url)
    run = run_manifest(
        manifest=manifest,
        output=str(output),
        credentials=creds,
        time_scale=TIME_SCALE,
        shared_limits=False,
        retries=0,
    )
    return dict(await summary_of(run))


@pytest.fixture(scope="module")
async def audited(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An output root with three real runs and two injected anomalies; emulator stats."""
    tmp = tmp_path_factory.mktemp("audit")
    output = tmp / "out"
    with EmulatorServer(EmulatorConfig(time_scale=TIME_SCALE, seed=8)) as emu:
        rows = catalog_rows(12, emu)
        for row in rows:
            row["image"] = ""
        # A second model, so spend splits by model.
        rows[5].update(
            model_name="background-remove",
            image=rows[5]["garment_image"],
            model_image="",
            garment_image="",
            category="",
            mode="",
        )
        await _run(write_manifest(tmp / "catalog.csv", rows), output, emu)

        # A duplicated charge: the same row submitted again after its results table and
        # ledger record went missing (as after a restore from an old backup).
        hidden = tmp / "hidden-results"
        shutil.move(output / "results", hidden)
        shutil.rmtree(output / LEDGER)  # its record is in the run's ledger snapshot
        await _run(write_manifest(tmp / "one.csv", rows[2:3]), output, emu)
        for table in hidden.iterdir():
            shutil.move(table, output / "results" / table.name)

        # A failed prediction with a charge: the API completed (and charged) it, but its
        # output was already gone when the run fetched it.
        emu.set_faults(cdn_gone=1.0)
        extra = catalog_rows(13, emu, seed_base=5000)[12:]
        extra[0]["image"] = ""
        await _run(write_manifest(tmp / "late.csv", extra), output, emu)
        emu.set_faults(cdn_gone=0.0)
        stats = emu.stats()

    # A stored output deleted after the run.
    victim = next(r for r in all_results(output) if r["row_key"] == "SKU-00007")
    Path(victim["output_uris"][0].removeprefix("file://")).unlink()
    return {"output": output, "stats": stats}


async def test_audit_flow_totals_anomalies_and_chart(audited: dict[str, Any]) -> None:
    output, stats = audited["output"], audited["stats"]
    credit_audit = load_flow_from_entrypoint(f"{REPO}/flows/credit_audit.py:credit_audit")
    state = await credit_audit(output=str(output), budget=10, return_state=True)
    # Anomalies fail the flow run; its message names them, and the report is its result.
    assert state.is_failed(), state
    assert "duplicate_charge: 1" in (state.message or "")
    with pytest.raises(RunFailed) as failed:
        await state.aresult()
    report = failed.value.summary
    tolerant = await credit_audit(output=str(output), budget=10, fail_on_anomalies=False)
    assert tolerant["outcome"]["failed"] is False and len(tolerant["anomalies"]) == 4

    # Totals equal what the API charged, and the balance movement is fully explained.
    assert report["charged"] == stats["credits_charged"] > 0
    charged_by_model: dict[str, int] = {}
    for prediction in stats["predictions"]:
        name = prediction["model_name"]
        charged_by_model[name] = charged_by_model.get(name, 0) + (prediction["credits"] or 0)
    by_model = {i["value"]: i["charged"] for i in report["breakdown"]["model"]}
    assert by_model == charged_by_model and len(by_model) == 2
    assert report["balance_movement"] == stats["credits_charged"]
    assert report["unexplained"] == 0 and len(report["runs"]) == 3
    assert {i["value"] for i in report["breakdown"]["brand"]} == {"acme", "northwind"}
    assert report["estimated"] == report["charged"]
    assert sum(i["charged"] for i in report["breakdown"]["day"]) == stats["credits_charged"]

    found = {(a["kind"], a["row_key"]) for a in report["anomalies"]}
    assert found == {
        ("duplicate_charge", "SKU-00002"),
        ("charged_without_output", "SKU-00007"),
        ("failed_with_charge", "SKU-00012"),
        ("over_budget", None),
    }

    files = report["files"]
    with Image.open(files["chart"].removeprefix("file://")) as image:
        image.verify()
        assert image.format == "PNG" and image.size[0] >= 400
    anomalies = pq.read_table(files["anomalies"].removeprefix("file://")).to_pylist()
    assert len(anomalies) == 4


def test_audit_cli_json_since_and_exit_code(audited: dict[str, Any]) -> None:
    output = str(audited["output"])
    result = CliRunner().invoke(app, ["audit", output, "--json", "--no-write"])
    assert result.exit_code == 1, result.output  # anomalies were found
    data = json.loads(result.stdout)
    assert data["charged"] == audited["stats"]["credits_charged"]

    future = CliRunner().invoke(app, ["audit", output, "--since", "2999-01-01", "--json"])
    assert future.exit_code == 0, future.output
    assert json.loads(future.stdout)["rows"] == 0

    bad = CliRunner().invoke(app, ["audit", output, "--since", "last tuesday"])
    assert bad.exit_code == 2
    assert "Traceback" not in bad.output and "hint:" in bad.output
