"""``fashn-prefect``: run manifests through FASHN on Prefect, and run the emulator.

Exit codes of ``run``: 0 every row completed; 1 some rows failed (results still
written); 2 invalid manifest, budget too small or bad configuration (nothing submitted).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fashn_prefect.emulator.cli import emulator_command

app = typer.Typer(
    name="fashn-prefect",
    help=(
        "Dependable FASHN image-generation pipelines on Prefect.\n\n"
        "Examples:\n\n"
        "  fashn-prefect run catalog.csv --output s3://bucket/fashn --budget 500\n\n"
        "  fashn-prefect run catalog.parquet --output ./out --dry-run\n\n"
        "  fashn-prefect emulator --port 8765"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command(
    "emulator",
    help=(
        "Run the offline FASHN API emulator (for tests, demos and CI).\n\n"
        "Example: fashn-prefect emulator --port 8765 --time-scale 0.1, then set "
        "FASHN_BASE_URL=http://127.0.0.1:8765 FASHN_API_KEY=fa-emulator-local-key."
    ),
)(emulator_command)

err = Console(stderr=True)


def _fail(message: str, hint: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}")
    err.print(f"[dim]hint: {hint}[/]")
    raise typer.Exit(code)


@app.command(
    help=(
        "Run every row of a manifest (CSV or Parquet, any fsspec URL) through the FASHN API.\n\n"
        "Images go to OUTPUT/images/, the results table to OUTPUT/results/. Exit codes: 0 all "
        "rows completed, 1 some rows failed, 2 nothing submitted (invalid manifest, budget).\n\n"
        "Example: fashn-prefect run catalog.csv --output s3://bucket/fashn --model-name "
        "tryon-v1.6 --budget 200"
    )
)
def run(
    manifest: Annotated[str, typer.Argument(help="Manifest URL: path, file://, s3://, gs://...")],
    output: Annotated[str, typer.Option("--output", "-o", help="Output root URL.")],
    model_name: Annotated[
        str | None, typer.Option(help="Model for rows without a model_name column.")
    ] = None,
    max_concurrency: Annotated[
        int, typer.Option(help="Predictions in flight (the account's limit).")
    ] = 6,
    run_limit: Annotated[str, typer.Option(help="POST /v1/run rate, N/SECONDS.")] = "50/60",
    status_limit: Annotated[str, typer.Option(help="GET /v1/status rate, N/SECONDS.")] = "50/10",
    budget: Annotated[
        int | None, typer.Option(help="Refuse to start above this many credits.")
    ] = None,
    skip_invalid: Annotated[
        bool, typer.Option(help="Run valid rows; report invalid ones as 'invalid'.")
    ] = False,
    dry_run: Annotated[bool, typer.Option(help="Validate and estimate only.")] = False,
    csv: Annotated[bool, typer.Option(help="Also write the results table as CSV.")] = False,
    credentials: Annotated[
        str | None, typer.Option(help="FashnCredentials block name (default: FASHN_* env vars).")
    ] = None,
    resubmit_ambiguous: Annotated[
        bool, typer.Option(help="Submit again rows whose earlier submission's fate is unknown.")
    ] = False,
    time_scale: Annotated[
        float, typer.Option(help="Compress API time windows (only for a time-scaled emulator).")
    ] = 1.0,
    json_output: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Run a manifest."""
    from fashn_prefect import pipeline
    from fashn_prefect.errors import ConfigurationError, FashnError
    from fashn_prefect.manifest import ManifestError

    progress = Progress(
        TextColumn("[bold]rows"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=quiet or json_output or dry_run,
    )
    task_id = progress.add_task("rows", total=None)
    pipeline.set_progress_listener(
        lambda done, total: progress.update(task_id, completed=done, total=total)
    )
    try:
        with progress:
            summary = asyncio.run(
                pipeline.run_manifest(
                    manifest=manifest,
                    output=output,
                    model_name=model_name,
                    credentials=credentials,
                    max_in_flight=max_concurrency,
                    run_limit=run_limit,
                    status_limit=status_limit,
                    budget=budget,
                    skip_invalid=skip_invalid,
                    dry_run=dry_run,
                    write_csv=csv,
                    resubmit_ambiguous=resubmit_ambiguous,
                    time_scale=time_scale,
                )
            )
    except pipeline.ManifestInvalid as exc:
        if json_output:
            print(
                json.dumps(
                    {"error": "ManifestInvalid", "problems": [str(p) for p in exc.report.problems]}
                )
            )
        else:
            err.print(exc.report.format())
        _fail(
            "the manifest has invalid rows; nothing was submitted",
            "fix the rows above, or pass --skip-invalid to run only the valid ones",
        )
        return
    except pipeline.BudgetExceeded as exc:
        _fail(str(exc), "raise --budget, top up credits, or run fewer rows")
        return
    except ManifestError as exc:
        _fail(str(exc), "check the manifest URL and that it is CSV (UTF-8) or Parquet")
        return
    except ConfigurationError as exc:
        _fail(
            str(exc),
            "set FASHN_API_KEY (and FASHN_BASE_URL for the emulator) or pass --credentials",
        )
        return
    except (ValueError, FashnError) as exc:
        _fail(f"{type(exc).__name__}: {exc}", "see `fashn-prefect run --help`")
        return
    finally:
        pipeline.set_progress_listener(None)
    _print_summary(summary, json_output)
    totals = summary.get("totals") or {}
    if not dry_run and totals.get("failed", 0) + totals.get("invalid", 0) > 0:
        raise typer.Exit(1)


@app.command(
    help=(
        "Run the demo: the emulator, Prefect's ephemeral server and local storage under "
        "OUTPUT (default ./demo-output). No API key or cloud account needed.\n\n"
        "Example: fashn-prefect demo --output ./demo-output"
    )
)
def demo(
    output: Annotated[str, typer.Option(help="Where to write everything.")] = "demo-output",
) -> None:
    """Run the demo."""
    from fashn_prefect.demo import main as demo_main

    demo_main(output)


def _print_summary(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary, default=str, indent=2))
        return
    out = Console()
    if summary.get("dry_run"):
        table = Table(title="Dry run: nothing submitted")
        table.add_column("what")
        table.add_column("value", justify="right")
        for key, value in summary.items():
            if key != "dry_run":
                table.add_row(key.replace("_", " "), str(value))
        out.print(table)
        return
    totals = summary["totals"]
    table = Table(title=f"FASHN run {summary['run_name']}")
    table.add_column("what")
    table.add_column("value", justify="right")
    for status in ("completed", "failed", "invalid", "skipped"):
        table.add_row(f"rows {status}", str(totals.get(status, 0)))
    table.add_row("credits charged", str(totals.get("credits_charged", 0)))
    table.add_row("credits estimated", str(totals.get("estimated_credits", 0)))
    table.add_row("throughput", f"{summary.get('rows_per_minute', 0):.1f} rows/min")
    table.add_row("results", str(summary["results"]))
    table.add_row("images", str(summary["images"]))
    out.print(table)
    for name, count in (totals.get("errors") or {}).items():
        out.print(f"  [red]{name}[/]: {count} rows")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    sys.exit(app())
