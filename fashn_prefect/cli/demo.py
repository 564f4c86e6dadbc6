"""``make demo``: the main job end to end on embedded defaults, with no key and no cloud.

It starts the FASHN emulator in-process on a free loopback port, generates a small
catalog (12 garments x 3 models, plus rows that fail the way real ones do), runs it on
Prefect's ephemeral server with a live progress bar, stores everything under
``./demo-output`` through fsspec, prints a summary, audits the credits and writes the
review gallery.
"""

from __future__ import annotations

import csv
import io
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fashn_prefect.cli.demo_images import garment, model

if TYPE_CHECKING:
    from rich.console import Console

    from fashn_prefect.jobs.audit import AuditReport

DEMO_TIME_SCALE = 0.1


def build_catalog(put_file: Any, workdir: Path) -> Path:
    """Write the demo catalog CSV; images are served by ``put_file`` (the emulator)."""
    garments = [garment(i) for i in range(12)]
    models = [model(i) for i in range(3)]
    garment_urls = [(n, put_file(f"{n}.png", data, "image/png")) for n, data in garments]
    model_urls = [(n, put_file(f"{n}.png", data, "image/png")) for n, data in models]
    rows: list[dict[str, str]] = []
    for g, (g_name, g_url) in enumerate(garment_urls):
        for m_name, m_url in model_urls:
            rows.append(
                {
                    "row_id": f"SS27-{g + 1:02d}-{m_name}",
                    "model_name": "tryon-v1.6",
                    "model_image": m_url,
                    "garment_image": g_url,
                    "category": "tops",
                    "image": "",
                    "aspect_ratio": "",
                    "brand": "northwind" if g % 2 else "acme",
                    "catalog": "demo-ss27",
                    "garment": g_name,
                }
            )
    base = garment_urls[0][1].rsplit("/", 1)[0]
    rows.append(
        {  # an image URL that does not resolve: ImageLoadError, like a private bucket
            "row_id": "SS27-broken-link",
            "model_name": "tryon-v1.6",
            "model_image": model_urls[0][1],
            "garment_image": f"{base}/missing-garment.png",
            "category": "tops",
            "image": "",
            "aspect_ratio": "",
            "brand": "acme",
            "catalog": "demo-ss27",
            "garment": "missing",
        }
    )
    rows.append(
        {  # reframing to the ratio the image already has: InputValidationError
            "row_id": "SS27-reframe-square",
            "model_name": "reframe",
            "model_image": "",
            "garment_image": "",
            "category": "",
            "image": garment_urls[1][1],
            "aspect_ratio": "1:1",
            "brand": "northwind",
            "catalog": "demo-ss27",
            "garment": garment_urls[1][0],
        }
    )
    path = workdir / "catalog.csv"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def prepare_environment(output: Path) -> None:
    """Use Prefect's ephemeral server with its own home under the demo output."""
    (output / ".prefect").mkdir(parents=True, exist_ok=True)
    os.environ["PREFECT_HOME"] = str((output / ".prefect").resolve())
    os.environ.pop("PREFECT_API_URL", None)
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")


def run_demo(output: Path) -> dict[str, Any]:
    """Run the whole demo; return the catalog run's summary (also printed)."""
    import asyncio
    from dataclasses import replace

    from rich.console import Console

    from fashn_prefect.cli.progress import row_progress
    from fashn_prefect.credentials import FashnCredentials
    from fashn_prefect.emulator import EmulatorConfig, EmulatorServer
    from fashn_prefect.jobs.audit import run_audit
    from fashn_prefect.jobs.catalog import run_catalog
    from fashn_prefect.run.request import RunRequest
    from fashn_prefect.settings import FashnSettings

    console = Console()
    output.mkdir(parents=True, exist_ok=True)
    root = output / "catalog"
    started = time.monotonic()
    with EmulatorServer(EmulatorConfig(time_scale=DEMO_TIME_SCALE, seed=27)) as emulator:
        catalog = build_catalog(emulator.put_file, output)
        console.print(f"[bold]FASHN emulator[/] at {emulator.url} (time x{1 / DEMO_TIME_SCALE:g})")
        console.print(f"[bold]catalog[/] {catalog} (38 rows)")
        credentials = FashnCredentials(api_key=emulator.api_key, base_url=emulator.url)
        settings = FashnSettings(time_scale=DEMO_TIME_SCALE)
        request = RunRequest(str(root), credentials=credentials, settings=settings)
        first_settings = FashnSettings.build(settings, write_csv=True)
        with row_progress(console):
            first = asyncio.run(
                run_catalog(str(catalog), replace(request, settings=first_settings))
            )
        console.print(f"[bold]first run[/]  {first['message']}")
        submitted_first = len(emulator.stats()["predictions"])
        again = asyncio.run(run_catalog(str(catalog), request))
        console.print(f"[bold]second run[/] {again['message']}")
        stats = emulator.stats()
    audit = run_audit(str(root))
    summary: dict[str, Any] = first["run"]
    print_summary(console, summary, stats, submitted_first, audit, time.monotonic() - started)
    return summary


def print_summary(
    console: Console,
    summary: dict[str, Any],
    stats: dict[str, Any],
    submitted_first: int,
    audit: AuditReport,
    wall: float,
) -> None:
    """The demo's closing table: rows by status, credits, throughput and where things went.

    ``stats`` are the emulator's after both catalog runs; ``submitted_first`` is how many
    predictions it had seen after the first.
    """
    from rich.table import Table

    totals = summary["totals"]
    table = Table(title="fashn-prefect demo")
    table.add_column("what")
    table.add_column("value", overflow="fold")
    for status in ("completed", "failed", "invalid", "skipped"):
        table.add_row(f"rows {status}", str(totals.get(status, 0)))
    for name, count in (totals.get("errors") or {}).items():
        table.add_row(f"  failed with {name}", str(count))
    table.add_row(
        "credits charged", f"{totals['credits_charged']} (emulator: {stats['credits_charged']})"
    )
    table.add_row(
        "throughput",
        f"{summary['rows_per_minute']:.1f} rows/min (emulated time x{1 / DEMO_TIME_SCALE:g})",
    )
    table.add_row("peak predictions in flight", f"{stats['peak_in_flight']} of 6")
    total = len(stats["predictions"])
    table.add_row(
        "submissions",
        f"{total}: first run {submitted_first}, re-run of the "
        f"unchanged catalog {total - submitted_first}",
    )
    anomalies = ", ".join(f"{k} {v}" for k, v in audit.anomaly_counts().items()) or "none"
    table.add_row(
        "credit audit",
        f"{audit.charged} charged, balance moved {audit.balance_movement}, anomalies: {anomalies}",
    )
    table.add_row("results", str(summary["results"]))
    table.add_row("images", str(summary["images"]))
    table.add_row("review gallery", str(summary.get("gallery")))
    table.add_row("audit report", str(audit.files.get("breakdown")))
    table.add_row("spend chart", str(audit.files.get("chart")))
    table.add_row("wall time", f"{wall:.1f} s")
    console.print(table)


def main(output: str = "demo-output") -> None:
    """Entry point for ``fashn-prefect demo``."""
    path = Path(output)
    prepare_environment(path)
    run_demo(path)
