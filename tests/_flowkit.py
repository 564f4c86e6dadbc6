"""Helpers for the flow and deployment tests: catalogs on the emulator, ground truth, PNGs."""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from fashn_prefect.cli.demo_images import garment, model
from fashn_prefect.emulator import EmulatorServer

TIME_SCALE = 0.02
MODEL = "tryon-v1.6"


def host_images(emu: EmulatorServer) -> tuple[list[str], list[str]]:
    """Host 3 person and 6 garment images on the emulator; return their URLs."""
    models = [emu.put_file(f"flow-{n}.png", d, "image/png") for n, d in map(model, range(3))]
    garments = [emu.put_file(f"flow-{n}.png", d, "image/png") for n, d in map(garment, range(6))]
    return models, garments


def catalog_rows(
    count: int, emu: EmulatorServer, *, prefix: str = "SKU", seed_base: int = 1000
) -> list[dict[str, str]]:
    """``count`` distinct try-on rows (distinct seeds), with brand and season metadata."""
    models, garments = host_images(emu)
    return [
        {
            "row_id": f"{prefix}-{i:05d}",
            "model_name": MODEL,
            "model_image": models[i % len(models)],
            "garment_image": garments[i % len(garments)],
            "category": "tops",
            "mode": "performance",
            "seed": str(seed_base + i),
            "brand": "acme" if i % 2 else "northwind",
            "season": f"SS{24 + i % 3}",
        }
        for i in range(count)
    ]


def write_csv(path: Path, rows: list[dict[str, str]]) -> str:
    """Write a CSV manifest; return its path as a string."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return str(path)


def predictions_per_input(stats: dict[str, Any]) -> Counter[str]:
    """Predictions the emulator created per distinct set of inputs (one per row)."""
    return Counter(p["inputs_hash"] for p in stats["predictions"])


def limit_rejections(stats: dict[str, Any]) -> int:
    """429s served for the rate or in-flight limits."""
    rejected = stats["rejected"]
    return sum(rejected.get(n, 0) for n in ("RateLimitExceeded", "ConcurrencyLimitExceeded"))


def all_results(output: Path) -> list[dict[str, Any]]:
    """Every row of every results table under ``output``."""
    rows: list[dict[str, Any]] = []
    for path in sorted((output / "results").glob("*.parquet")):
        rows += pq.read_table(path).to_pylist()
    return rows


def latest_status(output: Path) -> dict[str, str]:
    """The final status of each row key (completed wins over earlier failures)."""
    status: dict[str, str] = {}
    for row in all_results(output):
        if status.get(row["row_key"]) not in ("completed", "skipped"):
            status[row["row_key"]] = row["status"]
    return status
