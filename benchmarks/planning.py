"""Scale of planning: a 100,000-row manifest read, validated, estimated and planned.

Each measurement runs in a fresh Python subprocess (``python planning.py measure ...``)
so that its peak RSS is its own. Steps, timed separately: read the manifest (CSV or
Parquet), validate every row, estimate the credits, plan against the output root (empty,
or holding a ledger record for every row, as when a run is resumed), then build and write
the results table (Parquet and CSV).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import MIX, Table, emit, load_note, log

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


def write_ledger(specs: list[Any], output: Path) -> None:
    """A 'submitted' ledger record for every row (what an interrupted run leaves behind)."""
    from fashn_prefect.store.ledger import Attempt, Ledger, RowRecord

    ledger = Ledger(str(output))
    Path(ledger.root).mkdir(parents=True, exist_ok=True)
    for i, spec in enumerate(specs):
        record = RowRecord(spec.row_key, spec.inputs_hash, spec.model_name, "submitted")
        record.attempts.append(Attempt(1, f"pred-{i:06d}", "submitted", "2026-01-01T00:00:00Z"))
        Path(ledger.path(spec.row_key)).write_bytes(record.to_json())


def measure(manifest: str, output: str) -> dict[str, Any]:
    """Time each step in this process; returns the figures (run in a subprocess)."""
    from fashn_prefect.run.manifest import read_manifest
    from fashn_prefect.run.plan import make_plan
    from fashn_prefect.run.validate import validate_manifest
    from fashn_prefect.run.write import result_row, results_table, write_results

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
    t = time.perf_counter()
    rows = [
        result_row(job.spec, "completed", prediction_ids=["x"], output_uris=["y"])
        for job in plan.rows
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
        "actions": sorted({j.action for j in plan.rows}),
        "times": times,
        "sizes": sizes,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }


def run_child(manifest: Path, output: Path) -> dict[str, Any]:
    """:func:`measure` in a fresh interpreter; its peak RSS is its own."""
    script = str(Path(__file__).resolve())
    cmd = [sys.executable, script, "measure", str(manifest), str(output)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> None:
    """Build the manifests, measure each case in a subprocess and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    load = os.getloadavg()
    n = 2_000 if args.quick else args.rows
    t = Table(
        f"Planning a {n:,}-row manifest (each case in a fresh process)",
        [
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
    with tempfile.TemporaryDirectory(prefix="fashn-plan-bench-") as tmp:
        folder = Path(tmp)
        log(f"planning: writing {n:,}-row manifests")
        paths = write_manifests(manifest_rows(n), folder)
        sizes = {k: p.stat().st_size / 2**20 for k, p in paths.items()}
        cases: list[tuple[str, str, Path]] = [
            ("CSV", "empty", folder / "out-csv"),
            ("Parquet", "empty", folder / "out-parquet"),
            ("Parquet", f"{n:,} ledger records (resume)", folder / "out-resume"),
        ]
        for fmt, root, output in cases:
            if root != "empty":
                from fashn_prefect.run.manifest import read_manifest
                from fashn_prefect.run.validate import validate_manifest

                log(f"planning: writing {n:,} ledger records")
                specs = validate_manifest(read_manifest(str(paths[fmt]))).rows
                write_ledger(specs, output)
            log(f"planning: {fmt} manifest, output root {root}")
            r = run_child(paths[fmt], output)
            times = r["times"]
            t.add(
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
    t.notes += [
        f"{n:,} rows of the throughput mix (try-on v1.6, background removal, "
        "product-to-model, try-on max, edit), image URLs, two metadata columns; estimated "
        f"credits {r['credits']:,}. Steps are the library calls run_manifest makes: "
        "read_manifest, validate_manifest, ValidationReport.estimated_credits, make_plan, "
        "then results_table + write_results (Parquet and CSV) for one result row per job.",
        "peak RSS = ru_maxrss of the measuring subprocess (Python, pyarrow and "
        "fashn_prefect imports included).",
    ]
    t.notes.append(load_note(load))
    emit("planning", [t])


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "measure":
        print(json.dumps(measure(sys.argv[2], sys.argv[3])))
    else:
        main()
