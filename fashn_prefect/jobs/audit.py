"""Credit audit of an output root: where the credits went, and what does not add up.

Reads every results table under ``{output}/results/`` as one pyarrow dataset, plus the
run reports under ``{output}/runs/`` (with their ``/v1/credits`` snapshots), and builds:

* charged and estimated credits by day, model, generation settings, run and every
  metadata column (brand, catalog, ...);
* anomalies: credits paid for nothing (a prediction the API reported completed, and
  charged, without the outputs it was asked for: ``OutputMissing``), credits charged for a
  row whose outputs are not in storage, a row charged more than once for the same inputs,
  a failed prediction with a charge, spend above a budget, and a balance that moved
  during a run by more (or less) than the run's rows explain;
* a reconciliation of each run's balance movement with the charges its results explain,
  tied to the submissions that were interrupted before FASHN's answer arrived (their
  predictions may exist and be charged, with ids nobody knows); and the movement between
  runs (usage outside these runs: an anomaly only with ``flag_outside_usage``).

:func:`write_audit` stores the report as Parquet plus a PNG chart under ``{output}/audit/``.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from itertools import pairwise
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
    # | failed_with_charge | over_budget | unexplained_balance | outside_usage
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
    """``movement - charged``, less ``charged_before_run``: positive, credits spent that no
    row of the run accounts for; negative, a refund or a charge not booked yet."""
    charged_before_run: int = 0
    """Of ``charged``: credits of predictions submitted before the run (resumed after an
    interrupted run) that the balance had already lost when the run started."""
    started_at: str | None = None
    finished_at: str | None = None


@dataclass
class OutsideUsage:
    """The balance movement between two consecutive runs: usage outside the audited runs."""

    after_run: str
    before_run: str
    movement: int
    """Credits the balance lost from the end of ``after_run`` to the start of ``before_run``
    (negative: it grew, as when credits are bought)."""
    charged_by_next_run: int
    """Of ``movement``: what ``before_run`` books for predictions charged in between."""
    unexplained: int
    detail: str = ""


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
    between_runs: list[OutsideUsage] = field(default_factory=list)
    spend: list[dict[str, Any]] = field(default_factory=list)
    """Charged credits per (day, model)."""
    files: dict[str, str] = field(default_factory=dict)

    @property
    def balance_movement(self) -> int:
        """Credits the account balance moved by during the audited runs."""
        return sum(r.movement or 0 for r in self.runs)

    @property
    def unexplained(self) -> int:
        """Balance movement during the runs that no charged row accounts for (signed)."""
        return sum(r.unexplained or 0 for r in self.runs)

    @property
    def outside_usage(self) -> int:
        """Balance movement between the runs that no run accounts for (signed)."""
        return sum(g.unexplained for g in self.between_runs)

    def as_dict(self) -> dict[str, Any]:
        """Plain-dict form (JSON-serialisable)."""
        data = asdict(self)
        data["balance_movement"] = self.balance_movement
        data["unexplained"] = self.unexplained
        data["outside_usage"] = self.outside_usage
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
            f"(unexplained by the results: **{self.unexplained:+d}**)",
            "- balance movement between the runs that they do not explain (usage outside "
            f"these runs): {self.outside_usage:+d}",
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
                "| run | before | after | movement | charged | charged before the run "
                "| unexplained |",
                "|---|---|---|---|---|---|---|",
            ]
            lines += [
                f"| {r.run} | {r.balance_before} | {r.balance_after} | {r.movement} | "
                f"{r.charged} | {r.charged_before_run} | {_signed(r.unexplained)} |"
                for r in self.runs
            ]
        if self.between_runs:
            lines += [
                "",
                "## Between runs",
                "",
                "| after | before | movement | booked by the next run | outside usage | detail |",
                "|---|---|---|---|---|---|",
            ]
            lines += [
                f"| {g.after_run} | {g.before_run} | {g.movement} | {g.charged_by_next_run} | "
                f"{g.unexplained:+d} | {g.detail} |"
                for g in self.between_runs
            ]
        return "\n".join(lines) + "\n"


def _signed(value: int | None) -> str:
    return "" if value is None else f"{value:+d}"


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
    flag_outside_usage: bool = False,
) -> AuditReport:
    """Audit the credits spent by every run under ``output_url`` (optionally since a day).

    ``flag_outside_usage`` makes credits spent between the runs an anomaly too.
    """
    options = storage_options or {}
    return _audit(output_url, since, budget, check_storage, options, flag_outside_usage)[0]


def _audit(
    output_url: str,
    since: date | str | None,
    budget: int | None,
    check_storage: bool,
    options: dict[str, Any],
    flag_outside_usage: bool = False,
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
    report.runs, report.between_runs = _reconcile(rows, output_url, options, since_day)
    report.anomalies += _balance_anomalies(report, _interrupted(rows), flag_outside_usage)
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
) -> tuple[list[RunBalance], list[OutsideUsage]]:
    """Each run's balance movement against its rows' charges, and the movement between."""
    charged_by_run: dict[str, int] = {}
    resumed_by_run: dict[str, int] = {}
    for row in rows:
        credits = row["credits_charged"] or 0
        charged_by_run[row["run"]] = charged_by_run.get(row["run"], 0) + credits
        started, submitted = row.get("run_started_at"), row.get("submitted_at")
        if credits and started and submitted and submitted < started and not row.get("ambiguous"):
            resumed_by_run[row["run"]] = resumed_by_run.get(row["run"], 0) + credits
    balances: list[RunBalance] = []
    for report in read_run_reports(output_url, options):
        name = report.get("run_name") or "unknown"
        started = str(report.get("started_at") or "")
        if since is not None and started[:10] < since.isoformat():
            continue
        before, after = report.get("balance_before"), report.get("balance_after")
        movement = before - after if before is not None and after is not None else None
        charged = charged_by_run.get(name, 0)
        early, unexplained = 0, None
        if movement is not None:
            # Predictions resumed from an interrupted run may have been charged before
            # this run's opening balance: the movement between the runs holds them.
            early = min(max(charged - movement, 0), resumed_by_run.get(name, 0))
            unexplained = movement - charged + early
        balance = RunBalance(name, before, after, movement, charged, unexplained, early)
        balance.started_at, balance.finished_at = started or None, report.get("finished_at")
        balances.append(balance)
    balances.sort(key=lambda b: (b.started_at or "", b.run))
    gaps: list[OutsideUsage] = []
    for previous, following in pairwise(balances):
        if previous.balance_after is None or following.balance_before is None:
            continue
        movement = previous.balance_after - following.balance_before
        booked = following.charged_before_run
        if movement or booked:
            gaps.append(
                OutsideUsage(previous.run, following.run, movement, booked, movement - booked)
            )
    return balances, gaps


def _interrupted(rows: list[dict[str, Any]]) -> list[tuple[datetime, str]]:
    """Every interrupted submission the results tables know of: (when it was sent, row key)."""
    return sorted({(r["interrupted_at"], r["row_key"]) for r in rows if r.get("interrupted_at")})


def _sent_between(
    interrupted: list[tuple[datetime, str]], start: str | None, end: str | None
) -> list[tuple[datetime, str]]:
    """The interrupted submissions sent between two ISO times (an open end is unbounded)."""
    low = datetime.fromisoformat(start) if start else None
    high = datetime.fromisoformat(end) if end else None
    return [
        (at, key)
        for at, key in interrupted
        if (low is None or at >= low) and (high is None or at <= high)
    ]


def _describe(interrupted: list[tuple[datetime, str]], where: str) -> str:
    """``"3 submissions in this run were interrupted ...: rows a (time), b (time) ..."``."""
    if not interrupted:
        return ""
    shown = ", ".join(
        f"{key} ({at.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S')} UTC)"
        for at, key in interrupted[:20]
    )
    more = f" and {len(interrupted) - 20} more" if len(interrupted) > 20 else ""
    return (
        f"{len(interrupted)} submissions {where} were interrupted before FASHN's answer "
        f"arrived: rows {shown}{more}. FASHN may have created and charged them, and their "
        "prediction ids are unknown"
    )


def _balance_anomalies(
    report: AuditReport, interrupted: list[tuple[datetime, str]], flag_outside_usage: bool
) -> list[Anomaly]:
    """An anomaly per run whose balance moved by more or less than its rows explain (and,
    with ``flag_outside_usage``, per interval between runs in which credits were spent),
    tied to the submissions interrupted then. Also writes the between-run details."""
    found: list[Anomaly] = []
    for run in report.runs:
        if not run.unexplained:
            continue
        if run.unexplained > 0:
            sent = _sent_between(interrupted, run.started_at, run.finished_at)
            cause = _describe(sent, "in this run") or (
                "no submission of this run was interrupted: something else used the account"
            )
            detail = (
                f"{run.unexplained} credits unexplained in run {run.run}: the balance moved "
                f"{run.movement}, its rows charged {run.charged}; {cause}"
            )
        else:
            detail = (
                f"{run.unexplained:+d} credits unexplained in run {run.run}: the balance moved "
                f"{run.movement}, {-run.unexplained} less than its rows charged "
                f"({run.charged}): a refund, or a charge FASHN had not booked yet"
            )
        found.append(Anomaly("unexplained_balance", None, run.unexplained, detail))
    runs = {run.run: run for run in report.runs}
    for gap in report.between_runs:
        after, before = runs[gap.after_run], runs[gap.before_run]
        sent = _sent_between(interrupted, after.finished_at, before.started_at)
        booked = (
            f", {gap.charged_by_next_run} of it for predictions the second run resumed"
            if gap.charged_by_next_run
            else ""
        )
        cause = _describe(sent, "between them (in a run that did not finish)")
        gap.detail = (
            f"the balance moved {gap.movement} between runs {gap.after_run} and "
            f"{gap.before_run}{booked}: {gap.unexplained:+d} credits of usage outside these "
            "runs" + (f"; {cause}" if cause else "")
        )
        if flag_outside_usage and gap.unexplained > 0:
            found.append(Anomaly("outside_usage", None, gap.unexplained, gap.detail))
    return found


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
                    ("charged_before_run", pa.int64()),
                    ("started_at", pa.string()),
                    ("finished_at", pa.string()),
                ]
            ),
        ),
        "between_runs": pa.Table.from_pylist(
            [asdict(g) for g in report.between_runs],
            schema=pa.schema(
                [
                    ("after_run", pa.string()),
                    ("before_run", pa.string()),
                    ("movement", pa.int64()),
                    ("charged_by_next_run", pa.int64()),
                    ("unexplained", pa.int64()),
                    ("detail", pa.string()),
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
    unexplained = [
        {"time": datetime.fromisoformat(r.finished_at), "credits": r.unexplained}
        for r in report.runs
        if r.unexplained and r.finished_at
    ]
    chart = spend_chart(points or [], f"FASHN credits charged: {where}", unexplained)
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
    flag_outside_usage: bool = False,
) -> AuditReport:
    """Audit ``output_url`` and (by default) store the report and chart under ``audit/``.

    ``flag_outside_usage`` makes credits spent between the runs an anomaly too.
    """
    options = storage_options or {}
    report, rows = _audit(output_url, since, budget, True, options, flag_outside_usage)
    if write:
        write_audit(report, output_url, options, points=chart_points(rows))
    return report


__all__ = [
    "Anomaly",
    "AuditReport",
    "OutsideUsage",
    "RunBalance",
    "audit",
    "chart_points",
    "read_all_results",
    "read_run_reports",
    "run_audit",
    "spend_by_day_and_model",
    "write_audit",
]
