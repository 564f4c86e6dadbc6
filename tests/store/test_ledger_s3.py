"""A resume on S3 (a moto server on loopback) reads the compacted ledger in few requests.

A run settles most of its rows into ledger snapshots and dies with some rows in flight;
the re-run's plan is counted from the moto server's own request log.
"""

from __future__ import annotations

from typing import Any

import fsspec
from _servers import S3RequestLog

from fashn_prefect.run.plan import make_plan
from fashn_prefect.run.runtime import SNAPSHOT_EVERY, RunConfig, Runtime
from fashn_prefect.run.validate import RowSpec
from fashn_prefect.scheduler.account import AccountScheduler
from fashn_prefect.scheduler.rates import ApiLimits
from fashn_prefect.store.records import Attempt, RowRecord

ROWS, SETTLED, RUNNING = 1_000, 650, 24


async def test_a_resume_on_s3_reads_snapshots_and_only_in_flight_records(
    s3_bucket: str, s3_storage_options: dict[str, Any]
) -> None:
    output = f"{s3_bucket}/out"
    config = RunConfig(output=output, storage_options=s3_storage_options)
    rt = Runtime(config, None, AccountScheduler(ApiLimits()), "run-1")  # type: ignore[arg-type]
    for i in range(SETTLED + RUNNING):
        record = RowRecord(f"sku-{i:04d}", "h1", "edit", "submitted")
        record.attempts.append(Attempt(1, f"p-{i}", "submitted", "2026-01-01T00:00:00"))
        await rt.save(record)
        if i < SETTLED:
            record.attempts[0].status, record.status = "completed", "completed"
            record.outputs = [f"{output}/images/sku-{i:04d}.png"]
            await rt.save(record)
            await rt.settle(record)
    # The process dies here: no final snapshot.

    specs = [RowSpec(i + 1, f"sku-{i:04d}", "edit", {}, {}, "h1", 1) for i in range(ROWS)]
    with S3RequestLog() as log:
        plan = make_plan(specs, output, storage_options=s3_storage_options)
    counts = log.counts()

    actions = [job.action for job in plan.rows]
    assert actions == ["recover"] * SETTLED + ["resume"] * RUNNING + ["submit"] * (
        ROWS - SETTLED - RUNNING
    )
    snapshots = SETTLED // SNAPSHOT_EVERY
    loose = SETTLED % SNAPSHOT_EVERY + RUNNING
    fs = fsspec.filesystem("s3", **s3_storage_options)
    stored = fs.find(f"{output.removeprefix('s3://')}/ledger")
    assert len(stored) == snapshots + loose
    # Two listings of the (absent) results folder, one of the snapshots and one of the
    # loose records; one read per snapshot and per loose record; nothing written.
    assert counts["list"] == 4 and counts["head"] <= 1, counts
    assert counts["read"] == snapshots + loose, counts
    assert counts["write"] == counts["delete"] == 0, log.lines
