"""A 50-row mixed manifest runs to completion, with images and results in object storage.

Runs against the emulator over loopback HTTP, a real Prefect test server and S3 on moto.
Every figure the results report (rows, predictions, credits) is checked against the
emulator's own record of what was submitted and charged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _helpers import (
    TIME_SCALE,
    emulator,
    limit_rejections,
    mixed_rows,
    put_images,
    results,
    submissions,
    write_manifest,
)
from PIL import Image

from fashn_prefect.credentials import FashnCredentials
from fashn_prefect.emulator import EmulatorServer
from fashn_prefect.flows import run_manifest
from fashn_prefect.run.outcome import summary_of
from fashn_prefect.store.fs import filesystem

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.timeout(180)]
ROWS = 50


@pytest.fixture
def emu() -> Iterator[EmulatorServer]:
    with emulator(seed=3) as server:
        yield server


def _creds(emu: EmulatorServer) -> FashnCredentials:
    return FashnCredentials(api_key=emu.api_key, base_url=emu.url)


def _check_run(
    summary: dict[str, Any],
    stats: dict[str, Any],
    storage_options: dict[str, Any],
    manifest_rows: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    rows = results(summary["results"], storage_options)
    assert len(rows) == ROWS
    assert [r["row_key"] for r in rows] == [m["row_id"] for m in manifest_rows]
    assert {r["status"] for r in rows} == {"completed"}, [r["error_message"] for r in rows]
    # Ground truth: one prediction per row, and the credits the results report are
    # exactly what the emulator charged, prediction by prediction.
    assert submissions(stats) == ROWS
    charged = {p["id"]: p["credits"] for p in stats["predictions"]}
    for row in rows:
        assert len(row["prediction_ids"]) == 1 and row["attempts"] == 1
        assert row["credits_charged"] == charged[row["prediction_ids"][0]]
        assert row["credits_charged"] == row["estimated_credits"]
    assert sum(r["credits_charged"] for r in rows) == stats["credits_charged"]
    assert summary["totals"]["credits_charged"] == stats["credits_charged"]
    assert summary["totals"]["completed"] == ROWS
    assert summary["balance_before"] - summary["balance_after"] == stats["credits_charged"]
    assert stats["peak_in_flight"] <= 6
    assert not limit_rejections(stats)
    # Every output the results name is stored and decodes as an image.
    fs, _ = filesystem(summary["images"], **storage_options)
    outputs = [u for r in rows for u in r["output_uris"]]
    assert len(outputs) == sum(p["output_count"] for p in stats["predictions"])
    assert len(outputs) > ROWS  # the tryon-max rows asked for two images each
    for uri in outputs:
        with fs.open(uri, "rb") as handle, Image.open(handle) as image:
            assert image.width > 0
    return rows


async def _artifacts(flow_run_id: str) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.type: a for a in found}


# A single run's own in-process limiters keep it exactly within the API limits, so these
# runs leave the server-side limits off (Prefect's rate-limit leases are slow on a
# time-compressed clock); test_pipeline_limits.py runs them on.
async def test_csv_manifest_to_s3_then_rerun_submits_nothing(
    emu: EmulatorServer, tmp_path: Path, s3_bucket: str, s3_storage_options: dict[str, Any]
) -> None:
    images = put_images(str(tmp_path / "images"))
    manifest_rows = mixed_rows(ROWS, images)
    manifest = write_manifest(str(tmp_path / "catalog.csv"), manifest_rows)
    output = f"{s3_bucket}/out"
    options = dict(
        manifest=manifest,
        output=output,
        credentials=_creds(emu),
        time_scale=TIME_SCALE,
        storage_options=s3_storage_options,
        shared_limits=False,
    )

    summary = await summary_of(run_manifest(**options))

    assert summary["results"].startswith(f"{s3_bucket}/out/results/")
    assert summary["images"] == f"{s3_bucket}/out/images"
    stats = emu.stats()
    rows = _check_run(summary, stats, s3_storage_options, manifest_rows)
    assert {r["model_name"] for r in rows} == {
        "tryon-v1.6",
        "tryon-max",
        "background-remove",
        "edit",
        "reframe",
        "product-to-model",
    }
    first = rows[0]
    assert first["sku"] == "SKU-000"  # manifest metadata carried through
    assert first["flow_run_id"] == summary["flow_run_id"]
    assert first["latency_s"] > 0 and first["completed_at"] > first["submitted_at"]
    assert '"garment_image"' in first["inputs_json"] and first["output_count"] == 1
    # The review gallery sits next to the results, with a thumbnail per image.
    assert summary["gallery"] == summary["results"].removesuffix(".parquet") + ".html"
    fs, _ = filesystem(output, **s3_storage_options)
    page = fs.cat_file(summary["gallery"]).decode()
    assert page.count('class="card') == ROWS and "SKU-049" in page
    assert fs.find(f"{output}/thumbnails")
    # The run published its progress (finished at 100 %) and its summary to Prefect.
    artifacts = await _artifacts(summary["flow_run_id"])
    assert artifacts["progress"].data == 100.0
    assert artifacts["table"].key == "fashn-run-summary"
    table = {m["metric"]: m["value"] for m in json.loads(artifacts["table"].data)}
    assert table["completed"] == ROWS and table["charged credits"] == stats["credits_charged"]
    assert artifacts["markdown"].key == "fashn-run-report"

    again = await summary_of(run_manifest(**options))

    assert submissions(emu.stats()) == ROWS  # nothing new was submitted
    assert emu.stats()["credits_charged"] == stats["credits_charged"]
    assert again["totals"]["skipped"] == ROWS and again["submitted"] == 0
    rerun = results(again["results"], s3_storage_options)
    assert [r["status"] for r in rerun] == ["skipped"] * ROWS
    assert [r["output_uris"] for r in rerun] == [r["output_uris"] for r in rows]


async def test_parquet_manifest_and_images_on_s3(
    emu: EmulatorServer, s3_bucket: str, s3_storage_options: dict[str, Any]
) -> None:
    images = put_images(f"{s3_bucket}/inputs", s3_storage_options)
    manifest_rows = mixed_rows(ROWS, images)
    manifest = write_manifest(f"{s3_bucket}/catalog.parquet", manifest_rows, s3_storage_options)

    summary = await summary_of(
        run_manifest(
            manifest=manifest,
            output=f"{s3_bucket}/out",
            credentials=_creds(emu),
            time_scale=TIME_SCALE,
            storage_options=s3_storage_options,
            shared_limits=False,
            write_csv=True,
        )
    )

    rows = _check_run(summary, emu.stats(), s3_storage_options, manifest_rows)
    assert "num_images" not in rows[1]  # an input of tryon-max, not metadata
    assert json.loads(rows[1]["inputs_json"])["num_images"] == 2
    fs, _ = filesystem(s3_bucket, **s3_storage_options)
    csv_text = fs.cat_file(summary["results_csv"]).decode()
    assert csv_text.count("\n") == ROWS + 1
