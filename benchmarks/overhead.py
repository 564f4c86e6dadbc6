"""Orchestration overhead: run_manifest against a raw asyncio loop over FashnClient.

The emulator runs at a near-zero latency (time scale 0.001: a 5 s try-on takes 5 ms)
with very high limits, so the API is never the bottleneck and whatever time is left is
the client's own. Both sides do the same work per job: submit, poll until terminal,
download every output and write it to local disk. run_manifest also validates and plans
the manifest, records each row in its ledger, runs each row as Prefect tasks and writes
the results table, gallery and run report.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    EmulatorProcess,
    Job,
    Table,
    emit,
    load_note,
    log,
    make_jobs,
    upload_images,
    write_manifest_csv,
)

SCALE = 0.001
IN_FLIGHT = 50
HIGH = (1_000_000, 60.0)


async def raw_loop(emulator: EmulatorProcess, jobs: list[Job], out: Path) -> int:
    """Submit, poll, download and store every job with at most IN_FLIGHT in flight."""
    from fashn_prefect.api.client import FashnClient

    gate = asyncio.Semaphore(IN_FLIGHT)
    out.mkdir(parents=True, exist_ok=True)

    async def one(client: FashnClient, job: Job) -> bool:
        async with gate:
            prediction_id = await client.run(job.model_name, job.inputs)
            status = await client.wait(prediction_id, poll_interval=0.5 * SCALE, timeout=60)
        for index, ref in enumerate(status.output or []):
            fetched = await client.fetch_output(ref)
            path = out / f"{job.row_id}-{index}.{fetched.extension}"
            await asyncio.to_thread(path.write_bytes, fetched.data)
        return status.is_completed

    async with FashnClient(emulator.api_key, emulator.url, allow_insecure_base_url=True) as client:
        done = await asyncio.gather(*(one(client, job) for job in jobs))
    return done.count(False)


def flow_run(emulator: EmulatorProcess, jobs: list[Job], tmp: Path) -> int:
    """run_manifest over the same jobs with the same concurrency and very high rate limits."""
    from fashn_prefect.run.pipeline import run_manifest

    manifest = tmp / "manifest.csv"
    write_manifest_csv(manifest, jobs)
    os.environ["FASHN_API_KEY"] = emulator.api_key
    os.environ["FASHN_BASE_URL"] = emulator.url
    report = asyncio.run(
        run_manifest(
            str(manifest),
            str(tmp / "out"),
            time_scale=SCALE,
            max_in_flight=IN_FLIGHT,
            run_limit=f"{HIGH[0]}/{HIGH[1]:g}",
            status_limit=f"{HIGH[0]}/{HIGH[1]:g}",
            shared_limits=False,
        )
    )
    totals = report["totals"]
    return int(totals["rows"] - totals["completed"])


def measure(kind: str, n: int) -> tuple[float, float, int]:
    """(wall seconds, client CPU seconds, failed jobs) for one side."""
    config = {
        "time_scale": SCALE,
        "seed": 3,
        "max_in_flight": 10_000,
        "run_limit": HIGH,
        "status_limit": HIGH,
        "credits_limit": HIGH,
    }
    with EmulatorProcess(**config) as emulator, tempfile.TemporaryDirectory() as tmp:
        jobs = make_jobs(n, upload_images(emulator))
        cpu0, t0 = time.process_time(), time.monotonic()
        if kind == "raw":
            failed = asyncio.run(raw_loop(emulator, jobs, Path(tmp) / "out"))
        else:
            failed = flow_run(emulator, jobs, Path(tmp))
        wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
    log(f"overhead {kind}: {n} jobs in {wall:.2f} s, {failed} failed")
    return wall, cpu, failed


def main(argv: list[str] | None = None) -> None:
    """Measure both sides and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    load = os.getloadavg()
    n = 30 if args.quick else args.rows
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    home = tempfile.TemporaryDirectory(prefix="prefect-home-bench-")
    os.environ["PREFECT_HOME"] = home.name
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness():
        measure("flow", min(n, 20))  # warm-up: imports, first flow and task runs
        flow = measure("flow", n)
    home.cleanup()
    raw = measure("raw", n)
    t = Table(
        f"Orchestration overhead ({n} jobs, emulator at time scale {SCALE:g}, "
        f"{IN_FLIGHT} in flight, rate limits {HIGH[0]:,} per window)",
        ["client", "wall s", "jobs / s", "wall ms / job", "client CPU ms / job", "failed"],
    )
    for name, (wall, cpu, failed) in (
        ("raw asyncio loop over FashnClient", raw),
        ("run_manifest (Prefect flow)", flow),
    ):
        t.add(name, wall, n / wall, 1000 * wall / n, 1000 * cpu / n, failed)
    t.add(
        "overhead of the flow",
        flow[0] - raw[0],
        "",
        1000 * (flow[0] - raw[0]) / n,
        1000 * (flow[1] - raw[1]) / n,
        "",
    )
    t.notes += [
        "Both sides submit, poll until terminal, download every output and write it to disk, "
        f"with at most {IN_FLIGHT} predictions in flight. The flow additionally validates "
        "and plans the manifest, keeps a ledger record per row, runs each row as Prefect "
        "task runs (predict, collect) and writes the results table, gallery and run report.",
        "The flow ran after a 20-row warm-up run in the same Prefect test server (first-run "
        "imports excluded); CPU = time.process_time of the benchmark process (the Prefect "
        "server and the emulator run in their own processes).",
    ]
    t.notes.append(load_note(load))
    emit("overhead", [t])


if __name__ == "__main__":
    main()
