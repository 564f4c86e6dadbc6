"""The run report: a JSON record under ``{output}/runs/`` plus Prefect artifacts.

The JSON keeps what the credit audit needs later (balance snapshots at start and end,
totals, where the results went); the artifacts show the same summary in the Prefect UI.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact

from fashn_prefect.store.fs import atomic_write, filesystem, join

RUNS_DIR = "runs"


@dataclass
class RunReport:
    """What one flow run did."""

    run_name: str
    flow_run_id: str | None
    started_at: str
    finished_at: str
    elapsed_s: float
    totals: dict[str, Any]
    submitted: int
    status_calls: int
    results: str
    images: str
    results_csv: str | None = None
    balance_before: int | None = None
    balance_after: int | None = None
    limits: dict[str, Any] = field(default_factory=dict)
    gallery: str | None = None

    @property
    def rows_per_minute(self) -> float:
        """Finished rows (completed or failed) per minute of wall time."""
        finished = self.totals.get("completed", 0) + self.totals.get("failed", 0)
        return 60.0 * finished / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain-dict form (JSON-serialisable)."""
        return {**asdict(self), "rows_per_minute": round(self.rows_per_minute, 2)}


def write_run_report(report: RunReport, output_url: str, storage_options: dict[str, Any]) -> str:
    """Write the report as JSON under ``{output}/runs/``; return its URI."""
    fs, root = filesystem(output_url, **storage_options)
    path = join(root, RUNS_DIR, f"{report.run_name}.json")
    atomic_write(fs, path, json.dumps(report.as_dict(), indent=2, default=str).encode())
    return str(fs.unstrip_protocol(path))


async def publish_summary(report: RunReport) -> None:
    """Publish the run summary as Prefect table and markdown artifacts."""
    totals = report.totals
    table = [
        {"metric": "rows", "value": totals.get("rows", 0)},
        *(
            {"metric": s, "value": totals.get(s, 0)}
            for s in ("completed", "failed", "invalid", "skipped")
        ),
        {"metric": "estimated credits", "value": totals.get("estimated_credits", 0)},
        {"metric": "charged credits", "value": totals.get("credits_charged", 0)},
        {"metric": "rows per minute", "value": round(report.rows_per_minute, 1)},
    ]
    await acreate_table_artifact(table, key="fashn-run-summary", description="FASHN run summary")
    errors = totals.get("errors") or {}
    error_lines = "\n".join(f"| {name} | {count} |" for name, count in sorted(errors.items()))
    markdown = (
        f"# FASHN run `{report.run_name}`\n\n"
        f"- rows: {totals.get('rows', 0)} (completed {totals.get('completed', 0)}, "
        f"failed {totals.get('failed', 0)}, invalid {totals.get('invalid', 0)}, "
        f"skipped {totals.get('skipped', 0)})\n"
        f"- credits: {totals.get('credits_charged', 0)} charged, "
        f"{totals.get('estimated_credits', 0)} estimated\n"
        f"- throughput: {report.rows_per_minute:.1f} rows/min over {report.elapsed_s:.1f} s\n"
        f"- results: `{report.results}`\n- images: `{report.images}`\n"
        + (f"- review gallery: `{report.gallery}`\n" if report.gallery else "")
        + (f"\n| error | rows |\n|---|---|\n{error_lines}\n" if errors else "")
    )
    await acreate_markdown_artifact(
        markdown, key="fashn-run-report", description="FASHN run report"
    )
