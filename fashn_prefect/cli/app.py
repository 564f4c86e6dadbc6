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
import sys
from typing import Annotated, Any

import typer

from fashn_prefect.cli.console import prefect_defaults
from fashn_prefect.cli.credentials import credentials_command
from fashn_prefect.cli.errors import err, fail, friendly_errors
from fashn_prefect.cli.options import settings_options
from fashn_prefect.cli.render import (
    ConsoleLog,
    print_audit,
    print_backfill,
    print_changes,
    print_summary,
)
from fashn_prefect.cli.session import running
from fashn_prefect.emulator.cli import emulator_command
from fashn_prefect.settings import FashnSettings

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


# Options shared by the commands that run predictions.
ModelOpt = Annotated[str | None, typer.Option(help="Model for rows without a model_name column.")]
OutputOpt = Annotated[
    str, typer.Option("--output", "-o", help="Output root URL (path, s3://, gs://, az://...).")
]
CredentialsOpt = Annotated[
    str | None, typer.Option(help="FashnCredentials block name (default: FASHN_* env vars).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the summary as JSON (for scripts).")]
QuietOpt = Annotated[bool, typer.Option(help="No progress bar.")]


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
@settings_options
def run(
    manifest: Annotated[str, typer.Argument(help="Manifest URL: path, file://, s3://, gs://...")],
    output: OutputOpt,
    model_name: ModelOpt = None,
    budget: Annotated[
        int | None, typer.Option(help="Refuse to start above this many credits.")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Validate and estimate only.")] = False,
    credentials: CredentialsOpt = None,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
    *,
    settings: FashnSettings,
) -> None:
    """Run a manifest."""
    from fashn_prefect.run import pipeline
    from fashn_prefect.run.outcome import run_to_summary
    from fashn_prefect.run.request import RunRequest

    request = RunRequest(output, model_name, credentials, budget, dry_run, settings)
    with running("run", json_output, quiet, progress=not dry_run):
        summary = run_to_summary(
            pipeline.run_manifest(manifest=manifest, **request.flow_parameters())
        )
    print_summary(summary, json_output)
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
@settings_options
def catalog(
    manifest: Annotated[str, typer.Argument(help="Catalog manifest URL (CSV or Parquet).")],
    output: OutputOpt,
    model_name: ModelOpt = None,
    budget: Annotated[
        int | None, typer.Option(help="Refuse to start if the changes would cost more.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="Count new/changed rows and estimate; submit nothing.")
    ] = False,
    credentials: CredentialsOpt = None,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
    *,
    settings: FashnSettings,
) -> None:
    """Run a catalog incrementally."""
    from fashn_prefect.jobs.catalog import count_changes, run_catalog
    from fashn_prefect.run.request import RunRequest

    request = RunRequest(output, model_name, credentials, budget, dry_run, settings)
    if dry_run:
        with friendly_errors("catalog", json_output):
            changes = count_changes(request.check(request.read(manifest)), request)
            print_changes({"changes": changes.as_dict(), "run": None, "dry_run": True}, json_output)
        return
    with running("catalog", json_output, quiet):
        result = asyncio.run(run_catalog(manifest, request))
    print_changes(result, json_output)
    _exit_for(result.get("run"))


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
@settings_options
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
    credentials: CredentialsOpt = None,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
    *,
    settings: FashnSettings,
) -> None:
    """Run a backfill."""
    from fashn_prefect.jobs.backfill import run_backfill
    from fashn_prefect.run.request import RunRequest

    request = RunRequest(output, model_name, credentials, budget, dry_run, settings)
    with running("backfill", json_output, quiet, progress=not dry_run) as update:
        result = asyncio.run(
            run_backfill(
                manifest,
                request,
                chunk_size=chunk_size,
                partition_by=partition_by,
                logger=ConsoleLog(err, quiet or json_output),
                on_progress=update,
            )
        )
    print_backfill(result, json_output)
    if (result.get("totals") or {}).get("failed", 0):
        raise typer.Exit(1)
    if result.get("stopped_by_budget") and not dry_run:
        raise typer.Exit(3)


@app.command(
    help=(
        "Audit the credits charged by every run under OUTPUT_ROOT.\n\n"
        "Reads every results table, aggregates charged and estimated credits by day, model, "
        "generation settings, run and metadata column (brand, catalog...), flags anomalies "
        "(charged rows without stored outputs, rows charged twice, failed rows with a "
        "charge, spend above --budget) and reconciles each run's /v1/credits balance "
        "movement: a run whose balance moved by more or less than its rows explain is an "
        "anomaly (unexplained_balance), tied to the submissions interrupted in it. Movement "
        "between runs is reported as usage outside these runs (an anomaly with "
        "--flag-outside-usage). Writes Parquet and a PNG chart under OUTPUT_ROOT/audit/. "
        "Exit codes: 0 no anomaly, 1 anomalies found, 2 bad input.\n\n"
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
    flag_outside_usage: Annotated[
        bool,
        typer.Option(
            help="Count credits spent between the runs (by other users of the account) "
            "as an anomaly."
        ),
    ] = False,
    json_output: JsonOpt = False,
) -> None:
    """Audit credit spend."""
    from datetime import date

    from fashn_prefect.jobs.audit import run_audit

    if since is not None:
        try:
            date.fromisoformat(since)
        except ValueError:
            fail(
                f"--since {since!r} is not a date",
                "write it as YYYY-MM-DD, e.g. 2026-11-01",
                as_json=json_output,
            )
    from fashn_prefect.jobs.audit import read_all_results

    with friendly_errors("audit", json_output):
        if read_all_results(output_root)[1] == 0:
            fail(
                f"no results tables under {output_root}/results",
                "pass the --output root of earlier runs (the folder holding results/ and runs/)",
                as_json=json_output,
            )
        report = run_audit(
            output_root,
            since=since,
            budget=budget,
            write=write,
            flag_outside_usage=flag_outside_usage,
        )
    if json_output:
        print(json.dumps(report.as_dict(), default=str, indent=2))
    else:
        print_audit(report)
    if report.anomalies:
        raise typer.Exit(1)


@app.command(
    name="webhook-relay",
    help=(
        "Run the webhook relay: it takes FASHN's webhook calls and passes each one on as "
        "a Prefect event (to PREFECT_API_URL), so runs on workers FASHN cannot reach see "
        "their predictions end at once. Needs the secret the runs share, from "
        "FASHN_PREFECT_WEBHOOK_SECRET or --secret-block. Put it behind HTTPS and give "
        "runs its public URL as --webhook-url.\n\n"
        "Example: fashn-prefect webhook-relay --listen 127.0.0.1:8780"
    ),
)
def webhook_relay(
    listen: Annotated[str, typer.Option(help="HOST:PORT to listen on.")] = "127.0.0.1:8780",
    secret_block: Annotated[
        str | None, typer.Option(help="Prefect Secret block holding the shared secret.")
    ] = None,
) -> None:
    """Run the webhook relay until stopped."""
    from prefect.settings import PREFECT_API_URL

    from fashn_prefect.webhooks.receiver import parse_listen
    from fashn_prefect.webhooks.relay import serve_relay, webhook_secret

    try:
        parse_listen(listen)
    except ValueError as exc:
        fail(f"--listen: {exc}", "see `fashn-prefect webhook-relay --help`")
    if not PREFECT_API_URL.value():
        fail("PREFECT_API_URL is not set", "point it at the Prefect server the runs use")
    secret = asyncio.run(webhook_secret(secret_block))
    if not secret:
        fail("no webhook secret", "set FASHN_PREFECT_WEBHOOK_SECRET or --secret-block")
    err.print(f"Webhook relay on {listen}, passing deliveries on to {PREFECT_API_URL.value()}")
    serve_relay(listen, secret)


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
    from fashn_prefect.cli.demo import main as demo_main

    demo_main(output)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    sys.exit(app())
