"""The durable per-row ledger: every submission is written down before it is polled.

One small JSON object per row key lives under ``{output}/ledger/``. It is rewritten
atomically at each step of a row's life:

``submitting`` (about to POST) → ``submitted`` (prediction id known) → ``completed``
(outputs stored) or ``failed``; ``ambiguous`` when a POST's fate is unknown.

A re-run reads it to resume polling known predictions instead of submitting them again,
and treats a row left in ``submitting`` as ambiguous: it may have been created and
charged, so it is never resent without ``resubmit_ambiguous``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from fashn_prefect.store.fs import atomic_write, filesystem, join, safe_name

LEDGER_DIR = "ledger"


def utc_now() -> str:
    """Current UTC time as an ISO-8601 string."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class Attempt:
    """One submission of a row."""

    number: int
    prediction_id: str | None = None
    status: str = "submitting"
    submitted_at: str | None = None
    completed_at: str | None = None
    error_name: str | None = None
    error_message: str | None = None
    credits_used: int | None = None
    # Where credits_used came from: "header" (x-fashn-credits-used), "estimate" (the
    # specs', when the header was missing) or "unknown" (neither; model not catalogued).
    credits_source: str | None = None
    # How the end was learned: "webhook" (a delivery, confirmed by one status call) or
    # "poll"; and the seconds from the end to the run seeing it (see run/poll.py).
    completion_seen_by: str | None = None
    detection_delay_s: float | None = None


@dataclass
class RowRecord:
    """Everything known about a row key in one output root."""

    row_key: str
    inputs_hash: str
    model_name: str
    status: str = "pending"
    attempts: list[Attempt] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    flow_run_id: str | None = None
    updated_at: str = field(default_factory=utc_now)

    @property
    def last(self) -> Attempt | None:
        """The latest attempt, if any."""
        return self.attempts[-1] if self.attempts else None

    def to_json(self) -> bytes:
        """Serialise to UTF-8 JSON."""
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> RowRecord:
        """Parse a record written by :meth:`to_json`."""
        raw: dict[str, Any] = json.loads(data)
        attempts = [Attempt(**a) for a in raw.pop("attempts", [])]
        return cls(attempts=attempts, **raw)


class Ledger:
    """Reads and writes row records under ``{output}/ledger/``."""

    def __init__(self, output_url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.fs, root = filesystem(output_url, **(storage_options or {}))
        self.root = join(root, LEDGER_DIR)

    def path(self, row_key: str) -> str:
        """Where a row key's record lives; the name cannot escape the ledger folder."""
        return join(self.root, f"{safe_name(row_key)}.json")

    def save(self, record: RowRecord) -> None:
        """Atomically replace the row's record."""
        record.updated_at = utc_now()
        atomic_write(self.fs, self.path(record.row_key), record.to_json())

    def load_many(self, row_keys: list[str]) -> dict[str, RowRecord | UnreadableRecord]:
        """Records for those of ``row_keys`` that have one (one listing, then batched reads).

        A record that exists but cannot be read or parsed (damaged, truncated, a storage
        error) comes back as an :class:`UnreadableRecord`, never as "no record": the row
        may have been submitted, so it must not be planned as new.
        """
        try:
            existing = set(self.fs.ls(self.root, detail=False))
        except FileNotFoundError:
            return {}
        existing = {p.rstrip("/").rsplit("/", 1)[-1] for p in existing}
        wanted = {self.path(k): k for k in row_keys if f"{safe_name(k)}.json" in existing}
        if not wanted:
            return {}
        contents = self.fs.cat(list(wanted), on_error="return")
        records: dict[str, RowRecord | UnreadableRecord] = {}
        for path, data in contents.items():
            key = wanted.get(path) or wanted.get(path.rstrip("/"))
            if key is None or isinstance(data, FileNotFoundError):
                continue
            shown = self.fs.unstrip_protocol(self.path(key))
            if isinstance(data, BaseException):
                records[key] = UnreadableRecord(key, shown, f"{type(data).__name__}: {data}")
                continue
            try:
                record = RowRecord.from_json(data)
            except (ValueError, TypeError, AttributeError) as exc:
                records[key] = UnreadableRecord(key, shown, f"{type(exc).__name__}: {exc}")
                continue
            if record.row_key == key:
                records[key] = record
        return records


@dataclass(frozen=True)
class UnreadableRecord:
    """A row's ledger record that exists but could not be read: its row's fate is unknown."""

    row_key: str
    path: str
    problem: str

    def describe(self) -> str:
        """What went wrong and what the user can do, for the results table."""
        return (
            f"the ledger record {self.path} for row {self.row_key!r} could not be read "
            f"({self.problem}); an earlier submission may exist and may have been charged, "
            "so the row is not submitted again. Re-run once the storage answers, or, if the "
            "record is damaged, re-run with resubmit_ambiguous to submit the row again"
        )
