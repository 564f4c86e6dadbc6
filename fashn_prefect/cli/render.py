"""Terminal renderers for the CLI's summaries (rich tables, or JSON with ``--json``)."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["ConsoleLog", "print_audit", "print_backfill", "print_changes", "print_summary"]


def print_summary(summary: dict[str, Any], as_json: bool) -> None:
    """Print a run summary as a table, or as JSON."""
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
    _print_ambiguous(out, totals)


def _print_ambiguous(out: Console, totals: dict[str, Any]) -> None:
    """Name the rows whose submission's fate is unknown, and the flag that finishes them."""
    from fashn_prefect.run.advice import RESUBMIT_FLAG, ambiguous_advice

    if totals.get("ambiguous_rows"):
        advice = ambiguous_advice(totals["ambiguous_rows"], RESUBMIT_FLAG)
        out.print(advice + ".", style="yellow", markup=False, highlight=False)


def print_changes(result: dict[str, Any], as_json: bool) -> None:
    """Print a changes result as a table, or as JSON."""
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
        print_summary(result["run"], False)
    elif not result.get("dry_run"):
        out.print("Nothing new or changed: nothing submitted.")


class ConsoleLog:
    """The few logger methods the flows' library code uses, printed on the terminal."""

    def __init__(self, console: Console, quiet: bool) -> None:
        self.console, self.quiet = console, quiet

    def info(self, message: str, *args: Any) -> None:
        if not self.quiet:
            self.console.print(f"[dim]{message % args}[/]", highlight=False)

    def warning(self, message: str, *args: Any) -> None:
        self.console.print(f"[yellow]warning:[/] {message % args}", highlight=False)


def print_backfill(result: dict[str, Any], as_json: bool) -> None:
    """Print a backfill result as a table, or as JSON."""
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
    totals = result.get("totals") or {}
    for key, value in totals.items():
        if key != "ambiguous_rows":
            table.add_row(key.replace("_", " "), str(value))
    out.print(table)
    _print_ambiguous(out, totals)
    if result.get("stopped_by_budget"):
        out.print(f"[yellow]Stopped before the budget:[/] {result['stopped_by_budget']}")


def print_audit(report: Any) -> None:
    """Print an audit report: totals, breakdowns and anomalies."""
    out = Console()
    out.print(
        f"[bold]{report.charged}[/] credits charged over {report.rows} rows in "
        f"{report.tables} results tables ({report.estimated} estimated); balance moved "
        f"{report.balance_movement} over {len(report.runs)} runs, [bold]"
        f"{report.unexplained:+d}[/] unexplained; {report.outside_usage:+d} used between "
        "the runs (outside them)"
    )
    if report.rows_estimated or report.rows_charge_unknown:
        out.print(
            f"[yellow]{report.charged_from_estimates}[/] of the charged credits "
            f"({report.rows_estimated} rows) are estimates: the API sent no "
            f"x-fashn-credits-used header; {report.rows_charge_unknown} rows have an "
            "unknown charge"
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
    for gap in report.between_runs:
        if not any(a.kind == "outside_usage" and a.detail == gap.detail for a in report.anomalies):
            out.print(f"between runs: {gap.detail}", highlight=False, markup=False)
    for name, uri in report.files.items():
        out.print(f"{name}: {uri}")
