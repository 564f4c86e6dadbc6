"""A row's ledger record: its attempts (one per submission), where it stands, and what
planning reads of it; and the record that exists but cannot be read."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple


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

    @property
    def summary(self) -> RecordSummary:
        """What planning reads of this record."""
        last = self.last
        return RecordSummary(
            inputs_hash=self.inputs_hash,
            status=self.status,
            has_outputs=bool(self.outputs),
            last_status=last.status if last else None,
            last_prediction_id=last.prediction_id if last else None,
            last_error_name=last.error_name if last else None,
            credits_used=sum(a.credits_used or 0 for a in self.attempts),
        )


class RecordSummary(NamedTuple):
    """What planning reads of a row's record: its inputs, where it stands, its last
    attempt, and the credits its attempts were charged."""

    inputs_hash: str
    status: str
    has_outputs: bool
    last_status: str | None
    last_prediction_id: str | None
    last_error_name: str | None
    credits_used: int


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


def parse_record(key: str, data: bytes, shown: str) -> RowRecord | UnreadableRecord | None:
    """The record of ``key`` in ``data``; None when it names another row key."""
    try:
        record = RowRecord.from_json(data)
    except (ValueError, TypeError, AttributeError) as exc:
        return UnreadableRecord(key, shown, f"{type(exc).__name__}: {exc}")
    return record if record.row_key == key else None
