"""Credit audit of an output root: where the credits went, and what does not add up.

Reads every results table under ``{output}/results/`` as one pyarrow dataset, plus the
run reports under ``{output}/runs/`` (with their ``/v1/credits`` snapshots), and builds:

* charged and estimated credits by day, model, generation settings, run and every
  metadata column (brand, catalog, ...);
* anomalies: credits paid for nothing (a prediction the API reported completed, and
  charged, without the outputs it was asked for: ``OutputMissing``), credits charged for a
  row whose outputs are not in storage, a row charged more than once for the same inputs,
  a failed prediction with a charge, spend above a budget;
* a reconciliation of each run's balance movement with the charges its results explain.

:func:`write_audit` stores the report as Parquet plus a PNG chart under ``{output}/audit/``.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from fashn_prefect.review.chart import spend_chart
from fashn_prefect.run.write import run_name
from fashn_prefect.store.fs import atomic_write, filesystem, is_hidden, join
from fashn_prefect.store.reports import RUNS_DIR
from fashn_prefect.store.results import CORE_COLUMNS, results_root

AUDIT_DIR = "audit"
SETTINGS = ("model_name", "generation_mode", "resolution")
_CHARGED_STATUSES = ("completed", "failed")


@dataclass
class Anomaly:
    """One thing in the books that a person should look at."""

    kind: str  # paid_for_nothing | charged_without_output | duplicate_charge
    # | failed_with_charge | over_budget
    row_key: str | None
    credits: int
    detail: str


@dataclass
class RunBalance:
    """One run's balance movement against the charges its results table explains."""

    run: str
    balance_before: int | None
    balance_after: int | None
    movement: int | None
    charged: int
    unexplained: int | None


@dataclass
class AuditReport:
    """Everything the audit found, ready to print, publish or store."""

    output: str
    since: str | None
    budget: int | None
    tables: int
    rows: int
    charged: int
    estimated: int
    charged_from_estimates: int = 0
    """Of ``charged``: credits booked from the specs' estimate because the API sent no
    ``x-fashn-credits-used`` header (``credits_source == "estimate"``)."""
    rows_estimated: int = 0
    """Charged rows whose charge is such an estimate."""
    rows_charge_unknown: int = 0
    """Completed rows of models the specs do not describe that came without the header:
    their charge is unknown (booked as 0)."""
    breakdown: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    anomalies: list[Anomaly] = field(default_factory=list)
    runs: list[RunBalance] = field(default_factory=list)
    spend: list[dict[str, Any]] = field(default_factory=list)
    """Charged credits per (day, model)."""
    files: dict[str, str] = field(default_factory=dict)

    @property
    def balance_movement(self) -> int:
        """Credits the account balance moved by during the audited runs."""
        return sum(r.movement or 0 for r in self.runs)

    @property
    def unexplained(self) -> int:
        """Balance movement that no charged row accounts for (other usage of the account)."""
        return sum(r.unexplained or 0 for r in self.runs)

    def as_dict(self) -> dict[str, Any]:
        """Plain-dict form (JSON-serialisable)."""
        data = asdict(self)
        data["balance_movement"] = self.balance_movement
        data["unexplained"] = self.unexplained
        data["anomaly_counts"] = self.anomaly_counts()
        return data

    def anomaly_counts(self) -> dict[str, int]:
        """Anomalies by kind."""
        counts: dict[str, int] = {}
        for anomaly in self.anomalies:
            counts[anomaly.kind] = counts.get(anomaly.kind, 0) + 1
        return counts

    def markdown(self, chart_uri: str | None = None) -> str:
        """The report as Markdown (the Prefect artifact and the CLI's long form)."""
        lines = [
            f"# FASHN credit audit of `{self.output}`",
            "",
            f"- results tables: {self.tables}, rows: {self.rows}"
            + (f" (since {self.since})" if self.since else ""),
            f"- credits charged: **{self.charged}**, estimated for the same rows: {self.estimated}",
            f"- of the charged credits, {self.charged_from_estimates} over {self.rows_estimated} "
            "rows are the specs' estimate (the API reported no charge); "
            f"{self.rows_charge_unknown} rows have an unknown charge",
            f"- balance movement over {len(self.runs)} runs: {self.balance_movement} "
            f"(unexplained by the results: {self.unexplained})",
        ]
        if self.budget is not None:
            lines.append(f"- budget: {self.budget} ({self.charged} used)")
        if chart_uri:
            lines.append(f"- chart: `{chart_uri}`")
        lines += ["", "## Anomalies", ""]
        if not self.anomalies:
            lines.append("None.")
        else:
            lines += ["| kind | row | credits | detail |", "|---|---|---|---|"]
            lines += [
                f"| {a.kind} | {a.row_key or ''} | {a.credits} | {a.detail} |"
                for a in self.anomalies[:200]
            ]
            if len(self.anomalies) > 200:
                lines.append(f"\n... and {len(self.anomalies) - 200} more (see the Parquet report)")
        for dimension, items in self.breakdown.items():
            lines += [
                "",
                f"## By {dimension}",
                "",
                "| value | rows | charged | estimated |",
                "|---|---|---|---|",
            ]
            lines += [
                f"| {i['value']} | {i['rows']} | {i['charged']} | {i['estimated']} |"
                for i in items[:50]
            ]
        if self.runs:
            lines += [
                "",
                "## Balance reconciliation",
                "",
                "| run | before | after | movement | charged | unexplained |",
                "|---|---|---|---|---|---|",
            ]
            lines += [
                f"| {r.run} | {r.balance_before} | {r.balance_after} | {r.movement} | "
                f"{r.charged} | {r.unexplained} |"
                for r in self.runs
            ]
        return "\n".join(lines) + "\n"


def read_all_results(
    output_url: str, storage_options: dict[str, Any] | None = None
) -> tuple[pa.Table | None, int]:
    """Every results table under ``output_url`` as one table (schemas unified); and its count.

    Tables carry different metadata columns; a column missing from one table reads as null.
    """
    fs, root = results_root(output_url, storage_options)
    try:
        files = sorted(p for p in fs.find(root) if p.endswith(".parquet") and not is_hidden(p))
    except FileNotFoundError:
        return None, 0
    if not files:
        return None, 0
    schema = pa.unify_schemas([pq.read_schema(f, filesystem=fs) for f in files])
    dataset = ds.dataset(files, schema=schema, filesystem=fs, format="parquet")
    return dataset.to_table(), len(files)


def audit(
    output_url: str,
    *,
    since: date | str | None = None,
    budget: int | None = None,
    check_storage: bool = True,
    storage_options: dict[str, Any] | None = None,
) -> AuditReport:
    """Audit the credits spent by every run under ``output_url`` (optionally since a day)."""
    return _audit(output_url, since, budget, check_storage, storage_options or {})[0]


def _audit(
    output_url: str,
    since: date | str | None,
    budget: int | None,
    check_storage: bool,
    options: dict[str, Any],
) -> tuple[AuditReport, list[dict[str, Any]]]:
    since_day = date.fromisoformat(since) if isinstance(since, str) else since
    table, tables = read_all_results(output_url, options)
    rows = _prepare(table, since_day)
    charged_rows = [r for r in rows if (r["credits_charged"] or 0) > 0]
    report = AuditReport(
        output=output_url,
        since=since_day.isoformat() if since_day else None,
        budget=budget,
        tables=tables,
        rows=len(rows),
        charged=sum(r["credits_charged"] or 0 for r in rows),
        estimated=sum(r["estimated_credits"] or 0 for r in rows if _was_run(r)),
        charged_from_estimates=sum(
            r["credits_charged"] or 0 for r in rows if r.get("credits_source") == "estimate"
        ),
        rows_estimated=sum(1 for r in rows if r.get("credits_source") == "estimate"),
        rows_charge_unknown=sum(1 for r in rows if r.get("credits_source") == "unknown"),
    )
    report.breakdown = _breakdown(rows)
    report.spend = spend_by_day_and_model(rows)
    stored = _stored_outputs(output_url, options) if check_storage else None
    report.anomalies = _anomalies(charged_rows, stored, output_url, options)
    if budget is not None and report.charged > budget:
        report.anomalies.append(
            Anomaly(
                "over_budget",
                None,
                report.charged - budget,
                f"{report.charged} credits charged against a budget of {budget}",
            )
        )
    report.runs = _reconcile(rows, output_url, options, since_day)
    return report, rows


def _was_run(row: dict[str, Any]) -> bool:
    """Rows this run submitted (or resumed): skipped and invalid rows cost nothing."""
    return row["status"] in _CHARGED_STATUSES and (row.get("attempts") or 0) > 0


def _prepare(table: pa.Table | None, since: date | None) -> list[dict[str, Any]]:
    if table is None:
        return []
    rows = table.to_pylist()
    for row in rows:
        stamp = row.get("completed_at") or row.get("submitted_at") or row.get("run_started_at")
        row["day"] = stamp.astimezone(UTC).date().isoformat() if stamp else "unknown"
        started = row.get("run_started_at")
        row["run"] = run_name(started, row.get("flow_run_id")) if started else "unknown"
    if since is not None:
        rows = [r for r in rows if r["day"] != "unknown" and r["day"] >= since.isoformat()]
    return rows


def _breakdown(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    if not rows:
        return {}
    metadata = sorted(
        {k for r in rows for k in r if k not in CORE_COLUMNS and k not in ("day", "run")}
    )
    dimensions: dict[str, tuple[str, ...]] = {
        "day": ("day",),
        "model": ("model_name",),
        "settings": SETTINGS,
        "run": ("run",),
        **{name: (name,) for name in metadata},
    }
    table = pa.Table.from_pylist(
        [
            {
                **{c: _label(r.get(c)) for cols in dimensions.values() for c in cols},
                "charged": r["credits_charged"] or 0,
                "estimated": (r["estimated_credits"] or 0) if _was_run(r) else 0,
            }
            for r in rows
        ]
    )
    result: dict[str, list[dict[str, Any]]] = {}
    for dimension, columns in dimensions.items():
        grouped = table.group_by(list(columns)).aggregate(
            [("charged", "sum"), ("estimated", "sum"), ("charged", "count")]
        )
        items = [
            {
                "value": " / ".join(str(g[c]) for c in columns),
                "rows": int(g["charged_count"]),
                "charged": int(g["charged_sum"]),
                "estimated": int(g["estimated_sum"]),
            }
            for g in grouped.to_pylist()
        ]
        key = (lambda i: i["value"]) if dimension in ("day", "run") else (lambda i: -i["charged"])
        result[dimension] = sorted(items, key=key)
    return result


def _label(value: Any) -> str:
    return "(none)" if value is None or value == "" else str(value)


def spend_by_day_and_model(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Charged credits per (day, model): the chart's data."""
    if not rows:
        return []
    table = pa.Table.from_pylist(
        [
            {"day": r["day"], "model_name": r["model_name"], "charged": r["credits_charged"] or 0}
            for r in rows
        ]
    )
    grouped = table.group_by(["day", "model_name"]).aggregate([("charged", "sum")])
    return [
        {"day": g["day"], "model_name": g["model_name"], "credits_charged": g["charged_sum"]}
        for g in grouped.to_pylist()
    ]


def _stored_outputs(output_url: str, options: dict[str, Any]) -> set[str]:
    """Every object under ``{output}/images/`` (protocol stripped), listed once."""
    fs, root = filesystem(output_url, **options)
    try:
        return {p for p in fs.find(join(root, "images")) if not is_hidden(p)}
    except FileNotFoundError:
        return set()


def _anomalies(
    charged: list[dict[str, Any]],
    stored: set[str] | None,
    output_url: str,
    options: dict[str, Any],
) -> list[Anomaly]:
    found: list[Anomaly] = []
    fs, _ = filesystem(output_url, **options)
    by_row: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in charged:
        by_row.setdefault((row["row_key"], row["inputs_hash"]), []).append(row)
        credits = row["credits_charged"]
        if row["status"] == "failed" and row.get("error_name") == "OutputMissing":
            found.append(
                Anomaly(
                    "paid_for_nothing",
                    row["row_key"],
                    credits,
                    f"completed and charged without its outputs in run {row['run']}: "
                    f"{(row.get('error_message') or '')[:160]}",
                )
            )
        elif row["status"] == "failed":
            found.append(
                Anomaly(
                    "failed_with_charge",
                    row["row_key"],
                    credits,
                    f"{row.get('error_name') or 'failed'} in run {row['run']}: "
                    f"{(row.get('error_message') or '')[:160]}",
                )
            )
        if stored is None:
            continue
        uris = row.get("output_uris") or []
        missing = [u for u in uris if not _is_stored(fs, u, stored)]
        if row["status"] == "completed" and (missing or not uris):
            found.append(
                Anomaly(
                    "charged_without_output",
                    row["row_key"],
                    credits,
                    f"{len(missing) or 'all'} of {len(uris)} outputs missing from storage"
                    + (f", e.g. {missing[0]}" if missing else ""),
                )
            )
    for (key, _), group in by_row.items():
        predictions = {tuple(sorted(r.get("prediction_ids") or [])) for r in group}
        if len(group) > 1 and len(predictions) > 1:
            runs = ", ".join(sorted({r["run"] for r in group}))
            found.append(
                Anomaly(
                    "duplicate_charge",
                    key,
                    sum(r["credits_charged"] for r in group),
                    f"charged {len(group)} times for the same inputs (runs {runs})",
                )
            )
    return found


def _is_stored(fs: Any, uri: str, stored: set[str]) -> bool:
    path = fs._strip_protocol(uri)
    if path in stored:
        return True
    try:
        return bool(fs.exists(path))
    except Exception:
        return False


def _reconcile(
    rows: list[dict[str, Any]], output_url: str, options: dict[str, Any], since: date | None
) -> list[RunBalance]:
    charged_by_run: dict[str, int] = {}
    for row in rows:
        charged_by_run[row["run"]] = charged_by_run.get(row["run"], 0) + (
            row["credits_charged"] or 0
        )
    balances: list[RunBalance] = []
    for report in read_run_reports(output_url, options):
        name = report.get("run_name") or "unknown"
        started = str(report.get("started_at") or "")
        if since is not None and started[:10] < since.isoformat():
            continue
        before, after = report.get("balance_before"), report.get("balance_after")
        movement = before - after if before is not None and after is not None else None
        charged = charged_by_run.get(name, 0)
        unexplained = movement - charged if movement is not None else None
        balances.append(RunBalance(name, before, after, movement, charged, unexplained))
    return sorted(balances, key=lambda b: b.run)


def read_run_reports(
    output_url: str, options: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Every run report (``runs/*.json``) under ``output_url``."""
    fs, root = filesystem(output_url, **(options or {}))
    try:
        paths = sorted(p for p in fs.find(join(root, RUNS_DIR)) if p.endswith(".json"))
    except FileNotFoundError:
        return []
    reports = []
    for path in paths:
        if is_hidden(path):
            continue
        try:
            reports.append(json.loads(fs.cat_file(path)))
        except (ValueError, OSError):
            continue
    return reports


def chart_points(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One ``{time, model_name, credits}`` point per charged row: the chart's data."""
    return [
        {
            "time": r.get("completed_at") or r.get("submitted_at") or r.get("run_started_at"),
            "model_name": r["model_name"],
            "credits": r["credits_charged"],
        }
        for r in rows
        if (r["credits_charged"] or 0) > 0
    ]


def write_audit(
    report: AuditReport,
    output_url: str,
    storage_options: dict[str, Any] | None = None,
    *,
    points: list[dict[str, Any]] | None = None,
    stamp: datetime | None = None,
) -> dict[str, str]:
    """Store the report (Parquet breakdown + anomalies + balances) and the PNG chart of
    ``points`` (see :func:`chart_points`)."""
    fs, root = filesystem(output_url, **(storage_options or {}))
    name = (stamp or datetime.now(UTC)).strftime("audit-%Y%m%dT%H%M%SZ")
    folder = join(root, AUDIT_DIR)
    files: dict[str, str] = {}
    breakdown = [
        {"dimension": dimension, **item}
        for dimension, items in report.breakdown.items()
        for item in items
    ]
    tables = {
        "breakdown": pa.Table.from_pylist(
            breakdown,
            schema=pa.schema(
                [
                    ("dimension", pa.string()),
                    ("value", pa.string()),
                    ("rows", pa.int64()),
                    ("charged", pa.int64()),
                    ("estimated", pa.int64()),
                ]
            ),
        ),
        "anomalies": pa.Table.from_pylist(
            [asdict(a) for a in report.anomalies],
            schema=pa.schema(
                [
                    ("kind", pa.string()),
                    ("row_key", pa.string()),
                    ("credits", pa.int64()),
                    ("detail", pa.string()),
                ]
            ),
        ),
        "balances": pa.Table.from_pylist(
            [asdict(r) for r in report.runs],
            schema=pa.schema(
                [
                    ("run", pa.string()),
                    ("balance_before", pa.int64()),
                    ("balance_after", pa.int64()),
                    ("movement", pa.int64()),
                    ("charged", pa.int64()),
                    ("unexplained", pa.int64()),
                ]
            ),
        ),
    }
    for part, table in tables.items():
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        path = join(folder, f"{name}-{part}.parquet")
        atomic_write(fs, path, buffer.getvalue())
        files[part] = str(fs.unstrip_protocol(path))
    where = report.output + (f" since {report.since}" if report.since else "")
    chart = spend_chart(points or [], f"FASHN credits charged: {where}")
    path = join(folder, f"{name}-spend.png")
    atomic_write(fs, path, chart)
    files["chart"] = str(fs.unstrip_protocol(path))
    report.files = files
    return files


def run_audit(
    output_url: str,
    *,
    since: date | str | None = None,
    budget: int | None = None,
    write: bool = True,
    storage_options: dict[str, Any] | None = None,
) -> AuditReport:
    """Audit ``output_url`` and (by default) store the report and chart under ``audit/``."""
    options = storage_options or {}
    report, rows = _audit(output_url, since, budget, True, options)
    if write:
        write_audit(report, output_url, options, points=chart_points(rows))
    return report


__all__ = [
    "Anomaly",
    "AuditReport",
    "RunBalance",
    "audit",
    "chart_points",
    "read_all_results",
    "read_run_reports",
    "run_audit",
    "spend_by_day_and_model",
    "write_audit",
]
