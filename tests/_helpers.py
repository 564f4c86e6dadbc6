"""Test helpers shared by the unit, flow and reliability suites (one copy of each).

* Images: :func:`put_images` (on any fsspec URL), :func:`host_images` (on the emulator),
  :func:`png_data_uri`.
* Manifests: :func:`mixed_rows` (six models), :func:`tryon_rows` / :func:`catalog_rows`
  (distinct try-on rows), :func:`write_manifest` (CSV or Parquet), :func:`specs_of`.
* The emulator: :func:`emulator` (started on the test time scale), :func:`api_client` and
  :func:`wait_terminal` (raw HTTP), and its ground truth: :func:`submissions`,
  :func:`run_calls`, :func:`predictions_per_input`, :func:`limit_rejections`.
* Results: :func:`results` (one table), :func:`latest_results`, :func:`all_results`,
  :func:`latest_status`, and :func:`check_invariants`, the invariants every run must keep
  against the emulator's ground truth (``emu.stats()``):

  * ``complete``: every manifest row appears exactly once in the run's results table;
  * ``true_error``: every row completed (or was skipped), or failed with the error the API
    really gave it (compared with the emulator's prediction error), or was flagged
    ambiguous, or failed with OutputUnavailable with its charge reported;
  * ``ground_truth``: per prediction id, the credits and the status in the results equal
    the emulator's;
  * ``no_double_charge``: no row has two charged predictions unless it is flagged
    ambiguous, and a run charges a row a second time only when it asked for resubmission
    (``resubmit_ambiguous``); charges made before the run (``before``) were checked then;
  * ``unreported_charges``: every charged prediction is listed in its row's results,
    unless the row is flagged ambiguous (the id of an ambiguous submission is unknowable);
  * ``outputs_stored``: every output of a completed row is in storage and decodes.
"""

from __future__ import annotations

import base64
import csv
import io
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import httpx
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from fashn_prefect.cli.demo_images import garment, model
from fashn_prefect.emulator import EmulatorConfig, EmulatorServer
from fashn_prefect.emulator.state import inputs_hash
from fashn_prefect.run.manifest import read_manifest
from fashn_prefect.run.validate import RowSpec, validate_manifest
from fashn_prefect.store.fs import filesystem

TIME_SCALE = 0.02
MODEL = "tryon-v1.6"
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


# --------------------------------------------------------------------------- images


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


def host_images(emu: EmulatorServer, prefix: str = "img") -> tuple[list[str], list[str]]:
    """Host 3 person and 6 garment images on the emulator; return their URLs."""
    put = emu.put_file
    models = [put(f"{prefix}-{n}.png", d, "image/png") for n, d in map(model, range(3))]
    garments = [put(f"{prefix}-{n}.png", d, "image/png") for n, d in map(garment, range(6))]
    return models, garments


def png_data_uri(
    color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (60, 90)
) -> str:
    """A plain PNG of ``size`` in ``color`` as a ``data:image/png;base64,`` URI."""
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


# --------------------------------------------------------------------------- manifests


def tryon_rows(
    count: int,
    models: list[str],
    garments: list[str],
    *,
    prefix: str = "row",
    seed_base: int = 1000,
    row_ids: Iterable[str] | None = None,
) -> list[dict[str, str]]:
    """``count`` distinct try-on rows (distinct seeds, so every row's inputs are unique)."""
    ids = list(row_ids) if row_ids is not None else [f"{prefix}-{i:05d}" for i in range(count)]
    return [
        {
            "row_id": ids[i],
            "model_name": MODEL,
            "model_image": models[i % len(models)],
            "garment_image": garments[i % len(garments)],
            "category": "tops",
            "mode": "performance",
            "seed": str(seed_base + i),
            "sku": f"SKU-{i:05d}",
        }
        for i in range(count)
    ]


def catalog_rows(
    count: int, emu: EmulatorServer, *, prefix: str = "SKU", seed_base: int = 1000
) -> list[dict[str, str]]:
    """``count`` try-on rows on images hosted by ``emu``, with brand and season metadata."""
    models, garments = host_images(emu, "flow")
    rows = tryon_rows(count, models, garments, prefix=prefix, seed_base=seed_base)
    for i, row in enumerate(rows):
        del row["sku"]
        row.update(brand="acme" if i % 2 else "northwind", season=f"SS{24 + i % 3}")
    return rows


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
    url: str | Path, rows: list[dict[str, Any]], storage_options: dict[str, Any] | None = None
) -> str:
    """Write ``rows`` to ``url`` as CSV or Parquet (by extension); returns ``url`` as text."""
    url = str(url)
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


def specs_of(manifest_url: str, storage_options: dict[str, Any] | None = None) -> list[RowSpec]:
    """The valid rows of a manifest, as the pipeline sees them."""
    report = validate_manifest(
        read_manifest(manifest_url, storage_options=storage_options),
        storage_options=storage_options,
    )
    assert report.ok, report.format()
    return report.rows


# --------------------------------------------------------------------------- the emulator


def emulator(**config: Any) -> EmulatorServer:
    """A started emulator on the test time scale (the caller stops it)."""
    config.setdefault("time_scale", TIME_SCALE)
    return EmulatorServer(EmulatorConfig(**config)).start()


def api_client(server: EmulatorServer, key: str | None = None) -> httpx.Client:
    """A raw HTTP client for the emulator's API, authenticated with ``key`` (default: its own)."""
    return httpx.Client(
        base_url=server.url,
        headers={"Authorization": f"Bearer {key or server.api_key}"},
        trust_env=False,
        timeout=10,
    )


def wait_terminal(
    client: httpx.Client, pid: str, timeout: float = 10.0, *, tolerate_errors: bool = False
) -> httpx.Response:
    """Poll ``GET /v1/status/{pid}`` until the prediction is completed or failed.

    Every answer must be 200 unless ``tolerate_errors`` (a test that injects 5xx faults).
    """
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/v1/status/{pid}")
        if not tolerate_errors:
            assert response.status_code == 200, response.text
        if response.status_code == 200 and response.json()["status"] in ("completed", "failed"):
            return response
        assert time.monotonic() < deadline, f"{pid} not terminal after {timeout} s"
        time.sleep(0.005)


def submissions(stats: dict[str, Any]) -> int:
    """Accepted ``POST /v1/run`` calls (predictions created) on the emulator."""
    return len(stats["predictions"])


def run_calls(stats: dict[str, Any]) -> int:
    """Every authenticated ``POST /v1/run`` the emulator saw (accepted or rejected)."""
    return sum(per_key.get("run", 0) for per_key in stats["requests"].values())


def predictions_per_input(stats: dict[str, Any]) -> Counter[str]:
    """How many predictions were created for each distinct set of inputs (one per row)."""
    return Counter(p["inputs_hash"] for p in stats["predictions"])


def limit_rejections(stats: dict[str, Any]) -> dict[str, int]:
    """429s the emulator served for rate or concurrency limits, by name (empty: none)."""
    rejected = stats["rejected"]
    return {
        name: rejected.get(name, 0)
        for name in ("RateLimitExceeded", "ConcurrencyLimitExceeded")
        if rejected.get(name, 0)
    }


# --------------------------------------------------------------------------- results


def results(uri: str, storage_options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The rows of one results Parquet file."""
    fs, path = filesystem(uri, **(storage_options or {}))
    rows: list[dict[str, Any]] = pq.read_table(io.BytesIO(fs.cat_file(path))).to_pylist()
    return rows


def results_files(output: str, storage_options: dict[str, Any] | None = None) -> list[str]:
    """Every results Parquet file under ``output`` (oldest first by name)."""
    fs, root = filesystem(output, **(storage_options or {}))
    try:
        found = fs.find(f"{root}/results")
    except FileNotFoundError:
        return []
    return sorted(p for p in found if p.endswith(".parquet"))


def latest_results(
    output: str, storage_options: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Rows of the newest results table under ``output``."""
    fs, _ = filesystem(output, **(storage_options or {}))
    files = results_files(output, storage_options)
    assert files, f"no results table under {output}"
    newest = max(
        files, key=lambda p: (fs.info(p).get("mtime") or fs.info(p).get("LastModified"), p)
    )
    table: pa.Table = pq.read_table(io.BytesIO(fs.cat_file(newest)))
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def all_results(output: Path | str) -> list[dict[str, Any]]:
    """Every row of every results table under ``output``."""
    rows: list[dict[str, Any]] = []
    for path in sorted((Path(output) / "results").glob("*.parquet")):
        rows += pq.read_table(path).to_pylist()
    return rows


def latest_status(output: Path | str) -> dict[str, str]:
    """The final status of each row key (completed wins over earlier failures)."""
    status: dict[str, str] = {}
    for row in all_results(output):
        if status.get(row["row_key"]) not in ("completed", "skipped"):
            status[row["row_key"]] = row["status"]
    return status


# --------------------------------------------------------------------------- invariants


@dataclass
class Check:
    """Outcome of the invariant checks for one results table."""

    rows: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    ambiguous_rows: int = 0
    double_charged_rows: int = 0
    double_charged_unflagged: int = 0
    unreported_charges: int = 0
    ambiguous_credits: int = 0
    reported_credits: int = 0
    emulator_credits: int = 0
    outputs_checked: int = 0
    bytes_stored: int = 0
    output_unavailable_rows: int = 0
    problems: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "completed": self.statuses.get("completed", 0) + self.statuses.get("skipped", 0),
            "failed": self.statuses.get("failed", 0),
            "ambiguous": self.ambiguous_rows,
            "double_charged(flagged)": self.double_charged_rows,
            "credits results/emulator": f"{self.reported_credits}+{self.ambiguous_credits}amb"
            f"/{self.emulator_credits}",
            "outputs": self.outputs_checked,
            "bytes_stored": self.bytes_stored,
        }


def check_invariants(
    specs: list[RowSpec],
    rows: list[dict[str, Any]],
    stats: dict[str, Any],
    output: str,
    storage_options: dict[str, Any] | None = None,
    *,
    check_outputs: bool = True,
    before: dict[str, Any] | None = None,
    resubmit_ambiguous: bool = False,
) -> Check:
    """Check the suite's invariants; every violation is listed in ``Check.problems``.

    ``stats`` is the emulator's ground truth after the run, ``before`` the same before it
    (None: the output root was new), and ``resubmit_ambiguous`` whether the run asked for
    ambiguous rows to be submitted again.
    """
    check = Check(rows=len(rows))
    earlier = {p["id"] for p in (before or {}).get("predictions", [])}
    by_hash = {inputs_hash(s.inputs): s for s in specs}
    predictions = {p["id"]: p for p in stats["predictions"]}
    per_row: dict[str, list[dict[str, Any]]] = {}
    for p in stats["predictions"]:
        spec = by_hash.get(p["inputs_hash"])
        if spec is None:
            check.problems.append(f"emulator prediction {p['id']} matches no manifest row")
            continue
        per_row.setdefault(spec.row_key, []).append(p)
    keys = Counter(r["row_key"] for r in rows)
    expected = Counter(s.row_key for s in specs)
    if keys != expected:
        missing = sorted((expected - keys).elements())[:5]
        extra = sorted((keys - expected).elements())[:5]
        check.problems.append(f"complete: rows missing {missing}, extra/duplicated {extra}")
    fs, _ = filesystem(output, **(storage_options or {}))
    for row in rows:
        key, status = row["row_key"], row["status"]
        check.statuses[status] += 1
        ids: list[str] = row["prediction_ids"] or []
        if row["ambiguous"]:
            check.ambiguous_rows += 1
        if row["error_name"]:
            check.errors[row["error_name"]] += 1
        known = [predictions[i] for i in ids if i in predictions]
        if len(known) != len(ids):
            check.problems.append(f"ground_truth: {key} lists ids unknown to the API")
        # Credits per prediction id equal the emulator's.
        truth = sum(p["credits"] for p in known)
        if status != "skipped" and truth != row["credits_charged"]:
            check.problems.append(
                f"ground_truth: {key} reports {row['credits_charged']} credits, API charged {truth}"
            )
        check.reported_credits += truth
        charged = [p for p in per_row.get(key, []) if p["credits"] > 0]
        if len(charged) > 1:
            check.double_charged_rows += 1
            if not row["ambiguous"]:
                check.double_charged_unflagged += 1
                check.problems.append(f"no_double_charge: {key} charged {len(charged)} times")
            elif not resubmit_ambiguous and any(p["id"] not in earlier for p in charged):
                check.problems.append(
                    f"no_double_charge: {key} charged {len(charged)} times, again in a run "
                    "that did not ask for resubmission"
                )
        for p in charged:
            if p["id"] not in ids:
                if row["ambiguous"]:
                    check.ambiguous_credits += p["credits"]
                else:
                    check.unreported_charges += 1
                    check.problems.append(f"unreported_charges: {key} prediction {p['id']}")
        last = known[-1] if known else None
        if status in ("completed", "skipped"):
            if last is None or last["status"] != "completed":
                check.problems.append(f"ground_truth: {key} completed but API says {last}")
            uris = row["output_uris"] or []
            if last is not None and len(uris) != last["output_count"]:
                check.problems.append(f"outputs_stored: {key} has {len(uris)} outputs")
            if check_outputs:
                for uri in uris:
                    check.bytes_stored += _check_image(fs, uri, check)
                    check.outputs_checked += 1
        elif status == "failed":
            name = row["error_name"]
            if row["ambiguous"]:
                continue
            if name == "OutputUnavailable":
                check.output_unavailable_rows += 1
                if last is None or last["status"] != "completed" or not row["credits_charged"]:
                    check.problems.append(f"true_error: {key} OutputUnavailable without charge")
                continue
            api_error = (last or {}).get("error") or {}
            if last is None or last["status"] != "failed" or api_error.get("name") != name:
                check.problems.append(
                    f"true_error: {key} failed with {name}, API says {last and last['status']} "
                    f"{api_error.get('name')}"
                )
        else:
            check.problems.append(f"true_error: {key} has status {status}")
    check.emulator_credits = stats["credits_charged"]
    return check


def _check_image(fs: fsspec.AbstractFileSystem, uri: str, check: Check) -> int:
    path = fs._strip_protocol(uri)
    try:
        data = fs.cat_file(path)
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except Exception as exc:
        check.problems.append(f"outputs_stored: {uri}: {type(exc).__name__}: {exc}")
        return 0
    return len(data)


def count_validations(monkeypatch: Any) -> list[str]:
    """Record the source of every manifest a run validates (the real validation still runs):
    the list grows by one entry per validation."""
    from fashn_prefect.run import request

    seen: list[str] = []
    real = request.validate_manifest

    def validate(manifest: Any, **options: Any) -> Any:
        seen.append(manifest.url)
        return real(manifest, **options)

    monkeypatch.setattr(request, "validate_manifest", validate)
    return seen
