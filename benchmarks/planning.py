"""Scale of planning: a 100,000-row manifest read, validated, estimated and planned.

Each measurement runs in a fresh Python subprocess (``python planning.py measure ...``)
so that its peak RSS is its own. Steps, timed separately: read the manifest (CSV or
Parquet), validate every row, estimate the credits, plan against the output root (empty,
or holding a ledger record for every row, as when a run is resumed), then build and write
the results table (Parquet and CSV).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import MIX, Table, baseline, emit, load_note, log

IMAGE_FIELDS = {
    "tryon-v1.6": ("model_image", "garment_image"),
    "background-remove": ("image",),
    "product-to-model": ("product_image",),
    "tryon-max": ("model_image", "product_image"),
    "edit": ("image",),
}


def manifest_rows(n: int, seed: int = 5) -> list[dict[str, Any]]:
    """``n`` manifest rows of the benchmark mix, with image URLs and two metadata columns."""
    rng = random.Random(seed)
    weights = [w for w, _, _ in MIX]
    rows = []
    for i in range(n):
        _, model, fixed = rng.choices(MIX, weights)[0]
        row: dict[str, Any] = {"row_id": f"sku-{i:06d}", "model_name": model, **fixed}
        for name in IMAGE_FIELDS[model]:
            row[name] = f"https://images.example.com/{name}/{rng.randrange(5000):05d}.jpg"
        row["sku"] = f"SKU{i:07d}"
        row["collection"] = rng.choice(["spring", "summer", "autumn", "winter"])
        rows.append(row)
    return rows


def write_manifests(rows: list[dict[str, Any]], folder: Path) -> dict[str, Path]:
    """The rows as ``manifest.csv`` and ``manifest.parquet`` (all columns, empty = absent)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    table = pa.table({c: [None if r.get(c) is None else str(r[c]) for r in rows] for c in columns})
    paths = {"CSV": folder / "manifest.csv", "Parquet": folder / "manifest.parquet"}
    pacsv.write_csv(table, paths["CSV"])
    pq.write_table(table, paths["Parquet"])
    return paths


def record_types() -> tuple[Any, Any]:
    """``Attempt`` and ``RowRecord`` of the package on the path (a baseline from before
    ``fashn_prefect.store.records`` has them in ``fashn_prefect.store.ledger``)."""
    try:
        from fashn_prefect.store import records
    except ImportError:
        from fashn_prefect.store import ledger as records  # type: ignore[no-redef]
    return records.Attempt, records.RowRecord


def write_ledger(manifest: str, output: str) -> None:
    """A 'submitted' ledger record for every row (what an interrupted run leaves behind),
    in the layout of the package on the path: merged snapshots where the ledger has them
    (at most MERGE_AT + 1 files, as merging leaves them), else one JSON object per row."""
    from fashn_prefect.run.manifest import read_manifest
    from fashn_prefect.run.validate import validate_manifest
    from fashn_prefect.store.ledger import Ledger

    Attempt, RowRecord = record_types()

    specs = validate_manifest(read_manifest(manifest)).rows
    ledger = Ledger(output)
    Path(ledger.root).mkdir(parents=True, exist_ok=True)
    records = []
    for i, spec in enumerate(specs):
        record = RowRecord(spec.row_key, spec.inputs_hash, spec.model_name, "submitted")
        record.attempts.append(Attempt(1, f"pred-{i:06d}", "submitted", "2026-01-01T00:00:00Z"))
        records.append(record)
    if hasattr(ledger, "write_snapshot"):
        size = max(1, -(-len(records) // 16))
        for start in range(0, len(records), size):
            ledger.write_snapshot(records[start : start + size], "bench")
        return
    for record in records:
        Path(ledger.path(record.row_key)).write_bytes(record.to_json())


def measure(manifest: str, output: str) -> dict[str, Any]:
    """Time each step in this process; returns the figures (run in a subprocess)."""
    from fashn_prefect.run.manifest import read_manifest
    from fashn_prefect.run.plan import make_plan
    from fashn_prefect.run.validate import validate_manifest
    from fashn_prefect.run.write import result_row, write_results

    builder: Any = None
    with contextlib.suppress(ImportError):  # a baseline from before the builder: one list
        from fashn_prefect.run.results_builder import ResultsBuilder as builder

    times: dict[str, float] = {}
    t = time.perf_counter()
    decoded = read_manifest(manifest)
    times["read"] = time.perf_counter() - t
    t = time.perf_counter()
    report = validate_manifest(decoded)
    times["validate"] = time.perf_counter() - t
    t = time.perf_counter()
    credits = report.estimated_credits
    times["estimate"] = time.perf_counter() - t
    t = time.perf_counter()
    plan = make_plan(report.rows, output)
    times["plan"] = time.perf_counter() - t
    rss_before_results = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    t = time.perf_counter()
    # Each job's row: read from the plan's columns where it keeps them (the run builds a
    # job's planned row, with its ledger record, only when it takes the row up).
    specs = getattr(plan.rows, "specs", None) or [job.spec for job in plan.rows]
    if builder is not None:
        # The product path (stages.execute + write_outcome): one result row at a time into
        # the builder, then the table sorted by row, written in batches.
        results = builder()
        for spec in specs:
            results.add(result_row(spec, "completed", prediction_ids=["x"], output_uris=["y"]))
        table = results.table("flow-run-id", datetime.now(UTC))
    else:
        from fashn_prefect.run.write import results_table

        rows = [
            result_row(spec, "completed", prediction_ids=["x"], output_uris=["y"]) for spec in specs
        ]
        table = results_table(rows, "flow-run-id", datetime.now(UTC))
    written = write_results(table, output, "bench", csv=True)
    times["results"] = time.perf_counter() - t
    assert written.csv is not None
    sizes = {
        "parquet": os.path.getsize(written.parquet.removeprefix("file://")),
        "csv": os.path.getsize(written.csv.removeprefix("file://")),
    }
    return {
        "rows": report.total_rows,
        "valid": len(report.rows),
        "credits": credits,
        "actions": sorted(
            set(plan.actions() if hasattr(plan, "actions") else [j.action for j in plan.rows])
        ),
        "times": times,
        "sizes": sizes,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        # The peak before the results step: what the results step added is the difference.
        "peak_rss_before_results_mib": rss_before_results,
    }


def run_child(manifest: Path, output: Path, code: Path | None = None) -> dict[str, Any]:
    """:func:`measure` in a fresh interpreter; its peak RSS is its own. ``code``: a
    checkout whose package goes first on PYTHONPATH (the baseline)."""
    script = str(Path(__file__).resolve())
    env = {**os.environ, "PYTHONPATH": str(code)} if code else None
    cmd = [sys.executable, script, "measure", str(manifest), str(output)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def child(code: Path | None, *args: str) -> str:
    """``planning.py <args>`` in a child process, with ``code``'s package if given."""
    env = {**os.environ, "PYTHONPATH": str(code)} if code else None
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout


# ------------------------------------------------------------ storage requests of a resume


def s3_options(endpoint: str) -> dict[str, Any]:
    """s3fs options for the benchmark's moto server."""
    return {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": endpoint},
        "use_listings_cache": False,
    }


def s3_crash(output: str, endpoint: str, rows: int) -> None:
    """A run that settled half of ``rows`` and died with 24 in flight (run in a child
    process with the package under test): each row's final record saved through the run's
    own Runtime (a real run writes 3-4 times per row, in either layout), settled rows
    snapshotted where the runtime does that."""
    import asyncio

    from fashn_prefect.run.runtime import RunConfig, Runtime
    from fashn_prefect.scheduler.account import AccountScheduler
    from fashn_prefect.scheduler.rates import ApiLimits

    Attempt, RowRecord = record_types()

    async def run() -> None:
        config = RunConfig(output=output, storage_options=s3_options(endpoint))
        rt = Runtime(config, None, AccountScheduler(ApiLimits()), "bench-run")  # type: ignore[arg-type]
        settle = getattr(rt, "settle", None)
        for start in range(0, rows // 2 + 24, 64):
            batch = []
            for i in range(start, min(start + 64, rows // 2 + 24)):
                record = RowRecord(f"sku-{i:06d}", "h", "edit", "completed")
                record.attempts.append(Attempt(1, f"p-{i}", "completed", "2026-01-01T00:00:00"))
                record.outputs = [f"{output}/images/sku-{i:06d}.png"]
                if i >= rows // 2:
                    record.status = record.attempts[0].status = "submitted"
                    record.outputs = []
                batch.append(record)
            await asyncio.gather(*(rt.save(r) for r in batch))
            for record in batch:
                if settle is not None and record.status == "completed":
                    await settle(record)

    asyncio.run(run())


def s3_resume(output: str, endpoint: str, rows: int) -> dict[str, Any]:
    """Plan ``rows`` rows against the crashed run's output root; the actions and seconds."""
    from collections import Counter

    from fashn_prefect.run.plan import make_plan
    from fashn_prefect.run.validate import RowSpec

    specs = [RowSpec(i + 1, f"sku-{i:06d}", "edit", {}, {}, "h", 1) for i in range(rows)]
    t = time.perf_counter()
    plan = make_plan(specs, output, storage_options=s3_options(endpoint))
    return {
        "seconds": time.perf_counter() - t,
        "actions": dict(Counter(j.action for j in plan.rows)),
    }


class RequestLog:
    """The in-process moto server's request log (werkzeug's access log), counted by kind."""

    def __init__(self) -> None:
        import logging

        self.lines: list[str] = []
        handler = logging.Handler(logging.INFO)
        handler.emit = lambda record: self.lines.append(record.getMessage())  # type: ignore[method-assign]
        logger = logging.getLogger("werkzeug")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)

    def take(self) -> dict[str, int]:
        """Requests since the last take: list, read (GET, HEAD), write (PUT, POST), delete."""
        import re

        found = {"list": 0, "read": 0, "write": 0, "delete": 0}
        lines, self.lines = self.lines, []
        for line in lines:
            if '"' not in line:
                continue
            request = re.sub(r"\x1b\[[0-9;]*m", "", line.split('"')[1])
            method, _, target = request.partition(" ")
            if method == "GET" and ("list-type=" in target or "prefix=" in target):
                found["list"] += 1
            elif method in ("GET", "HEAD"):
                found["read"] += 1
            elif method == "DELETE" or (method == "POST" and "?delete" in target):
                found["delete"] += 1
            elif method in ("PUT", "POST"):
                found["write"] += 1
        return found


def s3_table(rows: int, old: Path | None, revision: str) -> Table:
    """Requests to S3 (a moto server) of a run that dies half-way, and of its resume."""
    import fsspec
    from moto.server import ThreadedMotoServer

    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    requests = RequestLog()
    t = Table(
        f"Storage requests on S3 (moto): a {rows:,}-row run dies half-way, then is resumed",
        [
            "ledger",
            "run: writes",
            "run: deletes",
            "resume: lists",
            "resume: reads",
            "resume: writes",
            "resume s",
            "resume plan",
        ],
    )
    try:
        fs = fsspec.filesystem("s3", **s3_options(endpoint))
        cases = [(old, f"one object per row (@ {revision})")] if old else []
        cases.append((None, "snapshots + in-flight records (this checkout)"))
        for n, (code, name) in enumerate(cases):
            bucket = f"bench-{n}"
            fs.mkdir(bucket)
            output = f"s3://{bucket}/out"
            log(f"planning: S3 {name}: the run")
            requests.take()
            child(code, "s3-crash", output, endpoint, str(rows))
            run = requests.take()
            log(f"planning: S3 {name}: the resume")
            resumed = json.loads(child(code, "s3-resume", output, endpoint, str(rows)))
            got = requests.take()
            plan = ", ".join(f"{k} {v:,}" for k, v in sorted(resumed["actions"].items()))
            t.add(
                name,
                run["write"],
                run["delete"],
                got["list"],
                got["read"],
                got["write"],
                resumed["seconds"],
                plan,
            )
    finally:
        server.stop()
    t.notes += [
        f"The run settles {rows // 2:,} rows and dies with 24 in flight; each row's final "
        "record is saved once through the run's Runtime (a real run saves 3-4 times per "
        "row in either layout). Requests counted from the moto server's access log; "
        "reads include s3fs's HEAD requests; a bulk delete of up to 1,000 objects is one "
        "request. The resume plans every row (make_plan), which also lists the results "
        "folder.",
    ]
    return t


def size_table(n: int, folder: Path, codes: list[tuple[str, Path | None]]) -> Table:
    """Every case at ``n`` rows, for each code (the baseline first)."""
    t = Table(
        f"Planning a {n:,}-row manifest (each case in a fresh process)",
        [
            "code",
            "manifest",
            "output root",
            "read s",
            "validate s",
            "estimate s",
            "plan s",
            "results table s",
            "total s",
            "peak RSS MiB",
            "results Parquet / CSV MiB",
        ],
    )
    log(f"planning: writing {n:,}-row manifests")
    paths = write_manifests(manifest_rows(n), folder)
    sizes = {k: p.stat().st_size / 2**20 for k, p in paths.items()}
    credits = 0
    for code_name, code in codes:
        cases: list[tuple[str, str, Path]] = [
            ("CSV", "empty", folder / "out-csv"),
            ("Parquet", "empty", folder / "out-parquet"),
            ("Parquet", f"{n:,} ledger records (resume)", folder / "out-resume"),
        ]
        for fmt, root, output in cases:
            shutil.rmtree(output, ignore_errors=True)
            if root != "empty":
                log(f"planning: {code_name}: writing {n:,} ledger records")
                child(code, "ledger", str(paths[fmt]), str(output))
            log(f"planning: {code_name}: {n:,} rows, {fmt} manifest, output root {root}")
            r = run_child(paths[fmt], output, code)
            credits = r["credits"]
            times = r["times"]
            t.add(
                code_name,
                f"{fmt} ({sizes[fmt]:.1f} MiB)",
                f"{root} → {'/'.join(r['actions'])}",
                times["read"],
                times["validate"],
                times["estimate"],
                times["plan"],
                times["results"],
                sum(times.values()),
                r["peak_rss_mib"],
                f"{r['sizes']['parquet'] / 2**20:.1f} / {r['sizes']['csv'] / 2**20:.1f}",
            )
            shutil.rmtree(output, ignore_errors=True)
    t.notes += [
        f"{n:,} rows of the throughput mix (try-on v1.6, background removal, "
        "product-to-model, try-on max, edit), image URLs, two metadata columns; estimated "
        f"credits {credits:,}. Steps are the library calls run_manifest makes: "
        "read_manifest, validate_manifest, ValidationReport.estimated_credits, make_plan, "
        "then one result row per job (result_row) into the ResultsBuilder (results_table "
        "before it), its table sorted by row, and write_results (Parquet and CSV).",
        "The resume's ledger is written by each code's own layout: one JSON object per "
        "row (before snapshots), or 16 merged snapshots (the most a merged ledger holds).",
        "peak RSS = ru_maxrss of the measuring subprocess (Python, pyarrow and "
        "fashn_prefect imports included).",
    ]
    return t


def main(argv: list[str] | None = None) -> None:
    """Build the manifests, measure each case in a subprocess and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--rows", default="100000", help="manifest sizes, comma-separated (100000,1000000)"
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--baseline", default="", help="also measure the package at this git revision"
    )
    parser.add_argument(
        "--s3-rows", type=int, default=0, help="also count a resume's S3 requests at this size"
    )
    parser.add_argument(
        "--s3-new-only",
        action="store_true",
        help="count the S3 requests of this checkout only (the baseline's resume reads one "
        "object per row: 13 minutes at 100,000 rows)",
    )
    args = parser.parse_args(argv)
    load = os.getloadavg()
    sizes_wanted = [2_000] if args.quick else [int(v) for v in args.rows.split(",")]
    tables: list[Table] = []
    with contextlib.ExitStack() as stack:
        old = stack.enter_context(baseline(args.baseline)) if args.baseline else None
        codes: list[tuple[str, Path | None]] = [(f"@ {args.baseline}", old)] if old else []
        codes.append(("this checkout", None))
        for n in sizes_wanted:
            tmp = tempfile.mkdtemp(prefix="fashn-plan-bench-")
            try:
                tables.append(size_table(n, Path(tmp), codes))
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        if args.s3_rows:
            s3_old = None if args.s3_new_only else old
            tables.append(s3_table(args.s3_rows, s3_old, args.baseline))
    tables[-1].notes.append(load_note(load))
    emit("planning", tables)


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "measure":
        print(json.dumps(measure(sys.argv[2], sys.argv[3])))
    elif command == "ledger":
        write_ledger(sys.argv[2], sys.argv[3])
    elif command == "s3-crash":
        s3_crash(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif command == "s3-resume":
        print(json.dumps(s3_resume(sys.argv[2], sys.argv[3], int(sys.argv[4]))))
    else:
        main()
