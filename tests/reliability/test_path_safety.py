"""Scenario 5: row ids that look like paths or URLs never write outside the output root.

A real run (emulator + Prefect) over a manifest whose row ids are traversals, absolute
paths, URL schemes and names of the product's own folders, to a local output root and
to an S3 one (moto): every object written lies under the root, in the folder it belongs
in, and every row id survives intact in the results. A property test covers the naming
function for any string.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from _helpers import (
    check_invariants,
    host_images,
    latest_results,
    specs_of,
    tryon_rows,
    write_manifest,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from support import TIME_SCALE, scan_for_secret

from fashn_prefect.credentials import FashnCredentials
from fashn_prefect.emulator import EmulatorConfig, EmulatorServer
from fashn_prefect.flows import run_manifest
from fashn_prefect.run.outcome import summary_of
from fashn_prefect.store.fs import filesystem, join, safe_name

HOSTILE_IDS = [
    "../escape",
    "../../../../../../tmp/fashn-reliability-escape",
    "/tmp/fashn-reliability-absolute",
    "/etc/passwd",
    "file:///tmp/fashn-reliability-file",
    "s3://other-bucket/fashn-reliability",
    "memory://fashn-reliability",
    "http://evil.example/x.png",
    "..",
    ".",
    "./.hidden",
    "a/../../b",
    "images/../../x",
    "results/run-override.parquet",
    "ledger/../../ledger",
    "~/fashn-reliability",
    "C:\\Windows\\fashn-reliability",
    "\\\\server\\share\\x",
    "%2e%2e%2fencoded",
    "\u2025\u2215x",  # two-dot leader + division slash
    "\uff0e\uff0e\uff0fwide",
    "x" * 300,
    "nul",
    "emoji-\U0001f600/../y",
]
ESCAPES = [
    Path("/tmp/fashn-reliability-escape"),
    Path("/tmp/fashn-reliability-absolute"),
    Path("/tmp/fashn-reliability-file"),
    Path.home() / "fashn-reliability",
]
FOLDERS = {"images", "ledger", "results", "runs", "thumbnails"}


def _tree(root: Path) -> set[Path]:
    return {Path(d) / f for d, _, files in os.walk(root) for f in files}


@pytest.mark.reliability
@pytest.mark.parametrize("store", ["local", "s3"])
async def test_hostile_row_ids_stay_inside_the_output_root(
    prefect_harness: None,
    tmp_path: Path,
    secret_key: str,
    all_logs: list[str],
    report: Any,
    request: pytest.FixtureRequest,
    store: str,
) -> None:
    options: dict[str, Any] = {}
    if store == "s3":
        endpoint = request.getfixturevalue("moto_server")
        options = {
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"endpoint_url": endpoint},
            "use_listings_cache": False,
        }
        fs, _ = filesystem("s3://reliability-paths", **options)
        fs.mkdir("reliability-paths")
        output = "s3://reliability-paths/inner/out"
    else:
        output = str(tmp_path / "inner" / "out")
    before = _tree(tmp_path)
    with EmulatorServer(
        EmulatorConfig(api_keys=(secret_key,), time_scale=TIME_SCALE, seed=5)
    ) as emu:
        models, garments = host_images(emu, "rel")
        rows = tryon_rows(len(HOSTILE_IDS), models, garments, row_ids=HOSTILE_IDS)
        manifest = write_manifest(str(tmp_path / "manifest.csv"), rows)
        specs = specs_of(manifest)
        summary = await summary_of(
            run_manifest(
                manifest,
                output,
                credentials=FashnCredentials(api_key=secret_key, base_url=emu.url),
                time_scale=TIME_SCALE,
                shared_limits=False,
                write_csv=True,
                storage_options=options,
            )
        )
        results = latest_results(output, options)
        check = check_invariants(specs, results, emu.stats(), output, options)

    fs, root = filesystem(output, **options)
    written = fs.find(root)
    if store == "s3":
        everything = fs.find("reliability-paths")
        outside = [p for p in everything if not p.startswith(root + "/")]
        outside += ["s3://other-bucket"] if fs.exists("other-bucket") else []
    else:
        new_local = _tree(tmp_path) - before
        outside = [str(p) for p in new_local if not str(p).startswith(root + "/")]
        outside = [p for p in outside if not p.endswith("manifest.csv")]
    outside += [str(p) for p in ESCAPES if p.exists()]
    misplaced = [p for p in written if not _in_its_folder(p[len(root) + 1 :])]
    leaks = scan_for_secret(secret_key, texts=[*all_logs, repr(summary)])
    leaks += [p for p in written if secret_key.encode() in fs.cat_file(p)]
    result = report.scenario(f"5 path safety ({store})")
    result.counts.update(
        {
            "rows": len(HOSTILE_IDS),
            "faults injected": f"{len(HOSTILE_IDS)} hostile ids",
            "retries": 0,
            "duplicates": check.double_charged_rows,
            "bytes stored": check.bytes_stored,
        }
    )
    result.figures.update(
        {
            "rows": len(HOSTILE_IDS),
            "objects_written": len(written),
            "outside_root": len(outside),
            "misplaced": len(misplaced),
            **check.summary(),
            "secret_hits": len(leaks),
        }
    )
    result.invariants.update(
        {
            "inside_root": "ok" if not outside and not misplaced else "ESCAPED",
            "invariants": "ok" if not check.problems else f"{len(check.problems)} violations",
            "secret": "ok" if not leaks else "LEAKED",
        }
    )
    assert not outside, outside
    assert not misplaced, misplaced
    assert not check.problems, check.problems
    assert sorted(r["row_key"] for r in results) == sorted(HOSTILE_IDS)
    assert all(r["status"] == "completed" for r in results)
    # One image per row, each with its own name; every row's ledger record settled into
    # the run's snapshot, once, under its own key (no loose record is left).
    assert len([p for p in written if "/images/" in p]) == len(HOSTILE_IDS)
    assert not [p for p in written if "/ledger/" in p and "/ledger/snapshots/" not in p]
    (snapshot,) = [p for p in written if "/ledger/snapshots/" in p]
    with fs.open(snapshot, "rb") as handle:
        keys = pq.read_table(handle, columns=["row_key"])["row_key"].to_pylist()
    assert sorted(keys) == sorted(HOSTILE_IDS)
    assert not leaks, leaks


def _in_its_folder(path: str) -> bool:
    """Whether a path under the output root is a file directly in one of its folders (or
    a ledger snapshot, one level further down)."""
    folder = path.split("/", 1)[0]
    depth = 2 if path.startswith("ledger/snapshots/") else 1
    return folder in FOLDERS and path.count("/") == depth


@settings(max_examples=300, deadline=None)
@given(keys=st.lists(st.text(max_size=120), min_size=2, max_size=5, unique=True))
def test_any_row_key_names_one_file_inside_its_folder(keys: list[str]) -> None:
    names = [safe_name(k) for k in keys]
    assert len(set(names)) == len(names)  # distinct keys never share a file
    for name in names:
        assert name and "/" not in name and "\\" not in name and ":" not in name
        assert not name.startswith(".") and name not in (".", "..")
        assert len(name) <= 100
        path = join("root/images", f"{name}-0.png")
        assert os.path.normpath(path).startswith("root/images/")
