"""Webhooks against learned polling: how soon a run sees its predictions end, and what it
costs in status calls (issue 24).

Each workload runs once per path against a fresh emulator process (same seed, default
FASHN limits, time-compressed), one after the other in this session:

- learned polling: no webhook settings (the default);
- local receiver: ``webhook_listen=127.0.0.1:0``, FASHN (the emulator) calls the run's own
  process, each delivery confirmed by one status call, polling once a webhook is overdue;
- local receiver, faults: the same with 25 % of webhooks never delivered and 30 %
  delivered twice (the emulator's ``webhook_drop`` / ``webhook_duplicate`` switches).

Workloads: 48 try-on jobs of about 8 s (tryon-v1.6 performance x 1.25, plus the
emulator's queue time), and the latency-drift workload (quality try-ons documented at
12-17 s that really take about 5-7 s). The relay through a Prefect server's event stream is
measured as separate ``fashn-prefect run`` processes
against a real ``prefect server start`` (one run, and two runs sharing the account), with
learned polling for comparison.

Efficiency is against ``common.zero_delay_replay``: the same jobs with their real
durations, on 6 slots and the run window, each seen finished the moment it finishes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    EmulatorProcess,
    Job,
    Table,
    children_cpu,
    descendants,
    emit,
    load_note,
    log,
    proc_cpu,
    upload_images,
    write_manifest_csv,
    zero_delay_replay,
)
from latency import seen_delays, tryon_jobs
from shared_limits import BIN, PrefectServer, free_port, report_ends
from throughput import warm_up


@dataclass(frozen=True)
class Workload:
    name: str
    mode: str
    multiplier: float


WORKLOADS = [
    Workload("8 s jobs (performance x 1.25)", "performance", 1.25),
    Workload("latency drift (quality x 0.3)", "quality", 0.3),
]
PATHS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # name: (run settings, emulator faults)
    "learned polling": ({}, {}),
    "local receiver": ({"webhook_listen": "127.0.0.1:0"}, {}),
    "local receiver, 25 % lost + 30 % twice": (
        {"webhook_listen": "127.0.0.1:0"},
        {"webhook_drop": 0.25, "webhook_duplicate": 0.3},
    ),
}


@dataclass
class Outcome:
    workload: str
    path: str
    wall: float
    stats: dict[str, Any]
    rows: list[dict[str, Any]]
    server_cpu: float
    """CPU seconds the Prefect test server (this process's children) used in the run."""


def run_manifest_rows(
    emulator: EmulatorProcess, jobs: list[Job], scale: float, settings: dict[str, Any]
) -> list[dict[str, Any]]:
    """Run the manifest flow on ``jobs``; its results table rows."""
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
                str(manifest),
                str(Path(tmp) / "out"),
                time_scale=scale,
                shared_limits=False,
                **settings,
            )
        )
        fs, path = filesystem(report["results"])
        rows: list[dict[str, Any]] = pq.read_table(io.BytesIO(fs.cat_file(path))).to_pylist()
    return rows


def run_once(workload: Workload, path: str, n: int, scale: float) -> Outcome:
    """One run of ``workload`` through ``path`` against a fresh emulator."""
    from fashn_prefect.scheduler.polls import forget_learned_latency

    settings, faults = PATHS[path]
    config: dict[str, Any] = {
        "time_scale": scale,
        "seed": 3,
        "latency_multiplier": workload.multiplier,
    }
    forget_learned_latency()
    log(f"{workload.name} / {path}: {n} jobs")
    with EmulatorProcess(**config) as emulator:
        if faults:
            emulator.http.put("/_emulator/faults", json=faults).raise_for_status()
        urls = upload_images(emulator)
        jobs = tryon_jobs(n, urls, workload.mode)
        assert emulator.proc is not None
        skip = [emulator.proc.pid, *descendants(emulator.proc.pid)]
        cpu0 = children_cpu(skip)
        t0 = time.monotonic()
        rows = run_manifest_rows(emulator, jobs, scale, settings)
        wall = time.monotonic() - t0
        cpu = children_cpu(skip) - cpu0
        stats = emulator.stats()
    log(f"{workload.name} / {path}: {wall:.1f} s wall")
    return Outcome(workload.name, path, wall, stats, rows, cpu)


RELAY_PATHS: dict[str, tuple[int, bool]] = {
    # name: (runs sharing the account, through the relay)
    "relay (1 run)": (1, True),
    "learned polling, 2 shared runs": (2, False),
    "relay, 2 shared runs": (2, True),
}


@contextlib.contextmanager
def relay_service(server: PrefectServer, secret: str) -> Iterator[str]:
    """``fashn-prefect webhook-relay`` on a free loopback port; yields its public URL."""
    port = free_port()
    log_file = (server.home / "relay.log").open("wb")
    proc = subprocess.Popen(
        [str(BIN / "fashn-prefect"), "webhook-relay", "--listen", f"127.0.0.1:{port}"],
        env=server.env(FASHN_PREFECT_WEBHOOK_SECRET=secret),
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(httpx.TransportError):
            httpx.post(url, json={}, timeout=2)
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the relay did not start: see relay.log")
        time.sleep(0.2)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def run_cli_processes(
    server: PrefectServer,
    emulator: EmulatorProcess,
    tmp: Path,
    name: str,
    parts: list[list[Job]],
    scale: float,
    extra: list[str],
    secret: str,
) -> tuple[float, list[dict[str, Any]]]:
    """One ``fashn-prefect run`` process per part, at once, shared limits on; (the last
    run's end (monotonic), every results row)."""
    import pyarrow.parquet as pq

    procs = []
    for i, jobs in enumerate(parts):
        manifest = tmp / f"{name}-{i}.csv"
        write_manifest_csv(manifest, jobs)
        output = tmp / f"{name}-{i}"
        args = [str(BIN / "fashn-prefect"), "run", str(manifest), "--output", str(output)]
        args += ["--time-scale", str(scale), "--quiet", "--shared-limits", "--no-check-balance"]
        env = server.env(
            FASHN_API_KEY=emulator.api_key,
            FASHN_BASE_URL=emulator.url,
            FASHN_PREFECT_WEBHOOK_SECRET=secret,
        )
        log_file = (tmp / f"{name}-{i}.log").open("wb")
        procs.append(
            (subprocess.Popen([*args, *extra], env=env, stdout=log_file, stderr=log_file), output)
        )
    ends: list[float] = []
    rows: list[dict[str, Any]] = []
    for proc, output in procs:
        if proc.wait(timeout=1800) not in (0, 1):
            raise RuntimeError(f"run failed: see {output}.log")
        ends += report_ends(output)
        for table in sorted((output / "results").glob("*.parquet")):
            rows += pq.read_table(table).to_pylist()
    return max(ends), rows


def relay_outcomes(workloads: list[Workload], n: int, scale: float) -> list[Outcome]:
    """Every workload through a real ``prefect server start`` (SQLite) on the relay paths."""
    from fashn_prefect.scheduler.polls import forget_learned_latency

    outcomes = []
    secret = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="fashn-bench-relay-") as tmp_name:
        tmp = Path(tmp_name)
        with PrefectServer(tmp) as server, relay_service(server, secret) as relay_url:
            assert server.proc is not None
            for workload in workloads:
                for path, (runs, relay) in RELAY_PATHS.items():
                    forget_learned_latency()
                    log(f"{workload.name} / {path}: {n} jobs")
                    config = {
                        "time_scale": scale,
                        "seed": 3,
                        "latency_multiplier": workload.multiplier,
                    }
                    with EmulatorProcess(**config) as emulator:
                        jobs = tryon_jobs(n, upload_images(emulator), workload.mode)
                        parts = [jobs[i::runs] for i in range(runs)]
                        extra = ["--webhook-url", relay_url] if relay else []
                        pids = [server.proc.pid, *descendants(server.proc.pid)]
                        cpu0 = sum(proc_cpu(p) for p in pids)
                        t0 = time.monotonic()
                        name = f"{len(outcomes)}"
                        end, rows = run_cli_processes(
                            server, emulator, tmp, name, parts, scale, extra, secret
                        )
                        cpu = sum(proc_cpu(p) for p in pids) - cpu0
                        stats = emulator.stats()
                    log(f"{workload.name} / {path}: {end - t0:.1f} s wall")
                    label = f"{path} (prefect server start)"
                    outcomes.append(Outcome(workload.name, label, end - t0, stats, rows, cpu))
    return outcomes


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[int(0.9 * (len(ordered) - 1))] if ordered else float("nan")


def table(outcomes: list[Outcome], scale: float, n: int) -> Table:
    """The webhook table."""
    t = Table(
        f"Webhooks against learned polling ({n} jobs per run, time scale {scale:g})",
        [
            "workload",
            "path",
            "zero-delay replay (emu s)",
            "in-flight span (emu s)",
            "efficiency (replay / span)",
            "whole run (replay / makespan)",
            "status calls / job",
            "mean / p90 detection delay (emu s)",
            "seen by webhook / poll",
            "429s",
            "rows not completed",
            "Prefect server CPU / row (ms)",
        ],
    )
    for o in outcomes:
        predictions = o.stats["predictions"]
        delays, span = seen_delays(predictions)
        replay = zero_delay_replay(predictions)
        makespan = o.wall / scale
        status_calls = sum(p.get("status_calls", 0) for p in predictions)
        seen = [r.get("completion_seen_by") for r in o.rows]
        t.add(
            o.workload,
            o.path,
            replay,
            span,
            replay / span if span else float("nan"),
            replay / makespan if makespan else float("nan"),
            status_calls / max(1, len(predictions)),
            f"{_mean(delays):.2f} / {_p90(delays):.2f}",
            f"{seen.count('webhook')} / {seen.count('poll')}",
            sum(o.stats["rejected"].values()),
            sum(r["status"] != "completed" for r in o.rows),
            1000.0 * o.server_cpu / max(1, len(o.rows)),
        )
    t.notes += [
        f"tryon-v1.6; the emulator adds 0.7-3.0 emu s of starting + in_queue before "
        f"processing. 1 emu s = {scale:g} real s. Default FASHN limits: 6 in flight, run "
        "50/60 s, status 50/10 s. Shared limits off (one process).",
        "zero-delay replay = the same jobs with their real durations, in the order the run "
        "submitted them, each started the moment a slot is free (and the run window allows) "
        "and seen finished the moment it finishes (common.zero_delay_replay); in-flight span "
        "= from the first submission to the last end the run saw; efficiency = replay / "
        "span. The whole-run column also counts flow start-up, validation and write-out.",
        "detection delay = from the emulator's completed_at to the first status answer that "
        "reported the end (seen_terminal_at): in webhook mode, the confirming call.",
        "status calls / job: every GET /v1/status the emulator served, over the jobs.",
        "Prefect server CPU / row: CPU of the Prefect server during the run, over the rows: "
        "for the in-process paths the temporary server of prefect_test_harness, for the "
        "`(prefect server start)` paths a default (SQLite) `prefect server start` with its "
        "children. The relay runs as `fashn-prefect webhook-relay` against that server; "
        "its runs are `fashn-prefect run` processes with --shared-limits (one with 48 "
        "jobs, or two at once with 24 each) and their makespan is from their start to the "
        "last results table written.",
        "Same session, one run after another, on a shared machine (2 cores, other work "
        "running): compare the rows of one workload with each other.",
    ]
    return t


def main(argv: list[str] | None = None) -> None:
    """Run every workload on every path and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=48)
    parser.add_argument("--time-scale", type=float, default=0.1)
    parser.add_argument("--workloads", default="", help="comma-separated name prefixes")
    parser.add_argument("--paths", default="", help="comma-separated name prefixes")
    parser.add_argument(
        "--relay-paths", default="", help="comma-separated name prefixes ('none': skip them)"
    )
    args = parser.parse_args(argv)
    load = os.getloadavg()
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    home = tempfile.TemporaryDirectory(prefix="prefect-home-bench-")
    os.environ["PREFECT_HOME"] = home.name
    from prefect.testing.utilities import prefect_test_harness

    def chosen(names: list[str], wanted: str) -> list[str]:
        prefixes = [w.strip() for w in wanted.split(",") if w.strip()]
        return [n for n in names if not prefixes or any(n.startswith(p) for p in prefixes)]

    workloads = [
        w for w in WORKLOADS if w.name in chosen([w.name for w in WORKLOADS], args.workloads)
    ]
    paths = chosen(list(PATHS), args.paths)
    outcomes: list[Outcome] = []
    with prefect_test_harness():
        warm_up()
        for workload in workloads:
            for path in paths:
                outcomes.append(run_once(workload, path, args.rows, args.time_scale))
    home.cleanup()
    relay_paths = chosen(list(RELAY_PATHS), args.relay_paths)
    if relay_paths:
        for name in list(RELAY_PATHS):
            if name not in relay_paths:
                del RELAY_PATHS[name]
        outcomes += relay_outcomes(workloads, args.rows, args.time_scale)
    result = table(outcomes, args.time_scale, args.rows)
    result.notes.append(load_note(load))
    emit("webhooks", [result])


if __name__ == "__main__":
    main()
