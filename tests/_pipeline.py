"""Helpers for the manifest-flow tests: images, manifests, results and emulator ground truth."""

from __future__ import annotations

import csv
import io
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from fashn_prefect.cli.demo_images import garment, model
from fashn_prefect.emulator import EmulatorConfig, EmulatorServer
from fashn_prefect.store.fs import filesystem

TIME_SCALE = 0.02
MANIFEST_COLUMNS = (
    "row_id",
    "model_name",
    "model_image",
    "garment_image",
    "product_image",
    "image",
    "prompt",
    "aspect_ratio",
    "mode",
    "category",
    "generation_mode",
    "num_images",
    "sku",
)


def put_images(root: str, storage_options: dict[str, Any] | None = None) -> dict[str, list[str]]:
    """Write 3 person and 6 garment PNGs under ``root`` (any fsspec URL); return their URLs."""
    fs, path = filesystem(root, **(storage_options or {}))
    urls: dict[str, list[str]] = {"models": [], "garments": []}
    for kind, make, count in (("models", model, 3), ("garments", garment, 6)):
        for index in range(count):
            name, data = make(index)
            target = f"{path}/{kind}/{name}.png"
            fs.makedirs(f"{path}/{kind}", exist_ok=True)
            fs.pipe_file(target, data)
            urls[kind].append(str(fs.unstrip_protocol(target)) if "://" in root else target)
    return urls


def mixed_rows(count: int, images: dict[str, list[str]], prefix: str = "r") -> list[dict[str, Any]]:
    """``count`` distinct rows cycling through six models (some with two outputs)."""
    models, garments = images["models"], images["garments"]
    rows: list[dict[str, Any]] = []
    for i in range(count):
        m, g = models[i % len(models)], garments[i % len(garments)]
        row: dict[str, Any] = dict.fromkeys(MANIFEST_COLUMNS)
        row.update(row_id=f"{prefix}-{i:03d}", sku=f"SKU-{i:03d}")
        kind = i % 6
        if kind == 0:
            row.update(
                model_name="tryon-v1.6",
                model_image=m,
                garment_image=g,
                mode="performance",
                category="tops",
            )
        elif kind == 1:
            row.update(model_name="tryon-max", model_image=m, product_image=g, num_images=2)
        elif kind == 2:
            row.update(model_name="background-remove", image=g)
        elif kind == 3:
            row.update(model_name="edit", image=g, prompt=f"make it look like photo {i}")
        elif kind == 4:
            row.update(model_name="reframe", image=g, aspect_ratio="3:4", generation_mode="fast")
        else:
            row.update(model_name="product-to-model", product_image=g, prompt=f"studio shot {i}")
        rows.append(row)
    return rows


def write_manifest(
    url: str, rows: list[dict[str, Any]], storage_options: dict[str, Any] | None = None
) -> str:
    """Write ``rows`` to ``url`` as CSV or Parquet (by extension); returns ``url``."""
    fs, path = filesystem(url, **(storage_options or {}))
    if url.endswith(".parquet"):
        table = pa.Table.from_pylist(rows)
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        data = buffer.getvalue()
    else:
        text = io.StringIO()
        columns = list(dict.fromkeys(k for r in rows for k in r))
        writer = csv.DictWriter(text, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
        data = text.getvalue().encode()
    parent = path.rsplit("/", 1)[0]
    if parent and "://" not in url:
        fs.makedirs(parent, exist_ok=True)
    fs.pipe_file(path, data)
    return url


def results(uri: str, storage_options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The rows of one results Parquet file."""
    fs, path = filesystem(uri, **(storage_options or {}))
    rows: list[dict[str, Any]] = pq.read_table(io.BytesIO(fs.cat_file(path))).to_pylist()
    return rows


def emulator(**config: Any) -> EmulatorServer:
    """A started emulator on the test time scale (the caller stops it)."""
    config.setdefault("time_scale", TIME_SCALE)
    return EmulatorServer(EmulatorConfig(**config)).start()


def submissions(stats: dict[str, Any]) -> int:
    """Accepted ``POST /v1/run`` calls (predictions created) on the emulator."""
    return len(stats["predictions"])


def run_calls(stats: dict[str, Any]) -> int:
    """Every authenticated ``POST /v1/run`` the emulator saw (accepted or rejected)."""
    return sum(per_key.get("run", 0) for per_key in stats["requests"].values())


def predictions_per_input(stats: dict[str, Any]) -> Counter[str]:
    """How many predictions were created for each distinct set of inputs."""
    return Counter(p["inputs_hash"] for p in stats["predictions"])


def limit_rejections(stats: dict[str, Any]) -> dict[str, int]:
    """429s the emulator served for rate or concurrency limits."""
    rejected = stats["rejected"]
    return {
        name: rejected.get(name, 0)
        for name in ("RateLimitExceeded", "ConcurrencyLimitExceeded")
        if rejected.get(name, 0)
    }
