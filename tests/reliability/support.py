"""Shared helpers of the reliability suite: manifests, ground truth, invariants, the report.

Every scenario checks the same invariants against the emulator's ground truth
(``emu.stats()``) and the results tables the product wrote:

* ``complete``: every manifest row appears exactly once in the run's results table;
* ``true_error``: every row completed (or was skipped), or failed with the error the API
  really gave it (compared with the emulator's prediction error), or was flagged ambiguous,
  or failed with OutputUnavailable with its charge reported;
* ``ground_truth``: per prediction id, the credits and the status in the results equal the
  emulator's;
* ``no_double_charge``: no row has two charged predictions unless it is flagged ambiguous;
* ``unreported_charges``: every charged prediction is listed in its row's results, unless
  the row is flagged ambiguous (the id of an ambiguous submission is unknowable);
* ``outputs_stored``: every output of a completed row is in storage and decodes.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import subprocess
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from fashn_prefect.cli.demo_images import garment, model
from fashn_prefect.emulator.state import inputs_hash
from fashn_prefect.run.manifest import read_manifest
from fashn_prefect.run.validate import RowSpec, validate_manifest
from fashn_prefect.store.fs import filesystem

TIME_SCALE = 0.01
MODEL = "tryon-v1.6"


# --------------------------------------------------------------------------- the report


COLUMNS = ("rows", "faults injected", "retries", "duplicates", "bytes stored")


@dataclass
class ScenarioResult:
    """One scenario's headline counts, detailed figures and invariant outcomes."""

    name: str
    counts: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    invariants: dict[str, str] = field(default_factory=dict)


class Report:
    """Session-wide collector; printed at the end of the run and written as Markdown."""

    def __init__(self) -> None:
        self.results: list[ScenarioResult] = []

    def scenario(self, name: str) -> ScenarioResult:
        result = ScenarioResult(name)
        self.results.append(result)
        return result

    def markdown(self) -> str:
        """The scenarios x invariants table (headline counts), then every figure."""
        lines = [
            "| scenario | " + " | ".join(COLUMNS) + " | invariants |",
            "|---|" + "---:|" * len(COLUMNS) + "---|",
        ]
        for r in self.results:
            counts = " | ".join(str(r.counts.get(c, "-")) for c in COLUMNS)
            invariants = ", ".join(f"{k}: {v}" for k, v in r.invariants.items())
            lines.append(f"| {r.name} | {counts} | {invariants} |")
        lines.append("")
        for r in self.results:
            figures = ", ".join(f"{k}={v}" for k, v in r.figures.items())
            lines.append(f"- **{r.name}**: {figures}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- manifests


def upload_images(put_file: Any) -> tuple[list[str], list[str]]:
    """Host 3 person and 6 garment images on the emulator; return their URLs."""
    models = [put_file(f"rel-{n}.png", data, "image/png") for n, data in map(model, range(3))]
    garments = [put_file(f"rel-{n}.png", data, "image/png") for n, data in map(garment, range(6))]
    return models, garments


def manifest_rows(
    count: int, models: list[str], garments: list[str], row_ids: Iterable[str] | None = None
) -> list[dict[str, str]]:
    """``count`` distinct try-on rows (distinct seeds, so every row's inputs are unique)."""
    ids = list(row_ids) if row_ids is not None else [f"row-{i:05d}" for i in range(count)]
    return [
        {
            "row_id": ids[i],
            "model_name": MODEL,
            "model_image": models[i % len(models)],
            "garment_image": garments[i % len(garments)],
            "category": "tops",
            "mode": "performance",
            "seed": str(1000 + i),
            "sku": f"SKU-{i:05d}",
        }
        for i in range(count)
    ]


def write_csv(
    url: str, rows: list[dict[str, str]], storage_options: dict[str, Any] | None = None
) -> str:
    """Write ``rows`` as a CSV manifest at ``url``."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    fs, path = filesystem(url, **(storage_options or {}))
    fs.pipe_file(path, buffer.getvalue().encode())
    return url


def specs_of(manifest_url: str, storage_options: dict[str, Any] | None = None) -> list[RowSpec]:
    """The valid rows of a manifest, as the pipeline sees them."""
    report = validate_manifest(
        read_manifest(manifest_url, storage_options=storage_options),
        storage_options=storage_options,
    )
    assert report.ok, report.format()
    return report.rows


# --------------------------------------------------------------------------- ground truth


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
) -> Check:
    """Check the suite's invariants; every violation is listed in ``Check.problems``."""
    check = Check(rows=len(rows))
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


# --------------------------------------------------------------------------- storage audit


def audit_tree(fs: fsspec.AbstractFileSystem, root: str) -> dict[str, int]:
    """List and read every object under ``root``: Parquet must parse, images must decode.

    Returns counts; raises AssertionError on a partial or corrupt object under a name that
    readers use. A SIGKILL in the middle of a local write can leave the hidden
    ``.tmp-<uuid>`` file that ``atomic_write`` renames into place; every reader skips hidden
    names (``storage.is_hidden``), so such leftovers are counted, not read.
    """
    counts = Counter[str]()
    try:
        paths = fs.find(root)
    except FileNotFoundError:
        return dict(counts)
    for path in paths:
        name = path.rsplit("/", 1)[-1]
        folder = path[len(root) :].strip("/").split("/", 1)[0]
        if name.startswith(".tmp-"):
            counts["hidden_temp_leftovers"] += 1
            continue
        data = fs.cat_file(path)
        if name.endswith(".parquet"):
            pq.read_table(io.BytesIO(data))
            counts["parquet"] += 1
        elif folder == "images":
            with Image.open(io.BytesIO(data)) as image:
                image.load()
            counts["images"] += 1
        elif name.endswith(".json"):
            json.loads(data)
            counts["json"] += 1
        elif folder == "thumbnails":
            with Image.open(io.BytesIO(data)) as image:
                image.load()
            counts["thumbnails"] += 1
        elif name.endswith(".html"):
            assert data.rstrip().endswith(b"</html>"), f"truncated page: {path}"
            counts["html"] += 1
        else:
            counts["other"] += 1
    return dict(counts)


# --------------------------------------------------------------------------- secrets


def scan_for_secret(
    secret: str, *, texts: Iterable[str] = (), roots: Iterable[Path] = ()
) -> list[str]:
    """Where ``secret`` appears: in any of ``texts`` or any file under ``roots``."""
    found = [f"text #{i}" for i, t in enumerate(texts) if secret in t]
    needle = secret.encode()
    for root in roots:
        for dirpath, _, files in os.walk(root):
            for name in files:
                path = Path(dirpath) / name
                try:
                    if needle in path.read_bytes():
                        found.append(str(path))
                except OSError:
                    continue
    return found


# --------------------------------------------------------------------------- processes


def session_processes(sid: int) -> list[int]:
    """Live processes in session ``sid`` (our killed CLI's group and its children)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[3]) == sid:
            pids.append(int(entry.name))
    return pids


def kill_session(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Send ``sig`` to every process of ``proc``'s session (started with a new session)."""
    for _ in range(50):
        pids = session_processes(proc.pid)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        time.sleep(0.05)
    proc.wait(timeout=30)


def proc_memory_mb(pid: int) -> tuple[float, float] | None:
    """(current RSS, peak RSS) of process ``pid`` in MB, from /proc; None once it has exited."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    rss = re.search(r"VmRSS:\s+(\d+)\s+kB", text)
    hwm = re.search(r"VmHWM:\s+(\d+)\s+kB", text)
    if not rss or not hwm:
        return None
    return int(rss.group(1)) / 1024, int(hwm.group(1)) / 1024


def cli_env(home: Path, base_url: str, key: str, log_level: str = "DEBUG") -> dict[str, str]:
    """Environment for a ``fashn-prefect`` CLI subprocess: a private PREFECT_HOME (its own
    ephemeral server and database), the emulator's URL and the secret key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FASHN_"))}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_LOGGING_LEVEL=log_level,
        FASHN_API_KEY=key,
        FASHN_BASE_URL=base_url,
    )
    return env


async def prefect_texts(page: int = 200) -> list[str]:
    """Everything the current Prefect API stored: flow-run parameters and states, task-run
    names, states and messages, artifacts, and every log line (for the secret scan)."""
    from prefect.client.orchestration import get_client

    texts: list[str] = []
    async with get_client() as client:
        for kind in ("flow_runs", "task_runs", "artifacts", "logs"):
            read = getattr(client, f"read_{kind}")
            offset = 0
            while True:
                batch = await read(limit=page, offset=offset)
                texts += [item.model_dump_json() for item in batch]
                if len(batch) < page:
                    break
                offset += page
    return texts
