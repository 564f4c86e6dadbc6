"""Storage credentials from a StorageOptions block, against S3 on the moto server.

The block holds the only copy of the S3 endpoint and keys: without it the flows could
not reach the bucket at all. Only the block's name is ever a flow-run parameter.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import fsspec
import pyarrow.parquet as pq
import pytest
from _helpers import TIME_SCALE, catalog_rows
from _servers import REPO
from prefect.client.orchestration import get_client
from prefect.flows import load_flow_from_entrypoint

from fashn_prefect.credentials import FashnCredentials
from fashn_prefect.emulator import EmulatorConfig, EmulatorServer
from fashn_prefect.store.blocks import StorageOptions, resolve_storage_options

pytestmark = pytest.mark.usefixtures("prefect_harness")

SECRET = "fashn-block-secret-value-0123456789"


@pytest.fixture
def emu() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(time_scale=TIME_SCALE, seed=4)) as server:
        yield server


def test_plain_options_merge_over_the_block() -> None:
    block = StorageOptions(options={"key": "k", "secret": SECRET, "anon": False})
    assert resolve_storage_options(block, {"anon": True}) == {
        "key": "k",
        "secret": SECRET,
        "anon": True,
    }
    assert resolve_storage_options(None, None) == {}
    assert SECRET not in repr(block) and SECRET not in block.model_dump_json()


async def test_a_backfill_and_an_audit_reach_s3_only_through_the_block(
    emu: EmulatorServer, s3_bucket: str, s3_storage_options: dict[str, Any]
) -> None:
    options = {**s3_storage_options, "key": "fashn-block-key", "secret": SECRET}
    await StorageOptions(options=options).asave("s3-out", overwrite=True)
    await FashnCredentials(api_key=emu.api_key, base_url=emu.url).asave("fashn-s3", overwrite=True)
    fs = fsspec.filesystem("s3", **options)
    rows = catalog_rows(4, emu, prefix="blk")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    fs.pipe_file(f"{s3_bucket}/catalog.csv", buffer.getvalue().encode())

    backfill = load_flow_from_entrypoint(f"{REPO}/flows/backfill.py:backfill")
    state = await backfill(
        manifest=f"{s3_bucket}/catalog.csv",
        output=f"{s3_bucket}/out",
        credentials="fashn-s3",
        storage_block="s3-out",
        chunk_size=2,
        time_scale=TIME_SCALE,
        shared_limits=False,
        return_state=True,
    )
    assert state.is_completed(), state
    tables = fs.glob(f"{s3_bucket}/out/results/*.parquet")
    statuses = [r["status"] for t in tables for r in pq.read_table(fs.open(t)).to_pylist()]
    assert statuses == ["completed"] * 4 and len(tables) == 2  # two chunks
    assert len(fs.find(f"{s3_bucket}/out/images")) >= 4

    audit = load_flow_from_entrypoint(f"{REPO}/flows/credit_audit.py:credit_audit")
    report = await audit(output=f"{s3_bucket}/out", storage_block="s3-out")
    assert report["rows"] == 4 and report["anomalies"] == []

    # No flow run (the backfill, its chunk subflows, the audit) has the secret in its
    # parameters; the chunks got the block's name (in their settings).
    async with get_client() as client:
        every_run = await client.read_flow_runs()
    runs = [r for r in every_run if s3_bucket in json.dumps(r.parameters, default=str)]
    assert len(runs) == 4  # the backfill, its two chunks and the audit
    assert all(SECRET not in json.dumps(r.parameters, default=str) for r in runs)
    chunks = [r for r in runs if r.name.startswith("backfill-chunk-")]
    names = {(r.parameters.get("settings") or {}).get("storage_block") for r in chunks}
    assert len(chunks) == 2 and names == {"s3-out"}


async def test_a_task_in_a_users_flow_reaches_s3_only_through_the_block(
    emu: EmulatorServer, s3_bucket: str, s3_storage_options: dict[str, Any]
) -> None:
    """``run_prediction`` honours ``storage_block`` as the flows do: its inputs are read and
    its outputs stored with the block's keys, which never appear in a parameter."""
    from prefect import flow

    from fashn_prefect.settings import FashnSettings
    from fashn_prefect.tasks import PredictionResult, run_prediction

    options = {**s3_storage_options, "key": "fashn-block-key", "secret": SECRET}
    await StorageOptions(options=options).asave("s3-task", overwrite=True)
    fs = fsspec.filesystem("s3", **options)
    row = catalog_rows(1, emu, prefix="tsk")[0]
    inputs = {k: row[k] for k in ("model_image", "garment_image", "category")}
    credentials = FashnCredentials(api_key=emu.api_key, base_url=emu.url)
    settings = FashnSettings(
        time_scale=TIME_SCALE, shared_limits=False, check_balance=False, storage_block="s3-task"
    )

    @flow
    async def users_flow() -> PredictionResult:
        return await run_prediction(
            "tryon-v1.6", inputs, credentials, f"{s3_bucket}/tasks", settings
        )

    result = await users_flow()
    assert result.status == "completed", result
    assert len(result.output_uris) == 1 and result.output_uris[0].startswith("s3://")
    assert fs.exists(result.output_uris[0])
