"""Shared limits on a real ``prefect server start``: runs of one account in separate processes.

For each design of the server-side limits ('lanes': the earlier run-long lanes with a
cool-down; 'leases': a leased server slot per call and per prediction), it runs 1, 2 and 3
concurrent ``fashn-prefect run`` processes and one chunked ``fashn-prefect backfill``
against the emulator (time-scaled), and reports efficiency against the bound (six slots
and the run-rate window, from the emulator's record of every prediction), 429s, peak in
flight and idle-slot seconds. Times are emulated seconds (real seconds / time scale).

Two more kinds of case, with ``--cases``: ``pool2`` and ``pool3`` run 2 or 3 flow runs of
a deployment at once, each on its own process worker of one work pool (the production
topology; this checkout only), and ``whole`` runs the backfill's rows as one run, the
reference for what chunk boundaries cost (``--backfill-rows``, ``--chunk``).

    .venv/bin/python benchmarks/shared_limits.py [--scale 0.2] [--rows 24] [--postgres]
        [--baseline REV] [--cases 1,2,3,backfill,whole,pool2,pool3]

``--baseline REV`` also runs every case with the package as it was at git revision REV
(checked out into a temporary worktree and put first on ``PYTHONPATH`` of the run
processes), so old and new code are compared in one run on one server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from common import (
    DEFAULT_IN_FLIGHT,
    RUN_LIMIT,
    EmulatorProcess,
    Table,
    baseline,
    emit,
    load_note,
    log,
    make_jobs,
    makespan_bound,
    upload_images,
    write_manifest_csv,
)

BIN = Path(sys.executable).parent


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Postgres:
    """A throw-away PostgreSQL cluster (Debian's postgresql package) on a loopback port."""

    def __init__(self) -> None:
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
        if not versions:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        self.bin = versions[-1]
        # Its own directory: the cluster runs as the postgres user when we are root.
        self.root = Path(tempfile.mkdtemp(prefix="fashn-pg-"))
        self.port = free_port()

    def _as_postgres(self, args: list[str]) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:  # initdb refuses to run as root
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True)

    def __enter__(self) -> str:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        data = self.root / "data"
        self._as_postgres(["initdb", "-D", str(data), "-U", "prefect", "--auth=trust"])
        self._as_postgres(
            [
                "pg_ctl",
                "-D",
                str(data),
                "-l",
                str(self.root / "pg.log"),
                "-o",
                f"-h 127.0.0.1 -p {self.port} -k {self.root}",
                "-w",
                "start",
            ]
        )
        self._as_postgres(
            ["createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "prefect", "prefect"]
        )
        return f"postgresql+asyncpg://prefect@127.0.0.1:{self.port}/prefect"

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self._as_postgres(["pg_ctl", "-D", str(self.root / "data"), "-m", "fast", "stop"])
        shutil.rmtree(self.root, ignore_errors=True)


class PrefectServer:
    """``prefect server start`` on a free loopback port with its own PREFECT_HOME."""

    def __init__(self, home: Path, database_url: str | None = None) -> None:
        self.home = home
        self.port = free_port()
        self.database_url = database_url
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FASHN_"))}
        env.update(
            PREFECT_HOME=str(self.home),
            PREFECT_API_URL=self.api_url,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_LOGGING_LEVEL="WARNING",
        )
        if self.database_url:
            env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = self.database_url
        env.update(extra)
        return env

    def __enter__(self) -> PrefectServer:
        args = ["server", "start", "--host", "127.0.0.1", "--port", str(self.port)]
        args += ["--no-ui", "--analytics-off", "--no-scheduler", "--no-late-runs"]
        self.proc = subprocess.Popen(
            [str(BIN / "prefect"), *args],
            env=self.env(PREFECT_API_URL=""),
            stdout=(self.home / "server.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    return self
            time.sleep(0.3)
        raise RuntimeError("prefect server did not start")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)


def run_processes(
    server: PrefectServer,
    emu: EmulatorProcess,
    tmp: Path,
    design: str,
    scale: float,
    parts: list[list[Any]],
    command: str,
    extra: list[str],
    code: Path | None = None,
) -> list[float]:
    """Start one CLI process per part at once; return each run's end (monotonic)."""
    procs = []
    for i, jobs in enumerate(parts):
        manifest = tmp / f"{design}-{command}-{i}.csv"
        write_manifest_csv(manifest, jobs)
        output = tmp / f"{design}-{command}-{len(parts)}-{i}"
        args = [str(BIN / "fashn-prefect"), command, str(manifest), "--output", str(output)]
        args += ["--time-scale", str(scale), "--quiet"]
        if design == "off":  # one process alone, limits only in the process (the reference)
            args += ["--no-shared-limits"]
        else:
            # 'leases' is the only design in the package now (and the default of the
            # revisions that also had 'lanes'); compare with those through --baseline REV.
            args += ["--shared-limits"]
        args += ["--no-check-balance", *extra]
        env = server.env(FASHN_API_KEY=emu.api_key, FASHN_BASE_URL=emu.url)
        if code is not None:  # the baseline's package, ahead of this checkout's
            env["PYTHONPATH"] = str(code)
        log_file = (tmp / f"{output.name}.log").open("wb")
        procs.append((subprocess.Popen(args, env=env, stdout=log_file, stderr=log_file), output))
    ends = []
    for proc, output in procs:
        if proc.wait(timeout=1800) not in (0, 1):
            raise RuntimeError(f"{command} failed: see {output}.log")
        # The run ends when its report is written (the process may wait a little longer
        # to give back its last calls' rate-window slots).
        ends += report_ends(output)
    return ends


class WorkPool:
    """A process work pool on the server with one deployment of ``run_manifest`` and
    ``workers`` process workers polling it, each running one flow run at a time."""

    def __init__(self, server: PrefectServer, tmp: Path, workers: int) -> None:
        self.server = server
        self.tmp = tmp
        self.workers = workers
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> WorkPool:
        env = self.server.env()
        prefect = str(BIN / "prefect")
        subprocess.run(
            [prefect, "work-pool", "create", "bench", "--type", "process", "--overwrite"],
            env=env,
            check=True,
            capture_output=True,
        )
        spec = self.tmp / "prefect.yaml"
        spec.write_text(
            "name: bench\npull: []\ndeployments:\n"
            "  - name: bench\n    entrypoint: fashn_prefect.flows:run_manifest\n"
            "    parameters: {credentials: bench}\n"
            "    work_pool: {name: bench, work_queue_name: default}\n"
        )
        subprocess.run(
            [prefect, "--no-prompt", "deploy", "--all", "--prefect-file", str(spec)],
            env=env,
            cwd=self.tmp,
            check=True,
            capture_output=True,
        )
        for i in range(self.workers):
            log_file = (self.tmp / f"worker-{i}.log").open("wb")
            self.procs.append(
                subprocess.Popen(
                    [prefect, "worker", "start", "--pool", "bench", "--limit", "1"],
                    env=self.server.env(
                        PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_WORKER_PREFETCH_SECONDS="0"
                    ),
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            proc.wait(timeout=10)

    def run(self, emu: EmulatorProcess, parts: list[list[Any]], scale: float) -> list[float]:
        """One flow run per part at once; each run's end (monotonic) from its report."""
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from fashn_prefect.credentials import FashnCredentials

        outputs = []
        with temporary_settings(updates={PREFECT_API_URL: self.server.api_url}):
            FashnCredentials(api_key=emu.api_key, base_url=emu.url).save("bench", overwrite=True)

            async def start_and_wait() -> None:
                from prefect.deployments import run_deployment

                runs = []
                for i, jobs in enumerate(parts):
                    manifest = self.tmp / f"pool-{len(parts)}-{i}.csv"
                    write_manifest_csv(manifest, jobs)
                    output = self.tmp / f"pool-{len(parts)}-{i}"
                    outputs.append(output)
                    settings = {"time_scale": scale, "shared_limits": True, "check_balance": False}
                    parameters: dict[str, Any] = {"manifest": str(manifest), "output": str(output)}
                    parameters["settings"] = settings
                    runs.append(
                        await run_deployment(
                            "fashn-run-manifest/bench", parameters=parameters, timeout=0
                        )
                    )
                async with get_client() as client:
                    while True:
                        states = [(await client.read_flow_run(r.id)).state for r in runs]
                        if all(state is not None and state.is_final() for state in states):
                            break
                        await asyncio.sleep(1.0)

            asyncio.run(start_and_wait())
        return [end for output in outputs for end in report_ends(output)]


def report_ends(output: Path) -> list[float]:
    """When each run under ``output`` wrote its report (monotonic clock)."""
    offset = time.time() - time.monotonic()
    ends = []
    for report in sorted((output / "runs").glob("*.json")):
        finished = datetime.fromisoformat(json.loads(report.read_text())["finished_at"])
        ends.append(finished.timestamp() - offset)
    if not ends:
        raise RuntimeError(f"no run report under {output}")
    return ends


def scenario(
    server: PrefectServer,
    tmp: Path,
    design: str,
    scale: float,
    runs: int,
    rows: int,
    chunk: int,
    code: Path | None = None,
    pool: WorkPool | None = None,
) -> dict[str, Any]:
    """One scenario on a fresh emulator: ``runs`` concurrent runs (or a backfill if chunk),
    as CLI processes or, with ``pool``, as flow runs on its workers."""
    with EmulatorProcess(time_scale=scale, seed=17) as emu:
        urls = upload_images(emu)
        if pool is not None:
            jobs = make_jobs(rows * runs, urls, seed=5)
            ends = pool.run(emu, [jobs[i::runs] for i in range(runs)], scale)
        elif chunk:
            jobs = make_jobs(rows, urls, seed=5)
            ends = run_processes(
                server,
                emu,
                tmp,
                design,
                scale,
                [jobs],
                "backfill",
                ["--chunk-size", str(chunk)],
                code,
            )
        else:
            jobs = make_jobs(rows * runs, urls, seed=5)
            parts = [jobs[i::runs] for i in range(runs)]
            ends = run_processes(server, emu, tmp, design, scale, parts, "run", [], code)
        stats = emu.stats()
        end = emu.emulated(max(ends))
    predictions = stats["predictions"]
    bound = makespan_bound(predictions, DEFAULT_IN_FLIGHT, RUN_LIMIT)
    start = min(p["created_at"] for p in predictions)
    span = end - start
    busy = sum(bound.durations)
    rejected = stats["rejected"]
    return {
        "jobs": len(predictions),
        "bound": bound.value,
        "span": span,
        "efficiency": bound.value / span,
        "429s": sum(rejected.get(k, 0) for k in ("RateLimitExceeded", "ConcurrencyLimitExceeded")),
        "peak": stats["peak_in_flight"],
        "idle": DEFAULT_IN_FLIGHT * span - busy,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=0.2, help="emulator time scale")
    parser.add_argument("--rows", type=int, default=24, help="rows per run")
    parser.add_argument("--postgres", action="store_true", help="Prefect server on PostgreSQL")
    parser.add_argument("--designs", default="off,leases")
    parser.add_argument("--cases", default="1,2,3,backfill", help="see the module doc")
    parser.add_argument("--baseline", default="", help="also run the code of this git revision")
    parser.add_argument("--backfill-rows", type=int, default=0, help="default: 3 x --rows")
    parser.add_argument("--chunk", type=int, default=0, help="backfill chunk; default: --rows")
    args = parser.parse_args()
    load = os.getloadavg()
    backfill_rows = args.backfill_rows or 3 * args.rows
    chunk = args.chunk or args.rows
    table = Table(
        f"Shared limits on a real Prefect server ({'PostgreSQL' if args.postgres else 'SQLite'})",
        [
            "code",
            "design",
            "case",
            "jobs",
            "bound (s)",
            "span (s)",
            "efficiency",
            "429s",
            "peak in flight",
            "idle slot-s",
        ],
    )
    with tempfile.TemporaryDirectory(prefix="fashn-shared-") as root:
        tmp = Path(root)
        (tmp / "home").mkdir()
        with contextlib.ExitStack() as stack:
            database = stack.enter_context(Postgres()) if args.postgres else None
            server = stack.enter_context(PrefectServer(tmp / "home", database))
            codes: list[tuple[str, Path | None]] = [("this checkout", None)]
            if args.baseline:
                codes.insert(0, (args.baseline, stack.enter_context(baseline(args.baseline))))
            pool: WorkPool | None = None
            for design in args.designs.split(","):
                for token in args.cases.split(",") if design != "off" else ["1"]:
                    runs, rows, part, on_pool = 1, args.rows, 0, token.startswith("pool")
                    if token == "backfill":
                        rows, part = backfill_rows, chunk
                        case = f"backfill {rows} rows, chunks of {part}"
                    elif token == "whole":
                        rows = backfill_rows
                        case = f"1 run x {rows} rows (the backfill's rows)"
                    else:
                        runs = int(token.removeprefix("pool"))
                        case = f"{runs} concurrent run{'s' if runs > 1 else ''} x {rows} rows"
                        case += " on workers of one pool" if on_pool else ""
                    if on_pool and pool is None:
                        pool = stack.enter_context(WorkPool(server, tmp, 3))
                    for label, code in codes if design != "off" and not on_pool else codes[-1:]:
                        log(f"{label} / {design}: {case}")
                        r = scenario(
                            server,
                            tmp,
                            design,
                            args.scale,
                            runs,
                            rows,
                            part,
                            code,
                            pool if on_pool else None,
                        )
                        table.add(
                            label,
                            design,
                            case,
                            r["jobs"],
                            r["bound"],
                            r["span"],
                            r["efficiency"],
                            r["429s"],
                            r["peak"],
                            r["idle"],
                        )
    table.notes += [
        "Each run is a separate `fashn-prefect run` process (the backfill: one process, one "
        "subflow per chunk; 'on workers of one pool': flow runs of one deployment, each on "
        "its own `prefect worker start` of a process work pool) against one `prefect server "
        "start`; all share one account.",
        "Bound: six in-flight slots and 50 runs per 60 s, from the emulator's record of each "
        "prediction. Span: first submission to the end of the last run. Efficiency = bound / "
        "span. Idle slot-s = 6 x span - time predictions were in flight. Emulated seconds; "
        f"emulator time scale {args.scale}.",
        "'off': the same single run without shared limits (the reference for one run). "
        "'lanes': run-long lanes on a tag limit, rates shared by lane count, a cool-down of "
        "one window before a lane is given back. 'leases': a leased global-concurrency slot "
        "per call (released one window after it) and per prediction.",
        load_note(load) + " The machine is shared; figures are measured under load.",
    ]
    emit("shared_limits" + ("_postgres" if args.postgres else ""), [table])


if __name__ == "__main__":
    main()
