"""The cost of a row at raised limits: one Prefect task run per row (submit, poll, collect).

Each case runs the same manifest of background-remove rows (documented processing time
1-3 s) against a fresh emulator process at time scale 0.02 with 60 predictions in flight.
The earlier two-task layout (``FASHN_ROW_TASKS=two``) is no longer in the package; to
compare with it, run this script at a revision that has it.

Every row has its own image, as in a catalogue. Cases: every row completes; every row fails at run time with ``ImageLoadError`` (its image
URL answers 404, so the API accepts the run and the prediction fails 1 emulated second
into processing).

Measured per run: efficiency against the bound (in-flight limit and run-rate window,
:func:`common.makespan_bound`), CPU of the flow process per row (``time.process_time``
around the ``run_manifest`` call: the flow, its task runs, the client, the limiters and
ledger/output writes, the results table and gallery, and Prefect's client-side work such
as logging and event sending in this process), CPU of the Prefect server subprocess per
row, the growth of the Prefect server's SQLite database per row, 429s and failed rows.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sqlite3
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    EmulatorProcess,
    Job,
    Table,
    children_cpu,
    emit,
    load_note,
    log,
    makespan_bound,
    png,
    proc_cpu,
    write_manifest_csv,
)
from throughput import warm_up

IN_FLIGHT = 60
RUN_LIMIT = "50/60"
STATUS_LIMIT = "500/10"
LAYOUTS = {"one": "one task"}
CASES = ("completed", "failed")
MISSING_IMAGE = "{url}/files/missing-{i}.png"
"""An image the file host does not have (404): the API accepts the run and the prediction
fails with ImageLoadError, as for a catalogue image deleted before the run."""


def jobs_for(case: str, n: int, emulator: EmulatorProcess) -> list[Job]:
    """``n`` background-remove rows, each with its own image (as in a catalogue), that
    all complete, or all fail with ImageLoadError."""
    images = [
        emulator.put_file(f"row-{i}.png", png((48, 72), (i % 256, i // 256 % 256, 90)), "image/png")
        if case == "completed"
        else MISSING_IMAGE.format(url=emulator.url, i=i)
        for i in range(n)
    ]
    return [Job(f"row-{i:05d}", "background-remove", {"image": images[i]}) for i in range(n)]


def db_path() -> Path:
    """The SQLite file of the Prefect server the harness started."""
    import prefect.settings

    url = str(prefect.settings.PREFECT_SERVER_DATABASE_CONNECTION_URL.value())
    return Path(url.split("///", 1)[1])


def db_bytes(path: Path) -> int:
    """Bytes of the database in use (pages minus free pages), WAL included."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as db:
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        size = db.execute("PRAGMA page_size").fetchone()[0]
    return int((pages - free) * size)


def table_bytes(path: Path) -> dict[str, int]:
    """Bytes per table of the database, its indexes counted with their table."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as db:
        owners = dict(db.execute("SELECT name, tbl_name FROM sqlite_master"))
        sizes = db.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall()
    totals: dict[str, int] = {}
    for name, size in sizes:
        table = owners.get(name, name)
        totals[table] = totals.get(table, 0) + int(size)
    return totals


def settled_db_bytes(path: Path, quiet: float = 2.0, limit: float = 30.0) -> int:
    """The database size once the server has written what it was sent (events are
    persisted in batches): until it stops growing for ``quiet`` seconds."""
    deadline = time.monotonic() + limit
    last = db_bytes(path)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = db_bytes(path)
        if now == last:
            break
        last = now
    return last


@dataclass
class Outcome:
    case: str
    layout: str
    rows: int
    wall: float
    cpu: float
    server_cpu: float
    emulator_cpu: float
    db_growth: int
    table_growth: dict[str, int]
    failed: int
    stats: dict[str, Any]


def run_once(case: str, layout: str, n: int, scale: float, args: argparse.Namespace) -> Outcome:
    """One manifest run against a fresh emulator with the row-task ``layout``."""
    from fashn_prefect.run.pipeline import run_manifest

    run_limit = tuple(float(x) for x in args.run_limit.split("/"))
    status_limit = tuple(float(x) for x in args.status_limit.split("/"))
    config = {
        "time_scale": scale,
        "seed": 5,
        "max_in_flight": args.in_flight,
        "run_limit": [int(run_limit[0]), run_limit[1]],
        "status_limit": [int(status_limit[0]), status_limit[1]],
    }
    log(f"{case} / {LAYOUTS[layout]}: {n} rows")
    db = db_path()
    with EmulatorProcess(**config) as emulator, tempfile.TemporaryDirectory() as tmp:
        emulator_pid = emulator.proc.pid if emulator.proc else -1
        manifest = Path(tmp) / "manifest.csv"
        write_manifest_csv(manifest, jobs_for(case, n, emulator))
        os.environ["FASHN_API_KEY"] = emulator.api_key
        os.environ["FASHN_BASE_URL"] = emulator.url
        size0 = settled_db_bytes(db)
        tables0 = table_bytes(db)
        server0 = children_cpu(exclude=[emulator_pid])
        emulator0 = proc_cpu(emulator_pid)
        cpu0, t0 = time.process_time(), time.monotonic()
        try:
            report = asyncio.run(
                run_manifest(
                    str(manifest),
                    str(Path(tmp) / "out"),
                    time_scale=scale,
                    shared_limits=False,
                    max_in_flight=args.in_flight,
                    run_limit=args.run_limit,
                    status_limit=args.status_limit,
                    allowed_failures="100%",
                )
            )
        finally:
            wall = time.monotonic() - t0
            cpu = time.process_time() - cpu0
        size1 = settled_db_bytes(db)
        tables1 = table_bytes(db)
        server = children_cpu(exclude=[emulator_pid]) - server0
        emulator_cpu = proc_cpu(emulator_pid) - emulator0
        stats = emulator.stats()
    totals = report["totals"]
    failed = int(totals["rows"] - totals["completed"])
    log(f"{case} / {LAYOUTS[layout]}: {wall:.1f} s wall, {cpu:.1f} s CPU, {failed} failed")
    growth = {name: size - tables0.get(name, 0) for name, size in tables1.items()}
    return Outcome(
        case,
        LAYOUTS[layout],
        n,
        wall,
        cpu,
        server,
        emulator_cpu,
        size1 - size0,
        growth,
        failed,
        stats,
    )


def table(outcomes: list[Outcome], args: argparse.Namespace) -> Table:
    """The raised-limits table."""
    run_limit = tuple(float(x) for x in args.run_limit.split("/"))
    t = Table(
        f"Raised limits: cost of a row ({args.rows} background-remove rows per run, "
        f"{args.in_flight} in flight, run {args.run_limit} s, status {args.status_limit} s, "
        f"time scale {args.time_scale:g})",
        [
            "rows",
            "row tasks",
            "bound (emu s)",
            "makespan (emu s)",
            "efficiency",
            "in-flight span (emu s) / its efficiency",
            "flow CPU ms / row",
            "server CPU ms / row",
            "emulator CPU ms / row",
            "cores needed at the bound's pace",
            "Prefect DB KB / row",
            "429s",
            "failed rows",
        ],
    )
    for o in outcomes:
        bound = makespan_bound(
            o.stats["predictions"], args.in_flight, (int(run_limit[0]), run_limit[1])
        )
        makespan = o.wall / args.time_scale
        predictions = o.stats["predictions"]
        span = max(p["completed_at"] or 0.0 for p in predictions) - min(
            p["created_at"] for p in predictions
        )
        t.add(
            o.case,
            o.layout,
            f"{bound.value:,.0f} ({bound.binding})",
            makespan,
            bound.value / makespan if makespan else float("nan"),
            f"{span:,.0f} / {bound.value / span if span else float('nan'):.3f}",
            1000.0 * o.cpu / o.rows,
            1000.0 * o.server_cpu / o.rows,
            1000.0 * o.emulator_cpu / o.rows,
            (o.cpu + o.server_cpu + o.emulator_cpu) / (bound.value * args.time_scale),
            o.db_growth / 1024.0 / o.rows,
            sum(o.stats["rejected"].values()),
            o.failed,
        )
    t.notes += [
        "background-remove: documented processing 1-3 emu s, plus the emulator's 0.7-3.0 emu s "
        f"of starting + in_queue. 1 emu s = {args.time_scale:g} real s. The emulator and the "
        f"flow share the limits: {args.in_flight} in flight, run {args.run_limit} s, status "
        f"{args.status_limit} s. At this time scale the run limit allows "
        f"{run_limit[0] / run_limit[1] / args.time_scale:.0f} rows per real second, which is "
        "what the orchestration must keep up with; the status limit is raised so polling "
        "never waits for it.",
        "'failed' rows: every image URL answers 404, so every prediction fails at run time "
        "with ImageLoadError (a permanent error: no retry).",
        "bound = max(sum of in-flight durations / in-flight limit, run-rate-window bound, "
        "longest job) from the emulator's created_at/completed_at; efficiency = bound / "
        "makespan, makespan = wall time of the whole run_manifest call (validation, planning, "
        "task runs, downloads, results table, gallery). The in-flight span leaves out the "
        "start-up and the write-out: from the first submission to the last completion, "
        "as the emulator recorded them.",
        "flow CPU = time.process_time() of this process around run_manifest (flow, task runs, "
        "client, limiters, ledger and output writes, results table, gallery, Prefect's "
        "logging and event sending); server CPU = the Prefect test server subprocess; "
        "Prefect DB = growth of its SQLite database (pages in use, after the server has "
        "persisted what it was sent).",
        "cores needed at the bound's pace = (flow + server + emulator CPU) / the bound in "
        "real seconds: what running the whole case as fast as the bound would take. Above "
        "the machine's cores (less what else runs on it), the bound cannot be reached here.",
        "Both layouts run in one session, one after the other, on a shared machine: compare "
        "the rows of one case with each other.",
    ]
    return t


def growth_table(outcomes: list[Outcome], top: int = 6) -> Table:
    """Where each run's Prefect database growth went: KB per row, by table."""
    totals: dict[str, int] = {}
    for o in outcomes:
        for name, size in o.table_growth.items():
            totals[name] = totals.get(name, 0) + max(size, 0)
    names = sorted(totals, key=totals.__getitem__, reverse=True)[:top]
    t = Table(
        "Raised limits: Prefect DB growth by table, KB per row (indexes counted with their table)",
        ["rows", "row tasks", *names, "all tables"],
    )
    for o in outcomes:
        t.add(
            o.case,
            o.layout,
            *(o.table_growth.get(name, 0) / 1024.0 / o.rows for name in names),
            sum(o.table_growth.values()) / 1024.0 / o.rows,
        )
    t.notes.append(
        "Growth of each table's pages (SQLite's dbstat), measured around the same runs as "
        "the table above; pages are allocated in 4 KB steps, so a small table's figure is coarse."
    )
    return t


def main(argv: list[str] | None = None) -> None:
    """Run every case with both row-task layouts and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--time-scale", type=float, default=0.02)
    parser.add_argument("--in-flight", type=int, default=IN_FLIGHT)
    parser.add_argument("--run-limit", default=RUN_LIMIT, help="N/SECONDS (emulated)")
    parser.add_argument("--status-limit", default=STATUS_LIMIT, help="N/SECONDS (emulated)")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    parser.add_argument("--profile", help="write a cProfile of the flow process to this file")
    args = parser.parse_args(argv)
    load = os.getloadavg()
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    home = tempfile.TemporaryDirectory(prefix="prefect-home-bench-")
    os.environ["PREFECT_HOME"] = home.name
    from prefect.testing.utilities import prefect_test_harness

    outcomes: list[Outcome] = []
    with prefect_test_harness():
        warm_up()
        profile = cProfile.Profile() if args.profile else None
        for case in args.cases.split(","):
            for layout in args.layouts.split(","):
                with profile or nullcontext():
                    outcomes.append(run_once(case, layout, args.rows, args.time_scale, args))
        if profile is not None:
            profile.dump_stats(args.profile)
            pstats.Stats(profile).sort_stats("tottime").print_stats(30)
    home.cleanup()
    result = table(outcomes, args)
    result.notes.append(load_note(load))
    emit("raised_limits", [result, growth_table(outcomes)])


if __name__ == "__main__":
    main()
