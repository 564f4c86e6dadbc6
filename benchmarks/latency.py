"""Learned polling on both paths into the one row engine: the manifest flow, and
``run_prediction`` mapped in a user's own flow.

Each scenario runs the same jobs twice against a fresh emulator process (same seed,
default FASHN limits, time-compressed) in this session: once through ``run_manifest`` and
once as ``run_prediction.map(...)`` in a user's flow (``--paths flow,tasks``). The
emulator is told the true latency with its ``latency_multiplier`` switches:

- catalogue: processing takes the documented time;
- half / double: 0.5x / 2x the documented time;
- drift: documented time for the first half of the predictions, then 2x (a queue that
  filled up during the run);
- mixed: the mixed manifest of ``benchmarks/throughput.py`` at the documented time;
- latency drift: 0.3x, quality try-ons documented at 12-17 s that really take about 5 s.

The documented-table poller that earlier code used (``FASHN_POLLING=documented``) is no
longer in the package; compare against it by running this script at an earlier revision.

The bound comes from the emulator's actual in-flight durations and both the in-flight
limit and the run-rate window (:func:`common.makespan_bound`). The learned latency starts
from a clean slate for every run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    EmulatorProcess,
    Job,
    Table,
    baseline,
    load_note,
    log,
    make_jobs,
    makespan_bound,
    upload_images,
    write_manifest_csv,
    zero_delay_replay,
)
from throughput import warm_up


@dataclass(frozen=True)
class Scenario:
    name: str
    multiplier: float = 1.0
    after: tuple[int, float] | None = None
    mixed: bool = False


SCENARIOS = [
    Scenario("catalogue (1x)"),
    Scenario("half (0.5x)", 0.5),
    Scenario("double (2x)", 2.0),
    Scenario("drift (1x, then 2x from half-way)", 1.0),  # `after` set from the row count
    Scenario("mixed manifest (1x)", mixed=True),
    Scenario("latency drift (0.3x)", 0.3),
]
PATHS = {"flow": "run_manifest", "tasks": "run_prediction.map in a user's flow"}


def tryon_jobs(n: int, urls: dict[str, list[str]], mode: str) -> list[Job]:
    """``n`` try-on jobs in one mode."""
    return [
        Job(
            f"job-{i:05d}",
            "tryon-v1.6",
            {
                "model_image": urls["person"][i % len(urls["person"])],
                "garment_image": urls["garment"][i % len(urls["garment"])],
                "mode": mode,
                "seed": i,
            },
        )
        for i in range(n)
    ]


@dataclass
class Outcome:
    scenario: str
    path: str
    wall: float
    stats: dict[str, Any]
    failed: int
    delays: list[float]
    """Per row: emulated seconds from the emulator's completion to the run seeing it."""
    span: float
    """Emulated seconds from the first submission to the last completion the run saw."""


def run_manifest_rows(
    emulator: EmulatorProcess, jobs: list[Job], scale: float
) -> tuple[int, list[dict[str, Any]]]:
    """Run the manifest flow on ``jobs``; (rows not completed, results table rows)."""
    import pyarrow.parquet as pq

    from fashn_prefect.run.pipeline import run_manifest
    from fashn_prefect.store.fs import filesystem

    with tempfile.TemporaryDirectory(prefix="fashn-bench-") as tmp:
        manifest = Path(tmp) / "manifest.csv"
        write_manifest_csv(manifest, jobs)
        os.environ["FASHN_API_KEY"] = emulator.api_key
        os.environ["FASHN_BASE_URL"] = emulator.url
        report = asyncio.run(
            run_manifest(
                str(manifest), str(Path(tmp) / "out"), time_scale=scale, shared_limits=False
            )
        )
        fs, path = filesystem(report["results"])
        rows: list[dict[str, Any]] = pq.read_table(io.BytesIO(fs.cat_file(path))).to_pylist()
    totals = report["totals"]
    return int(totals["rows"] - totals["completed"]), rows


def run_task_map(
    emulator: EmulatorProcess, jobs: list[Job], scale: float
) -> tuple[int, list[dict[str, Any]]]:
    """Map ``run_prediction`` over ``jobs`` in a user's flow, storing the outputs; (jobs not
    completed with every output stored, [])."""
    from prefect import flow, unmapped

    from fashn_prefect.credentials import FashnCredentials
    from fashn_prefect.settings import FashnSettings
    from fashn_prefect.tasks import run_prediction

    credentials = FashnCredentials(api_key=emulator.api_key, base_url=emulator.url)
    settings = FashnSettings(time_scale=scale, shared_limits=False, check_balance=False)
    by_model: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        by_model.setdefault(job.model_name, []).append(job.inputs)

    @flow
    async def users_flow(output: str) -> int:
        futures = [
            future
            for model, inputs in by_model.items()
            for future in run_prediction.map(
                model,
                inputs,
                credentials=unmapped(credentials),
                output=output,
                settings=unmapped(settings),
            )
        ]
        results = [future.result() for future in futures]
        return sum(r.status != "completed" or not r.output_uris for r in results)

    with tempfile.TemporaryDirectory(prefix="fashn-bench-") as tmp:
        failed = asyncio.run(users_flow(str(Path(tmp) / "out")))
    return failed, []


def seen_delays(predictions: list[dict[str, Any]]) -> tuple[list[float], float]:
    """How long each prediction sat completed before a status call saw it (emulated s,
    from the emulator's own ``completed_at`` and ``seen_terminal_at``), and the span from
    the first submission to the last completion seen."""
    seen = [p for p in predictions if p.get("seen_terminal_at") and p["completed_at"]]
    delays = [p["seen_terminal_at"] - p["completed_at"] for p in seen]
    first = min((p["created_at"] for p in predictions), default=0.0)
    last = max((p["seen_terminal_at"] for p in seen), default=first)
    return delays, last - first


def run_once(scenario: Scenario, path: str, n: int, mode: str, scale: float) -> Outcome:
    """One run against a fresh emulator through ``path`` (``flow`` or ``tasks``)."""
    from fashn_prefect.scheduler.polls import forget_learned_latency

    after = (n // 2, 2.0) if scenario.name.startswith("drift") else scenario.after
    config: dict[str, Any] = {
        "time_scale": scale,
        "seed": 3,
        "latency_multiplier": scenario.multiplier,
    }
    if after is not None:
        config["latency_multiplier_after"] = list(after)
    forget_learned_latency()
    log(f"{scenario.name} / {path}: {n} jobs")
    with EmulatorProcess(**config) as emulator:
        urls = upload_images(emulator)
        jobs = make_jobs(n, urls) if scenario.mixed else tryon_jobs(n, urls, mode)
        t0 = time.monotonic()
        runner = run_manifest_rows if path == "flow" else run_task_map
        failed, _ = runner(emulator, jobs, scale)
        wall = time.monotonic() - t0
        stats = emulator.stats()
        delays, span = seen_delays(stats["predictions"])
    log(f"{scenario.name} / {path}: {wall:.1f} s wall, {failed} failed")
    return Outcome(scenario.name, PATHS[path], wall, stats, failed, delays, span)


def run_at(
    code: Path, revision: str, scenario: Scenario, path: str, args: argparse.Namespace
) -> Outcome:
    """One case with the package of git revision ``revision`` (checked out at ``code``), in
    a child process; its emulator is this checkout's."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", f"{scenario.name}|{path}"]
    command += ["--rows", str(args.rows), "--mode", args.mode]
    command += ["--time-scale", str(args.time_scale)]
    env = {**os.environ, "PYTHONPATH": str(code)}
    env.pop("PREFECT_API_URL", None)  # the child starts its own temporary server
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    outcome = Outcome(**json.loads(done.stdout.strip().splitlines()[-1]))
    outcome.path = f"{outcome.path} @ {revision}"
    return outcome


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[int(0.9 * (len(ordered) - 1))] if ordered else float("nan")


def table(outcomes: list[Outcome], scale: float, n: int, mode: str) -> Table:
    """The latency-drift table."""
    t = Table(
        f"Learned polling, flow path and tasks path ({n} jobs per run, time scale {scale:g})",
        [
            "true latency",
            "path",
            "mean job latency (emu s)",
            "bound (emu s)",
            "makespan (emu s)",
            "efficiency",
            "in-flight span (emu s) / its efficiency",
            "zero-delay replay (emu s) / span efficiency against it",
            "whole-run efficiency against the replay",
            "mean / p90 detection delay (emu s)",
            "429s",
            "status calls / job",
            "failed rows",
        ],
    )
    for o in outcomes:
        bound = makespan_bound(o.stats["predictions"])
        replay = zero_delay_replay(o.stats["predictions"])
        makespan = o.wall / scale
        requests = next(iter(o.stats["requests"].values()), {"status": 0})
        rejected = sum(o.stats["rejected"].values())
        t.add(
            o.scenario,
            o.path,
            _mean(bound.durations),
            f"{bound.value:,.0f} ({bound.binding})",
            makespan,
            bound.value / makespan if makespan else float("nan"),
            f"{o.span:.0f} / {bound.value / o.span if o.span else float('nan'):.3f}",
            f"{replay:.0f} / {replay / o.span if o.span else float('nan'):.3f}",
            replay / makespan if makespan else float("nan"),
            f"{_mean(o.delays):.2f} / {_p90(o.delays):.2f}",
            rejected,
            requests.get("status", 0) / max(1, len(o.stats["predictions"])),
            o.failed,
        )
    t.notes += [
        f"tryon-v1.6 mode {mode} (documented processing time from the catalogue) except the "
        "mixed manifest; the emulator adds 0.7-3.0 emu s of starting + in_queue before "
        "processing. 1 emu s = {scale:g} real s. Default FASHN limits: 6 in flight, "
        "run 50/60 s, status 50/10 s.".replace("{scale:g}", f"{scale:g}"),
        "bound = max(sum of in-flight durations / 6, run-rate-window bound, longest job) "
        "from the emulator's own created_at/completed_at of the run's predictions; "
        "efficiency = bound / makespan, makespan = wall time of the whole run_manifest call "
        "(validation, planning, Prefect task runs, output downloads, results table, gallery).",
        "in-flight span = from the first submission to the last completion the run saw "
        "(no flow start-up, validation, or write-out at the end); its efficiency is "
        "bound / span, the part the poller and the lanes are responsible for.",
        "zero-delay replay = the same jobs, with their real durations, in the order the run "
        "submitted them, each started the moment a slot is free (and the run window allows) "
        "and seen finished the moment it finishes (common.zero_delay_replay). bound / replay "
        "is the tail of the last wave, which only knowing each job's duration in advance "
        "would avoid; replay / span is what the run's own delays cost, and replay / "
        "makespan compares the whole run with a client that has no delay at all.",
        "detection delay = from the emulator's completed_at to the first status answer that "
        "reported the end (the emulator's seen_terminal_at), per prediction: the slot time "
        "the poller wastes; the rest of the gap to the bound is orchestration overhead.",
        "Both paths run in the same session, one after the other; the machine is shared "
        "(2 cores, other work running), so the figures are under load: compare the rows "
        "of one scenario with each other rather than with an idle machine.",
    ]
    return t


def main(argv: list[str] | None = None) -> None:
    """Run every scenario with both pollers and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=60)
    parser.add_argument("--time-scale", type=float, default=0.1)
    parser.add_argument("--mode", default="quality", help="tryon-v1.6 mode of the runs")
    parser.add_argument("--scenarios", default="", help="comma-separated name prefixes")
    parser.add_argument("--paths", default="flow,tasks", help="flow, tasks or both")
    parser.add_argument(
        "--baseline", default="", help="also run each case with the package at this git revision"
    )
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:  # one case in a child process (a baseline's package on PYTHONPATH)
        scenario_name, path = args.child.split("|")
        scenario = next(s for s in SCENARIOS if s.name == scenario_name)
        from prefect.testing.utilities import prefect_test_harness

        with prefect_test_harness():
            warm_up()
            outcome = run_once(scenario, path, args.rows, args.mode, args.time_scale)
        print(json.dumps(asdict(outcome)))
        return
    load = os.getloadavg()
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    home = tempfile.TemporaryDirectory(prefix="prefect-home-bench-")
    os.environ["PREFECT_HOME"] = home.name
    from prefect.testing.utilities import prefect_test_harness

    wanted = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    scenarios = [s for s in SCENARIOS if not wanted or any(s.name.startswith(w) for w in wanted)]
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    outcomes: list[Outcome] = []
    with contextlib.ExitStack() as stack:
        old = stack.enter_context(baseline(args.baseline)) if args.baseline else None
        with prefect_test_harness():
            warm_up()
            for scenario in scenarios:
                for path in paths:
                    if old is not None:
                        outcomes.append(run_at(old, args.baseline, scenario, path, args))
                    outcomes.append(run_once(scenario, path, args.rows, args.mode, args.time_scale))
    home.cleanup()
    result = table(outcomes, args.time_scale, args.rows, args.mode)
    result.notes.append(load_note(load))
    emit_name = "latency"
    from common import emit

    emit(emit_name, [result])


if __name__ == "__main__":
    main()
