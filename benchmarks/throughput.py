"""Throughput against the best possible makespan, for four ways of running a batch.

Every approach runs the same job set against its own fresh emulator process (default
FASHN limits, time-compressed) in this session:

(a) the official SDK's ``subscribe`` in a sequential loop, as the FASHN docs show;
(b) the SDK's ``subscribe`` in a pool of 6 threads;
(c) a straightforward Prefect flow: a task with retries wrapping ``subscribe``, mapped
    over the rows under a Prefect tag concurrency limit of 6;
(d) fashn-prefect's ``run_manifest`` flow (which also downloads every output and writes
    the ledger, results table and gallery, which (a)-(c) do not), once as a single run
    with in-process limits and once with the limits held on the Prefect server.

The bound comes from the emulator's actual in-flight durations (``created_at`` to
``completed_at``) and the limits; see :func:`common.makespan_bound`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    DEFAULT_IN_FLIGHT,
    STATUS_LIMIT,
    EmulatorProcess,
    Job,
    Table,
    children_cpu,
    emit,
    expected_mean_duration,
    load_note,
    log,
    make_jobs,
    makespan_bound,
    upload_images,
    write_manifest_csv,
)

SDK_TAG = "fashn-sdk-bench"


@dataclass
class Outcome:
    """What one approach did, measured from outside."""

    name: str
    jobs: int
    wall: float
    client_cpu: float
    server_cpu: float
    stats: dict[str, Any]
    failed: int
    lead: float
    tail: float
    extrapolate: float = 1.0


def sdk_client(emulator: EmulatorProcess) -> Any:
    from fashn import Fashn

    return Fashn(api_key=emulator.api_key, base_url=emulator.url)


def subscribe(sdk: Any, job: Job, scale: float) -> Any:
    """``subscribe`` with the SDK's defaults (1000 ms polls, 300 000 ms timeout) scaled."""
    return sdk.predictions.subscribe(
        model_name=job.model_name,
        inputs=job.inputs,
        poll_interval=max(1, round(1000 * scale)),  # milliseconds
        timeout=max(1, round(300_000 * scale)),  # milliseconds
    )


def approach_sequential(emulator: EmulatorProcess, jobs: list[Job], scale: float) -> int:
    sdk = sdk_client(emulator)
    failed = 0
    for job in jobs:
        try:
            failed += subscribe(sdk, job, scale).status != "completed"
        except Exception:
            failed += 1
    sdk.close()
    return failed


def approach_threads(emulator: EmulatorProcess, jobs: list[Job], scale: float) -> int:
    sdk = sdk_client(emulator)

    def one(job: Job) -> bool:
        try:
            return bool(subscribe(sdk, job, scale).status == "completed")
        except Exception:
            return False

    with ThreadPoolExecutor(DEFAULT_IN_FLIGHT) as pool:
        done = list(pool.map(one, jobs))
    sdk.close()
    return done.count(False)


def approach_prefect_sdk(emulator: EmulatorProcess, jobs: list[Job], scale: float) -> int:
    """The flow a Prefect user would write from the docs: .map under a tag limit."""
    from prefect import flow, task
    from prefect.client.orchestration import get_client

    sdk = sdk_client(emulator)
    with get_client(sync_client=True) as client:
        client.create_concurrency_limit(tag=SDK_TAG, concurrency_limit=DEFAULT_IN_FLIGHT)

    @task(retries=3, retry_delay_seconds=10 * scale, tags=[SDK_TAG])
    def predict(model_name: str, inputs: dict[str, Any]) -> str:
        result = subscribe(sdk, Job("", model_name, inputs), scale)
        if result.status != "completed":
            raise RuntimeError(f"prediction {result.id} ended as {result.status}")
        return str(result.id)

    @flow(name="sdk-batch")
    def batch(models: list[str], inputs: list[dict[str, Any]]) -> int:
        futures = predict.map(models, inputs)
        futures.wait()
        return sum(1 for f in futures if not f.state.is_completed())

    failed = batch([j.model_name for j in jobs], [j.inputs for j in jobs])
    sdk.close()
    return failed


def approach_run_manifest(
    emulator: EmulatorProcess, jobs: list[Job], scale: float, **options: Any
) -> int:
    import asyncio

    from fashn_prefect.run.pipeline import run_manifest

    with tempfile.TemporaryDirectory(prefix="fashn-bench-") as tmp:
        manifest = Path(tmp) / "manifest.csv"
        write_manifest_csv(manifest, jobs)
        os.environ["FASHN_API_KEY"] = emulator.api_key
        os.environ["FASHN_BASE_URL"] = emulator.url
        report = asyncio.run(
            run_manifest(str(manifest), str(Path(tmp) / "out"), time_scale=scale, **options)
        )
    totals = report["totals"]
    return int(totals["rows"] - totals["completed"])


def warm_up() -> float:
    """One tiny flow with a task run: the process's one-time Prefect start-up cost."""
    from prefect import flow, task

    @task
    async def noop() -> int:
        return 1

    @flow(name="bench-warm-up")
    async def warm() -> int:
        return await noop()

    t0 = time.monotonic()
    asyncio.run(warm())
    took = time.monotonic() - t0
    log(f"Prefect warm-up (first flow and task run in this process): {took:.1f} s")
    return took


def measure(
    name: str,
    run: Callable[[EmulatorProcess, list[Job], float], int],
    n: int,
    n_all: int,
    scale: float,
    seed: int,
) -> Outcome:
    """Run one approach on ``n`` jobs against a fresh emulator and measure it from outside."""
    log(f"{name}: {n} jobs")
    with EmulatorProcess(time_scale=scale, seed=seed) as emulator:
        jobs = make_jobs(n, upload_images(emulator))
        emulator_pid = emulator.proc.pid if emulator.proc else -1
        server0 = children_cpu(exclude=[emulator_pid])
        cpu0, t0 = time.process_time(), time.monotonic()
        failed = run(emulator, jobs, scale)
        t1 = time.monotonic()
        cpu = time.process_time() - cpu0
        server = children_cpu(exclude=[emulator_pid]) - server0
        stats = emulator.stats()
        preds = [p for p in stats["predictions"] if p["completed_at"] is not None]
        lead = min((p["created_at"] for p in preds), default=0.0) - emulator.emulated(t0)
        tail = emulator.emulated(t1) - max((p["completed_at"] for p in preds), default=0.0)
    log(f"{name}: {t1 - t0:.1f} s wall, {failed} failed")
    return Outcome(name, n, t1 - t0, cpu, server, stats, failed, lead, tail, n_all / n)


def table(outcomes: list[Outcome], scale: float, n: int) -> Table:
    """The Markdown table of :func:`main`."""
    t = Table(
        f"Throughput against the bound ({n} mixed jobs, time scale {scale:g})",
        [
            "approach",
            "jobs",
            "bound (emu s)",
            "makespan (emu s)",
            "efficiency",
            "before 1st submit / after last completion (emu s)",
            "429s (rate / concurrency)",
            "status calls / job",
            "client CPU ms / job",
            "Prefect server CPU ms / job",
            "peak in-flight",
            "failed",
        ],
    )
    for o in outcomes:
        bound = makespan_bound(o.stats["predictions"])
        makespan = o.wall / scale
        requests = next(iter(o.stats["requests"].values()), {"status": 0})
        rejected = o.stats["rejected"]
        name = o.name
        if o.extrapolate != 1.0:
            name += (
                f" — SUBSET of {o.jobs} jobs; at {n} jobs ≈{makespan * o.extrapolate:,.0f} emu s "
                f"(x{o.extrapolate:g}, extrapolated, not measured)"
            )
        t.add(
            name,
            o.jobs,
            f"{bound.value:,.0f} ({bound.binding})",
            makespan,
            bound.value / makespan if makespan else float("nan"),
            f"{o.lead:.1f} / {o.tail:.1f}",
            f"{rejected.get('RateLimitExceeded', 0)} / "
            f"{rejected.get('ConcurrencyLimitExceeded', 0)}",
            requests.get("status", 0) / o.jobs,
            1000 * o.client_cpu / o.jobs,
            1000 * o.server_cpu / o.jobs if o.server_cpu else "—",
            o.stats["peak_in_flight"],
            o.failed,
        )
    mean = expected_mean_duration()
    t.notes += [
        f"Emulated seconds (emu s); 1 emu s = {scale:g} real s, so the mean job lasts "
        f"{mean:.1f} emu s = {mean * scale:.2f} real s. Every approach gets a fresh emulator "
        "process (same seed, same job list) with the default FASHN limits: 6 in flight, "
        "run 50/60 s, status 50/10 s; flows use a limits' time scale equal to the emulator's.",
        "bound = max(sum of in-flight durations / 6, submission-rate bound, longest job), "
        "from the emulator's created_at/completed_at of this approach's own predictions; "
        "efficiency = bound / makespan; makespan = wall time of the approach's call (for "
        "flows: the flow call, including validation, planning, output downloads, results "
        "table, gallery and run report; the Prefect test server is started beforehand).",
        "429s are counted by the emulator on every endpoint. The status budget is "
        f"{STATUS_LIMIT[0]} calls per {STATUS_LIMIT[1]:g} s; an approach that exceeds it "
        "gets 429 RateLimitExceeded.",
        "client CPU = time.process_time of the benchmark process (all threads); Prefect "
        "server CPU = the test harness's server subprocess; the emulator runs in its own "
        "process and is counted in neither.",
        "(d) also downloads every output into storage and writes the ledger, results table, "
        "gallery and run report; (a)-(c) only obtain each prediction's final status.",
    ]
    return t


def main(argv: list[str] | None = None) -> None:
    """Run the approaches and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small N for a smoke check")
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--seq-rows", type=int, default=40, help="jobs for (a); 0 = all")
    parser.add_argument("--time-scale", type=float, default=0.0)
    parser.add_argument("--approaches", default="d,d-shared,c,b,a")
    args = parser.parse_args(argv)
    load = os.getloadavg()
    n = 30 if args.quick else args.rows
    seq_n = min(n, 12 if args.quick else (args.seq_rows or n))
    # The mean job must last at least 1 s of real time.
    scale = args.time_scale or round(1.02 / expected_mean_duration(), 4)

    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    home = tempfile.TemporaryDirectory(prefix="prefect-home-bench-")
    os.environ["PREFECT_HOME"] = home.name
    from prefect.testing.utilities import prefect_test_harness

    approaches: dict[str, tuple[str, Callable[[EmulatorProcess, list[Job], float], int], int]] = {
        "d": (
            "(d) fashn-prefect run_manifest (one run: in-process limits)",
            lambda e, j, s: approach_run_manifest(e, j, s, shared_limits=False),
            n,
        ),
        "d-shared": (
            "(d) run_manifest, shared_limits=True (limits held on the Prefect server)",
            lambda e, j, s: approach_run_manifest(e, j, s, shared_limits=True),
            n,
        ),
        "c": ("(c) Prefect .map + tag limit 6, SDK subscribe", approach_prefect_sdk, n),
        "b": ("(b) SDK subscribe, 6 threads", approach_threads, n),
        "a": ("(a) SDK subscribe, sequential", approach_sequential, seq_n),
    }
    outcomes: list[Outcome] = []
    with prefect_test_harness():
        warmed = warm_up()
        for key in (a.strip() for a in args.approaches.split(",") if a.strip()):
            name, run, jobs = approaches[key]
            outcomes.append(measure(name, run, jobs, n, scale, seed=1))
    home.cleanup()
    result = table(outcomes, scale, n)
    result.notes.append(
        f"Before the first approach, one tiny flow with one task run warmed up Prefect in "
        f"this process ({warmed:.1f} s, in no approach's makespan)."
    )
    result.notes.append(load_note(load))
    emit("throughput", [result])


if __name__ == "__main__":
    main()
