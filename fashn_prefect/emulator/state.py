"""In-memory state: predictions, the credit ledger, request counters and the stats document.

Status is computed lazily from the emulated clock: a prediction is ``starting`` until
``t_queue``, ``in_queue`` until ``t_processing``, then ``processing`` until its worker has
produced the outcome AND the clock has reached ``terminal_at``; then it is finalised once
(credits charged, ``completed_at`` recorded). Predictions are kept for the emulator's lifetime
(the real tracking horizon is [UNCONFIRMED]).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from .config import EmulatorConfig

ACTIVE_STATUSES = ("starting", "in_queue", "processing")
REJECTION_NAMES = (
    "RateLimitExceeded",
    "ConcurrencyLimitExceeded",
    "OutOfCredits",
    "UnauthorizedAccess",
    "BadRequest",
    "NotFound",
)


def inputs_hash(inputs: Any) -> str:
    """sha256 of the canonical JSON of the inputs."""
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class Prediction:
    """One prediction and everything the emulator knows about it."""

    id: str
    seq: int
    key_id: str
    model_name: str
    inputs: dict[str, Any]
    base_url: str
    created_at: float
    t_queue: float
    t_processing: float
    t_end: float
    estimate: int
    output_count: int
    output_ext: str
    return_base64: bool
    webhook_url: str | None = None
    planned_failure: tuple[str, str] | None = None
    end_status: str = "completed"  # or "canceled" / "time_out" (emulator switches)
    # Filled by the worker:
    terminal_at: float | None = None
    outcome: str | None = None  # "completed" | "failed" | "canceled" | "time_out"
    error: dict[str, str] | None = None
    outputs: list[bytes] = field(default_factory=list)
    # Filled on finalisation:
    finalised: bool = False
    completed_at: float | None = None
    credits: int = 0
    first_status_at: float | None = None
    """When the client first asked for this prediction's status."""
    seen_terminal_at: float | None = None
    """When a status answer first reported the end (how long the client took to notice)."""
    status_calls: int = 0
    """Status answers served for this prediction."""
    webhook: dict[str, Any] | None = None
    webhook_faults: dict[str, Any] = field(default_factory=dict)
    """The webhook fault switches drawn for this prediction (see ``deliver_webhook``)."""
    cdn_gone: dict[int, bool] = field(default_factory=dict)

    @property
    def inputs_hash(self) -> str:
        """sha256 of the canonical JSON of the inputs as submitted."""
        return inputs_hash(self.inputs)

    def status_at(self, now: float) -> str:
        """Status at emulated time ``now`` (call EmulatorState.refresh first to finalise)."""
        if self.finalised and self.outcome:
            return self.outcome
        if now < self.t_queue:
            return "starting"
        if now < self.t_processing:
            return "in_queue"
        return "processing"


class EmulatorState:
    """Everything mutable in one emulator instance (touched only from the server's event loop)."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.tasks: set[asyncio.Task[None]] = set()
        self.files: dict[str, tuple[bytes, str]] = {}
        self.reset_data()

    def reset_data(self) -> None:
        """Forget predictions and counters, restore the starting credit balance."""
        for task in self.tasks:
            task.cancel()
        self.tasks.clear()
        self.predictions: dict[str, Prediction] = {}
        self.active: dict[str, Prediction] = {}
        self.sequence = 0
        self.subscription = self.config.subscription_credits
        self.on_demand = self.config.on_demand_credits
        self.requests: dict[str, dict[str, int]] = {}
        self.rejected: dict[str, int] = dict.fromkeys(REJECTION_NAMES, 0)
        self.peak_in_flight = 0
        self.credits_charged = 0

    def forget_predictions(self) -> None:
        """Forget every prediction so far: their status calls answer 404 NotFound.

        The real API answers so for ids it no longer tracks; credits already charged stay.
        """
        self.predictions.clear()
        self.active.clear()

    # -- counters ---------------------------------------------------------------------------
    def count_request(self, key_id: str, endpoint: str) -> None:
        """Count one authenticated request to run/status/credits."""
        per_key = self.requests.setdefault(key_id, {"run": 0, "status": 0, "credits": 0})
        per_key[endpoint] += 1

    def count_rejection(self, name: str) -> None:
        """Count one rejected request by error name."""
        self.rejected[name] = self.rejected.get(name, 0) + 1

    # -- predictions ------------------------------------------------------------------------
    def add(self, prediction: Prediction) -> None:
        """Register a new prediction and update the in-flight peak."""
        self.predictions[prediction.id] = prediction
        self.active[prediction.id] = prediction
        self.peak_in_flight = max(self.peak_in_flight, len(self.active))

    def refresh(self, now: float) -> None:
        """Finalise every prediction whose outcome is known and whose time has come."""
        for prediction in list(self.active.values()):
            if prediction.terminal_at is not None and now >= prediction.terminal_at:
                self.finalise(prediction)

    def finalise(self, prediction: Prediction) -> None:
        """Make a prediction terminal (idempotent); charge credits if it completed."""
        if prediction.finalised or prediction.outcome is None:
            return
        prediction.finalised = True
        prediction.completed_at = prediction.terminal_at
        self.active.pop(prediction.id, None)
        if prediction.outcome == "completed":
            prediction.credits = self.charge(prediction.estimate)

    def in_flight(self, key_id: str | None = None) -> int:
        """Predictions not yet terminal (for one key, or all)."""
        if key_id is None:
            return len(self.active)
        return sum(1 for p in self.active.values() if p.key_id == key_id)

    def reserved_credits(self) -> int:
        """Credits the in-flight predictions will need if they all complete."""
        return sum(p.estimate for p in self.active.values())

    # -- credits ----------------------------------------------------------------------------
    @property
    def total_credits(self) -> int:
        """subscription + on_demand."""
        return self.subscription + self.on_demand

    def charge(self, amount: int) -> int:
        """Deduct ``amount`` (subscription first, then on-demand); returns what was charged."""
        amount = max(0, min(amount, self.total_credits))
        from_subscription = min(amount, self.subscription)
        self.subscription -= from_subscription
        self.on_demand -= amount - from_subscription
        self.credits_charged += amount
        return amount

    def refund(self, amount: int) -> None:
        """Give ``amount`` credits back to the account (as on-demand credits)."""
        self.on_demand += amount

    def credits_body(self) -> dict[str, int]:
        """The ``credits`` object of GET /v1/credits."""
        return {
            "total": self.total_credits,
            "subscription": self.subscription,
            "on_demand": self.on_demand,
        }

    # -- stats ------------------------------------------------------------------------------
    def stats(
        self, now: float, faults: dict[str, int], runtime_faults: dict[str, int]
    ) -> dict[str, Any]:
        """The stats document served at GET /_emulator/stats."""
        self.refresh(now)
        predictions = []
        for p in self.predictions.values():
            duration = None
            if p.completed_at is not None:
                duration = round(p.completed_at - p.t_processing, 6)
            predictions.append(
                {
                    "id": p.id,
                    "key_id": p.key_id,
                    "model_name": p.model_name,
                    "inputs_hash": p.inputs_hash,
                    "status": p.status_at(now),
                    "error": dict(p.error) if p.finalised and p.error else None,
                    "credits": p.credits,
                    "output_count": p.output_count
                    if p.outcome == "completed" and p.finalised
                    else 0,
                    "created_at": round(p.created_at, 6),
                    "completed_at": None if p.completed_at is None else round(p.completed_at, 6),
                    "first_status_at": None
                    if p.first_status_at is None
                    else round(p.first_status_at, 6),
                    "seen_terminal_at": None
                    if p.seen_terminal_at is None
                    else round(p.seen_terminal_at, 6),
                    "duration": duration,
                    "status_calls": p.status_calls,
                    "webhook": dict(p.webhook) if p.webhook is not None else None,
                }
            )
        return {
            "requests": {k: dict(v) for k, v in self.requests.items()},
            "rejected": dict(self.rejected),
            "faults_injected": {**faults, "runtime": dict(runtime_faults)},
            "in_flight": self.in_flight(),
            "peak_in_flight": self.peak_in_flight,
            "credits_charged": self.credits_charged,
            "predictions": predictions,
            "credits": self.credits_body(),
        }
