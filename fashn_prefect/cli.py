"""``fashn-prefect``: run manifests, catalogs and backfills through FASHN on Prefect,
audit credit spend, and run the emulator.

Exit codes of ``run``, ``catalog`` and ``backfill``: 0 every row completed; 1 some rows
failed (results still written); 2 invalid manifest, budget too small or bad configuration
(nothing submitted); 3 (``backfill``) the budget stopped it with rows left to do.
``audit``: 0 no anomaly, 1 anomalies found, 2 bad input.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from fashn_prefect.console import prefect_defaults, terminal_logs
from fashn_prefect.credentials_cli import credentials_command
from fashn_prefect.emulator.cli import emulator_command

app = typer.Typer(
    name="fashn-prefect",
    help=(
        "Dependable FASHN image-generation pipelines on Prefect.\n\n"
        "Examples:\n\n"
        "  fashn-prefect run catalog.csv --output s3://bucket/fashn --budget 500\n\n"
        "  fashn-prefect catalog s3://bucket/catalog.parquet --output s3://bucket/fashn\n\n"
        "  fashn-prefect backfill history.parquet --output ./out --chunk-size 200 --budget 5000\n\n"
        "  fashn-prefect audit s3://bucket/fashn --since 2026-11-01 --budget 20000\n\n"
        "  fashn-prefect emulator --port 8765\n\n"
        "Credentials: FASHN_API_KEY (and FASHN_BASE_URL for the emulator), or --credentials "
        "NAME for a FashnCredentials block."
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

app.command(
    "credentials",
    help=(
        "Save the FashnCredentials block that deployments load by name (default 'fashn').\n\n"
        "Example: FASHN_API_KEY=fa-... fashn-prefect credentials fashn"
    ),
)(credentials_command)

err = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        from fashn_prefect import __version__

        print(f"fashn-prefect {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Options that come before the command."""
    prefect_defaults()  # before Prefect is imported: its settings are read then


def _where(exc: Exception) -> str:
    """`` at scheme://host:port`` of the failed request, when known (never a query or key)."""
    try:
        url = exc.request.url  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):
        return ""
    return f" at {url.scheme}://{url.netloc.decode()}"


def _fail(message: str, hint: str, code: int = 2, as_json: bool = False) -> None:
    _fail_with(message, hint, code, as_json, error="UsageError")


def _fail_with(message: str, hint: str, code: int, as_json: bool = False, **extra: Any) -> None:
    if as_json:  # scripts read stdout: one JSON object, whatever went wrong
        kind = type(sys.exc_info()[1]).__name__ if sys.exc_info()[1] else "Error"
        error = {"error": kind, "message": message, "hint": hint, "exit_code": code, **extra}
        print(json.dumps(error, default=str))
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    err.print(f"[dim]hint: {hint}[/]", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def _console_tracebacks_hidden() -> Iterator[None]:
    """While a command runs, Prefect's terminal log shows a failed flow's exception as one
    line, without its traceback. The Prefect UI and API logs keep the traceback, and
    FASHN_PREFECT_DEBUG=1 shows it here too."""
    if os.environ.get("FASHN_PREFECT_DEBUG"):
        yield
        return
    import logging

    from prefect.logging.handlers import PrefectConsoleHandler

    def format_one_line(self: logging.Handler, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return logging.Handler.format(self, record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved

    # Prefect (re)creates its handlers while a flow starts, so the class is patched.
    original = PrefectConsoleHandler.format
    setattr(PrefectConsoleHandler, "format", format_one_line)  # noqa: B010
    try:
        yield
    finally:
        setattr(PrefectConsoleHandler, "format", original)  # noqa: B010


@contextmanager
def _friendly_errors(command: str, json_output: bool = False) -> Iterator[None]:
    """Turn every expected failure into one line plus a hint, never a traceback.

    Exit 2 when nothing was submitted, 1 when a submission had started before the failure.
    """
    import httpx

    from fashn_prefect import pipeline
    from fashn_prefect.errors import ConfigurationError, FashnError, StorageTimeout
    from fashn_prefect.manifest import ManifestError
    from fashn_prefect.storage import is_storage_transport_error
    from fashn_prefect.submit import posts_started

    started = posts_started()

    def fail(message: str, hint: str, **extra: Any) -> None:
        # Exit 2 promises that nothing was submitted; once a POST has started, be honest.
        if posts_started() > started:
            hint += (
                "; some predictions may already have been submitted: run the same command "
                "again to resume them (recorded rows are never submitted twice)"
            )
            _fail_with(message, hint, 1, json_output, **extra)
        _fail_with(message, hint, 2, json_output, **extra)

    try:
        with _console_tracebacks_hidden():
            yield
    except typer.Exit:
        raise
    except pipeline.ManifestInvalid as exc:
        if not json_output:
            err.print(exc.report.format())
        fail(
            "the manifest has invalid rows; nothing was submitted",
            "fix the rows above, or pass --skip-invalid to run only the valid ones",
            problems=[str(p) for p in exc.report.problems],
        )
    except pipeline.BudgetExceeded as exc:
        fail(str(exc), "raise --budget, top up credits, or run fewer rows")
    except ManifestError as exc:
        fail(str(exc), "check the manifest URL and that it is CSV (UTF-8) or Parquet")
    except ConfigurationError as exc:
        fail(
            str(exc),
            "set FASHN_API_KEY (and FASHN_BASE_URL for the emulator) or pass --credentials",
        )
    except httpx.TransportError as exc:
        fail(
            f"cannot reach the FASHN API{_where(exc)}: {type(exc).__name__}: {exc}",
            "check your network and FASHN_BASE_URL (unset it for the real API; for the "
            "emulator start `fashn-prefect emulator` first)",
        )
    except StorageTimeout as exc:
        fail(
            f"StorageTimeout: {exc}",
            "check that the --output location (and S3 endpoint) is reachable; nothing is "
            "lost, run the same command again when it is",
        )
    except (ValueError, FashnError, OSError) as exc:
        fail(f"{type(exc).__name__}: {exc}", f"see `fashn-prefect {command} --help`")
    except Exception as exc:  # the last resort: still one line, never a traceback
        if os.environ.get("FASHN_PREFECT_DEBUG"):
            raise
        if is_storage_transport_error(exc):
            fail(
                f"cannot reach the output storage: {type(exc).__name__}: {exc}",
                "check the --output location, its endpoint and credentials, then run the "
                "same command again",
            )
        fail(
            f"{type(exc).__name__}: {exc}",
            "set FASHN_PREFECT_DEBUG=1 to see the traceback, and check the Prefect logs",
        )


# Options shared by the commands that run predictions.
ModelOpt = Annotated[str | None, typer.Option(help="Model for rows without a model_name column.")]
OutputOpt = Annotated[
    str, typer.Option("--output", "-o", help="Output root URL (path, s3://, gs://, az://...).")
]
ConcurrencyOpt = Annotated[int, typer.Option(help="Predictions in flight (the account's limit).")]
RunLimitOpt = Annotated[str, typer.Option(help="POST /v1/run rate, N/SECONDS.")]
StatusLimitOpt = Annotated[str, typer.Option(help="GET /v1/status rate, N/SECONDS.")]
SkipInvalidOpt = Annotated[
    bool, typer.Option(help="Run valid rows; report invalid ones as 'invalid'.")
]
CredentialsOpt = Annotated[
    str | None, typer.Option(help="FashnCredentials block name (default: FASHN_* env vars).")
]
TimeScaleOpt = Annotated[
    float, typer.Option(help="Compress API time windows (only for a time-scaled emulator).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the summary as JSON (for scripts).")]
QuietOpt = Annotated[bool, typer.Option(help="No progress bar.")]
RetryFailedOpt = Annotated[
    bool,
    typer.Option(
        help="Submit again rows that failed with a permanent error (ImageLoadError, "
        "ContentModerationError, ...) for the same inputs in an earlier run."
    ),
]


def _run_options(
    credentials: str | None,
    max_concurrency: int,
    run_limit: str,
    status_limit: str,
    time_scale: float,
) -> dict[str, Any]:
    return {
        "credentials": credentials,
        "max_in_flight": max_concurrency,
        "run_limit": run_limit,
        "status_limit": status_limit,
        "time_scale": time_scale,
    }


@app.command(
    help=(
        "Run every row of a manifest (CSV or Parquet, any fsspec URL) through the FASHN API.\n\n"
        "Images go to OUTPUT/images/, the results table to OUTPUT/results/. Rows already "
        "completed in OUTPUT with the same inputs are skipped. Exit codes: 0 all rows "
        "completed, 1 some rows failed, 2 nothing submitted (invalid manifest, budget).\n\n"
        "Example: fashn-prefect run catalog.csv --output s3://bucket/fashn --model-name "
        "tryon-v1.6 --budget 200"
    )
)
def run(
    manifest: Annotated[str, typer.Argument(help="Manifest URL: path, file://, s3://, gs://...")],
    output: OutputOpt,
    model_name: ModelOpt = None,
    max_concurrency: ConcurrencyOpt = 6,
    run_limit: RunLimitOpt = "50/60",
    status_limit: StatusLimitOpt = "50/10",
    budget: Annotated[
        int | None, typer.Option(help="Refuse to start above this many credits.")
    ] = None,
    skip_invalid: SkipInvalidOpt = False,
    dry_run: Annotated[bool, typer.Option(help="Validate and estimate only.")] = False,
    csv: Annotated[bool, typer.Option(help="Also write the results table as CSV.")] = False,
    credentials: CredentialsOpt = None,
    resubmit_ambiguous: Annotated[
        bool, typer.Option(help="Submit again rows whose earlier submission's fate is unknown.")
    ] = False,
    retry_failed: RetryFailedOpt = False,
    time_scale: TimeScaleOpt = 1.0,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run a manifest."""
    from fashn_prefect import pipeline
    from fashn_prefect.outcome import run_to_summary
    from fashn_prefect.progress import row_progress

    with (
        _friendly_errors("run", json_output),
        terminal_logs(quiet or json_output),
        row_progress(err, enabled=not (quiet or json_output or dry_run)),
    ):
        summary = run_to_summary(
            pipeline.run_manifest(
                manifest=manifest,
                output=output,
                model_name=model_name,
                budget=budget,
                skip_invalid=skip_invalid,
                dry_run=dry_run,
                write_csv=csv,
                resubmit_ambiguous=resubmit_ambiguous,
                retry_failed=retry_failed,
                **_run_options(credentials, max_concurrency, run_limit, status_limit, time_scale),
            )
        )
    _print_summary(summary, json_output)
    _exit_for(summary)


def _exit_for(summary: dict[str, Any] | None) -> None:
    totals = (summary or {}).get("totals") or {}
    if totals.get("failed", 0) + totals.get("invalid", 0) > 0:
        raise typer.Exit(1)


@app.command(
    help=(
        "Run the new and changed rows of a catalog that the business keeps updating.\n\n"
        "Every row of MANIFEST is compared with what OUTPUT already holds: rows completed "
        "there with the same inputs are not submitted, so an unchanged catalog costs "
        "nothing. Prints how many rows were new, changed, to retry and unchanged. Exit "
        "codes as for `run`.\n\n"
        "Examples:\n\n"
        "  fashn-prefect catalog s3://bucket/catalog.parquet --output s3://bucket/fashn\n\n"
        "  fashn-prefect catalog catalog.csv --output ./out --dry-run   (just count changes)\n\n"
        "Schedule it with the catalog-nightly deployment in deployments/prefect.yaml."
    )
)
def catalog(
    manifest: Annotated[str, typer.Argument(help="Catalog manifest URL (CSV or Parquet).")],
    output: OutputOpt,
    model_name: ModelOpt = None,
    max_concurrency: ConcurrencyOpt = 6,
    run_limit: RunLimitOpt = "50/60",
    status_limit: StatusLimitOpt = "50/10",
    budget: Annotated[
        int | None, typer.Option(help="Refuse to start if the changes would cost more.")
    ] = None,
    skip_invalid: SkipInvalidOpt = False,
    dry_run: Annotated[
        bool, typer.Option(help="Count new/changed rows and estimate; submit nothing.")
    ] = False,
    csv: Annotated[bool, typer.Option(help="Also write the results table as CSV.")] = False,
    credentials: CredentialsOpt = None,
    retry_failed: RetryFailedOpt = False,
    time_scale: TimeScaleOpt = 1.0,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run a catalog incrementally."""
    from fashn_prefect.incremental import catalog_changes, run_catalog
    from fashn_prefect.progress import row_progress

    with _friendly_errors("catalog", json_output):
        if dry_run:
            changes = catalog_changes(
                manifest, output, model_name=model_name, retry_failed=retry_failed
            ).as_dict()
            _print_changes({"changes": changes, "run": None, "dry_run": True}, json_output)
            return
        with (
            terminal_logs(quiet or json_output),
            row_progress(err, enabled=not (quiet or json_output)),
        ):
            result = asyncio.run(
                run_catalog(
                    manifest,
                    output,
                    model_name=model_name,
                    budget=budget,
                    skip_invalid=skip_invalid,
                    retry_failed=retry_failed,
                    write_csv=csv,
                    **_run_options(
                        credentials, max_concurrency, run_limit, status_limit, time_scale
                    ),
                )
            )
    _print_changes(result, json_output)
    _exit_for(result.get("run"))


def _print_changes(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, default=str, indent=2))
        return
    changes = result["changes"]
    out = Console()
    out.print(
        f"catalog: {changes['rows']} rows — [bold]{changes['new']}[/] new, "
        f"[bold]{changes['changed']}[/] changed, {changes['retry']} to retry, "
        f"{changes['unchanged']} unchanged, {changes['failed']} failed before (not retried), "
        f"{changes['invalid']} invalid "
        f"({changes['estimated_credits']} credits estimated)"
    )
    if result.get("run"):
        _print_summary(result["run"], False)
    elif not result.get("dry_run"):
        out.print("Nothing new or changed: nothing submitted.")


@app.command(
    help=(
        "Backfill a large historical set in chunks, resumably, within a credit budget.\n\n"
        "The whole set is validated and estimated first. Rows run in chunks of "
        "--chunk-size (or one chunk per value of --partition-by), each a Prefect flow run. "
        "Interrupted? Run the same command again: completed rows are skipped and in-flight "
        "predictions are resumed, never resubmitted. With --budget, rows whose estimate "
        "would exceed it (counting credits already spent on this set) are not submitted. "
        "Exit codes: 0 done, 1 some rows failed, 2 nothing submitted, 3 budget reached "
        "with rows left.\n\n"
        "Examples:\n\n"
        "  fashn-prefect backfill history.parquet --output s3://bucket/backfill "
        "--chunk-size 200 --budget 5000\n\n"
        "  fashn-prefect backfill history.csv --output ./out --partition-by season --dry-run"
    )
)
def backfill(
    manifest: Annotated[str, typer.Argument(help="Manifest URL of the whole set.")],
    output: OutputOpt,
    chunk_size: Annotated[int, typer.Option(min=1, help="Rows per chunk.")] = 100,
    partition_by: Annotated[
        str | None, typer.Option(help="Column whose values define the chunks.")
    ] = None,
    budget: Annotated[
        int | None, typer.Option(help="Credits the whole backfill may spend.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="Validate and estimate the whole set; submit nothing.")
    ] = False,
    model_name: ModelOpt = None,
    max_concurrency: ConcurrencyOpt = 6,
    run_limit: RunLimitOpt = "50/60",
    status_limit: StatusLimitOpt = "50/10",
    skip_invalid: SkipInvalidOpt = False,
    resubmit_ambiguous: Annotated[
        bool, typer.Option(help="Submit again rows whose earlier submission's fate is unknown.")
    ] = False,
    credentials: CredentialsOpt = None,
    time_scale: TimeScaleOpt = 1.0,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run a backfill."""
    from fashn_prefect.backfill import run_backfill
    from fashn_prefect.progress import row_progress

    with (
        _friendly_errors("backfill", json_output),
        terminal_logs(quiet or json_output),
        row_progress(err, enabled=not (quiet or json_output or dry_run)) as update,
    ):
        result = asyncio.run(
            run_backfill(
                manifest,
                output,
                model_name=model_name,
                chunk_size=chunk_size,
                partition_by=partition_by,
                budget=budget,
                dry_run=dry_run,
                skip_invalid=skip_invalid,
                resubmit_ambiguous=resubmit_ambiguous,
                logger=_ConsoleLog(err, quiet or json_output),
                on_progress=update,
                **_run_options(credentials, max_concurrency, run_limit, status_limit, time_scale),
            )
        )
    _print_backfill(result, json_output)
    if (result.get("totals") or {}).get("failed", 0):
        raise typer.Exit(1)
    if result.get("stopped_by_budget") and not dry_run:
        raise typer.Exit(3)


class _ConsoleLog:
    """The few logger methods the flows' library code uses, printed on the terminal."""

    def __init__(self, console: Console, quiet: bool) -> None:
        self.console, self.quiet = console, quiet

    def info(self, message: str, *args: Any) -> None:
        if not self.quiet:
            self.console.print(f"[dim]{message % args}[/]", highlight=False)

    def warning(self, message: str, *args: Any) -> None:
        self.console.print(f"[yellow]warning:[/] {message % args}", highlight=False)


def _print_backfill(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, default=str, indent=2))
        return
    plan = result["plan"]
    out = Console()
    title = "Backfill dry run: nothing submitted" if result.get("dry_run") else "Backfill"
    table = Table(title=title)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("rows in the set", str(plan["rows"]))
    table.add_row("invalid", str(plan["invalid"]))
    table.add_row("already completed", str(plan["already_completed"]))
    table.add_row("to run now", f"{plan['to_run']} in {len(plan['chunks'])} chunks")
    table.add_row("estimated credits (all still to do)", str(plan["estimated_credits"]))
    table.add_row("estimated credits (now)", str(plan["selected_credits"]))
    if plan["budget"] is not None:
        table.add_row("budget", f"{plan['budget']} ({plan['spent_before']} spent before)")
        table.add_row("deferred by the budget", str(plan["deferred"]))
    for key, value in (result.get("totals") or {}).items():
        table.add_row(key.replace("_", " "), str(value))
    out.print(table)
    if result.get("stopped_by_budget"):
        out.print(f"[yellow]Stopped before the budget:[/] {result['stopped_by_budget']}")


@app.command(
    help=(
        "Audit the credits charged by every run under OUTPUT_ROOT.\n\n"
        "Reads every results table, aggregates charged and estimated credits by day, model, "
        "generation settings, run and metadata column (brand, catalog...), flags anomalies "
        "(charged rows without stored outputs, rows charged twice, failed rows with a "
        "charge, spend above --budget) and reconciles each run's /v1/credits balance "
        "movement. Writes Parquet and a PNG chart under OUTPUT_ROOT/audit/. Exit codes: 0 "
        "no anomaly, 1 anomalies found, 2 bad input.\n\n"
        "Examples:\n\n"
        "  fashn-prefect audit s3://bucket/fashn --since 2026-11-01 --budget 20000\n\n"
        "  fashn-prefect audit ./out --json | jq .anomaly_counts"
    )
)
def audit(
    output_root: Annotated[str, typer.Argument(help="Output root of earlier runs.")],
    since: Annotated[
        str | None, typer.Option(help="Only rows charged on or after this day (YYYY-MM-DD).")
    ] = None,
    budget: Annotated[int | None, typer.Option(help="Flag spend above this many credits.")] = None,
    write: Annotated[
        bool, typer.Option(help="Write the Parquet report and PNG chart under audit/.")
    ] = True,
    json_output: JsonOpt = False,
) -> None:
    """Audit credit spend."""
    from datetime import date

    from fashn_prefect.audit import run_audit

    if since is not None:
        try:
            date.fromisoformat(since)
        except ValueError:
            _fail(
                f"--since {since!r} is not a date",
                "write it as YYYY-MM-DD, e.g. 2026-11-01",
                as_json=json_output,
            )
    from fashn_prefect.audit import read_all_results

    with _friendly_errors("audit", json_output):
        if read_all_results(output_root)[1] == 0:
            _fail(
                f"no results tables under {output_root}/results",
                "pass the --output root of earlier runs (the folder holding results/ and runs/)",
                as_json=json_output,
            )
        report = run_audit(output_root, since=since, budget=budget, write=write)
    if json_output:
        print(json.dumps(report.as_dict(), default=str, indent=2))
    else:
        _print_audit(report)
    if report.anomalies:
        raise typer.Exit(1)


def _print_audit(report: Any) -> None:
    out = Console()
    out.print(
        f"[bold]{report.charged}[/] credits charged over {report.rows} rows in "
        f"{report.tables} results tables ({report.estimated} estimated); balance moved "
        f"{report.balance_movement} over {len(report.runs)} runs, {report.unexplained} "
        "unexplained"
    )
    for dimension in ("model", "day"):
        items = report.breakdown.get(dimension) or []
        if not items:
            continue
        table = Table(title=f"by {dimension}")
        for column in ("value", "rows", "charged", "estimated"):
            table.add_column(column, justify="left" if column == "value" else "right")
        for item in items[:20]:
            table.add_row(*(str(item[c]) for c in ("value", "rows", "charged", "estimated")))
        out.print(table)
    for anomaly in report.anomalies[:50]:
        out.print(
            f"[red]{anomaly.kind}[/] {anomaly.row_key or ''} ({anomaly.credits} credits): "
            f"{anomaly.detail}",
            highlight=False,
        )
    if not report.anomalies:
        out.print("No anomalies.")
    for name, uri in report.files.items():
        out.print(f"{name}: {uri}")


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
