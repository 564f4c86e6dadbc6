"""Scenario 3: S3 (a moto server) fails and times out for a while during a run.

All of the run's S3 traffic goes through :class:`faultproxy.FaultProxy`, which cycles
through outage windows: connections reset, requests that are never answered (the
client's read timeout fires) and uploads cut off half way. Extra outages are aimed at the
results table's and the run report's uploads, whenever they happen.

Meanwhile an auditor reads the bucket directly (not through the proxy) over and over:
every object it can see must be whole (Parquet parses, images decode, JSON loads).
Afterwards the usual invariants hold, and the faults were retried: they hit images,
ledger records and the results table, and nothing is missing.
"""

from __future__ import annotations

import io
import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

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
from faultproxy import FaultProxy
from PIL import Image
from support import TIME_SCALE, audit_tree, prefect_texts, scan_for_secret

from fashn_prefect.credentials import FashnCredentials
from fashn_prefect.emulator import EmulatorConfig, EmulatorServer
from fashn_prefect.flows import run_manifest
from fashn_prefect.run.outcome import summary_of
from fashn_prefect.store.fs import filesystem

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(600)]

ROWS = 60
# (mode, real seconds): the outage cycle, repeated until the run ends.
CYCLE = (
    ("pass", 0.8),
    ("reset", 0.6),
    ("pass", 0.8),
    ("stall", 1.2),
    ("pass", 0.8),
    ("truncate", 0.5),
)


class Auditor(threading.Thread):
    """Reads every new or changed object under a prefix straight from moto, until stopped."""

    def __init__(self, endpoint: str, bucket: str, prefix: str) -> None:
        super().__init__(name="s3-auditor", daemon=True)
        import boto3

        self.client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        self.bucket, self.prefix = bucket, prefix
        self.stop = threading.Event()
        self.seen: dict[str, str] = {}
        self.reads = 0
        self.passes = 0
        self.problems: list[str] = []

    def run(self) -> None:
        while not self.stop.wait(0.1):
            self.sweep()
        self.sweep()

    def sweep(self) -> None:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix
        )
        for page in pages:
            for item in page.get("Contents", []):
                key, etag = item["Key"], item["ETag"]
                if self.seen.get(key) == etag:
                    continue
                self.seen[key] = etag
                self.check(key)
        self.passes += 1

    def check(self, key: str) -> None:
        try:
            data = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return
        self.reads += 1
        try:
            if key.endswith(".parquet"):
                pq.read_table(io.BytesIO(data))
            elif "/images/" in key or "/thumbnails/" in key:
                with Image.open(io.BytesIO(data)) as image:
                    image.load()
            elif key.endswith(".json"):
                json.loads(data)
            elif key.endswith(".html"):
                assert data.rstrip().endswith(b"</html>"), "truncated page"
        except Exception as exc:
            self.problems.append(f"{key}: {type(exc).__name__}: {exc} ({len(data)} bytes)")


def _cycle(proxy: FaultProxy, stop: threading.Event) -> list[str]:
    """Run the outage cycle in a thread until ``stop`` is set; returns the modes applied."""
    log: list[str] = []

    def run() -> None:
        while not stop.is_set():
            for mode, seconds in CYCLE:
                proxy.set_mode(mode)
                log.append(mode)
                if stop.wait(seconds):
                    break
        proxy.set_mode("pass")

    threading.Thread(target=run, name="outage-cycle", daemon=True).start()
    return log


async def test_s3_outages_are_retried_and_never_expose_partial_objects(
    prefect_harness: None,
    moto_server: str,
    tmp_path: Path,
    secret_key: str,
    all_logs: list[str],
    report,
) -> None:
    direct: dict[str, Any] = {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": moto_server},
        "use_listings_cache": False,
    }
    bucket = "reliability-storage"
    fs, _ = filesystem(f"s3://{bucket}", **direct)
    fs.mkdir(bucket)
    output = f"s3://{bucket}/out"
    up = urlparse(moto_server)
    with (
        EmulatorServer(
            EmulatorConfig(api_keys=(secret_key,), time_scale=TIME_SCALE, seed=31)
        ) as emu,
        FaultProxy(up.hostname or "127.0.0.1", up.port or 80) as proxy,
    ):
        # What a user passes for a flaky store: short timeouts (botocore's default retries).
        faulty: dict[str, Any] = {
            **direct,
            "client_kwargs": {"endpoint_url": proxy.url},
            "config_kwargs": {
                "connect_timeout": 1,
                "read_timeout": 1,
            },
        }
        models, garments = host_images(emu, "rel")
        manifest = write_manifest(
            f"s3://{bucket}/manifest.csv", tryon_rows(ROWS, models, garments), direct
        )
        specs = specs_of(manifest, direct)
        auditor = Auditor(moto_server, bucket, "out/")
        stop = threading.Event()
        # Whatever the cycle is doing then, the results table and the run report meet a
        # reset, a timeout and a cut-off upload before their write gets through.
        proxy.fail_requests(f"PUT /{bucket}/out/results/", ["reset", "stall", "truncate"])
        proxy.fail_requests(f"PUT /{bucket}/out/runs/", ["truncate", "stall"])
        auditor.start()
        cycle_log = _cycle(proxy, stop)
        try:
            summary = await summary_of(
                run_manifest(
                    manifest,
                    output,
                    credentials=FashnCredentials(api_key=secret_key, base_url=emu.url),
                    time_scale=TIME_SCALE,
                    shared_limits=False,
                    storage_options=faulty,
                )
            )
        finally:
            stop.set()
            auditor.stop.set()
            auditor.join(timeout=30)
        stats = emu.stats()
        rows = latest_results(output, direct)
        check = check_invariants(specs, rows, stats, output, direct)
        # A second run over the same store, with no faults: everything is already there.
        rerun = await summary_of(
            run_manifest(
                manifest,
                output,
                credentials=FashnCredentials(api_key=secret_key, base_url=emu.url),
                time_scale=TIME_SCALE,
                shared_limits=False,
                storage_options=faulty,
            )
        )
        rerun_stats = emu.stats()

    fs, _ = filesystem(output, **direct)
    tree = audit_tree(fs, f"{bucket}/out")
    hit_folders = Counter(
        next((f for f in ("images", "ledger", "results", "runs") if f"/out/{f}/" in line), "other")
        for _, line in proxy.hits
    )
    texts = [*all_logs, repr(summary), repr(rerun), *await prefect_texts()]
    leaks = scan_for_secret(secret_key, texts=texts)
    leaks += [k for k in auditor.seen if secret_key in json.dumps(k)]
    leaks += scan_bucket_for_secret(fs, f"{bucket}/out", secret_key)
    result = report.scenario("3 storage faults")
    result.counts.update(
        {
            "rows": ROWS,
            "faults injected": sum(proxy.injected.values()),
            # Every hit request was answered by a retry: all objects ended up whole.
            "retries": sum(1 for _, line in proxy.hits if line.startswith(("PUT", "GET", "HEAD"))),
            "duplicates": check.double_charged_rows,
            "bytes stored": check.bytes_stored,
        }
    )
    result.figures.update(
        {
            "rows": ROWS,
            "faults": sum(proxy.injected.values()),
            **{f"s3_{mode}": n for mode, n in sorted(proxy.injected.items())},
            "hit": dict(hit_folders),
            "outage_windows": sum(1 for m in cycle_log if m != "pass"),
            "connections": proxy.connections,
            "auditor_reads": auditor.reads,
            **check.summary(),
            "objects": dict(tree),
            "rerun.predictions_added": len(rerun_stats["predictions"]) - len(stats["predictions"]),
            "secret_hits": len(leaks),
        }
    )
    result.invariants.update(
        {
            "invariants": "ok" if not check.problems else f"{len(check.problems)} violations",
            "never_partial": "ok" if not auditor.problems else f"{len(auditor.problems)} seen",
            "secret": "ok" if not leaks else "LEAKED",
        }
    )
    assert not auditor.problems, auditor.problems[:10]
    assert not check.problems, check.problems[:20]
    assert check.statuses["completed"] == ROWS, check.errors
    assert not leaks, leaks
    # The outages really hit uploads of images, ledger records and the results table.
    assert proxy.injected["reset"] and proxy.injected["stall"] and proxy.injected["truncate"]
    assert hit_folders["images"] and hit_folders["ledger"], proxy.hits
    assert any("/out/results/" in line for _, line in proxy.hits), proxy.hits
    assert rerun["totals"]["skipped"] == ROWS
    assert len(rerun_stats["predictions"]) == len(stats["predictions"])
    assert tree.get("images") == ROWS and tree.get("parquet") == 2 and not tree.get("other")


def scan_bucket_for_secret(fs: Any, root: str, secret: str) -> list[str]:
    """Objects under ``root`` whose bytes contain ``secret``."""
    needle = secret.encode()
    return [path for path in fs.find(root) if needle in fs.cat_file(path)]
